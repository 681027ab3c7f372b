"""PointNet++ encoder with multi-scale grouping (MSG), in plain torch.

Farthest point sampling (FPS) runs batched in torch on a GPU and through the compiled
``fpsample`` package on the CPU (a Python-loop FPS costs ~50 ms per 512-of-1024 selection there).
Ball query is a batched distance + running count + binary search. Nothing needs a custom CUDA build.

The architecture is read from a config dict (see ``config/estimator.yaml``)::

    {"levels": [{"npoint": 128, "radii": [0.02, 0.04], "nsample": [8, 16],
                 "mlps": [[16, 16, 32], [32, 32, 64]]}, ...],
     "global_mlp": [256, 256]}

``GENPOSE_ENCODER`` is GenPose's size (1024 points, 512/256/128 + global, 1024-d feature);
``LIGHT_ENCODER`` is the CPU-friendly one shipped in ``models/``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

GENPOSE_ENCODER = {
    "levels": [
        {"npoint": 512, "radii": [0.01, 0.02], "nsample": [16, 32],
         "mlps": [[16, 16, 32], [32, 32, 64]]},
        {"npoint": 256, "radii": [0.02, 0.04], "nsample": [16, 32],
         "mlps": [[64, 64, 128], [64, 96, 128]]},
        {"npoint": 128, "radii": [0.04, 0.08], "nsample": [16, 32],
         "mlps": [[128, 196, 256], [128, 196, 256]]},
    ],
    "global_mlp": [256, 512, 1024],
}

LIGHT_ENCODER = {
    "levels": [
        {"npoint": 128, "radii": [0.02, 0.05], "nsample": [8, 16],
         "mlps": [[16, 32], [32, 64]]},
        {"npoint": 32, "radii": [0.05, 0.10], "nsample": [8, 16],
         "mlps": [[64, 128], [64, 128]]},
    ],
    "global_mlp": [256, 256],
}


def farthest_point_sample(xyz: torch.Tensor, npoint: int, backend: str | None = None) -> torch.Tensor:
    """Farthest point sampling.

    Args:
        xyz: (B, N, 3) points.
        npoint: number of points to keep (<= N).
        backend: "fpsample" (compiled, CPU), "torch" (batched, any device) or None (fpsample
            for CPU tensors, torch otherwise).
    Returns:
        (B, npoint) long indices on the device of ``xyz``; the first index is 0 (deterministic).
    """
    B, N, _ = xyz.shape
    if npoint > N:
        raise ValueError(f"farthest_point_sample: cannot pick {npoint} of {N} points")
    if backend is None:
        backend = "fpsample" if xyz.device.type == "cpu" else "torch"
    if backend not in ("fpsample", "torch"):
        raise ValueError(f"unknown FPS backend {backend!r}; expected 'fpsample' or 'torch'")
    if backend == "fpsample":
        import fpsample

        pts = xyz.detach().float().numpy()
        idx = np.stack([fpsample.fps_sampling(pts[b], npoint, start_idx=0) for b in range(B)])
        return torch.from_numpy(idx.astype(np.int64)).to(xyz.device)
    # batched torch FPS (GPU): npoint iterations of a (B, N) distance update
    idx = torch.zeros(B, npoint, dtype=torch.long, device=xyz.device)
    dist = torch.full((B, N), float("inf"), device=xyz.device, dtype=xyz.dtype)
    farthest = torch.zeros(B, dtype=torch.long, device=xyz.device)
    batch = torch.arange(B, device=xyz.device)
    for i in range(npoint):
        idx[:, i] = farthest
        centre = xyz[batch, farthest][:, None, :]  # (B, 1, 3)
        dist = torch.minimum(dist, ((xyz - centre) ** 2).sum(-1))
        farthest = dist.argmax(-1)
    return idx


def ball_query(radius: float, nsample: int, xyz: torch.Tensor, centres: torch.Tensor,
               d2: torch.Tensor | None = None) -> torch.Tensor:
    """Up to ``nsample`` neighbours within ``radius`` of each centre (first ones in index order,
    padded with the first neighbour found, as in the reference CUDA kernel).

    Args:
        xyz: (B, N, 3) points; centres: (B, S, 3), each itself a point of ``xyz``;
        d2: their squared distances (B, S, N) when already computed (the radii of one level share them).
    Returns:
        (B, S, nsample) long indices into ``xyz``.
    """
    N = xyz.shape[1]
    if d2 is None:
        d2 = torch.cdist(centres, xyz).square_()
    # the running count of points within the radius is sorted along each row: the j-th neighbour
    # is where the count first reaches j (a binary search, far cheaper than a top-k of the indices)
    count = (d2 <= radius * radius).cumsum(-1, dtype=torch.int32)  # (B, S, N)
    wanted = torch.arange(1, nsample + 1, dtype=torch.int32, device=xyz.device)
    idx = torch.searchsorted(count, wanted.expand(*count.shape[:-1], nsample).contiguous())  # N: fewer found
    return torch.where(idx == N, idx[..., :1].clamp(max=N - 1), idx)


def select_grouping(grouping: list, rows: torch.Tensor) -> list:
    """``PointNet2Encoder.group``'s indices of the clouds ``rows`` (M,) of its batch."""
    return [(centre_idx[rows], [idx[rows] for idx in neighbours]) for centre_idx, neighbours in grouping]


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, N, C), idx (B, ...) -> (B, ..., C): whole rows picked from the flattened batch
    (``index_select``; ``torch.gather`` with an index expanded over C reads one element at a
    time, 7x slower for the encoder's 96-channel features on a CPU)."""
    B, N, C = x.shape
    flat = (idx.reshape(B, -1) + N * torch.arange(B, device=x.device)[:, None]).reshape(-1)
    return x.reshape(B * N, C).index_select(0, flat).reshape(*idx.shape, C)


def _mlp2d(channels: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers += [nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def folded_mlp(mlp: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """An ``_mlp2d`` in eval mode on channels-last input (..., C): each 1x1 convolution with its
    batch norm folded into one matrix product (what the modules compute, without the layout
    copies and the slow convolution path they take on a CPU)."""
    layers = list(mlp)
    for conv, bn in zip(layers[0::3], layers[1::3]):
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        x = torch.addmm(bn.bias - bn.running_mean * scale, x.reshape(-1, x.shape[-1]),
                        (conv.weight[:, :, 0, 0] * scale[:, None]).t()).reshape(*x.shape[:-1], -1)
        x = x.clamp_min_(0.0)
    return x


class SetAbstractionMSG(nn.Module):
    """One MSG level: FPS centres, then per radius ball query + shared MLP + max pool."""

    def __init__(self, npoint: int, radii: list[float], nsample: list[int], mlps: list[list[int]],
                 in_channels: int):
        super().__init__()
        if not (len(radii) == len(nsample) == len(mlps)):
            raise ValueError("SetAbstractionMSG: radii, nsample and mlps must have the same length")
        self.npoint, self.radii, self.nsample = npoint, list(radii), list(nsample)
        self.branches = nn.ModuleList(_mlp2d([in_channels + 3] + list(m)) for m in mlps)
        self.out_channels = sum(m[-1] for m in mlps)

    def group(self, xyz: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """xyz (B, N, 3) -> the FPS centres' indices (B, S) and per radius the neighbours' (B, S, k).
        They depend on distances only: a rotated or shifted cloud has the same ones."""
        centre_idx = farthest_point_sample(xyz, self.npoint)
        centres = _gather(xyz, centre_idx)
        d2 = torch.cdist(centres, xyz).square_()  # (B, S, N), shared by the radii
        return centre_idx, [ball_query(r, k, xyz, centres, d2) for r, k in zip(self.radii, self.nsample)]

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor | None,
                grouping: tuple[torch.Tensor, list[torch.Tensor]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """xyz (B, N, 3), feats (B, N, C) or None, ``group``'s indices (computed when None) ->
        centres (B, S, 3), features (B, S, C')."""
        centre_idx, neighbours = grouping if grouping is not None else self.group(xyz)
        centres = _gather(xyz, centre_idx)
        outs = []
        for idx, mlp in zip(neighbours, self.branches):  # idx (B, S, k)
            grouped = _gather(xyz, idx) - centres[:, :, None, :]  # (B, S, k, 3) local coords
            if feats is not None:
                grouped = torch.cat([grouped, _gather(feats, idx)], dim=-1)
            if self.training:  # batch statistics: the modules as they are
                outs.append(mlp(grouped.permute(0, 3, 1, 2)).amax(dim=-1).transpose(1, 2))  # (B, S, C')
            else:
                outs.append(folded_mlp(mlp, grouped).amax(dim=2))  # (B, S, C')
        return centres, torch.cat(outs, dim=-1)


class PointNet2Encoder(nn.Module):
    """Centred object points (B, N, 3), metres -> global feature (B, out_dim)."""

    def __init__(self, levels: list[dict], global_mlp: list[int]):
        super().__init__()
        if not levels or not global_mlp:
            raise ValueError("PointNet2Encoder: needs at least one level and a global MLP")
        self.levels = nn.ModuleList()
        c = 0
        for lv in levels:
            unknown = set(lv) - {"npoint", "radii", "nsample", "mlps"}
            if unknown:
                raise ValueError(f"PointNet2Encoder: unknown level keys {sorted(unknown)}")
            sa = SetAbstractionMSG(lv["npoint"], lv["radii"], lv["nsample"], lv["mlps"], c)
            self.levels.append(sa)
            c = sa.out_channels
        layers: list[nn.Module] = []
        for c_in, c_out in zip([c + 3] + list(global_mlp[:-1]), global_mlp):
            layers += [nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]
        self.global_mlp = nn.Sequential(*layers)
        self.out_dim = global_mlp[-1]
        self.min_points = levels[0]["npoint"]

    def group(self, points: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """Every level's FPS and ball-query indices of ``points`` (B, N, 3); ``forward`` takes
        them back for the same cloud rotated or shifted (the estimator's roll check), which then
        skips the neighbour search. Index with ``select_grouping``."""
        self._check(points)
        out, xyz = [], points
        for sa in self.levels:
            out.append(sa.group(xyz))
            xyz = _gather(xyz, out[-1][0])
        return out

    def _check(self, points: torch.Tensor) -> None:
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(f"PointNet2Encoder: expected points (B, N, 3), got {tuple(points.shape)}")
        if points.shape[1] < self.min_points:
            raise ValueError(f"PointNet2Encoder: needs at least {self.min_points} points, "
                             f"got {points.shape[1]}")

    def forward(self, points: torch.Tensor, grouping: list | None = None) -> torch.Tensor:
        """Points (B, N, 3) (with ``group``'s indices of the same cloud up to a rigid motion,
        or None) -> (B, out_dim)."""
        self._check(points)
        xyz, feats = points, None
        for level, sa in enumerate(self.levels):
            xyz, feats = sa(xyz, feats, None if grouping is None else grouping[level])
        h = torch.cat([xyz, feats], dim=-1).transpose(1, 2)  # (B, 3 + C, S)
        return self.global_mlp(h).amax(dim=-1)  # (B, out_dim)
