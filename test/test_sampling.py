"""Samplers on toy conditional distributions with two modes.

- an analytic Gaussian-mixture score (exact under VE noise) checks the ODE solvers and the
  score-scaling schedule without any training;
- a small ScoreNet / EnergyNet trained here by denoising score matching checks that the
  samplers recover both modes of a conditional distribution and that the energy ranks the
  true pose above a noised one.
"""
import math

import pytest
import torch
import torch.nn as nn

from genpose_ros.pose import losses
from genpose_ros.pose import sampling
from genpose_ros.pose.nets import EnergyNet, ScoreNet
from genpose_ros.pose.sde import get_sde

SDE = get_sde("ve", sigma_min=0.01, sigma_max=50.0, eps=1e-5)
S = 0.05  # mode std
# two modes of a 9-D pose [Rx | Ry | t]: identity and a 180 deg turn about y (Rx flips), same t
MODE_A = torch.tensor([1.0, 0, 0, 0, 1, 0, 0.02, -0.01, 0.03])
MODE_B = torch.tensor([-1.0, 0, 0, 0, 1, 0, 0.02, -0.01, 0.03])
MODE_C = torch.tensor([0.0, 0, 1, 0, 1, 0, -0.03, 0.0, 0.01])  # the single mode of condition 1


class MixtureScore(nn.Module):
    """Exact score of sum_i w_i N(mu_i, (S^2 + sigma^2) I); cond (B, 2) one-hot picks the mixture."""

    def condition(self, cond):
        return cond

    def forward(self, x, t, sigma, cond):
        var = S ** 2 + (sigma[..., None] if torch.is_tensor(sigma) else sigma) ** 2  # (B, K, 1) or a float
        mus = torch.stack([MODE_A, MODE_B, MODE_C])  # (3, 9)
        w = torch.stack([cond[:, 0] * 0.5, cond[:, 0] * 0.5, cond[:, 1]], -1)  # (B, 3)
        d2 = ((x[:, :, None] - mus) ** 2).sum(-1)  # (B, K, 3)
        logits = torch.log(w[:, None] + 1e-30) - d2 / (2 * var)
        gamma = logits.softmax(-1)
        return ((gamma[..., None] * (mus - x[:, :, None])).sum(2)) / var


class Toy(nn.Module):
    def __init__(self, score, energy=None):
        super().__init__()
        self.score, self.energy = score, energy


def nearest(samples):
    """(N, 9) -> index of the nearest mode (0 = A, 1 = B, 2 = C) and the distance to it."""
    d = torch.cdist(samples, torch.stack([MODE_A, MODE_B, MODE_C]))
    return d.argmin(-1), d.min(-1).values


@pytest.mark.parametrize("solver,steps", [("euler", 40), ("heun", 15), ("rk45", 0)])
def test_ode_solvers_recover_both_modes_of_exact_mixture(solver, steps):
    gen = torch.Generator().manual_seed(0)
    model = Toy(MixtureScore())
    cond = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = sampling.sample_score_scaling(model, SDE, cond, num_candidates=300, t0=0.55, solver=solver,
                                      n_steps=steps, schedule="none", verify_turns=0, generator=gen)
    which, dist = nearest(s.hypotheses[0])
    frac_a = float((which == 0).float().mean())
    assert float((which == 2).float().mean()) == 0
    assert 0.3 < frac_a < 0.7, frac_a  # both modes, about half each
    assert float(dist.max()) < 6 * S
    which1, _ = nearest(s.hypotheses[1])
    assert torch.all(which1 == 2)
    # per-mode spread matches the data std: E||x - mu||^2 = 9 S^2
    assert abs(math.sqrt(float((dist ** 2).mean()) / 9) - S) < 0.25 * S


def test_score_scaling_concentrates_samples_on_the_modes():
    cond = torch.tensor([[1.0, 0.0]])
    spread = {}
    for k in (1.0, 4.0, 16.0):
        gen = torch.Generator().manual_seed(1)
        s = sampling.sample_score_scaling(Toy(MixtureScore()), SDE, cond, num_candidates=400, n_steps=40, t0=0.55,
                                          schedule="gaussian", schedule_kwargs={"k": k, "s": S}, verify_turns=0,
                                          generator=gen)
        which, dist = nearest(s.hypotheses[0])
        frac_a = float((which == 0).float().mean())
        assert 0.3 < frac_a < 0.7  # still both modes: exploration is untouched
        spread[k] = math.sqrt(float((dist ** 2).mean()) / 9)
    # Gaussian sharpening by k shrinks the mode std by sqrt(k)
    assert abs(spread[4.0] - S / 2) < 0.25 * S / 2
    assert spread[16.0] < spread[4.0] < spread[1.0]


def test_schedules_limits_and_errors():
    t = torch.tensor([1e-5, 0.3, 1.0])
    g = sampling.get_schedule("gaussian")(t, SDE, k=4.0, s=0.05)
    assert abs(float(g[0]) - 4 * (0.05 ** 2 + 1e-4) / (0.05 ** 2 + 4e-4)) < 1e-3  # ~k at the end
    assert abs(float(g[2]) - 1) < 1e-5  # 1 at high noise
    assert torch.all(g[:-1] >= g[1:])
    e = sampling.get_schedule("exponential")(t, SDE, k=4.0, tau=0.1)
    assert abs(float(e[0]) - 4) < 1e-4 and float(e[2]) < 1.001
    with pytest.raises(ValueError, match="unknown score-scaling schedule 'cubic'"):
        sampling.get_schedule("cubic")
    with pytest.raises(ValueError, match="unknown ODE solver"):
        sampling.get_solver("rk4")
    with pytest.raises(ValueError, match="unknown sampling mode"):
        sampling.get_sampler("ddim")
    with pytest.raises(ValueError, match="ranking"):
        sampling.sample_genpose(Toy(MixtureScore()), SDE, torch.tensor([[1.0, 0.0]]), ranking="best")


def _toy_batch(n, gen):
    """Condition 0: modes A / B with equal weight; condition 1: mode C."""
    c = torch.randint(0, 2, (n,), generator=gen)
    pick = torch.randint(0, 2, (n,), generator=gen)
    mu = torch.where((c == 0)[:, None], torch.where((pick == 0)[:, None], MODE_A, MODE_B), MODE_C)
    x = mu + S * torch.randn(n, 9, generator=gen)
    return nn.functional.one_hot(c, 2).float(), x


@pytest.fixture(scope="module")
def trained_toy():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is faster than two contended ones
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    kw = dict(hidden=64, pose_dim=64, time_dim=32, fourier_scale=16.0)
    model = Toy(ScoreNet(2, **kw), EnergyNet(2, **kw))
    for head, steps in (("score", 1500), ("energy", 500)):
        loss_fn = losses.get_dsm_loss_fn(SDE, head, n_noise=8, t_max=0.6)
        net = getattr(model, head)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.05 ** (1 / steps))
        for _ in range(steps):
            cond, x = _toy_batch(64, gen)
            loss = loss_fn(model, cond, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    torch.set_num_threads(threads)
    return model


def test_trained_score_net_recovers_both_modes(trained_toy):
    gen = torch.Generator().manual_seed(2)
    cond = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():   # as the estimator samples (inference mode)
        s = sampling.sample_genpose(trained_toy, SDE, cond, num_candidates=200, n_steps=30, ranking="none",
                                    verify_turns=0, generator=gen)
    which, dist = nearest(s.hypotheses[0])
    frac_a = float((which == 0).float().mean())
    assert 0.2 < frac_a < 0.8, frac_a
    # 9-D Gaussian of std S: median distance ~2.9 S; allow a short training some slack
    assert float(dist.median()) < 4.5 * S
    assert float((dist < 8 * S).float().mean()) > 0.75  # few stragglers between the modes
    which1, dist1 = nearest(s.hypotheses[1])
    assert float((which1 == 2).float().mean()) > 0.95
    # score scaling on the trained net: samples tighter around the modes, both modes kept
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        s2 = sampling.sample_score_scaling(trained_toy, SDE, cond, num_candidates=200, n_steps=30,
                                           schedule_kwargs={"k": 8.0, "s": S}, verify_turns=0, generator=gen)
    which2, dist2 = nearest(s2.hypotheses[0])
    assert 0.2 < float((which2 == 0).float().mean()) < 0.8
    assert float(dist2.median()) < float(dist.median())


def test_trained_energy_ranks_true_pose_above_noised_pose(trained_toy):
    gen = torch.Generator().manual_seed(3)
    cond, x = _toy_batch(200, gen)
    noised = x + 0.15 * torch.randn(x.shape, generator=gen)  # ~ 3 S off
    both = torch.stack([x, noised], 1)  # (B, 2, 9)
    t = torch.full((200, 2), SDE.eps)
    with torch.no_grad():
        e = trained_toy.energy.energy(both, t, SDE.sigma(t), trained_toy.energy.condition(cond)).sum(-1)
    assert float((e[:, 0] > e[:, 1]).float().mean()) > 0.9
    # and energy ranking keeps the good candidates of a mixed set
    with torch.no_grad():
        s = sampling.sample_genpose(trained_toy, SDE, torch.tensor([[0.0, 1.0]]), num_candidates=20, n_steps=20,
                                    ranking="energy", verify_turns=0, generator=gen)
    assert float(nearest(s.pose)[1][0]) < 4 * S
