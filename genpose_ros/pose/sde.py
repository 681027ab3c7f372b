"""Stochastic differential equations of the diffusion model (score_sde style).

Only the variance-exploding SDE is used (GenPose): ``dx = sqrt(d sigma^2/dt) dw`` with
``sigma(t) = sigma_min (sigma_max / sigma_min)^t``, t in [eps, 1]. Its probability-flow ODE is
``dx/dt = -1/2 g(t)^2 score(x, t)``.
"""
from __future__ import annotations

import math

import torch

from genpose_ros.registry import Registry

SDES = Registry("SDE")
register_sde = SDES.register


def get_sde(name: str, **kwargs) -> "VESDE":
    """Build a registered SDE by name (``ve``) from its settings (config/train.yaml ``sde``)."""
    return SDES.lookup(name)(**kwargs)


@register_sde("ve")
class VESDE:
    """Variance-exploding SDE.

    Args:
        sigma_min, sigma_max: noise std at t = 0 and t = 1 (same units as the data: the 9-D pose).
        eps: smallest time used in training and sampling.

    The values are config/train.yaml's ``sde``; a checkpoint stores the ones it was trained with.
    """

    def __init__(self, sigma_min: float, sigma_max: float, eps: float):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"VESDE: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max, self.eps = float(sigma_min), float(sigma_max), float(eps)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor | float:
        """Marginal noise std at time t (same shape as t; a float for a float: the samplers'
        per-step constants without tensor operations)."""
        if isinstance(t, (float, int)):
            return self.sigma_min * math.exp(t * self._log_ratio)
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of p_t(x | x0): (x0, sigma(t)); the DSM loss and the tracking warm
        start perturb with it."""
        return x0, self.sigma(t)

    def prior_sampling(self, shape, t: float = 1.0, generator=None, device=None) -> torch.Tensor:
        """Samples of N(0, sigma(t)^2 I), where the samplers start the ODE at time t."""
        return torch.randn(shape, generator=generator, device=device) * self.sigma(torch.tensor(t)).item()

    def ode_drift(self, score: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Probability-flow ODE velocity dx/dt = -1/2 g^2 score; score (..., D), t (...)."""
        g2 = 2 * self._log_ratio * self.sigma(t) ** 2
        return -0.5 * (g2[..., None] if torch.is_tensor(g2) else g2) * score
