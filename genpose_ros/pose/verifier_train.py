"""``genpose train --task verifier``: train the pose verifier (``genpose_ros.pose.verifier``).

    genpose train --task verifier --data data/synth/train --val data/synth/val --out runs/verifier \\
        --cache runs/pool_train.pt --threads 1
    cp runs/verifier/verifier.pt models/verifier.pt

Items come from ``genpose_ros.data.pool.PointPool`` like the SizeNet's (``size_train``: the same
box deformation and loop). Each instance is seen under its ground-truth pose turned by a random
rotation error drawn from a mixture (``augment`` in config/verifier.yaml), shaped like the
candidates a sampler returns: small errors about a random axis, a turn of any angle about the
object's up axis on top of a small error (the mistake camera, laptop and mug candidates make),
and uniformly random rotations; plus a translation error. The target is the rotation error as
the metrics count it (the up axis' error alone where the turn about it is not observable).
Loss: L1 of log(1 + error / 5 deg), which weighs the errors that decide 5deg / 10deg most.
Writes ``verifier.pt`` (best validation loss) and ``log.jsonl`` into ``--out``.
"""
from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path

import torch

from genpose_ros import CATEGORIES
from genpose_ros.pose.size_train import (deformed_instances, fit_points_net, initial_net, noisy_frame,
                                         random_rotation, resolve_config, run_training, yaw_rotation)

LOSS_SCALE_DEG = 5.0


def error_deg(dR: torch.Tensor, spin: torch.Tensor) -> torch.Tensor:
    """Rotation errors (B, 3, 3) -> degrees (B,): the full angle, or the up (y) axis' angle where
    ``spin``."""
    cos_full = (dR.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    cos = torch.where(spin, dR[:, 1, 1], cos_full)
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


@functools.cache
def box_rotations() -> torch.Tensor:
    """The 24 rotations of a box onto itself up to its side lengths (signed permutation matrices
    of determinant 1), the identity first: (24, 3, 3); built once (callers must not modify it)."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            M = torch.zeros(3, 3)
            M[range(3), perm] = torch.tensor(signs)
            if torch.det(M) > 0:
                mats.append(M)
    return torch.stack(mats)


def rotation_errors(B: int, g: torch.Generator, aug: dict) -> torch.Tensor:
    """(B, 3, 3) errors R_est = R dR from the mixture of ``aug``: ``p_yaw`` a turn of any angle
    about y times a small error, ``p_uniform`` a uniformly random rotation, ``p_box`` (of the
    rest) one of the 23 turns of a box onto its own faces times a small error, the rest a small
    error (angle |N(0, small_deg)| about a random axis)."""
    axis = torch.nn.functional.normalize(torch.randn(B, 3, generator=g), dim=-1)
    small = random_rotation(axis * torch.randn(B, 1, generator=g).abs() * math.radians(aug["small_deg"]))
    yaw = yaw_rotation((2 * torch.rand(B, generator=g) - 1) * math.pi)
    q = torch.nn.functional.normalize(torch.randn(B, 4, generator=g), dim=-1)  # uniform on SO(3)
    from scipy.spatial.transform import Rotation
    uniform = torch.from_numpy(Rotation.from_quat(q.double().numpy()).as_matrix()).float()
    u = torch.rand(B, generator=g)
    dR = torch.where((u < aug["p_yaw"])[:, None, None], torch.bmm(yaw, small), small)
    if aug.get("p_box", 0.0) > 0:
        box = box_rotations()[torch.randint(1, 24, (B,), generator=g)]
        use = torch.rand(B, generator=g) < aug["p_box"]
        dR = torch.where(use[:, None, None], torch.bmm(box, small), dR)
    return torch.where((u > 1 - aug["p_uniform"])[:, None, None], uniform, dR)


def make_batch(pool: dict, idx: torch.Tensor, n_points: int, g: torch.Generator, aug: dict):
    """Augmented batch -> (points in a wrong frame (B, N, 3), category (B,), its rotation error (B,) deg).
    With the pose model's candidates in the pool (``pose_candidates``), a share ``p_candidates``
    of the batch takes one of its instance's candidate errors instead of a drawn one."""
    B = len(idx)
    local, R, _, cat, spin = deformed_instances(pool, idx, n_points, g, aug)
    dR = rotation_errors(B, g, aug)
    dt = torch.randn(B, 3, generator=g) * aug["trans_sigma_m"]
    if aug.get("p_candidates", 0.0) > 0 and "cand_dR" in pool:
        k = torch.randint(pool["cand_dR"].shape[1], (B,), generator=g)
        use = torch.rand(B, generator=g) < aug["p_candidates"]
        dR = torch.where(use[:, None, None], pool["cand_dR"][idx, k], dR)
        dt = torch.where(use[:, None], pool["cand_dt"][idx, k], dt)
    local, _ = noisy_frame(local, R, dR, dt)
    local = local + torch.randn(local.shape, generator=g) * aug["jitter_m"]
    return local, cat, error_deg(dR, spin)


def verifier_loss(net, local, cat, err) -> torch.Tensor:
    """Mean |log(1 + pred / 5) - log(1 + err / 5)| (degrees)."""
    pred = net(local, cat)
    return (torch.log1p(pred / LOSS_SCALE_DEG) - torch.log1p(err / LOSS_SCALE_DEG)).abs().mean()


def train_verifier(pool: dict, val_pool: dict | None, out: Path, cfg: dict, seed: int = 0,
                   progress: bool = True, init: str | None = None) -> dict:
    """Fit a PoseVerifier on a point pool (``cfg``: config/verifier.yaml; ``init``: a verifier
    checkpoint to start from)."""
    from genpose_ros.pose.verifier import VERIFIER_FORMAT, PoseVerifier, load_verifier

    torch.manual_seed(seed)
    net, cfg = initial_net(PoseVerifier, load_verifier, cfg, init)
    return fit_points_net(net, pool, val_pool, make_batch, verifier_loss,
                          out / "verifier.pt", cfg, VERIFIER_FORMAT, "verifier", seed, progress)


@torch.no_grad()
def pose_candidates(pool: dict, checkpoint: str, cache: str | None = None, batch: int = 48,
                    progress: bool = True) -> dict:
    """The errors of a pose model's GenPose candidates (K of config/estimator.yaml, energy
    ranking) for every pool instance: {"cand_dR": (N, K, 3, 3) R^T R_est, "cand_dt": (N, K, 3)
    t_est - t}; read from / written to ``cache`` when given."""
    from tqdm import tqdm

    from genpose_ros.pose.estimator import PoseEstimator

    n = len(pool["points"])
    if cache and Path(cache).is_file():
        found = torch.load(cache, weights_only=True)
        if found["cand_dR"].shape[0] == n:
            return found
    est = PoseEstimator.from_checkpoint(checkpoint)
    names = [CATEGORIES[int(c)] for c in pool["category"]]
    dR, dt = [], []
    for s in tqdm(range(0, n, batch), desc="pose candidates", disable=not progress, mininterval=5):
        e = est.estimate(pool["points"][s:s + batch].numpy(), names[s:s + batch], mode="genpose",
                         return_hypotheses=True, ranking="energy", verify_turns=0)
        H = torch.from_numpy(e.hypotheses).float()  # (b, K, 4, 4)
        dR.append(torch.einsum("bji,bkjl->bkil", pool["R"][s:s + batch], H[..., :3, :3]))
        dt.append(H[..., :3, 3] - pool["t"][s:s + batch, None])
    out = {"cand_dR": torch.cat(dR), "cand_dt": torch.cat(dt)}
    if cache:
        torch.save(out, cache)
    return out


def train_main(args) -> int:
    """Entry of ``genpose train --task verifier`` (the flags of ``--task size``; default config
    config/verifier.yaml). ``--candidates`` (a pose checkpoint): its candidates' errors join the
    drawn ones (``augment.p_candidates``)."""
    from genpose_ros.pose.checkpoint import load_checkpoint
    from genpose_ros.pose.verifier import load_verifier

    cfg = resolve_config(args, "verifier.yaml")
    train = train_verifier
    if args.candidates:
        load_checkpoint(args.candidates)  # missing, corrupt or not a pose model: one line, before the data

        def train(pool, val_pool, out, cfg, seed=0, init=None):
            cache = None
            if args.cache:  # named by the pose checkpoint's content: a replaced file is not reused
                import hashlib

                digest = hashlib.sha1(Path(args.candidates).read_bytes()).hexdigest()[:12]
                cache = f"{args.cache}.candidates-{digest}.pt"
            pool = {**pool, **pose_candidates(pool, args.candidates, cache)}
            if val_pool is not None:  # validated on the same mixture
                val_pool = {**val_pool, **pose_candidates(val_pool, args.candidates)}
            return train_verifier(pool, val_pool, out, cfg, seed, init=init)
    elif cfg["augment"].get("p_candidates", 0.0) > 0:
        raise ValueError("augment.p_candidates > 0 needs --candidates <pose checkpoint>")
    return run_training(args, cfg, train, load_verifier, "verifier", "verifier.pt", "mean |log(1 + rotation error / 5 deg)| error")
