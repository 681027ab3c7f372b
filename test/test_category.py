"""The category check (genpose_ros/pose/category.py): the fusion of a segmenter's class with the
points' reading, `genpose train --task category`, and the estimator's use of the head."""
import json

import numpy as np
import pytest
import torch

from genpose_ros import CATEGORIES
from genpose_ros.identity import most_likely
from genpose_ros.pose.category import encoder_digest, fused_log_probs, load_category_head
from genpose_ros.pose.checkpoint import CheckpointError


def _probs(**p):
    """(1, 6) probabilities: the named categories' values, the rest share what is left."""
    rest = (1.0 - sum(p.values())) / (len(CATEGORIES) - len(p))
    return np.array([[p.get(c, rest) for c in CATEGORIES]])


def relabel(probs, categories, scores, names, prior_weight):
    return most_likely(fused_log_probs(probs, categories, scores, names, prior_weight), names)


def est_relabel(est, points, categories, scores):
    """The estimator's category check as the nodes apply it: each object's most likely class."""
    evidence = est.category_evidence(points, categories, scores)
    return list(categories) if evidence is None else most_likely(evidence, est.categories)


def test_relabel_weighs_the_segmenters_class_and_score_against_the_points():
    points_say_can = _probs(can=0.98, bottle=0.01)
    # a weak bottle becomes the can the points clearly show; a confident one stays
    assert relabel(points_say_can, ["bottle"], [0.55], CATEGORIES, 2.0) == ["can"]
    assert relabel(points_say_can, ["bottle"], [0.95], CATEGORIES, 2.0) == ["bottle"]
    # the prior weight: 0 follows the points, a large one the segmenter
    assert relabel(points_say_can, ["bottle"], [0.95], CATEGORIES, 0.0) == ["can"]
    assert relabel(points_say_can, ["bottle"], [0.55], CATEGORIES, 20.0) == ["bottle"]
    # true masks (score 1) are never relabelled, even against a sure reading
    assert relabel(_probs(can=0.999999), ["mug"], [1.0], CATEGORIES, 2.0) == ["mug"]
    # points that agree, or are unsure, leave the class as it is; batches keep their order
    flat = np.full((1, 6), 1 / 6)
    assert relabel(np.concatenate([flat, points_say_can]), ["mug", "can"], [0.5, 0.6], CATEGORIES, 2.0) == \
        ["mug", "can"]
    # the evidence is a distribution over the classes
    fused = fused_log_probs(np.concatenate([flat, points_say_can]), ["mug", "can"], [0.5, 1.0], CATEGORIES, 2.0)
    assert fused.shape == (2, 6) and np.allclose(np.exp(fused).sum(axis=1), 1.0)
    assert np.exp(fused[1, CATEGORIES.index("can")]) > 0.999   # a score of 1: certain


def test_train_task_category_and_the_estimator_uses_only_its_own_models_head(
        tmp_path, capsys, tiny_train_val, tiny_pose_checkpoint):
    import yaml

    from genpose_ros.config import CONFIG_DIR, load_config
    from genpose_ros.pose import train
    from genpose_ros.pose.checkpoint import build_model, load_checkpoint
    from genpose_ros.pose.estimator import PoseEstimator
    from genpose_ros.config import estimator_config

    cfg = dict(load_config(CONFIG_DIR / "category.yaml"), passes=1, epochs=5, hidden=16)
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    rc = train.main(["--task", "category", "--init", str(tiny_pose_checkpoint), "--data",
                     str(tiny_train_val / "train"), "--val", str(tiny_train_val / "val"), "--out", str(out),
                     "--config", str(tmp_path / "small.yaml"), "--threads", "1"])
    assert rc == 0 and "category_head.pt" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["train_instances"] > 0 and 0 <= report["train_accuracy"]["all"] <= 100
    assert any(k.startswith("val_accuracy") for k in report) and 0.5 <= report["temperature"] <= 50
    head = load_category_head(out / "category_head.pt")
    model = build_model(load_checkpoint(tiny_pose_checkpoint))
    assert head.config["encoder_digest"] == encoder_digest(model) and head.config["hidden"] == 16

    config = estimator_config()
    config["category"]["checkpoint"] = str(out / "category_head.pt")
    est = PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config=config)
    assert est.category_head is not None and est.category_note is None
    rng = np.random.default_rng(0)
    points = (rng.normal(size=(3, 128, 3)) * 0.03 + [0, 0, 0.8]).astype(np.float32)
    with torch.no_grad():   # a head sure of "can" whatever the points (the tiny model's features are noise)
        est.category_head.temperature.fill_(1.0)
        est.category_head.mlp[-1].bias[CATEGORIES.index("can")] += 50.0
    assert est_relabel(est, points, ["mug", "can", "bowl"], [0.6, 0.6, 0.99]) == ["can", "can", "can"]
    assert est_relabel(est, points, ["mug", "bowl", "laptop"], [1.0, 1.0, 1.0]) == ["mug", "bowl", "laptop"]  # true masks
    assert est_relabel(est, np.zeros((0, 128, 3), np.float32), [], []) == []

    # estimate reuses the check's encoder pass for the same clouds (all or some), with the same result
    calls = []
    est.model.encoder.register_forward_hook(lambda *_: calls.append(1))
    cats = ["mug", "can", "bowl"]
    points = (rng.normal(size=(3, est.n_points, 3)) * 0.03 + [0, 0, 0.8]).astype(np.float32)   # the model's size
    fresh = [est.estimate(points[rows], [cats[i] for i in rows], mode="regression") for rows in ([0, 1, 2], [2, 0])]
    assert len(calls) == 2
    est.category_evidence(points, cats, [0.6] * 3)
    reused = [est.estimate(points[rows], [cats[i] for i in rows], mode="regression") for rows in ([0, 1, 2], [2, 0])]
    assert len(calls) == 3   # the check's pass only
    for a, b in zip(fresh, reused):
        np.testing.assert_array_equal(a.R, b.R)
        np.testing.assert_array_equal(a.t, b.t)
    est.estimate(points[:2] + 0.01, cats[:2], mode="regression")   # other clouds: encoded anew
    assert len(calls) == 4

    # another pose model (other weights): the head is not used, and the estimator says why
    other = load_checkpoint(tiny_pose_checkpoint)
    name = next(k for k in other["model"] if k.startswith("encoder."))
    other["model"][name] = other["model"][name] + 0.01
    from genpose_ros.pose.checkpoint import save_checkpoint
    save_checkpoint(tmp_path / "other.pt", other["model"], other["model_config"], 0, other["train_config"])
    est = PoseEstimator.from_checkpoint(tmp_path / "other.pt", config=config)
    assert est.category_head is None and "trained on another pose model's features" in est.category_note
    assert est_relabel(est, points, ["mug", "mug", "mug"], [0.01, 0.01, 0.01]) == ["mug", "mug", "mug"]


def test_a_corrupt_or_foreign_category_head_is_one_line(tmp_path, tiny_pose_checkpoint):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read category head"):
        load_category_head(bad)
    with pytest.raises(CheckpointError, match="is not a genpose_ros category head"):
        load_category_head(tiny_pose_checkpoint)


def test_shipped_category_head_belongs_to_the_shipped_pose_model():
    from conftest import shipped_pose_checkpoint
    from genpose_ros.pose.estimator import PoseEstimator

    path = shipped_pose_checkpoint()
    if path is None:
        pytest.skip("no shipped pose model")
    est = PoseEstimator.from_checkpoint(path)
    assert est.category_head is not None, est.category_note


@pytest.mark.parametrize("seed", [8, 15])
def test_shipped_category_check_corrects_weak_wrong_classes_and_keeps_right_ones(seed):
    """Simulated frames (seed 8: bowls, a mug, a can; seed 15: laptops, a bowl): every object's
    true points with a wrong class at score 0.5 get their own class back; with their own class
    at 0.55 they keep it."""
    from conftest import shipped_pose_checkpoint
    from genpose_ros.data.pointcloud import object_points
    from genpose_ros.data.realsense import SimSource
    from genpose_ros.pose.estimator import PoseEstimator

    path = shipped_pose_checkpoint()
    if path is None:
        pytest.skip("no shipped pose model")
    torch.set_num_threads(1)
    est = PoseEstimator.from_checkpoint(path)
    gt = SimSource(seed, 0, 1).read().ground_truth
    rng = np.random.default_rng(0)
    cats = [i.category for i in gt.instances]
    points = np.stack([object_points(gt.depth, gt.mask == i.instance_id, gt.intrinsics, est.n_points, rng)
                       for i in gt.instances])
    wrong = [CATEGORIES[(CATEGORIES.index(c) + 1) % len(CATEGORIES)] for c in cats]
    assert est_relabel(est, points, wrong, [0.5] * len(cats)) == cats
    assert est_relabel(est, points, cats, [0.55] * len(cats)) == cats
