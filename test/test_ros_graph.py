"""The launched sim graph over real DDS: `genpose demo` (realsense_node sim -> maskrcnn_node
ground-truth relay -> pose_node) publishes /tf frames and detections; tracking_node keeps
object identities over a sequence, re-initialises after a reset and reuses the names.

The ground-truth tolerance test needs the shipped pose model (models/genpose_*.pt) and is
skipped without it; everything else runs with a freshly initialised model."""
import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import rclpy

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from std_msgs.msg import Empty  # noqa: E402
from vision_msgs.msg import Detection3DArray  # noqa: E402

from conftest import shipped_pose_checkpoint, spin_until  # noqa: E402
from genpose_ros.ros import launcher  # noqa: E402
from genpose_ros.ros.qos import qos_from_name  # noqa: E402
from genpose_ros.ros.tf import TransformBuffer, TransformListener, TransformLookupError  # noqa: E402

FRAMES = 3


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, tiny_pose_checkpoint):
    """`genpose demo` in a subprocess while this process listens to /tf and the detections."""
    shipped = shipped_pose_checkpoint()
    ckpt = shipped or tiny_pose_checkpoint
    out = tmp_path_factory.mktemp("demo")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("graph_test_listener", context=context)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(node)
    buf = TransformBuffer(cache_s=60.0)
    TransformListener(buf, node)
    dets, gts = {}, {}
    node.create_subscription(Detection3DArray, "/genpose/detections",
                             lambda m: dets.setdefault((m.header.stamp.sec, m.header.stamp.nanosec), m),
                             qos_from_name("reliable", 10))
    node.create_subscription(Detection3DArray, "/camera/camera/ground_truth",
                             lambda m: gts.setdefault((m.header.stamp.sec, m.header.stamp.nanosec), m),
                             qos_from_name("reliable", 10))
    proc = subprocess.Popen([sys.executable, "-m", "genpose_ros.cli", "demo", "--frames", str(FRAMES),
                             "--rate", "2", "--masks", "ground_truth", "--n-objects", "3", "--seed", "2",
                             "--checkpoint", str(ckpt), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while proc.poll() is None:
        ex.spin_once(timeout_sec=0.05)
    drain = time.monotonic() + 1.0          # messages already delivered to this process
    while time.monotonic() < drain:
        ex.spin_once(timeout_sec=0.05)
    log = proc.stdout.read()
    yield dict(rc=proc.returncode, log=log, out=out, buf=buf, dets=dets, gts=gts, shipped=shipped,
               summary=json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else None)
    node.destroy_node()
    context.try_shutdown()


def test_demo_graph_publishes_tf_and_detections(demo_run):
    r = demo_run
    assert r["rc"] == 0, r["log"][-3000:]
    assert r["dets"], "no detections received"
    s = r["summary"]
    # camera streams use best-effort sensor QoS: under load the listener may miss one frame
    assert FRAMES - 1 <= s["frames"]["published"] <= FRAMES and s["frames"]["with_poses"] >= 1
    assert len(s["overlays"]) >= 1 and (r["out"] / s["overlays"][0]).is_file()
    assert s["timing"]["latency"]["pose"]["n"] >= 1
    found, missing = set(), []
    for (sec, nsec), msg in r["dets"].items():
        assert msg.header.frame_id == "camera_color_optical_frame"
        # ground-truth masks: every object with enough depth points, classes as in the simulator
        gt_classes = sorted(d.results[0].hypothesis.class_id for d in r["gts"][(sec, nsec)].detections)
        classes = sorted(d.results[0].hypothesis.class_id for d in msg.detections)
        assert 1 <= len(classes) and all(classes.count(c) <= gt_classes.count(c) for c in classes)
        for d in msg.detections:
            cat, n = d.id.rsplit("_", 1)
            assert cat == d.results[0].hypothesis.class_id and n.isdigit()
            q = d.bbox.center.orientation
            assert abs(np.linalg.norm([q.x, q.y, q.z, q.w]) - 1) < 1e-4
            assert min(d.bbox.size.x, d.bbox.size.y, d.bbox.size.z) > 0
            # the instance's TF frame at the image stamp, under the camera's static TF
            try:
                T = r["buf"].lookup("camera_link", d.id, sec * 1_000_000_000 + nsec)
            except TransformLookupError as exc:
                missing.append(str(exc))
                continue
            p = d.bbox.center.position
            np.testing.assert_allclose(T[:3, 3], [p.z, -p.x, -p.y], atol=1e-5)  # REP 103
            found.add(d.id)
    # every object's frame arrived and matched its detection. /tf is reliable, but a sample lost
    # on a loaded machine is repaired only at the writer's next heartbeat (Fast DDS: 3 s), which
    # the demo's last frames do not live to see: those may be missing, never wrong
    names = {d.id for msg in r["dets"].values() for d in msg.detections}
    assert found == names, (missing, r["log"][-3000:])
    assert all("no data at t=" in m for m in missing), missing
    assert 1 <= s["tf"]["received"] <= s["tf"]["expected"] and "object frames received" in r["log"]
    for line in ("per-object errors", "latency per stage", "names and frames over the sequence"):
        assert line in r["log"]
    c = s["consistency"]  # one name per object over the sequence
    assert c["objects"] >= 1 and c["id_switches"] == 0 and c["distinct_names"] == c["objects"]


def test_demo_poses_within_tolerance_of_ground_truth(demo_run):
    assert demo_run["shipped"] is not None, "the repository ships models/genpose_*.pt"
    # the easy scene (seed 2): a mug, a bowl and a bottle standing on the table
    objs = [o for o in demo_run["summary"]["objects"] if o.get("trans_err_cm") is not None]
    assert len(objs) >= 3
    assert np.median([o["trans_err_cm"] for o in objs]) < 3.0
    assert np.median([o["rot_err_deg"] for o in objs]) < 15.0
    assert np.median([o["size_err_cm"] for o in objs]) < 2.5
    assert np.mean([o["iou"] for o in objs]) > 0.4


def test_tracking_keeps_objects_and_reinitialises_on_reset(ros_context, tiny_pose_checkpoint):
    procs = launcher.parse("sim.launch.yaml", {
        "tracking": "true", "masks_source": "ground_truth", "checkpoint": str(tiny_pose_checkpoint),
        "frame_rate": "2", "n_objects": "3", "seed": "2"})
    node = rclpy.create_node("tracking_test", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    frames = []
    node.create_subscription(Detection3DArray, "/genpose/detections",
                             lambda m: frames.append(sorted(d.id for d in m.detections)),
                             qos_from_name("reliable", 10))
    reset = node.create_publisher(Empty, "/genpose/reset", 10)
    graph = launcher.Launch(procs, stdout=subprocess.PIPE)
    try:
        assert spin_until(ex, lambda: len(frames) >= 3, 60.0), f"tracking output: {frames}"
        before = frames[-1]
        assert len(before) >= 1
        assert frames[-2] == before, f"identities changed without a reset: {frames}"
        assert spin_until(ex, lambda: reset.get_subscription_count() > 0, 10.0)
        n = len(frames)
        reset.publish(Empty())
        assert spin_until(ex, lambda: len(frames) >= n + 2, 30.0)
        after = frames[-1]
        # new tracks take the smallest free number of their class: the same objects get the
        # same names (and TF frames) again
        assert sorted(after) == sorted(before), (before, after)
    finally:
        codes = graph.stop()
        node.destroy_node()
    log = next(p for p in graph.procs if p.name == "tracking_node").popen.stdout.read().decode()
    assert all(c == 0 for c in codes.values()), (codes, log[-2000:])
    m = re.search(r"(\d+) warm-started tracking steps, (\d+) from-scratch estimates \((\d+) steps doubted\), "
                  r"(\d+) resets", log)
    assert m, log[-2000:]
    assert int(m.group(1)) > 0 and int(m.group(2)) >= 2 * len(before) and int(m.group(4)) == 1

