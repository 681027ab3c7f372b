"""Debug overlay: projected sized boxes and object axes drawn on the colour image (OpenCV)."""
from __future__ import annotations

import cv2
import numpy as np

_EDGES = [(0, 1), (1, 3), (3, 2), (2, 0), (4, 5), (5, 7), (7, 6), (6, 4), (0, 4), (1, 5), (2, 6), (3, 7)]
_COLORS = {  # RGB 0..255
    "bottle": (31, 119, 180), "bowl": (255, 127, 14), "camera": (44, 160, 44),
    "can": (214, 39, 40), "laptop": (148, 103, 189), "mug": (140, 86, 75),
}


def box_corners(size: np.ndarray) -> np.ndarray:
    """(8, 3) corners of a box of edge lengths ``size`` (3,) centred at the origin."""
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    return 0.5 * signs * np.asarray(size, dtype=np.float64)


def _project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray | None:
    if np.any(points_cam[:, 2] <= 1e-3):
        return None  # behind or at the camera: skip rather than draw garbage
    uv = (K @ points_cam.T).T
    return uv[:, :2] / uv[:, 2:3]


def draw_overlay(rgb: np.ndarray, K: np.ndarray, R, t, size, labels, categories,
                 axis_length: float = 0.05) -> np.ndarray:
    """A copy of ``rgb`` (H, W, 3) uint8 with each instance's box, axes and label drawn.

    ``K`` (3, 3) intrinsics; ``R`` (B, 3, 3), ``t`` (B, 3), ``size`` (B, 3) in the camera frame.
    Axes: x red, y green, z blue.
    """
    out = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    for i, (label, category) in enumerate(zip(labels, categories)):
        Ri, ti = np.asarray(R[i], np.float64), np.asarray(t[i], np.float64)
        color = _COLORS.get(category, (200, 200, 200))
        corners = _project(box_corners(size[i]) @ Ri.T + ti, K)
        if corners is None:
            continue
        pts = np.round(corners).astype(np.int32)
        for a, b in _EDGES:
            cv2.line(out, tuple(map(int, pts[a])), tuple(map(int, pts[b])), color, 2, cv2.LINE_AA)
        axes = np.vstack([np.zeros(3), np.eye(3) * axis_length]) @ Ri.T + ti
        axes_uv = _project(axes, K)
        if axes_uv is not None:
            o = tuple(map(int, np.round(axes_uv[0])))
            for k, c in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
                cv2.line(out, o, tuple(map(int, np.round(axes_uv[k + 1]))), c, 2, cv2.LINE_AA)
        top = pts[np.argmin(pts[:, 1])]
        cv2.putText(out, label, (int(top[0]), max(int(top[1]) - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, color, 1, cv2.LINE_AA)
    return out
