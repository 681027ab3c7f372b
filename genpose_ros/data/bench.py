"""Rendering-rate measurement (``genpose data bench``)."""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np


def _render_batch(args) -> float:
    n_frames, n_objects, seed, out = args
    from genpose_ros.data.nocs_io import write_frame
    from genpose_ros.data.render import Renderer
    from genpose_ros.data.scenes import sample_camera_pose, sample_scene
    rng = np.random.default_rng(seed)
    renderer = Renderer()
    scene = sample_scene(rng, n_objects)
    renderer.render(scene, sample_camera_pose(rng, scene), rng)  # warm-up
    cpu0 = time.process_time()
    for i in range(n_frames):
        if i % 4 == 0:  # a new scene every 4 views, as the generator does
            scene = sample_scene(rng, n_objects)
        frame = renderer.render(scene, sample_camera_pose(rng, scene), rng)
        if out:
            write_frame(os.path.join(out, str(seed)), i, frame)
    return time.process_time() - cpu0


def render_rate(n_frames: int = 40, n_objects: int = 8, workers: int = 2, write: bool = False) -> dict:
    """Frames per second (wall clock) rendering ``n_frames`` 640x480 frames of scenes with
    ``n_objects`` objects, split over ``workers`` processes (scene sampling included)."""
    per = [n_frames // workers + (1 if k < n_frames % workers else 0) for k in range(workers)]
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(n, n_objects, k, tmp if write else None) for k, n in enumerate(per)]
        t0 = time.time()
        if workers > 1:
            import multiprocessing as mp
            with mp.get_context("fork").Pool(workers) as pool:
                cpu = pool.map(_render_batch, jobs)
        else:
            cpu = [_render_batch(jobs[0])]
        wall = time.time() - t0
    return {"frames": n_frames, "workers": workers, "seconds": wall,
            "frames_per_second": n_frames / wall, "cpu_seconds_per_frame": sum(cpu) / n_frames}
