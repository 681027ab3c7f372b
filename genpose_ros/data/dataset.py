"""Per-instance pose dataset over NOCS-layout folders (ours or real CAMERA / REAL275).

Each item is one annotated object instance: ``n_points`` camera-frame points back-projected
from the depth pixels inside its mask, with its GT pose and size. With ``augment=True`` the
GenPose / FS-Net augmentations are applied (probabilities and ranges in ``AUGMENT``):
box deformation (per-axis scaling in the object frame, x and z tied for the categories that
are round about y), a random rotation of up to +-15 deg per axis about the object centre with
a translation of up to +-5 cm per axis, and Gaussian point jitter.

Instances with fewer than ``min_points`` valid depth points are not items; they are listed
in ``.skipped`` with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from genpose_ros import CATEGORIES
from genpose_ros.data.camera import Intrinsics, backproject
from genpose_ros.data.nocs_io import list_frames, load_depth, read_labels
from genpose_ros.data.pointcloud import MIN_POINTS, TooFewPointsError, count_valid, object_points, point_margins

AUGMENT = {
    "p_box": 0.5, "box_scale": (0.8, 1.2),
    "p_rt": 0.5, "rot_deg": 15.0, "trans_m": 0.05,
    "p_jitter": 0.5, "jitter_m": 0.002,
}
"""Probability and range of each augmentation (GenPose / FS-Net style)."""

ROUND_CATEGORIES = ("bottle", "bowl", "can", "mug")  # x and z extents scale together


@dataclass
class InstanceRecord:
    prefix: str
    instance_id: int
    category: str
    R: np.ndarray
    t: np.ndarray
    size: np.ndarray
    handle_visible: bool
    n_valid: int


def _labelled_instances(prefix: str, labels: dict) -> list[InstanceRecord]:
    n = len(labels["class_ids"])
    sizes = labels.get("sizes_m")
    hv = labels.get("handle_visibility", [1] * n)
    valid = labels.get("n_valid_points")
    out = []
    for j in range(n):
        scale = float(np.asarray(labels["scales"][j]))
        size = np.asarray(sizes[j], float) if sizes is not None else np.asarray(labels["size"][j], float) * scale
        out.append(InstanceRecord(
            prefix=prefix, instance_id=int(labels["instance_ids"][j]),
            category=CATEGORIES[int(labels["class_ids"][j]) - 1],
            R=np.asarray(labels["rotations"][j], float).reshape(3, 3),
            t=np.asarray(labels["translations"][j], float).reshape(3), size=size,
            handle_visible=bool(int(hv[j])), n_valid=-1 if valid is None else int(valid[j])))
    return out


def _read_mask(prefix: str) -> np.ndarray:
    import cv2
    mask = cv2.imread(f"{prefix}_mask.png", cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise FileNotFoundError(f"cannot read {prefix}_mask.png")
    return mask[:, :, 2] if mask.ndim == 3 else mask


class InstanceDataset(Dataset):
    """Object instances of NOCS-layout frames as point clouds with GT pose and size.

    Args:
        root: a folder (searched recursively for ``*_color.png``) or a list of folders.
        n_points: points per item.
        augment: apply the training augmentations.
        seed: base seed of point sampling and augmentation (items are reproducible for a
            given seed when ``augment`` is False).
        min_points: instances with fewer valid depth points are skipped (see ``.skipped``).
        categories: keep only these categories (default: all six).
        allow_pickle: read NOCS ``_label.pkl`` files (trusted data only).
        intrinsics: intrinsics for frames whose labels have none (real NOCS labels).
        cache_points: when > 0, keep up to this many valid points per instance in memory
            after its first read and sample later items from them (no image decoding; about
            12 bytes per point, e.g. 2048 points x 11k instances = 270 MB); 0 = off.
    Items: dict of tensors ``points`` (N, 3) float32 m, ``R`` (3, 3), ``t`` (3,), ``size`` (3,)
    float32, ``category`` long (index into CATEGORIES), ``handle_visible`` bool, ``margins`` (N, 4)
    uint8 (each point's pixel distance to the mask's outline, ``pointcloud.point_margins``),
    ``index`` long.
    """

    def __init__(self, root, n_points: int = 1024, augment: bool = False, seed: int = 0,
                 min_points: int = MIN_POINTS, categories: list[str] | None = None,
                 allow_pickle: bool = False, intrinsics: Intrinsics | None = None,
                 cache_points: int = 0):
        roots = [root] if isinstance(root, (str, Path)) else list(root)
        if n_points < 1:
            raise ValueError(f"n_points must be >= 1, got {n_points}")
        wanted = set(categories or CATEGORIES)
        unknown = wanted - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown categories {sorted(unknown)}; known: {', '.join(CATEGORIES)}")
        self.n_points, self.augment, self.seed, self.min_points = n_points, augment, seed, min_points
        self.allow_pickle, self.intrinsics = allow_pickle, intrinsics
        self.items: list[InstanceRecord] = []
        self.skipped: list[dict] = []
        self._intr: dict[str, Intrinsics] = {}
        self._calls = 0
        self.cache_points = int(cache_points)
        self._cache: dict[int, np.ndarray] = {}
        prefixes = [p for r in roots for p in list_frames(r)]
        if not prefixes:
            raise ValueError(f"no frames (*_color.png) under {', '.join(map(str, roots))}")
        for prefix in prefixes:
            labels = read_labels(prefix, allow_pickle)
            self._intr[prefix] = self._intrinsics_of(prefix, labels)
            insts = [r for r in _labelled_instances(prefix, labels) if r.category in wanted]
            if any(r.n_valid < 0 for r in insts):  # real NOCS labels: count from the images
                depth, mask = load_depth(f"{prefix}_depth.png"), _read_mask(prefix)
                for r in insts:
                    r.n_valid = count_valid(depth, mask == r.instance_id)
            for r in insts:
                if r.n_valid < max(min_points, 1):
                    self.skipped.append({
                        "prefix": prefix, "instance_id": r.instance_id, "category": r.category,
                        "reason": str(TooFewPointsError(r.n_valid, max(min_points, 1)))})
                else:
                    self.items.append(r)

    def _intrinsics_of(self, prefix: str, labels: dict) -> Intrinsics:
        if labels.get("intrinsics"):
            return Intrinsics.from_dict(labels["intrinsics"])
        if self.intrinsics is not None:
            return self.intrinsics
        from genpose_ros.data.nocs_io import _guess_intrinsics
        return _guess_intrinsics(prefix)

    def __len__(self) -> int:
        return len(self.items)

    def category_counts(self) -> dict[str, int]:
        counts = {c: 0 for c in CATEGORIES}
        for r in self.items:
            counts[r.category] += 1
        return counts

    def _points(self, index: int, r: InstanceRecord, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(n_points, 3) float64 camera-frame points of item ``index`` and their outline margins
        (n_points, 4) uint8 (``pointcloud.outline_margins``)."""
        if self.cache_points <= 0:
            depth = load_depth(f"{r.prefix}_depth.png")
            mask = _read_mask(r.prefix) == r.instance_id
            pts, margins = object_points(depth, mask, self._intr[r.prefix], self.n_points, rng,
                                         self.min_points, margins=True)
            return pts.astype(np.float64), margins
        cached = self._cache.get(index)
        if cached is None:  # a fixed random subset of all valid points of this instance
            depth = load_depth(f"{r.prefix}_depth.png")
            mask = _read_mask(r.prefix) == r.instance_id
            pts = backproject(depth.astype(np.float32) / 1000.0, mask, self._intr[r.prefix])
            if len(pts) < max(self.min_points, 1):
                raise TooFewPointsError(len(pts), max(self.min_points, 1))
            margins = point_margins(depth, mask)
            keep = np.random.default_rng([self.seed, index, 1]).permutation(len(pts))[:self.cache_points]
            cached = self._cache[index] = (pts[keep], margins[keep])
        pick = rng.choice(len(cached[0]), self.n_points, replace=len(cached[0]) < self.n_points)
        return cached[0][pick].astype(np.float64), cached[1][pick]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.items):
            raise IndexError(f"index {index} out of range for {len(self.items)} instances")
        r = self.items[index]
        if self.augment:  # fresh draws on every call, also across DataLoader workers and epochs
            self._calls += 1
            info = torch.utils.data.get_worker_info()
            worker_seed = 0 if info is None else info.seed % 2**63
            rng = np.random.default_rng([self.seed, index, self._calls, worker_seed])
        else:
            rng = np.random.default_rng([self.seed, index])
        points, margins = self._points(index, r, rng)
        R, t, size = r.R.copy(), r.t.copy(), r.size.copy()
        if self.augment:
            points, R, t, size = augment_instance(points, R, t, size, r.category, rng)
        return {
            "points": torch.from_numpy(points.astype(np.float32)),
            "R": torch.from_numpy(R.astype(np.float32)),
            "t": torch.from_numpy(t.astype(np.float32)),
            "size": torch.from_numpy(size.astype(np.float32)),
            "category": torch.tensor(CATEGORIES.index(r.category), dtype=torch.long),
            "handle_visible": torch.tensor(r.handle_visible),
            "margins": torch.from_numpy(margins),
            "index": torch.tensor(index, dtype=torch.long),
        }


def augment_instance(points: np.ndarray, R: np.ndarray, t: np.ndarray, size: np.ndarray,
                     category: str, rng: np.random.Generator, cfg: dict = AUGMENT):
    """GenPose / FS-Net augmentation of one instance; returns new (points, R, t, size).

    points (N, 3) camera frame m; R (3, 3) R_cam_obj; t (3,) m; size (3,) m. The numpy face of
    ``augment_batch`` (float64, random draws seeded from ``rng``).
    """
    gen = torch.Generator().manual_seed(int(rng.integers(2**63)))
    batch = [torch.from_numpy(np.asarray(a, dtype=np.float64))[None] for a in (points, R, t, size)]
    out = augment_batch(*batch, torch.tensor([CATEGORIES.index(category)]), gen, cfg)
    return tuple(a[0].numpy() for a in out)


def augment_batch(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor, size: torch.Tensor,
                  category: torch.Tensor, generator: torch.Generator | None = None, cfg: dict = AUGMENT):
    """GenPose / FS-Net augmentation of a batch, on the tensors' device; returns new
    (points (B, N, 3), R (B, 3, 3), t (B, 3), size (B, 3)).

    Per instance, each with its probability in ``cfg``: box deformation (per-axis scaling in the
    object frame, x = z for ``ROUND_CATEGORIES``), a rotation about the object centre (extrinsic
    x-y-z angles up to +-``rot_deg``) with a translation up to +-``trans_m`` per axis, and
    Gaussian point jitter; with ``p_spill`` (optional key, training config ``augment``) a share
    ``spill_share`` of the points moved ``spill_m`` back along their viewing rays, as background
    pixels caught by a predicted mask's outline. ``category`` (B,) long indices into CATEGORIES;
    ``generator`` lives on the tensors' device.
    """
    B, dev, dt = points.shape[0], points.device, points.dtype

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=generator, device=dev, dtype=dt)

    def chosen(p, *shape):  # (B, *shape) bool: this augmentation applies to the instance
        return (torch.rand(B, generator=generator, device=dev) < p).reshape(B, *shape)

    s = uniform(*cfg["box_scale"], B, 3)
    round_ids = torch.tensor([CATEGORIES.index(c) for c in ROUND_CATEGORIES], device=dev)
    s[:, 2] = torch.where(torch.isin(category.to(dev), round_ids), s[:, 0], s[:, 2])
    s = torch.where(chosen(cfg["p_box"], 1), s, torch.ones_like(s))
    local = (points - t[:, None]) @ R  # (B, N, 3) object frame
    points = (local * s[:, None]) @ R.transpose(1, 2) + t[:, None]
    size = size * s

    dR = _rotmat_xyz(torch.deg2rad(uniform(-cfg["rot_deg"], cfg["rot_deg"], B, 3)))  # (B, 3, 3)
    dt_ = uniform(-cfg["trans_m"], cfg["trans_m"], B, 3)
    rt = chosen(cfg["p_rt"], 1)
    dR = torch.where(rt[:, :, None], dR, torch.eye(3, device=dev, dtype=dt).expand(B, 3, 3))
    dt_ = torch.where(rt, dt_, torch.zeros_like(dt_))
    points = (points - t[:, None]) @ dR.transpose(1, 2) + (t + dt_)[:, None]
    R, t = dR @ R, t + dt_

    noise = torch.randn(points.shape, generator=generator, device=dev, dtype=dt)
    points = points + chosen(cfg["p_jitter"], 1, 1) * cfg["jitter_m"] * noise
    if cfg.get("p_spill", 0.0) > 0:  # background caught at a predicted mask's outline
        share = uniform(*cfg["spill_share"], B, 1) * chosen(cfg["p_spill"], 1)
        spilled = torch.rand(points.shape[:2], generator=generator, device=dev) < share  # (B, N)
        behind = uniform(*cfg["spill_m"], *points.shape[:2])  # along each point's viewing ray
        scale = 1 + behind / points.norm(dim=-1).clamp_min(1e-6)
        points = torch.where(spilled[..., None], points * scale[..., None], points)
    return points, R, t, size


def check_outline(augment: dict, where: str) -> None:
    """ConfigError (one line naming ``where``) unless ``augment["outline_px"]`` (when given) holds
    1 to ``OUTLINE_CAP`` + 1 chances >= 0, not all 0."""
    from genpose_ros.config import ConfigError
    from genpose_ros.data.pointcloud import OUTLINE_CAP

    px = augment.get("outline_px", [1.0])
    if not 1 <= len(px) <= OUTLINE_CAP + 1 or any(p < 0 for p in px) or not any(p > 0 for p in px):
        raise ConfigError(f"{where}: augment.outline_px must hold 1 to {OUTLINE_CAP + 1} chances (of 0, 1, ... "
                          f"pixels), >= 0 and not all 0, got {px}")


def outline_keep(margins: torch.Tensor, generator: torch.Generator | None = None,
                 cfg: dict = AUGMENT) -> torch.Tensor | None:
    """(B, P) bool: the points a predicted mask would still hold whose outline is drawn a pixel or
    two inside the object's, or None when ``p_outline`` (optional key, training config
    ``augment``) is 0. Per instance with probability ``p_outline``, each side of the mask (below,
    above, right, left) is eroded by k pixels, k drawn with the probabilities ``outline_px`` (of
    0, 1, 2, ... pixels). ``margins`` (B, P, 4): the points' ``pointcloud.outline_margins``."""
    if cfg.get("p_outline", 0.0) <= 0:
        return None
    B, dev = margins.shape[0], margins.device
    probs = torch.as_tensor(cfg["outline_px"], dtype=torch.float32, device=dev)
    k = torch.multinomial(probs, B * 4, replacement=True, generator=generator).reshape(B, 1, 4)
    k = k * (torch.rand(B, 1, 1, generator=generator, device=dev) < cfg["p_outline"])
    return (margins.long() >= k).all(-1)


def _rotmat_xyz(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) extrinsic x, y, z angles (rad) -> (B, 3, 3) Rz @ Ry @ Rx (scipy's "xyz")."""
    c, s = angles.cos(), angles.sin()
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])

    def mat(*rows):
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    rx = mat((one, zero, zero), (zero, c[:, 0], -s[:, 0]), (zero, s[:, 0], c[:, 0]))
    ry = mat((c[:, 1], zero, s[:, 1]), (zero, one, zero), (-s[:, 1], zero, c[:, 1]))
    rz = mat((c[:, 2], -s[:, 2], zero), (s[:, 2], c[:, 2], zero), (zero, zero, one))
    return rz @ ry @ rx
