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
from genpose_ros.data.families import mixture
from genpose_ros.data.stream import FrameStream, TimeBudget, frame_instances, scene_distribution


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


def test_a_mixture_of_distributions_draws_each_scene_from_one_of_them():
    shares = [0.5, 0.3, 0.2]
    picks = np.bincount([scene_distribution(0, k, shares) for k in range(3000)], minlength=3) / 3000
    assert np.abs(picks - shares).max() < 0.03
    assert {scene_distribution(0, k, [1.0]) for k in range(50)} == {0}  # one distribution: no draw
    assert mixture("standard=3, close=1") == {"standard": 0.75, "close": 0.25}
    assert mixture({"wide": 2, "tilted": 0}) == mixture("wide") == {"wide": 1.0}
    for bad, message in [("standard=x", "weight 'x' of standard is not a number"),
                         ("standard=1,wild=1", "unknown distribution 'wild'"),
                         ("standard=1,standard=2", "each name once"), ("close=0", "no distribution has a weight > 0"),
                         ({"wide": -1}, "the weight of wide must be a finite number >= 0")]:
        with pytest.raises(ValueError, match=message):
            mixture(bad)
    # scene k of a mixed stream is scene k of the one-distribution stream of the distribution it drew
    def frames(distribution):
        with FrameStream(workers=1, seed=1, views_per_scene=1, distribution=distribution) as stream:
            return [stream.get(timeout=120) for _ in range(6)], list(stream.mix)

    mixed, names = frames("standard=1,close=1")
    pure = {name: frames(name)[0] for name in ("standard", "close")}
    drawn = [names[scene_distribution(1, k, [0.5, 0.5])] for k in range(6)]
    assert drawn.count("standard") == drawn.count("close") == 3
    for k, name in enumerate(drawn):
        other = {"standard": "close", "close": "standard"}[name]
        assert np.array_equal(mixed[k].depth, pure[name][k].depth), (k, name)
        assert not np.array_equal(mixed[k].depth, pure[other][k].depth), (k, name)
    # the close distribution's cameras are 0.25-0.55 m from the table centre: every frame has a near object
    assert all(min(np.linalg.norm(inst.t) for inst in f.instances) < 0.6 for f in pure["close"])


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


def _blob(seed: int, shape=(40, 50)) -> np.ndarray:
    """A random blob mask that touches the image's left border."""
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(np.random.default_rng(seed).random(shape), 4)
    mask = noise > np.quantile(noise, 0.6)
    mask[15:25, :8] = True
    return mask


@pytest.mark.parametrize("seed", [0, 1])
def test_outline_margins_are_one_sided_erosions(seed):
    from scipy.ndimage import binary_erosion

    from genpose_ros.data.pointcloud import OUTLINE_CAP, outline_margins

    mask = _blob(seed)
    margins = outline_margins(mask)
    assert margins.shape == mask.shape + (4,) and margins.dtype == np.uint8
    assert not margins[~mask].any() and margins.max() == OUTLINE_CAP
    for side, (dy, dx) in enumerate(((1, 0), (-1, 0), (0, 1), (0, -1))):
        for k in range(1, OUTLINE_CAP + 1):
            # a line of k + 1 pixels from the pixel towards that side, outside the image = outside the mask
            line = np.zeros((2 * k + 1, 2 * k + 1), dtype=bool)
            for j in range(k + 1):
                line[k + j * dy, k + j * dx] = True
            eroded = binary_erosion(mask, structure=line, border_value=0)
            assert np.array_equal(margins[..., side] >= k, eroded), (side, k)
    assert (margins[:, 0, 3] == 0).all()  # the image border is an outline


def test_object_points_carry_the_margins_of_their_pixels():
    from genpose_ros.data.camera import Intrinsics
    from genpose_ros.data.pointcloud import object_points, outline_margins

    mask = _blob(2)
    depth = np.where(mask, 700, 0).astype(np.uint16)
    depth[::7, ::5] = 0  # pixels without depth are left out of the points, not of the mask
    intr = Intrinsics(50, 40, fx=60.0, fy=60.0, cx=25.0, cy=20.0)
    pts, margins = object_points(depth, mask, intr, 300, np.random.default_rng(0), margins=True)
    assert pts.shape == (300, 3) and margins.shape == (300, 4)
    u = np.round(pts[:, 0] / pts[:, 2] * intr.fx + intr.cx).astype(int)
    v = np.round(pts[:, 1] / pts[:, 2] * intr.fy + intr.cy).astype(int)
    assert np.array_equal(margins, outline_margins(mask)[v, u])
    assert np.array_equal(pts, object_points(depth, mask, intr, 300, np.random.default_rng(0)))


def test_outline_augmentation_leaves_out_the_eroded_outline_first():
    from genpose_ros.data.dataset import outline_keep

    g = torch.Generator().manual_seed(0)
    B, P = 16, 64
    margins = torch.randint(0, 4, (B, P, 4), generator=g, dtype=torch.uint8)
    assert outline_keep(margins, g, {"p_outline": 0.0, "outline_px": [1.0]}) is None
    always_two = {"p_outline": 1.0, "outline_px": [0.0, 0.0, 1.0]}
    assert torch.equal(outline_keep(margins, g, always_two), (margins >= 2).all(-1))
    kept = outline_keep(margins, g, {"p_outline": 0.5, "outline_px": [0.0, 1.0]})
    eroded = (kept != torch.ones_like(kept)).any(1)  # instances that lost points
    assert 3 <= eroded.sum() <= 13 and torch.equal(kept[eroded], (margins[eroded] >= 1).all(-1))

    pool = PointPool(capacity=4, pool_points=P)
    items = _items(4, pool_points=P)
    for i, it in enumerate(items):  # x of a point = its margin below; every other point at the outline
        it["margins"] = np.full((P, 4), 3, np.uint8)
        it["margins"][::2, 0] = 0
        it["points"][:, 0] = it["margins"][:, 0]
    pool.add(items)
    cfg = {"p_box": 0.0, "p_rt": 0.0, "p_jitter": 0.0, "p_outline": 1.0, "outline_px": [0.0, 1.0]}
    few = pool.sample(8, n_points=20, generator=g, augment_cfg=cfg)["points"]
    assert (few[..., 0] == 3).all()  # enough points inside: none of the outline
    many = pool.sample(8, n_points=48, generator=g, augment_cfg=cfg)["points"]
    assert ((many[..., 0] == 3).sum(1) == 32).all()  # all 32 inside, the outline fills up
    plain = pool.sample(64, n_points=20, generator=g, augment=False)["points"]
    assert (plain[..., 0] == 0).any()
    pool.add(_items(2, pool_points=P))  # items without margins are never eroded
    assert (pool.data["margins"][:2] == 3).all()
