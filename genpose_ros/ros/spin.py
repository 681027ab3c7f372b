"""The shared ``main`` of the nodes: init, spin until Ctrl-C / shutdown, clean up, exit quietly.

Ctrl-C contract: one SIGINT stops a node within about a second with exit status 0 and no
traceback, also when it lands in the middle of a callback (rclpy has already invalidated the
context, so that callback's publish fails), when it lands while rclpy converts a received
message in C++ (which turns the KeyboardInterrupt into a RuntimeError), and when a second
SIGINT follows while the node cleans up (a terminal's Ctrl-C reaches ``genpose launch`` /
``ros2 launch`` and its nodes together, and the launcher then forwards its own).

A SIGINT while the node is still being constructed (importing torch / torchvision, loading a
model) ends the process at once with status 0: there is nothing to clean up yet, and a
KeyboardInterrupt raised inside an import that runs under a C++ extension's call makes that
extension abort the process (``terminate called after throwing ...``, status -6).
"""
from __future__ import annotations

import os
import signal
import sys

import rclpy
from rclpy.executors import ExternalShutdownException


class _InterruptOnce:
    """SIGINT handler: during start-up the process exits 0 at once; once the node spins, the
    first signal raises KeyboardInterrupt and later ones are ignored.

    Installed before ``rclpy.init``: rclpy's own handler (which shuts the context down and
    wakes the executor) chains to it."""

    def __init__(self):
        self.count = 0
        self.starting = True

    def __call__(self, signum, frame):
        self.count += 1
        if self.starting:
            os._exit(0)
        if self.count == 1:
            raise KeyboardInterrupt


_handler: _InterruptOnce | None = None


def shutting_down(context) -> bool:
    """Whether ``context`` is shut down, or is being shut down because this process got a SIGINT
    under `run_node`: rclpy shuts it down from its own signal thread at about the same moment, so
    ``context.ok()`` alone followed by a log call can race it (rcl then prints "Failed to publish
    log message to rosout"). Nothing more is logged through the context once this is true."""
    return not context.ok() or (_handler is not None and _handler.count > 0)


def run_node(node_cls, args=None):
    """Construct ``node_cls()``, spin it, clean up and end the process: status 0 after Ctrl-C
    or shutdown, 1 (with one line on stderr) when the node cannot start (missing checkpoint,
    bad parameter).

    The process ends with ``os._exit`` once the node is destroyed and rclpy (with its logging)
    is shut down: the interpreter's own tear-down of torch alone takes seconds on a busy CPU."""
    global _handler
    handler = _handler = _InterruptOnce()
    signal.signal(signal.SIGINT, handler)
    try:
        code = _run(node_cls, args, handler)
    except KeyboardInterrupt:  # Ctrl-C that arrived during the clean-up of another error
        code = 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _cannot_start(node_cls, exc: Exception) -> int:
    """One line on stderr naming why ``node_cls`` cannot start; the process's exit status."""
    print(f"[{node_cls.__name__}] cannot start: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
    return 1


def _run(node_cls, args, handler: _InterruptOnce) -> int:
    try:
        rclpy.init(args=args)
    except RuntimeError as exc:   # rcl's own check of the arguments (e.g. a params file that does not parse)
        return _cannot_start(node_cls, exc)
    node = None
    try:
        node = node_cls()
        handler.starting = False
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:
        if not rclpy.ok() or handler.count:
            # shut down by a signal while a callback ran (its publish / timer failed), or the
            # KeyboardInterrupt landed inside rclpy's C++ message conversion, which reports it
            # as "RuntimeError: Unable to convert call argument"
            pass
        elif node is None and isinstance(exc, (FileNotFoundError, ValueError, RuntimeError)):
            return _cannot_start(node_cls, exc)
        else:
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
