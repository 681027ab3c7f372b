"""The ``genpose`` command-line tool.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int``. Subcommand modules keep heavy imports (torch, rclpy) inside ``run`` so
``genpose --help`` stays fast.

A user's mistake (bad argument, unknown config key, missing or corrupt file) ends with one line
``genpose <command>: error: <what is wrong>`` on stderr and exit status 2; any other failure
with one line and status 1. ``genpose --debug <command> ...`` shows the full traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from genpose_ros import __version__
from genpose_ros.checkpoint import CheckpointError

COMMANDS = {
    "data": ("genpose_ros.data.cli", "generate, inspect and check NOCS-format RGB-D datasets"),
    "train": ("genpose_ros.pose.train", "train the pose estimator (or the Mask R-CNN segmenter)"),
    "eval": ("genpose_ros.evaluation.evaluate", "NOCS metrics of one estimator mode on a dataset"),
    "bench": ("genpose_ros.evaluation.bench", "all estimator modes side by side: accuracy and latency"),
    "demo": ("genpose_ros.ros.demo", "the full ROS 2 graph on a simulated D435, with a report"),
    "launch": ("genpose_ros.ros.launcher", "run a YAML launch file of this package"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genpose",
        description="Category-level 6D pose and size estimation with score-based diffusion.",
    )
    parser.add_argument("--version", action="version", version=f"genpose {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full Python traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name)
        module = _load(module_name)
        if module is not None:
            module.add_arguments(sub_parser)
    return parser


def _load(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None  # this part of the package is not installed in this build
        raise


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = _load(args._module)
    if module is None:
        print(f"genpose {args.command}: not available in this build ({args._module} missing)",
              file=sys.stderr)
        return 2
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"genpose {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"genpose {args.command}: error: {describe(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, USER_ERRORS) else 1


USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError,
               CheckpointError)


def describe(exc: BaseException) -> str:
    """One line for ``exc``: its message (user errors) or its type and message, plus a hint."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, USER_ERRORS):
        return text
    return f"{type(exc).__name__}: {text} (run `genpose --debug ...` for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
