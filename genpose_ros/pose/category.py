"""The category check: a small head that reads an object's category off the pose model's encoder
feature of its points, and the fusion of that reading with the segmenter's class and score.

Mask R-CNN classifies from the image (at 320 px a distant mug and a camera, a can and a short
bottle look alike); the points carry the object's 3D shape and size. The pose model's point
encoder is category-agnostic (the category enters after it, ``PoseNet.encode``), so its feature
of the same points serves a classifier at the cost of one small MLP. ``fused_log_probs``
combines both: the segmenter's class with its score as a prior (the other classes share the
rest), the head's probabilities as the evidence, ``log p_points + prior_weight * log
p_segmenter`` (`PoseEstimator.category_evidence`). pose_node and `genpose eval` take the most
likely class of each frame's objects; the tracker sums the evidence over a track's frames
(``pose/tracker.py``).

The head belongs to the pose model whose features it learnt: its checkpoint
(``genpose_ros.category/1``) records a digest of that encoder's weights, and an estimator with
another pose model does not use it (``PoseEstimator.category_note`` says why; the nodes log it
at start, `genpose eval` prints it).

    genpose train --task category --init models/genpose_light.pt --data data/synth/train \\
        --val data/synth/val --out runs/category
    cp runs/category/category_head.pt models/category_head.pt
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

FORMAT = "genpose_ros.category/1"
WHAT = "category head"


def encoder_digest(model) -> str:
    """A digest of a pose model's encoder weights (what the head's features depend on)."""
    h = hashlib.sha1()
    for name, value in sorted(model.encoder.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


class CategoryHead(nn.Module):
    """Encoder feature (B, F) -> category logits (B, C); features standardised with the training
    set's mean and spread, logits divided by a temperature fitted on validation instances (an MLP
    fitted to 99 % on its training set is surer of itself than it is right; the fusion needs
    probabilities that mean what they say). Config: ``{"categories": [...], "in_dim": F,
    "hidden": 128, "encoder_digest": str}``."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        self.categories = list(config["categories"])
        F, hidden = int(config["in_dim"]), int(config.get("hidden", 128))
        self.register_buffer("mean", torch.zeros(F))
        self.register_buffer("std", torch.ones(F))
        self.register_buffer("temperature", torch.ones(()))
        self.mlp = nn.Sequential(nn.Linear(F, hidden), nn.ReLU(), nn.Linear(hidden, len(self.categories)))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.mlp((feature - self.mean) / self.std) / self.temperature


def load_category_head(path):
    from genpose_ros.pose.checkpoint import load_net

    return load_net(CategoryHead, path, FORMAT, WHAT)


def fused_log_probs(probs: np.ndarray, categories: list[str], scores, names: list[str],
                    prior_weight: float) -> np.ndarray:
    """(B, C) log-probabilities over ``names`` of the classes that fit points and segmenter together
    (normalised over the classes). ``probs`` (B, C) the head's probabilities (read no lower than
    1e-6); ``categories`` / ``scores`` (B,) the segmenter's class and score (read in [0.01, 0.999]);
    its other classes share 1 - score. A score of 1 (true masks) makes its class certain (the
    others read 1e-6)."""
    raw = np.asarray(scores, np.float64).reshape(-1)
    scores = np.clip(raw, 0.01, 0.999)
    prior = np.repeat(((1.0 - scores) / (len(names) - 1))[:, None], len(names), axis=1)
    given = np.array([names.index(c) for c in categories], dtype=np.int64)
    prior[np.arange(len(given)), given] = scores
    fused = np.log(np.clip(probs, 1e-6, None)) + prior_weight * np.log(prior)
    sure = raw >= 1.0
    fused[sure] = np.log(1e-6)
    fused[sure, given[sure]] = 0.0
    return fused - np.logaddexp.reduce(fused, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- training

def features(model, dataset, passes: int, batch: int = 64, desc: str = "features"):
    """(features (M, F), category indices (M,)) of every instance of ``dataset``, ``passes``
    times (an augmenting dataset draws anew each time)."""
    from tqdm import tqdm

    from genpose_ros import geometry

    feats, cats = [], []
    with torch.inference_mode():
        for _ in range(passes):
            for s in tqdm(range(0, len(dataset), batch), desc=desc, mininterval=5):
                items = [dataset[i] for i in range(s, min(s + batch, len(dataset)))]
                pts, _ = geometry.normalize_points(torch.stack([it["points"] for it in items]))
                feats.append(model.encoder(pts))
                cats += [int(it["category"]) for it in items]
    return torch.cat(feats), torch.tensor(cats)


def fit_head(X: torch.Tensor, y: torch.Tensor, config: dict, cfg: dict, seed: int = 0) -> CategoryHead:
    """Cross-entropy fit of a `CategoryHead` to features ``X`` and labels ``y``."""
    torch.manual_seed(seed)
    head = CategoryHead(config)
    head.mean.copy_(X.mean(0))
    head.std.copy_(X.std(0) + 1e-6)
    opt = torch.optim.AdamW(head.mlp.parameters(), cfg["lr"], weight_decay=cfg["weight_decay"])
    for _ in range(cfg["epochs"]):
        for b in torch.randperm(len(X)).split(cfg["batch_size"]):
            loss = nn.functional.cross_entropy(head(X[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


def fit_temperature(head: CategoryHead, X: torch.Tensor, y: torch.Tensor) -> float:
    """Set the head's temperature to the one (0.5-50, log grid) with the least cross-entropy on
    ``X``, ``y``; returns it."""
    head.temperature.fill_(1.0)
    with torch.no_grad():
        logits = head(X)
        grid = torch.logspace(np.log10(0.5), np.log10(50.0), 80)
        nll = torch.stack([nn.functional.cross_entropy(logits / T, y) for T in grid])
    head.temperature.fill_(float(grid[nll.argmin()]))
    return float(head.temperature)


def accuracy(head: CategoryHead, X: torch.Tensor, y: torch.Tensor) -> dict:
    """Overall and per-category share of ``y`` the head gets right (%)."""
    with torch.no_grad():
        pred = head(X).argmax(1)
    out = {"all": round(100.0 * float((pred == y).float().mean()), 1)}
    for k, name in enumerate(head.categories):
        sel = y == k
        if sel.any():
            out[name] = round(100.0 * float((pred[sel] == k).float().mean()), 1)
    return out


def train_main(args) -> int:
    """Entry of ``genpose train --task category``: ``--init`` names the pose checkpoint whose
    encoder is read (frozen); config/category.yaml holds the settings."""
    from genpose_ros import CATEGORIES
    from genpose_ros.config import require_positive, task_config
    from genpose_ros.data.dataset import InstanceDataset
    from genpose_ros.pose.checkpoint import build_model, load_checkpoint, save_checkpoint

    if not args.init:
        raise ValueError("--task category reads the features of a pose model: give --init <pose checkpoint>")
    if not args.data or args.stream_workers:
        raise ValueError("--task category trains on --data (a rendered split); --stream-workers serves the pose task")
    cfg, where = task_config("category.yaml", args.config)
    require_positive(cfg, tuple(cfg), where)
    for flag in ("batch_size", "lr"):
        if getattr(args, flag, None) is not None:
            cfg[flag] = getattr(args, flag)
    model = build_model(load_checkpoint(args.init), args.init).eval()
    n = int(model.config["n_points"])
    t0 = time.time()
    train_sets = [InstanceDataset(d, n_points=n, augment=True, seed=args.seed) for d in args.data]
    X, y = zip(*(features(model, ds, cfg["passes"], desc=f"features {Path(d).name}")
                 for ds, d in zip(train_sets, args.data)))
    X, y = torch.cat(X), torch.cat(y)
    config = {"categories": list(CATEGORIES), "in_dim": int(X.shape[1]), "hidden": cfg["hidden"],
              "encoder_digest": encoder_digest(model)}
    head = fit_head(X, y, config, cfg, seed=args.seed)
    report = {"train_instances": len(X), "train_accuracy": accuracy(head, X, y), "init": str(args.init)}
    val = {d: features(model, InstanceDataset(d, n_points=n, augment=False, seed=args.seed), 1,
                       desc=f"features {Path(d).name}") for d in args.val or []}
    for d, (Xv, yv) in val.items():
        report[f"val_accuracy {d}"] = accuracy(head, Xv, yv)
    if val:   # calibrated on the first validation split
        report["temperature"] = fit_temperature(head, *val[args.val[0]])
    report["wall_s"] = round(time.time() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "category_head.pt", head.state_dict(), config, 0, cfg, fmt=FORMAT)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1), file=sys.stdout)
    print(f"wrote {out / 'category_head.pt'}")
    return 0
