"""``genpose train --task size``: train the SizeNet (``genpose_ros.pose.size_net``).

    genpose train --task size --data data/synth/train --val data/synth/val --out runs/size \\
        --cache runs/pool_train.pt --steps 3000 --threads 1
    cp runs/size/size_net.pt models/size_net.pt

Items come from ``genpose_ros.data.pool.PointPool`` (every instance's points read once). Each step
draws ``n_points`` of an instance's points and augments it on the fly (``augment`` in config/size_net.yaml):
a per-axis box deformation (x and z tied for the categories round about y) that widens the
size range, a random pose error (rotation about a random axis, translation) so the net
tolerates the pose estimator's mistakes, a free spin about y where the pose cannot tell it
(symmetric categories, mugs with a hidden handle), and point jitter. Loss: L1 of log sizes, plus
with ``model.centre`` the L1 error of the box centre in the noisy frame relative to the box.
Writes ``size_net.pt`` (best validation loss; validation on a fixed noisy draw of ``--val``)
and ``log.jsonl`` into ``--out``.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from genpose_ros import CATEGORIES
from genpose_ros.data.dataset import ROUND_CATEGORIES
from genpose_ros.evaluation.metrics import SYMMETRIC_CATEGORIES

ROUND = torch.tensor([c in ROUND_CATEGORIES for c in CATEGORIES])  # x and z scale together
SPIN = torch.tensor([c in SYMMETRIC_CATEGORIES for c in CATEGORIES])  # yaw not observable


def random_rotation(axis_angle: torch.Tensor) -> torch.Tensor:
    """(B, 3) axis-angle vectors -> (B, 3, 3) rotation matrices."""
    from scipy.spatial.transform import Rotation
    return torch.from_numpy(Rotation.from_rotvec(axis_angle.double().numpy()).as_matrix()).float()


def deformed_instances(pool: dict, idx: torch.Tensor, n_points: int, g: torch.Generator, aug: dict):
    """``n_points`` random points of the instances ``idx`` in their ground-truth object frame, the
    box stretched per axis by a log-uniform factor in ``aug["box_scale"]`` (x and z tied for round
    categories), the mask outline eroded as ``dataset.outline_keep`` does with ``aug``'s optional
    ``p_outline`` / ``outline_px`` -> (points (B, N, 3), R (B, 3, 3), size (B, 3), category (B,),
    spin (B,): True where the turn about y cannot be observed)."""
    from genpose_ros.data.dataset import outline_keep
    from genpose_ros.data.pool import pick_points

    B = len(idx)
    keep = outline_keep(pool["margins"][idx], g, aug) if "margins" in pool else None
    pts = pick_points(pool["points"][idx], n_points, g, keep)  # (B, n_points, 3) camera frame
    R, t, size, cat = pool["R"][idx], pool["t"][idx], pool["size"][idx], pool["category"][idx]
    lo, hi = aug["box_scale"]
    s = lo * (hi / lo) ** torch.rand(B, 3, generator=g)  # log-uniform per-axis scale
    s[:, 2] = torch.where(ROUND[cat], s[:, 0], s[:, 2])
    local = torch.bmm(pts - t[:, None], R) * s[:, None]
    spin = SPIN[cat] | ((cat == CATEGORIES.index("mug")) & ~pool["handle_visible"][idx].bool())
    return local, R, size * s, cat, spin


def noisy_frame(local: torch.Tensor, R: torch.Tensor, dR: torch.Tensor, dt: torch.Tensor):
    """Object-frame points (B, N, 3) as seen in the estimate R_est = R dR, t_est = t + dt (dt in
    the camera frame) -> (points in the estimated frame, where the true box centre lies in it (B, 3))."""
    shift = torch.bmm(dt[:, None], R)  # (B, 1, 3) the translation error in the object frame
    return torch.bmm(local - shift, dR), torch.bmm(-shift, dR)[:, 0]


def yaw_rotation(yaw: torch.Tensor) -> torch.Tensor:
    """(B,) angles -> (B, 3, 3) turns about the object's y axis."""
    zeros = torch.zeros_like(yaw)
    return random_rotation(torch.stack([zeros, yaw, zeros], -1))


def make_batch(pool: dict, idx: torch.Tensor, n_points: int, g: torch.Generator, aug: dict):
    """Augmented batch -> (object-frame points under a noisy pose (B, N, 3), category (B,), size
    (B, 3), box centre in the noisy frame (B, 3))."""
    B = len(idx)
    local, R, size, cat, spin = deformed_instances(pool, idx, n_points, g, aug)
    # the pose the estimator might return: R_est = R dR, t_est = t + dt
    axis = torch.nn.functional.normalize(torch.randn(B, 3, generator=g), dim=-1)
    angle = torch.randn(B, 1, generator=g).abs() * math.radians(aug["rot_sigma_deg"])
    yaw = torch.rand(B, generator=g) * 2 * math.pi * spin
    dR = torch.bmm(random_rotation(axis * angle), yaw_rotation(yaw))
    dt = torch.randn(B, 3, generator=g) * aug["trans_sigma_m"]
    local, centre = noisy_frame(local, R, dR, dt)
    local = local + torch.randn(local.shape, generator=g) * aug["jitter_m"]
    return local, cat, size, centre


def size_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, 3) metres -> mean |log(pred / target)| (relative error, symmetric in over / under)."""
    return (torch.log(pred) - torch.log(target)).abs().mean()


def box_loss(net, local, cat, size, centre) -> torch.Tensor:
    """``size_loss`` plus, for a net with the centre output, the centre's L1 error relative to
    the true box edges."""
    pred_size, pred_centre = net.box(local, cat)
    loss = size_loss(pred_size, size)
    if net.centre:
        loss = loss + ((pred_centre - centre).abs() / size).mean()
    return loss


def train_size(pool: dict, val_pool: dict | None, out: Path, cfg: dict, seed: int = 0,
               progress: bool = True, init: str | None = None) -> dict:
    """Fit a SizeNet on a point pool (``cfg``: config/size_net.yaml; ``init``: a SizeNet
    checkpoint to start from). Returns {"best_val": .., "steps": .., "seconds": ..}."""
    from genpose_ros.pose.size_net import SIZE_FORMAT, SizeNet, load_size_net

    torch.manual_seed(seed)
    net, cfg = initial_net(SizeNet, load_size_net, cfg, init)
    return fit_points_net(net, pool, val_pool, make_batch, box_loss, out / "size_net.pt",
                          cfg, SIZE_FORMAT, "size net", seed, progress)


def initial_net(model_cls, load, cfg: dict, init: str | None) -> tuple:
    """(net, cfg): a fresh ``model_cls`` of ``cfg["model"]``, or with ``init`` the checkpoint's
    network (its architecture and weights) in training mode and a copy of ``cfg`` with the
    checkpoint's ``n_points``."""
    if init is None:
        net = model_cls({"categories": list(CATEGORIES), "n_points": cfg["n_points"], **cfg["model"]})
        return net, cfg
    net = load(init).train()
    if list(net.categories) != list(CATEGORIES):
        raise ValueError(f"--init {init}: its categories {net.categories} are not {list(CATEGORIES)}")
    return net, {**cfg, "n_points": int(net.config.get("n_points", cfg["n_points"]))}


def fit_points_net(net, pool: dict, val_pool: dict | None, batch_fn, loss_fn, path: Path, cfg: dict,
                   fmt: str, desc: str, seed: int = 0, progress: bool = True) -> dict:
    """The training loop of the small point networks (SizeNet, verifier): Adam with exponential
    decay, ``batch_fn(pool, idx, n_points, generator, cfg["augment"])`` batches, ``loss_fn(net,
    *batch)``, validation on one fixed draw of ``val_pool``; the best checkpoint (format ``fmt``)
    goes to ``path``, ``log.jsonl`` beside it; ``cfg["deadline"]`` (optional, a ``time.time()``)
    ends the loop early, after a last validation. Returns {"best_val", "steps", "seconds"}."""
    from tqdm import tqdm

    from genpose_ros.pose.checkpoint import save_checkpoint

    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: cfg["lr_final_ratio"] ** (k / cfg["steps"]))
    val = None
    if val_pool is not None:
        vg = torch.Generator().manual_seed(12345)
        clean = {**cfg["augment"], "p_outline": 0.0}  # validated on whole masks
        val = batch_fn(val_pool, torch.arange(len(val_pool["points"])), cfg["n_points"], vg, clean)
    n, best, t0 = len(pool["points"]), math.inf, time.time()
    log = open(path.parent / "log.jsonl", "w")
    deadline = cfg.pop("deadline", math.inf)
    for step in tqdm(range(1, cfg["steps"] + 1), desc=desc, disable=not progress, mininterval=5):
        batch = batch_fn(pool, torch.randint(n, (cfg["batch_size"],), generator=g), cfg["n_points"], g,
                         cfg["augment"])
        loss = loss_fn(net, *batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        out_of_time = time.time() > deadline
        if step % cfg["eval_every"] == 0 or step == cfg["steps"] or out_of_time:
            rec = {"step": step, "loss": float(loss.detach()), "seconds": round(time.time() - t0, 1)}
            if val is not None:
                with torch.no_grad():
                    rec["val_loss"] = float(loss_fn(net, *val))
            log.write(json.dumps(rec) + "\n")
            log.flush()
            score = rec.get("val_loss", rec["loss"])
            if score < best:
                best = score
                save_checkpoint(path, net.state_dict(), net.config, step, cfg, fmt=fmt)
        if out_of_time:
            print(f"{desc}: time budget reached after {step} of {cfg['steps']} steps", flush=True)
            break
    log.close()
    return {"best_val": best, "steps": step, "seconds": time.time() - t0}


POSITIVE_KEYS = ("steps", "batch_size", "lr", "lr_final_ratio", "n_points", "eval_every")


def resolve_config(args, name: str = "size_net.yaml") -> dict:
    """config/``name`` (config/size_net.yaml, or config/verifier.yaml for the verifier), with
    ``--config`` checked against it (unknown keys and wrong types are rejected before any data
    loads) and merged over it, then the command-line flags."""
    from genpose_ros.config import ConfigError, require_positive, task_config
    from genpose_ros.data.dataset import check_outline

    cfg, where = task_config(name, args.config)
    require_positive(cfg, POSITIVE_KEYS, where)
    lo_hi = cfg["augment"]["box_scale"]
    if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
        raise ConfigError(f"{where}: augment.box_scale must be [low, high] with 0 < low <= high, got {lo_hi}")
    check_outline(cfg["augment"], where)
    if not 0.5 < cfg["model"]["quantile"] <= 1:
        raise ConfigError(f"{where}: model.quantile must be in (0.5, 1], got {cfg['model']['quantile']}")
    for key in ("steps", "batch_size", "lr", "eval_every"):
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)
    if getattr(args, "time_budget", None):  # --time-budget counts from here, reading included (as the pose training's)
        cfg["deadline"] = time.time() + args.time_budget
    return cfg


def train_main(args) -> int:
    """Entry of ``genpose train --task size`` (flags --data --val --cache --out --config (default
    config/size_net.yaml) --steps --batch-size --lr --eval-every --seed; --threads is applied by the
    caller)."""
    from genpose_ros.pose.size_net import load_size_net

    return run_training(args, resolve_config(args), train_size, load_size_net, "size net", "size_net.pt",
                        "mean |log size error|")


def run_training(args, cfg: dict, train, load, label: str, name: str, what: str) -> int:
    """Read ``--data`` (and ``--val``) into point pools once and ``train(pool, val_pool, out, cfg,
    seed, init)`` (``--init``: the weights to fine-tune, read by ``load``, which checks them before
    the data are read) a small point network (the SizeNet, the verifier); prints one line with its
    result."""
    from genpose_ros.data.dataset import InstanceDataset
    from genpose_ros.data.pool import PointPool

    if args.init:  # a missing, corrupt or foreign file: one line now, not after minutes of reading
        load(args.init)

    def pool_of(folders, cache):  # every instance once: the pool's tensors (CPU)
        return PointPool.from_dataset(InstanceDataset(folders, n_points=1024, seed=args.seed), cache=cache).data

    pool = pool_of(args.data, args.cache)
    val_pool = pool_of(args.val, None) if args.val else None
    res = train(pool, val_pool, Path(args.out), cfg, seed=args.seed, init=args.init)
    print(f"{label}: {res['steps']} steps in {res['seconds']:.0f} s, best {what} "
          f"{res['best_val']:.4f}; wrote {Path(args.out) / name}")
    return 0
