"""pose_node's input checks over real DDS (a node process, the tiny real model): each bad input
gives its warning, is repaired or dropped as docs/ros.md says, and the next good frame is
processed."""
import math
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import rclpy

from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_rosout_default  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from vision_msgs.msg import Detection3DArray  # noqa: E402

from genpose_ros.data.camera import D435_640x480  # noqa: E402
from genpose_ros.ros.conversions import intrinsics_to_camera_info, numpy_to_image  # noqa: E402
from genpose_ros.ros.frame_input import (InputProblem, cap_detections, clamp_scores,  # noqa: E402
                                         instance_points, read_depth_mm, read_frame)
from genpose_ros.ros.masks import InstanceMask, encode_masks  # noqa: E402
from genpose_ros.ros.sync import ApproximateSync, StampOrder  # noqa: E402
from genpose_ros.ros.qos import qos_from_name  # noqa: E402
from conftest import spin_until  # noqa: E402
from test_data_geometry import distorted_view  # noqa: E402
from test_ros_pose_node import H, W, Rig, good_arrays  # noqa: E402


class CheckRig(Rig):
    """Publishes whole frames at a chosen stamp; records every detections message by stamp."""

    def __init__(self, context):
        super().__init__(context)
        self.all_detections: dict[tuple[int, int], list] = {}
        self.node.create_subscription(
            Detection3DArray, "/genpose/detections",
            lambda m: self.all_detections.setdefault(_key(m.header.stamp), []).append(m),
            qos_from_name("reliable", 5))
        self.t_ns = 200 * 10**9

    def frame(self, dt_s=0.1, depth_msg=None, color_msg=None, dets=None, ids=None, depth=None,
              det2d_offset_s=0.0, stamp_ns=None, distortion=None, skip=()):
        """Publish one frame ``dt_s`` after the newest stamp so far (or at ``stamp_ns``); its key."""
        t_ns = stamp_ns if stamp_ns is not None else self.t_ns + int(dt_s * 1e9)
        self.t_ns = max(self.t_ns, t_ns)
        d0, i0, c0, k0 = good_arrays()
        header = Header(frame_id="camera_color_optical_frame", stamp=_time(t_ns))
        masks, det2d = encode_masks(i0 if ids is None else ids, k0 if dets is None else dets, header)
        det2d.header.stamp = _time(t_ns + int(det2d_offset_s * 1e9))
        for m in (depth_msg, color_msg):
            if m is not None:
                m.header = Header(frame_id=header.frame_id, stamp=header.stamp)
        info = intrinsics_to_camera_info(D435_640x480, header)
        if distortion is not None:    # (model, coefficients): sent ahead, the images follow
            info.distortion_model, info.d = distortion[0], list(distortion[1])
            self.pubs["info"].publish(info)
            self.spin_until(lambda: False, 0.3)
        self.pubs["info"].publish(info)
        self.pubs["color"].publish(color_msg or numpy_to_image(c0, "rgb8", header))
        self.pubs["masks"].publish(masks)
        self.pubs["det2d"].publish(det2d)
        if "depth" not in skip:
            self.pubs["depth"].publish(depth_msg or numpy_to_image(d0 if depth is None else depth,
                                                                   "16UC1", header))
        return _key(header.stamp)

    def processed(self, key, n=None, timeout=30.0):
        ok = self.spin_until(lambda: key in self.all_detections, timeout)
        assert ok, f"frame {key} not processed; warnings: {self.warnings}"
        msg = self.all_detections[key][0]
        assert n is None or len(msg.detections) == n, (len(msg.detections), self.warnings)
        return msg

    def not_processed(self, key, wait_s=1.5):
        self.spin_until(lambda: False, wait_s)
        assert key not in self.all_detections, f"frame {key} was processed"

    def overlay_for(self, key, timeout=10.0):
        self.spin_until(lambda: any(_key(o.header.stamp) == key for o in self.overlays), timeout)
        return next((o for o in self.overlays if _key(o.header.stamp) == key), None)


def _time(t_ns):
    return Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9)


def _key(stamp):
    return (stamp.sec, stamp.nanosec)


@pytest.fixture(scope="module")
def rig(tiny_pose_checkpoint):
    context = rclpy.Context()
    rclpy.init(context=context)
    proc = subprocess.Popen([sys.executable, "-m", "genpose_ros.ros.pose_node", "--ros-args",
                             "-p", f"checkpoint:={tiny_pose_checkpoint}", "-p", "min_points:=30",
                             "-p", "slop:=0.02"])
    r = CheckRig(context)
    try:
        ready = r.spin_until(lambda: all(p.get_subscription_count() > 0 for p in r.pubs.values())
                             and r.node.count_publishers("/genpose/detections") > 0, 60.0)
        assert ready, "pose_node did not come up"
        r.spin_until(lambda: False, 0.3)
        # warm-up (the first frame is slow); camera_info travels on its own topic, so the first
        # frames may meet the node before it (skipped with a warning): a later one must go through
        for _ in range(3):
            key = r.frame()
            if r.spin_until(lambda: key in r.all_detections, 40.0):
                break
        r.processed(key, 2, timeout=1.0)
        r.warnings.clear()
    except BaseException:   # a failed start must not leave the node running into the next modules
        r.node.destroy_node()
        context.try_shutdown()
        proc.kill()
        proc.wait(timeout=10)
        raise
    yield r
    assert proc.poll() is None, "pose_node died"
    r.node.destroy_node()
    context.try_shutdown()
    proc.send_signal(2)
    assert proc.wait(timeout=10) == 0


def test_32fc1_depth_in_millimetres_is_read_as_millimetres_and_warned_once(rig):
    depth_mm = good_arrays()[0].astype(np.float32)   # 600 / 700 / 900: millimetres in 32FC1
    key = rig.frame(depth_msg=numpy_to_image(depth_mm, "32FC1"))
    rig.expect_warning("32FC1 depth holds millimetres, not metres")
    assert any("median 900 over 307200 valid pixels" in w for w in rig.warnings), rig.warnings
    rig.processed(key, 2)   # with the depth read_depth_mm gives (test below), not 65 m
    key = rig.frame(depth_msg=numpy_to_image(depth_mm, "32FC1"))
    rig.processed(key, 2)
    assert sum("32FC1 depth holds millimetres" in w for w in rig.warnings) == 1
    rig.processed(rig.frame(), 2)


def test_depth_in_wrong_units_is_refused(rig):
    metres_as_int = np.ones((H, W), np.uint16)            # 16UC1 holding metres: 1 "mm"
    key = rig.frame(depth=metres_as_int)
    rig.expect_warning("implausible 16UC1 depth (millimetres): median 1 over 307200 valid "
                       "pixels is 0.001 m, outside 0.1 to 10 m")
    rig.not_processed(key)
    far = numpy_to_image(np.full((H, W), 40.0, np.float32), "32FC1")   # 40 m: no table top
    key = rig.frame(depth_msg=far)
    rig.expect_warning("implausible 32FC1 depth (metres): median 40")
    rig.not_processed(key)
    rig.processed(rig.frame(), 2)


def test_inputs_that_never_synchronise_are_reported(rig):
    keys = []
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline and not any("not synchronised" in w for w in rig.warnings):
        keys.append(rig.frame(dt_s=1.0, det2d_offset_s=0.3))
        rig.spin_until(lambda: False, 0.4)
    rig.expect_warning("not synchronised")
    text = next(w for w in rig.warnings if "not synchronised" in w)
    # the detections lag their frame by 300 ms and lead the next one by 700 ms (frames 1 s apart):
    # which frame is closest depends on what is still buffered when the warning is written
    gap = re.search(r"are (\d+\.\d) ms apart, more than the slop of 20\.0 ms", text)
    assert "/genpose/detections_2d" in text and gap and round(float(gap.group(1))) % 1000 in (300, 700), text
    assert not any(k in rig.all_detections for k in keys)
    rig.processed(rig.frame(dt_s=0.5), 2)


def test_colour_encodings_convert_or_skip_only_the_overlay(rig):
    _, _, color, _ = good_arrays()
    for enc, img in (("mono8", color[:, :, 0]), ("bgra8", np.dstack([color, color[:, :, :1]]))):
        key = rig.frame(color_msg=numpy_to_image(np.ascontiguousarray(img), enc))
        rig.processed(key, 2)
        overlay = rig.overlay_for(key)
        assert overlay is not None and overlay.encoding == "rgb8", enc
    yuv = numpy_to_image(np.zeros((H, W), np.uint16), "16UC1")
    yuv.encoding = "yuv422"
    key = rig.frame(color_msg=yuv)
    rig.expect_warning("colour image: wrong encoding 'yuv422'")
    assert any("overlay skipped, poses still published" in w for w in rig.warnings)
    rig.processed(key, 2)
    assert rig.overlay_for(key, timeout=1.0) is None
    small = numpy_to_image(color[:240, :320].copy(), "rgb8")
    key = rig.frame(color_msg=small)
    rig.expect_warning("colour image 320x240 differs from depth 640x480; overlay skipped")
    rig.processed(key, 2)
    key = rig.frame()
    rig.processed(key, 2)
    assert rig.overlay_for(key) is not None


def test_camera_info_with_a_distortion_model_it_cannot_undo_is_refused(rig):
    key = rig.frame(distortion=("equidistant", [0.1, 0.0, 0.0, 0.0]))
    rig.expect_warning("distortion model 'equidistant' (coefficients [0.1, 0.0, 0.0, 0.0]) is not supported")
    rig.not_processed(key)
    rig.processed(rig.frame(distortion=("plumb_bob", BARREL)), 2)


def test_an_input_that_sends_nothing_is_named(rig):
    """realsense2_camera without align_depth.enable: colour and masks arrive, aligned depth never."""
    text = "no message on /camera/camera/aligned_depth_to_color/image_raw for "
    assert not any("no message on" in w for w in rig.warnings), rig.warnings   # none before
    deadline, keys = time.monotonic() + 8.0, []
    while time.monotonic() < deadline and not any(text in w for w in rig.warnings):
        keys.append(rig.frame(skip=("depth",)))
        rig.spin_until(lambda: False, 0.25)
    rig.expect_warning(text, timeout=1.0)
    assert not any(k in rig.all_detections for k in keys)
    rig.processed(rig.frame(), 2)   # depth back: frames go through


def test_no_input_at_all_is_named_with_each_topics_publishers(rig, tiny_pose_checkpoint):
    """A pose_node in a namespace nobody publishes in (a camera not started): after input_timeout
    one warning naming every input and its publishers; again after the inputs go quiet."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("idle_watch", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    warnings = []
    # /rosout's own QoS (transient local): a warning sent before this subscription matched still comes
    node.create_subscription(Log, "/rosout", lambda m: warnings.append(m.msg)
                             if m.name == "idle.pose_node" and "no input for" in m.msg else None,
                             qos_profile_rosout_default)
    masks = node.create_publisher(Image, "/idle/genpose/masks", qos_from_name("reliable", 5))
    proc = subprocess.Popen([sys.executable, "-m", "genpose_ros.ros.pose_node", "--ros-args", "-r", "__ns:=/idle",
                             "-p", f"checkpoint:={tiny_pose_checkpoint}", "-p", "input_timeout:=1.0"])
    try:
        assert spin_until(ex, lambda: warnings, 60.0), "no warning"
        first = warnings[0]
        assert "(since start-up)" in first, first
        assert "/idle/camera/camera/color/camera_info (0 publishers)" in first, first
        assert "/idle/camera/camera/aligned_depth_to_color/image_raw (0 publishers)" in first, first
        # the masks publisher: counted once the node has discovered it (under load, after its first second)
        assert re.search(r"/idle/genpose/masks \((0 publishers|1 publisher)\)", first), first
        spin_until(ex, lambda: False, 1.5)
        assert len(warnings) == 1, warnings          # once per silence
        masks.publish(numpy_to_image(np.zeros((H, W), np.uint16), "16UC1", Header(stamp=_time(10**9))))
        assert spin_until(ex, lambda: len(warnings) > 1, 10.0), warnings
        assert "(since the last message)" in warnings[1], warnings
        assert "/idle/genpose/masks (1 publisher)" in warnings[1], warnings   # it delivered a message
    finally:
        proc.send_signal(2)
        assert proc.wait(timeout=20) == 0
        node.destroy_node()
        ctx.try_shutdown()


def test_scores_outside_0_1_are_clamped(rig):
    key = rig.frame(dets=[(1, "mug", math.nan), (2, "can", 1.7)])
    rig.expect_warning("instance 1 (mug): score nan is not in [0, 1]; used as 0")
    det = rig.processed(key, 1)          # 0 < min_score 0.3: the mug is left out
    assert det.detections[0].results[0].hypothesis.class_id == "can"
    assert 0.0 <= det.detections[0].results[0].hypothesis.score <= 1.0
    rig.expect_warning("instance 2 (can): score 1.7 is not in [0, 1]; used as 1")
    rig.processed(rig.frame(), 2)


def test_repeated_and_older_stamps_are_dropped(rig):
    key = rig.frame()
    rig.processed(key, 2)
    rig.frame(stamp_ns=rig.t_ns)                               # the same stamp again
    rig.expect_warning("repeats the last frame's; dropped")
    before = {k: len(v) for k, v in rig.all_detections.items()}
    rig.frame(stamp_ns=rig.t_ns - 300_000_000)                 # 300 ms late
    rig.expect_warning("is 300.0 ms older than the last frame's; dropped")
    rig.spin_until(lambda: False, 1.0)
    assert {k: len(v) for k, v in rig.all_detections.items()} == before
    assert len(rig.all_detections[key]) == 1
    rig.processed(rig.frame(), 2)
    restart = rig.frame(stamp_ns=rig.t_ns - 30 * 10**9)       # a bag played again
    rig.expect_warning("stamps jumped back 30.0 s")
    rig.processed(restart, 2)
    rig.processed(rig.frame(stamp_ns=restart[0] * 10**9 + restart[1] + 10**8), 2)


def test_instances_beyond_the_cap_are_dropped_lowest_score_first(rig):
    ids = np.zeros((H, W), np.uint16)
    depth = np.full((H, W), 900, np.uint16)
    dets = []
    for i in range(1000):                     # 1000 instances of 8 x 8 px at 0.6 m
        r, c = divmod(i, 40)
        ids[10 + 12 * r: 18 + 12 * r, 10 + 15 * c: 18 + 15 * c] = i + 1
        dets.append((i + 1, "can", 0.5 + 0.4 * ((i * 7919) % 1000) / 1000))
    depth[ids > 0] = 600
    t0 = time.monotonic()
    key = rig.frame(ids=ids, depth=depth, dets=dets)
    rig.expect_warning("1000 instances in the frame, more than max_instances 20: the 980 "
                       "lowest-scoring dropped")
    rig.processed(key, 20)
    assert time.monotonic() - t0 < 30.0   # 69 s before the cap, on this machine
    rig.processed(rig.frame(), 2)


def test_tracking_node_starts_over_when_the_source_restarts(rig, tiny_pose_checkpoint):
    """A bag played again: tracking_node drops its tracks (and estimates from scratch, the same
    objects taking the same, freed names) instead of dropping frames."""
    proc = subprocess.Popen([sys.executable, "-m", "genpose_ros.ros.tracking_node", "--ros-args",
                             "-p", f"checkpoint:={tiny_pose_checkpoint}", "-p", "min_points:=30",
                             "-p", "output_prefix:=/tracking"])
    names, logs = {}, []
    rig.node.create_subscription(Log, "/rosout", lambda m: logs.append(m.msg)
                                 if m.name == "tracking_node" else None, 100)
    rig.node.create_subscription(Detection3DArray, "/tracking/detections",
                                 lambda m: names.setdefault(_key(m.header.stamp),
                                                            sorted(d.id for d in m.detections)),
                                 qos_from_name("reliable", 5))
    try:
        assert rig.spin_until(lambda: rig.node.count_subscribers("/genpose/masks") >= 2, 60.0)
        rig.spin_until(lambda: False, 0.5)
        for _ in range(6):  # until two frames in a row came through (the first may be lost)
            key = rig.frame(dt_s=1.0)
            rig.spin_until(lambda: key in names, 20.0)
            done = sorted(names)
            if len(done) >= 2 and names[done[-1]] == names[done[-2]]:
                break
        tracked = names[sorted(names)[-1]]
        assert len(tracked) == 2 and names[sorted(names)[-2]] == tracked, names
        restart = rig.frame(stamp_ns=rig.t_ns - 30 * 10**9)
        assert rig.spin_until(lambda: restart in names, 30.0), names
        assert names[restart] == tracked, names
        assert rig.spin_until(lambda: any("reset: dropping 2 tracks" in m for m in logs), 10.0), logs
    finally:
        proc.send_signal(2)
        assert proc.wait(timeout=10) == 0


# -- the checks themselves (pure functions) ------------------------------------------------------

def test_read_depth_mm_units():
    depth = good_arrays()[0]
    mm_as_metres = numpy_to_image(depth.astype(np.float32), "32FC1")
    got, note = read_depth_mm(mm_as_metres)
    assert np.array_equal(got, depth) and "median 900 over 307200 valid pixels" in note
    metres = numpy_to_image(depth.astype(np.float32) / 1000, "32FC1")
    got, note = read_depth_mm(metres)
    assert np.array_equal(got, depth) and note is None
    with pytest.raises(InputProblem, match=r"median 900 over 307200 valid pixels is 0.9 m, "
                                           r"outside 1 to 10 m \(min_depth, max_depth\)"):
        read_depth_mm(numpy_to_image(depth, "16UC1"), depth_range_m=(1.0, 10.0))


BARREL = (-0.12, 0.05, 0.001, -0.0015, 0.0)


def test_a_distorted_camera_is_read_as_its_pinhole_camera():
    """Depth and masks of a camera_info with lens distortion are undistorted before the points
    are taken: each object's points land where the pinhole camera's do."""
    depth, ids, color, dets = good_arrays()
    depth[20:80, 20:90], ids[20:80, 20:90] = 800, 3           # a third object in the corner
    dets = dets + [(3, "bowl", 0.7)]
    header = Header(frame_id="camera_color_optical_frame", stamp=_time(5 * 10**9))

    def points(depth, ids, model, coefficients):
        masks, det2d = encode_masks(ids, dets, header)
        info = intrinsics_to_camera_info(D435_640x480, header)
        info.distortion_model, info.d = model, list(coefficients)
        frame = read_frame(numpy_to_image(depth, "16UC1", header), masks, det2d, info,
                           numpy_to_image(color, "rgb8", header))
        return instance_points(frame, 512, 30, np.random.default_rng(0)).points.mean(1)

    truth = points(depth, ids, "plumb_bob", [0.0] * 5)
    seen = distorted_view(depth, D435_640x480, BARREL), distorted_view(ids, D435_640x480, BARREL)
    assert np.abs(points(*seen, "plumb_bob", [0.0] * 5) - truth).max() > 0.01   # read as pinhole: off
    for model, coefficients in (("plumb_bob", BARREL), ("rational_polynomial", BARREL + (0.0,) * 3)):
        assert np.abs(points(*seen, model, coefficients) - truth).max() < 0.003
    with pytest.raises(InputProblem, match=r"distortion model 'equidistant' \(coefficients \[0.1, 0.0, 0.0, 0.0\]\) "
                                           r"is not supported \(plumb_bob, rational_polynomial\); publish rectified"):
        points(*seen, "equidistant", [0.1, 0.0, 0.0, 0.0])
    assert np.allclose(points(depth, ids, "equidistant", [0.0] * 4), truth)   # no distortion: any model


def test_cap_keeps_the_highest_scores_in_order():
    ids = np.zeros((H, W), np.uint16)
    scores = [0.2, 0.9, math.nan, 0.7, 0.95]
    for i in range(5):
        ids[10 * i: 10 * i + 5, :5] = i + 1
    _, det2d = encode_masks(ids, [(i + 1, "mug", s) for i, s in enumerate(scores)], Header())
    capped, notes = cap_detections(det2d, 3)
    assert [d.id for d in capped.detections] == ["2", "4", "5"]
    assert notes == ["5 instances in the frame, more than max_instances 3: the 2 lowest-scoring "
                     "dropped"]
    assert cap_detections(det2d, 0) == (det2d, []) and cap_detections(det2d, 5) == (det2d, [])


def test_clamp_scores():
    insts = [InstanceMask(i + 1, np.ones((2, 2), bool), "can", s)
             for i, s in enumerate([math.nan, -0.5, 1.5, math.inf, 0.4])]
    notes = clamp_scores(insts)
    assert [i.score for i in insts] == [0.0, 0.0, 1.0, 1.0, 0.4] and len(notes) == 4
    assert notes[1] == "instance 2 (can): score -0.5 is not in [0, 1]; used as 0"


def test_stamp_order():
    order = StampOrder(restart_s=1.0)
    s = 10**9
    assert order.check(5 * s) == (True, None)
    assert order.check(5 * s) == (False, "stamp 5.000000000 repeats the last frame's; dropped")
    assert order.check(5 * s - 2 * 10**8)[0] is False
    assert order.check(6 * s) == (True, None)
    accept, note = order.check(2 * s)
    assert accept and "stamps jumped back 4.0 s" in note
    assert order.check(3 * s) == (True, None)
    with pytest.raises(ValueError, match="restart threshold"):
        StampOrder(0.0)


def test_sync_reports_a_stall_with_the_stamps_and_the_slop():
    early = []   # one input ahead of the other (a segmenter's first frame): no warning for 5 s
    ApproximateSync(2, 0.02, lambda *m: None, on_stall=early.append, stall_s=0.0).add(0, _Msg(10**9))
    assert early == []
    stalls, got = [], []
    sync = ApproximateSync(2, 0.02, lambda *m: got.append(m), names=["masks", "dets"],
                           on_stall=stalls.append, stall_s=0.0, silent_s=0.0)
    for k in (2, 1, 0):   # masks at 99.8, 99.9 and 100.0 s: dets silent from the third on
        sync.add(0, _Msg(100 * 10**9 - k * 10**8))
    assert stalls == ["no message on dets for 0.0 s while masks arrive: is it published under that name? "
                      "(namespace, remapping, or a driver option such as realsense2_camera's "
                      "align_depth.enable)"]
    sync.add(1, _Msg(100 * 10**9 + 300_000_000))
    assert not got and stalls[1:] == ["inputs not synchronised for 0.0 s: the closest stamps (masks "
                                      "100.000000000, dets 100.300000000) are 300.0 ms apart, more "
                                      "than the slop of 20.0 ms"]
    sync.add(0, _Msg(100 * 10**9 + 300_000_000))
    assert len(got) == 1 and len(stalls) == 2


def test_sync_names_a_silent_input_only_once_the_others_have_arrived_for_silent_s():
    """All inputs resuming after a pause: the others' messages ahead of this one's first are no
    silence; the others arriving for silent_s without it are."""
    stalls = []
    sync = ApproximateSync(2, 0.02, lambda *m: None, names=["depth", "masks"], on_stall=stalls.append,
                           stall_s=100.0, silent_s=0.3)
    sync.add(0, _Msg(10 * 10**9))
    sync.add(1, _Msg(10 * 10**9))
    time.sleep(0.4)                       # a pause of both
    for k in range(1, 4):                 # masks resume three times before depth's first arrives
        sync.add(1, _Msg(10 * 10**9 + k * 10**7))
    assert stalls == []
    for k in range(4, 12):                # masks keep arriving, depth does not
        time.sleep(0.05)
        sync.add(1, _Msg(10 * 10**9 + k * 10**7))
    assert stalls and stalls[0].startswith("no message on depth for ") and " s while masks arrive" in stalls[0], stalls


class _Msg:
    def __init__(self, t_ns):
        self.header = Header(stamp=_time(t_ns))


def test_pose_checkpoint_with_nan_weights_is_refused_in_one_line(tiny_pose_checkpoint, tmp_path):
    import torch

    from genpose_ros.pose.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(tiny_pose_checkpoint)
    state = ckpt["model"]
    name = next(iter(state))
    state[name] = torch.full_like(state[name], float("nan"))
    bad = save_checkpoint(tmp_path / "diverged.pt", state, ckpt["model_config"], 5)
    r = subprocess.run([sys.executable, "-m", "genpose_ros.ros.pose_node", "--ros-args",
                        "-p", f"checkpoint:={bad}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "diverged.pt is unusable: NaN or Inf weights in 1 of" in lines[0], r.stderr
