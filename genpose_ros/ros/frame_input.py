"""One synchronised input frame of the pose nodes, read and checked from its ROS messages.

Frame-level problems (missing camera_info, wrong encoding, sizes that differ, no valid depth, a
broken masks pair) raise `InputProblem` with a message naming the problem: the node warns and
skips the frame. Instance-level problems (unknown class, empty or too small mask) are returned
as warnings, and the other instances of the frame are still estimated.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genpose_ros import CATEGORIES
from genpose_ros.ros.conversions import camera_info_to_intrinsics, image_to_numpy
from genpose_ros.ros.masks import InstanceMask, decode_masks

DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


class InputProblem(ValueError):
    """The frame cannot be used; the message says why."""


@dataclass
class FrameInput:
    header: object                 # std_msgs/Header of the images (stamp, optical frame)
    depth_mm: np.ndarray           # (H, W) uint16 millimetres, 0 = no depth
    intrinsics: object             # genpose_ros.data.camera.Intrinsics
    instances: list[InstanceMask]  # decoded masks, detections order
    color: np.ndarray | None = None  # (H, W, 3) uint8 RGB, when subscribed


@dataclass
class InstanceBatch:
    points: np.ndarray                 # (B, N, 3) float32 camera-frame points, metres
    instances: list[InstanceMask]      # the B instances kept
    warnings: list[str] = field(default_factory=list)


def read_depth_mm(msg) -> np.ndarray:
    """(H, W) uint16 depth in mm from a 16UC1/mono16 (mm) or 32FC1 (m, NaN = none) image."""
    try:
        depth = image_to_numpy(msg, DEPTH_ENCODINGS)
    except ValueError as exc:
        raise InputProblem(f"depth image: {exc}") from None
    n = depth.size
    if depth.dtype == np.float32:
        nan = int(np.count_nonzero(~np.isfinite(depth)))
        depth = np.where(np.isfinite(depth) & (depth > 0), depth * 1000.0, 0.0)
        depth = np.clip(np.round(depth), 0, 65535).astype(np.uint16)
    else:
        nan = 0
    if not np.any(depth):
        what = f"{nan} of {n} pixels NaN, the rest zero" if nan else "all pixels zero"
        raise InputProblem(f"depth image has no valid depth ({what})")
    return depth


def read_frame(depth_msg, masks_msg, det2d_msg, info_msg, color_msg=None,
               info_topic: str = "camera_info") -> FrameInput:
    """Decode and cross-check one synchronised set; raises `InputProblem`."""
    if info_msg is None:
        raise InputProblem(f"no camera_info received yet on {info_topic}; frame skipped")
    try:
        intr = camera_info_to_intrinsics(info_msg)
    except ValueError as exc:
        raise InputProblem(str(exc)) from None
    depth = read_depth_mm(depth_msg)
    try:
        instances = decode_masks(masks_msg, det2d_msg)
    except ValueError as exc:
        raise InputProblem(str(exc)) from None
    sizes = {"depth": (depth.shape[1], depth.shape[0]),
             "masks": (int(masks_msg.width), int(masks_msg.height)),
             "camera_info": (intr.width, intr.height)}
    color = None
    if color_msg is not None:
        try:
            color = image_to_numpy(color_msg, ("rgb8", "bgr8"))
        except ValueError as exc:
            raise InputProblem(f"colour image: {exc}") from None
        if color_msg.encoding == "bgr8":
            color = color[:, :, ::-1].copy()
        sizes["color"] = (color.shape[1], color.shape[0])
    if len(set(sizes.values())) > 1:
        raise InputProblem("image sizes differ: " + ", ".join(f"{k} {w}x{h}" for k, (w, h) in sizes.items()))
    if depth_msg.header.frame_id != masks_msg.header.frame_id:
        raise InputProblem(f"depth frame {depth_msg.header.frame_id!r} differs from masks frame "
                           f"{masks_msg.header.frame_id!r} (depth must be aligned to colour)")
    return FrameInput(depth_msg.header, depth, intr, instances, color)


def instance_points(frame: FrameInput, n_points: int, min_points: int, rng,
                    min_score: float = 0.0) -> InstanceBatch:
    """Sampled object points of every usable instance, batched for one estimator call."""
    from genpose_ros.data.pointcloud import object_points

    points, kept, warnings = [], [], []
    for inst in frame.instances:
        tag = f"instance {inst.instance_id} ({inst.category})"
        if inst.category not in CATEGORIES:
            warnings.append(f"instance {inst.instance_id}: unknown class {inst.category!r} "
                            f"(known: {', '.join(CATEGORIES)}); skipped")
            continue
        if inst.score < min_score:
            continue
        if not inst.mask.any():
            warnings.append(f"{tag}: empty mask; skipped")
            continue
        try:
            pts = object_points(frame.depth_mm, inst.mask, frame.intrinsics, n_points, rng,
                                min_points=min_points)
        except ValueError as exc:  # TooFewPointsError and friends
            warnings.append(f"{tag}: {exc}; skipped")
            continue
        points.append(pts)
        kept.append(inst)
    arr = np.stack(points).astype(np.float32) if points else np.zeros((0, n_points, 3), np.float32)
    return InstanceBatch(arr, kept, warnings)
