"""`genpose demo` failure paths: a missing pose model, a graph that publishes nothing."""
import json
import subprocess
import sys




def test_demo_reports_missing_model_and_failed_graph(tmp_path, tiny_pose_checkpoint):
    demo = [sys.executable, "-m", "genpose_ros.cli", "demo", "--frames", "1", "--out", str(tmp_path)]
    r = subprocess.run(demo + ["--checkpoint", str(tmp_path / "none.pt")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "no pose checkpoint" in r.stderr
    # a graph whose pose node cannot start publishes nothing: the demo says so and fails
    r = subprocess.run(demo + ["--checkpoint", str(tiny_pose_checkpoint), "--mode", "fast",
                               "--masks", "ground_truth"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "exited during start-up" in r.stderr and "published no detections" in r.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["frames"]["with_poses"] == 0
