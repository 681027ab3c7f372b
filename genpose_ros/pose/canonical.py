"""Published pose conventions: a stable yaw for symmetric objects and a covariance from the
K pose hypotheses. numpy only; poses are camera-frame ``R`` (3, 3, object -> camera) and ``t``
(3,) metres, object frames as NOCS (y up through the object, see docs/ros.md).

Stable yaw. Bottle, bowl and can (and a mug whose handle the hypotheses cannot agree on) look
the same turned about their y axis, so the estimated yaw is arbitrary and changes from frame to
frame. `stable_yaw` replaces it by a rule: the object's **z axis points towards the camera**
(the viewing direction ``-t`` projected onto the plane normal to the object's y axis). When the
camera looks along the y axis (within ``AXIS_VIEW_DEG``, e.g. a bowl seen from straight above),
that direction is undefined and z points towards the top of the image (camera ``-y``) instead.

Covariance. `pose_covariance` is the 6x6 covariance (x, y, z, rotation about the parent's
x, y, z; metres and radians, the order of geometry_msgs/PoseWithCovariance) of the K
hypotheses about the published pose, after the same yaw rule (so a symmetric object carries no
spread about its axis). Fewer than 2 hypotheses: unknown (``None``).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from genpose_ros.evaluation.metrics import SYMMETRIC_CATEGORIES

AXIS_VIEW_DEG = 3.0
"""Within this angle of the object's y axis the camera direction gives no yaw."""
MUG_YAW_AGREEMENT = 0.5
"""A mug is treated as symmetric when its hypotheses' yaw agreement is below this."""


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _reject(v: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The part of ``v`` normal to the unit vectors ``y`` (..., 3)."""
    return v - np.sum(v * y, axis=-1, keepdims=True) * y


def stable_yaw(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``R`` (..., 3, 3) turned about its own y axis so that its z axis faces the camera from
    ``t`` (3,) or (..., 3) (module docstring)."""
    R = np.asarray(R, dtype=np.float64)
    y = _unit(R[..., :, 1])
    view = np.broadcast_to(_unit(-np.asarray(t, dtype=np.float64)), y.shape)
    z = _reject(view, y)
    along = np.linalg.norm(z, axis=-1, keepdims=True) < np.sin(np.deg2rad(AXIS_VIEW_DEG))
    up = _reject(np.broadcast_to([0.0, -1.0, 0.0], y.shape), y)         # the image's top
    side = _reject(np.broadcast_to([1.0, 0.0, 0.0], y.shape), y)        # y vertical in the image
    fallback = np.where(np.linalg.norm(up, axis=-1, keepdims=True) < 1e-6, side, up)
    z = _unit(np.where(along, fallback, z))
    return np.stack([np.cross(y, z), y, z], axis=-1)


def yaw_agreement(hypotheses: np.ndarray) -> float:
    """Mean resultant length (0..1) of the hypotheses' x axes about their mean y axis:
    1 = all candidates agree on the yaw, near 0 = yaw spread all around."""
    R = np.asarray(hypotheses, dtype=np.float64)[:, :3, :3]
    y = _unit(R[:, :, 1].mean(axis=0))
    x = R[:, :, 0] - (R[:, :, 0] @ y)[:, None] * y  # x axes in the plane normal to y
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return float(np.linalg.norm(x.mean(axis=0)))


def yaw_is_arbitrary(category: str, hypotheses: np.ndarray | None) -> bool:
    """Bottle, bowl, can always; a mug when its (>= 2) hypotheses disagree on the yaw."""
    if category in SYMMETRIC_CATEGORIES:
        return True
    if category != "mug" or hypotheses is None or len(hypotheses) < 2:
        return False
    return yaw_agreement(hypotheses) < MUG_YAW_AGREEMENT


def pose_covariance(R: np.ndarray, t: np.ndarray, hypotheses: np.ndarray | None) -> np.ndarray | None:
    """(6, 6) covariance of the (K, 4, 4) ``hypotheses`` about the pose ``(R, t)``; None if K < 2."""
    if hypotheses is None or len(hypotheses) < 2:
        return None
    H = np.asarray(hypotheses, dtype=np.float64)
    dt = H[:, :3, 3] - np.asarray(t, dtype=np.float64)
    drot = Rotation.from_matrix(H[:, :3, :3] @ np.asarray(R, dtype=np.float64).T).as_rotvec()
    d = np.concatenate([dt, drot], axis=1)  # (K, 6) deviations from the published pose
    return d.T @ d / len(d)


def canonical_poses(R, t, categories, hypotheses=None):
    """Apply the yaw rule to the objects whose yaw is arbitrary, and to their hypotheses.

    R (B, 3, 3), t (B, 3), categories (B,), hypotheses: None or B arrays (K_i, 4, 4).
    Returns (R, hypotheses) with the same shapes; inputs are not modified."""
    R = np.array(R, dtype=np.float32, copy=True)
    hyps = None if hypotheses is None else [np.array(h, dtype=np.float32, copy=True) for h in hypotheses]
    for i, cat in enumerate(categories):
        h = None if hyps is None else hyps[i]
        if not yaw_is_arbitrary(cat, h):
            continue
        R[i] = stable_yaw(R[i], t[i])
        if h is not None:
            h[:, :3, :3] = stable_yaw(h[:, :3, :3], t[i])
    return R, hyps
