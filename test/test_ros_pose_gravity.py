"""pose_node with ``gravity_frame``: the table plane needs the robot's up direction from TF; while
TF lacks it the node says so once and keeps serving, and stops saying so once the transform is
there (subprocess node, real DDS)."""
import numpy as np
from scipy.spatial.transform import Rotation

from genpose_ros.ros.tf import StaticTransformBroadcaster, matrix_to_transform
from test_ros_pose_node import start_pose_node, stop_pose_node


def test_gravity_frame_from_tf(tiny_pose_checkpoint):
    rig, proc = start_pose_node(tiny_pose_checkpoint, "gravity_frame:=base_link")
    try:
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
        stop_pose_node(rig, proc)
