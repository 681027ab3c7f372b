"""Procedural colours and textures (small RGB images) for objects, clutter, table and floor.

All textures are (T, T, 3) uint8 images sampled with wrap-around, so they tile.
"""
from __future__ import annotations

import colorsys

import cv2
import numpy as np

PATTERNS = ("solid", "stripes", "checker", "noise", "label", "dots")


def random_colour(rng: np.random.Generator, grey_prob: float = 0.2) -> np.ndarray:
    """(3,) float RGB in [0, 1]: random hue, saturation 0.25-1, value 0.2-1 (or a grey)."""
    if rng.random() < grey_prob:
        return np.full(3, rng.uniform(0.08, 0.95))
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.25, 1.0),
                                        rng.uniform(0.2, 1.0)))


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) float32 noise in [0, 1] made of ``cells`` x ``cells`` random values, tiled
    and bicubically upsampled (a cheap value noise)."""
    grid = rng.random((cells, cells)).astype(np.float32)
    tiled = np.tile(grid, (3, 3))
    up = cv2.resize(tiled, (3 * size, 3 * size), interpolation=cv2.INTER_CUBIC)
    return np.clip(up[size:2 * size, size:2 * size], 0.0, 1.0)


def _mix(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    w = np.asarray(w, np.float32)[..., None]
    return a + (b - a) * w


def make_texture(rng: np.random.Generator, pattern: str | None = None, size: int = 64,
                 base: np.ndarray | None = None) -> np.ndarray:
    """One random (size, size, 3) uint8 texture of the given pattern (random if None)."""
    if pattern is None:
        pattern = PATTERNS[rng.integers(len(PATTERNS))]
    a = random_colour(rng) if base is None else np.asarray(base, dtype=float)
    b = random_colour(rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if pattern == "solid":
        img = _mix(a, a * 0.85, smooth_noise(rng, size, 4))
    elif pattern == "stripes":
        freq = rng.integers(2, 9)
        coord = xx if rng.random() < 0.5 else yy
        w = (np.sin(2 * np.pi * freq * coord) > rng.uniform(-0.6, 0.6)).astype(np.float32)
        img = _mix(a, b, w)
    elif pattern == "checker":
        n = rng.integers(2, 9)
        w = ((np.floor(xx * n) + np.floor(yy * n)) % 2).astype(np.float32)
        img = _mix(a, b, w)
    elif pattern == "noise":
        img = _mix(a, b, smooth_noise(rng, size, int(rng.integers(3, 10))))
    elif pattern == "label":  # a band of blocks, like a printed label
        img = np.tile(a[None, None], (size, size, 1))
        lo, hi = sorted(rng.uniform(0.15, 0.85, 2))
        band = (yy >= lo) & (yy <= hi + 0.1)
        img[band] = b
        for _ in range(rng.integers(3, 12)):
            x0, y0 = rng.random(), rng.uniform(lo, hi)
            w_, h_ = rng.uniform(0.03, 0.3), rng.uniform(0.02, 0.08)
            sel = (xx >= x0) & (xx < x0 + w_) & (yy >= y0) & (yy < y0 + h_)
            img[sel] = random_colour(rng)
    elif pattern == "dots":
        n = rng.integers(3, 8)
        r = rng.uniform(0.15, 0.4)
        fx, fy = (xx * n) % 1 - 0.5, (yy * n) % 1 - 0.5
        img = _mix(a, b, ((fx ** 2 + fy ** 2) < r ** 2).astype(np.float32))
    else:
        raise ValueError(f"unknown texture pattern {pattern!r}; known: {PATTERNS}")
    return np.clip(img * 255.0, 0, 255).astype(np.uint8)


def surface_texture(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A (size, size, 3) uint8 texture for a table top or floor: wood, tiles, cloth, stone, plain."""
    kind = rng.choice(["wood", "tiles", "cloth", "stone", "plain"])
    a, b = random_colour(rng, 0.3), random_colour(rng, 0.3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == "wood":
        a = np.array(colorsys.hsv_to_rgb(rng.uniform(0.05, 0.11), rng.uniform(0.3, 0.8),
                                         rng.uniform(0.3, 0.9)))
        warp = smooth_noise(rng, size, 6) * rng.uniform(0.5, 2.0)
        rings = 0.5 + 0.5 * np.sin(2 * np.pi * (rng.integers(6, 20) * yy + warp))
        img = _mix(a, a * 0.6, rings)
    elif kind == "tiles":
        n = rng.integers(2, 6)
        grout = ((xx * n) % 1 < 0.04) | ((yy * n) % 1 < 0.04)
        img = _mix(a, a * 0.9, smooth_noise(rng, size, 8))
        img[grout] = b * 0.6
    elif kind == "cloth":
        n = rng.integers(8, 32)
        w = 0.5 * ((np.sin(2 * np.pi * n * xx) > 0.3) + (np.sin(2 * np.pi * n * yy) > 0.3))
        img = _mix(a, b, w.astype(np.float32))
    elif kind == "stone":
        img = _mix(a, b, smooth_noise(rng, size, 16) ** 2)
    else:
        img = _mix(a, a * 0.92, smooth_noise(rng, size, 5))
    return np.clip(img * 255.0, 0, 255).astype(np.uint8)
