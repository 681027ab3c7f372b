"""Box size from the points seen in the estimated object frame (GenPose++'s ScaleNet idea).

The object points are moved into the estimated object frame (``canonicalize``). A robust
extent fit gives a first box: the frame is centred on the box centre, so twice the
``quantile`` of |coordinate| per axis mirrors the seen side onto the unseen one. A small
PointNet on the canonical points, scaled by that fit, predicts a per-axis log correction
(the unseen side, sensor edges, pose error): ``size = fit * exp(correction)``. The size thus
follows the points instead of a category mean, which is what lets it generalise to object
sizes outside the training range. With ``centre`` the same features also place the box centre
in the estimated frame, which corrects the pose's translation (a laptop's box centre is far
from its visible points).

    net = load_size_net("models/size_net.pt")
    size, t_box = net.predict(points, R, t, category_idx)   # camera frame (B, N, 3), pose, (B,) -> (B, 3) m each

Checkpoints are ``genpose_ros.pose.checkpoint`` dicts of format ``SIZE_FORMAT`` (read with
``weights_only=True``); ``model_config`` holds ``categories`` and the layer sizes.
"""
from __future__ import annotations

import torch
import torch.nn as nn

SIZE_FORMAT = "genpose_ros.size/1"
SIZE_WHAT = "size checkpoint"
MIN_EXTENT_M = 0.005  # floor of the extent fit (flat or nearly empty point sets)


def canonicalize(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Camera-frame points (B, N, 3) -> object frame R^T (p - t), with R (B, 3, 3), t (B, 3)."""
    return torch.bmm(points - t[:, None, :], R)


def _tail(n: int, q: float) -> tuple[int, int, int, float]:
    """Where ``axis_quantile`` reads the ``q`` quantile of n values: how many of the largest (q
    >= 0.5, descending) or smallest (ascending) it takes, the two indices into them the linear
    interpolation joins and its weight."""
    pos = q * (n - 1)
    i, w = int(pos), pos - int(pos)
    if q >= 0.5:  # the n - i largest: index n - 1 - i of the ascending order is the last
        return n - i, n - i - 1, max(n - i - 2, 0), w
    return min(i + 2, n), i, min(i + 2, n) - 1, w


def axis_quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    """``torch.quantile(x, q, dim=1)`` (linear interpolation) of (B, N, C) -> (B, C), from the
    few largest or smallest values (``topk``) instead of a full sort: the verifier computes
    three per candidate, a few hundred candidates per call."""
    count, a, b, w = _tail(x.shape[1], q)
    xt = x.transpose(1, 2).contiguous()  # (B, C, N): topk along contiguous memory
    top = xt.topk(count, dim=-1, largest=q >= 0.5, sorted=True).values
    return torch.lerp(top[..., a], top[..., b], w)


def tail_quantiles(x: torch.Tensor, q: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``axis_quantile`` of (B, N, C) at ``1 - q`` and ``q`` and of ``|x|`` at ``q`` (q > 0.5),
    the same values from two top-k calls instead of three: the few largest ``|x|`` are among
    the few largest and the few smallest ``x``."""
    n = x.shape[1]
    m, a, b, w = _tail(n, q)  # of the largest
    m_lo, a_lo, b_lo, w_lo = _tail(n, 1.0 - q)  # of the smallest
    if q <= 0.5 or 2 * max(m, m_lo) > n:
        return axis_quantile(x, 1.0 - q), axis_quantile(x, q), axis_quantile(x.abs(), q)
    xt = x.transpose(1, 2).contiguous()
    large = xt.topk(m, dim=-1, largest=True, sorted=True).values  # descending
    small = xt.topk(max(m, m_lo), dim=-1, largest=False, sorted=True).values  # ascending
    mag = torch.cat([large.abs(), small[..., :m].abs()], dim=-1).topk(m, dim=-1, sorted=True).values
    return (torch.lerp(small[..., a_lo], small[..., b_lo], w_lo), torch.lerp(large[..., a], large[..., b], w),
            torch.lerp(mag[..., a], mag[..., b], w))


def extent_fit(local: torch.Tensor, q: float) -> torch.Tensor:
    """(B, N, 3) object-frame points -> (B, 3) box edges mirrored about the frame centre."""
    return (2.0 * axis_quantile(local.abs(), q)).clamp_min(MIN_EXTENT_M)


def point_features(net: nn.Module, local: torch.Tensor, quantile: float):
    """What the small point networks (SizeNet, verifier) see of object-frame points (B, N, 3):
    the pooled features of ``net.point_mlp`` on the scale-free points (B, 2C: max, mean), the
    mirrored extent fit (B, 3), the ``1 - quantile`` and ``quantile`` coordinates (B, 3 each) and
    the seen extent between them (B, 3), metres."""
    lo, hi, mag = tail_quantiles(local, quantile)
    fit = (2.0 * mag).clamp_min(MIN_EXTENT_M)  # extent_fit
    scale = fit.amax(dim=-1)  # (B,)
    x = net.point_mlp(local / scale[:, None, None])  # (B, N, C) scale-free shape
    pooled = torch.cat([x.amax(dim=1), x.mean(dim=1)], dim=-1)
    return pooled, fit, lo, hi, (hi - lo).clamp_min(MIN_EXTENT_M)


def point_mlp(widths: list[int]) -> nn.Sequential:
    """The shared per-point MLP of the small point networks: Linear + ReLU per step of ``widths``.
    The ReLUs work in place: with hundreds of candidates' points (the verifier's turn check) a
    second buffer per layer tripled the call's time on one CPU thread."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SizeNet(nn.Module):
    """Extent fit + learned log correction. Config: ``{"categories": [...], "n_points": 256,
    "widths": [32, 64, 128], "hidden": 128, "cat_dim": 16, "quantile": 0.97, "centre": true}``
    (config/size_net.yaml); with ``centre`` it also estimates where the box centre lies in the
    given frame (the pose's translation error), relative to the fitted extents."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        self.categories = list(config["categories"])
        self.quantile = float(config.get("quantile", 0.97))
        self.centre = bool(config.get("centre", False))
        widths = [3] + list(config.get("widths", [64, 128, 256]))
        self.point_mlp = point_mlp(widths)
        cat_dim, hidden = config.get("cat_dim", 16), config.get("hidden", 128)
        self.cat_embed = nn.Embedding(len(self.categories), cat_dim)
        self.head = nn.Sequential(nn.Linear(2 * widths[-1] + 6 + cat_dim, hidden), nn.ReLU(),
                                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 6 if self.centre else 3))
        nn.init.zeros_(self.head[-1].weight)  # starts as the plain extent fit about the given centre
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, local: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """Object-frame points (B, N, 3), category indices (B,) -> box edges (B, 3), metres."""
        return self.box(local, category)[0]

    def box(self, local: torch.Tensor, category: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Object-frame points (B, N, 3), category indices (B,) -> box edges (B, 3) and the box
        centre in that frame (B, 3), metres (zeros without the centre output)."""
        pooled, fit, _, _, span = point_features(self, local, self.quantile)  # span: seen, not mirrored
        feat = torch.cat([pooled, torch.log(fit), torch.log(span / fit), self.cat_embed(category)], dim=-1)
        out = self.head(feat)
        centre = out[:, 3:] * fit if self.centre else torch.zeros_like(fit)
        return fit * torch.exp(out[:, :3]), centre

    @torch.no_grad()
    def predict(self, points: torch.Tensor, R: torch.Tensor, t: torch.Tensor,
                category: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Camera-frame points (B, N, 3) (a random sample), pose R (B, 3, 3), t (B, 3), category (B,)
        -> box edges (B, 3) and the box centre in the camera frame (B, 3; ``t`` itself without the
        centre output). Uses the first ``n_points`` of the points, as many as in training."""
        n = int(self.config.get("n_points", points.shape[1]))
        size, centre = self.box(canonicalize(points[:, :n], R, t), category)
        return size, t + torch.einsum("bij,bj->bi", R, centre)

    def category_index(self, categories: list[str], device=None) -> torch.Tensor:
        return category_index(self.categories, categories, "size network", device)


def category_index(known: list[str], categories: list[str], what: str, device=None) -> torch.Tensor:
    """Indices of ``categories`` in ``known`` (B,); unknown names raise ValueError naming ``what``."""
    missing = [c for c in categories if c not in known]
    if missing:
        raise ValueError(f"the {what} does not know the categories {missing}; it knows {known}")
    return torch.tensor([known.index(c) for c in categories], dtype=torch.long, device=device)


def load_size_net(path, map_location: str | torch.device = "cpu") -> SizeNet:
    """SizeNet from a safe checkpoint; missing, corrupt, non-finite or mismatched files raise
    CheckpointError."""
    from genpose_ros.pose.checkpoint import load_net

    return load_net(SizeNet, path, SIZE_FORMAT, SIZE_WHAT, map_location)
