"""`genpose demo` failure paths: bad arguments, a missing or corrupt model, a graph that publishes nothing."""
import json
import subprocess
import sys


def test_demo_reports_bad_arguments_missing_model_and_failed_graph(tmp_path):
    demo = [sys.executable, "-m", "genpose_ros.cli", "demo", "--frames", "1", "--out", str(tmp_path)]
    r = subprocess.run(demo + ["--checkpoint", str(tmp_path / "none.pt")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "none.pt not found" in r.stderr
    r = subprocess.run(demo + ["--mode", "fast"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown mode 'fast'" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # a corrupt model file is one line before the graph starts, whichever node would load it
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint" * 64)
    for flags, what in ((["--checkpoint", str(corrupt)], "pose checkpoint"),
                        (["--masks", "maskrcnn", "--maskrcnn-weights", str(corrupt)], "Mask R-CNN checkpoint")):
        r = subprocess.run(demo + flags, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"genpose demo: error: cannot read {what} {corrupt} (corrupt, truncated"), r.stderr
        assert "starting" not in r.stdout
    # a graph that does not come up in time (no node imports torch in half a second) publishes
    # nothing: the demo says so, stops its nodes, writes its report and fails
    r = subprocess.run(demo + ["--timeout", "0.5", "--masks", "ground_truth"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the graph did not come up within 0 s" in r.stderr and "published no detections" in r.stderr
    assert "Traceback" not in r.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["frames"]["with_poses"] == 0


def test_demo_refuses_to_mix_with_another_graph_on_its_domain(tmp_path):
    """Two graphs on one ROS domain publish on the same topics: the demo's numbers would mix
    both cameras' frames. With another publisher of its colour topic it stops with one line."""
    import rclpy
    from sensor_msgs.msg import Image

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("another_camera", context=context)
    try:
        node.create_publisher(Image, "/camera/camera/color/image_raw", 1)
        r = subprocess.run([sys.executable, "-m", "genpose_ros.cli", "demo", "--frames", "1", "--masks",
                            "ground_truth", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    finally:
        node.destroy_node()
        context.try_shutdown()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "another graph publishes /camera/camera/color/image_raw on ROS_DOMAIN_ID" in r.stderr
    assert "Traceback" not in r.stderr and "starting" not in r.stdout   # no node of its own started


def test_relay_latency_counts_from_the_relayed_input():
    """With ground-truth masks the segmentation stage relays the simulator's masks; its latency
    counts from their arrival, not from the (later) colour image: never negative."""
    from types import SimpleNamespace

    from genpose_ros.ros.demo import stage_timing

    stamp = 100.0
    arrival = {"color": {stamp: stamp + 0.050},            # the large colour image arrives last
               "segmenter_input": {stamp: stamp + 0.010},  # simulator masks
               "masks": {stamp: stamp + 0.017},            # relayed 7 ms later
               "detections": {stamp: stamp + 0.300}}
    timing = stage_timing(SimpleNamespace(arrival=arrival))
    assert abs(timing["latency"]["segmentation"]["mean_ms"] - 7.0) < 1e-6
    assert abs(timing["latency"]["pose"]["mean_ms"] - 283.0) < 1e-6
    # Mask R-CNN reads the colour image: its latency counts from there
    arrival.update(segmenter_input={}, masks={stamp: stamp + 0.250})
    assert abs(stage_timing(SimpleNamespace(arrival=arrival))["latency"]["segmentation"]["mean_ms"] - 200.0) < 1e-6
