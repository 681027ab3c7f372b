"""realsense_node: a D435 (live, .bag playback, or simulated) with the realsense-ros topics.

    ros2 run genpose_ros realsense_node --ros-args -p source:=sim -p frame_rate:=2.0

Publishes ``<ns>/color/image_raw`` (rgb8), ``<ns>/aligned_depth_to_color/image_raw`` (16UC1 mm,
aligned to colour, frame ``camera_color_optical_frame``), both ``camera_info``, and (unless
``publish_tf: false``, as realsense2_camera) the static TF ``camera_link`` ->
``camera_{color,depth}_frame`` -> ``camera_{color,depth}_optical_frame``. ``<ns>`` is
``topic_prefix``, relative by default, so a node namespace moves every topic.
With ``source: sim`` also the ground truth: ``<ns>/ground_truth`` (Detection3DArray, id =
instance id) and the true masks pair on ``<ns>/ground_truth/masks`` + ``.../detections_2d``.
Colour, depth and ground truth of one frame share one header (stamp = capture time).
"""
from __future__ import annotations

import sys
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, Detection3DArray, ObjectHypothesisWithPose

from genpose_ros.ros.conversions import (detections_from_msg, detections_to_msg,
                                         intrinsics_to_camera_info, numpy_to_image)
from genpose_ros.ros.masks import encode_masks
from genpose_ros.ros.params import declare
from genpose_ros.ros.qos import qos_from_name
from genpose_ros.ros.spin import run_node
from genpose_ros.ros.tf import StaticTransformBroadcaster, matrix_to_transform

PARAMS = {
    "source": "sim",              # device | bag | sim
    "serial": "",                 # device: serial number ("" = the first D435)
    "bag_path": "",               # bag: a recording (.bag, or .db3 from librealsense >= 2.57)
    "record_path": "",            # device / sim: also record the streams here (.db3)
    "loop": True,                 # bag: repeat playback
    "width": 640, "height": 480, "fps": 30,   # device; sim: 640x480 or 1280x720 (data.camera.D435_MODES)
    "frame_rate": 2.0,            # Hz at which frames are read and published
    "n_frames": 0,                # stop publishing after this many frames (0 = never)
    "seed": 0,                    # sim
    "n_objects": 0,               # sim: objects per scene (0 = random)
    "sequence_length": 30,        # sim: frames per scene (camera moving smoothly)
    "sensor_noise": True,         # sim: D435 depth noise model
    "camera_name": "camera",
    "topic_prefix": "camera/camera",  # relative: under the node's namespace
    "publish_tf": True,           # the camera's static TF (false: a URDF publishes it)
    "qos": "reliable",
    "qos_depth": 2,
    "wait_for_subscribers": 0,    # > 0: first frame only once the colour image has this many
                                  # subscribers (and depth and camera_info at least one)
}
BOUNDS = {"width": ">0", "height": ">0", "fps": ">0", "frame_rate": ">0", "n_frames": ">=0", "n_objects": ">=0",
          "sequence_length": ">=1", "wait_for_subscribers": ">=0"}   # params.check_range

# optical frame (x right, y down, z forward) in the body frame (x forward, y left, z up), REP 103
T_BODY_OPTICAL = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def ground_truth_to_msg(header, instances) -> Detection3DArray:
    """Simulator ground truth as a Detection3DArray: ``id`` = instance id (mask pixel value),
    class, pose, size; a mug whose handle is hidden has a second hypothesis ``handle_hidden``
    (its rotation is then only defined about the y axis, as for NOCS evaluation)."""
    msg = detections_to_msg(header, [str(i.instance_id) for i in instances],
                            [i.category for i in instances], [i.R for i in instances],
                            [i.t for i in instances], [i.size for i in instances],
                            [1.0] * len(instances), [np.zeros((6, 6))] * len(instances))
    for det, inst in zip(msg.detections, instances):
        if not inst.handle_visible:
            hyp = ObjectHypothesisWithPose()
            hyp.hypothesis.class_id, hyp.hypothesis.score = "handle_hidden", 1.0
            det.results.append(hyp)
    return msg


def ground_truth_from_msg(msg: Detection3DArray) -> list[dict]:
    """[{id, category, R, t, size, handle_visible}] from `ground_truth_to_msg`'s message."""
    out = detections_from_msg(msg)
    for d, det in zip(out, msg.detections):
        d["handle_visible"] = not any(r.hypothesis.class_id == "handle_hidden" for r in det.results[1:])
    return out


def make_source(p: dict):
    from genpose_ros.data import realsense as rs_sources

    if p["source"] == "device":
        return rs_sources.DeviceSource(p["serial"], p["width"], p["height"], p["fps"], p["record_path"])
    if p["source"] == "bag":
        return rs_sources.BagSource(p["bag_path"], p["loop"])
    if p["source"] == "sim":
        from genpose_ros.data.camera import D435_MODES

        mode = f"{p['width']}x{p['height']}"
        if mode not in D435_MODES:
            raise ValueError(f"source sim renders the D435 colour modes {' and '.join(D435_MODES)}; "
                             f"width x height is {mode}")
        return rs_sources.SimSource(p["seed"], p["n_objects"], p["sequence_length"], p["sensor_noise"],
                                    intr=D435_MODES[mode], record_to=p["record_path"])
    raise ValueError(f"unknown source {p['source']!r}; expected device, bag or sim")


class RealSenseNode(Node):
    def __init__(self, **kwargs):
        super().__init__("realsense_node", **kwargs)
        p = self.p = declare(self, PARAMS, BOUNDS)
        self.source = make_source(p)
        cam, ns = p["camera_name"], p["topic_prefix"].rstrip("/")
        self.color_frame = f"{cam}_color_optical_frame"
        qos = qos_from_name(p["qos"], p["qos_depth"])
        pub = self.create_publisher
        self.pub_color = pub(Image, f"{ns}/color/image_raw", qos)
        self.pub_color_info = pub(CameraInfo, f"{ns}/color/camera_info", qos)
        self.pub_depth = pub(Image, f"{ns}/aligned_depth_to_color/image_raw", qos)
        self.pub_depth_info = pub(CameraInfo, f"{ns}/aligned_depth_to_color/camera_info", qos)
        if p["source"] == "sim":
            self.pub_gt = pub(Detection3DArray, f"{ns}/ground_truth", qos)
            self.pub_gt_masks = pub(Image, f"{ns}/ground_truth/masks", qos)
            self.pub_gt_det2d = pub(Detection2DArray, f"{ns}/ground_truth/detections_2d", qos)
        self.static_tf = StaticTransformBroadcaster(self)
        if p["publish_tf"]:
            self.static_tf.send_transform(self._static_transforms(cam))
        self.published = 0
        self._subscribed_at = None
        self._last_tick = -1e9
        self.timer = self.create_timer(1.0 / p["frame_rate"], self._tick)
        self.get_logger().info(f"source {p['source']}, {self.source.intrinsics.width}x"
                               f"{self.source.intrinsics.height}, publishing at {p['frame_rate']} Hz")

    def _static_transforms(self, cam):
        T_link_color = getattr(self.source, "T_depth_color", np.eye(4))  # camera_link = depth body
        stamp = self.get_clock().now().to_msg()
        return [matrix_to_transform(np.eye(4), f"{cam}_link", f"{cam}_depth_frame", stamp),
                matrix_to_transform(T_BODY_OPTICAL, f"{cam}_depth_frame", f"{cam}_depth_optical_frame", stamp),
                matrix_to_transform(T_BODY_OPTICAL @ T_link_color @ np.linalg.inv(T_BODY_OPTICAL),
                                    f"{cam}_link", f"{cam}_color_frame", stamp),
                matrix_to_transform(T_BODY_OPTICAL, f"{cam}_color_frame", self.color_frame, stamp)]

    def _subscribed(self) -> bool:
        return (self.pub_color.get_subscription_count() >= self.p["wait_for_subscribers"]
                and self.pub_color_info.get_subscription_count() > 0
                and self.pub_depth.get_subscription_count() > 0)

    def _tick(self):
        if self.p["wait_for_subscribers"] > 0 and not self.published:
            # the subscribers' side of a match may trail ours: give it a second
            if not self._subscribed():
                self._subscribed_at = None
                self.get_logger().info("waiting for subscribers of colour, depth and camera_info",
                                       throttle_duration_sec=5.0)
                return
            self._subscribed_at = self._subscribed_at or time.monotonic()
            if time.monotonic() - self._subscribed_at < 1.0:
                return
        now = time.monotonic()
        if now - self._last_tick < 0.75 / self.p["frame_rate"]:
            return  # a late tick right after a slow one: keep the frame rate steady, no bursts
        self._last_tick = now
        if self.p["n_frames"] and self.published >= self.p["n_frames"]:
            self.timer.cancel()
            self.get_logger().info(f"published {self.published} frames; stopping")
            return
        stamp = self.get_clock().now().to_msg()
        capture = self.source.read()
        if capture is None:
            self.get_logger().warning("no frame from the source this period")
            return
        header = Header(stamp=stamp, frame_id=self.color_frame)
        info = intrinsics_to_camera_info(self.source.intrinsics, header, self.source.distortion)
        # camera_info and depth first: a reader of the colour image finds them already there
        self.pub_color_info.publish(info)
        self.pub_depth_info.publish(info)
        self.pub_depth.publish(numpy_to_image(capture.depth_mm, "16UC1", header))
        self.pub_color.publish(numpy_to_image(capture.color, "rgb8", header))
        gt = capture.ground_truth
        if gt is not None:
            self.publish_ground_truth(header, gt)
        self.published += 1

    def publish_ground_truth(self, header, gt):
        inst = gt.instances
        self.pub_gt.publish(ground_truth_to_msg(header, inst))
        masks, det2d = encode_masks(gt.mask, [(i.instance_id, i.category, 1.0) for i in inst], header)
        self.pub_gt_masks.publish(masks)
        self.pub_gt_det2d.publish(det2d)

    def destroy_node(self):
        if hasattr(self, "source"):   # not when the constructor stopped early (a bad parameter)
            self.source.close()
        super().destroy_node()


def main(args=None):
    sys.exit(run_node(RealSenseNode, args))


if __name__ == "__main__":
    main()
