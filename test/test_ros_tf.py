"""TF over real DDS: our broadcasters in another process, a listener node here."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rclpy

from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from conftest import spin_until  # noqa: E402
from genpose_ros.ros.tf import (TransformBuffer, TransformListener,  # noqa: E402
                                TransformLookupError, matrix_to_transform,
                                transform_to_matrix)

PUBLISHER = textwrap.dedent("""
    import sys, time
    import numpy as np
    import rclpy
    from genpose_ros.ros.tf import (StaticTransformBroadcaster, TransformBroadcaster,
                                    matrix_to_transform)
    rclpy.init()
    node = rclpy.create_node("tf_test_publisher")
    static = StaticTransformBroadcaster(node)
    T = np.eye(4); T[:3, 3] = [0.1, 0.0, 0.05]
    static.send_transform(matrix_to_transform(T, "link_eef", "camera_link"))
    R = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], float).T  # camera_link -> optical
    T = np.eye(4); T[:3, :3] = R
    static.send_transform(matrix_to_transform(T, "camera_link", "camera_color_optical_frame"))
    print("static sent", flush=True)
    dyn = TransformBroadcaster(node)
    T = np.eye(4); T[:3, 3] = [0.0, 0.0, 0.6]
    mode = sys.argv[1]
    end = time.monotonic() + 20
    while time.monotonic() < end and sys.stdin.readable():
        if mode == "dynamic":
            stamp = node.get_clock().now().to_msg()
            dyn.send_transform(matrix_to_transform(T, "camera_color_optical_frame", "mug_0", stamp))
        rclpy.spin_once(node, timeout_sec=0.05)
""")


def _start(mode):
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, mode], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "static sent", f"publisher failed to start: {line!r}"
    return proc


def _stop(proc):
    proc.terminate()
    proc.wait(timeout=10)


def test_matrix_transform_round_trip():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = q, [0.3, -0.2, 1.5]
    msg = matrix_to_transform(T, "a", "b")
    assert (msg.header.frame_id, msg.child_frame_id) == ("a", "b")
    np.testing.assert_allclose(transform_to_matrix(msg), T, atol=1e-9)
    with pytest.raises(ValueError, match="finite"):
        matrix_to_transform(np.full((4, 4), np.nan), "a", "b")


def test_buffer_chains_and_interpolates():
    buf = TransformBuffer()
    Ta = np.eye(4)
    Ta[:3, 3] = [1, 0, 0]
    buf.set_transform(matrix_to_transform(Ta, "world", "cam"), static=True)
    for sec, x in [(1, 0.0), (3, 2.0)]:
        Tb = np.eye(4)
        Tb[:3, 3] = [x, 0, 0]
        m = matrix_to_transform(Tb, "cam", "obj")
        m.header.stamp.sec = sec
        buf.set_transform(m)
    np.testing.assert_allclose(buf.lookup("world", "obj", 2_000_000_000)[:3, 3], [2, 0, 0])
    np.testing.assert_allclose(buf.lookup("world", "obj")[:3, 3], [3, 0, 0])
    np.testing.assert_allclose(buf.lookup("obj", "world")[:3, 3], [-3, 0, 0])
    with pytest.raises(TransformLookupError, match="no data"):
        buf.lookup("world", "obj", 5_000_000_000)
    with pytest.raises(TransformLookupError, match="not connected"):
        buf.lookup("world", "elsewhere")


def _tf_listener(context, name):
    """(node, executor, buffer): a listener node of ours filling a TransformBuffer."""
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    buf = TransformBuffer()
    TransformListener(buf, node)
    return node, executor, buf


def test_tf_and_late_joining_tf_static_over_dds(ros_context):
    proc = _start("dynamic")
    try:
        # Subscribe only after the static set was published: transient local must replay it.
        node, executor, buf = _tf_listener(ros_context, "tf_test_listener")
        ok = spin_until(executor, lambda: buf.can_transform("link_eef", "mug_0"), 15.0)
        assert ok, f"no TF chain link_eef <- mug_0; frames seen: {sorted(buf.frames())}"
        T = buf.lookup("link_eef", "mug_0")
        # mug at z = 0.6 m in the optical frame = 0.6 m along camera_link x, + the eef offset.
        np.testing.assert_allclose(T[:3, 3], [0.7, 0.0, 0.05], atol=1e-6)
        assert "camera_color_optical_frame" in buf.frames()
        node.destroy_node()
    finally:
        _stop(proc)


def test_tf_static_alone_reaches_late_joiner(ros_context):
    proc = _start("static")
    try:
        node, executor, buf = _tf_listener(ros_context, "tf_static_listener")
        ok = spin_until(executor,
                        lambda: buf.can_transform("link_eef", "camera_color_optical_frame"), 15.0)
        assert ok, f"static set not replayed; frames seen: {sorted(buf.frames())}"
        assert not buf.can_transform("link_eef", "mug_0")
        node.destroy_node()
    finally:
        _stop(proc)
