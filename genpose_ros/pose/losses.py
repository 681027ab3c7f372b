"""Training losses (score_sde style factories returning closures).

- denoising score matching (DSM) for the ScoreNet and the EnergyNet, lambda(t) = sigma(t)^2:
  ``E_t,z || sigma(t) s(p0 + sigma(t) z, t) + z ||^2``, several noise draws per object sharing
  one encoder pass;
- regression: L1 on the 6-D rotation columns + L1 on the translation (decimetres);
- size: L1 on the box edge lengths (centimetres).
"""
from __future__ import annotations

from typing import Callable

import torch

from genpose_ros.pose.nets import PoseNet
from genpose_ros.pose.sde import VESDE


def get_dsm_loss_fn(sde: VESDE, head: str = "score", n_noise: int = 20, t_max: float = 1.0) -> Callable:
    """Returns ``loss_fn(model, cond (B, F), p0 (B, 9)) -> scalar`` for ``head`` in {score, energy}.

    Times are drawn uniformly in [eps, t_max]; ``t_max`` < 1 spends the training on the noise
    levels the samplers use (they start at T0 <= 0.6).
    """
    if not sde.eps < t_max <= 1.0:
        raise ValueError(f"t_max must be in ({sde.eps}, 1], got {t_max}")
    if head not in ("score", "energy"):
        raise ValueError(f"unknown DSM head {head!r}; expected 'score' or 'energy'")
    if n_noise < 1:
        raise ValueError(f"n_noise must be >= 1, got {n_noise}")

    def loss_fn(model: PoseNet, cond: torch.Tensor, p0: torch.Tensor) -> torch.Tensor:
        B = p0.shape[0]
        t = torch.rand(B, n_noise, device=p0.device) * (t_max - sde.eps) + sde.eps  # (B, R)
        mean, sigma = sde.marginal_prob(p0[:, None, :], t)  # (B, 1, 9), (B, R)
        z = torch.randn(B, n_noise, 9, device=p0.device)
        pt = mean + sigma[..., None] * z  # (B, R, 9) ~ p_t(x | p0)
        net = model.score if head == "score" else model.energy
        cproj = net.condition(cond)
        if head == "score":
            score = net(pt, t, sigma, cproj)
        else:
            score = net(pt.requires_grad_(True), t, sigma, cproj, create_graph=True)
        return ((score * sigma[..., None] + z) ** 2).sum(-1).mean()

    return loss_fn


def regression_loss(pred: torch.Tensor, target: torch.Tensor, t_weight: float = 10.0) -> torch.Tensor:
    """pred, target (B, 9) pose vectors -> scalar L1 (rotation columns + t in decimetres)."""
    return (pred[:, :6] - target[:, :6]).abs().mean() + t_weight * (pred[:, 6:] - target[:, 6:]).abs().mean()


def size_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pred, target (B, 3) metres -> scalar L1 in centimetres."""
    return 100.0 * (pred - target).abs().mean()


STAGES = ("regression", "joint", "score", "energy", "regression_head", "size")


class StageLoss(torch.nn.Module):
    """The loss of one training stage, as a module that DDP can wrap.

    ``forward(pts (B, N, 3) centred, cat (B,), p0 (B, 9) centroid-relative pose, size (B, 3))
    -> (loss, {term: detached scalar tensor})``. Stages: ``regression`` (regression head),
    ``joint`` (regression + score DSM), ``score`` (score DSM), ``energy`` (energy DSM),
    ``regression_head`` (regression on a frozen encoder), ``size`` (size head). With
    ``train_encoder`` False the encoder runs in eval mode without gradients; with ``amp`` it runs
    under bf16 autocast (the heads and losses stay float32: the DSM targets span sigma 0.01-50).
    """

    def __init__(self, model: PoseNet, sde: VESDE, stage: str, n_noise: int = 20, t_max: float = 1.0,
                 w_reg: float = 1.0, train_encoder: bool = True, amp: bool = False):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"unknown training stage {stage!r}; available: {list(STAGES)}")
        self.model, self.stage, self.w_reg = model, stage, w_reg
        self.train_encoder, self.amp = train_encoder, amp
        self.dsm = get_dsm_loss_fn(sde, "energy" if stage == "energy" else "score", n_noise, t_max)

    def forward(self, pts, cat, p0, size):
        if not self.train_encoder:
            self.model.encoder.eval()
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()), \
                torch.autocast(pts.device.type, dtype=torch.bfloat16, enabled=self.amp):
            cond = self.model.encode(pts, cat).float()  # (B, F)
        terms = {}
        if self.stage in ("regression", "joint", "regression_head"):
            terms["loss_reg"] = regression_loss(self.model.regress(cond), p0)
        if self.stage in ("joint", "score"):
            terms["loss_score"] = self.dsm(self.model, cond, p0)
        if self.stage == "energy":
            terms["loss_energy"] = self.dsm(self.model, cond, p0)
        if self.stage == "size":
            terms["loss_size"] = size_loss(self.model.predict_size(cond, cat), size)
        loss = sum(self.w_reg * v if k == "loss_reg" else v for k, v in terms.items())
        return loss, {k: v.detach() for k, v in terms.items()}  # tensors: no device sync here
