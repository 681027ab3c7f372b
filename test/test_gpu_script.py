"""Rehearsal of scripts/gpu_run.sh on the CPU with a tiny budget: render, train pose (streamed
scenes) and segmentation, benchmark, and collect the results, as on a lent GPU machine."""
import json
import os
import subprocess
import time
from pathlib import Path

import yaml

from conftest import tiny_train_config

REPO = Path(__file__).resolve().parent.parent


def tiny_run_env(tmp_path, out):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_train_config(stream_min_instances=4, pool_size=64,
                                                       stream_mix={"standard": 2, "wide": 1, "close": 1})))
    return {**os.environ, "OUT": str(out), "WORK": str(tmp_path / "work"), "DEVICE": "cpu",
           "WHEELS": str(tmp_path / "no_wheels"),  # this environment's packages
           "BUDGET": "10", "SEG_BUDGET": "4", "RENDER_WORKERS": "1", "TRAIN_SCENES": "1", "VAL_SCENES": "1",
           "TEST_SCENES": "1", "TEST_SEQUENCES": "1", "SEQ_FRAMES": "2", "WIDE_SCENES": "1", "POSE_CONFIG": str(config),
           "SEG_WIDE_SCENES": "1", "SEG_CLOSE_SCENES": "1",
           "POSE_ARGS": "--threads 1", "SEG_ARGS": "--batch-size 1 --threads 1 --init models/maskrcnn_light.pt",
           "SEG_EVAL_ARGS": "--max-frames 1 --threads 1", "PIPELINE_FRAMES": "1",
           "BENCH_ARGS": "--skip-ablations --max-frames 2 --seq-frames 2 --threads 1"}


def test_gpu_run_script_end_to_end_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    env = tiny_run_env(tmp_path, out)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_run.sh")], env=env, capture_output=True,
                          text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout[-4000:]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["bench.json", "bench.md", "genpose_model.pt", "logs.tgz", "maskrcnn_light.pt",
                     "pose_log.jsonl", "run.log", "seg_eval.json"]
    assert all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())
    bench = json.loads((out / "bench.json").read_text())
    assert {"genpose_energy", "score_scaling", "tracking"} <= set(bench["modes"])
    assert bench["machine"]["device"] == "cpu" and bench["convergence"]
    log = [json.loads(line) for line in (out / "pose_log.jsonl").read_text().splitlines()]
    assert log[-1]["pool_added"] > 0 and any("val_diffusion_5deg2cm" in r for r in log)
    seg = json.loads((out / "seg_eval.json").read_text())
    assert seg["n_images"] == 1 and seg["latency"]["device"] == "cpu" and "confusion" in seg
    run_log = (out / "run.log").read_text()
    assert "segmentation training exited 0" in run_log and "done (exit 0)" in run_log
    assert "segmenter median" in run_log and "latency per frame" in run_log   # the per-frame pipeline
    assert {"train", "train_wide", "train_close"} <= {p.name for p in (tmp_path / "work" / "data").iterdir()}
    assert "render workers (standard 50 %, wide 25 %, close 25 %)" in (tmp_path / "work" / "pose.log").read_text()


def test_gpu_run_script_measures_the_shipped_models_without_training(tmp_path):
    """TRAIN=0: no training and no training splits; the benchmark, the segmenter's evaluation and
    the per-frame pipeline run on the shipped models (their GPU numbers in a short call)."""
    out = tmp_path / "out"
    env = {**tiny_run_env(tmp_path, out), "TRAIN": "0"}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_run.sh")], env=env, capture_output=True,
                          text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.md", "logs.tgz", "run.log", "seg_eval.json"]
    bench = json.loads((out / "bench.json").read_text())
    assert Path(bench["checkpoint"]).resolve() == REPO / "models" / "genpose_light.pt"
    assert {"genpose_energy", "score_scaling", "tracking"} <= set(bench["modes"]) and not bench.get("convergence")
    seg = json.loads((out / "seg_eval.json").read_text())
    assert seg["weights"] == "models/maskrcnn_light.pt" and seg["latency"]["device"] == "cpu"
    assert sorted(p.name for p in (tmp_path / "work" / "data").iterdir()) == ["test", "test_seq", "test_wide"]
    run_log = (out / "run.log").read_text()
    assert "no training" in run_log and "training exited" not in run_log and "done (exit 0)" in run_log
    assert "segmenter median" in run_log and "latency per frame" in run_log


def test_gpu_run_script_stops_at_its_deadline_and_collects(tmp_path):
    """A call to the GPU machine ends at 600 s: the script stops the step still running at
    DEADLINE and brings back what exists (here the full benchmark cannot end in 30 s)."""
    out = tmp_path / "out"
    env = {**tiny_run_env(tmp_path, out), "DEADLINE": "30", "BENCH_ARGS": "--threads 1"}
    start = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_run.sh")], env=env, capture_output=True,
                          text=True, timeout=170)
    took = time.monotonic() - start
    assert proc.returncode != 0 and took < 30 + 20 + 30, (took, proc.stdout[-3000:])
    run_log = (out / "run.log").read_text()
    assert "DEADLINE 30s reached" in run_log and "done (exit 1)" in run_log
    assert "benchmarked" not in run_log and {"run.log", "logs.tgz"} <= {p.name for p in out.iterdir()}
    if "] trained" in run_log:   # the models reach $OUT as soon as they are trained
        assert (out / "genpose_model.pt").is_file() and (out / "maskrcnn_light.pt").is_file()


def test_gpu_run_script_reports_a_failure(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"), "DEVICE": "cpu",
           "WHEELS": str(tmp_path / "no_wheels"), "TRAIN_SCENES": "0"}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_run.sh")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert "nothing to generate" in proc.stdout and "done (exit 1)" in proc.stdout
    assert (tmp_path / "out" / "run.log").is_file()
