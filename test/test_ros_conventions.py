"""ROS conventions over real DDS: namespaced graphs side by side on one domain, a best-effort
camera, the xArm hand-eye chain against xarm_ros2's D435i mount, the publish_tf
switches, and stable object names, stable yaw and covariances over a sequence of frames."""
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import rclpy

from geometry_msgs.msg import PoseArray  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_rosout_default  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from vision_msgs.msg import Detection2DArray, Detection3DArray  # noqa: E402

from conftest import spin_until  # noqa: E402
from genpose_ros.pose.canonical import AXIS_VIEW_DEG  # noqa: E402
from genpose_ros.ros import launcher  # noqa: E402
from genpose_ros.data.camera import Intrinsics  # noqa: E402
from genpose_ros.ros.conversions import (detections_to_msg, intrinsics_to_camera_info,  # noqa: E402
                                         numpy_to_image, pose_to_rt)
from genpose_ros.ros.masks import encode_masks  # noqa: E402
from genpose_ros.ros.qos import TF_STATIC_LISTENER_QOS, InputSubscription, qos_from_name  # noqa: E402
from genpose_ros.ros.tf import (StaticTransformBroadcaster, TransformBuffer,  # noqa: E402
                                TransformListener, matrix_to_transform)
from test_ros_pose_node import H, W, Rig  # noqa: E402

# xarm_ros2, xarm_description/urdf/camera/realsense_d435i.urdf.xacro: link_eef -> camera_link
XARM_D435I_XYZ = [0.06746, -0.0175, 0.0237]
XARM_D435I_RPY = [np.pi, -np.pi / 2, 0.0]
T_LINK_OPTICAL = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1.0]])  # REP 103


def _listener(context, name):
    node = rclpy.create_node(name, context=context)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(node)
    return node, ex


def _stop(proc):
    proc.send_signal(2)
    return proc.wait(timeout=15)


def test_two_namespaced_graphs_side_by_side(ros_context, tiny_pose_checkpoint):
    """Two sim graphs on one domain, each under its own namespace, camera name and frame prefix."""
    node, ex = _listener(ros_context, "namespaces_test")
    dets = {"robot1": [], "robot2": []}
    tf = []
    for ns in dets:
        node.create_subscription(Detection3DArray, f"/{ns}/genpose/detections", dets[ns].append,
                                 qos_from_name("reliable", 10))
    node.create_subscription(TFMessage, "/tf", lambda m: tf.extend(m.transforms), 100)
    buf = TransformBuffer()
    TransformListener(buf, node)
    graphs = {}
    try:
        for ns in dets:
            procs = launcher.parse("sim.launch.yaml", {
                "namespace": ns, "camera_name": f"{ns}_camera", "frame_prefix": f"{ns}/",
                "masks_source": "ground_truth", "mode": "regression",
                "checkpoint": str(tiny_pose_checkpoint), "frame_rate": "1", "n_objects": "3",
                "seed": "2"})
            graphs[ns] = launcher.Launch(procs, stdout=subprocess.PIPE)
        def tf_prefixes():
            return {t.child_frame_id.split("/")[0] for t in tf if "/" in t.child_frame_id}

        assert spin_until(ex, lambda: all(any(m.detections for m in v) for v in dets.values())
                          and tf_prefixes() == set(dets), 150.0), ({k: len(v) for k, v in dets.items()},
                                                                   tf_prefixes())
        # nothing of either graph at the root: the namespaces moved every topic
        assert node.count_publishers("/genpose/detections") == 0
        assert node.count_publishers("/camera/camera/color/image_raw") == 0
        # (graph discovery can lag its data on a busy machine)
        assert spin_until(ex, lambda: node.count_publishers("/robot2/camera/camera/color/image_raw") == 1, 15.0)
        for ns, msgs in dets.items():
            for m in msgs:
                assert m.header.frame_id == f"{ns}_camera_color_optical_frame"
                assert all(d.id.startswith(f"{ns}/") for d in m.detections), [d.id for d in m.detections]
        for t in tf:
            assert t.header.frame_id == f"{t.child_frame_id.split('/')[0]}_camera_color_optical_frame"
        # the cameras' static frames arrive by late-joiner delivery of /tf_static (may lag too)
        assert spin_until(ex, lambda: all(buf.can_transform(f"{ns}_camera_link", f"{ns}_camera_color_optical_frame")
                                          for ns in dets), 15.0), sorted(buf.frames())
    finally:
        codes = {ns: g.stop() for ns, g in graphs.items()}
        node.destroy_node()
    logs = {ns: "".join(p.popen.stdout.read().decode() for p in g.procs) for ns, g in graphs.items()}
    assert all(c == 0 for cs in codes.values() for c in cs.values()), (codes, logs)


def test_best_effort_camera_connects(ros_context, tiny_pose_checkpoint):
    """A camera publishing best effort (realsense2_camera with *_qos:=SENSOR_DATA) feeds pose_node
    with its default QoS. Small frames: best effort repeats nothing, and a large image lost in one
    fragment on a loaded 2-core machine would make the test about the transport."""
    proc = subprocess.Popen([sys.executable, "-m", "genpose_ros.ros.pose_node", "--ros-args",
                             "-p", f"checkpoint:={tiny_pose_checkpoint}", "-p", "slop:=0.0",
                             "-p", "min_points:=30", "-p", "publish_overlay:=false", "-p", "mode:=regression"])
    try:
        node, ex = _listener(ros_context, "best_effort_camera")
        camera, reliable = qos_from_name("sensor_data", 5), qos_from_name("reliable", 5)
        pubs = {"depth": node.create_publisher(Image, "/camera/camera/aligned_depth_to_color/image_raw", camera),
                "info": node.create_publisher(CameraInfo, "/camera/camera/color/camera_info", camera),
                "masks": node.create_publisher(Image, "/genpose/masks", reliable),
                "det2d": node.create_publisher(Detection2DArray, "/genpose/detections_2d", reliable)}
        dets, logs = [], []
        node.create_subscription(Detection3DArray, "/genpose/detections", dets.append, reliable)
        node.create_subscription(Log, "/rosout", lambda m: logs.append(m.msg) if m.name == "pose_node" else None,
                                 qos_profile_rosout_default)   # transient local: a line sent before it matched comes too
        assert spin_until(ex, lambda: all(p.get_subscription_count() for p in pubs.values()), 60.0)
        intr = Intrinsics(160, 120, 153.75, 153.75, 80.0, 60.0)
        depth = np.full((120, 160), 800, np.uint16)
        ids = np.zeros((120, 160), np.uint16)
        depth[40:70, 30:60], ids[40:70, 30:60] = 600, 1
        for sec in range(1, 31):
            header = Header(frame_id="camera_color_optical_frame")
            header.stamp.sec = sec
            masks, det2d = encode_masks(ids, [(1, "can", 0.9)], header)
            pubs["info"].publish(intrinsics_to_camera_info(intr, header))
            for key, msg in (("masks", masks), ("det2d", det2d), ("depth", numpy_to_image(depth, "16UC1", header))):
                pubs[key].publish(msg)
            if spin_until(ex, lambda: any(d.detections for d in dets), 1.0):
                break
        assert any(d.detections for d in dets), logs
        assert spin_until(ex, lambda: any("subscribed best effort" in m for m in logs), 5.0), logs
        node.destroy_node()
    finally:
        assert _stop(proc) == 0


def test_auto_qos_takes_reliable_and_best_effort_publishers(ros_context):
    node, ex = _listener(ros_context, "auto_qos_test")
    got = {"reliable": [], "best_effort": []}
    subs = {k: InputSubscription(node, Header, f"/qos_{k}", got[k].append, "auto", 5) for k in got}
    pubs = {"reliable": node.create_publisher(Header, "/qos_reliable", qos_from_name("reliable", 5)),
            "best_effort": node.create_publisher(Header, "/qos_best_effort", qos_from_name("sensor_data", 5))}
    assert spin_until(ex, lambda: all(p.get_subscription_count() for p in pubs.values()), 10.0)
    spin_until(ex, lambda: False, 0.5)
    for _ in range(20):
        for p in pubs.values():
            p.publish(Header(frame_id="x"))
        if spin_until(ex, lambda: all(got.values()), 0.5):
            break
    assert all(got.values()), {k: len(v) for k, v in got.items()}
    # a reliable camera keeps its reliable subscription (repeats of lost fragments), a best-effort
    # one gets a best-effort subscription
    assert not subs["reliable"].best_effort and subs["best_effort"].best_effort
    node.destroy_node()


def test_hand_eye_chain_into_link_base_matches_xarm_ros2(ros_context):
    proc = subprocess.Popen([sys.executable, "-m", "genpose_ros.ros.xarm_demo_node", "--ros-args",
                             "-p", "sim_arm:=true", "-p", "task:=handover"])
    try:
        node, ex = _listener(ros_context, "hand_eye_test")
        buf = TransformBuffer()
        TransformListener(buf, node)
        got = []
        node.create_subscription(PoseArray, "/xarm_demo/pre_grasp", got.append, 10)
        pub = node.create_publisher(Detection3DArray, "/genpose/detections", 10)
        # the camera's own static TF, as realsense_node publishes it
        StaticTransformBroadcaster(node).send_transform(
            matrix_to_transform(T_LINK_OPTICAL, "camera_link", "camera_color_optical_frame"))
        assert spin_until(ex, lambda: buf.can_transform("link_base", "camera_color_optical_frame")
                          and pub.get_subscription_count() > 0, 30.0)
        T_eef_cam = np.eye(4)
        T_eef_cam[:3, :3] = Rotation.from_euler("xyz", XARM_D435I_RPY).as_matrix()  # URDF rpy
        T_eef_cam[:3, 3] = XARM_D435I_XYZ
        np.testing.assert_allclose(buf.lookup("link_eef", "camera_link"), T_eef_cam, atol=1e-6)
        # the camera looks out of the flange (optical z = eef z), image x = eef -y: not mirrored
        T_eef_opt = buf.lookup("link_eef", "camera_color_optical_frame")
        np.testing.assert_allclose(T_eef_opt[:3, 2], [0, 0, 1], atol=1e-6)
        np.testing.assert_allclose(T_eef_opt[:3, 0], [0, 1, 0], atol=1e-6)
        # an object 0.4 m in front of the camera lands 0.4 m along the flange axis in link_base
        header = Header(frame_id="camera_color_optical_frame")
        header.stamp = node.get_clock().now().to_msg()
        msg = detections_to_msg(header, ["bowl_0"], ["bowl"], np.eye(3)[None], np.array([[0, 0, 0.4]]),
                                np.array([[0.1, 0.05, 0.1]]), [0.9])
        for _ in range(20):
            pub.publish(msg)
            if spin_until(ex, lambda: got and got[-1].poses, 1.0):  # once it has our camera TF
                break
        assert got and got[-1].poses, "no pre-grasp"
        T_base_eef = buf.lookup("link_base", "link_eef")
        want = T_base_eef @ T_eef_cam @ T_LINK_OPTICAL @ np.array([0, 0, 0.4, 1.0])
        obj = T_base_eef[:3, 3] + 0.4 * T_base_eef[:3, 2] + T_base_eef[:3, :3] @ T_eef_cam[:3, 3]
        np.testing.assert_allclose(want[:3], obj, atol=1e-6)
        R_pre, t_pre = pose_to_rt(got[-1].poses[0])
        assert np.linalg.norm(t_pre[:2] - want[:2]) < 1e-4  # top-down pre-grasp above the object
        np.testing.assert_allclose(R_pre[:, 2], [0, 0, -1], atol=1e-6)
        node.destroy_node()
    finally:
        assert _stop(proc) == 0


def test_publish_tf_false_leaves_the_camera_links_to_the_robot(ros_context):
    procs = [subprocess.Popen([sys.executable, "-m", "genpose_ros.ros.xarm_demo_node", "--ros-args",
                               "-p", "sim_arm:=true", "-p", "publish_tf:=false"]),
             subprocess.Popen([sys.executable, "-m", "genpose_ros.ros.realsense_node", "--ros-args",
                               "-p", "source:=sim", "-p", "frame_rate:=0.5", "-p", "publish_tf:=false"])]
    try:
        node, ex = _listener(ros_context, "publish_tf_test")
        static = []
        node.create_subscription(TFMessage, "/tf_static", lambda m: static.extend(m.transforms),
                                 TF_STATIC_LISTENER_QOS)
        color = []
        node.create_subscription(Image, "/camera/camera/color/image_raw", color.append,
                                 qos_from_name("reliable", 2))
        assert spin_until(ex, lambda: color and static, 60.0), (len(color), len(static))
        spin_until(ex, lambda: False, 2.0)  # a late static message would show up here
        assert {(t.header.frame_id, t.child_frame_id) for t in static} == {("link_base", "link_eef")}
        node.destroy_node()
    finally:
        assert [_stop(p) for p in procs] == [0, 0]


@pytest.fixture
def genpose_pose_node(ros_context, tiny_pose_checkpoint):
    proc = subprocess.Popen([sys.executable, "-m", "genpose_ros.ros.pose_node", "--ros-args",
                             "-p", f"checkpoint:={tiny_pose_checkpoint}", "-p", "slop:=0.0",
                             "-p", "min_points:=30", "-p", "mode:=genpose", "-p", "frame_prefix:=cam1/"])
    rig = Rig(ros_context)
    ready = rig.spin_until(lambda: all(p.get_subscription_count() > 0 for p in rig.pubs.values())
                           and rig.node.count_publishers("/genpose/detections") > 0, 60.0)
    assert ready, "pose_node did not come up"
    time.sleep(0.5)
    yield rig
    rig.node.destroy_node()
    assert _stop(proc) == 0


def _two_cans(a_id, b_id, shift=0):
    depth = np.full((H, W), 900, np.uint16)
    ids = np.zeros((H, W), np.uint16)
    depth[200:260, 100 + shift:160 + shift], ids[200:260, 100 + shift:160 + shift] = 600, a_id
    depth[220:300, 400:450], ids[220:300, 400:450] = 700, b_id
    return depth, ids


def _assert_stable_yaw(R, t):
    """The can is symmetric: its z axis faces the camera, or, seen along its axis, the image top."""
    view, y = -t / np.linalg.norm(t), R[:, 1]
    if abs(y @ view) < np.cos(np.deg2rad(AXIS_VIEW_DEG)):
        assert R[:, 2] @ view == pytest.approx(np.sqrt(1 - (y @ view) ** 2), abs=1e-4)
    else:
        up = np.array([0.0, -1.0, 0.0]) - (np.array([0.0, -1.0, 0.0]) @ y) * y
        np.testing.assert_allclose(R[:, 2], up / np.linalg.norm(up), atol=1e-4)


def test_stable_names_yaw_and_covariance_over_a_sequence(genpose_pose_node):
    rig = genpose_pose_node
    for _ in range(5):  # the first frames may come before pose_node has matched camera_info
        warm = rig.send()
        if rig.spin_until(lambda: warm in rig.detections, 30.0):
            break
    # (instance id of can A, of can B, shift of A, detections order): the segmenter numbers the
    # instances differently every frame, can B disappears for a frame and comes back
    frames = [(1, 2, 0, [1, 2]), (2, 1, 3, [1, 2]), (1, 2, 6, [2, 1]), (1, 0, 9, [1]), (2, 1, 12, [2, 1])]
    names_a, names_b = set(), set()
    for a_id, b_id, shift, order in frames:
        depth, ids = _two_cans(a_id, b_id, shift)
        scores = {a_id: 0.9, b_id: 0.8}
        sec = rig.send(depth=depth, ids=ids, dets=[(i, "can", scores[i]) for i in order])
        rig.expect_processed(sec, len(order), timeout=60.0)
        det = rig.detections[sec].detections
        for i, d in zip(order, det):
            (names_a if i == a_id else names_b).add(d.id)
            R, t = pose_to_rt(d.results[0].pose.pose)
            _assert_stable_yaw(R, t)
            cov = np.array(d.results[0].pose.covariance).reshape(6, 6)
            assert cov[0, 0] >= 0 and np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > -1e-9)
            assert 0.0 <= d.results[0].hypothesis.score <= 1.0
    assert len(names_a) == 1 and len(names_b) == 1 and names_a != names_b, (names_a, names_b)
    assert {n.split("/")[0] for n in names_a | names_b} == {"cam1"}
    children = {t.child_frame_id for t in rig.tf if t.header.stamp.sec > warm}
    assert children == names_a | names_b, children


def test_a_frame_prefix_with_a_leading_slash_is_refused(tiny_pose_checkpoint):
    r = subprocess.run([sys.executable, "-m", "genpose_ros.ros.pose_node", "--ros-args",
                        "-p", f"checkpoint:={tiny_pose_checkpoint}", "-p", "frame_prefix:=/robot1/"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "frame_prefix '/robot1/': TF frame names do not start" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
