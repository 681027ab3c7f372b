"""scripts/soak.py: the sim graph for a while, every node's memory and the detections' latency
sampled over real DDS, then the plot and the per-node summary."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_soak_samples_every_node_and_draws_the_plot(tmp_path):
    out = tmp_path / "soak"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "soak.py"), "--minutes", "0.75", "--every", "5",
                        "--out", str(out), "--", "masks_source:=ground_truth", "frame_rate:=1.0"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) >= 6
    assert {"realsense_node", "maskrcnn_node", "pose_node"} <= set(rows[-1]["nodes"])
    assert all(n["rss_mb"] > 10 for n in rows[-1]["nodes"].values())
    assert rows[-1]["messages"] > 0 and any(r["latency_ms"] for r in rows)
    assert (out / "soak.png").stat().st_size > 1000
    assert "pose_node:" in r.stdout and "peak" in r.stdout
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "soak.py"), "--minutes", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--minutes and --every must be > 0" in r.stderr
