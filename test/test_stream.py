"""Training data machinery: render workers streaming frames, the time budget, the point pool and
the batched augmentation."""
import functools
import time

import numpy as np
import pytest
import torch

from genpose_ros import CATEGORIES
from genpose_ros.data.dataset import augment_batch
from genpose_ros.data.frame import Frame
from genpose_ros.data.pool import PointPool
from genpose_ros.data.stream import FrameStream, TimeBudget, frame_instances


def test_stream_renders_fresh_frames_and_instances():
    with FrameStream(workers=1, seed=3, views_per_scene=2, n_objects=4) as stream:
        frames = [stream.get(timeout=120) for _ in range(3)]
        procs = stream._procs
    assert all(isinstance(f, Frame) for f in frames) and stream.received == 3
    assert frames[0].depth.shape == (480, 640) and frames[0].depth.dtype == np.uint16
    assert not np.array_equal(frames[0].depth, frames[2].depth)  # a new scene after two views
    assert not any(p.is_alive() for p in procs)  # closed and joined
    items = frame_instances(frames[0], n_points=64)
    assert items and len(items) <= len(frames[0].instances)
    for it in items:
        assert it["points"].shape == (64, 3) and it["points"].dtype == np.float32
        assert 0 <= it["category"] < len(CATEGORIES) and np.isfinite(it["points"]).all()
        # the points lie around the instance's box centre
        assert np.linalg.norm(it["points"].mean(0) - it["t"]) < np.linalg.norm(it["size"])


def test_stream_with_transform_in_the_workers_and_poll():
    transform = functools.partial(frame_instances, n_points=32)
    with FrameStream(workers=1, seed=0, transform=transform, distribution="wide") as stream:
        first = stream.get(timeout=120)
        time.sleep(0.5)
        more = stream.poll(max_items=3)
    assert first["points"].shape == (32, 3) and len(more) <= 3


def test_a_failing_worker_is_reported_with_its_traceback():
    with FrameStream(workers=1, transform=len) as stream:  # len(Frame) raises TypeError
        with pytest.raises(RuntimeError, match=r"render worker 0 failed:(.|\n)*TypeError"):
            stream.get(timeout=120)


def test_stream_arguments():
    with pytest.raises(ValueError, match="at least one render worker"):
        FrameStream(workers=0)
    with pytest.raises(ValueError, match="unknown distribution 'wild'"):
        FrameStream(workers=1, distribution="wild")


def test_time_budget():
    budget = TimeBudget(0.2)
    assert not budget.spent and 0 <= budget.fraction < 1 and budget.remaining <= 0.2
    time.sleep(0.25)
    assert budget.spent and budget.fraction == 1.0 and budget.remaining == 0.0
    free = TimeBudget(None)
    assert not free.spent and free.remaining == float("inf") and free.fraction == 0.0
    with pytest.raises(ValueError, match="> 0 seconds"):
        TimeBudget(0)


def _items(n, start=0, pool_points=16):
    rng = np.random.default_rng(start)
    return [{"points": rng.normal(size=(pool_points, 3)).astype(np.float32) * 0.01 + [0, 0, 0.5],
             "R": np.eye(3, dtype=np.float32), "t": np.array([0, 0, 0.5], np.float32),
             "size": np.full(3, 0.01 * (start + i + 1), np.float32), "category": (start + i) % 6,
             "handle_visible": True} for i in range(n)]


def test_point_pool_ring_buffer_and_sampling():
    pool = PointPool(capacity=5, pool_points=16)
    pool.add(_items(3))
    assert len(pool) == 3 and pool.added == 3
    pool.add(_items(4, start=3))  # 7 added into 5 slots: the two oldest are gone
    assert len(pool) == 5 and pool.added == 7
    sizes = sorted(round(float(s), 2) for s in pool.data["size"][:, 0])
    assert sizes == [0.03, 0.04, 0.05, 0.06, 0.07]
    batch = pool.sample(8, n_points=12, generator=torch.Generator().manual_seed(0), augment=False)
    assert batch["points"].shape == (8, 12, 3) and batch["R"].shape == (8, 3, 3)
    assert batch["category"].dtype == torch.long and batch["handle_visible"].dtype == torch.bool
    for b in range(8):  # a subset of one instance's points, without repeats
        assert len(torch.unique(batch["points"][b], dim=0)) == 12
    assert pool.sample(2, n_points=40)["points"].shape == (2, 40, 3)  # more than the pool: repeats
    mean, seen = pool.mean_size(6)
    assert seen.tolist() == [True, False, True, True, True, True]  # items 2-6 left in the pool
    assert mean[2, 0] == pytest.approx(0.03) and mean[0, 0] == pytest.approx(0.07)
    drawn = pool.sample(600, n_points=4, generator=torch.Generator().manual_seed(1), augment=False,
                        category_weights=torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 3.0]))["category"]
    counts = torch.bincount(drawn, minlength=6)  # categories 2 and 5 only, about 1 : 3
    assert counts[[0, 1, 3, 4]].sum() == 0 and 100 < counts[2] < 200 and counts[2] + counts[5] == 600
    with pytest.raises(ValueError, match=r"points \(16, 3\)"):
        pool.add(_items(1, pool_points=8))
    with pytest.raises(ValueError, match="empty point pool"):
        PointPool(4, 16).sample(2, 8)


def test_batched_augmentation_keeps_points_in_their_boxes():
    g = torch.Generator().manual_seed(0)
    B = 64
    size = 0.05 + 0.2 * torch.rand(B, 3, generator=g, dtype=torch.float64)
    local = (torch.rand(B, 200, 3, generator=g, dtype=torch.float64) - 0.5) * size[:, None]
    R = torch.eye(3, dtype=torch.float64).expand(B, 3, 3).clone()
    t = torch.tensor([0.1, 0.0, 0.8], dtype=torch.float64).expand(B, 3).clone()
    cat = torch.arange(B) % len(CATEGORIES)
    cfg = {"p_box": 1.0, "box_scale": (0.8, 1.2), "p_rt": 1.0, "rot_deg": 15.0, "trans_m": 0.05,
           "p_jitter": 0.0, "jitter_m": 0.0}
    pts, R2, t2, s2 = augment_batch(local + t[:, None], R, t, size, cat, g, cfg)
    back = torch.einsum("bnk,bkj->bnj", pts - t2[:, None], R2)  # object frame
    assert (back.abs() <= s2[:, None] / 2 + 1e-9).all()
    assert torch.allclose(R2 @ R2.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(B, 3, 3))
    round_ = torch.tensor([CATEGORIES[c] in ("bottle", "bowl", "can", "mug") for c in cat])
    ratio = s2 / size
    assert torch.allclose(ratio[round_, 0], ratio[round_, 2]) and not torch.allclose(ratio[~round_, 0],
                                                                                     ratio[~round_, 2])
    assert (t2 - t).abs().max() <= 0.05 and not torch.allclose(R2, R)
    off = {**cfg, "p_box": 0.0, "p_rt": 0.0}
    same = augment_batch(local + t[:, None], R, t, size, cat, g, off)
    assert torch.equal(same[0], local + t[:, None]) and torch.equal(same[3], size)


def test_spill_augmentation_pushes_a_share_of_points_back_along_their_rays():
    g = torch.Generator().manual_seed(0)
    B, N = 32, 400
    pts = torch.tensor([0.05, -0.02, 0.7]) + 0.03 * torch.randn(B, N, 3, generator=g)
    R, t = torch.eye(3).expand(B, 3, 3).clone(), torch.tensor([0.05, -0.02, 0.7]).expand(B, 3).clone()
    size, cat = torch.full((B, 3), 0.1), torch.zeros(B, dtype=torch.long)
    cfg = {"p_box": 0.0, "box_scale": (1.0, 1.0), "p_rt": 0.0, "rot_deg": 0.0, "trans_m": 0.0,
           "p_jitter": 0.0, "jitter_m": 0.0, "p_spill": 1.0, "spill_share": (0.04, 0.06), "spill_m": (0.1, 0.2)}
    out, R2, t2, s2 = augment_batch(pts, R, t, size, cat, g, cfg)
    moved = (out - pts).norm(dim=-1) > 1e-9  # (B, N)
    assert 0.03 < moved.float().mean() < 0.07 and moved.any(1).all()
    ray = torch.nn.functional.normalize(pts, dim=-1)
    assert torch.allclose(torch.nn.functional.normalize(out, dim=-1), ray, atol=1e-6)  # same rays
    behind = out.norm(dim=-1) - pts.norm(dim=-1)
    assert (behind[moved] >= 0.1 - 1e-6).all() and (behind[moved] <= 0.2 + 1e-6).all()
    assert torch.equal(R2, R) and torch.equal(t2, t) and torch.equal(s2, size)  # the labels stay
    none = augment_batch(pts, R, t, size, cat, g, {**cfg, "p_spill": 0.0})[0]
    assert torch.equal(none, pts)
