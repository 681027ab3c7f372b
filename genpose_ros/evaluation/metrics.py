"""NOCS evaluation metrics of one prediction against one ground-truth instance:
symmetric-aware rotation error, translation error and 3D IoU of sized boxes. The accuracy and
mAP tables built from them are in ``tables``.

Conventions (as the NOCS benchmark): poses are ``R_cam_obj`` (3, 3) and ``t_cam_obj`` (3,)
in metres; ``size`` is the tight box edge lengths (x, y, z) in metres in the NOCS canonical
frame (y up). Bottle, bowl and can are symmetric about y; a mug is too when its handle is not
visible. For those only the angle between the y axes counts, and the 3D IoU is maximised over
turns of the predicted box about its y axis.

3D IoU variants (``variant=`` of ``iou_3d`` and ``tables.nocs_tables``):
    "exact" (default): the exact volume of the intersection of the two oriented boxes. The
        vertices of the intersection polytope are the box edges clipped against the other
        box; its volume is that of their convex hull (scipy/Qhull). This is the IoU the
        metric means, independent of how the camera is turned. Symmetric cases: the best
        turn, found by a 24-step scan over half a turn and a bounded refinement.
    "aabb": the IoU of the camera-frame axis-aligned boxes around the two posed boxes, what
        the NOCS evaluation computes once its axis bug (below) is fixed. It depends on the
        camera orientation and ignores part of the rotation error.
    "nocs": the number the original NOCS evaluation code (``compute_3d_iou_new`` /
        ``asymmetric_3d_iou``) returns, bug included: it takes ``np.amax(corners, axis=0)`` of
        a [3, 8] corner array, i.e. the maximum over x, y, z of each corner instead of over the
        corners of each axis, so it multiplies 8 meaningless intervals. Many published
        REAL275 IoU tables were made with it; it is here only to compare with those tables.
    Symmetric cases of "aabb" and "nocs" take, as that code does, the best of 20 turns of
    18 deg over the full circle (the bug makes a half turn change the value).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.spatial import ConvexHull, QhullError

from genpose_ros import CATEGORIES

SYMMETRIC_CATEGORIES = ("bottle", "bowl", "can")
NOCS_TURNS = 20  # the NOCS code's scan of symmetric boxes: 20 turns over 360 deg


def is_symmetric(category: str, handle_visible: bool = True) -> bool:
    """True when only the y axis of ``category`` is observable (bottle, bowl, can, hidden mug)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")
    return category in SYMMETRIC_CATEGORIES or (category == "mug" and not bool(handle_visible))


def _rotation(R, name: str) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"{name} must have shape (..., 3, 3), got {R.shape}")
    return R


def rotation_error_deg(R_pred, R_gt, category: str | Sequence[str], handle_visible=True):
    """Rotation error in degrees, symmetric-aware.

    Args:
        R_pred, R_gt: (..., 3, 3) rotations object -> camera.
        category: a category name, or one per leading element.
        handle_visible: bool or (...,) bools (only used for mugs).
    Returns:
        float (or (...,) array): the geodesic angle, or for symmetric cases the angle between
        the two y axes (NOCS convention).
    """
    R_pred, R_gt = _rotation(R_pred, "R_pred"), _rotation(R_gt, "R_gt")
    batch = np.broadcast_shapes(R_pred.shape[:-2], R_gt.shape[:-2])
    cats = np.broadcast_to(np.asarray(category, dtype=object), batch)
    hv = np.broadcast_to(np.asarray(handle_visible, dtype=bool), batch)
    sym = np.vectorize(is_symmetric, otypes=[bool])(cats, hv) if cats.size else np.zeros(batch, bool)
    cos_full = (np.einsum("...ij,...ij->...", R_pred, R_gt) - 1.0) / 2.0
    cos_y = np.einsum("...i,...i->...", R_pred[..., :, 1], R_gt[..., :, 1])
    cos = np.where(sym, cos_y, cos_full)
    err = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return float(err) if np.ndim(err) == 0 else err


def translation_error_cm(t_pred, t_gt):
    """Euclidean distance of (..., 3) translations in metres, returned in centimetres."""
    t_pred, t_gt = np.asarray(t_pred, dtype=np.float64), np.asarray(t_gt, dtype=np.float64)
    if t_pred.shape[-1] != 3 or t_gt.shape[-1] != 3:
        raise ValueError(f"translations must have shape (..., 3), got {t_pred.shape}, {t_gt.shape}")
    err = 100.0 * np.linalg.norm(t_pred - t_gt, axis=-1)
    return float(err) if np.ndim(err) == 0 else err


_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
_EDGES = np.array([(i, j) for i in range(8) for j in range(i + 1, 8)
                   if np.abs(_SIGNS[i] - _SIGNS[j]).sum() == 2])  # (12, 2)


def box_corners(R, t, size) -> np.ndarray:
    """(8, 3) camera-frame corners of the box of edge lengths ``size`` posed by R, t."""
    local = 0.5 * _SIGNS * np.asarray(size, dtype=np.float64)
    return local @ np.asarray(R, dtype=np.float64).T + np.asarray(t, dtype=np.float64)


def _clip_edges(corners: np.ndarray, R, t, half) -> np.ndarray:
    """Parts of the 12 edges of a box (given by its corners) inside the box (R, t, half):
    the end points of the clipped segments (Liang-Barsky against the 3 slabs)."""
    q = (corners - t) @ R  # corners in the other box's frame
    half = half + 1e-9 + 1e-7 * half.max()  # faces that coincide up to rounding still touch
    p0, p1 = q[_EDGES[:, 0]], q[_EDGES[:, 1]]
    d = p1 - p0
    with np.errstate(divide="ignore", invalid="ignore"):
        ua, ub = (-half - p0) / d, (half - p0) / d
    lo = np.where(d == 0, np.where(np.abs(p0) <= half, -np.inf, np.inf), np.minimum(ua, ub))
    hi = np.where(d == 0, np.where(np.abs(p0) <= half, np.inf, -np.inf), np.maximum(ua, ub))
    u0 = np.maximum(lo.max(axis=1), 0.0)
    u1 = np.minimum(hi.min(axis=1), 1.0)
    keep = u0 <= u1
    seg0, seg1 = p0[keep] + u0[keep, None] * d[keep], p0[keep] + u1[keep, None] * d[keep]
    return np.concatenate([seg0, seg1]) @ np.asarray(R).T + t


def _intersection_volume(R1, t1, s1, R2, t2, s2) -> float:
    c1, c2 = box_corners(R1, t1, s1), box_corners(R2, t2, s2)
    pts = np.concatenate([_clip_edges(c1, R2, t2, 0.5 * s2), _clip_edges(c2, R1, t1, 0.5 * s1)])
    if len(pts) < 4:
        return 0.0
    try:
        return float(ConvexHull(pts).volume)
    except QhullError:  # flat or degenerate intersection
        return 0.0


def _iou_exact(R1, t1, s1, R2, t2, s2) -> float:
    if np.linalg.norm(t1 - t2) > 0.5 * (np.linalg.norm(s1) + np.linalg.norm(s2)):
        return 0.0  # the bounding spheres do not meet
    inter = _intersection_volume(R1, t1, s1, R2, t2, s2)
    union = np.prod(s1) + np.prod(s2) - inter
    return float(inter / union) if union > 0 else 0.0


def _iou_aabb(R1, t1, s1, R2, t2, s2) -> float:
    c1, c2 = box_corners(R1, t1, s1), box_corners(R2, t2, s2)
    return _aabb_iou(c1, c2, axis=0)


def _iou_nocs(R1, t1, s1, R2, t2, s2) -> float:
    # the original code works on [3, 8] corner arrays and reduces over axis 0 (the bug)
    c1, c2 = box_corners(R1, t1, s1).T, box_corners(R2, t2, s2).T
    return _aabb_iou(c1, c2, axis=0)


def _aabb_iou(c1, c2, axis: int) -> float:
    lo1, hi1, lo2, hi2 = c1.min(axis), c1.max(axis), c2.min(axis), c2.max(axis)
    extent = np.minimum(hi1, hi2) - np.maximum(lo1, lo2)
    inter = 0.0 if extent.min() < 0 else float(np.prod(extent))
    union = np.prod(hi1 - lo1) + np.prod(hi2 - lo2) - inter
    return float(inter / union) if union > 0 else 0.0


def _rot_y(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


IOU_VARIANTS = {"exact": _iou_exact, "aabb": _iou_aabb, "nocs": _iou_nocs}


def iou_3d(R1, t1, s1, R2, t2, s2, category: str, handle_visible: bool = True,
           variant: str = "exact") -> float:
    """3D IoU of two sized, posed boxes (box 1 = prediction, box 2 = ground truth).

    For symmetric cases (``is_symmetric``) box 1 is turned about its own y axis to the angle
    that maximises the IoU: for "exact" a 24-step scan over half a turn then a bounded
    refinement; for "aabb" and "nocs" the NOCS code's 20 turns over the full circle.
    ``variant`` is "exact", "aabb" or "nocs" (see the module docstring).
    """
    fn = IOU_VARIANTS.get(variant)
    if fn is None:
        raise ValueError(f"unknown IoU variant {variant!r}; use one of {', '.join(IOU_VARIANTS)}")
    R1, R2 = _rotation(R1, "R1"), _rotation(R2, "R2")
    t1, t2 = np.asarray(t1, float).reshape(3), np.asarray(t2, float).reshape(3)
    s1, s2 = np.asarray(s1, float).reshape(3), np.asarray(s2, float).reshape(3)
    if (s1 <= 0).any() or (s2 <= 0).any():
        raise ValueError(f"box sizes must be positive, got {s1} and {s2}")
    if not is_symmetric(category, handle_visible):
        return fn(R1, t1, s1, R2, t2, s2)
    if variant != "exact":
        return max(fn(R1 @ _rot_y(2 * math.pi * i / NOCS_TURNS), t1, s1, R2, t2, s2) for i in range(NOCS_TURNS))

    def neg_iou(theta):
        return -fn(R1 @ _rot_y(theta), t1, s1, R2, t2, s2)

    step = np.pi / 24  # the box repeats every 180 deg about y
    thetas = np.arange(24) * step
    values = np.array([neg_iou(a) for a in thetas])
    best = int(values.argmin())
    if values[best] == 0.0:
        return 0.0
    res = minimize_scalar(neg_iou, bounds=(thetas[best] - step, thetas[best] + step),
                          method="bounded", options={"xatol": 1e-3})
    return float(max(-values[best], -res.fun))


def record_errors(record: dict, iou_variant: str = "exact") -> dict:
    """Rotation error (deg), translation error (cm) and IoU of one ground-truth record (see
    ``tables.nocs_tables``); inf / 0 for a missed instance, NaN IoU when no size is predicted."""
    cat, hv = record["category"], bool(record.get("handle_visible", True))
    if record.get("R_pred") is None or record.get("t_pred") is None:
        return {"rot": math.inf, "trans": math.inf, "iou": 0.0}
    rot = rotation_error_deg(record["R_pred"], record["R_gt"], cat, hv)
    trans = translation_error_cm(record["t_pred"], record["t_gt"])
    if record.get("size_pred") is None or record.get("size_gt") is None:
        iou = math.nan
    else:
        iou = iou_3d(record["R_pred"], record["t_pred"], record["size_pred"], record["R_gt"],
                     record["t_gt"], record["size_gt"], cat, hv, variant=iou_variant)
    return {"rot": rot, "trans": trans, "iou": iou}
