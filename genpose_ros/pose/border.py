"""Boxes the image border cuts.

An object that runs out of the image shows only part of itself: its cloud ends at the image's
edge, and a box fitted to the points seen (the SizeNet) ends there too, short along the cut
axis and with its centre pulled into the image. Large objects close to the camera are cut
often (seven of ten laptops of the val2 split touch an edge). Nothing in the cloud says
how far the object goes on; the category does: a cut box shorter along the cut axis than the
category's mean size (the training set's, ``size_prior`` of the pose checkpoint), scaled as
the box's uncut axes are (within ``scale_range``: a small laptop is narrow too), is extended
to it, outwards, the face inside the image kept (``extend_cut``, ``border`` in
config/estimator.yaml).

- A mask is cut at an image edge when at least ``min_pixels`` of its pixels lie within
  ``border_px`` of it (``border_cuts``).
- The cut axis is the box axis whose image motion points most at that edge, within
  ``acos(min_cos)`` of it (an axis along the viewing ray cannot leave the image).
- A box is never extended into the table (given its plane): a cut at the image's bottom edge
  in a low view is the table's doing, not the object's.

Only ``categories`` are extended (laptops): for small objects the SizeNet's box from the seen
points is closer than the mean (measured on val2, config/estimator.yaml).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

EDGES = ((-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0))  # outward image directions: left, right, top, bottom
STEP_M = 0.05         # how far a box axis is moved to see where it goes in the image
MIN_MOTION_PX = 1e-3  # an axis along the viewing ray does not move in the image: never the cut axis
INTO_TABLE_COS = 0.5  # an extension pointing down into the table's plane beyond 60 deg is not made


@dataclass(frozen=True)
class BorderSettings:
    """``border`` of config/estimator.yaml."""

    categories: tuple[str, ...] = ("laptop",)  # extended when cut; () : off
    border_px: int = 2
    min_pixels: int = 3
    min_cos: float = 0.7
    scale_range: tuple[float, float] = (0.85, 1.2)

    def __post_init__(self):
        if self.border_px < 1 or self.min_pixels < 1:
            raise ValueError(f"border border_px and min_pixels must be >= 1, got {self.border_px}, {self.min_pixels}")
        if not 0 < self.min_cos <= 1:
            raise ValueError(f"border min_cos must be in (0, 1], got {self.min_cos}")
        lo, hi = self.scale_range
        if not 0 < lo <= 1 <= hi:
            raise ValueError(f"border scale_range must be [low <= 1, high >= 1], low > 0, got {list(self.scale_range)}")

    @classmethod
    def from_config(cls, cfg: dict) -> "BorderSettings":
        scale, cats = cfg["scale_range"], cfg["categories"]
        if not isinstance(cats, (list, tuple)):
            raise ValueError(f"border categories must be a list of category names, got {cats!r}")
        if not isinstance(scale, (list, tuple)) or len(scale) != 2:
            raise ValueError(f"border scale_range must be [low, high], got {scale!r}")
        return cls(tuple(cats), int(cfg["border_px"]), int(cfg["min_pixels"]), float(cfg["min_cos"]),
                   (float(scale[0]), float(scale[1])))


def border_cuts(masks, border_px: int = 2, min_pixels: int = 3) -> np.ndarray:
    """(B, 4) bool: where each mask ((H, W) bool each) meets the image's edges (left, right,
    top, bottom; ``EDGES``)."""
    out = np.zeros((len(masks), 4), dtype=bool)
    for i, m in enumerate(masks):
        m = np.asarray(m)
        if m.ndim != 2:
            raise ValueError(f"mask {i}: expected (H, W), got {m.shape}")
        p = border_px
        out[i] = [np.count_nonzero(m[:, :p]) >= min_pixels, np.count_nonzero(m[:, -p:]) >= min_pixels,
                  np.count_nonzero(m[:p]) >= min_pixels, np.count_nonzero(m[-p:]) >= min_pixels]
    return out


def _pixels(p: torch.Tensor, fx: float, fy: float) -> torch.Tensor:
    """Camera-frame points (..., 3) -> image coordinates (..., 2) without the principal point."""
    z = p[..., 2].clamp_min(1e-3)
    return torch.stack([fx * p[..., 0] / z, fy * p[..., 1] / z], dim=-1)


def extend_cut(R: torch.Tensor, t: torch.Tensor, size: torch.Tensor, cuts, fx: float, fy: float,
               prior: torch.Tensor, plane=None,
               settings: BorderSettings = BorderSettings()) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes R (B, 3, 3), t (B, 3) (centres), size (B, 3), camera frame, cut where ``cuts``
    (B, 4) bool says (``border_cuts``; rows of False leave a box alone) extended along the cut
    axis, outwards, to ``prior`` (B, 3) scaled as the box's uncut axes are (their mean log
    ratio to the prior, clamped to ``settings.scale_range``), as the module says; the cut axis
    within ``settings.min_cos``. ``plane``: the table's (n, d) or None. Returns new (t, size)."""
    min_cos, scale_range = settings.min_cos, settings.scale_range
    cuts = torch.as_tensor(np.asarray(cuts, dtype=bool), device=R.device)
    rows = torch.arange(len(R), device=R.device)
    ends = t[:, None, :] + STEP_M * R.transpose(1, 2)                      # (B, 3 axes, 3)
    motion = _pixels(ends, fx, fy) - _pixels(t, fx, fy)[:, None, :]       # (B, 3, 2) pixels
    n = None if plane is None else torch.as_tensor(np.asarray(plane[0]), dtype=R.dtype, device=R.device)
    moves = []                                                             # per edge: (axis, outward, cut)
    for side, (ux, uy) in enumerate(EDGES):
        toward = motion[..., 0] * ux + motion[..., 1] * uy                 # (B, 3)
        fit = (toward.abs() >= min_cos * motion.norm(dim=-1)) & (toward.abs() > MIN_MOTION_PX)
        k = torch.where(fit, toward.abs(), torch.full_like(toward, -1.0)).argmax(dim=1)
        out = R[rows, :, k] * torch.sign(toward[rows, k])[:, None]         # the outward box axis
        ok = cuts[:, side] & fit[rows, k]
        if n is not None:
            ok &= out @ n >= -INTO_TABLE_COS
        moves.append((k, out, ok))
    cut_axes = torch.zeros_like(size, dtype=torch.bool)
    for k, _, ok in moves:
        cut_axes[rows, k] |= ok
    free = (~cut_axes).to(size.dtype)
    log_ratio = (torch.log(size / prior) * free).sum(dim=1) / free.sum(dim=1).clamp_min(1.0)
    want = prior * torch.exp(log_ratio).clamp(*scale_range)[:, None]      # (B, 3)
    t, size = t.clone(), size.clone()
    for k, out, ok in moves:
        grow = torch.where(ok, (want[rows, k] - size[rows, k]).clamp_min(0.0), torch.zeros_like(t[:, 0]))
        size[rows, k] = size[rows, k] + grow
        t = t + 0.5 * grow[:, None] * out
    return t, size
