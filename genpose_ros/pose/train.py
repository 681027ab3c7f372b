"""``genpose train``: train the pose estimator (score, energy, regression and size heads).

Schedules (config/train.yaml, ``stages``), each stage a fraction of ``--steps`` (and, with
``--time-budget``, the same fraction of the time left once the data is ready):

- ``genpose`` (default): GenPose's end-to-end score training (encoder + ScoreNet) -> energy ->
  regression head -> size (the last three on the frozen encoder);
- ``joint``: regression pre-training (encoder + regression head) -> joint regression + denoising
  score matching (encoder + both heads) -> energy (frozen encoder) -> size (frozen encoder).

At equal compute on a CPU the end-to-end schedule converged faster (docs/bench.md, "Convergence
at equal compute"), hence the default.

Launch::

    genpose train --data data/synth/train --val data/synth/val --out runs/joint            # one GPU / CPU
    genpose train --data data/synth/train --out runs/joint --resume runs/joint/last.pt     # resume
    genpose train --stream-workers 12 --time-budget 420 --val data/synth/val --out runs/s  # rendered on the fly
    torchrun --standalone --nproc_per_node=4 -m genpose_ros.pose.train \\
        --data data/synth/train --out runs/joint                                           # 4 GPUs (DDP)
    genpose train --task segmentation --data data/synth/train --out runs/seg               # Mask R-CNN
    genpose train --task size --data data/synth/train --val data/synth/val --out runs/size # SizeNet
    genpose train --task verifier --data data/synth/train --val data/synth/val --out runs/v # verifier
    genpose train --task category --init models/genpose_light.pt --data data/synth/train \
        --val data/synth/val --out runs/category                                           # category head

Data: every instance of ``--data`` is read once into a ``PointPool`` on the training device;
``--stream-workers N`` adds N render processes (``genpose_ros.data.stream.FrameStream``) whose
fresh instances replace the oldest ones of the pool (``pool_size``) at every step; without
``--data`` training starts once ``stream_min_instances`` have been rendered. Batches are drawn
and augmented on the device. ``--time-budget`` counts from the start, reading and render warm-up
included; when it is spent the run stops and saves ``model.pt`` and ``last.pt``. ``amp: auto``
runs the encoder under bf16 autocast on CUDA (heads and losses stay float32).

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

from genpose_ros.arguments import add_device, add_threads, apply_threads, non_negative_int, positive_float, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=["pose", "segmentation", "size", "verifier", "category"], default="pose",
                   help="pose model, Mask R-CNN segmenter, the size network (config/size_net.yaml), "
                        "the pose verifier (config/verifier.yaml) or the category head of the pose model "
                        "named by --init (config/category.yaml)")
    p.add_argument("--data", default=None, nargs="+",
                   help="training split folder(s) (NOCS layout written by `genpose data generate`)")
    p.add_argument("--val", default=None, nargs="+", help="validation split (default: no validation curve)")
    p.add_argument("--cache", default=None,
                   help="point-pool cache file (.pt): depth/mask images are read once, then reused")
    p.add_argument("--out", required=True, help="output folder (checkpoints, logs)")
    p.add_argument("--config", default=None,
                   help="training config YAML (default: config/train.yaml; --task size: config/size_net.yaml; "
                        "--task verifier: config/verifier.yaml; --task category: config/category.yaml)")
    p.add_argument("--schedule", choices=["joint", "genpose"], default=None, help="stage schedule")
    p.add_argument("--steps", type=positive_int, default=None, help="total optimisation steps over all stages")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--lr", type=positive_float, default=None)
    add_device(p, default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", default=None, help="last.pt of an earlier run")
    p.add_argument("--encoder", choices=["light", "genpose"], default=None, help="encoder size")
    p.add_argument("--eval-every", type=positive_int, default=None, help="validation interval (steps)")
    p.add_argument("--workers", type=non_negative_int, default=0,
                   help="data-loading processes (pose: reading --data into the point pool once)")
    p.add_argument("--init", default=None,
                   help="start from these weights with a fresh schedule (fine-tuning): a pose checkpoint "
                        "(its model config is kept), for segmentation a Mask R-CNN checkpoint or coco, for size / "
                        "verifier a SizeNet / verifier checkpoint (its network and n_points are kept)")
    p.add_argument("--candidates", default=None, metavar="POSE_CHECKPOINT",
                   help="--task verifier: also learn from this pose model's own candidates on --data "
                        "(config augment.p_candidates)")
    add_threads(p)
    p.add_argument("--time-budget", type=positive_float, default=None, metavar="SECONDS",
                   help="stop (and save) after this many seconds, data reading and render warm-up included")
    p.add_argument("--stream-workers", type=non_negative_int, default=0, metavar="N",
                   help="render processes streaming fresh scenes into training (pose and segmentation)")
    p.add_argument("--stream-mix", default=None, metavar="NAME=SHARE,...",
                   help="distributions the streamed scenes draw from, e.g. standard=0.5,wide=0.3,tilted=0.1,"
                        "close=0.1 (pose default: config stream_mix; segmentation: standard)")


def run(args: argparse.Namespace) -> int:
    apply_threads(args)
    if args.candidates and args.task != "verifier":
        raise ValueError("--candidates serves --task verifier")
    if args.task == "segmentation" and not args.data and not args.stream_workers:
        raise ValueError("--task segmentation trains on --data (rendered split folders) "
                         "and/or --stream-workers N (render while training)")
    if args.task in ("size", "verifier") and (not args.data or args.stream_workers):
        raise ValueError(f"--task {args.task} trains on --data (a rendered split); "
                         "--stream-workers serves the pose task")
    if args.stream_mix:
        if not args.stream_workers:
            raise ValueError("--stream-mix chooses what the render workers stream: give --stream-workers N too")
        from genpose_ros.data.families import mixture

        try:
            mixture(args.stream_mix)
        except ValueError as exc:
            raise ValueError(f"--stream-mix: {exc}") from None
    if args.task == "pose" and not args.data and not args.stream_workers:
        raise ValueError("give --data (rendered split folders) and/or --stream-workers N (render while training)")
    check_inputs(args)
    if args.task == "segmentation":
        from genpose_ros.segmentation.train import train_main
    elif args.task == "size":
        from genpose_ros.pose.size_train import train_main
    elif args.task == "verifier":
        from genpose_ros.pose.verifier_train import train_main
    elif args.task == "category":
        from genpose_ros.pose.category import train_main
    else:
        train_main = train_pose
    return train_main(args)


def check_inputs(args: argparse.Namespace) -> None:
    """The folders and files a run will read, before it reads or trains anything: a typo in
    ``--val`` is one line now, not after the training data are read (or after the training)."""
    from genpose_ros.data.nocs_io import list_frames

    for folder in [*(args.data or []), *(args.val or [])]:
        if not list_frames(folder, labelled=True):
            raise ValueError(f"no frames (*_color.png) under {folder}")
    for flag in ("init", "resume", "candidates"):
        path = getattr(args, flag, None)
        if path and path != "coco" and not Path(path).is_file():
            raise FileNotFoundError(f"--{flag} {path}: no such file")


# ----------------------------------------------------------------------------- config

# keys of config/train.yaml whose values are not checked against its types
FREE_KEYS = ("model.encoder", "stages", "stream_mix")
POSITIVE_KEYS = ("steps", "batch_size", "lr", "warmup", "lr_final_ratio", "grad_clip", "n_noise", "log_every",
                 "eval_every", "save_every", "val_instances", "val_steps", "pool_points", "dsm_t_max",
                 "pool_size", "stream_min_instances")


def resolve_config(args) -> dict:
    """config/train.yaml, with ``--config`` checked against it (unknown keys and wrong types are
    rejected before any data or model loads) and merged over it, then the command-line flags."""
    from genpose_ros.config import ConfigError, require_positive, task_config
    from genpose_ros.data.dataset import check_outline
    from genpose_ros.pose.pointnet2 import GENPOSE_ENCODER, LIGHT_ENCODER

    cfg, where = task_config("train.yaml", args.config, FREE_KEYS)
    require_positive(cfg, POSITIVE_KEYS, where)
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
    if cfg["amp"] not in ("auto", "bf16", "off"):
        raise ValueError(f"amp must be auto, bf16 or off, got {cfg['amp']!r}")
    weights = cfg["category_weights"]
    if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise ConfigError(f"{where}: category_weights must be >= 0 and not all 0, "
                          f"got {weights}")
    check_outline(cfg["augment"], where)
    from genpose_ros.data.families import mixture

    try:
        cfg["stream_mix"] = mixture(getattr(args, "stream_mix", None) or cfg["stream_mix"])
    except ValueError as exc:
        raise ConfigError(f"{where}: stream_mix: {exc}") from None
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
    "regression_head": ("regression",),
    "size": ("size_head",),
}


# ----------------------------------------------------------------------------- batches

def to_batch(batch: dict, device):
    """Pool batch -> centred points, categories, 9-D poses (centroid-relative), sizes."""
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
    device = next(model.parameters()).device
    out = {}
    for mode in ("score_scaling", "regression"):
        hits52 = hits105 = n = 0
        gen = torch.Generator(device=device).manual_seed(0)  # the samplers draw on the model's device
        for batch in val_batches:
            pts, cat, p0, _ = to_batch(batch, device)
            with torch.no_grad():
                cond = model.encode(pts, cat)
                steps = {"n_steps": cfg["val_steps"], "verify_turns": 0} if mode == "score_scaling" else {}
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
    """The training loop, top to bottom: device / DDP, data, model and resume, then the stages."""
    import copy

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from tqdm import tqdm

    from genpose_ros import CATEGORIES
    from genpose_ros.data.dataset import InstanceDataset
    from genpose_ros.data.families import mix_text
    from genpose_ros.data.stream import TimeBudget
    from genpose_ros.pose import checkpoint as ckpt_io
    from genpose_ros.pose.losses import StageLoss
    from genpose_ros.pose.nets import PoseNet
    from genpose_ros.pose.sde import get_sde

    budget = TimeBudget(args.time_budget)  # counts from here: reading and render warm-up included
    cfg = resolve_config(args)
    init = None
    if args.init:  # fine-tuning: the checkpoint's architecture and weights, this run's schedule
        if args.resume:
            raise ValueError("give --init (fresh schedule from these weights) or --resume, not both")
        init = ckpt_io.load_checkpoint(args.init)
        cfg["model"] = init["model_config"]
    mc = cfg["model"]
    plan = stage_plan(cfg)

    # -- device / DDP (torchrun sets RANK, LOCAL_RANK, WORLD_SIZE)
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device, rank, world = setup_device(args.device, ddp)
    master = rank == 0
    torch.manual_seed(args.seed + rank)
    gen = torch.Generator(device=device).manual_seed(args.seed + rank)  # batches and augmentation
    amp = cfg["amp"] == "bf16" or (cfg["amp"] == "auto" and device.type == "cuda")
    out = Path(args.out)
    if master:
        out.mkdir(parents=True, exist_ok=True)

    # -- data: the point pool on the device, filled from --data and/or refreshed by render workers
    pool, stream = build_pool(cfg, args, device, rank, budget)
    draw_weights = torch.tensor([cfg["category_weights"][c] for c in CATEGORIES], device=device)
    val_batches = []
    if args.val and master:
        val_set = InstanceDataset(args.val, n_points=mc["n_points"], augment=False, seed=0)
        items = [val_set[i] for i in range(min(len(val_set), cfg["val_instances"]))]
        val_batches = [torch.utils.data.default_collate(items[i:i + 64]) for i in range(0, len(items), 64)]

    # -- model, EMA, resume
    sde = get_sde("ve", **cfg["sde"])
    model = PoseNet(mc).to(device)
    ema = copy.deepcopy(model).eval()
    step, start_stage, start_step, resume_opt = 0, 0, 0, None
    if init is not None:
        weights = ckpt_io.build_model(init, args.init).state_dict()
        model.load_state_dict(weights)
        ema.load_state_dict(weights)
    if args.resume:
        ck = ckpt_io.load_checkpoint(args.resume, map_location=device)
        model.load_state_dict(ckpt_io.build_model(ck, args.resume, "raw_model").state_dict())
        ema.load_state_dict(ck["model"])
        step = ck["step"]
        start_stage, start_step = resume_position(ck, plan)
        if start_stage < len(plan) and ck.get("stage_name") == plan[start_stage][0]:
            resume_opt = ck.get("optimizer")
    log = RunLog(out if master else None)
    log.print(f"training {cfg['schedule']} schedule on {device} ({world} process(es)"
              f"{', bf16 encoder' if amp else ''}): {', '.join(f'{n} {s}' for n, s in plan)} steps; "
              f"{len(pool)} instances in the pool"
              f"{f' + {args.stream_workers} render workers ({mix_text(stream.mix)})' if stream else ''}; "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters"
              + (f"; {budget.remaining:.0f} s of the time budget left" if args.time_budget else ""))

    # -- the stages; with a time budget each gets its fraction of the time left now
    deadlines = stage_deadlines(cfg, plan, start_stage, budget)
    t_start = time.time()
    try:
        for stage_idx, (stage, n_steps) in enumerate(plan):
            if stage_idx < start_stage:
                continue
            trainable = STAGE_PARAMS[stage]
            for name, p in model.named_parameters():
                p.requires_grad_(name.split(".")[0] in trainable)
            params = [p for p in model.parameters() if p.requires_grad]
            ema_params = [pe for pe, pm in zip(ema.parameters(), model.parameters()) if pm.requires_grad]
            optimizer = torch.optim.Adam(params, lr=cfg["lr"])
            first = start_step if stage_idx == start_stage else 0
            if first and resume_opt is not None:
                optimizer.load_state_dict(resume_opt)
            if stage == "size" and first == 0:  # the size head predicts a log-ratio to the category mean
                mean, seen = pool.mean_size(model.size_prior.shape[0])
                model.size_prior[seen] = mean[seen]
                ema.size_prior.copy_(model.size_prior)
            loss_fn = StageLoss(model, sde, stage, cfg["n_noise"], cfg.get("dsm_t_max", 1.0), cfg["w_reg"],
                                train_encoder="encoder" in trainable, amp=amp)
            runner = DDP(loss_fn, find_unused_parameters=True) if ddp else loss_fn
            t_stage, stage_time = budget.elapsed, max(1e-6, deadlines[stage_idx] - budget.elapsed)
            model.train()
            bar = tqdm(range(first, n_steps), desc=stage, disable=not master, mininterval=5)
            for stage_step in bar:
                if stream is not None:
                    pool.add(stream.poll())  # fresh instances replace the oldest ones
                # lr: linear warm-up, then exponential decay to lr_final_ratio * lr at the stage's end
                progress = max(stage_step / n_steps, (budget.elapsed - t_stage) / stage_time)
                lr = cfg["lr"] * min(1.0, (stage_step + 1) / cfg["warmup"]) * cfg["lr_final_ratio"] ** progress
                for g in optimizer.param_groups:
                    g["lr"] = lr
                batch = pool.sample(cfg["batch_size"], mc["n_points"], gen, augment_cfg=cfg.get("augment"),
                                    category_weights=draw_weights)
                pts, cat, p0, size = to_batch(batch, device)  # (B, N, 3) (B,) (B, 9) (B, 3)
                loss, terms = runner(pts, cat, p0, size)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
                optimizer.step()
                # EMA restarted per stage with a warm-up (frozen parts stay identical)
                d = min(cfg["ema"], (1 + stage_step) / (10 + stage_step))
                with torch.no_grad():
                    torch._foreach_lerp_(ema_params, params, 1 - d)  # one fused update on the GPU
                    for be, bm in zip(ema.buffers(), model.buffers()):
                        be.copy_(bm)
                step += 1
                if master and (step % cfg["log_every"] == 0 or stage_step == n_steps - 1):
                    loss_value = float(loss.detach())
                    bar.set_postfix(loss=f"{loss_value:.4f}")
                    log.write({"step": step, "stage": stage, "lr": lr, "loss": loss_value,
                               "grad_norm": float(grad_norm), "elapsed_s": time.time() - t_start,
                               "pool_added": pool.added, **{k: float(v) for k, v in terms.items()}})
                if master and val_batches and stage in POSE_STAGES and step % cfg["eval_every"] == 0:
                    log.write({"step": step, "stage": stage, "elapsed_s": time.time() - t_start,
                               **validate(ema, sde, val_batches, cfg)})
                if master and step % cfg["save_every"] == 0:
                    save_run(out / "last.pt", ema, model, cfg, step, plan, stage_idx, stage_step + 1, optimizer)
                if budget.seconds and out_of_time(budget.elapsed >= deadlines[stage_idx], ddp, device):
                    break
            bar.close()
            if master and val_batches and stage in POSE_STAGES and step % cfg["eval_every"] != 0:
                log.write({"step": step, "stage": stage, "elapsed_s": time.time() - t_start,
                           **validate(ema, sde, val_batches, cfg)})
            if master:
                save_run(out / "last.pt", ema, model, cfg, step, plan, stage_idx + 1, 0)
    finally:
        if stream is not None:
            stream.close()
    if master:
        ckpt_io.save_checkpoint(out / "model.pt", ema.state_dict(), mc, step, cfg,
                                wall_time_s=time.time() - t_start)
        log.print(f"done: {step} steps in {time.time() - t_start:.0f} s -> {out / 'model.pt'}"
                  + (f" (time budget {args.time_budget:.0f} s, {budget.elapsed:.0f} s used)"
                     if args.time_budget else ""))
    log.close()
    if ddp:
        dist.destroy_process_group()
    return 0


POSE_STAGES = ("regression", "joint", "score", "regression_head")  # stages with a validation curve


def setup_device(device: str, ddp: bool):
    """-> (torch.device, rank, world size); starts the process group under DDP (NCCL on GPUs,
    gloo on CPUs)."""
    import torch
    import torch.distributed as dist

    if ddp:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        dev = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    else:
        rank, world = 0, 1
        dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    if dev.type == "cuda" and dev.index is None:   # torch.cuda.set_device needs an index
        dev = torch.device("cuda", torch.cuda.current_device())
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.set_float32_matmul_precision("high")  # TF32 matrix products (convolutions use it by default)
    return dev, rank, world


def build_pool(cfg: dict, args, device, rank: int, budget):
    """-> (PointPool on ``device``, FrameStream or None). ``--data`` is read once (``--cache``);
    ``--stream-workers`` starts the render processes and, without ``--data``, waits for
    ``stream_min_instances`` (within the time budget)."""
    import functools

    from genpose_ros.data.dataset import InstanceDataset
    from genpose_ros.data.pool import PointPool
    from genpose_ros.data.stream import FrameStream, frame_instances

    capacity = cfg["pool_size"] if args.stream_workers else 0
    pool = stream = None
    if args.data:
        dataset = InstanceDataset(args.data, n_points=cfg["pool_points"], augment=False, seed=args.seed)
        pool = PointPool.from_dataset(dataset, capacity, args.cache, args.workers, device)
    if args.stream_workers:
        stream = FrameStream(args.stream_workers, seed=args.seed * 1024 + rank, distribution=cfg["stream_mix"],
                             transform=functools.partial(frame_instances, n_points=cfg["pool_points"]))
        pool = pool or PointPool(capacity, cfg["pool_points"], device)
        need = min(cfg["stream_min_instances"], capacity)
        while len(pool) < need and not budget.spent:
            pool.add([stream.get(timeout=max(1.0, min(600.0, budget.remaining)))])
        if len(pool) == 0:
            stream.close()
            raise RuntimeError("the time budget was spent before any instance was rendered")
    return pool, stream


def stage_deadlines(cfg: dict, plan: list, start_stage: int, budget) -> list[float]:
    """Budget time (``budget.elapsed`` scale) at which each stage ends: the time left now, shared
    in proportion to the stages' fractions; all infinite without a budget."""
    fracs = [frac for _, frac in cfg["stages"][cfg["schedule"]]]
    if budget.seconds is None:
        return [float("inf")] * len(plan)
    now, left = budget.elapsed, budget.remaining
    total = sum(fracs[start_stage:])
    deadlines, acc = [], 0.0
    for i, frac in enumerate(fracs):
        acc += frac if i >= start_stage else 0.0
        deadlines.append(now + left * acc / total)
    return deadlines


def out_of_time(local: bool, ddp: bool, device) -> bool:
    """Whether to end the stage; under DDP every rank stops when any rank is out of time."""
    if not ddp:
        return local
    import torch
    import torch.distributed as dist

    flag = torch.tensor(float(local), device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def resume_position(ck: dict, plan: list) -> tuple[int, int]:
    """(stage index, step in stage) to continue at: where the file left off when its stage is the
    same stage of this plan, else its global step placed in this (possibly longer) plan."""
    idx = ck.get("stage", -1)
    if 0 <= idx < len(plan) and ck.get("stage_name") == plan[idx][0]:
        return idx, min(ck.get("stage_step", 0), plan[idx][1])
    return locate(plan, ck["step"])


def save_run(path: Path, ema, model, cfg: dict, step: int, plan: list, stage_idx: int, stage_step: int,
             optimizer=None) -> None:
    """The resume file: EMA weights (what the estimator loads), raw weights, position, optimizer."""
    from genpose_ros.pose import checkpoint as ckpt_io

    extra = {"stage": stage_idx, "stage_step": stage_step, "raw_model": model.state_dict(),
             "stage_name": plan[stage_idx][0] if stage_idx < len(plan) else "done"}
    if optimizer is not None:
        extra["optimizer"] = optimizer.state_dict()
    ckpt_io.save_checkpoint(path, ema.state_dict(), cfg["model"], step, cfg, **extra)


class RunLog:
    """``log.jsonl`` + TensorBoard scalars in ``out`` (``None``: a rank that does not log)."""

    def __init__(self, out: Path | None):
        self.file = self.tb = None
        if out is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))
            self.file = open(out / "log.jsonl", "a")

    def write(self, record: dict) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for k, v in record.items():
            if k not in ("step", "stage") and isinstance(v, (int, float)):
                self.tb.add_scalar(k, v, record["step"])

    def print(self, text: str) -> None:
        if self.file is not None:
            print(text, flush=True)

    def close(self) -> None:
        if self.file is not None:
            self.tb.close()
            self.file.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genpose train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
