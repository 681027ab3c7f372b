"""Approximate time sync and the latest-only slot."""
import threading
import time

import pytest

from std_msgs.msg import Header  # noqa: E402

from genpose_ros.ros.sync import ApproximateSync, LatestSlot, Worker  # noqa: E402


class Msg:
    def __init__(self, sec, nanosec=0, tag=""):
        self.header = Header()
        self.header.stamp.sec, self.header.stamp.nanosec = sec, nanosec
        self.tag = tag


def test_matches_within_slop_and_drops_older():
    got = []
    sync = ApproximateSync(3, 0.02, lambda *m: got.append(tuple(x.tag for x in m)))
    sync.add(0, Msg(1, 0, "a1"))
    sync.add(1, Msg(1, 10_000_000, "b1"))          # 10 ms later: within slop
    assert got == []
    sync.add(0, Msg(2, 0, "a2"))
    sync.add(2, Msg(1, 5_000_000, "c1"))
    assert got == [("a1", "b1", "c1")]
    sync.add(1, Msg(2, 50_000_000, "b2"))          # 50 ms off: no match
    sync.add(2, Msg(2, 0, "c2"))
    assert got == [("a1", "b1", "c1")]
    sync.add(1, Msg(2, 0, "b2x"))
    assert got[-1] == ("a2", "b2x", "c2")
    assert sync.matched == 2


def test_newest_set_wins_when_inputs_lag():
    got = []
    sync = ApproximateSync(2, 0.0, lambda *m: got.append(tuple(x.tag for x in m)))
    for s in range(1, 4):
        sync.add(0, Msg(s, 0, f"a{s}"))
    sync.add(1, Msg(3, 0, "b3"))
    assert got == [("a3", "b3")]
    sync.add(1, Msg(2, 0, "b2"))                   # a2 was dropped with the older ones
    assert got == [("a3", "b3")]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="slop"):
        ApproximateSync(2, -1.0, print)
    with pytest.raises(ValueError, match="at least one input"):
        ApproximateSync(0, 0.1, print)


def test_latest_slot_keeps_only_newest():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.get(0.1) == 4 and slot.dropped == 4
    assert slot.get(0.05) is None


def test_worker_processes_latest_while_busy():
    seen, gate = [], threading.Event()

    def fn(item):
        gate.wait(2.0)
        seen.append(item)

    worker = Worker(fn)
    worker.slot.put(0)
    time.sleep(0.1)                                # the worker is now blocked on item 0
    for i in range(1, 6):
        worker.slot.put(i)
    gate.set()
    deadline = time.monotonic() + 2.0
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert seen == [0, 5]
