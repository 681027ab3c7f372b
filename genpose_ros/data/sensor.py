"""Depth noise model of an Intel RealSense D435 (active stereo), applied to rendered depth.

The model works in the disparity domain d = f * b / z, where the D435 really measures:
Gaussian disparity noise of ``subpixel_noise`` px (half white, half spatially smooth) gives a
depth noise sigma_z = z^2 * subpixel_noise / (f * b), i.e. growing with distance squared;
the disparity is then quantised to ``1 / subpixel_levels`` px and the depth to 1 mm.
Pixels are dropped (depth 0) at depth discontinuities, on grazing surfaces, in random holes,
and outside [min_range, max_range]. Every effect is switched off by setting its parameter to 0
(or pass ``sensor=None`` to the renderer for clean depth).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass
class SensorModel:
    """D435-like depth degradation. Defaults: 640x480 depth stream, 50 mm baseline.

    Attributes:
        baseline_m: stereo baseline (D435: 0.050 m).
        focal_px: focal length of the depth imagers at 640x480 (about 385 px).
        subpixel_noise: RMS disparity noise in px (D435: 0.05-0.1); 0.06 px -> 3.1 mm at 1 m.
        smooth_noise_frac: fraction of the noise variance that is spatially smooth.
        subpixel_levels: disparity quantisation steps per px (D435: 32); 0 = no quantisation.
        edge_dropout: probability of dropping a pixel at a depth discontinuity.
        edge_jump: relative depth jump (fraction of z) that marks a discontinuity.
        grazing_start_deg, grazing_end_deg: dropout probability rises linearly from 0 to 1
            between these incidence angles (0 deg = surface facing the camera).
        holes_per_frame: mean number (Poisson) of random elliptical holes.
        hole_radius_px: range of hole radii in px.
        min_range, max_range: measurable depth range in metres.
    """

    baseline_m: float = 0.050
    focal_px: float = 385.0
    subpixel_noise: float = 0.06
    smooth_noise_frac: float = 0.5
    subpixel_levels: int = 32
    edge_dropout: float = 0.6
    edge_jump: float = 0.03
    grazing_start_deg: float = 72.0
    grazing_end_deg: float = 86.0
    holes_per_frame: float = 2.0
    hole_radius_px: tuple[int, int] = (2, 10)
    min_range: float = 0.17
    max_range: float = 4.0

    def to_dict(self) -> dict:
        return asdict(self)

    def depth_sigma(self, z: np.ndarray | float) -> np.ndarray | float:
        """Standard deviation (m) of the depth noise at depth ``z`` (m)."""
        return np.asarray(z) ** 2 * self.subpixel_noise / (self.focal_px * self.baseline_m)

    def apply(self, depth_m: np.ndarray, cos_incidence: np.ndarray | None,
              rng: np.random.Generator) -> np.ndarray:
        """Degrade a clean depth image.

        Args:
            depth_m: (H, W) float clean depth in metres, 0 = nothing hit.
            cos_incidence: (H, W) |cos| of the angle between surface normal and viewing ray,
                or None to skip grazing dropout.
            rng: random generator.
        Returns:
            (H, W) float32 depth in metres, 0 where the sensor gives no measurement.
        """
        z = np.asarray(depth_m, dtype=np.float32)
        valid = z > 0
        H, W = z.shape
        fb = self.focal_px * self.baseline_m
        out = z.copy()
        if self.subpixel_noise > 0 or self.subpixel_levels > 0:
            disp = np.where(valid, fb / np.maximum(z, 1e-6), 0.0).astype(np.float32)
            if self.subpixel_noise > 0:
                white = rng.standard_normal((H, W), dtype=np.float32)
                grid = rng.standard_normal((max(H // 40, 2), max(W // 40, 2))).astype(np.float32)
                smooth = cv2.resize(grid, (W, H), interpolation=cv2.INTER_CUBIC)
                a = np.sqrt(1.0 - self.smooth_noise_frac)
                b = np.sqrt(self.smooth_noise_frac)
                disp = disp + self.subpixel_noise * (a * white + b * smooth)
            if self.subpixel_levels > 0:
                disp = np.round(disp * self.subpixel_levels) / self.subpixel_levels
            out = np.where(valid & (disp > 0), fb / np.maximum(disp, 1e-6), 0.0).astype(np.float32)
        drop = np.zeros((H, W), dtype=bool)
        if self.edge_dropout > 0:
            cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
            # largest depth difference to the 4 neighbours
            jump = np.maximum(cv2.dilate(z, cross, borderType=cv2.BORDER_REPLICATE) - z,
                              z - cv2.erode(z, cross, borderType=cv2.BORDER_REPLICATE))
            edge = valid & (jump > self.edge_jump * np.maximum(z, 1e-3))
            edge = cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            idx = np.flatnonzero(edge)
            drop.flat[idx[rng.random(len(idx)) < self.edge_dropout]] = True
        if cos_incidence is not None and self.grazing_end_deg > self.grazing_start_deg:
            cos = np.asarray(cos_incidence, dtype=np.float32)
            idx = np.flatnonzero(cos < np.cos(np.radians(self.grazing_start_deg)))
            angle = np.degrees(np.arccos(np.clip(cos.flat[idx], 0.0, 1.0)))
            p = np.clip((angle - self.grazing_start_deg)
                        / (self.grazing_end_deg - self.grazing_start_deg), 0.0, 1.0)
            drop.flat[idx[rng.random(len(idx)) < p]] = True
        if self.holes_per_frame > 0:
            holes = np.zeros((H, W), np.uint8)
            for _ in range(rng.poisson(self.holes_per_frame)):
                centre = (int(rng.integers(W)), int(rng.integers(H)))
                axes = tuple(int(r) for r in rng.integers(*self.hole_radius_px, size=2, endpoint=True))
                cv2.ellipse(holes, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            drop |= holes.astype(bool)
        drop |= (out < self.min_range) | (out > self.max_range)
        out[drop] = 0.0
        return out


WIDE_SENSOR_RANGES = {
    "subpixel_noise": (0.04, 0.2),
    "smooth_noise_frac": (0.2, 0.8),
    "edge_dropout": (0.3, 0.95),
    "grazing_start_deg": (60.0, 78.0),
    "holes_per_frame": (0.0, 10.0),
}
"""Per-frame uniform ranges of the ``wide`` distribution's sensor (stronger, randomised noise;
the hole radius range becomes 2-18 px)."""


def sample_sensor(rng: np.random.Generator, ranges: dict = WIDE_SENSOR_RANGES) -> SensorModel:
    """A SensorModel with each parameter of ``ranges`` drawn uniformly (one per frame)."""
    params = {k: float(rng.uniform(*r)) for k, r in ranges.items()}
    return SensorModel(**params, hole_radius_px=(2, 18))
