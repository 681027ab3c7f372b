"""pose_node with ``gravity_frame``: the table plane needs the robot's up direction from TF; while
TF lacks it the node says so once and keeps serving, and stops saying so once the transform is
there (subprocess node, real DDS)."""
import subprocess
import sys
import time

import numpy as np
import rclpy
from scipy.spatial.transform import Rotation

from genpose_ros.ros.tf import StaticTransformBroadcaster, matrix_to_transform
from test_ros_pose_node import Rig


def test_gravity_frame_from_tf(tiny_pose_checkpoint):
    context = rclpy.Context()
    rclpy.init(context=context)
    proc = subprocess.Popen([sys.executable, "-m", "genpose_ros.ros.pose_node", "--ros-args",
                             "-p", f"checkpoint:={tiny_pose_checkpoint}", "-p", "slop:=0.0",
                             "-p", "min_points:=30", "-p", "gravity_frame:=base_link"])
    rig = Rig(context)
    try:
        ready = rig.spin_until(lambda: all(p.get_subscription_count() > 0 for p in rig.pubs.values())
                               and rig.node.count_publishers("/genpose/detections") > 0, 30.0)
        assert ready, "pose_node did not come up"
        time.sleep(0.3)
        for _ in range(3):  # camera_info may reach the node after the first images
            sec = rig.send()
            if rig.spin_until(lambda: sec in rig.detections, 10.0):
                break
        rig.expect_processed(sec, 2)
        rig.expect_warning("gravity_frame 'base_link': no transform to 'camera_color_optical_frame' yet")
        T = np.eye(4)   # the camera 0.5 m above the base, its optical axis 60 deg below the horizon
        T[:3, :3] = Rotation.from_euler("x", -150.0, degrees=True).as_matrix()
        T[:3, 3] = [0.0, 0.0, 0.5]
        broadcaster = StaticTransformBroadcaster(rig.node)
        broadcaster.send_transform([matrix_to_transform(T, "base_link", "camera_color_optical_frame")])
        rig.spin_until(lambda: False, 3.0)   # the transform arrives; past the warning's repeat period
        seen = len(rig.warnings)
        for _ in range(3):
            sec = rig.send()
            rig.expect_processed(sec, 2)
        rig.spin_until(lambda: False, 1.0)
        new = [w for w in rig.warnings[seen:] if "gravity_frame" in w]
        assert not new, new
        assert proc.poll() is None
    finally:
        rig.node.destroy_node()
        context.try_shutdown()
        proc.send_signal(2)
        assert proc.wait(timeout=10) == 0
