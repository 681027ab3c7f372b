"""Pictures of frames for people: projected 3D boxes and a four-panel overview."""
from __future__ import annotations

import colorsys

import cv2
import numpy as np

from genpose_ros.data.camera import Intrinsics, project
from genpose_ros.data.frame import Frame

_BOX_EDGES = [(0, 1), (1, 3), (3, 2), (2, 0), (4, 5), (5, 7), (7, 6), (6, 4),
              (0, 4), (1, 5), (2, 6), (3, 7)]


def instance_colour(k: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((k * 0.61803) % 1.0, 0.8, 1.0)
    return int(255 * r), int(255 * g), int(255 * b)


def draw_box(img: np.ndarray, R, t, size, intr: Intrinsics, colour, label: str | None = None,
             axes: bool = True) -> np.ndarray:
    """Draw the projected box (and the object's x/y/z axes in red/green/blue) on an RGB image."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    R, t, size = np.asarray(R, float), np.asarray(t, float), np.asarray(size, float)
    corners = (0.5 * signs * size) @ R.T + t
    if (corners[:, 2] <= 0.01).any():
        return img
    uv = project(corners, intr)
    for i, j in _BOX_EDGES:
        cv2.line(img, tuple(np.round(uv[i]).astype(int)), tuple(np.round(uv[j]).astype(int)),
                 colour, 2, cv2.LINE_AA)
    if axes:
        o = project(t, intr)
        for a, c in zip(range(3), [(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
            end = project(t + R[:, a] * 0.5 * size[a] * 1.2, intr)
            cv2.line(img, tuple(np.round(o).astype(int)), tuple(np.round(end).astype(int)), c, 2,
                     cv2.LINE_AA)
    if label:
        top = uv[np.argmin(uv[:, 1])]
        cv2.putText(img, label, (int(top[0]) - 20, max(int(top[1]) - 6, 12)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return img


def depth_colour(depth_mm: np.ndarray, max_mm: float | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB turbo colour map of a depth image; black = no depth."""
    valid = depth_mm > 0
    hi = max_mm or (np.percentile(depth_mm[valid], 99) if valid.any() else 1.0)
    lo = depth_mm[valid].min() if valid.any() else 0.0
    scaled = np.clip((depth_mm.astype(np.float32) - lo) / max(hi - lo, 1.0), 0, 1)
    img = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1].copy()
    img[~valid] = 0
    return img


def frame_overview(frame: Frame, title: str = "") -> np.ndarray:
    """(2H, 2W, 3) uint8 RGB: colour | depth, instance masks | GT boxes."""
    rgb = frame.color.copy()
    depth = depth_colour(frame.depth)
    overlay = (0.45 * frame.color).astype(np.uint8)
    boxes = frame.color.copy()
    for inst in frame.instances:
        col = instance_colour(inst.instance_id)
        sel = frame.mask == inst.instance_id
        overlay[sel] = (0.45 * frame.color[sel] + 0.55 * np.array(col)).astype(np.uint8)
        ys, xs = np.nonzero(sel)
        if len(xs):
            cv2.putText(overlay, f"{inst.instance_id}:{inst.category}", (int(xs.mean()) - 25,
                        int(ys.mean())), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                        cv2.LINE_AA)
        label = inst.category + ("" if inst.handle_visible else " (handle hidden)")
        draw_box(boxes, inst.R, inst.t, inst.size, frame.intrinsics, col, label)
    panels = [("colour " + title, rgb), ("depth (mm, black = none)", depth),
              ("instance masks", overlay), ("GT boxes, axes x/y/z = r/g/b", boxes)]
    for name, img in panels:
        cv2.putText(img, name, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, name, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1,
                    cv2.LINE_AA)
    top = np.concatenate([panels[0][1], panels[1][1]], axis=1)
    bottom = np.concatenate([panels[2][1], panels[3][1]], axis=1)
    return np.concatenate([top, bottom], axis=0)
