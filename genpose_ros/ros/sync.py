"""Approximate time synchronisation of several message streams, and a latest-only work slot.

`ApproximateSync` is the small core of message_filters' ApproximateTimeSynchronizer: every
input keeps a short queue; when a message arrives, the newest set with one message per input and
all stamps within ``slop`` seconds is emitted, and everything up to it is dropped. Camera
streams of one frame share a stamp, so in practice the sets are exact matches; the slop covers
drivers that stamp streams separately.

`LatestSlot` hands the latest set to a worker thread: if the worker is busy, a newer set replaces
the waiting one (counted in ``dropped``), so a slow estimator always works on the newest frame.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable


def stamp_ns(msg) -> int:
    """A message's header stamp in integer nanoseconds."""
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


class ApproximateSync:
    """Matches ``n_inputs`` streams by header stamp within ``slop_s`` seconds.

    ``callback(*msgs)`` gets one message per input, in input order. ``queue_size``: messages
    kept per input while waiting for partners.
    """

    def __init__(self, n_inputs: int, slop_s: float, callback: Callable, queue_size: int = 10):
        if n_inputs < 1:
            raise ValueError(f"need at least one input, got {n_inputs}")
        if slop_s < 0:
            raise ValueError(f"slop must be >= 0 s, got {slop_s}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.slop_ns = int(round(slop_s * 1e9))
        self.callback = callback
        self._queues = [deque(maxlen=queue_size) for _ in range(n_inputs)]
        self._lock = threading.Lock()
        self.matched = 0

    def add(self, index: int, msg) -> None:
        """Feed message ``msg`` of input ``index`` (call from that input's subscription)."""
        with self._lock:
            t = stamp_ns(msg)
            self._queues[index].append((t, msg))
            match = self._match(t)
            if match is None:
                return
            for q, (tm, _) in zip(self._queues, match):
                while q and q[0][0] <= tm:
                    q.popleft()
            self.matched += 1
        self.callback(*(m for _, m in match))

    def _match(self, pivot_ns: int):
        """For the newest message as pivot, the closest message of every other input."""
        out = []
        for q in self._queues:
            if not q:
                return None
            out.append(min(q, key=lambda e: abs(e[0] - pivot_ns)))
        stamps = [e[0] for e in out]
        return out if max(stamps) - min(stamps) <= self.slop_ns else None


class LatestSlot:
    """One waiting item for a worker thread; a newer ``put`` replaces an unprocessed one."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False
        self.dropped = 0

    def put(self, item) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def get(self, timeout_s: float | None = None):
        """The waiting item (removing it), or None after ``timeout_s`` or on close."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout_s)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Worker:
    """A daemon thread that calls ``fn(item)`` for the latest item of a `LatestSlot`."""

    def __init__(self, fn: Callable, name: str = "worker"):
        self.slot = LatestSlot()
        self._fn = fn
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stop = False
        self._thread.start()

    def _run(self):
        while not self._stop:
            item = self.slot.get(timeout_s=0.2)
            if item is not None and not self._stop:
                self._fn(item)

    def stop(self, timeout_s: float = 1.0):
        """Stop after the current item; a daemon thread still busy after ``timeout_s`` is left
        to end with the process (Ctrl-C must not wait for a slow model)."""
        self._stop = True
        self.slot.close()
        self._thread.join(timeout_s)
