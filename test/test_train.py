"""`genpose train` end to end on a tiny rendered dataset: stages, logs, checkpoints, resume."""
import json

import pytest
import yaml

from genpose_ros.pose import train
from genpose_ros.pose.checkpoint import load_checkpoint
from genpose_ros.config import CONFIG_DIR, load_config
from genpose_ros.pose.estimator import PoseEstimator

TINY_MODEL = {"n_points": 128, "cat_dim": 8, "hidden": 32, "pose_dim": 16, "time_dim": 16,
              "encoder": {"levels": [{"npoint": 32, "radii": [0.03, 0.06], "nsample": [8, 8],
                                      "mlps": [[8, 16], [8, 16]]}], "global_mlp": [32]}}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from genpose_ros.data.generate import GenerateConfig, generate

    root = tmp_path_factory.mktemp("synth")
    generate(GenerateConfig(out=str(root / "train"), split="train", seed=0, scenes=2, views_per_scene=2),
             progress=False)
    generate(GenerateConfig(out=str(root / "val"), split="val", seed=0, scenes=1), progress=False)
    cfg = load_config(CONFIG_DIR / "train.yaml")
    cfg.update(model=TINY_MODEL, batch_size=4, n_noise=2, log_every=1, eval_every=3, save_every=4,
               val_instances=4, val_steps=2, pool_points=256, warmup=2)
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    return root


def _records(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_joint_schedule_stages_logs_and_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "joint"
    rc = train.main(["--data", str(tiny_data / "train"), "--val", str(tiny_data / "val"), "--out", str(out),
                     "--config", str(tiny_data / "tiny.yaml"), "--steps", "12", "--device", "cpu",
                     "--cache", str(tmp_path / "pool.pt")])
    assert rc == 0
    recs = _records(out)
    stages = [r["stage"] for r in recs if "loss" in r]
    assert stages[0] == "regression" and stages[-1] == "size"
    order = list(dict.fromkeys(stages))
    assert order == ["regression", "joint", "energy", "size"]
    assert any("loss_score" in r for r in recs) and any("loss_energy" in r for r in recs)
    val = [r for r in recs if "val_diffusion_5deg2cm" in r]
    # every 3 steps and at the end of each stage, in the regression (steps 1-2) and joint (3-9) stages
    assert [r["step"] for r in val] == [2, 3, 6, 9]
    assert all({"val_regression_5deg2cm", "val_regression_10deg5cm", "val_diffusion_10deg5cm"} <= set(r) for r in val)
    assert (out / "tb").is_dir() and (tmp_path / "pool.pt").is_file()
    ck = load_checkpoint(out / "model.pt")
    assert ck["step"] == 12 and "optimizer" not in ck
    est = PoseEstimator.from_checkpoint(out / "model.pt")
    assert est.model.size_prior.min() > 0.01  # set from the training sizes, not the 0.15 default everywhere


def test_resume_continues_and_genpose_schedule(tiny_data, tmp_path):
    out = tmp_path / "gp"
    args = ["--data", str(tiny_data / "train"), "--out", str(out), "--config", str(tiny_data / "tiny.yaml"),
            "--schedule", "genpose", "--device", "cpu"]
    assert train.main(args + ["--steps", "8"]) == 0
    assert [r["stage"] for r in _records(out)][0] == "score"
    last = load_checkpoint(out / "last.pt")
    assert last["step"] == 8 and "raw_model" in last
    # resuming a finished 8-step run with 16 total steps: the plan is recomputed, training continues
    assert train.main(args + ["--steps", "16", "--resume", str(out / "last.pt")]) == 0
    assert load_checkpoint(out / "model.pt")["step"] > 8


def test_bad_arguments(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        train.main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--config", str(tiny_data / "tiny.yaml")])
    bad = load_config(tiny_data / "tiny.yaml")
    bad["stages"]["joint"] = [["warmup", 1.0]]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="unknown training stage 'warmup'"):
        train.main(["--data", str(tiny_data / "train"), "--out", str(tmp_path / "o"), "--config",
                    str(tmp_path / "bad.yaml")])


def test_validation_scores_hand_placed_poses():
    """validate() on a real PoseNet whose regression head outputs a fixed pose: the expected
    fractions follow from the distances, with no training involved."""
    import math

    import torch

    from genpose_ros import CATEGORIES
    from genpose_ros.pose.nets import PoseNet
    from genpose_ros.pose.sde import get_sde

    torch.manual_seed(0)
    model = PoseNet(dict(TINY_MODEL, categories=list(CATEGORIES)))
    cloud = torch.randn(4, 128, 3) * 0.03
    cloud -= cloud.mean(1, keepdim=True)
    centres = torch.tensor([[0.1, 0.0, 0.6], [0.0, 0.1, 0.7], [-0.1, 0.0, 0.5], [0.0, -0.1, 0.8]])
    offset = torch.tensor([[0.01, 0, 0], [0.01, 0, 0], [0.035, 0, 0], [0.035, 0, 0]])  # t - centroid
    batch = {"points": cloud + centres[:, None], "R": torch.eye(3).expand(4, 3, 3), "t": centres + offset,
             "size": torch.full((4, 3), 0.1), "category": torch.full((4,), CATEGORIES.index("laptop")),
             "handle_visible": torch.ones(4, dtype=torch.bool)}
    cfg = {"val_steps": 2}
    sde = get_sde("ve", sigma_min=0.01, sigma_max=50.0, eps=1e-5)

    def head_outputs(angle_deg: float, t: list[float]):
        a = math.radians(angle_deg)
        with torch.no_grad():
            model.regression[-1].weight.zero_()
            model.regression[-1].bias.copy_(torch.tensor([math.cos(a), math.sin(a), 0, -math.sin(a), math.cos(a), 0, *t]))
        return train.validate(model, sde, [batch], cfg)

    # 0 deg, t - centroid = 1 cm in x: instances 0, 1 exact; 2, 3 off by 2.5 cm (> 2, <= 5)
    out = head_outputs(0.0, [0.01, 0, 0])
    assert out["val_regression_5deg2cm"] == 50.0 and out["val_regression_10deg5cm"] == 100.0
    # 7 deg about z: outside 5 deg, inside 10 deg for all
    out = head_outputs(7.0, [0.01, 0, 0])
    assert out["val_regression_5deg2cm"] == 0.0 and out["val_regression_10deg5cm"] == 100.0
    # 12 deg: outside both
    out = head_outputs(12.0, [0.035, 0, 0])
    assert out["val_regression_5deg2cm"] == 0.0 and out["val_regression_10deg5cm"] == 0.0
