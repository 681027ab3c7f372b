"""Training of the light Mask R-CNN on NOCS-layout RGB (``genpose train --task segmentation``).

    genpose train --task segmentation --data data/synth/train --out runs/seg \\
        --steps 20000 --batch-size 4 --lr 1e-3 --device cpu
    genpose train --task segmentation ... --resume runs/seg/maskrcnn_train_state.pt

Writes ``<out>/maskrcnn_light.pt`` (fp16 weights + config, what the node loads) and
``<out>/maskrcnn_train_state.pt`` (fp32 weights, optimizer, step: for ``--resume``); when
``--out`` ends in ``.pt`` that is the weights file and the state file sits beside it.
Training images are downscaled once to the largest training size, jittered in colour and
flipped left-right; the network picks one of ``train_min_sizes`` per step (multi-scale).
"""
from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from genpose_ros.data.stream import TimeBudget
from genpose_ros.segmentation.data import SegmentationDataset, streamed_samples
from genpose_ros.segmentation.model import (TINY_CONFIG, CheckpointError, SegmenterConfig,
                                            build_model, load_checkpoint, save_checkpoint,
                                            set_test_size, transfer_weights)
from genpose_ros.segmentation.targets import list_frames


def _collate(batch):
    return [b[0] for b in batch], [b[1] for b in batch]


def _lr_factor(step: int, warmup: int, progress: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 5 % of the base rate as
    ``progress`` (fraction of the run done, by steps or by time) goes from 0 to 1."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def output_paths(out: str | Path) -> tuple[Path, Path]:
    """``--out`` -> (weights file, training-state file)."""
    out = Path(out)
    if out.suffix == ".pt":
        return out, out.with_name(out.stem + ".state.pt")
    return out / "maskrcnn_light.pt", out / "maskrcnn_train_state.pt"


def train(frames, out: str | Path, steps: int, batch_size: int = 4, lr: float = 1e-3,
          device: str = "cpu", seed: int = 0, resume: str | Path | None = None,
          cfg: SegmenterConfig = SegmenterConfig(), save_every: int = 500,
          log_every: int = 50, progress: bool = True, time_budget_s: float | None = None,
          init: str | Path | None = None, workers: int = 0, keep_snapshots: bool = False,
          stream_workers: int = 0, stream_mix: str | dict = "standard") -> Path:
    """Train (or continue training) on ``frames``; returns the weights file path.

    ``stream_workers``: render processes that stream freshly rendered, randomised frames into
    training (``genpose_ros.data.stream.FrameStream``, as the pose training uses); with
    ``frames`` too, each batch takes half of its frames from each; ``stream_mix``: the
    distributions they draw from (``genpose_ros.data.families.mixture``).

    ``init``: start from another checkpoint's weights where they fit (``transfer_weights``:
    e.g. the RGB model into an RGB-D one), or from torchvision's COCO model (``"coco"``, with
    ``cfg.backbone == "resnet50"``); ``workers``: data-loading processes;
    ``keep_snapshots``: also keep the weights of every save as ``step_<N>.pt`` beside them.

    ``time_budget_s``: stop after this many seconds of this run even before ``steps``; the
    learning-rate schedule then follows whichever of steps and time is further along.
    """
    from tqdm import tqdm

    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need steps >= 1, batch_size >= 1, lr > 0 "
                         f"(got {steps}, {batch_size}, {lr})")
    torch.manual_seed(seed)
    weights_path, state_path = output_paths(out)
    model = build_model(cfg)
    if init and not resume:
        if str(init) == "coco":
            from genpose_ros.segmentation.coco import load_coco_state, nocs_init_state

            state = nocs_init_state(load_coco_state())
        else:
            state = load_checkpoint(init, "cpu")[0].state_dict()
        left = transfer_weights(model, state)
        print(f"initialised from {init}; {len(left)} tensors kept fresh", file=sys.stderr)
    start = 0
    if resume:
        resume = state_path if resume is True or str(resume) == "auto" else Path(resume)
        loaded, cfg_r, ckpt = load_checkpoint(resume, "cpu")
        if "optimizer" not in ckpt:
            raise CheckpointError(f"{resume} has no optimizer state; pass the training-state file "
                                  f"({state_path.name}) to --resume")
        if cfg_r != cfg:
            model, cfg = build_model(cfg_r), cfg_r
        model.load_state_dict(loaded.state_dict())
    # on its device before the optimizer: a resumed optimizer state follows its parameters there
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    if resume:
        opt.load_state_dict(ckpt["optimizer"])
        start = int(ckpt.get("step", 0))
    budget = TimeBudget(time_budget_s)   # counts from here: render warm-up included
    batches = training_batches(frames, cfg, batch_size, seed + start, workers, stream_workers, stream_mix)
    warmup = min(300, max(1, steps // 10))
    running, t0 = {}, time.time()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="mask r-cnn",
               disable=not progress, dynamic_ncols=True)
    for step in bar:
        images, targets = next(batches)
        images = [im.to(device) for im in images]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        frac = max(step / steps, start / steps + (1 - start / steps) * budget.fraction)
        if budget.spent:
            print(f"time budget of {time_budget_s:.0f} s reached at step {step}",
                  file=sys.stderr, flush=True)
            _save(model, cfg, opt, step, weights_path, state_path)
            break
        for group in opt.param_groups:
            group["lr"] = lr * _lr_factor(step, warmup, frac)
        losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}: "
                                     f"{ {k: float(v) for k, v in losses.items()} }")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        for k, v in losses.items():
            running[k] = 0.9 * running.get(k, v.item()) + 0.1 * v.item()
        bar.set_postfix(loss=f"{sum(running.values()):.3f}", mask=f"{running['loss_mask']:.3f}")
        done = step + 1
        if done % log_every == 0 or done == steps:
            print(f"step {done}/{steps} lr {opt.param_groups[0]['lr']:.2e} "
                  + " ".join(f"{k} {v:.4f}" for k, v in running.items())
                  + f" ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        if done % save_every == 0 or done == steps:
            _save(model, cfg, opt, done, weights_path, state_path)
            if keep_snapshots:
                shutil.copyfile(weights_path, weights_path.with_name(f"step_{done}.pt"))
    bar.close()
    batches.close()
    if start >= steps:
        _save(model, cfg, opt, start, weights_path, state_path)
    return weights_path


def training_batches(frames, cfg: SegmenterConfig, batch_size: int, seed: int, workers: int = 0,
                     stream_workers: int = 0, stream_mix: str | dict = "standard"):
    """Endless (inputs, targets) batches: from ``frames`` (shuffled epochs, ``workers`` loader
    processes), from ``stream_workers`` render processes (scenes of ``stream_mix``), or half
    from each."""
    short = max(cfg.train_min_sizes)
    loader = stream = None
    if frames:
        dataset = SegmentationDataset(frames, short_side=short, augment=True, seed=seed,
                                      mode=cfg.input, nearest=cfg.nearest)
        loader = DataLoader(dataset, batch_size=min(batch_size, len(dataset)), shuffle=True,
                            collate_fn=_collate, drop_last=True, num_workers=workers,
                            worker_init_fn=dataset.worker_init if workers else None,
                            persistent_workers=workers > 0,
                            generator=torch.Generator().manual_seed(seed))
    if stream_workers:
        from genpose_ros.data.stream import FrameStream

        stream = FrameStream(stream_workers, seed=seed, distribution=stream_mix, transform=partial(
            streamed_samples, short_side=short, mode=cfg.input, seed=seed, nearest=cfg.nearest))
    if loader is None and stream is None:
        raise ValueError("segmentation training needs frames (--data) and/or render workers "
                         "(--stream-workers)")
    try:
        files = iter(())
        while True:
            images, targets = [], []
            if loader is not None:
                batch = next(files, None)
                if batch is None:
                    files = iter(loader)
                    batch = next(files)
                n = batch_size if stream is None else max(1, batch_size // 2)
                images, targets = list(batch[0][:n]), list(batch[1][:n])
            while len(images) < batch_size:
                image, target = stream.get()
                images.append(image)
                targets.append(target)
            yield images, targets
    finally:
        if stream is not None:
            stream.close()


def _save(model, cfg, opt, step, weights_path, state_path):
    model.eval()
    set_test_size(model, cfg)
    save_checkpoint(weights_path, model, cfg, half=True, extra={"step": step})
    save_checkpoint(state_path, model, cfg, extra={"step": step, "optimizer": opt.state_dict()})
    model.train()
    model.transform.min_size = cfg.train_min_sizes


DEFAULTS = {"steps": 20000, "batch_size": 2, "lr": 1e-3}


def frames_of(folders) -> list[str]:
    """Frame prefixes of one folder or a list of folders."""
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    return [f for folder in folders for f in list_frames(folder)]


def train_main(args) -> int:
    """Entry point of ``genpose train --task segmentation`` (the argparse namespace of train.py:
    data, out, steps, batch_size, lr, device, seed, resume; optional val, threads,
    time_budget, save_every, seg_config). ``None`` values take the defaults above; with
    ``--val`` the final weights are scored (mask AP) on up to 100 validation frames."""
    opt = {k: getattr(args, k, None) or v for k, v in DEFAULTS.items()}
    device = getattr(args, "device", None) or "auto"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = getattr(args, "threads", None)
    if threads:
        torch.set_num_threads(int(threads))
    cfg = TINY_CONFIG if getattr(args, "seg_config", None) == "tiny" else SegmenterConfig()
    if getattr(args, "init", None) == "coco":   # COCO's ResNet-50 FPN at its own input size
        cfg = replace(cfg, backbone="resnet50", min_size=480, max_size=640,
                      train_min_sizes=(416, 448, 480))
    resume = getattr(args, "resume", None)
    path = train(frames_of(args.data) if args.data else [], args.out, steps=int(opt["steps"]),
                 batch_size=int(opt["batch_size"]), lr=float(opt["lr"]), device=device,
                 seed=int(getattr(args, "seed", 0) or 0), resume=resume, cfg=cfg,
                 save_every=int(getattr(args, "save_every", None) or 500),
                 time_budget_s=getattr(args, "time_budget", None),
                 init=getattr(args, "init", None), workers=int(getattr(args, "workers", 0) or 0),
                 stream_workers=int(getattr(args, "stream_workers", 0) or 0),
                 stream_mix=getattr(args, "stream_mix", None) or "standard")
    print(f"Mask R-CNN weights: {path}")
    if getattr(args, "val", None):
        from genpose_ros.segmentation.model import Segmenter
        from genpose_ros.segmentation.evaluate import evaluate, format_table

        table = evaluate(Segmenter.from_checkpoint(path, device), frames_of(args.val), limit=100)
        print(format_table(table))
    return 0
