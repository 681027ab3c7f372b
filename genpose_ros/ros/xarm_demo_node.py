"""xarm_demo_node: xArm6 glue and an example consumer of the pose output (examples, not a planner).

    ros2 run genpose_ros xarm_demo_node --ros-args --params-file config/xarm6.yaml

1. Publishes the hand-eye calibration as a static TF: ``link_eef -> camera_link`` for a camera
   on the arm (``mount: eye_in_hand``; the default is xarm_ros2's own D435i mount, xyz
   0.06746 -0.0175 0.0237, rpy pi -pi/2 0), or ``link_base -> camera_link`` for a fixed camera
   (``mount: fixed``). ``publish_tf: false`` leaves it to whoever else publishes that link
   (xarm_ros2 with ``add_d435i_links``: then camera_link has exactly one parent). Without a
   robot (``sim_arm: true``) it also publishes a fixed ``link_base -> link_eef``.
2. For every object on ``genpose/detections`` it looks up ``T_link_base_object`` over TF and
   publishes example targets in ``link_base`` for one demo task (``task``):
   - ``pour``: grasp the first bottle/can/mug from the side; place = its grasp pose moved
     above the first bowl/mug (another object) and tilted by ``pour_angle_deg``.
   - ``stack``: top-down grasp of the smallest object; place = above the top of the largest.
   - ``handover``: top-down grasp of the first object; place = the fixed ``handover_xyz``.
   ``xarm_demo/pre_grasp`` (PoseArray: a pre-grasp per object, ``approach`` m before the
   grasp along the gripper's z axis) and ``xarm_demo/place`` (PoseStamped).
Every pose is a target for xArm's ``link_tcp`` frame with the xArm gripper: z = approach
direction (out of the flange), **y = the direction the fingers close along**, x = y cross z.
Topic names are relative (they follow the node's namespace); TF is /tf and /tf_static.
"""
from __future__ import annotations

import sys

import numpy as np
from geometry_msgs.msg import PoseArray, PoseStamped
from rclpy.node import Node
from scipy.spatial.transform import Rotation
from vision_msgs.msg import Detection3DArray

from genpose_ros.ros.conversions import detections_from_msg, rt_to_pose
from genpose_ros.ros.params import declare
from genpose_ros.ros.spin import run_node
from genpose_ros.ros.tf import (StaticTransformBroadcaster, TransformBuffer, TransformListener,
                                TransformLookupError, matrix_to_transform)

PARAMS = {
    "mount": "eye_in_hand",                       # eye_in_hand | fixed
    "base_frame": "link_base", "eef_frame": "link_eef", "camera_frame": "camera_link",
    "hand_eye_xyz": [0.06746, -0.0175, 0.0237],    # camera_link in link_eef (or link_base), m
    "hand_eye_quat_xyzw": [0.7071068, 0.0, 0.7071068, 0.0],  # = rpy (pi, -pi/2, 0)
    "publish_tf": True,                            # publish the hand-eye static TF
    "sim_arm": False,                              # publish a fixed link_base -> link_eef
    "sim_eef_xyz": [0.3, 0.0, 0.45],
    "sim_eef_quat_xyzw": [1.0, 0.0, 0.0, 0.0],     # flange pointing down
    "detections_topic": "genpose/detections",
    "output_prefix": "xarm_demo",                  # pre_grasp and place topics
    "task": "stack",                               # pour | stack | handover
    "approach": 0.10,
    "pour_height": 0.12, "pour_angle_deg": 100.0,
    "handover_xyz": [0.45, 0.25, 0.35],
}
BOUNDS = {"approach": ">=0", "pour_height": ">=0", "pour_angle_deg": "0..180"}   # params.check_range
UP = np.array([0.0, 0.0, 1.0])


def pose_matrix(xyz, quat_xyzw) -> np.ndarray:
    if len(xyz) != 3 or len(quat_xyzw) != 4 or np.linalg.norm(quat_xyzw) < 1e-6:
        raise ValueError(f"bad pose: xyz {list(xyz)} (3 values), quaternion {list(quat_xyzw)} (4, non-zero)")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(quat_xyzw).as_matrix()
    T[:3, 3] = xyz
    return T


def top_point(T_base_obj: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The highest point (base z) of the object's sized box."""
    corners = np.array([[x, y, z] for x in (-.5, .5) for y in (-.5, .5) for z in (-.5, .5)]) * size
    pts = corners @ T_base_obj[:3, :3].T + T_base_obj[:3, 3]
    top = T_base_obj[:3, 3].copy()
    top[2] = pts[:, 2].max()
    return top


def gripper_frame(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(3, 3) link_tcp orientation: z = approach, y = closing direction, x = y cross z."""
    return np.column_stack([np.cross(y, z), y, z])


def top_down_grasp(T_base_obj: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Gripper pose at the object's top, z pointing down, closing (y) along the object's
    horizontal x axis."""
    y = T_base_obj[:3, 0] - T_base_obj[:3, 0].dot(UP) * UP
    y = y / np.linalg.norm(y) if np.linalg.norm(y) > 1e-6 else np.array([0.0, 1.0, 0.0])
    T = np.eye(4)
    T[:3, :3] = gripper_frame(-UP, y)
    T[:3, 3] = top_point(T_base_obj, size) - 0.02 * UP
    return T


def side_grasp(T_base_obj: np.ndarray) -> np.ndarray:
    """Gripper pose at the object's centre, approaching horizontally from the robot base,
    closing horizontally (x up)."""
    c = T_base_obj[:3, 3]
    z = np.array([c[0], c[1], 0.0])
    z = z / np.linalg.norm(z) if np.linalg.norm(z) > 1e-6 else np.array([1.0, 0.0, 0.0])
    T = np.eye(4)
    T[:3, :3] = gripper_frame(z, np.cross(z, UP))
    T[:3, 3] = c
    return T


def pre_grasp(T_grasp: np.ndarray, approach: float) -> np.ndarray:
    T = T_grasp.copy()
    T[:3, 3] -= approach * T_grasp[:3, 2]
    return T


TASKS = ("pour", "stack", "handover")


def plan(task: str, objects: list[dict], p: dict):
    """(grasps {name: T}, place T or None) for the objects [{name, category, T, size}]."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected {', '.join(TASKS[:-1])} or {TASKS[-1]}")
    if not objects:
        return {}, None
    grasps = {o["name"]: top_down_grasp(o["T"], o["size"]) for o in objects}
    place = None
    if task == "pour":
        src = next((o for o in objects if o["category"] in ("bottle", "can", "mug")), None)
        dst = next((o for o in objects if o["category"] in ("bowl", "mug") and o is not src), None)
        if src is not None:
            grasps[src["name"]] = side_grasp(src["T"])
            if dst is not None:
                place = grasps[src["name"]].copy()
                place[:3, 3] = top_point(dst["T"], dst["size"]) + p["pour_height"] * UP
                tilt = Rotation.from_rotvec(np.deg2rad(p["pour_angle_deg"]) * place[:3, 2]).as_matrix()
                place[:3, :3] = tilt @ place[:3, :3]
    elif task == "stack":
        vol = [float(np.prod(o["size"])) for o in objects]
        small, large = objects[int(np.argmin(vol))], objects[int(np.argmax(vol))]
        if small is not large:
            place = grasps[small["name"]].copy()
            lift = grasps[small["name"]][:3, 3] - small["T"][:3, 3]   # grasp point above centre
            place[:3, 3] = top_point(large["T"], large["size"]) + 0.5 * small["size"][1] * UP + lift
    else:   # handover
        place = grasps[objects[0]["name"]].copy()
        place[:3, 3] = p["handover_xyz"]
    return grasps, place


class XArmDemoNode(Node):
    def __init__(self, **kwargs):
        super().__init__("xarm_demo_node", **kwargs)
        p = self.p = declare(self, PARAMS, BOUNDS)
        if p["mount"] not in ("eye_in_hand", "fixed"):
            raise ValueError(f"mount must be eye_in_hand or fixed, got {p['mount']!r}")
        plan(p["task"], [], p)  # validates the task name
        self.static_tf = StaticTransformBroadcaster(self)
        parent = p["eef_frame"] if p["mount"] == "eye_in_hand" else p["base_frame"]
        stamp = self.get_clock().now().to_msg()
        hand_eye = pose_matrix(p["hand_eye_xyz"], p["hand_eye_quat_xyzw"])
        static = [matrix_to_transform(hand_eye, parent, p["camera_frame"], stamp)] if p["publish_tf"] else []
        if p["sim_arm"] and p["mount"] == "eye_in_hand":
            static.append(matrix_to_transform(pose_matrix(p["sim_eef_xyz"], p["sim_eef_quat_xyzw"]),
                                              p["base_frame"], p["eef_frame"], stamp))
        if static:
            self.static_tf.send_transform(static)
        self.buffer = TransformBuffer()
        self.listener = TransformListener(self.buffer, self)
        out = p["output_prefix"].rstrip("/")
        self.pub_pre = self.create_publisher(PoseArray, f"{out}/pre_grasp", 10)
        self.pub_place = self.create_publisher(PoseStamped, f"{out}/place", 10)
        self.create_subscription(Detection3DArray, p["detections_topic"], self._on_detections, 10)
        tf_note = "" if p["publish_tf"] else ", not published here (publish_tf false)"
        self.get_logger().info(f"camera {p['mount']} ({parent} -> {p['camera_frame']}{tf_note}), "
                               f"task {p['task']}")

    def _on_detections(self, msg: Detection3DArray):
        objects = []
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        for det in detections_from_msg(msg):
            try:  # the object's TF frame at this stamp; else the detection's camera-frame pose
                T = self.buffer.lookup(self.p["base_frame"], det["id"], stamp_ns)
            except TransformLookupError:
                try:
                    T_base_cam = self.buffer.lookup(self.p["base_frame"], msg.header.frame_id)
                except TransformLookupError as exc:
                    self.get_logger().warning(f"{det['id']}: {exc}", throttle_duration_sec=2.0)
                    continue
                T_cam_obj = np.eye(4)
                T_cam_obj[:3, :3], T_cam_obj[:3, 3] = det["R"], det["t"]
                T = T_base_cam @ T_cam_obj
            objects.append(dict(name=det["id"], category=det["category"], T=T, size=det["size"]))
        grasps, place = plan(self.p["task"], objects, self.p)
        out = PoseArray()
        out.header.stamp, out.header.frame_id = msg.header.stamp, self.p["base_frame"]
        out.poses = [rt_to_pose(G[:3, :3], G[:3, 3]) for G in
                     (pre_grasp(g, self.p["approach"]) for g in grasps.values())]
        self.pub_pre.publish(out)
        if place is not None:
            ps = PoseStamped(header=out.header, pose=rt_to_pose(place[:3, :3], place[:3, 3]))
            self.pub_place.publish(ps)


def main(args=None):
    sys.exit(run_node(XArmDemoNode, args))


if __name__ == "__main__":
    main()
