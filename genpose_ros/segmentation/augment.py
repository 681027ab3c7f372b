"""Domain randomisation of training frames, so the segmenter cannot learn the renderer's look.

Colour is randomised hard (background replaced by random textures, per-object hue and
brightness, global jitter and gamma, blur, sensor noise); depth only the way a real D435
degrades it (holes, drop-outs at depth edges, small noise), and now and then removed
altogether so the RGB-only fallback still works. Geometry augmentations (the left-right flip)
change colour, depth and masks together.

``randomize(rgb, depth_mm, mask, rng)`` -> (rgb, depth_mm or None, mask), all numpy, the same
sizes and dtypes as given (uint8 (H, W, 3), uint16 (H, W), uint16 (H, W)).
"""
from __future__ import annotations

import numpy as np

P_FLIP = 0.5
P_BACKGROUND = 0.4      # replace the background (mask 0, beyond the objects) by a random texture
P_OBJECT_COLOUR = 0.5   # per object: hue rotation and brightness
P_BLUR = 0.3
P_NOISE = 0.5
P_DEPTH_HOLES = 0.4
P_DEPTH_EDGES = 0.5
P_NO_DEPTH = 0.08


def random_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8: smooth colour noise at a random scale, sometimes with stripes."""
    import cv2

    cells = int(rng.integers(2, 24))
    small = rng.uniform(0, 255, (cells, max(2, cells * w // h), 3)).astype(np.float32)
    tex = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.3:
        period = rng.uniform(4, 40)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        tex += 40.0 * stripes[..., None] * rng.uniform(-1, 1, 3)
    tex += rng.normal(0, rng.uniform(0, 12), tex.shape)
    return np.clip(tex, 0, 255).astype(np.uint8)


def _hsv_shift(rgb: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> None:
    import cv2

    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = np.where(region, (hsv[..., 0] + int(rng.integers(0, 180))) % 180, hsv[..., 0])
    gain = rng.uniform(0.6, 1.4)
    hsv[..., 2] = np.where(region, np.clip(hsv[..., 2] * gain, 0, 255), hsv[..., 2])
    rgb[:] = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def randomize_colour(rgb: np.ndarray, depth_mm: np.ndarray, mask: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    import cv2

    rgb = rgb.copy()
    h, w = mask.shape
    if rng.random() < P_BACKGROUND:
        objects = mask > 0
        far = depth_mm.astype(np.float32)
        # Background = not an object; with probability 1/2 only what lies behind the objects
        # (the table top stays), otherwise everything that is not an object.
        region = ~objects
        if objects.any() and rng.random() < 0.5:
            region &= (far == 0) | (far > np.percentile(far[objects], 90) + 50)
        rgb[region] = random_texture(rng, h, w)[region]
    for inst_id in np.unique(mask[mask > 0]):
        if rng.random() < P_OBJECT_COLOUR:
            _hsv_shift(rgb, mask == inst_id, rng)
    x = rgb.astype(np.float32) / 255.0
    x = x * rng.uniform(0.6, 1.4) + rng.uniform(-0.15, 0.15)                # brightness
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.6, 1.4) + mean                             # contrast
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.3, 1.5)                             # saturation
    x = x * rng.uniform(0.85, 1.15, 3)                                        # white balance
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(0.7, 1.4)                          # gamma
    if rng.random() < P_BLUR:
        k = int(rng.choice([3, 5, 7]))
        x = cv2.GaussianBlur(x, (k, k), 0)
    if rng.random() < P_NOISE:
        x = x + rng.normal(0, rng.uniform(0.005, 0.04), x.shape)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def randomize_depth(depth_mm: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    import cv2

    if rng.random() < P_NO_DEPTH:
        return None
    d = depth_mm.astype(np.float32)
    h, w = d.shape
    if rng.random() < P_DEPTH_EDGES:   # D435-like invalid pixels along depth discontinuities
        jump = np.abs(cv2.Laplacian(d, cv2.CV_32F, ksize=3)) > rng.uniform(30, 120)
        jump = cv2.dilate(jump.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        d[jump & (rng.random((h, w)) < rng.uniform(0.3, 1.0))] = 0
    if rng.random() < P_DEPTH_HOLES:
        for _ in range(int(rng.integers(1, 6))):
            cy, cx = rng.integers(0, h), rng.integers(0, w)
            axes = (int(rng.integers(3, w // 8)), int(rng.integers(3, h // 8)))
            hole = np.zeros((h, w), np.uint8)
            cv2.ellipse(hole, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            d[hole > 0] = 0
    valid = d > 0
    d[valid] *= 1.0 + rng.normal(0, rng.uniform(0.0, 0.01), int(valid.sum()))
    return np.clip(d, 0, 65535).astype(np.uint16)


def randomize(rgb: np.ndarray, depth_mm: np.ndarray, mask: np.ndarray,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One randomised copy of a training frame (see the module docstring)."""
    if rng.random() < P_FLIP:
        rgb, depth_mm, mask = rgb[:, ::-1], depth_mm[:, ::-1], mask[:, ::-1]
    rgb, depth_mm, mask = (np.ascontiguousarray(a) for a in (rgb, depth_mm, mask))
    return randomize_colour(rgb, depth_mm, mask, rng), randomize_depth(depth_mm, rng), mask
