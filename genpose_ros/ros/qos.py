"""QoS profiles by name, so every input's QoS can be a node parameter.

Names: ``reliable`` (keep last, reliable, volatile: what realsense-ros publishes by default),
``sensor_data`` (best effort, keep last: `rclpy.qos.qos_profile_sensor_data`),
``latched`` (reliable, transient local: late joiners get the last message), and for inputs
``auto``: reliable while the publishers are, best effort as soon as a best-effort publisher
appears (`InputSubscription`). A best-effort subscription also takes reliable publishers, but
over loopback UDP it loses large images (a 640x480 colour frame is ~600 fragments) that a
reliable one gets repeated; ``auto`` keeps reliable delivery where the publishers offer it.
"""
from __future__ import annotations

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSPolicyKind, QoSProfile,
                       ReliabilityPolicy)

QOS_NAMES = ("auto", "reliable", "sensor_data", "latched")

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
    if name in ("reliable", "auto"):
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


class InputSubscription:
    """A subscription with the QoS called ``qos`` (`QOS_NAMES`); with ``auto`` it starts reliable
    and, when a best-effort publisher is refused as incompatible (say realsense2_camera with
    ``*_qos:=SENSOR_DATA``), subscribes again best effort, which takes both kinds."""

    def __init__(self, node, msg_type, topic: str, callback, qos: str = "auto", depth: int = 5):
        self._node, self._args, self._depth = node, (msg_type, topic, callback), depth
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible) if qos == "auto" else None
        self.best_effort = qos == "sensor_data"
        self.sub = node.create_subscription(msg_type, topic, callback, qos_from_name(qos, depth),
                                            event_callbacks=events)

    def _on_incompatible(self, info) -> None:
        if self.best_effort or info.last_policy_kind != QoSPolicyKind.RELIABILITY:
            return
        self.best_effort = True
        old = self.sub
        self.sub = self._node.create_subscription(*self._args, qos_from_name("sensor_data", self._depth))
        self._node.destroy_subscription(old)
        self._node.get_logger().info(f"{self.sub.topic_name}: a best-effort publisher; "
                                     "subscribed best effort")
