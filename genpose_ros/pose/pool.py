"""Per-instance point pools: every instance's depth and mask read once, shared by the pose
trainer (``genpose_ros.pose.train``) and the size network's trainer (``pose/size_train.py``)."""
from __future__ import annotations

from pathlib import Path


class PointPool:
    """Training items from a cache of per-instance point pools.

    Reading the depth and mask PNGs costs ~25 ms per instance on the CPU; the pool reads every
    instance once (``pool_points`` points, no augmentation), then each item draws ``n_points``
    of them and applies the dataset's augmentation (``genpose_ros.data.dataset.augment_instance``).
    """

    def __init__(self, pool: dict, n_points: int, seed: int = 0):
        import numpy as np

        self.pool, self.n_points, self.seed = pool, n_points, seed
        self.rng = np.random.default_rng(seed)

    @classmethod
    def build(cls, dataset, n_points: int, cache: str | None = None, seed: int = 0) -> "PointPool":
        import torch
        from tqdm import tqdm

        if cache and Path(cache).is_file():
            pool = torch.load(cache, weights_only=True)
            if pool["points"].shape[0] == len(dataset):
                return cls(pool, n_points, seed)
        items = [dataset[i] for i in tqdm(range(len(dataset)), desc="reading instances", mininterval=5)]
        pool = {k: torch.stack([it[k] for it in items]) for k in ("points", "R", "t", "size", "category",
                                                                  "handle_visible")}
        if cache:
            torch.save(pool, cache)
        return cls(pool, n_points, seed)

    def __len__(self) -> int:
        return self.pool["points"].shape[0]

    def __getitem__(self, i: int) -> dict:
        import numpy as np
        import torch

        from genpose_ros import CATEGORIES
        from genpose_ros.data.dataset import augment_instance

        pts = self.pool["points"][i].numpy().astype(np.float64)
        pts = pts[self.rng.choice(len(pts), self.n_points, replace=len(pts) < self.n_points)]
        R, t, size = (self.pool[k][i].numpy().astype(np.float64) for k in ("R", "t", "size"))
        cat = int(self.pool["category"][i])
        pts, R, t, size = augment_instance(pts, R, t, size, CATEGORIES[cat], self.rng)
        f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        return {"points": f32(pts), "R": f32(R), "t": f32(t), "size": f32(size),
                "category": self.pool["category"][i], "handle_visible": self.pool["handle_visible"][i]}
