"""QoS profiles by name, so every input's QoS can be a node parameter.

Names: ``reliable`` (keep last, reliable, volatile: what realsense-ros publishes by default),
``sensor_data`` (best effort, keep last: `rclpy.qos.qos_profile_sensor_data`),
``latched`` (reliable, transient local: late joiners get the last message).
"""
from __future__ import annotations

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)

QOS_NAMES = ("reliable", "sensor_data", "latched")

TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
"""/tf: reliable, volatile, depth 100 (as tf2_ros.TransformBroadcaster)."""

TF_STATIC_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                           reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""/tf_static publisher: reliable, transient local, depth 1 (the whole static set per message)."""

TF_STATIC_LISTENER_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                                    reliability=ReliabilityPolicy.RELIABLE,
                                    durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""/tf_static subscription: transient local, depth 100 (one message per static broadcaster)."""


def qos_from_name(name: str, depth: int = 5) -> QoSProfile:
    """The QoS profile called ``name`` (one of `QOS_NAMES`) with history depth ``depth``."""
    if depth < 1:
        raise ValueError(f"QoS depth must be >= 1, got {depth}")
    if name == "reliable":
        return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    if name == "sensor_data":
        return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)
    if name == "latched":
        return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    raise ValueError(f"unknown QoS profile {name!r}; expected one of {', '.join(QOS_NAMES)}")
