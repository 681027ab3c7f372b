"""Per-instance point pools for pose training, held on the training device.

Reading the depth and mask PNGs costs ~25 ms per instance on the CPU, so training never reads
images in its loop: ``PointPool`` keeps ``pool_points`` camera-frame points of every instance
(with its pose, size, category and handle visibility) in tensors on the training device. It is
filled once from a rendered split (``from_dataset``, optionally cached in a ``.pt`` file) and/or
refreshed by a ``FrameStream`` of freshly rendered instances (``add``: a ring buffer, the
oldest instances make room). ``sample`` draws a batch, picks ``n_points`` of each pool and
applies the GenPose / FS-Net augmentation, all batched on the device.
"""
from __future__ import annotations

from pathlib import Path

import torch

from genpose_ros.data.pointcloud import OUTLINE_CAP, OUTLINE_SIDES

KEYS = ("points", "R", "t", "size", "category", "handle_visible", "margins")


def pick_points(points: torch.Tensor, n_points: int, generator: torch.Generator | None = None,
                keep: torch.Tensor | None = None) -> torch.Tensor:
    """(B, P, 3) -> (B, n_points, 3): a random subset of each instance's points, without repeats
    when ``n_points`` <= P (with repeats otherwise); points where ``keep`` (B, P) is False (an
    eroded outline, ``dataset.outline_keep``) come last, taken only when too few others are left."""
    B, P = points.shape[:2]
    if n_points <= P:
        order = torch.rand(B, P, generator=generator, device=points.device)
        pick = (order if keep is None else order + 2 * ~keep).argsort(1)[:, :n_points]
    elif keep is None:
        pick = torch.randint(P, (B, n_points), generator=generator, device=points.device)
    else:
        pick = torch.multinomial(keep + 1e-3, n_points, replacement=True, generator=generator)
    return torch.gather(points, 1, pick[..., None].expand(-1, -1, 3))


class PointPool:
    """Ring buffer of ``capacity`` instances with ``pool_points`` points each."""

    def __init__(self, capacity: int, pool_points: int, device="cpu"):
        if capacity < 1 or pool_points < 1:
            raise ValueError(f"a point pool needs capacity >= 1 and pool_points >= 1, got {capacity}, {pool_points}")
        self.capacity, self.pool_points, self.device = capacity, pool_points, torch.device(device)
        shapes = {"points": (pool_points, 3), "R": (3, 3), "t": (3,), "size": (3,), "category": (),
                  "handle_visible": (), "margins": (pool_points, len(OUTLINE_SIDES))}
        dtypes = {"category": torch.long, "handle_visible": torch.bool, "margins": torch.uint8}
        self.data = {k: torch.zeros(capacity, *shapes[k], dtype=dtypes.get(k, torch.float32), device=self.device)
                     for k in KEYS}
        self.count = 0    # filled slots
        self._next = 0    # slot written next
        self.added = 0    # instances added over the pool's life

    def __len__(self) -> int:
        return self.count

    def add(self, items) -> None:
        """Store instances: a list of per-instance dicts (``frame_instances`` items) or a dict of
        stacked tensors; when full, the oldest instances are replaced. Instances without
        ``margins`` count as far from their outline (never eroded)."""
        if isinstance(items, list):
            if not items:
                return
            items = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in KEYS if k in items[0]}
        n = len(items["points"])
        if "margins" not in items:
            items = {**items, "margins": torch.full((n, self.pool_points, len(OUTLINE_SIDES)), OUTLINE_CAP,
                                                    dtype=torch.uint8)}
        if n and items["points"].shape[1:] != (self.pool_points, 3):
            raise ValueError(f"pool items need points ({self.pool_points}, 3), got {tuple(items['points'].shape[1:])}")
        for start in range(0, n, self.capacity):
            chunk = min(n - start, self.capacity)
            slots = (self._next + torch.arange(chunk)) % self.capacity
            for k in KEYS:
                self.data[k][slots.to(self.device)] = items[k][start:start + chunk].to(self.device, self.data[k].dtype)
            self._next = int(slots[-1] + 1) % self.capacity
            self.count = min(self.capacity, self.count + chunk)
            self.added += chunk

    @classmethod
    def from_dataset(cls, dataset, capacity: int = 0, cache: str | None = None, workers: int = 0,
                     device="cpu") -> "PointPool":
        """Every instance of an ``InstanceDataset`` (``n_points`` = the pool size, no augmentation),
        read once by ``workers`` processes; ``cache``: a ``.pt`` file reused when it holds as many
        instances as the dataset. ``capacity`` (default: the dataset size) leaves room for streamed
        instances."""
        from torch.utils.data import DataLoader
        from tqdm import tqdm

        if len(dataset) == 0:
            raise ValueError("no training instances found (empty training set)")
        stacked = None
        if cache and Path(cache).is_file():
            stacked = torch.load(cache, weights_only=True)
            if stacked["points"].shape[0] != len(dataset) or set(KEYS) - set(stacked):
                stacked = None  # another dataset, or written before a key was added
        if stacked is None:
            loader = DataLoader(dataset, batch_size=64, num_workers=workers)
            batches = [b for b in tqdm(loader, desc="reading instances", mininterval=5)]
            stacked = {k: torch.cat([b[k] for b in batches]) for k in KEYS}
            if cache:
                torch.save(stacked, cache)
        pool = cls(max(capacity, len(dataset)), stacked["points"].shape[1], device)
        pool.add(stacked)
        return pool

    def sample(self, batch_size: int, n_points: int, generator: torch.Generator | None = None,
               augment: bool = True, augment_cfg: dict | None = None,
               category_weights: torch.Tensor | None = None) -> dict:
        """A batch on the pool's device: ``points`` (B, n_points, 3) without repeats (with repeats
        when the pools are smaller), ``R`` (B, 3, 3), ``t`` (B, 3), ``size`` (B, 3), ``category``
        (B,), ``handle_visible`` (B,); augmented unless ``augment`` is False, with ``AUGMENT`` updated
        by ``augment_cfg`` (``p_outline``: points at an eroded outline are left out first);
        ``category_weights`` (n_categories,): how often each category's instances are drawn,
        relative (default: every instance alike)."""
        from genpose_ros.data.dataset import AUGMENT, augment_batch, outline_keep

        if self.count == 0:
            raise ValueError("cannot sample from an empty point pool")
        if category_weights is None:
            idx = torch.randint(self.count, (batch_size,), generator=generator, device=self.device)
        else:
            per_instance = category_weights.to(self.device)[self.data["category"][:self.count]]
            idx = torch.multinomial(per_instance, batch_size, replacement=True, generator=generator)
        batch = {k: self.data[k][idx] for k in KEYS}
        cfg = {**AUGMENT, **(augment_cfg or {})}
        keep = outline_keep(batch.pop("margins"), generator, cfg) if augment else None
        batch["points"] = pick_points(batch["points"], n_points, generator, keep)
        if augment:
            batch["points"], batch["R"], batch["t"], batch["size"] = augment_batch(
                batch["points"], batch["R"], batch["t"], batch["size"], batch["category"], generator, cfg)
        return batch

    def mean_size(self, n_categories: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-category mean box size (n_categories, 3) and whether the category occurs (n_categories,)."""
        cat, size = self.data["category"][:self.count], self.data["size"][:self.count]
        total = torch.zeros(n_categories, 3, device=self.device).index_add_(0, cat, size)
        count = torch.zeros(n_categories, device=self.device).index_add_(0, cat, torch.ones_like(size[:, 0]))
        return total / count.clamp(min=1)[:, None], count > 0
