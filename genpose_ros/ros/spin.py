"""The shared ``main`` of the nodes: init, spin until Ctrl-C / shutdown, clean up."""
from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException


def run_node(node_cls, args=None) -> int:
    """Construct ``node_cls()`` and spin it. A construction error (missing checkpoint, bad
    parameter) is logged as one line and the process exits with status 1."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_cls()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        if node is not None:
            raise
        print(f"[{node_cls.__name__}] cannot start: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
