"""realsense_node (sim source through librealsense's software device) over real DDS."""
import subprocess
import sys

import numpy as np
import pytest

import rclpy

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from vision_msgs.msg import Detection2DArray, Detection3DArray  # noqa: E402

from conftest import spin_until  # noqa: E402
from genpose_ros.ros.conversions import image_to_numpy  # noqa: E402
from genpose_ros.ros.masks import decode_masks  # noqa: E402
from genpose_ros.ros.qos import qos_from_name  # noqa: E402
from genpose_ros.ros.tf import TransformBuffer, TransformListener  # noqa: E402

NS = "/camera/camera"
TOPICS = {
    "color": (Image, f"{NS}/color/image_raw"),
    "color_info": (CameraInfo, f"{NS}/color/camera_info"),
    "depth": (Image, f"{NS}/aligned_depth_to_color/image_raw"),
    "depth_info": (CameraInfo, f"{NS}/aligned_depth_to_color/camera_info"),
    "gt": (Detection3DArray, f"{NS}/ground_truth"),
    "gt_masks": (Image, f"{NS}/ground_truth/masks"),
    "gt_det2d": (Detection2DArray, f"{NS}/ground_truth/detections_2d"),
}


def _stamp(msg):
    return (msg.header.stamp.sec, msg.header.stamp.nanosec)


def test_sim_camera_publishes_realsense_topics(ros_context):
    proc = subprocess.Popen([sys.executable, "-m", "genpose_ros.ros.realsense_node", "--ros-args",
                             "-p", "source:=sim", "-p", "frame_rate:=4", "-p", "n_frames:=6",
                             "-p", "seed:=3", "-p", "n_objects:=3", "-p", "wait_for_subscribers:=1"])
    try:
        node = rclpy.create_node("realsense_test_listener", context=ros_context)
        ex = SingleThreadedExecutor(context=ros_context)
        ex.add_node(node)
        got = {k: {} for k in TOPICS}
        for key, (typ, topic) in TOPICS.items():
            node.create_subscription(typ, topic, lambda m, k=key: got[k].setdefault(_stamp(m), m),
                                     qos_from_name("reliable", 5))
        buf = TransformBuffer()
        TransformListener(buf, node)

        def complete():
            common = set.intersection(*(set(v) for v in got.values()))
            return bool(common) and buf.can_transform("camera_link", "camera_color_optical_frame")

        assert spin_until(ex, complete, 40.0), {k: len(v) for k, v in got.items()}
        stamp = sorted(set.intersection(*(set(v) for v in got.values())))[0]
        m = {k: v[stamp] for k, v in got.items()}
        assert m["color"].encoding == "rgb8" and m["depth"].encoding == "16UC1"
        for k in m:
            assert m[k].header.frame_id == "camera_color_optical_frame", k
        color, depth = image_to_numpy(m["color"]), image_to_numpy(m["depth"])
        assert color.shape == (480, 640, 3) and depth.shape == (480, 640)
        valid = depth[depth > 0]
        assert valid.size > 0.5 * depth.size and 150 < np.median(valid) < 3000  # millimetres
        assert m["color_info"].k[0] > 0 and list(m["color_info"].k) == list(m["depth_info"].k)
        assert m["color_info"].distortion_model == "plumb_bob" and not any(m["color_info"].d)  # rendered pinhole
        instances = decode_masks(m["gt_masks"], m["gt_det2d"])
        assert len(instances) == len(m["gt"].detections) == 3
        assert {d.id for d in m["gt"].detections} == {str(i.instance_id) for i in instances}
        for inst in instances:
            assert inst.mask.sum() > 0
        for det in m["gt"].detections:  # objects in front of the camera, plausible sizes
            assert 0.1 < det.bbox.center.position.z < 2.5
            assert 0.01 < det.bbox.size.x < 0.6
        T = buf.lookup("camera_link", "camera_color_optical_frame")
        np.testing.assert_allclose(T[:3, 2], [1, 0, 0], atol=1e-6)   # optical z = link x
        np.testing.assert_allclose(T[:3, 0], [0, -1, 0], atol=1e-6)  # optical x = -link y
        node.destroy_node()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("model, coeffs", [("none", [0.0] * 5), ("inverse_brown_conrady", [0.0] * 5),
                                           ("brown_conrady", [-0.1, 0.05, 0.001, 0.002, 0.0]),
                                           ("inverse_brown_conrady", [0.08, -0.04, 0.001, -0.001, 0.0]),
                                           ("modified_brown_conrady", [-0.06, 0.07, 0.0005, 0.0008, -0.02])])
def test_stream_distortion_describes_every_librealsense_model_as_plumb_bob(model, coeffs):
    """The colour stream's lens model, as realsense_node's camera_info gives it: the plumb_bob
    coefficients put every point where librealsense projects it (within 0.05 px)."""
    import cv2
    import pyrealsense2 as rs

    from genpose_ros.data.realsense import stream_distortion

    intr = rs.intrinsics()
    intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = 640, 480, 615.0, 612.0, 318.0, 242.0
    intr.model, intr.coeffs = getattr(rs.distortion, model), coeffs
    stream = rs.video_stream()
    stream.type, stream.index, stream.uid, stream.fmt, stream.bpp = rs.stream.color, 0, 0, rs.format.rgb8, 3
    stream.width, stream.height, stream.fps, stream.intrinsics = 640, 480, 30, intr
    device = rs.software_device()
    profile = device.add_sensor("Color").add_video_stream(stream)
    d = stream_distortion(profile)
    if not any(coeffs):
        assert d == ()
        return
    if model == "brown_conrady":
        np.testing.assert_allclose(d, coeffs, atol=1e-7)
    points = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 21), np.linspace(-0.38, 0.38, 17), [1.0]), -1).reshape(-1, 3)
    K = np.array([[615.0, 0, 318.0], [0, 612.0, 242.0], [0, 0, 1]])
    ours = cv2.projectPoints(points, np.zeros(3), np.zeros(3), K, np.asarray(d))[0].reshape(-1, 2)
    theirs = np.array([rs.rs2_project_point_to_pixel(intr, p.tolist()) for p in points])
    assert np.abs(ours - theirs).max() < 0.05
    pinhole = points[:, :2] * [615.0, 612.0] + [318.0, 242.0]
    assert np.abs(pinhole - theirs).max() > 3.0     # a distortion worth the trouble


def test_sim_source_renders_the_d435_mode_asked_for():
    from genpose_ros.data.camera import D435_1280x720
    from genpose_ros.ros.realsense_node import PARAMS, make_source

    source = make_source({**PARAMS, "width": 1280, "height": 720, "n_objects": 2})
    try:
        assert source.intrinsics == D435_1280x720
        capture = source.read()
        assert capture.color.shape == (720, 1280, 3) and capture.depth_mm.shape == (720, 1280)
    finally:
        source.close()
    with pytest.raises(ValueError, match="source sim renders the D435 colour modes 640x480 and 1280x720; "
                                         "width x height is 800x600"):
        make_source({**PARAMS, "width": 800, "height": 600})


def _collect(context, done, timeout):
    """{stamp: colour} and {stamp: depth} until ``done(colour, depth)``."""
    node = rclpy.create_node("bag_test_listener", context=context)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(node)
    colour, depth = {}, {}
    node.create_subscription(Image, TOPICS["color"][1], lambda m: colour.setdefault(_stamp(m), image_to_numpy(m)),
                             qos_from_name("reliable", 10))
    node.create_subscription(Image, TOPICS["depth"][1], lambda m: depth.setdefault(_stamp(m), image_to_numpy(m)),
                             qos_from_name("reliable", 10))
    node.create_subscription(CameraInfo, TOPICS["color_info"][1], lambda m: None, 10)
    ok = spin_until(ex, lambda: done(colour, depth), timeout)
    spin_until(ex, lambda: False, 1.0)  # stragglers of the last frame
    node.destroy_node()
    assert ok, f"got {len(colour)} colour and {len(depth)} depth images"
    return colour, depth


def test_sim_recording_plays_back_as_bag_source(ros_context, tmp_path):
    bag = tmp_path / "sim.db3"
    rec = subprocess.Popen([sys.executable, "-m", "genpose_ros.ros.realsense_node", "--ros-args",
                            "-p", "source:=sim", "-p", "frame_rate:=4", "-p", "n_frames:=4",
                            "-p", "n_objects:=2", "-p", f"record_path:={bag}",
                            "-p", "wait_for_subscribers:=1"])
    try:
        colours, depths = _collect(ros_context, lambda c, d: len(c) >= 2 and any(k in c for k in d), 40.0)
    finally:
        rec.send_signal(2)
        rc = rec.wait(timeout=30)   # the recorder closes its bag: slow on a busy machine
    assert rc == 0, f"recording realsense_node exited with {rc}"
    assert bag.is_file() and bag.stat().st_size > 0, f"no recording at {bag}"
    play = subprocess.Popen([sys.executable, "-m", "genpose_ros.ros.realsense_node", "--ros-args",
                             "-p", "source:=bag", "-p", f"bag_path:={bag}", "-p", "frame_rate:=4",
                             "-p", "wait_for_subscribers:=1"])  # loops: mixed pairs are dropped

    def a_pair_to_compare(played, played_depth):   # a played frame with depth whose published one had depth
        return any(np.array_equal(c, colours[k]) for s, c in played.items() if s in played_depth
                   for k in depths if k in colours)
    try:
        played, played_depth = _collect(ros_context, a_pair_to_compare, 40.0)
    finally:
        play.send_signal(2)
        assert play.wait(timeout=30) == 0
    # played frames are the published ones, pixel for pixel, colour with the depth of the same
    # frame (frames lost in transport in either run are not compared; the playback loops until
    # a frame received with its depth in both runs came)
    compared = 0
    for stamp, c in played.items():
        same = [k for k, ref in colours.items() if np.array_equal(c, ref)]
        if same and stamp in played_depth and same[0] in depths:
            dm = [k for k, ref in depths.items() if np.array_equal(played_depth[stamp], ref)]
            assert dm == [same[0]], f"played frame {stamp}: colour = published {same}, depth = published {dm}"
            compared += 1
    assert compared >= 1, f"no played frame matched; published {sorted(colours)}, played {sorted(played)}"


def test_bag_source_without_a_recording_says_which_parameter(tmp_path):
    from genpose_ros.data.realsense import BagSource

    with pytest.raises(FileNotFoundError, match=r"^a bag source needs a recording: set bag_path"):
        BagSource("")
    with pytest.raises(FileNotFoundError, match=r"not found"):
        BagSource(str(tmp_path / "nope.bag"))
