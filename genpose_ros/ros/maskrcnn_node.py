"""maskrcnn_node: colour image -> instance masks, class and score of every object (docs/ros.md).

    ros2 run genpose_ros maskrcnn_node --ros-args --params-file config/maskrcnn.yaml
    ros2 run genpose_ros maskrcnn_node --ros-args -p source:=ground_truth     # sim only

Sources:
- ``maskrcnn``: the light torchvision Mask R-CNN (``weights`` file, loaded safely) segments
  every colour frame (``rgb8``, ``bgr8``, ``rgba8`` or ``bgra8``); only the latest frame is
  processed when the model is slower than the camera. An RGB-D model also reads the aligned
  depth image of the same stamp (within ``depth_slop``; 16UC1 mm or 32FC1 m, checked as
  pose_node checks it; a frame waits up to ``depth_wait`` for it) and the colour camera_info
  (focal length); without a matching, usable,
  same-size depth image it warns and segments from colour alone. With ``depth_cleanup`` (any
  model) the depth image also trims every mask: parts cut off from the object by a depth step
  (background caught at the outline) are dropped; with ``support_plane`` it fits them to the
  table: pixels on the table's plane are dropped (and, with ``support_grow_px`` > 0, free
  pixels above it along an object's foot are added). With a depth image, a detection with
  fewer than ``min_depth_pixels`` valid depth pixels under its mask is left out.
- ``ground_truth``: republishes the simulator's true masks pair (realsense_node ``source: sim``)
  on the same output topics, to evaluate the pose stage alone.

Output: the masks pair ``<output_prefix>/masks`` (mono16 instance ids) +
``<output_prefix>/detections_2d`` (Detection2DArray), both with the colour image's header.
Bad input (wrong encoding, wrong size, unreadable weights) is reported as a warning naming the
problem and the node keeps serving; ``weights`` and ``score_threshold`` can be changed at run
time (``ros2 param set``); the other parameters are read at start-up and are read-only.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

from genpose_ros.ros.conversions import ImageConversionError, image_to_rgb
from genpose_ros.ros.frame_input import InputProblem, read_depth_mm
from genpose_ros.ros.masks import MaskMessageError, decode_masks, encode_masks
from genpose_ros.ros.params import check_device, declare
from genpose_ros.ros.problems import ProblemLog
from genpose_ros.ros.qos import InputSubscription, qos_from_name
from genpose_ros.ros.spin import run_node, shutting_down
from genpose_ros.ros.sync import ApproximateSync, Worker, stamp_ns
from genpose_ros.segmentation.load import segmenter_options, threshold

SOURCES = ("maskrcnn", "ground_truth")
DYNAMIC = ("weights", "score_threshold")   # `ros2 param set` (source maskrcnn); the rest is read-only
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")  # grey is refused: the model needs colour

PARAMS = {
    "source": "maskrcnn",          # maskrcnn | ground_truth
    "weights": "models/maskrcnn_light.pt",
    "device": "cpu",
    "threads": 1,                  # torch CPU threads (0: torch default)
    "score_threshold": 0.5,
    "mask_threshold": 0.5,
    "duplicate_overlap": 0.8,      # a detection with more of its mask under better ones is left out
    "depth_cleanup": True,         # drop mask parts cut off by depth steps (background at outlines)
    "min_depth_pixels": 50,        # with depth: a detection with fewer valid depth pixels is left out
    "support_plane": True,         # fit masks to the table plane (segmentation/support.py)
    "support_trim_height": 0.003,  # m, mask pixels closer to the plane are dropped
    "support_grow_px": 0,          # px, masks grow onto free pixels ...
    "support_grow_height": 0.01,   # m, ... at least this high above the plane
    "expected_width": 0,           # > 0: frames of another size are rejected with a warning
    "expected_height": 0,
    "color_topic": "camera/camera/color/image_raw",     # relative: follow the namespace
    "depth_topic": "camera/camera/aligned_depth_to_color/image_raw",   # RGB-D models only
    "camera_info_topic": "camera/camera/color/camera_info",            # RGB-D models only
    "depth_slop": 0.02,            # s, largest colour/depth stamp difference accepted
    "depth_wait": 0.25,            # s, how long a colour frame waits for its depth image to arrive
    "gt_masks_topic": "camera/camera/ground_truth/masks",
    "gt_detections_2d_topic": "camera/camera/ground_truth/detections_2d",
    "gt_slop": 0.0,                # s, pairing of the ground-truth masks and detections
    "input_qos": "auto",           # auto (as the publishers) | reliable | sensor_data
    "input_qos_depth": 2,
    "output_prefix": "genpose",
    "output_qos": "reliable",
    "output_qos_depth": 5,
}
BOUNDS = {"threads": ">=0", "min_depth_pixels": ">=0", "depth_slop": ">=0", "depth_wait": ">=0", "expected_width": ">=0",
          "expected_height": ">=0", "gt_slop": ">=0"}   # params.check_range; the thresholds: segmenter_options


class MaskRCNNNode(Node):
    def __init__(self, **kwargs):
        super().__init__("maskrcnn_node", **kwargs)
        p = self.p = declare(self, PARAMS, BOUNDS, dynamic=DYNAMIC)
        check_device(p["device"])
        if p["source"] not in SOURCES:
            raise ValueError(f"unknown source {p['source']!r}; expected {' or '.join(SOURCES)}")
        self.options = segmenter_options(p)   # checked here: a bad value stops the node with one line
        p["duplicate_overlap"] = threshold("duplicate_overlap", p["duplicate_overlap"])
        self._problems = ProblemLog(self.get_logger())
        self.problems = self._problems.items
        self.latencies: deque[float] = deque(maxlen=200)
        self.frames_done = 0
        self.segmenter, self.weights_error = None, "not loaded"

        prefix = p["output_prefix"].rstrip("/")
        out_qos = qos_from_name(p["output_qos"], p["output_qos_depth"])
        self.pub_masks = self.create_publisher(Image, f"{prefix}/masks", out_qos)
        self.pub_det2d = self.create_publisher(Detection2DArray, f"{prefix}/detections_2d", out_qos)
        if p["source"] == "maskrcnn":
            if p["threads"] > 0:
                import torch
                torch.set_num_threads(p["threads"])
            self.load_weights(p["weights"])
            self.worker = Worker(self._segment_safe, name="maskrcnn_worker")
            self.depths: deque[Image] = deque(maxlen=8)     # recent depth frames, newest last
            self.depth_arrived = threading.Condition()   # also notified when the node closes
            self.waiting_for_depth: int | None = None    # stamp (ns) of the colour frame waiting, if one is
            self.closing = False
            self.fx: float | None = None
            qos, depth = p["input_qos"], p["input_qos_depth"]
            self._subs = [InputSubscription(self, Image, p["color_topic"], self.worker.slot.put, qos, depth),
                          InputSubscription(self, Image, p["depth_topic"], self._on_depth, qos, depth),
                          InputSubscription(self, CameraInfo, p["camera_info_topic"], self._on_camera_info,
                                            qos, depth)]
        else:
            self.worker = None
            self.sync = ApproximateSync(2, p["gt_slop"], self._republish_gt,
                                        names=[p["gt_masks_topic"], p["gt_detections_2d_topic"]],
                                        on_stall=self.warn)
            self._subs = [
                InputSubscription(self, Image, p["gt_masks_topic"], lambda m: self.sync.add(0, m),
                                  p["input_qos"], p["input_qos_depth"]),
                InputSubscription(self, Detection2DArray, p["gt_detections_2d_topic"],
                                  lambda m: self.sync.add(1, m), p["input_qos"], p["input_qos_depth"])]
        self.add_on_set_parameters_callback(self._on_params)
        self.get_logger().info(f"source {p['source']}, publishing {prefix}/masks and "
                               f"{prefix}/detections_2d")

    # -- model ----------------------------------------------------------------------------------
    def load_weights(self, weights: str) -> bool:
        """(Re)load the Mask R-CNN; on failure keep the previous model and warn."""
        from genpose_ros.segmentation.load import load_segmenter
        from genpose_ros.segmentation.model import CheckpointError

        self.get_logger().info(f"loading Mask R-CNN weights {weights}")
        try:
            seg = load_segmenter(weights, self.p["device"], **self.options)
        except (CheckpointError, FileNotFoundError, OSError, RuntimeError) as exc:
            self.weights_error = str(exc)
            self.warn(f"Mask R-CNN weights not loaded: {exc}"
                      + ("; keeping the previous model" if self.segmenter else ""))
            return False
        self.segmenter, self.weights_error = seg, None
        self.get_logger().info(f"Mask R-CNN weights {weights} ({seg.cfg.backbone}, input "
                               f"{seg.cfg.input}, short side {seg.cfg.min_size} px)")
        return True

    def _on_params(self, params) -> SetParametersResult:
        """Run-time changes of ``weights`` (reload) and ``score_threshold``."""
        for prm in params:
            if prm.name in DYNAMIC and self.worker is None:
                return SetParametersResult(successful=False, reason=f"source {self.p['source']} runs no "
                                           f"Mask R-CNN: {prm.name} has no effect")
            if prm.name == "weights" and not self.load_weights(str(prm.value)):
                return SetParametersResult(successful=False, reason=self.weights_error)
            if prm.name == "score_threshold":
                try:
                    value = threshold("score_threshold", prm.value)
                except (TypeError, ValueError) as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
                self.p["score_threshold"] = self.options["score_threshold"] = value
                if self.segmenter is not None:
                    self.segmenter.score_threshold = value
        return SetParametersResult(successful=True)

    # -- processing -----------------------------------------------------------------------------
    def warn(self, text: str, period_s: float = 2.0):
        self._problems.warn(text, period_s)

    def _segment_safe(self, msg: Image):
        try:
            self.segment(msg)
        except (ImageConversionError, ValueError) as exc:
            self.warn(f"colour frame skipped: {exc}")
        except Exception as exc:  # keep serving: one bad frame must not stop the node
            if not shutting_down(self.context):  # else: the publishers are gone
                self.warn(f"colour frame failed: {type(exc).__name__}: {exc}")

    def segment(self, msg: Image):
        """One colour frame -> the masks pair with the frame's header."""
        from genpose_ros.segmentation.model import instance_image   # loaded with the model

        if self.segmenter is None:
            self.warn(f"no Mask R-CNN model loaded ({self.weights_error}); frames are not "
                      f"segmented until the weights parameter names a valid file")
            return
        ew, eh = self.p["expected_width"], self.p["expected_height"]
        if (ew and msg.width != ew) or (eh and msg.height != eh):
            raise ValueError(f"wrong image size {msg.width}x{msg.height}, expected {ew}x{eh}")
        rgb = image_to_rgb(msg, COLOR_ENCODINGS)
        t0 = time.perf_counter()
        depth = self.matching_depth(msg, rgb.shape[:2]) if self.segmenter.wants_depth else None
        if self.closing:  # closed while this frame waited for its depth image
            return
        dets = self.segmenter.predict(rgb, depth, fx=self.fx)        # best first
        ids, dets = instance_image(dets, rgb.shape[:2], self.p["duplicate_overlap"])   # one per pixel
        masks, det2d = encode_masks(ids, [(k + 1, d.category, d.score) for k, d in enumerate(dets)],
                                    msg.header)
        self.pub_masks.publish(masks)
        self.pub_det2d.publish(det2d)
        self.latencies.append(time.perf_counter() - t0)
        self.frames_done += 1

    def _on_depth(self, msg: Image):
        with self.depth_arrived:
            self.depths.append(msg)
            self.depth_arrived.notify_all()

    def _on_camera_info(self, msg: CameraInfo):
        fx = float(msg.k[0])
        self.fx = fx if np.isfinite(fx) and fx > 0 else None

    def matching_depth(self, color: Image, shape: tuple[int, int]) -> np.ndarray | None:
        """The depth image (uint16 mm) stamped within ``depth_slop`` of ``color``, or None with
        a warning saying why (the frame is then segmented from colour alone, or its masks are
        not trimmed)."""
        if self.segmenter.uses_depth:
            who, fallback = "RGB-D model", "segmenting from colour alone"
        else:
            who, fallback = "depth clean-up", "masks not fitted to depth"
        t = stamp_ns(color)
        # a driver may publish colour before depth: its depth image may still be on its way
        with self.depth_arrived:
            self.waiting_for_depth = t
            self.depth_arrived.wait_for(lambda: self.closing or any(stamp_ns(d) >= t for d in self.depths),
                                        timeout=self.p["depth_wait"])
            self.waiting_for_depth = None
            best = min(self.depths, key=lambda d: abs(stamp_ns(d) - t), default=None)
        if self.closing:
            return None
        if best is None or abs(stamp_ns(best) - t) > self.p["depth_slop"] * 1e9:
            gap = "no depth image received" if best is None else (
                f"nearest depth image {abs(stamp_ns(best) - t) / 1e6:.0f} ms away "
                f"(depth_slop {self.p['depth_slop'] * 1e3:.0f} ms)")
            self.warn(f"{who}: {gap} on {self.p['depth_topic']}; {fallback}")
            return None
        try:
            depth, note = read_depth_mm(best)
            if note:
                self.warn(note)
            if depth.shape != tuple(shape):
                raise ValueError(f"depth image is {depth.shape[1]}x{depth.shape[0]} px, colour "
                                 f"{shape[1]}x{shape[0]} px (use depth aligned to colour)")
        except (ImageConversionError, InputProblem, ValueError) as exc:
            self.warn(f"{who}: depth image unusable ({exc}); {fallback}")
            return None
        return depth

    def _republish_gt(self, masks: Image, det2d: Detection2DArray):
        try:
            decode_masks(masks, det2d)        # validates the pair before passing it on
        except (MaskMessageError, ImageConversionError) as exc:
            self.warn(f"ground-truth masks skipped: {exc}")
            return
        self.pub_masks.publish(masks)
        self.pub_det2d.publish(det2d)
        self.frames_done += 1

    def destroy_node(self):
        if getattr(self, "worker", None) is not None:   # none also when the constructor stopped early
            with self.depth_arrived:  # a frame waiting for its depth image stops waiting
                self.closing = True
                self.depth_arrived.notify_all()
            self.worker.stop()
        super().destroy_node()


def main(args=None):
    sys.exit(run_node(MaskRCNNNode, args))


if __name__ == "__main__":
    main()
