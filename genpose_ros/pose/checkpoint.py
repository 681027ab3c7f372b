"""Pose-model checkpoints: one dict saved with ``torch.save`` and read with
``torch.load(weights_only=True)`` (no pickled code is ever executed).

Layout (``FORMAT`` = "genpose_ros.pose/1"; other models of the package that share it, such as
the size network, name their own ``fmt``)::

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
from genpose_ros.checkpoint import CheckpointError, check_format, load_state, read_file, save_file

FORMAT = "genpose_ros.pose/1"
REQUIRED = ("format", "model", "model_config", "step")
WHAT = "pose checkpoint"

__all__ = ["CheckpointError", "FORMAT", "build", "build_model", "load_checkpoint", "load_net", "save_checkpoint"]


def save_checkpoint(path: str | os.PathLike, model_state: dict, model_config: dict, step: int,
                    train_config: dict | None = None, fmt: str = FORMAT, **extra) -> Path:
    """Write atomically (temp file + rename) so an interrupted save never leaves a broken file.
    ``fmt`` names the kind of model (``FORMAT`` for pose models)."""
    ckpt = {"format": fmt, "model": {k: v.detach().cpu() for k, v in model_state.items()},
            "model_config": model_config, "step": int(step), "train_config": dict(train_config or {}),
            "versions": {"genpose_ros": __version__, "torch": str(torch.__version__)}}
    ckpt.update(extra)
    return save_file(path, ckpt)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    fmt: str = FORMAT, what: str = WHAT) -> dict:
    """Read and validate a checkpoint dict of format ``fmt`` (weights_only=True); ``what``
    names the kind in error messages."""
    ckpt = read_file(path, what, map_location)
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the keys {missing} (not a genpose_ros {what})")
    check_format(ckpt, path, fmt, what)
    return ckpt


def build_model(ckpt: dict, path: str = "<checkpoint>", state_key: str = "model"):
    """PoseNet from a loaded checkpoint dict; architecture / key mismatches -> CheckpointError."""
    from genpose_ros.pose.nets import PoseNet

    return build(PoseNet, ckpt, path, state_key)


def build(model_cls, ckpt: dict, path: str = "<checkpoint>", state_key: str = "model", what: str = WHAT):
    """``model_cls(ckpt["model_config"])`` with the weights of ``ckpt[state_key]``; an invalid
    config or missing / unexpected / misshapen / non-finite weights raise CheckpointError."""
    try:
        model = model_cls(ckpt["model_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: invalid model_config: {exc}") from exc
    load_state(model, ckpt[state_key], path, what)
    return model


def load_net(model_cls, path: str | os.PathLike, fmt: str, what: str, map_location: str | torch.device = "cpu"):
    """A model of another kind than the pose model (the SizeNet, the verifier) from its safe
    checkpoint of format ``fmt``, in eval mode; every failure raises CheckpointError naming ``what``."""
    ckpt = load_checkpoint(path, map_location=map_location, fmt=fmt, what=what)
    return build(model_cls, ckpt, str(path), what=what).eval()
