"""Masks fitted to the table they stand on.

A tabletop object's mask drawn by the network is off by a few pixels at its outline. Where the
object meets the table that matters most: pixels of table caught at its foot pull its cloud
below the object, and a missed band along the foot of an object seen from above (its
foreshortened wall) lifts the cloud's bottom by centimetres. Both are cheap to tell apart
in the depth image: the table is the dominant plane of the scene.

``fit_plane`` finds that plane (``data.pointcloud.fit_plane``: RANSAC on the depth pixels
outside every mask, then a least-squares fit on its inliers); ``snap_masks`` drops the mask
pixels lying on it and, with ``grow_px`` (off by default: measured, docs/segmentation.md),
grows each mask by a few pixels onto depth pixels clearly above it that no other mask holds.
Where the floor or a wall holds more of the pixels than the table, the plane is that one: mask
pixels on it are background too, and nothing above it is dropped.

Points are back-projected with the principal point at the image centre (the segmenter is
given fx only; the pose stage fits the plane with the camera's intrinsics, pose/support.py).
A principal point off by a few pixels shears the whole scene by the same linear map, which
keeps planes planes and changes heights above them by well under a percent.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genpose_ros.data.pointcloud import depth_points, mask_box
from genpose_ros.data.pointcloud import fit_plane as depth_plane


@dataclass(frozen=True)
class SupportPlane:
    """Settings of ``snap_masks`` (``config/maskrcnn.yaml``'s ``support_*`` keys)."""

    trim_height: float = 0.003   # m: mask pixels less than this above the plane (or beyond it) are dropped
    grow_px: int = 0             # px: masks grow by up to this many pixels ...
    grow_height: float = 0.01    # m: ... onto depth pixels at least this high above the plane
    inlier_m: float = 0.006      # m: RANSAC inlier distance
    min_inliers: float = 0.2     # fraction of the sampled pixels the plane must hold, else no snapping
    iterations: int = 64
    samples: int = 1000          # depth pixels the plane is fitted on (from every 4th row and column)

    def __post_init__(self):
        if self.trim_height < 0 or self.grow_height < 0 or self.inlier_m <= 0:
            raise ValueError("support plane heights must be >= 0 m and inlier_m > 0 m")
        if not 0 <= int(self.grow_px) <= 10 or int(self.grow_px) != self.grow_px:
            raise ValueError(f"support grow_px must be a whole number of pixels 0-10, got {self.grow_px}")
        if not 0 < self.min_inliers < 1 or self.iterations < 1 or self.samples < 3:
            raise ValueError("support plane needs 0 < min_inliers < 1, iterations >= 1, samples >= 3")


def fit_plane(depth_mm: np.ndarray, fx: float, exclude: np.ndarray | None = None,
              settings: SupportPlane = SupportPlane(), seed: int = 0) -> tuple[np.ndarray, float] | None:
    """``data.pointcloud.fit_plane`` with the RANSAC settings of ``settings`` (principal point at
    the image centre)."""
    return depth_plane(depth_mm, fx, exclude, inlier_m=settings.inlier_m, min_inliers=settings.min_inliers,
                       iterations=settings.iterations, samples=settings.samples, seed=seed)


def snap_masks(masks: np.ndarray, depth_mm: np.ndarray, fx: float,
               settings: SupportPlane = SupportPlane()) -> np.ndarray:
    """(N, H, W) bool ``masks`` (best detection first) with their pixels on the support plane
    (less than ``trim_height`` above it, or beyond it: background seen past the table) dropped
    and, with ``grow_px``, grown onto depth pixels above it that no mask holds (each to one
    mask). Unchanged when no plane is found."""
    import cv2

    masks = np.asarray(masks, dtype=bool)
    depth = np.asarray(depth_mm)
    out = masks.copy()
    if len(masks) == 0:
        return out
    claimed = masks.any(axis=0)
    plane = fit_plane(depth, fx, claimed, settings)
    if plane is None:
        return out
    n, d = plane
    g = int(settings.grow_px)
    kernel = np.ones((3, 3), np.uint8)
    for m, snapped in zip(masks, out):   # the first mask (the best detection) claims a pixel first
        box = mask_box(m, g)
        if box is None:
            continue
        v, u = np.mgrid[box]
        height = (depth_points(depth, fx, v.ravel(), u.ravel()) @ n + d).reshape(v.shape)
        has_depth = depth[box] > 0
        crop = snapped[box]                                  # a view: edits land in ``out``
        crop &= ~(has_depth & (height < settings.trim_height))
        if g:
            free = has_depth & (height >= settings.grow_height) & ~claimed[box]
            crop |= cv2.dilate(m[box].astype(np.uint8), kernel, iterations=g).astype(bool) & free
            claimed[box] |= crop
    return out
