"""Networks on a shared PointNet++ feature: ScoreNet, EnergyNet, regression head, size head.

Shapes: B objects, K candidate poses per object, F = encoder feature + category embedding.
A pose is the 9-D vector ``[Rx | Ry | t]`` relative to the point-cloud centroid (metres).

The conditioning feature is computed ONCE per object (``PoseNet.encode``); the score and energy
heads project it once more (``condition``) and then only the small pose/time part runs per
candidate and per ODE step.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from genpose_ros.pose.pointnet2 import PointNet2Encoder


class GaussianFourierProjection(nn.Module):
    """t (...) -> (..., embed_dim) [sin(2 pi W t), cos(2 pi W t)], W ~ N(0, scale^2) fixed."""

    def __init__(self, embed_dim: int = 128, scale: float = 30.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(embed_dim // 2) * scale, requires_grad=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        proj = t[..., None] * self.W * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class _ThreeHeads(nn.Module):
    """Shared body of ScoreNet and EnergyNet: pose MLP, time embedding, Rx / Ry / t heads
    (first layer split into a per-object part and a per-candidate part; last layer zero-init)."""

    def __init__(self, cond_dim: int, hidden: int = 256, pose_dim: int = 256, time_dim: int = 128,
                 fourier_scale: float = 30.0):
        super().__init__()
        self.pose_mlp = nn.Sequential(nn.Linear(9, pose_dim), nn.ReLU(), nn.Linear(pose_dim, pose_dim), nn.ReLU())
        self.time_mlp = nn.Sequential(GaussianFourierProjection(time_dim, fourier_scale),
                                      nn.Linear(time_dim, time_dim), nn.ReLU())
        self.cond_in = nn.ModuleList(nn.Linear(cond_dim, hidden) for _ in range(3))
        self.pt_in = nn.ModuleList(nn.Linear(pose_dim + time_dim, hidden, bias=False) for _ in range(3))
        self.out = nn.ModuleList(nn.Linear(hidden, 3) for _ in range(3))
        for lin in self.out:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self._stacked: tuple = ((), None)  # (key, weights) of ``_stacked_heads``

    def condition(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, F) -> (B, 3, hidden), computed once per object."""
        return torch.stack([lin(cond) for lin in self.cond_in], dim=1)

    def _stacked_heads(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three heads' weights stacked for one matrix product each (inference): (P + T,
        3 hidden), (3, hidden, 3), (3, 3); rebuilt when a weight changes (its version)."""
        params = [lin.weight for lin in self.pt_in] + [p for lin in self.out for p in (lin.weight, lin.bias)]
        key = tuple((p.data_ptr(), p._version) for p in params)
        if self._stacked[0] != key:
            with torch.no_grad():
                self._stacked = (key, (torch.cat([lin.weight for lin in self.pt_in]).t().contiguous(),
                                       torch.stack([lin.weight.t() for lin in self.out]),
                                       torch.stack([lin.bias for lin in self.out])))
        return self._stacked[1]

    def raw(self, p: torch.Tensor, t: torch.Tensor, cproj: torch.Tensor) -> torch.Tensor:
        """p (B, K, 9), t (B, K), cproj (B, 3, hidden) -> (B, K, 9) (not yet divided by sigma)."""
        h = torch.cat([self.pose_mlp(p), self.time_mlp(t)], dim=-1)  # (B, K, P + T)
        if torch.is_grad_enabled():  # training, the energy's score: the modules as they are
            outs = [self.out[i](torch.relu(self.pt_in[i](h) + cproj[:, None, i])) for i in range(3)]
            return torch.cat(outs, dim=-1)
        # sampling: the same three heads in two matrix products (a third of the time for a few candidates)
        w_in, w_out, b_out = self._stacked_heads()
        B, K, _ = h.shape
        c = cproj.reshape(B, 1, -1).expand(B, K, -1).reshape(B * K, -1)  # (B K, 3 hidden)
        z = torch.addmm(c, h.reshape(B * K, -1), w_in).relu_().view(B * K, 3, -1).transpose(0, 1)  # (3, B K, hidden)
        return torch.baddbmm(b_out[:, None], z, w_out).transpose(0, 1).reshape(B, K, 9)


class ScoreNet(_ThreeHeads):
    """Score s(p, t | O) = f(p, t, O) / sigma(t) (GenPose's ScoreNet)."""

    def forward(self, p: torch.Tensor, t: torch.Tensor, sigma: torch.Tensor | float, cproj: torch.Tensor) -> torch.Tensor:
        """p (B, K, 9), t and sigma (B, K) (sigma a float when the same for all), cproj (B, 3,
        hidden) -> score (B, K, 9)."""
        return self.raw(p, t, cproj) / (sigma[..., None] if torch.is_tensor(sigma) else sigma)


class EnergyNet(_ThreeHeads):
    """Energy E(p, t | O) = <p, f(p, t, O) / sigma(t)>, split into rotation and translation
    parts; its score is dE/dp by autograd."""

    def energy(self, p: torch.Tensor, t: torch.Tensor, sigma: torch.Tensor, cproj: torch.Tensor) -> torch.Tensor:
        """-> (B, K, 2) energies [rotation, translation] (higher = more likely)."""
        prod = p * self.raw(p, t, cproj) / sigma[..., None]
        return torch.stack([prod[..., :6].sum(-1), prod[..., 6:].sum(-1)], dim=-1)

    def forward(self, p: torch.Tensor, t: torch.Tensor, sigma: torch.Tensor, cproj: torch.Tensor,
                create_graph: bool = False) -> torch.Tensor:
        """-> score (B, K, 9) = dE/dp (graph kept when ``create_graph`` for training)."""
        with torch.enable_grad():
            p = p if p.requires_grad else p.detach().requires_grad_(True)
            e = self.energy(p, t, sigma, cproj).sum()
            (grad,) = torch.autograd.grad(e, p, create_graph=create_graph)
        return grad


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class PoseNet(nn.Module):
    """Encoder + category embedding + the four heads. Built from a model config dict:

    ``{"categories": [...], "n_points": 512, "encoder": {levels, global_mlp}, "cat_dim": 32,
    "hidden": 256, "pose_dim": 256, "time_dim": 128, "fourier_scale": 30.0}``
    """

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        self.categories = list(config["categories"])
        self.encoder = PointNet2Encoder(**config["encoder"])
        self.cat_embed = nn.Embedding(len(self.categories), config.get("cat_dim", 32))
        F = self.encoder.out_dim + config.get("cat_dim", 32)
        hidden = config.get("hidden", 256)
        kw = dict(hidden=hidden, pose_dim=config.get("pose_dim", 256), time_dim=config.get("time_dim", 128),
                  fourier_scale=config.get("fourier_scale", 30.0))
        self.score = ScoreNet(F, **kw)
        self.energy = EnergyNet(F, **kw)
        self.regression = _mlp([F, hidden, hidden, 9])
        self.size_head = _mlp([F, hidden, 3])
        nn.init.zeros_(self.size_head[-1].weight)
        nn.init.zeros_(self.size_head[-1].bias)
        # per-category mean box size (metres); the head predicts a log-ratio to it
        self.register_buffer("size_prior", torch.full((len(self.categories), 3), 0.15))

    def category_index(self, categories: list[str]) -> torch.Tensor:
        """Category names -> (B,) long indices; unknown names raise ValueError."""
        idx = []
        for c in categories:
            if c not in self.categories:
                raise ValueError(f"unknown category {c!r}; this model knows {self.categories}")
            idx.append(self.categories.index(c))
        return torch.tensor(idx, dtype=torch.long, device=self.size_prior.device)

    def encode(self, points: torch.Tensor, category: torch.Tensor, grouping: list | None = None,
               feature: torch.Tensor | None = None) -> torch.Tensor:
        """Centred points (B, N, 3) + category indices (B,) -> conditioning feature (B, F);
        ``grouping``: the encoder's neighbour indices of the same clouds up to a rigid motion
        (``PointNet2Encoder.group``), or None to search them; ``feature``: the encoder's output
        for these points when already computed (the category check's)."""
        if category.shape != points.shape[:1]:
            raise ValueError(f"category: expected shape ({points.shape[0]},), got {tuple(category.shape)}")
        if category.numel() and (category.min() < 0 or category.max() >= len(self.categories)):
            raise ValueError(f"category index out of range 0..{len(self.categories) - 1}")
        if feature is None:
            feature = self.encoder(points, grouping)
        return torch.cat([feature, self.cat_embed(category)], dim=-1)

    def regress(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, F) -> (B, 9) pose vector relative to the centroid."""
        return self.regression(cond)

    def predict_size(self, cond: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """(B, F), (B,) -> (B, 3) box edge lengths in metres."""
        return self.size_prior[category] * torch.exp(self.size_head(cond))
