"""One synchronised input frame of the pose nodes, read and checked from its ROS messages.

Frame-level problems (missing camera_info, wrong depth encoding, sizes that differ, no valid or
implausible depth, a broken masks pair) raise `InputProblem` with a message naming the problem:
the node warns and skips the frame. What can be repaired is repaired and noted in
``FrameInput.notes``: detections beyond ``max_instances`` (the lowest scores are dropped),
scores outside [0, 1] (clamped), a colour image that cannot be read or does not fit (only the
overlay is skipped; colour feeds nothing else). Images of a camera_info with lens distortion
(plumb_bob, rational_polynomial) are resampled onto the pinhole camera of the same K
(``data.camera.undistort``). Instance-level problems (unknown class, empty
or too small mask) are returned as warnings, and the other instances are still estimated.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from vision_msgs.msg import Detection2DArray

from genpose_ros import CATEGORIES
from genpose_ros.data.camera import undistort, undistort_maps
from genpose_ros.ros.conversions import camera_info_distortion, camera_info_to_intrinsics, image_to_numpy, image_to_rgb
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
    color: np.ndarray | None = None  # (H, W, 3) uint8 RGB, when subscribed and usable
    notes: list[str] = field(default_factory=list)  # what was repaired or left out
    depth_note: str | None = None  # 32FC1 depth read as millimetres (a stream-level mistake)


@dataclass
class InstanceBatch:
    points: np.ndarray                 # (B, N, 3) float32 camera-frame points, metres
    instances: list[InstanceMask]      # the B instances kept
    warnings: list[str] = field(default_factory=list)

    def take(self, idx) -> InstanceBatch:
        """The instances ``idx`` (indices, in that order)."""
        return InstanceBatch(self.points[idx], [self.instances[i] for i in idx], self.warnings)


def read_depth_mm(msg, depth_range_m=(0.1, 10.0)) -> tuple[np.ndarray, str | None]:
    """(H, W) uint16 depth in mm from a 16UC1/mono16 (mm) or 32FC1 (m, NaN = none) image, and a
    note when the 32FC1 values are millimetres (then read as such).

    Plausibility: the median valid depth must lie in ``depth_range_m`` (min, max metres); a
    32FC1 image whose median is only plausible in millimetres is read as millimetres, anything
    else outside the range is an `InputProblem` (units or scale wrong)."""
    try:
        depth = image_to_numpy(msg, DEPTH_ENCODINGS)
    except ValueError as exc:
        raise InputProblem(f"depth image: {exc}") from None
    valid = np.isfinite(depth) & (depth > 0)
    n_valid = int(np.count_nonzero(valid))
    if not n_valid:
        nan = int(np.count_nonzero(np.isnan(depth))) if depth.dtype == np.float32 else 0
        what = f"{nan} of {depth.size} pixels NaN, the rest zero" if nan else "all pixels zero"
        raise InputProblem(f"depth image has no valid depth ({what})")
    mm_per_unit, note = _depth_units(msg.encoding, float(np.median(depth[valid])), n_valid,
                                     depth_range_m)
    if depth.dtype == np.float32:
        depth = np.where(valid, np.round(depth * mm_per_unit), 0.0)
        depth = np.clip(depth, 0, 65535).astype(np.uint16)
    return depth, note


def _depth_units(encoding: str, median: float, n_valid: int, depth_range_m) -> tuple[float, str | None]:
    """(millimetres per pixel unit, note) for a depth image whose valid pixels have ``median``."""
    lo, hi = depth_range_m
    metres = encoding == "32FC1"
    mm_per_unit = 1000.0 if metres else 1.0
    median_m = median * mm_per_unit / 1000.0
    if lo <= median_m <= hi:
        return mm_per_unit, None
    seen = f"median {median:.4g} over {n_valid} valid pixels"
    if metres and lo <= median / 1000.0 <= hi:
        return 1.0, (f"32FC1 depth holds millimetres, not metres as REP 118 says ({seen}): "
                     f"reading it as millimetres")
    unit = "metres" if metres else "millimetres"
    raise InputProblem(f"implausible {encoding} depth ({unit}): {seen} is {median_m:.4g} m, "
                       f"outside {lo:g} to {hi:g} m (min_depth, max_depth); wrong units or "
                       f"scale? frame skipped")


def cap_detections(msg: Detection2DArray, max_instances: int) -> tuple[Detection2DArray, list[str]]:
    """``msg`` with at most ``max_instances`` detections (the highest scores, in their order;
    0 = no cap), and a note naming how many were dropped."""
    n = len(msg.detections)
    if max_instances <= 0 or n <= max_instances:
        return msg, []

    def score(i):
        results = msg.detections[i].results
        s = float(results[0].hypothesis.score) if results else 0.0
        return s if np.isfinite(s) else -np.inf

    keep = sorted(sorted(range(n), key=score, reverse=True)[:max_instances])
    out = Detection2DArray(header=msg.header, detections=[msg.detections[i] for i in keep])
    return out, [f"{n} instances in the frame, more than max_instances {max_instances}: "
                 f"the {n - max_instances} lowest-scoring dropped"]


def clamp_scores(instances: list[InstanceMask]) -> list[str]:
    """Scores outside [0, 1] clamped in place (NaN -> 0); a note per repaired instance."""
    notes = []
    for inst in instances:
        s = inst.score
        if 0.0 <= s <= 1.0:
            continue
        inst.score = 0.0 if np.isnan(s) else min(max(s, 0.0), 1.0)
        notes.append(f"instance {inst.instance_id} ({inst.category}): score {s:g} is not in "
                     f"[0, 1]; used as {inst.score:g}")
    return notes


def read_color(msg, size: tuple[int, int]) -> tuple[np.ndarray | None, str | None]:
    """(H, W, 3) RGB of a colour image for the overlay, or (None, why it is left out)."""
    try:
        rgb = image_to_rgb(msg)
    except ValueError as exc:
        return None, f"colour image: {exc}; overlay skipped, poses still published"
    if (rgb.shape[1], rgb.shape[0]) != size:
        return None, (f"colour image {rgb.shape[1]}x{rgb.shape[0]} differs from depth "
                      f"{size[0]}x{size[1]}; overlay skipped, poses still published")
    return rgb, None


def read_frame(depth_msg, masks_msg, det2d_msg, info_msg, color_msg=None,
               info_topic: str = "camera_info", depth_range_m=(0.1, 10.0),
               max_instances: int = 0) -> FrameInput:
    """Decode and cross-check one synchronised set; raises `InputProblem`."""
    if info_msg is None:
        raise InputProblem(f"no camera_info received yet on {info_topic}; frame skipped")
    try:
        intr = camera_info_to_intrinsics(info_msg)
    except ValueError as exc:
        raise InputProblem(str(exc)) from None
    depth, depth_note = read_depth_mm(depth_msg, depth_range_m)
    det2d_msg, notes = cap_detections(det2d_msg, max_instances)
    try:
        instances = decode_masks(masks_msg, det2d_msg)
        distortion = camera_info_distortion(info_msg)
    except ValueError as exc:
        raise InputProblem(str(exc)) from None
    notes += clamp_scores(instances)
    sizes = {"depth": (depth.shape[1], depth.shape[0]),
             "masks": (int(masks_msg.width), int(masks_msg.height)),
             "camera_info": (intr.width, intr.height)}
    if len(set(sizes.values())) > 1:
        raise InputProblem("image sizes differ: " + ", ".join(f"{k} {w}x{h}" for k, (w, h) in sizes.items()))
    if depth_msg.header.frame_id != masks_msg.header.frame_id:
        raise InputProblem(f"depth frame {depth_msg.header.frame_id!r} differs from masks frame "
                           f"{masks_msg.header.frame_id!r} (depth must be aligned to colour)")
    color = None
    if color_msg is not None:
        color, note = read_color(color_msg, sizes["depth"])
        notes += [note] if note else []
    if distortion:  # onto the pinhole camera of the same K: points, table plane and overlay agree
        maps = _undistort_maps(intr, distortion)
        depth = undistort(depth, maps)
        for inst in instances:
            inst.mask = undistort(inst.mask, maps)
        color = None if color is None else undistort(color, maps, nearest=False)
    return FrameInput(depth_msg.header, depth, intr, instances, color, notes, depth_note)


@functools.lru_cache(maxsize=4)
def _undistort_maps(intr, distortion: tuple[float, ...]):
    return undistort_maps(intr, distortion)


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
