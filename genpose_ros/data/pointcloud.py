"""Masked depth -> a fixed number of object points (shared by the dataset and the ROS nodes),
and the depth clean-up of predicted masks.

A predicted mask that spills over the object's outline takes in pixels of whatever lies behind
or beside it. The point encoder's farthest-point sampling picks exactly those points, so one or
two percent of them move a pose by centimetres. ``drop_depth_islands`` removes them from a
mask: the pixels joined to its main part through neighbouring pixels of similar depth stay.
``fit_plane`` finds the dominant plane of a depth image (the table, for the segmenter's masks
and the estimator's poses).
"""
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


DEPTH_STEP_MM = 15.0
"""Neighbouring pixels closer in depth than this (plus ``DEPTH_STEP_REL`` of their depth) are joined."""
DEPTH_STEP_REL = 0.03
KEEP_FRACTION = 0.2
"""Depth-connected parts with at least this fraction of the largest part's pixels are kept."""


def mask_box(mask: np.ndarray, pad: int = 0) -> tuple[slice, slice] | None:
    """The rows and columns of the bounding box of an (H, W) bool mask, ``pad`` pixels wider
    on each side within the image; None when the mask is empty."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if len(rows) == 0:
        return None
    h, w = mask.shape
    return (slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, h)),
            slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, w)))


def drop_depth_islands(depth_mm: np.ndarray, mask_bool: np.ndarray, step_mm: float = DEPTH_STEP_MM,
                       step_rel: float = DEPTH_STEP_REL, keep_fraction: float = KEEP_FRACTION) -> np.ndarray:
    """``mask_bool`` less its small parts that are cut off from the rest by depth steps.

    Two 4-neighbouring mask pixels with depth are joined when their depths differ by less than
    ``step_mm + step_rel * depth``; parts with fewer than ``keep_fraction`` of the largest
    part's pixels are dropped (a rim of table, wall or another object caught at the outline).
    Pixels without depth are left as they are. Returns an (H, W) bool mask.
    """
    from scipy import ndimage

    depth = np.asarray(depth_mm)
    mask = np.asarray(mask_bool, dtype=bool)
    valid = mask & (depth > 0)
    box = mask_box(valid)  # work on the mask's box
    if box is None:
        return mask.copy()
    v, z = valid[box], depth[box].astype(np.float32)

    def joined(a, b, za, zb):  # neighbours with depth and no step between them
        return a & b & (np.abs(za - zb) < step_mm + step_rel * np.minimum(za, zb))

    # Pixels at the even places of a grid twice the size, the joins between them at the odd
    # places in between: the grid's 4-connected parts are the parts of the mask.
    grid = np.zeros((2 * v.shape[0] - 1, 2 * v.shape[1] - 1), dtype=bool)
    grid[::2, ::2] = v
    grid[::2, 1::2] = joined(v[:, :-1], v[:, 1:], z[:, :-1], z[:, 1:])
    grid[1::2, ::2] = joined(v[:-1], v[1:], z[:-1], z[1:])
    labels = ndimage.label(grid)[0][::2, ::2]
    counts = np.bincount(labels[v])
    dropped = v & (counts[labels] < keep_fraction * counts[1:].max())
    out = mask.copy()
    out[box] &= ~dropped
    return out


OUTLINE_CAP = 3
"""Outline margins are counted up to this many pixels."""
OUTLINE_SIDES = ("below", "above", "right", "left")


def outline_margins(mask_bool: np.ndarray, cap: int = OUTLINE_CAP) -> np.ndarray:
    """(H, W, 4) uint8: for every pixel, how many mask pixels follow it in a row below, above, to
    the right and to the left of it (``OUTLINE_SIDES``), counted up to ``cap``; outside the image
    counts as outside the mask. A pixel on the mask's lower outline has 0 below: the mask eroded
    by k pixels from below keeps the pixels with at least k below (training's outline
    augmentation, ``genpose_ros.data.dataset.outline_keep``)."""
    mask = np.asarray(mask_bool, dtype=bool)
    out = np.zeros(mask.shape + (len(OUTLINE_SIDES),), dtype=np.uint8)
    box = mask_box(mask)
    if box is None:
        return out
    padded = np.pad(mask[box], cap)  # the box's surroundings are outside the mask
    h, w = padded.shape[0] - 2 * cap, padded.shape[1] - 2 * cap
    counts = out[box]
    for side, (dy, dx) in enumerate(((1, 0), (-1, 0), (0, 1), (0, -1))):
        run = mask[box].copy()  # a mask pixel whose next j pixels on this side are all in the mask
        for j in range(1, cap + 1):
            run &= padded[cap + j * dy:cap + j * dy + h, cap + j * dx:cap + j * dx + w]
            counts[..., side] += run
    return out


def point_margins(depth_mm: np.ndarray, mask_bool: np.ndarray) -> np.ndarray:
    """(N, 4) uint8 ``outline_margins`` of the valid depth pixels inside a mask, in the order
    ``camera.backproject`` returns their points (row-major)."""
    mask = np.asarray(mask_bool, dtype=bool)
    return outline_margins(mask)[(np.asarray(depth_mm) > 0) & mask]


def object_points(depth_mm: np.ndarray, mask_bool: np.ndarray, intr: Intrinsics, n_points: int,
                  rng: np.random.Generator, min_points: int = MIN_POINTS, margins: bool = False):
    """Back-project the valid depth pixels inside a mask and sample ``n_points`` of them.

    Args:
        depth_mm: (H, W) uint16 depth in millimetres (0 = no measurement).
        mask_bool: (H, W) bool object mask.
        intr: intrinsics of the depth image.
        n_points: number of points returned; sampled without replacement when enough valid
            pixels exist, with replacement otherwise.
        rng: random generator for the sampling.
        min_points: fewer valid pixels than this raise ``TooFewPointsError``.
        margins: also return the points' ``outline_margins`` (n_points, 4) uint8.
    Returns:
        (n_points, 3) float32 camera-frame points in metres (and their margins).
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
    if not margins:
        return points[idx]
    return points[idx], point_margins(depth_mm, mask_bool)[idx]


def count_valid(depth_mm: np.ndarray, mask_bool: np.ndarray) -> int:
    """Number of pixels inside the mask with a depth measurement."""
    return int(np.count_nonzero((np.asarray(depth_mm) > 0) & np.asarray(mask_bool, dtype=bool)))


def depth_points(depth_mm: np.ndarray, fx: float, rows: np.ndarray, cols: np.ndarray, fy: float | None = None,
                 principal: tuple[float, float] | None = None) -> np.ndarray:
    """(M, 3) float64 points (m) of the depth pixels (``rows``, ``cols``); the principal point
    (cx, cy) defaults to the image centre, ``fy`` to ``fx``."""
    h, w = depth_mm.shape
    cx, cy = principal if principal is not None else ((w - 1) / 2, (h - 1) / 2)
    z = depth_mm[rows, cols].astype(np.float64) / 1000.0
    return np.stack([(cols - cx) * z / fx, (rows - cy) * z / (fy or fx), z], axis=1)


def fit_plane(depth_mm: np.ndarray, fx: float, exclude: np.ndarray | None = None, *, fy: float | None = None,
              principal: tuple[float, float] | None = None, inlier_m: float = 0.006, min_inliers: float = 0.2,
              iterations: int = 64, samples: int = 1000, seed: int = 0) -> tuple[np.ndarray, float] | None:
    """The dominant plane ``n . p + d = 0`` (unit ``n``, ``d > 0``: the camera on its positive
    side) of the depth pixels (H, W uint16 mm) outside ``exclude``: RANSAC, ``iterations``
    planes through three of ``samples`` pixels from every 4th row and column, ``inlier_m``
    inlier distance, then a least-squares fit on the inliers; None when it holds fewer than
    ``min_inliers`` of them. Back-projected with ``fx``, ``fy`` (default ``fx``) and the
    ``principal`` point (cx, cy; default the image centre): pass the camera's to have the plane
    in its frame."""
    depth_mm = np.asarray(depth_mm)
    valid = depth_mm[::4, ::4] > 0
    if exclude is not None:
        valid &= ~np.asarray(exclude, dtype=bool)[::4, ::4]
    rows, cols = np.nonzero(valid)
    if len(rows) < 3:
        return None
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(rows), min(samples, len(rows)), replace=False)
    p = depth_points(depth_mm, fx, 4 * rows[pick], 4 * cols[pick], fy, principal)
    triples = p[rng.integers(0, len(p), (iterations, 3))]                 # (I, 3, 3)
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    ok = norms > 1e-12
    if not ok.any():
        return None
    normals = normals[ok] / norms[ok, None]
    offsets = -np.einsum("ij,ij->i", normals, triples[ok, 0])
    counts = (np.abs(p @ normals.T + offsets) < inlier_m).sum(axis=0)
    best = int(np.argmax(counts))
    inliers = np.abs(p @ normals[best] + offsets[best]) < inlier_m
    if inliers.mean() < min_inliers:
        return None
    centre = p[inliers].mean(axis=0)
    n = np.linalg.svd(p[inliers] - centre, full_matrices=False)[2][2]
    d = -float(n @ centre)
    return (-n, -d) if d < 0 else (n, d)
