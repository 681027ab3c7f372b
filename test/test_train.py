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
    assert val and all(0 <= r["val_regression_10deg5cm"] <= 100 for r in val)
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
