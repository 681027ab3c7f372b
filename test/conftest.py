"""Shared pytest set-up.

Every test session talks DDS on its own ROS domain (derived from the process id) and only over
the loopback interface, so parallel test runs on one machine never see each other's topics.
Subprocesses started by the tests inherit these variables.
"""
import os
import time

import pytest

os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 200)
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")


@pytest.fixture
def ros_context():
    """A freshly initialised rclpy Context, shut down after the test."""
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


def spin_until(executor, predicate, timeout_s: float) -> bool:
    """Spin ``executor`` until ``predicate()`` is true or ``timeout_s`` passes; returns it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return bool(predicate())
