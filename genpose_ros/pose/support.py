"""Poses fitted to the table the objects stand on.

Tabletop objects rest on the table: upright, upside down or lying on a face, one axis of their
box along the table's normal and their box's bottom on its plane. A single estimate's up axis
scatters a few degrees, and a mask that misses a band along an object's foot (the foreshortened
wall of a can seen from above) leaves nothing in the cloud that says where the object ends: it
is placed too high with too short a box. The table's plane (``table_plane``: RANSAC on the
depth pixels outside the objects' masks, ``data.pointcloud.fit_plane``) settles both
(``rest_on_plane``, ``support`` in config/estimator.yaml):

- a box axis within ``align_deg`` of the plane's normal is turned onto it (the smallest
  rotation);
- such a box whose bottom lies between ``min_gap`` and ``max_gap`` above the plane is extended
  down to it, its top kept; not when another object of the call lies under it (stacked).

Objects tilted further (leaning on another), held above the table or standing on something the
call does not hold (a coaster thicker than ``max_gap`` is fine, a thinner one is not) keep the
estimate. The plane is the dominant one outside the masks: given the world's up direction
(``table_plane(up=...)``; the nodes' ``gravity_frame``) a plane facing elsewhere (a wall) is
refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genpose_ros import geometry
from genpose_ros.data.pointcloud import fit_plane

STACK_TOLERANCE_M = 0.01   # an object whose top is this close under another's bottom can carry it


@dataclass(frozen=True)
class RestSettings:
    """``support`` of config/estimator.yaml (without ``plane``, which tells callers to fit one)."""

    align_deg: float = 8.0   # a box axis within this angle of the plane's normal is aligned with it; 0: off
    min_gap: float = 0.003   # m: an aligned box whose bottom is more than this ...
    max_gap: float = 0.08    # m: ... and less than this above the plane is extended to it; 0: off

    def __post_init__(self):
        if not 0 <= self.align_deg < 45:
            raise ValueError(f"support align_deg must be in [0, 45) deg, got {self.align_deg}")
        if self.min_gap < 0 or self.max_gap < 0:
            raise ValueError(f"support min_gap and max_gap must be >= 0 m, got {self.min_gap}, {self.max_gap}")

    @classmethod
    def from_config(cls, cfg: dict) -> "RestSettings":
        return cls(float(cfg["align_deg"]), float(cfg["min_gap"]), float(cfg["max_gap"]))


def table_plane(depth_mm: np.ndarray, intrinsics, masks=None, up=None,
                max_tilt_deg: float = 30.0) -> tuple[np.ndarray, float] | None:
    """The table's plane ``n . p + d = 0`` in the camera frame (unit ``n`` towards the camera)
    from a depth image (H, W) uint16 mm, ``intrinsics`` (fx, fy, cx, cy attributes), leaving out
    the pixels of ``masks`` (H, W) bool or (N, H, W) bool; None when no plane holds. With ``up``
    (3,), the world's up direction in the camera frame (gravity from TF or an IMU), a plane whose
    normal is more than ``max_tilt_deg`` from it is no table (a wall): None."""
    exclude = None
    if masks is not None:
        masks = np.asarray(masks, dtype=bool)
        exclude = masks.any(axis=0) if masks.ndim == 3 else masks
        if exclude.shape != np.shape(depth_mm):
            raise ValueError(f"masks {exclude.shape} and depth {np.shape(depth_mm)} differ in size")
    plane = fit_plane(depth_mm, float(intrinsics.fx), exclude, fy=float(intrinsics.fy),
                      principal=(float(intrinsics.cx), float(intrinsics.cy)))
    if plane is not None and up is not None:
        up = np.asarray(up, dtype=np.float64)
        cos = float(plane[0] @ up) / max(float(np.linalg.norm(up)), 1e-12)
        if cos < np.cos(np.radians(max_tilt_deg)):
            return None
    return plane


def rest_on_plane(R: torch.Tensor, t: torch.Tensor, size: torch.Tensor, plane: tuple,
                  settings: RestSettings = RestSettings()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Poses R (B, 3, 3), t (B, 3) (box centres) and box sizes (B, 3), camera frame, fitted to
    the table's ``plane`` (n (3,), d) as the module says. Returns new (R, t, size)."""
    if len(R) == 0 or settings.align_deg <= 0:
        return R, t, size
    n = torch.as_tensor(np.asarray(plane[0]), dtype=R.dtype, device=R.device)
    d = float(plane[1])
    cos = torch.einsum("bij,i->bj", R, n)                     # (B, 3): each box axis against the normal
    k = cos.abs().argmax(dim=1)
    rows = torch.arange(len(R), device=R.device)
    axis = R[rows, :, k] * torch.sign(cos[rows, k])[:, None]  # the box axis closest to the normal, pointing up
    aligned = cos[rows, k].abs() >= np.cos(np.radians(settings.align_deg))
    turn = torch.linalg.cross(axis, n.expand_as(axis))        # about axis x n, by the angle between them
    angle = torch.atan2(turn.norm(dim=1), (axis * n).sum(dim=1))
    unit = turn / turn.norm(dim=1, keepdim=True).clamp_min(1e-12)
    quat = torch.cat([unit * torch.sin(angle / 2)[:, None], torch.cos(angle / 2)[:, None]], dim=1)  # XYZW
    R = torch.where(aligned[:, None, None], geometry.quat_to_rotmat(quat) @ R, R)
    if settings.max_gap <= 0:
        return R, t, size
    reach = 0.5 * (size * torch.einsum("bij,i->bj", R, n).abs()).sum(dim=1)   # half the box's height
    height = t @ n + d                                         # of the centres above the plane
    bottom, top = height - reach, height + reach
    flat = t - height[:, None] * n                             # the centres' feet on the plane
    apart = torch.cdist(flat[None], flat[None])[0]             # (B, B) horizontal distances
    radius = 0.5 * size.max(dim=1).values
    under = (apart < radius[None, :]) & (top[None, :] <= bottom[:, None] + STACK_TOLERANCE_M)  # [i, j]: j under i
    under.fill_diagonal_(False)
    extend = aligned & (bottom > settings.min_gap) & (bottom < settings.max_gap) & ~under.any(dim=1)
    gap = torch.where(extend, bottom, torch.zeros_like(bottom))
    size = size.clone()
    size[rows, k] = size[rows, k] + gap
    return R, t - 0.5 * gap[:, None] * n, size
