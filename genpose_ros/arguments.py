"""Command-line arguments shared by the ``genpose`` subcommands, and their checks.

Only argparse here (no torch at import): ``genpose --help`` builds every subcommand's parser.
"""
from __future__ import annotations

import argparse
import re


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value


def add_checkpoint(p: argparse.ArgumentParser) -> None:
    """``--checkpoint`` (``--ckpt`` is a hidden alias)."""
    p.add_argument("--checkpoint", default=None, help="pose checkpoint (default: newest models/genpose_*.pt)")
    p.add_argument("--ckpt", dest="checkpoint", help=argparse.SUPPRESS)


DEVICE = re.compile(r"cpu|cuda(:\d+)?")
"""The torch devices a command's ``--device`` and a node's ``device`` parameter name."""


def add_device(p: argparse.ArgumentParser, default: str = "cpu") -> None:
    """``--device``: cpu, cuda or cuda:N (and auto with that default: a GPU if torch sees one)."""
    choices = "auto, cpu, cuda or cuda:N" if default == "auto" else "cpu, cuda or cuda:N"

    def device(text: str) -> str:
        if not (DEVICE.fullmatch(text) or text == default == "auto"):
            raise argparse.ArgumentTypeError(f"expected {choices}, got {text!r}")
        if text.startswith("cuda"):   # torch only for a GPU: cpu and auto keep --help fast
            import torch

            index, seen = int(text.partition(":")[2] or 0), torch.cuda.device_count()
            if index >= seen:
                raise argparse.ArgumentTypeError(
                    f"{text}: torch {torch.__version__} sees {seen} CUDA GPU(s) on this machine")
        return text

    p.add_argument("--device", type=device, default=default, help=f"torch device: {choices}")


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=non_negative_int, default=None,
                   help="torch CPU threads (default or 0: torch's choice; 1 is fastest on a busy CPU)")


def apply_threads(args: argparse.Namespace) -> None:
    """torch.set_num_threads(--threads) before any work (no-op without --threads)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def parse_overrides(items: list[str]) -> dict:
    """``KEY=VALUE`` strings -> {key: YAML-typed value}; ValueError for anything else."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like KEY=VALUE")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key] = value
    return out
