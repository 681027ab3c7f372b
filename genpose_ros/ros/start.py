"""Entry points of the node executables (the console scripts and ``genpose launch``).

Each installs the start-up SIGINT handler before it imports its node module, so a Ctrl-C that
lands while rclpy, numpy, scipy and torch are still being imported ends the process at once,
quietly, with status 0 (there is nothing to clean up yet), as one during the node's
construction does; `spin.run_node` takes the signal over from there. Only the standard library
is imported here.

    python -m genpose_ros.ros.start pose_node --ros-args -p mode:=genpose
"""
from __future__ import annotations

import importlib
import os
import signal
import sys

NODES = ("realsense_node", "maskrcnn_node", "pose_node", "tracking_node", "xarm_demo_node")


def _quit(signum, frame):
    os._exit(0)


def run(name: str):
    """Import node module ``name`` with a SIGINT ending the process quietly, then run its ``main``."""
    signal.signal(signal.SIGINT, _quit)
    return importlib.import_module(f"genpose_ros.ros.{name}").main()


def realsense_node():
    return run("realsense_node")


def maskrcnn_node():
    return run("maskrcnn_node")


def pose_node():
    return run("pose_node")


def tracking_node():
    return run("tracking_node")


def xarm_demo_node():
    return run("xarm_demo_node")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in NODES:
        print(f"usage: python -m genpose_ros.ros.start {{{','.join(NODES)}}} [--ros-args ...]", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(sys.argv.pop(1)))
