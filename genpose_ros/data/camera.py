"""Pinhole camera intrinsics, back-projection and projection, and the undistortion of images
of cameras with lens distortion onto their pinhole camera.

Conventions: camera optical frame (x right, y down, z forward), metres, pixel (u, v) =
(column, row) with the centre of the top-left pixel at (0, 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of an image of ``width`` x ``height`` pixels (focal lengths in pixels)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def matrix(self) -> np.ndarray:
        """(3, 3) float64 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy,
                "cx": self.cx, "cy": self.cy}

    @classmethod
    def from_dict(cls, d: dict) -> "Intrinsics":
        try:
            return cls(int(d["width"]), int(d["height"]), float(d["fx"]), float(d["fy"]),
                       float(d["cx"]), float(d["cy"]))
        except KeyError as exc:
            raise ValueError(f"intrinsics dict lacks the key {exc.args[0]!r}: {d}") from None

    def pixel_rays(self) -> np.ndarray:
        """(H, W, 3) float32 ray directions with z = 1, so the ray parameter equals depth z."""
        u, v = np.meshgrid(np.arange(self.width, dtype=np.float32),
                           np.arange(self.height, dtype=np.float32))
        return np.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy,
                         np.ones_like(u)], axis=-1)


D435_640x480 = Intrinsics(640, 480, 615.0, 615.0, 320.0, 240.0)
"""Typical Intel RealSense D435 colour-stream intrinsics at 640x480 (55 x 43 deg field of view;
factory calibrations of individual units lie within a few pixels of these values)."""

D435_1280x720 = Intrinsics(1280, 720, 922.5, 922.5, 640.0, 360.0)
"""The same camera's 1280x720 mode (69 x 43 deg: wider, the same height of view)."""

D435_MODES = {"640x480": D435_640x480, "1280x720": D435_1280x720}
"""Colour modes of the simulated D435 (`genpose data generate --resolution`)."""

NOCS_REAL275 = Intrinsics(640, 480, 591.0125, 590.16775, 322.525, 244.11084)
"""Intrinsics of the NOCS REAL275 recordings (Structure sensor)."""

NOCS_CAMERA = Intrinsics(640, 480, 577.5, 577.5, 319.5, 239.5)
"""Intrinsics of the NOCS CAMERA synthetic renderings."""


def backproject(depth_m: np.ndarray, mask: np.ndarray | None, intr: Intrinsics) -> np.ndarray:
    """Back-project the valid pixels of a depth image into camera-frame points.

    Args:
        depth_m: (H, W) depth in metres (z along the optical axis); 0 or NaN = no depth.
        mask: (H, W) bool pixels to use, or None for all pixels.
        intr: intrinsics of the depth image.
    Returns:
        (N, 3) float32 points in metres, in row-major pixel order, for pixels inside ``mask``
        with finite depth > 0.
    """
    depth_m = np.asarray(depth_m)
    if depth_m.shape != (intr.height, intr.width):
        raise ValueError(f"depth image is {depth_m.shape}, intrinsics expect "
                         f"{(intr.height, intr.width)}")
    valid = np.isfinite(depth_m) & (depth_m > 0)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != depth_m.shape:
            raise ValueError(f"mask is {mask.shape} but depth is {depth_m.shape}")
        valid &= mask.astype(bool)
    v, u = np.nonzero(valid)
    z = depth_m[v, u].astype(np.float64)
    x = (u - intr.cx) / intr.fx * z
    y = (v - intr.cy) / intr.fy * z
    return np.stack([x, y, z], axis=1).astype(np.float32)


def undistort_maps(intr: Intrinsics, dist: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps that resample an image of a camera with lens distortion onto the
    pinhole camera ``intr`` of the same K, so that ``backproject`` and everything after it hold.

    ``dist``: OpenCV's coefficients (k1, k2, p1, p2[, k3[, k4, k5, k6]]), as in the CameraInfo
    models plumb_bob and rational_polynomial.
    """
    import cv2

    K = intr.matrix()
    return cv2.initUndistortRectifyMap(K, np.asarray(dist, np.float64), None, K, (intr.width, intr.height),
                                       cv2.CV_32FC1)


def undistort(image: np.ndarray, maps: tuple[np.ndarray, np.ndarray], nearest: bool = True) -> np.ndarray:
    """``image`` (H, W[, C], uint8 / uint16 / float32 / bool) resampled with ``undistort_maps``;
    ``nearest`` for depth, masks and ids (no values mixed across an edge), bilinear for colour.
    Pixels that see nothing of the original image are 0."""
    import cv2

    src = image.view(np.uint8) if image.dtype == bool else image
    out = cv2.remap(src, maps[0], maps[1], cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.astype(bool) if image.dtype == bool else out


def fit_plumb_bob(undistorted: np.ndarray, distorted: np.ndarray) -> tuple[float, ...]:
    """Plumb-bob coefficients (k1, k2, p1, p2, k3) that map the (N, 2) normalised image
    coordinates ``undistorted`` onto ``distorted`` (linear least squares): how a camera whose
    lens model is another one (librealsense's inverse or modified Brown-Conrady) is described
    in a CameraInfo."""
    x, y = np.asarray(undistorted, np.float64).T
    r2 = x * x + y * y
    rows_x = np.stack([x * r2, x * r2 ** 2, 2 * x * y, r2 + 2 * x * x, x * r2 ** 3], 1)
    rows_y = np.stack([y * r2, y * r2 ** 2, r2 + 2 * y * y, 2 * x * y, y * r2 ** 3], 1)
    target = (np.asarray(distorted, np.float64) - np.stack([x, y], 1)).T.ravel()
    coeffs, *_ = np.linalg.lstsq(np.concatenate([rows_x, rows_y]), target, rcond=None)
    return tuple(float(c) for c in coeffs)


def project(points: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Project (..., 3) camera-frame points to (..., 2) pixel coordinates (u, v).

    Points at z <= 0 give non-finite coordinates.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., 3), got {points.shape}")
    z = points[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        z_safe = np.where(z > 0, z, np.nan)
        u = intr.fx * points[..., 0] / z_safe + intr.cx
        v = intr.fy * points[..., 1] / z_safe + intr.cy
    return np.stack([u, v], axis=-1)


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0), roll: float = 0.0) -> np.ndarray:
    """(4, 4) pose T_world_cam of an optical-frame camera at ``eye`` looking at ``target``.

    The image's y axis points along -``up`` (projected); ``roll`` (radians) turns the camera
    about its optical axis.
    """
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    norm = np.linalg.norm(z)
    if norm < 1e-9:
        raise ValueError("camera eye and target coincide")
    z /= norm
    up = np.asarray(up, dtype=np.float64)
    y = -up + np.dot(up, z) * z
    if np.linalg.norm(y) < 1e-6:  # looking straight along up: pick any perpendicular
        y = np.cross(z, [1.0, 0.0, 0.0])
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    c, s = np.cos(roll), np.sin(roll)
    x, y = c * x + s * y, -s * x + c * y
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = eye
    return T
