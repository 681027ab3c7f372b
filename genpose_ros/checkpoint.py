"""The safe save / load core shared by the pose and the segmentation checkpoints.

A checkpoint is one dict of tensors and plain values, written atomically with ``torch.save``
and read with ``torch.load(weights_only=True)`` (no pickled code is ever executed). The
model-specific layouts and builders live in ``genpose_ros.pose.checkpoint`` and
``genpose_ros.segmentation.model``. Every failure raises ``CheckpointError`` naming the file
and what is wrong.
"""
from __future__ import annotations

import os
from pathlib import Path


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, truncated, of another format or architecture."""


def save_file(path: str | os.PathLike, ckpt: dict) -> Path:
    """Write ``ckpt`` atomically (temp file + rename): an interrupted save never leaves a broken file."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path


def read_file(path: str | os.PathLike, what: str, map_location="cpu") -> dict:
    """The checkpoint dict of ``path`` (``what`` names the kind in error messages)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip / unpickler errors of truncated or foreign files
        raise CheckpointError(f"cannot read {what} {path} (corrupt, truncated or not a valid torch "
                              f"checkpoint): {type(exc).__name__}: {_first_sentence(str(exc))}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{what} {path} holds a {type(ckpt).__name__}, not a checkpoint dict")
    return ckpt


def check_format(ckpt: dict, path, expected: str, what: str) -> None:
    if ckpt.get("format") != expected:
        raise CheckpointError(f"{path} is not a genpose_ros {what} (format {ckpt.get('format')!r}, "
                              f"expected {expected!r})")


def nonfinite_report(state: dict) -> str | None:
    """What is wrong when floating tensors of ``state`` hold NaN or Inf (a diverged training
    run, a broken fp16 cast), else None."""
    import torch

    bad = [k for k, v in state.items()
           if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if not bad:
        return None
    names = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
    return f"NaN or Inf weights in {len(bad)} of {len(state)} tensors ({names})"


def load_state(model, state: dict, path, what: str = "checkpoint") -> None:
    """``model.load_state_dict(state)`` after checking keys, shapes and values; CheckpointError
    listing the missing and unexpected keys and the shape mismatches, or the non-finite tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = [f"{name}: {_short(keys)}" for name, keys in
             (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)) if keys]
    if parts:
        raise CheckpointError(f"{path}: weights do not fit the model described by its config; " + "; ".join(parts))
    bad = nonfinite_report(state)
    if bad:
        raise CheckpointError(f"{what} {path} is unusable: {bad}; use an earlier checkpoint of the run or retrain")
    model.load_state_dict(state)


def _short(items: list[str]) -> str:
    return ", ".join(items[:5]) + (f" ... ({len(items)} in all)" if len(items) > 5 else "")


def _first_sentence(text: str, limit: int = 160) -> str:
    text = " ".join(text.split()).split(". ")[0]
    return text if len(text) <= limit else text[:limit] + "..."
