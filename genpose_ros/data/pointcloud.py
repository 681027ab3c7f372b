"""Masked depth -> a fixed number of object points (shared by the dataset and the ROS nodes)."""
from __future__ import annotations

import numpy as np

from genpose_ros.data.camera import Intrinsics, backproject

MIN_POINTS = 50
"""Default minimum number of valid depth pixels for an object crop to be usable."""


class TooFewPointsError(ValueError):
    """An object crop has fewer valid depth points than needed."""

    def __init__(self, n_valid: int, n_needed: int):
        self.n_valid, self.n_needed = n_valid, n_needed
        super().__init__(f"only {n_valid} valid depth points inside the mask, "
                         f"at least {n_needed} needed")


def object_points(depth_mm: np.ndarray, mask_bool: np.ndarray, intr: Intrinsics, n_points: int,
                  rng: np.random.Generator, min_points: int = MIN_POINTS) -> np.ndarray:
    """Back-project the valid depth pixels inside a mask and sample ``n_points`` of them.

    Args:
        depth_mm: (H, W) uint16 depth in millimetres (0 = no measurement).
        mask_bool: (H, W) bool object mask.
        intr: intrinsics of the depth image.
        n_points: number of points returned; sampled without replacement when enough valid
            pixels exist, with replacement otherwise.
        rng: random generator for the sampling.
        min_points: fewer valid pixels than this raise ``TooFewPointsError``.
    Returns:
        (n_points, 3) float32 camera-frame points in metres.
    """
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    depth_mm = np.asarray(depth_mm)
    if depth_mm.dtype.kind == "f":
        raise ValueError("depth_mm must be integer millimetres (uint16), got a float image; "
                         "convert metres with np.round(depth_m * 1000).astype(np.uint16)")
    points = backproject(depth_mm.astype(np.float32) / 1000.0, mask_bool, intr)
    if len(points) < max(min_points, 1):
        raise TooFewPointsError(len(points), max(min_points, 1))
    idx = rng.choice(len(points), n_points, replace=len(points) < n_points)
    return points[idx]


def count_valid(depth_mm: np.ndarray, mask_bool: np.ndarray) -> int:
    """Number of pixels inside the mask with a depth measurement."""
    return int(np.count_nonzero((np.asarray(depth_mm) > 0) & np.asarray(mask_bool, dtype=bool)))
