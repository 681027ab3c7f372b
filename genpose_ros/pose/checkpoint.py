"""Pose-model checkpoints: one dict saved with ``torch.save`` and read with
``torch.load(weights_only=True)`` (no pickled code is ever executed).

Layout (``FORMAT`` = "genpose_ros.pose/1")::

    {"format": FORMAT, "model": state_dict (EMA weights), "model_config": dict,
     "step": int, "train_config": dict, "versions": {"genpose_ros": str, "torch": str},
     "optimizer": state_dict (resume files only), "raw_model": state_dict (resume files only)}

Every failure mode raises ``CheckpointError`` with the path and what is wrong.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from genpose_ros import __version__

FORMAT = "genpose_ros.pose/1"
REQUIRED = ("format", "model", "model_config", "step")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, truncated, of another format or architecture."""


def save_checkpoint(path: str | os.PathLike, model_state: dict, model_config: dict, step: int,
                    train_config: dict | None = None, **extra) -> Path:
    """Write atomically (temp file + rename) so an interrupted save never leaves a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"format": FORMAT, "model": {k: v.detach().cpu() for k, v in model_state.items()},
            "model_config": model_config, "step": int(step), "train_config": dict(train_config or {}),
            "versions": {"genpose_ros": __version__, "torch": str(torch.__version__)}}
    ckpt.update(extra)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read and validate a checkpoint dict (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip / unpickler errors for truncated or foreign files
        raise CheckpointError(f"cannot read checkpoint {path} (corrupt, truncated or not a torch "
                              f"checkpoint): {type(exc).__name__}: {exc}") from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a checkpoint dict")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the keys {missing} (not a genpose_ros pose checkpoint)")
    if ckpt["format"] != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {ckpt['format']!r}, expected {FORMAT!r}")
    return ckpt


def nonfinite_report(state: dict) -> str | None:
    """What is wrong when floating tensors of ``state`` hold NaN or Inf (a diverged training
    run, a broken fp16 cast), else None."""
    bad = [k for k, v in state.items()
           if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if not bad:
        return None
    names = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
    return f"NaN or Inf weights in {len(bad)} of {len(state)} tensors ({names})"


def build_model(ckpt: dict, path: str = "<checkpoint>", state_key: str = "model"):
    """PoseNet from a loaded checkpoint dict; architecture / key mismatches -> CheckpointError."""
    from genpose_ros.pose.nets import PoseNet

    try:
        model = PoseNet(ckpt["model_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: invalid model_config: {exc}") from exc
    state = ckpt[state_key]
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def short(xs):
            return ", ".join(xs[:5]) + (f" ... ({len(xs)} in all)" if len(xs) > 5 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {short(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {short(shapes)}")
        raise CheckpointError(f"checkpoint {path} does not match its model architecture; " + "; ".join(parts))
    bad = nonfinite_report(state)
    if bad:
        raise CheckpointError(f"checkpoint {path} is unusable: {bad}; use an earlier "
                              "checkpoint of the run or retrain")
    model.load_state_dict(state)
    return model
