"""TF in pure Python: broadcasters on /tf and /tf_static, and a buffer + listener for lookups.

Same wire behaviour as tf2_ros, so RViz and tf2 tools on a workstation see our frames:
dynamic transforms go to ``/tf`` (reliable, depth 100); static ones to ``/tf_static`` (reliable,
transient local, depth 1), where each publication carries the broadcaster's whole static set.

Transforms are 4x4 homogeneous matrices ``T_parent_child`` (maps child coordinates to parent
coordinates), metres, quaternions in ROS order (x, y, z, w).
"""
from __future__ import annotations

import bisect
import threading

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from scipy.spatial.transform import Rotation, Slerp
from tf2_msgs.msg import TFMessage

from genpose_ros.ros.qos import TF_QOS, TF_STATIC_LISTENER_QOS, TF_STATIC_QOS


def matrix_to_transform(T: np.ndarray, parent: str, child: str, stamp=None) -> TransformStamped:
    """A (4, 4) ``T_parent_child`` as a geometry_msgs/TransformStamped (``stamp``: a Time msg)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f"transform {parent} -> {child} must be a finite (4, 4) matrix, "
                         f"got shape {T.shape}")
    msg = TransformStamped()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = parent
    msg.child_frame_id = child
    x, y, z = (float(v) for v in T[:3, 3])
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = x, y, z
    q = Rotation.from_matrix(T[:3, :3]).as_quat()  # (x, y, z, w)
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = (float(v) for v in q)
    return msg


def transform_to_matrix(msg) -> np.ndarray:
    """A geometry_msgs/Transform or TransformStamped as a (4, 4) float64 matrix."""
    tr = msg.transform if hasattr(msg, "transform") else msg
    q = [tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w]
    if np.linalg.norm(q) < 1e-9:
        raise ValueError("transform has a zero quaternion")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q).as_matrix()
    T[:3, 3] = [tr.translation.x, tr.translation.y, tr.translation.z]
    return T


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class TransformBroadcaster:
    """Publishes dynamic transforms on ``/tf`` (reliable, volatile, depth 100)."""

    def __init__(self, node: Node, qos=TF_QOS):
        self._pub = node.create_publisher(TFMessage, "/tf", qos)

    def send_transform(self, transforms) -> None:
        """Publish one TransformStamped or a list of them in one TFMessage."""
        if isinstance(transforms, TransformStamped):
            transforms = [transforms]
        self._pub.publish(TFMessage(transforms=list(transforms)))


class StaticTransformBroadcaster:
    """Publishes static transforms on ``/tf_static`` (transient local, depth 1).

    Every call republishes the whole set this broadcaster holds (keyed by child frame), since a
    depth-1 latched topic only keeps the last message for late joiners.
    """

    def __init__(self, node: Node, qos=TF_STATIC_QOS):
        self._pub = node.create_publisher(TFMessage, "/tf_static", qos)
        self._static: dict[str, TransformStamped] = {}

    def send_transform(self, transforms) -> None:
        if isinstance(transforms, TransformStamped):
            transforms = [transforms]
        for t in transforms:
            self._static[t.child_frame_id] = t
        self._pub.publish(TFMessage(transforms=list(self._static.values())))


class TransformLookupError(LookupError):
    """A transform chain is unknown, disconnected or not available at the requested time."""


class TransformBuffer:
    """A TF tree with a short history per dynamic edge; ``lookup`` chains transforms.

    ``cache_s``: seconds of history kept per dynamic edge. Thread-safe (the listener's callbacks
    may run on another executor thread than the caller of ``lookup``).
    """

    def __init__(self, cache_s: float = 10.0):
        self.cache_ns = int(cache_s * 1e9)
        self._lock = threading.Lock()
        self._static: dict[str, tuple[str, np.ndarray]] = {}       # child -> (parent, T)
        self._dynamic: dict[str, tuple[str, list[int], list[np.ndarray]]] = {}

    def set_transform(self, msg: TransformStamped, static: bool = False) -> None:
        """Add one transform (``T_parent_child`` from ``msg``) to the tree."""
        parent, child = msg.header.frame_id.lstrip("/"), msg.child_frame_id.lstrip("/")
        if not parent or not child or parent == child:
            raise ValueError(f"bad transform frames: parent {parent!r}, child {child!r}")
        T = transform_to_matrix(msg)
        with self._lock:
            if static:
                self._static[child] = (parent, T)
                self._dynamic.pop(child, None)
                return
            t_ns = _stamp_ns(msg.header.stamp)
            entry = self._dynamic.get(child)
            if entry is None or entry[0] != parent:  # new edge, or the frame was re-parented
                entry = (parent, [], [])
                self._dynamic[child] = entry
            _, times, mats = entry
            i = bisect.bisect_left(times, t_ns)
            if i < len(times) and times[i] == t_ns:
                mats[i] = T
            else:
                times.insert(i, t_ns)
                mats.insert(i, T)
            while times and times[-1] - times[0] > self.cache_ns:
                times.pop(0)
                mats.pop(0)

    def frames(self) -> set[str]:
        with self._lock:
            out = set(self._static) | set(self._dynamic)
            out |= {p for p, _ in self._static.values()} | {e[0] for e in self._dynamic.values()}
        return out

    def _edge(self, child: str, time_ns: int | None) -> tuple[str, np.ndarray]:
        if child in self._static:
            return self._static[child]
        parent, times, mats = self._dynamic[child]
        if time_ns is None:
            return parent, mats[-1]
        i = bisect.bisect_left(times, time_ns)
        if i < len(times) and times[i] == time_ns:
            return parent, mats[i]
        if i == 0 or i == len(times):
            raise TransformLookupError(
                f"{parent} -> {child}: no data at t={time_ns * 1e-9:.3f} s (known from "
                f"{times[0] * 1e-9:.3f} to {times[-1] * 1e-9:.3f} s)")
        t0, t1 = times[i - 1], times[i]
        a = (time_ns - t0) / (t1 - t0)
        T = np.eye(4)
        T[:3, 3] = (1 - a) * mats[i - 1][:3, 3] + a * mats[i][:3, 3]
        rots = Rotation.from_matrix(np.stack([mats[i - 1][:3, :3], mats[i][:3, :3]]))
        T[:3, :3] = Slerp([0.0, 1.0], rots)([a]).as_matrix()[0]
        return parent, T

    def _chain_to_root(self, frame: str, time_ns: int | None) -> tuple[str, dict]:
        """(root frame, {f: T_root_f}) for every frame f on the way up from ``frame``."""
        frames, edges = [frame], []  # edges[i] = T_{frames[i+1]}_{frames[i]}
        while frame in self._static or frame in self._dynamic:
            parent, T_parent_frame = self._edge(frame, time_ns)
            if parent in frames:
                raise TransformLookupError(f"the TF tree has a loop through {parent!r}")
            frames.append(parent)
            edges.append(T_parent_frame)
            frame = parent
        T = np.eye(4)
        T_root = {frames[-1]: T}
        for i in range(len(edges) - 1, -1, -1):
            T = T @ edges[i]
            T_root[frames[i]] = T
        return frames[-1], T_root

    def lookup(self, target_frame: str, source_frame: str, time_ns: int | None = None) -> np.ndarray:
        """``T_target_source`` (4, 4): maps source-frame points into the target frame.

        ``time_ns``: the time to look up (dynamic edges interpolated), or None for the latest
        sample of each edge. Raises `TransformLookupError` naming what is missing.
        """
        target_frame, source_frame = target_frame.lstrip("/"), source_frame.lstrip("/")
        if target_frame == source_frame:
            return np.eye(4)
        with self._lock:
            root_s, T_root_s = self._chain_to_root(source_frame, time_ns)
            root_t, T_root_t = self._chain_to_root(target_frame, time_ns)
        if root_s != root_t:
            raise TransformLookupError(
                f"cannot transform {source_frame!r} into {target_frame!r}: not connected "
                f"(they end at {root_s!r} and {root_t!r}; known frames: {sorted(self.frames())})")
        return np.linalg.inv(T_root_t[target_frame]) @ T_root_s[source_frame]

    def can_transform(self, target_frame: str, source_frame: str, time_ns: int | None = None) -> bool:
        try:
            self.lookup(target_frame, source_frame, time_ns)
            return True
        except TransformLookupError:
            return False


class TransformListener:
    """Fills a `TransformBuffer` from ``/tf`` and ``/tf_static`` subscriptions of ``node``."""

    def __init__(self, buffer: TransformBuffer, node: Node):
        self.buffer = buffer
        self._subs = [
            node.create_subscription(TFMessage, "/tf", lambda m: self._on(m, False), TF_QOS),
            node.create_subscription(TFMessage, "/tf_static", lambda m: self._on(m, True),
                                     TF_STATIC_LISTENER_QOS),
        ]
        self._logger = node.get_logger()

    def _on(self, msg: TFMessage, static: bool) -> None:
        for t in msg.transforms:
            try:
                self.buffer.set_transform(t, static=static)
            except ValueError as exc:
                self._logger.warning(f"ignoring transform: {exc}")
