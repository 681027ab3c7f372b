"""Approximate time synchronisation of several message streams, and a latest-only work slot.

`ApproximateSync` is the small core of message_filters' ApproximateTimeSynchronizer: every
input keeps a short queue; when a message arrives, the newest set with one message per input and
all stamps within ``slop`` seconds is emitted, and everything up to it is dropped. Camera
streams of one frame share a stamp, so in practice the sets are exact matches; the slop covers
drivers that stamp streams separately. Inputs that keep arriving but never match (a stream
stamped off by more than the slop) are reported through ``on_stall`` with their stamps.

`StampOrder` drops sets that are not newer than the last one (duplicates, late arrivals) and
recognises a source that restarted (a bag played again) by a large jump back.

`LatestSlot` hands the latest set to a worker thread: if the worker is busy, a newer set replaces
the waiting one (counted in ``dropped``), so a slow estimator always works on the newest frame.
"""
from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from typing import Callable


def stamp_ns(msg) -> int:
    """A message's header stamp in integer nanoseconds."""
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


def stamp_text(t_ns: int) -> str:
    return f"{t_ns // 1_000_000_000}.{t_ns % 1_000_000_000:09d}"


class ApproximateSync:
    """Matches ``n_inputs`` streams by header stamp within ``slop_s`` seconds.

    ``callback(*msgs)`` gets one message per input, in input order. ``queue_size``: messages
    kept per input while waiting for partners. ``on_stall(text)`` is called (on every new
    message) when inputs (``names``) have sent nothing for ``silent_s`` seconds while the
    others have been sending for as long, naming them, and while every input has messages but
    none matched for ``stall_s`` seconds, naming the closest stamps they hold, how far apart
    they are and the slop.
    """

    def __init__(self, n_inputs: int, slop_s: float, callback: Callable, queue_size: int = 10,
                 names: list[str] | None = None, on_stall: Callable[[str], None] | None = None,
                 stall_s: float = 1.0, silent_s: float = 5.0):
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
        self.names = list(names) if names else [f"input {i}" for i in range(n_inputs)]
        self.on_stall, self.stall_s, self.silent_s = on_stall, stall_s, silent_s
        self._last_match = time.monotonic()
        self._seen: list[float | None] = [None] * n_inputs   # when each input last sent
        self._first: float | None = None                      # the first message of any input
        self._after = [Counter() for _ in range(n_inputs)]    # other inputs' messages since each last sent
        self._others_since: list[float | None] = [None] * n_inputs  # when another input first sent after it

    def add(self, index: int, msg) -> None:
        """Feed message ``msg`` of input ``index`` (call from that input's subscription)."""
        with self._lock:
            t = stamp_ns(msg)
            self._queues[index].append((t, msg))
            age = self.last_message_age()
            if age is not None and 0 < self.silent_s <= age:
                self._after = [Counter() for _ in self._after]      # a pause of every input: the watch
                self._others_since = [None] * len(self._after)      # for silent ones starts over
            self._seen[index] = time.monotonic()
            self._first = self._first or self._seen[index]
            self._after[index].clear()
            self._others_since[index] = None
            for i, after in enumerate(self._after):
                if i != index:
                    after[index] += 1
                    self._others_since[i] = self._others_since[i] or self._seen[index]
            cand = self._closest(t)
            match = cand if cand is not None and _spread(cand) <= self.slop_ns else None
            stall = self._stall_text(index) if match is None else None
            if match is not None:
                for q, (tm, _) in zip(self._queues, match):
                    while q and q[0][0] <= tm:
                        q.popleft()
                self.matched += 1
                self._last_match = time.monotonic()
        if match is not None:
            self.callback(*(m for _, m in match))
        elif stall and self.on_stall is not None:
            self.on_stall(stall)

    def last_message_age(self) -> float | None:
        """Seconds since any input last sent a message (None: none has yet)."""
        seen = [t for t in self._seen if t is not None]
        return time.monotonic() - max(seen) if seen else None

    def _closest(self, pivot_ns: int):
        """The (stamp, message) of every input closest to ``pivot_ns``; None while one is empty."""
        if not all(self._queues):
            return None
        return [min(q, key=lambda e: abs(e[0] - pivot_ns)) for q in self._queues]

    def _stall_text(self, index: int) -> str | None:
        """Why nothing matched (input ``index`` just sent): inputs that have sent nothing for
        ``silent_s`` while others send, or, after ``stall_s``, the best set the queues hold and
        its spread."""
        now = time.monotonic()
        quiet = [now - (t if t is not None else self._first) for t in self._seen]
        # silent: nothing for silent_s while the others have been arriving for silent_s, one of them
        # three times (not when all resume after a pause and this one's first message is still on its way)
        since = self._others_since
        silent = [i for i, q in enumerate(quiet)
                  if i != index and q >= self.silent_s and since[i] is not None
                  and now - since[i] >= self.silent_s and max(self._after[i].values(), default=0) >= 3]
        if silent:
            return (f"no message on {', '.join(self.names[i] for i in silent)} for "
                    f"{min(quiet[i] for i in silent):.1f} s while "
                    f"{', '.join(n for i, n in enumerate(self.names) if i not in silent)} arrive: is it published "
                    "under that name? (namespace, remapping, or a driver option such as "
                    "realsense2_camera's align_depth.enable)")
        waited = now - self._last_match
        if waited < self.stall_s or not all(self._queues):
            return None
        best = min((self._closest(t) for q in self._queues for t, _ in q), key=_spread)
        stamps = ", ".join(f"{n} {stamp_text(t)}" for n, (t, _) in zip(self.names, best))
        return (f"inputs not synchronised for {waited:.1f} s: the closest stamps ({stamps}) are "
                f"{_spread(best) / 1e6:.1f} ms apart, more than the slop of "
                f"{self.slop_ns / 1e6:.1f} ms")


def _spread(entries) -> int:
    stamps = [t for t, _ in entries]
    return max(stamps) - min(stamps)


class StampOrder:
    """Accepts only stamps newer than the last accepted one.

    ``check(t_ns)`` -> ``(accept, note)``: a duplicate or older stamp is refused with a note; a
    stamp more than ``restart_s`` older than the last is taken as a restarted source (a bag
    played again, a simulation reset) and accepted with a note, so playback is not blocked.
    """

    def __init__(self, restart_s: float = 1.0):
        if not restart_s > 0:
            raise ValueError(f"stamp restart threshold must be > 0 s, got {restart_s}")
        self.restart_ns = int(restart_s * 1e9) if math.isfinite(restart_s) else None
        self.last_ns: int | None = None

    def check(self, t_ns: int) -> tuple[bool, str | None]:
        last = self.last_ns
        if last is not None and t_ns <= last:
            back = last - t_ns
            if self.restart_ns is None or back <= self.restart_ns:
                what = "repeats" if back == 0 else f"is {back / 1e6:.1f} ms older than"
                return False, f"stamp {stamp_text(t_ns)} {what} the last frame's; dropped"
            self.last_ns = t_ns
            return True, (f"stamps jumped back {back / 1e9:.1f} s (from {stamp_text(last)} to "
                          f"{stamp_text(t_ns)}): the source restarted; starting over")
        self.last_ns = t_ns
        return True, None


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
