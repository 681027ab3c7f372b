"""Network inputs of the segmenter: colour plus channels derived from the aligned depth image.

Depth looks the same in the simulator and in a real D435 (up to noise and holes), colour does
not, so an RGB-D segmenter gets, beside RGB, four channels computed from depth alone:

    channel  meaning                                   range
    3        valid depth (1) / hole (0)                0 or 1
    4        depth in metres / 2                       0 .. ~1
    5, 6, 7  surface normal (x, y, z) in the camera    -1 .. 1 (z <= 0: facing the camera)

Normals come from depth gradients (Sobel on a median-filtered depth, scaled by ``fx / z``), so
they do not change with the image scale or the object's distance. Holes get zeros everywhere.
A frame without depth (``depth=None``) gives the "RGB only" input: all depth channels zero,
which the training shows now and then (depth drop-out) so that the model degrades gracefully.

``stack_input(rgb, depth_mm, fx, mode)`` -> (C, H, W) float32 tensor, C = 3 (``rgb``) or 8
(``rgbd``); ``rgb`` uint8 (H, W, 3), ``depth_mm`` uint16 millimetres (H, W) or None.
"""
from __future__ import annotations

import numpy as np
import torch

MODES = {"rgb": 3, "rgbd": 8}
DEPTH_CHANNELS = 5
D435_FX = 615.0   # px at 640x480: used when no intrinsics are given


def check_mode(mode: str) -> int:
    """Number of input channels of ``mode``; ``ValueError`` naming the known modes otherwise."""
    if mode not in MODES:
        raise ValueError(f"unknown segmenter input {mode!r}; known: {sorted(MODES)}")
    return MODES[mode]


def check_rgb(rgb) -> np.ndarray:
    """``rgb`` as an (H, W, 3) uint8 array; ``ValueError`` naming the problem otherwise."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"expected a numpy RGB image, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image, got dtype {rgb.dtype}")
    if min(rgb.shape[:2]) < 16:
        raise ValueError(f"image of {rgb.shape[1]}x{rgb.shape[0]} px is too small to segment")
    return rgb


def check_depth(depth, shape: tuple[int, int]) -> np.ndarray:
    """``depth`` as an (H, W) uint16 millimetre image of the colour image's size."""
    if not isinstance(depth, np.ndarray) or depth.ndim != 2:
        raise ValueError(f"expected an (H, W) depth image, got "
                         f"{getattr(depth, 'shape', type(depth).__name__)}")
    if depth.shape != tuple(shape):
        raise ValueError(f"depth image is {depth.shape[1]}x{depth.shape[0]} px but the colour "
                         f"image is {shape[1]}x{shape[0]} px: align depth to colour first")
    if depth.dtype != np.uint16:
        raise ValueError(f"expected uint16 depth in millimetres, got dtype {depth.dtype}")
    return depth


def depth_features(depth_mm: np.ndarray, fx: float = D435_FX) -> np.ndarray:
    """(H, W) uint16 mm -> (5, H, W) float32: valid, depth/2 m, normal x, y, z (see module doc)."""
    import cv2

    z = depth_mm.astype(np.float32) * 1e-3
    valid = z > 0
    zs = cv2.medianBlur(z, 5)
    zs = np.where(valid & (zs > 0), zs, z)
    scale = fx / np.maximum(zs, 0.1) / 8.0          # Sobel / 8: metres per pixel; x fx / z: per metre
    nx = cv2.Sobel(zs, cv2.CV_32F, 1, 0, ksize=3) * scale
    ny = cv2.Sobel(zs, cv2.CV_32F, 0, 1, ksize=3) * scale
    nz = valid / np.sqrt(nx * nx + ny * ny + 1.0)   # (nx, ny, -1) normalised, facing the camera; 0 in holes
    return np.stack([valid, z / 2.0, nx * nz, ny * nz, -nz]).astype(np.float32)


def stack_input(rgb: np.ndarray, depth_mm: np.ndarray | None, fx: float = D435_FX,
                mode: str = "rgbd") -> torch.Tensor:
    """The network input (C, H, W) float32: RGB in [0, 1], then the depth channels for ``rgbd``
    (zeros where ``depth_mm`` is None: the RGB-only fallback)."""
    check_mode(mode)
    rgb = check_rgb(rgb)
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
    if mode == "rgb":
        return x
    if depth_mm is None:
        d = torch.zeros(DEPTH_CHANNELS, *rgb.shape[:2])
    else:
        d = torch.from_numpy(depth_features(check_depth(depth_mm, rgb.shape[:2]), fx))
    return torch.cat([x, d], 0)


def input_normalisation(mode: str) -> tuple[list[float], list[float]]:
    """Per-channel (mean, std) used by the network's transform (ImageNet for RGB)."""
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    if check_mode(mode) > 3:
        mean += [0.5, 0.4, 0.0, 0.0, -0.5]
        std += [0.5, 0.3, 0.5, 0.5, 0.5]
    return mean, std
