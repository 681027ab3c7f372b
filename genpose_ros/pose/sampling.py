"""Pose samplers, batched over objects (B) x candidates (K), registered by name.

Every sampler takes the per-object conditioning feature (the encoder ran once) and returns a
``Sample``: the final 9-D pose vectors (B, 9), the K hypotheses (B, K, 9) and a consensus score.
Its settings (K, T0, solver, steps, schedule, ...) are config/estimator.yaml's ``modes.<name>``;
keyword arguments override them and are checked against them. The registered names are the
estimator's modes. Initial candidates come from the SDE: ``prior_sampling`` at T0, or for
tracking its ``marginal_prob`` at T0 around the previous pose.

Modes
-----
``genpose``        K candidates from N(0, sigma(T0)^2), probability-flow ODE T0 -> eps, one
                   denoising step, ranking by the EnergyNet (rotation and translation separately;
                   ``ranking="random"`` or ``"none"`` for the ablations), keep the top fraction,
                   Markley quaternion average + mean translation.
``score_scaling``  the ODE with the score multiplied by a time-dependent factor (``SCHEDULES``),
                   1..K candidates, no energy network, plain average.
``regression``     the regression head only.
``tracking``       K candidates around the previous pose (noise sigma(T0), T0 = 0.15), the
                   score-scaled ODE, plain average.

ODE solvers (``SOLVERS``): ``euler`` and ``heun`` (fixed steps, uniform in t, i.e. geometric in
sigma) and ``rk45`` (adaptive Dormand-Prince of ``scipy.integrate.solve_ivp``, the reference).

Score scaling schedules (``SCHEDULES``), factor k(t) >= 1 multiplying the score:
``gaussian``     k(t) = (s^2 + sigma_t^2) / (s^2 / k + sigma_t^2): the exact score ratio for a
                 Gaussian mode of std ``s`` sharpened to p^k (variance s^2 / k). ~1 while
                 sigma_t >> s (the multi-modal exploration phase is untouched), -> k as
                 sigma_t -> 0 (samples pulled into the modes);
``exponential``  k(t) = 1 + (k - 1) exp(-(t - eps) / tau);
``none``         k(t) = 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from genpose_ros import geometry
from genpose_ros.config import sampler_settings
from genpose_ros.pose.nets import PoseNet
from genpose_ros.registry import Registry
from genpose_ros.pose.sde import VESDE

# ----------------------------------------------------------------------------- schedules

SCHEDULES = Registry("score-scaling schedule")
register_schedule = SCHEDULES.register


@register_schedule("none")
def _no_scaling(t: torch.Tensor | float, sde: VESDE) -> torch.Tensor | float:
    return torch.ones_like(t) if torch.is_tensor(t) else 1.0


@register_schedule("gaussian")
def gaussian_sharpening(t: torch.Tensor, sde: VESDE, *, k: float, s: float) -> torch.Tensor:
    """Score ratio of a Gaussian mode (std s) sharpened k times, under VE noise sigma(t)."""
    s2, sig2 = s * s, sde.sigma(t) ** 2
    return (s2 + sig2) / (s2 / k + sig2)


@register_schedule("exponential")
def exponential_scaling(t: torch.Tensor | float, sde: VESDE, *, k: float, tau: float) -> torch.Tensor | float:
    exp = torch.exp if torch.is_tensor(t) else math.exp
    return 1 + (k - 1) * exp(-(t - sde.eps) / tau)


def get_schedule(name: str) -> Callable:
    return SCHEDULES.lookup(name)


# ----------------------------------------------------------------------------- solvers

SOLVERS = Registry("ODE solver")
register_solver = SOLVERS.register


@register_solver("euler")
def euler_solve(drift: Callable, x: torch.Tensor, t0: float, t1: float, *, n_steps: int, **_) -> tuple[torch.Tensor, int]:
    """Fixed-step Euler. drift(x, t: float) -> dx/dt. Returns (x at t1, number of drift calls)."""
    ts = np.linspace(t0, t1, n_steps + 1)
    for a, b in zip(ts[:-1], ts[1:]):
        x = x + (b - a) * drift(x, float(a))
    return x, n_steps


@register_solver("heun")
def heun_solve(drift: Callable, x: torch.Tensor, t0: float, t1: float, *, n_steps: int, **_) -> tuple[torch.Tensor, int]:
    """Fixed-step Heun (2nd order, 2 drift calls per step)."""
    ts = np.linspace(t0, t1, n_steps + 1)
    for a, b in zip(ts[:-1], ts[1:]):
        h = b - a
        d1 = drift(x, float(a))
        xe = x + h * d1
        x = x + 0.5 * h * (d1 + drift(xe, float(b)))
    return x, 2 * n_steps


@register_solver("rk45")
def rk45_solve(drift: Callable, x: torch.Tensor, t0: float, t1: float, *, rtol: float, atol: float, **_) -> tuple[torch.Tensor, int]:
    """Adaptive Dormand-Prince RK45 (scipy) on the flattened batch, as GenPose's reference."""
    from scipy.integrate import solve_ivp

    shape, dtype, device = x.shape, x.dtype, x.device

    def fun(t, y):
        xt = torch.from_numpy(y).to(device=device, dtype=dtype).reshape(shape)
        return drift(xt, float(t)).reshape(-1).double().cpu().numpy()

    sol = solve_ivp(fun, (t0, t1), x.reshape(-1).double().cpu().numpy(), method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"RK45 solver failed: {sol.message}")
    return torch.from_numpy(sol.y[:, -1]).to(device=device, dtype=dtype).reshape(shape), int(sol.nfev)


def get_solver(name: str) -> Callable:
    return SOLVERS.lookup(name)


# ----------------------------------------------------------------------------- ODE sampling

ODE_KEYS = ("t0", "solver", "n_steps", "rtol", "atol", "schedule", "schedule_kwargs")


def ode_sample(model: PoseNet, sde: VESDE, cond: torch.Tensor, x_init: torch.Tensor, *, t0: float,
               solver: str, n_steps: int, rtol: float, atol: float, schedule: str,
               schedule_kwargs: dict, denoise: bool = True) -> tuple[torch.Tensor, int]:
    """Integrate the probability-flow ODE from t0 down to eps (settings: config/estimator.yaml).

    Args:
        cond: (B, F) conditioning features; x_init: (B, K, 9) poses at time t0.
    Returns:
        (B, K, 9) samples at eps (after one Tweedie denoising step if ``denoise``), drift calls.
    """
    if not sde.eps < t0 <= 1.0:
        raise ValueError(f"t0 must be in ({sde.eps}, 1], got {t0}")
    solve = get_solver(solver)
    scale_fn = get_schedule(schedule)
    skw = dict(schedule_kwargs or {})
    cproj = model.score.condition(cond)  # (B, 3, H) once per object
    B, K, _ = x_init.shape

    def score_fn(x: torch.Tensor, t: float) -> torch.Tensor:  # the per-step constants as floats
        tt = torch.full((B, K), t, device=x.device, dtype=x.dtype)
        return model.score(x, tt, sde.sigma(t), cproj) * float(scale_fn(t, sde, **skw))

    def drift(x: torch.Tensor, t: float) -> torch.Tensor:
        return sde.ode_drift(score_fn(x, t), t)

    x, nfe = solve(drift, x_init, t0, sde.eps, n_steps=n_steps, rtol=rtol, atol=atol)
    if denoise:
        x = x + sde.sigma(sde.eps) ** 2 * score_fn(x, sde.eps)
        nfe += 1
    return x, nfe


def _ode(settings: dict) -> dict:
    return {k: settings[k] for k in ODE_KEYS}


@dataclass
class Sample:
    pose: torch.Tensor  # (B, 9) final pose vectors (centroid-relative)
    hypotheses: torch.Tensor  # (B, K, 9)
    score: torch.Tensor  # (B,) consensus in (0, 1]
    nfe: int = 0  # network evaluations per candidate


def aggregate(hyp: torch.Tensor, keep_rot: torch.Tensor | None = None,
              keep_t: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Average candidate poses: rotations by Markley (weights = keep masks), translations by mean.

    hyp (B, K, 9); keep_* (B, K) {0, 1} float masks or None (all). Returns pose (B, 9), score (B,).
    The score is exp(-spread) of the kept candidates' y axes and translations (2 cm units),
    which is meaningful for symmetric categories too; in (0, 1] (the spread is capped at 80, where
    float32's exp would reach 0).
    """
    B, K, _ = hyp.shape
    ones = torch.ones(B, K, dtype=hyp.dtype, device=hyp.device)
    keep_rot = ones if keep_rot is None else keep_rot
    keep_t = ones if keep_t is None else keep_t
    R = geometry.rot6d_to_rotmat(hyp[..., :6])  # (B, K, 3, 3)
    R_avg = geometry.rotmat_average(R, keep_rot)  # (B, 3, 3)
    t_avg = (hyp[..., 6:] * keep_t[..., None]).sum(1) / keep_t.sum(1, keepdim=True)
    dy = (R[..., :, 1] - R_avg[:, None, :, 1]).norm(dim=-1)  # (B, K)
    dt = (hyp[..., 6:] - t_avg[:, None]).norm(dim=-1) / 0.02
    spread = (dy * keep_rot).sum(1) / keep_rot.sum(1) + (dt * keep_t).sum(1) / keep_t.sum(1)
    return geometry.pose_to_vec(R_avg, t_avg), torch.exp(-spread.clamp(max=80.0))


def _topk_mask(values: torch.Tensor, n_keep: int) -> torch.Tensor:
    """(B, K) -> (B, K) float mask of the n_keep largest per row."""
    idx = values.topk(n_keep, dim=1).indices
    return torch.zeros_like(values).scatter_(1, idx, 1.0)


# ----------------------------------------------------------------------------- samplers

SAMPLERS = Registry("sampling mode")
register_sampler = SAMPLERS.register


def get_sampler(name: str) -> Callable:
    return SAMPLERS.lookup(name)


RANKINGS = ("energy", "verifier", "random", "none")


def _verified_rotations(hyp: torch.Tensor, verify: Callable, near_deg: float, keep_ratio: float) -> torch.Tensor:
    """(B, K) mask of the rotations to average by the pose verifier: the candidates within
    ``near_deg`` of the one it rates best (one mode of the candidates), of those the
    ``keep_ratio`` it rates best."""
    err = verify(hyp)  # (B, K) predicted rotation errors, degrees
    R = geometry.rot6d_to_rotmat(hyp[..., :6])  # (B, K, 3, 3)
    best = R[torch.arange(len(R)), err.argmin(dim=1)]  # (B, 3, 3)
    cos = ((torch.einsum("bkij,bij->bk", R, best) - 1.0) / 2.0).clamp(-1.0, 1.0)
    near = torch.rad2deg(torch.arccos(cos)) <= near_deg  # always holds the best one
    n_keep = (keep_ratio * near.sum(1)).round().clamp_min(1)  # (B,)
    order = torch.where(near, err, torch.inf).argsort(dim=1).argsort(dim=1)  # rank of each candidate
    return (order < n_keep[:, None]).to(hyp.dtype)


@register_sampler("genpose")
def sample_genpose(model: PoseNet, sde: VESDE, cond: torch.Tensor, generator: torch.Generator | None = None,
                   verify: Callable | None = None, tracking: dict | None = None,
                   turnable: torch.Tensor | None = None, **settings) -> Sample:
    """GenPose: K candidates from the prior at T0, ODE, energy ranking, keep the top
    ``keep_ratio``, average. ``ranking="verifier"`` keeps the rotations by ``verify``
    (hypotheses (B, K, 9) -> predicted rotation errors (B, K), the estimator's pose verifier):
    those within ``verify_deg`` of the candidate it rates best, of those the top ``keep_ratio``;
    the translations still by the energy. With ``verify_turns`` > 1 the average's rotation is then
    turned about its y axis as score scaling's turn check does (``turn_check``), its translation
    kept. ``settings`` override config/estimator.yaml's ``modes.genpose``; ``tracking``: the
    tracking mode's settings for the turn check's polish (config/estimator.yaml's when None)."""
    s = sampler_settings("genpose", settings)
    if s["ranking"] not in RANKINGS:
        raise ValueError(f"unknown ranking {s['ranking']!r}; expected one of {RANKINGS}")
    B, K = cond.shape[0], int(s["num_candidates"])
    x0 = sde.prior_sampling((B, K, 9), s["t0"], generator, cond.device)
    hyp, nfe = ode_sample(model, sde, cond, x0, **_ode(s))
    n_keep = max(1, int(round(s["keep_ratio"] * K)))
    if s["ranking"] == "verifier" and verify is None:
        raise ValueError("ranking 'verifier' needs a pose verifier (config/estimator.yaml verifier.checkpoint); "
                         "ranking 'energy' works without one")
    if s["ranking"] in ("energy", "verifier"):
        tt = torch.full((B, K), sde.eps, device=cond.device)
        e = model.energy.energy(hyp, tt, sde.sigma(tt), model.energy.condition(cond))  # (B, K, 2)
        keep_t = _topk_mask(e[..., 1], n_keep)
        keep_rot = (_verified_rotations(hyp, verify, s["verify_deg"], s["keep_ratio"]) if s["ranking"] == "verifier"
                    else _topk_mask(e[..., 0], n_keep))
    elif s["ranking"] == "random":
        r = torch.rand(B, K, generator=generator, device=cond.device)
        keep_rot = keep_t = _topk_mask(r, n_keep)
    else:
        keep_rot = keep_t = None
    pose, score = aggregate(hyp, keep_rot, keep_t)
    if s["verify_turns"] > 1:  # the turn check moves the rotation; the energy-ranked translation stays
        turned, nfe = turn_check(model, sde, cond, pose, nfe, verify, s, generator, tracking, turnable)
        pose = torch.cat([turned[:, :6], pose[:, 6:]], dim=1)
    return Sample(pose, hyp, score, nfe)


def _about_y(pose: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Poses (B, 9) turned about their own y axis by each of ``angles`` (n,) -> (B, n, 9)."""
    R, t = geometry.vec_to_pose(pose)
    Rk = torch.einsum("bij,kjl->bkil", R, geometry.axis_rotation(angles.to(pose.dtype), 1))  # (B, n, 3, 3)
    return geometry.pose_to_vec(Rk, t[:, None].expand(-1, len(angles), 3))


def best_turn(pose: torch.Tensor, verify: Callable, turns: int, refine: int = 0) -> torch.Tensor:
    """Poses (B, 9) turned about their own y axis by each of ``turns`` equal steps of 360 deg
    (the first is no turn): the turn the verifier rates best, per object; then ``refine`` times
    the best of it and its half steps either side (36 turns, refine 1: a 5 deg grid)."""
    rows = torch.arange(len(pose), device=pose.device)
    step = 2 * torch.pi / turns
    cand = _about_y(pose, torch.arange(turns, device=pose.device, dtype=pose.dtype) * step)  # (B, turns, 9)
    err, pick = verify(cand).min(dim=1)
    best = cand[rows, pick]
    for _ in range(refine):  # the best so far keeps its rating; only its neighbours are rated
        step = step / 2
        cand = torch.cat([best[:, None], _about_y(best, torch.tensor([-step, step], device=pose.device,
                                                                     dtype=pose.dtype))], dim=1)
        err, pick = torch.cat([err[:, None], verify(cand[:, 1:])], dim=1).min(dim=1)
        best = cand[rows, pick]
    return best


TILT_DIRECTIONS = 8  # the tilt check's axes in the object's xz plane


def best_tilt(R: torch.Tensor, rate: Callable, deg: float, margin_deg: float = 0.0) -> torch.Tensor:
    """Rotations R (B, 3, 3) with their up (y) axis tilted by ``deg`` and twice that about each
    of ``TILT_DIRECTIONS`` axes in the object's xz plane: the tilt ``rate`` (rotations (B, M,
    3, 3) -> errors (B, M), the pose verifier) rates best replaces R where it is rated
    ``margin_deg`` better than R itself. A single sample's up axis scatters a few degrees more
    than the average of GenPose's candidates (bowls most)."""
    dirs = torch.arange(TILT_DIRECTIONS, device=R.device, dtype=R.dtype) * (2 * torch.pi / TILT_DIRECTIONS)
    axes = torch.stack([torch.cos(dirs), torch.zeros_like(dirs), torch.sin(dirs)], dim=-1)  # (D, 3)
    half = torch.deg2rad(torch.tensor([deg, 2 * deg], device=R.device, dtype=R.dtype))[:, None, None] / 2
    quat = torch.cat([torch.sin(half) * axes, torch.cos(half).expand(-1, TILT_DIRECTIONS, 1)], dim=-1)  # XYZW
    tilts = torch.cat([torch.eye(3, device=R.device, dtype=R.dtype)[None],
                       geometry.quat_to_rotmat(quat.reshape(-1, 4))])  # (1 + 2 D, 3, 3): the first is none
    cand = R[:, None] @ tilts[None]  # (B, 1 + 2 D, 3, 3)
    err = rate(cand)
    best = err.argmin(dim=1)
    rows = torch.arange(len(R), device=R.device)
    better = err[rows, best] < err[:, 0] - margin_deg
    return torch.where(better[:, None, None], cand[rows, best], R)


def _turned(pose: torch.Tensor, verify: Callable | None, turns: int, refine: int = 0,
            turnable: torch.Tensor | None = None) -> torch.Tensor:
    """``best_turn`` of the poses (B, 9) when ``turns`` > 1 (settings ``verify_turns``,
    ``verify_refine``), else the poses; a turn check without a verifier raises ValueError.
    ``turnable`` (B,) bool: only those rows are turned (``verify(hyp, rows)`` rates a subset);
    a turn of an object symmetric about its y axis changes nothing the verifier could tell."""
    if turns <= 1:
        return pose
    if verify is None:
        raise ValueError(f"verify_turns {turns} needs a pose verifier (config/estimator.yaml "
                         "verifier.checkpoint); 0 switches the turn check off")
    if turnable is None:
        return best_turn(pose, verify, int(turns), int(refine))
    rows = torch.nonzero(turnable)[:, 0]
    if len(rows) == 0:
        return pose
    out = pose.clone()
    out[rows] = best_turn(pose[rows], lambda hyp: verify(hyp, rows), int(turns), int(refine))
    return out


def turn_check(model: PoseNet, sde: VESDE, cond: torch.Tensor, pose: torch.Tensor, nfe: int,
               verify: Callable | None, s: dict, generator: torch.Generator | None,
               tracking: dict | None = None, turnable: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """With ``verify_turns`` > 1 (settings ``s``): ``best_turn`` of the poses (B, 9) (of the
    ``turnable`` rows, ``_turned``) and, with ``polish`` > 0, a warm-started sample of all of
    them from there as the tracking mode runs it (its settings ``tracking``,
    config/estimator.yaml's when None), with ``polish`` candidates averaged.
    Returns the poses and the network evaluations per candidate."""
    if s["verify_turns"] <= 1:
        return pose, nfe
    pose = _turned(pose, verify, s["verify_turns"], s["verify_refine"], turnable)
    if s["polish"] > 0:
        polished = sample_tracking(model, sde, cond, prev=pose, generator=generator,
                                   **{**(tracking or {}), "num_candidates": int(s["polish"]), "verify_turns": 0})
        pose, nfe = polished.pose, nfe + polished.nfe
    return pose, nfe


@register_sampler("score_scaling")
def sample_score_scaling(model: PoseNet, sde: VESDE, cond: torch.Tensor, generator: torch.Generator | None = None,
                         verify: Callable | None = None, tracking: dict | None = None,
                         turnable: torch.Tensor | None = None, **settings) -> Sample:
    """Score-scaled ODE, 1..K candidates from the prior at T0, plain average (no energy
    network). With ``verify`` (the estimator's pose verifier) and ``verify_turns`` > 1, the
    average is turned about its y axis to the best of ``verify_turns`` turns the verifier rates
    (``best_turn``) and, with ``polish`` > 0, sampled once more from there with the tracking mode's
    warm start (``polish`` candidates, averaged; ``tracking``: that mode's settings,
    config/estimator.yaml's when None). ``settings`` override config/estimator.yaml's
    ``modes.score_scaling``."""
    s = sampler_settings("score_scaling", settings)
    B, K = cond.shape[0], int(s["num_candidates"])
    x0 = sde.prior_sampling((B, K, 9), s["t0"], generator, cond.device)
    hyp, nfe = ode_sample(model, sde, cond, x0, **_ode(s))
    pose, score = aggregate(hyp)
    pose, nfe = turn_check(model, sde, cond, pose, nfe, verify, s, generator, tracking, turnable)
    return Sample(pose, hyp, score, nfe)


@register_sampler("regression")
def sample_regression(model: PoseNet, sde: VESDE, cond: torch.Tensor, generator: torch.Generator | None = None,
                      **settings) -> Sample:
    """The regression head alone (one pass, no ODE)."""
    sampler_settings("regression", settings)  # it has none: rejects any
    p = model.regress(cond)
    R = geometry.rot6d_to_rotmat(p[:, :6])
    pose = geometry.pose_to_vec(R, p[:, 6:])
    return Sample(pose, pose[:, None], torch.ones(p.shape[0], device=p.device), 0)


@register_sampler("tracking")
def sample_tracking(model: PoseNet, sde: VESDE, cond: torch.Tensor, prev: torch.Tensor | None = None,
                    generator: torch.Generator | None = None, verify: Callable | None = None,
                    turnable: torch.Tensor | None = None, **settings) -> Sample:
    """Warm start: K candidates drawn from the SDE's marginal at T0 around the previous pose
    (B, 9, centroid-relative), score-scaled ODE, plain average. ``settings`` override
    config/estimator.yaml's ``modes.tracking``."""
    if prev is None:
        raise ValueError("tracking mode needs the previous poses (prev_poses)")
    if prev.shape != (cond.shape[0], 9):
        raise ValueError(f"tracking: previous poses must be ({cond.shape[0]}, 9), got {tuple(prev.shape)}")
    s = sampler_settings("tracking", settings)
    prev = _turned(prev, verify, s["verify_turns"], s["verify_refine"], turnable)  # turned as the verifier rates best
    B, K = cond.shape[0], int(s["num_candidates"])
    mean, std = sde.marginal_prob(prev[:, None, :].expand(B, K, 9), torch.tensor(s["t0"]))
    x0 = mean + std * torch.randn(B, K, 9, generator=generator, device=cond.device)
    hyp, nfe = ode_sample(model, sde, cond, x0, **_ode(s))
    pose, score = aggregate(hyp)
    return Sample(pose, hyp, score, nfe)
