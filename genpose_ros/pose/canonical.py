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
    return v / np.linalg.norm(v)


def stable_yaw(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``R`` turned about its own y axis so that its z axis faces the camera (module docstring)."""
    R = np.asarray(R, dtype=np.float64)
    y = _unit(R[:, 1])
    view = -np.asarray(t, dtype=np.float64)
    view = view / max(np.linalg.norm(view), 1e-12)
    z = view - view.dot(y) * y
    if np.linalg.norm(z) < np.sin(np.deg2rad(AXIS_VIEW_DEG)):
        up = np.array([0.0, -1.0, 0.0])
        z = up - up.dot(y) * y
        if np.linalg.norm(z) < 1e-6:  # y along the image's vertical: use the image's x
            z = np.array([1.0, 0.0, 0.0]) - y[0] * y
    z = _unit(z)
    return np.column_stack([np.cross(y, z), y, z])


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
            for k in range(len(h)):
                h[k, :3, :3] = stable_yaw(h[k, :3, :3], t[i])
    return R, hyps
