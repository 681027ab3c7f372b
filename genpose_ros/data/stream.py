"""Training data rendered on the fly, and a wall-clock budget for training runs.

``FrameStream`` starts N worker processes that render fresh random table scenes with the
project's renderer (``genpose_ros.data.render``) and put the results into a bounded queue, so a
machine with many cores renders while its GPU trains and the data never runs out. Each worker
renders scene after scene (``views_per_scene`` camera poses each); scene ``k`` of a stream
draws from its own generator seeded by ``(seed, k)``, and with a mixture of distributions
(``distribution="standard=0.6,wide=0.4"``) first picks its distribution by their shares.
``transform`` (a picklable function, run inside the workers) turns each rendered ``Frame``
into a list of items; without it the items are the ``Frame`` objects themselves::

    from genpose_ros.data.stream import FrameStream, TimeBudget

    budget = TimeBudget(420)                       # seconds from now, render warm-up included
    with FrameStream(workers=12, seed=0) as frames:    # segmentation: whole frames
        for frame in frames:                       # Frame(color, depth, mask, instances, ...)
            ...
            if budget.spent:
                break

    # pose training: per-instance point pools, cut inside the workers (small to transfer)
    with FrameStream(workers=12, transform=functools.partial(frame_instances, n_points=1024)) as s:
        new_items = s.poll(max_items=256)          # whatever has arrived; never blocks
        item = s.get(timeout=60)                   # blocks; raises when the workers have failed

A worker that fails reports its traceback through the queue: ``get``/``poll`` raise a
``RuntimeError`` naming it. Workers are daemons; ``close()`` (or leaving the ``with`` block)
stops and joins them. They run single-threaded (OMP/BLAS/OpenCV) so N workers use N cores.

``TimeBudget(seconds)`` measures from its creation: ``elapsed``, ``remaining``, ``fraction``
(0..1) and ``spent``; ``TimeBudget(None)`` never runs out.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue as queue_mod
import time
import traceback

STREAM_CODE = 3  # seed-sequence tag of streamed scenes (generate.py uses the split codes 0-2)
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class TimeBudget:
    """Wall-clock budget in seconds, counted from construction; ``None`` = unlimited."""

    def __init__(self, seconds: float | None):
        if seconds is not None and not seconds > 0:
            raise ValueError(f"a time budget must be > 0 seconds, got {seconds}")
        self.seconds = seconds
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def remaining(self) -> float:
        return float("inf") if self.seconds is None else max(0.0, self.seconds - self.elapsed)

    @property
    def fraction(self) -> float:
        """Share of the budget spent, 0..1 (0 when unlimited)."""
        return 0.0 if self.seconds is None else min(1.0, self.elapsed / self.seconds)

    @property
    def spent(self) -> bool:
        return self.remaining <= 0.0


def frame_instances(frame, n_points: int = 1024, min_points: int = 50, seed: int = 0) -> list[dict]:
    """A rendered ``Frame`` -> one dict per usable instance: ``points`` (n_points, 3) float32
    camera-frame metres (sampled from its valid depth pixels), ``R`` (3, 3), ``t`` (3,),
    ``size`` (3,) float32, ``category`` (index into CATEGORIES), ``handle_visible`` (bool),
    ``margins`` (n_points, 4) uint8 (``pointcloud.outline_margins``).
    Instances with fewer than ``min_points`` valid depth pixels are left out."""
    import zlib

    import numpy as np

    from genpose_ros import CATEGORIES
    from genpose_ros.data.pointcloud import TooFewPointsError, object_points

    rng = np.random.default_rng([seed, zlib.crc32(frame.depth)])  # reproducible per frame
    items = []
    for inst in frame.instances:
        try:
            pts, margins = object_points(frame.depth, frame.mask == inst.instance_id, frame.intrinsics,
                                         n_points, rng, min_points, margins=True)
        except TooFewPointsError:
            continue
        f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
        items.append({"points": pts, "R": f32(inst.R), "t": f32(inst.t), "size": f32(inst.size),
                      "category": CATEGORIES.index(inst.category),
                      "handle_visible": bool(inst.handle_visible), "margins": margins})
    return items


@contextlib.contextmanager
def _single_threaded_children():
    """Environment inherited by processes started inside: one OpenMP / BLAS thread."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _render_worker(index: int, workers: int, seed: int, views: int, n_objects, noise: bool,
                   mix: dict, transform, out, stop, parent: int) -> None:
    """Worker process: renders scenes index, index + workers, ... until ``stop`` is set or the
    parent process is gone (an orphan never keeps rendering)."""
    def running() -> bool:
        return not stop.is_set() and os.getppid() == parent

    try:
        import cv2
        import numpy as np

        from genpose_ros.data.generate import scene_frames
        from genpose_ros.data.render import Renderer
        from genpose_ros.data.sensor import SensorModel

        cv2.setNumThreads(1)
        names, shares = list(mix), list(mix.values())
        renderers = {}  # one per distribution: the wide one swaps its sensor model every frame
        k = index
        while running():
            rng = np.random.default_rng(np.random.SeedSequence([seed, STREAM_CODE, k]))
            distribution = names[scene_distribution(seed, k, shares)]
            if distribution not in renderers:
                renderers[distribution] = Renderer(sensor=SensorModel() if noise else None)
            for frame in scene_frames(renderers[distribution], rng, views, n_objects, distribution, noise):
                for item in (transform(frame) if transform else [frame]):
                    while running():
                        try:
                            out.put(item, timeout=0.5)
                            break
                        except queue_mod.Full:
                            continue
            k += workers
    except Exception:  # reported to the consumer, which raises it with the worker's traceback
        with contextlib.suppress(queue_mod.Full):
            out.put(_WorkerFailure(index, traceback.format_exc()), timeout=5.0)


def scene_distribution(seed: int, k: int, shares: list[float]) -> int:
    """Index of the distribution streamed scene ``k`` draws from (shares of a mixture); its own
    generator, so a one-distribution stream renders exactly the scenes it rendered before."""
    import numpy as np

    if len(shares) == 1:
        return 0
    rng = np.random.default_rng(np.random.SeedSequence([seed, STREAM_CODE, k, 1]))
    return int(rng.choice(len(shares), p=np.asarray(shares) / sum(shares)))


class _WorkerFailure:
    def __init__(self, index: int, text: str):
        self.index, self.text = index, text


class FrameStream:
    """Fresh rendered frames (or ``transform``-ed items) from ``workers`` processes.

    Args:
        workers: render processes (>= 1); each uses one core.
        seed: stream seed (scene k draws from ``SeedSequence([seed, 3, k])``).
        views_per_scene: camera poses rendered per random scene.
        n_objects: objects per scene (default: the scene generator's range).
        noise: apply the D435 depth sensor model.
        distribution: a distribution of ``genpose_ros.data.DISTRIBUTIONS`` ("wide" also draws a
            depth sensor per frame) or a mixture of them (``families.mixture``: "standard=0.6,
            wide=0.4" or {"standard": 0.6, "wide": 0.4}): each scene draws one by its share.
        transform: picklable ``Frame -> list[item]`` run in the workers (default: the frame).
        max_queue: bound of the queue (workers wait when it is full).
        start_method: multiprocessing start method; "spawn" is safe after CUDA or torch threads
            have started in the parent.
    """

    def __init__(self, workers: int = 2, seed: int = 0, views_per_scene: int = 4,
                 n_objects: int | None = None, noise: bool = True, distribution: str | dict = "standard",
                 transform=None, max_queue: int = 256, start_method: str = "spawn"):
        from genpose_ros.data.families import mixture

        self.mix = mixture(distribution)
        if workers < 1:
            raise ValueError(f"a frame stream needs at least one render worker, got {workers}")
        if views_per_scene < 1 or max_queue < 1:
            raise ValueError(f"views_per_scene and max_queue must be >= 1, got {views_per_scene}, {max_queue}")
        ctx = mp.get_context(start_method)
        self._queue = ctx.Queue(max_queue)
        self._stop = ctx.Event()
        self._procs = [ctx.Process(target=_render_worker, daemon=True, name=f"render-{i}",
                                   args=(i, workers, seed, views_per_scene, n_objects, noise, self.mix,
                                         transform, self._queue, self._stop, os.getpid()))
                       for i in range(workers)]
        self.received = 0
        with _single_threaded_children():
            for p in self._procs:
                p.start()

    def _take(self, item):
        if isinstance(item, _WorkerFailure):
            self.close()
            raise RuntimeError(f"render worker {item.index} failed:\n{item.text}")
        self.received += 1
        return item

    def get(self, timeout: float | None = None):
        """The next item; waits up to ``timeout`` seconds (None: as long as a worker lives)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self._take(self._queue.get(timeout=1.0))
            except queue_mod.Empty:
                if not any(p.is_alive() for p in self._procs):
                    raise RuntimeError("all render workers have stopped (closed, or killed by the "
                                       "system: out of memory?)") from None
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"no rendered item within {timeout:.0f} s") from None

    def poll(self, max_items: int = 1024) -> list:
        """Up to ``max_items`` items that have already arrived (never waits)."""
        items = []
        while len(items) < max_items:
            try:
                items.append(self._take(self._queue.get_nowait()))
            except queue_mod.Empty:
                break
        return items

    def __iter__(self):
        while True:
            yield self.get()

    def close(self) -> None:
        """Stop the workers and wait for them (a few seconds at most)."""
        self._stop.set()
        deadline = time.monotonic() + 5.0
        for p in self._procs:
            while p.is_alive() and time.monotonic() < deadline:
                with contextlib.suppress(queue_mod.Empty, OSError, ValueError):
                    self._queue.get(timeout=0.05)  # unblock a worker waiting on a full queue
            if p.is_alive():
                p.terminate()
            p.join(timeout=1.0)
        self._queue.cancel_join_thread()

    def __enter__(self) -> "FrameStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
