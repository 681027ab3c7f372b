"""``genpose train``: train the pose estimator (score, energy, regression and size heads).

Schedules (config/train.yaml, ``stages``), each stage a fraction of ``--steps``:

- ``joint`` (default): regression pre-training (encoder + regression head) -> joint regression +
  denoising score matching (encoder + both heads) -> energy (frozen encoder) -> size (frozen encoder);
- ``genpose``: GenPose's end-to-end score training (encoder + ScoreNet) -> energy -> size.

Launch::

    genpose train --data data/synth/train --val data/synth/val --out runs/joint            # one GPU / CPU
    genpose train --data data/synth/train --out runs/joint --resume runs/joint/last.pt     # resume
    torchrun --standalone --nproc_per_node=4 -m genpose_ros.pose.train \\
        --data data/synth/train --out runs/joint                                           # 4 GPUs (DDP)
    genpose train --task segmentation --data data/synth/train --out runs/seg               # Mask R-CNN
    genpose train --task size --data data/synth/train --val data/synth/val --out runs/size # SizeNet

DDP is detected from RANK / LOCAL_RANK / WORLD_SIZE; only rank 0 logs, evaluates and saves.
Outputs in ``--out``: ``model.pt`` (EMA weights, what the estimator loads), ``last.pt`` (resume),
``log.jsonl`` (losses and validation per step), ``tb/`` (TensorBoard scalars).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from genpose_ros.arguments import add_threads, apply_threads, non_negative_int, positive_float, positive_int
from genpose_ros.pose.pool import PointPool


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=["pose", "segmentation", "size"], default="pose",
                   help="pose model, Mask R-CNN segmenter, or the size network (config/size_net.yaml)")
    p.add_argument("--data", required=True, nargs="+",
                   help="training split folder(s) (NOCS layout written by `genpose data generate`)")
    p.add_argument("--val", default=None, nargs="+", help="validation split (default: no validation curve)")
    p.add_argument("--cache", default=None,
                   help="point-pool cache file (.pt): depth/mask images are read once, then reused")
    p.add_argument("--out", required=True, help="output folder (checkpoints, logs)")
    p.add_argument("--config", default=None,
                   help="training config YAML (default: config/train.yaml; --task size: config/size_net.yaml)")
    p.add_argument("--schedule", choices=["joint", "genpose"], default=None, help="stage schedule")
    p.add_argument("--steps", type=positive_int, default=None, help="total optimisation steps over all stages")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--lr", type=positive_float, default=None)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", default=None, help="last.pt of an earlier run")
    p.add_argument("--encoder", choices=["light", "genpose"], default=None, help="encoder size")
    p.add_argument("--eval-every", type=positive_int, default=None, help="validation interval (steps)")
    p.add_argument("--workers", type=non_negative_int, default=0, help="DataLoader worker processes")
    p.add_argument("--init", default=None,
                   help="segmentation: start from these weights (a Mask R-CNN checkpoint, or coco)")
    add_threads(p)


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    if args.task == "segmentation":
        from genpose_ros.segmentation.train import train_main

        return train_main(args)
    if args.task == "size":
        from genpose_ros.pose.size_train import train_main

        return train_main(args)
    return train_pose(args)


# ----------------------------------------------------------------------------- config

# keys of config/train.yaml whose values are not checked against its types
FREE_KEYS = ("model.encoder", "stages")
POSITIVE_KEYS = ("steps", "batch_size", "lr", "warmup", "lr_final_ratio", "grad_clip", "n_noise", "log_every",
                 "eval_every", "save_every", "val_instances", "val_steps", "pool_points", "dsm_t_max")


def resolve_config(args) -> dict:
    """config/train.yaml, with ``--config`` checked against it (unknown keys and wrong types are
    rejected before any data or model loads) and merged over it, then the command-line flags."""
    from genpose_ros.config import checked, find_config, load_config, require_positive
    from genpose_ros.pose.pointnet2 import GENPOSE_ENCODER, LIGHT_ENCODER

    defaults = load_config(find_config("train.yaml"))
    cfg = checked(load_config(args.config), defaults, args.config, FREE_KEYS) if args.config else defaults
    require_positive(cfg, POSITIVE_KEYS, args.config or "config/train.yaml")
    for key, val in [("schedule", args.schedule), ("steps", args.steps), ("batch_size", args.batch_size),
                     ("lr", args.lr), ("eval_every", args.eval_every)]:
        if val is not None:
            cfg[key] = val
    model = dict(cfg["model"])
    if args.encoder:
        model["encoder"] = args.encoder
    if isinstance(model["encoder"], str):
        presets = {"light": LIGHT_ENCODER, "genpose": GENPOSE_ENCODER}
        if model["encoder"] not in presets:
            raise ValueError(f"unknown encoder preset {model['encoder']!r}; expected {sorted(presets)}")
        if model["encoder"] == "genpose":
            model["n_points"] = 1024
        model["encoder"] = presets[model["encoder"]]
    from genpose_ros import CATEGORIES

    model.setdefault("categories", list(CATEGORIES))
    cfg["model"] = model
    if cfg["schedule"] not in cfg["stages"]:
        raise ValueError(f"unknown schedule {cfg['schedule']!r}; config defines {sorted(cfg['stages'])}")
    return cfg


def stage_plan(cfg: dict) -> list[tuple[str, int]]:
    """[(stage name, steps)] of the schedule; steps are fractions of cfg['steps']."""
    plan = [(name, max(1, int(round(frac * cfg["steps"])))) for name, frac in cfg["stages"][cfg["schedule"]]]
    for name, _ in plan:
        if name not in STAGE_PARAMS:
            raise ValueError(f"unknown training stage {name!r}; available: {sorted(STAGE_PARAMS)}")
    return plan


def locate(plan: list[tuple[str, int]], step: int) -> tuple[int, int]:
    """Global step -> (stage index, step within that stage); (len(plan), 0) when past the end."""
    for i, (_, n) in enumerate(plan):
        if step < n:
            return i, step
        step -= n
    return len(plan), 0


# which sub-modules each stage trains (the rest is frozen and runs without gradients)
STAGE_PARAMS = {
    "regression": ("encoder", "cat_embed", "regression"),
    "joint": ("encoder", "cat_embed", "regression", "score"),
    "score": ("encoder", "cat_embed", "score"),
    "energy": ("energy",),
    "size": ("size_head",),
}


# ----------------------------------------------------------------------------- the loss of one step

def make_stage_module(model, sde, stage: str, cfg: dict):
    """An nn.Module whose forward(batch) returns (loss, logs) for ``stage`` (DDP wraps this)."""
    import torch
    import torch.nn as nn

    from genpose_ros.pose import losses

    dsm_score = losses.get_dsm_loss_fn(sde, "score", cfg["n_noise"], cfg.get("dsm_t_max", 1.0))
    dsm_energy = losses.get_dsm_loss_fn(sde, "energy", cfg["n_noise"], cfg.get("dsm_t_max", 1.0))
    train_encoder = "encoder" in STAGE_PARAMS[stage]

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pts, cat, p0, size):
            # pts (B, N, 3) centred, cat (B,), p0 (B, 9) centroid-relative pose, size (B, 3)
            if train_encoder:
                cond = self.model.encode(pts, cat)
            else:
                self.model.encoder.eval()
                with torch.no_grad():
                    cond = self.model.encode(pts, cat)
            logs = {}
            loss = torch.zeros((), device=pts.device)
            if stage in ("regression", "joint"):
                logs["loss_reg"] = losses.regression_loss(self.model.regress(cond), p0)
                loss = loss + cfg["w_reg"] * logs["loss_reg"]
            if stage in ("joint", "score"):
                logs["loss_score"] = dsm_score(self.model, cond, p0)
                loss = loss + logs["loss_score"]
            if stage == "energy":
                logs["loss_energy"] = dsm_energy(self.model, cond, p0)
                loss = loss + logs["loss_energy"]
            if stage == "size":
                logs["loss_size"] = losses.size_loss(self.model.predict_size(cond, cat), size)
                loss = loss + logs["loss_size"]
            return loss, {k: float(v.detach()) for k, v in logs.items()}

    return Step()


def to_batch(batch: dict, device):
    """Dataset batch -> centred points, categories, 9-D poses (centroid-relative), sizes."""
    from genpose_ros import geometry

    pts = batch["points"].to(device).float()
    pts, centroid = geometry.normalize_points(pts)
    p0 = geometry.normalize_pose(batch["R"].to(device).float(), batch["t"].to(device).float(), centroid)
    return pts, batch["category"].to(device).long(), p0, batch["size"].to(device).float()


# ----------------------------------------------------------------------------- validation

def validate(model, sde, val_batches: list, cfg: dict) -> dict:
    """Fraction of validation instances within 5deg2cm / 10deg5cm for the diffusion sampler
    (single-sample score scaling, fixed steps) and for the regression head."""
    import torch

    from genpose_ros import CATEGORIES, geometry
    from genpose_ros.evaluation import metrics
    from genpose_ros.pose import sampling

    model.eval()
    out = {}
    for mode in ("score_scaling", "regression"):
        hits52 = hits105 = n = 0
        gen = torch.Generator(device="cpu").manual_seed(0)
        for batch in val_batches:
            pts, cat, p0, _ = to_batch(batch, next(model.parameters()).device)
            with torch.no_grad():
                cond = model.encode(pts, cat)
                steps = {"n_steps": cfg["val_steps"]} if mode == "score_scaling" else {}
                s = sampling.get_sampler(mode)(model, sde, cond, generator=gen, **steps)
            R_pred, t_pred = geometry.vec_to_pose(s.pose.cpu())
            R_gt, t_gt = geometry.vec_to_pose(p0.cpu())
            for i in range(len(cat)):
                re = metrics.rotation_error_deg(R_pred[i].numpy(), R_gt[i].numpy(), CATEGORIES[int(cat[i])],
                                                bool(batch["handle_visible"][i]))
                te = metrics.translation_error_cm(t_pred[i].numpy(), t_gt[i].numpy())
                hits52 += (re <= 5 and te <= 2)
                hits105 += (re <= 10 and te <= 5)
                n += 1
        tag = "val_diffusion" if mode == "score_scaling" else "val_regression"
        out[f"{tag}_5deg2cm"] = 100.0 * hits52 / max(n, 1)
        out[f"{tag}_10deg5cm"] = 100.0 * hits105 / max(n, 1)
    model.train()
    return out


# ----------------------------------------------------------------------------- the loop

def train_pose(args) -> int:
    from genpose_ros.data.dataset import InstanceDataset

    cfg = resolve_config(args)
    mc = cfg["model"]
    train_set = PointPool.build(InstanceDataset(args.data, n_points=cfg["pool_points"], augment=False, seed=args.seed),
                                mc["n_points"], cache=args.cache, seed=args.seed)
    val_set = InstanceDataset(args.val, n_points=mc["n_points"], augment=False, seed=0) if args.val else None
    return fit(cfg, train_set, val_set, Path(args.out), device=args.device, seed=args.seed,
               resume=args.resume, workers=args.workers)


def fit(cfg: dict, train_set, val_set, out: Path, device: str = "auto", seed: int = 0,
        resume: str | None = None, workers: int = 0) -> int:
    """The training loop: ``cfg`` from ``resolve_config``; datasets yield InstanceDataset items."""
    import copy

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.data import DataLoader, DistributedSampler
    from tqdm import tqdm

    from genpose_ros.pose import checkpoint as ckpt_io
    from genpose_ros.pose.nets import PoseNet
    from genpose_ros.pose.sde import get_sde

    # -- DDP / device
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if ddp:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        rank, local_rank, world = dist.get_rank(), int(os.environ["LOCAL_RANK"]), dist.get_world_size()
        device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    else:
        rank, world = 0, 1
        device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    master = rank == 0
    torch.manual_seed(seed + rank)
    out = Path(out)
    if master:
        out.mkdir(parents=True, exist_ok=True)

    # -- data
    mc = cfg["model"]
    if len(train_set) == 0:
        raise ValueError("no training instances found (empty training set)")
    sampler = DistributedSampler(train_set, seed=seed) if ddp else None
    loader = DataLoader(train_set, batch_size=cfg["batch_size"], shuffle=sampler is None, sampler=sampler,
                        num_workers=workers, drop_last=len(train_set) >= cfg["batch_size"],
                        persistent_workers=workers > 0)
    val_batches = []
    if val_set is not None and master:
        n_val = min(len(val_set), cfg["val_instances"])
        items = [val_set[i] for i in range(n_val)]
        bs = 64
        val_batches = [torch.utils.data.default_collate(items[i:i + bs]) for i in range(0, n_val, bs)]

    def batches():
        epoch = 0
        while True:
            if sampler is not None:
                sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    # -- model, EMA, resume
    sde = get_sde("ve", **cfg["sde"])
    model = PoseNet(mc).to(device)
    ema = copy.deepcopy(model).eval()
    plan = stage_plan(cfg)
    start_stage, start_step, step = 0, 0, 0
    resume_opt = None
    if resume:  # continue at the global step of the file, in this run's plan (it may be longer)
        ck = ckpt_io.load_checkpoint(resume, map_location=device)
        model.load_state_dict(ckpt_io.build_model(ck, resume, "raw_model").state_dict())
        ema.load_state_dict(ck["model"])
        step = ck["step"]
        start_stage, start_step = locate(plan, step)
        if start_stage < len(plan) and ck.get("stage_name") == plan[start_stage][0]:
            resume_opt = ck.get("optimizer")
    tb = log_file = None
    if master:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(out / "tb"))
        log_file = open(out / "log.jsonl", "a")
        print(f"training {cfg['schedule']} schedule on {device} ({world} process(es)): "
              f"{', '.join(f'{n} {s}' for n, s in plan)} steps; {len(train_set)} instances; "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters", flush=True)

    def log(record: dict):
        if not master:
            return
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
        for k, v in record.items():
            if k not in ("step", "stage") and isinstance(v, (int, float)):
                tb.add_scalar(k, v, record["step"])

    def save(name: str, stage_idx: int, stage_step: int, optimizer=None):
        if not master:
            return
        extra = {"stage": stage_idx, "stage_step": stage_step, "raw_model": model.state_dict(),
                 "stage_name": plan[stage_idx][0] if stage_idx < len(plan) else "done"}
        if optimizer is not None:
            extra["optimizer"] = optimizer.state_dict()
        ckpt_io.save_checkpoint(out / name, ema.state_dict(), mc, step, cfg, **extra)

    t_start = time.time()
    data_iter = batches()
    for stage_idx, (stage, n_steps) in enumerate(plan):
        if stage_idx < start_stage:
            continue
        trainable = STAGE_PARAMS[stage]
        for name, p in model.named_parameters():
            p.requires_grad_(name.split(".")[0] in trainable)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=cfg["lr"])
        first = stage_step0 = start_step if stage_idx == start_stage else 0
        if first and resume_opt is not None:
            optimizer.load_state_dict(resume_opt)
        if stage == "size" and first == 0:
            set_size_prior(model, data_iter, device)
            ema.size_prior.copy_(model.size_prior)
        step_module = make_stage_module(model, sde, stage, cfg)
        runner = DDP(step_module, find_unused_parameters=True) if ddp else step_module
        warmup, decay = cfg["warmup"], cfg["lr_final_ratio"] ** (1.0 / max(1, n_steps))
        model.train()
        bar = tqdm(range(stage_step0, n_steps), desc=f"{stage}", disable=not master, mininterval=5)
        for stage_step in bar:
            # lr: linear warm-up, then exponential decay to lr_final_ratio * lr at the end of the stage
            lr = cfg["lr"] * min(1.0, (stage_step + 1) / warmup) * decay ** stage_step
            for g in optimizer.param_groups:
                g["lr"] = lr
            pts, cat, p0, size = to_batch(next(data_iter), device)  # (B, N, 3) (B,) (B, 9) (B, 3)
            loss, logs = runner(pts, cat, p0, size)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
            optimizer.step()
            # EMA restarted per stage with a warm-up (frozen parts stay identical)
            d = min(cfg["ema"], (1 + stage_step) / (10 + stage_step))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    if pm.requires_grad:
                        pe.lerp_(pm, 1 - d)
                for be, bm in zip(ema.buffers(), model.buffers()):
                    be.copy_(bm)
            step += 1
            if master and (step % cfg["log_every"] == 0 or stage_step == n_steps - 1):
                bar.set_postfix(loss=f"{float(loss):.4f}")
                log({"step": step, "stage": stage, "lr": lr, "loss": float(loss), "grad_norm": float(grad_norm),
                     "elapsed_s": time.time() - t_start, **logs})
            if master and val_batches and stage in ("regression", "joint", "score") and (
                    step % cfg["eval_every"] == 0 or stage_step == n_steps - 1):
                log({"step": step, "stage": stage, "elapsed_s": time.time() - t_start,
                     **validate(ema, sde, val_batches, cfg)})
            if step % cfg["save_every"] == 0:
                save("last.pt", stage_idx, stage_step + 1, optimizer)
        save("last.pt", stage_idx + 1, 0)
    if master:
        ckpt_io.save_checkpoint(out / "model.pt", ema.state_dict(), mc, step, cfg,
                                wall_time_s=time.time() - t_start)
        print(f"done: {step} steps in {time.time() - t_start:.0f} s -> {out / 'model.pt'}", flush=True)
        tb.close()
        log_file.close()
    if ddp:
        dist.destroy_process_group()
    return 0


def set_size_prior(model, data_iter, device, n_batches: int = 10) -> None:
    """Per-category mean box size from a few training batches (the size head predicts a log-ratio)."""
    import torch

    n_cat = model.size_prior.shape[0]
    total = torch.zeros(n_cat, 3, device=device)
    count = torch.zeros(n_cat, device=device)
    for _ in range(n_batches):
        b = next(data_iter)
        cat, size = b["category"].to(device).long(), b["size"].to(device).float()
        total.index_add_(0, cat, size)
        count.index_add_(0, cat, torch.ones_like(cat, dtype=torch.float))
    seen = count > 0
    with torch.no_grad():
        model.size_prior[seen] = total[seen] / count[seen, None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genpose train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
