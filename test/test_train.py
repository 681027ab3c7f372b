"""`genpose train` end to end on a tiny rendered dataset: stages, logs, checkpoints, resume."""
import json
import math
import subprocess
import sys
import time

import pytest
import yaml

from genpose_ros.pose import train
from genpose_ros.pose.checkpoint import load_checkpoint
from genpose_ros.config import load_config
from genpose_ros.pose.estimator import PoseEstimator
from conftest import TINY_MODEL, tiny_train_config


@pytest.fixture(scope="module")
def tiny_data(tiny_train_val):
    (tiny_train_val / "tiny.yaml").write_text(yaml.safe_dump(tiny_train_config()))
    return tiny_train_val


def _records(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_joint_schedule_stages_logs_and_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "joint"
    rc = train.main(["--data", str(tiny_data / "train"), "--val", str(tiny_data / "val"), "--out", str(out),
                     "--config", str(tiny_data / "tiny.yaml"), "--steps", "12", "--device", "cpu", "--schedule", "joint",
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
    assert train.main(args + ["--steps", "20"]) == 0  # score 14, energy 3, regression head 1, size 2
    stages = list(dict.fromkeys(r["stage"] for r in _records(out) if "loss" in r))
    assert stages == ["score", "energy", "regression_head", "size"]
    last = load_checkpoint(out / "last.pt")
    assert last["step"] == 20 and "raw_model" in last
    # resuming a finished 20-step run with 40 total steps: the plan is recomputed, training continues
    assert train.main(args + ["--steps", "40", "--resume", str(out / "last.pt")]) == 0
    assert load_checkpoint(out / "model.pt")["step"] > 20


def test_init_fine_tunes_from_a_checkpoint_on_a_fresh_schedule(tiny_data, tmp_path):
    import torch

    base = ["--data", str(tiny_data / "train"), "--config", str(tiny_data / "tiny.yaml"), "--device", "cpu"]
    assert train.main(base + ["--out", str(tmp_path / "a"), "--steps", "6"]) == 0
    start = load_checkpoint(tmp_path / "a" / "model.pt")
    # a different encoder on the command line does not matter: the checkpoint's architecture is kept
    assert train.main(base + ["--out", str(tmp_path / "b"), "--steps", "20", "--lr", "1e-9", "--encoder", "genpose",
                              "--init", str(tmp_path / "a" / "model.pt")]) == 0
    tuned = load_checkpoint(tmp_path / "b" / "model.pt")
    assert tuned["step"] == 20 and tuned["model_config"] == start["model_config"]
    from genpose_ros.pose.checkpoint import build_model

    weights = dict(build_model(start).named_parameters())   # (batch-norm statistics do move)
    for k, v in weights.items():   # lr 1e-9: the weights are the checkpoint's
        assert torch.allclose(tuned["model"][k].float(), v.float(), atol=1e-5), k
    with pytest.raises(ValueError, match="--init .* or --resume, not both"):
        train.main(base + ["--out", str(tmp_path / "c"), "--init", str(tmp_path / "a" / "model.pt"),
                           "--resume", str(tmp_path / "a" / "last.pt")])


def test_bad_arguments(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        train.main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--config", str(tiny_data / "tiny.yaml")])
    bad = load_config(tiny_data / "tiny.yaml")
    bad["stages"][bad["schedule"]] = [["warmup", 1.0]]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="unknown training stage 'warmup'"):
        train.main(["--data", str(tiny_data / "train"), "--out", str(tmp_path / "o"), "--config",
                    str(tmp_path / "bad.yaml")])
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump({"stream_mix": {"wide": 1.0, "far": 1.0}}))
    with pytest.raises(ValueError, match=r"mix.yaml: stream_mix: unknown distribution 'far'"):
        train.main(["--data", str(tiny_data / "train"), "--out", str(tmp_path / "o"), "--config",
                    str(tmp_path / "mix.yaml")])


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


def test_time_budget_stops_every_stage_in_time(tiny_data, tmp_path):
    out = tmp_path / "budget"
    t0 = time.monotonic()
    rc = train.main(["--data", str(tiny_data / "train"), "--out", str(out), "--config", str(tiny_data / "tiny.yaml"),
                     "--steps", "1000000", "--device", "cpu", "--time-budget", "6", "--schedule", "joint"])
    assert rc == 0 and time.monotonic() - t0 < 30
    recs = _records(out)
    assert list(dict.fromkeys(r["stage"] for r in recs if "loss" in r)) == ["regression", "joint", "energy", "size"]
    ck = load_checkpoint(out / "model.pt")
    assert 4 <= ck["step"] < 1000000
    assert load_checkpoint(out / "last.pt")["stage_name"] == "done"


def test_render_workers_stream_fresh_instances_into_training(tiny_data, tmp_path, capsys):
    cfg = load_config(tiny_data / "tiny.yaml")
    cfg.update(pool_size=64, stream_min_instances=8, amp="bf16")  # bf16 autocast runs on the CPU too
    (tmp_path / "stream.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "stream"
    rc = train.main(["--stream-workers", "1", "--out", str(out), "--config", str(tmp_path / "stream.yaml"),
                     "--steps", "1000000", "--device", "cpu", "--time-budget", "25", "--stream-mix", "wide=1,close=1"])
    assert rc == 0
    assert "1 render workers (wide 50 %, close 50 %)" in capsys.readouterr().out
    recs = [r for r in _records(out) if "loss" in r]
    assert recs[0]["pool_added"] >= 8 and recs[-1]["pool_added"] > recs[0]["pool_added"]  # fresh scenes arrived
    assert all(math.isfinite(r["loss"]) for r in recs)
    PoseEstimator.from_checkpoint(out / "model.pt")


def test_ddp_two_cpu_processes(tiny_data, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "genpose_ros.pose.train", "--data", str(tiny_data / "train"), "--out", str(out),
           "--config", str(tiny_data / "tiny.yaml"), "--steps", "8", "--threads", "1", "--schedule", "joint"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("training joint schedule") == 1  # only rank 0 reports
    assert "(2 process(es)" in proc.stdout
    assert load_checkpoint(out / "model.pt")["step"] == 8


@pytest.mark.parametrize("extra, code, message", [
    (["--time-budget", "0"], 2, "argument --time-budget: must be > 0, got 0"),
    (["--stream-workers", "-1"], 2, "argument --stream-workers: must be >= 0, got -1"),
    ([], 2, "genpose train: error: give --data (rendered split folders) and/or --stream-workers N"),
    (["--task", "size", "--data", "x", "--stream-workers", "2"], 2, "--stream-workers serves the pose task"),
    (["--task", "segmentation"], 2, "--task segmentation trains on --data (rendered split folders) and/or --stream-workers N"),
    (["--stream-mix", "wide=1"], 2, "--stream-mix chooses what the render workers stream: give --stream-workers N too"),
    (["--stream-workers", "1", "--stream-mix", "standard=1,wild=1"], 2, "--stream-mix: unknown distribution 'wild'"),
])
def test_bad_data_arguments_get_one_line(tmp_path, capsys, extra, code, message):
    from genpose_ros import cli

    try:
        rc = cli.main(["train", "--out", str(tmp_path / "o")] + extra)
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == code and message in err and "Traceback" not in err


def test_convergence_report_at_equal_time(tmp_path, capsys):
    from genpose_ros.evaluation import convergence

    def write(name, curve):  # (elapsed_s, 5deg2cm) validation points, with a training record between
        recs = []
        for i, (t, v) in enumerate(curve):
            recs += [{"step": 10 * i + 5, "stage": "joint", "loss": 1.0, "elapsed_s": t - 1},
                     {"step": 10 * i + 10, "stage": "joint", "elapsed_s": t, "val_diffusion_5deg2cm": v,
                      "val_diffusion_10deg5cm": 2 * v, "val_regression_5deg2cm": v / 2}]
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in recs))
        return f"{name}={path}"

    fast = write("fast", [(100, 10.0), (200, 30.0), (300, 40.0), (400, 41.0)])
    slow = write("slow", [(100, 0.0), (200, 5.0), (300, 20.0), (400, 38.0), (500, 45.0)])
    assert convergence.main(["--logs", fast, slow, "--json", str(tmp_path / "c.json")]) == 0
    r = json.loads((tmp_path / "c.json").read_text())
    assert r["horizon_s"] == 400 and r["checkpoints_s"] == [100, 200, 300, 400]
    assert r["runs"]["fast"]["diffusion_5deg2cm"] == [10.0, 30.0, 40.0, 41.0]
    assert r["runs"]["slow"]["diffusion_5deg2cm"][-1] == 38.0  # the 500 s point is past the horizon
    assert r["runs"]["fast"]["time_to_target_s"] == 300 and r["runs"]["slow"]["time_to_target_s"] == 400  # 0.9 x 41
    assert "| fast | 40 |" in capsys.readouterr().out
    assert convergence.main(["--logs", "nolog"]) == 2
