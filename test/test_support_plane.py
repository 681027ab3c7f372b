"""Masks fitted to the table plane (segmentation/support.py) on rendered scenes."""
from dataclasses import replace

import cv2
import numpy as np
import pytest

from genpose_ros.data.render import Renderer
from genpose_ros.data.scenes import sample_camera_pose, sample_scene
from genpose_ros.segmentation.support import SupportPlane, fit_plane, snap_masks


@pytest.fixture(scope="module")
def scene_frame():
    rng = np.random.default_rng(5)
    scene = sample_scene(rng, n_objects=4)
    T_world_cam = sample_camera_pose(rng, scene)
    return Renderer().render(scene, T_world_cam, rng), T_world_cam


def table_height(frame, T_world_cam):
    """(H, W) height above the table top (world z = 0) of every depth pixel, m (NaN: no depth)."""
    z = frame.depth.astype(np.float64) / 1000.0
    rays = frame.intrinsics.pixel_rays().astype(np.float64)
    world = (rays * z[..., None]) @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]
    return np.where(z > 0, world[..., 2], np.nan)


def test_fit_plane_finds_the_table(scene_frame):
    frame, T = scene_frame
    objects = frame.mask > 0
    n, d = fit_plane(frame.depth, frame.intrinsics.fx, objects)
    up = T[:3, :3].T @ np.array([0.0, 0.0, 1.0])       # world up in the camera frame
    assert np.degrees(np.arccos(np.clip(n @ up, -1, 1))) < 2.0
    assert abs(d - T[2, 3]) < 0.01                        # the camera's height above the table
    # no plane in a depth image of scattered values: nothing to snap to
    noise = np.random.default_rng(0).integers(300, 3000, frame.depth.shape).astype(np.uint16)
    assert fit_plane(noise, frame.intrinsics.fx) is None
    assert fit_plane(np.zeros_like(frame.depth), frame.intrinsics.fx) is None


def test_snap_masks_drops_the_table_and_restores_the_foot(scene_frame):
    frame, T = scene_frame
    height = table_height(frame, T)
    kernel = np.ones((3, 3), np.uint8)
    gts, drawn = [], []
    for inst in frame.instances:
        gt = frame.mask == inst.instance_id
        ring = cv2.dilate(gt.astype(np.uint8), kernel, iterations=2).astype(bool) & (frame.mask == 0)
        lower = np.zeros_like(gt)
        lower[:-2] = gt[2:]                                      # the mask drawn 2 px short at the bottom ...
        gts.append(gt)
        drawn.append((gt & lower) | (ring & (height < 0.002)))  # ... and spilling onto the table
    gts, drawn = np.array(gts), np.array(drawn)
    settings = SupportPlane(trim_height=0.003, grow_px=2, grow_height=0.01)
    snapped = snap_masks(drawn, frame.depth, frame.intrinsics.fx, settings)
    assert snapped.shape == drawn.shape and snapped.dtype == bool
    for gt, before, after in zip(gts, drawn, snapped):
        on_table = ~gt & before
        assert on_table.any() and not (after & ~gt & (height < 0.002)).any()
        iou = lambda m: (m & gt).sum() / (m | gt).sum()     # noqa: E731
        assert iou(after) > iou(before)
        missed = gt & ~before & (height > 0.015)             # the foot band above the table ...
        assert (after[missed]).mean() > 0.9                  # ... is back
    # grown pixels go to no mask that another object holds
    for i, after in enumerate(snapped):
        others = np.delete(drawn, i, axis=0).any(axis=0)
        assert not (after & ~drawn[i] & others).any()
    # without growing, a mask only loses pixels
    trimmed = snap_masks(drawn, frame.depth, frame.intrinsics.fx, replace(settings, grow_px=0))
    assert not (trimmed & ~drawn).any() and (trimmed != drawn).any()


def test_snap_masks_without_a_plane_or_masks_changes_nothing(scene_frame):
    frame, _ = scene_frame
    masks = np.array([frame.mask == inst.instance_id for inst in frame.instances])
    noise = np.random.default_rng(1).integers(300, 3000, frame.depth.shape).astype(np.uint16)
    assert (snap_masks(masks, noise, frame.intrinsics.fx) == masks).all()
    empty = np.zeros((0, *frame.depth.shape), bool)
    assert snap_masks(empty, frame.depth, frame.intrinsics.fx).shape == empty.shape


@pytest.mark.parametrize("bad, match", [({"grow_px": 20}, "grow_px must be a whole number of pixels 0-10"),
                                        ({"grow_px": 1.5}, "grow_px must be a whole number"),
                                        ({"trim_height": -0.01}, "heights must be >= 0 m"),
                                        ({"min_inliers": 1.5}, "0 < min_inliers < 1")])
def test_bad_settings_are_one_line(bad, match):
    with pytest.raises(ValueError, match=match):
        SupportPlane(**bad)


def test_shipped_segmenter_masks_leave_the_table(scene_frame):
    """With config/maskrcnn.yaml's options the shipped Mask R-CNN's masks hold no pixel of the
    table top; the same masks without the support plane do."""
    import torch

    from genpose_ros.paths import package_share
    from genpose_ros.segmentation.load import load_segmenter, segmenter_options

    path = package_share() / "models" / "maskrcnn_light.pt"
    if not path.is_file():
        pytest.skip("no shipped Mask R-CNN weights")
    torch.set_num_threads(1)
    frame, T = scene_frame
    options = segmenter_options()
    assert options["support"] == SupportPlane(trim_height=0.003, grow_px=0, grow_height=0.01)
    on_table = table_height(frame, T) < 0.002
    with_plane = load_segmenter(str(path), **options).predict(frame.color, frame.depth, frame.intrinsics.fx)
    without = load_segmenter(str(path), **dict(options, support=None)).predict(frame.color, frame.depth,
                                                                               frame.intrinsics.fx)
    assert len(with_plane) == len(without) >= 2
    assert sum(int((d.mask & on_table).sum()) for d in without) > 0
    assert sum(int((d.mask & on_table).sum()) for d in with_plane) == 0
    for a, b in zip(with_plane, without):
        assert not (a.mask & ~b.mask).any() and a.category == b.category


# -- poses fitted to the table (pose/support.py) ----------------------------------------------------

def test_table_plane_is_in_the_camera_frame_with_an_off_centre_principal_point(scene_frame):
    from genpose_ros.pose.support import table_plane

    frame, T = scene_frame
    K = replace(frame.intrinsics, cx=frame.intrinsics.cx + 40.0, cy=frame.intrinsics.cy - 30.0)
    rays = K.pixel_rays().astype(np.float64)             # re-project the table's depth with the shifted K
    up, height = T[:3, :3].T @ np.array([0.0, 0.0, 1.0]), T[2, 3]
    z = height / np.clip(-(rays @ up), 1e-6, None)         # rays meeting the plane up . p + height = 0
    depth = np.where((z > 0) & (z < 5), z * 1000, 0).astype(np.uint16)
    n, d = table_plane(depth, K)
    assert np.degrees(np.arccos(np.clip(n @ up, -1, 1))) < 0.5 and abs(d - height) < 0.005
    assert table_plane(depth, K, up=up) is not None                    # it faces up: the table
    side = np.cross(up, [1.0, 0.0, 0.0])
    assert table_plane(depth, K, up=side / np.linalg.norm(side)) is None   # facing sideways: a wall
    with pytest.raises(ValueError, match="differ in size"):
        table_plane(depth, K, np.zeros((2, 10, 10), bool))


def _box(tilt_deg: float, bottom: float, size=(0.06, 0.12, 0.06), x: float = 0.0):
    """An upright box (y along the plane's normal z) tilted about x, its lowest point ``bottom``
    above the plane z = 0."""
    import torch
    from scipy.spatial.transform import Rotation

    R = torch.tensor(Rotation.from_euler("x", tilt_deg, degrees=True).as_matrix() @ np.array(
        [[1, 0, 0], [0, 0, -1], [0, 1, 0]]), dtype=torch.float64)   # object y -> world z
    s = torch.tensor(size, dtype=torch.float64)
    reach = 0.5 * (s * R[2].abs()).sum()
    return R, torch.tensor([x, 0.0, float(bottom + reach)], dtype=torch.float64), s


PLANE = (np.array([0.0, 0.0, 1.0]), 0.0)


def _rest(boxes, **kw):
    import torch
    from genpose_ros.pose.support import RestSettings, rest_on_plane

    R, t, s = (torch.stack(x) for x in zip(*boxes))
    return rest_on_plane(R, t, s, PLANE, RestSettings(**kw))


def test_rest_on_plane_aligns_and_extends_a_box_standing_on_the_table():
    import torch

    R0, t0, s0 = _box(5.0, 0.03)            # 5 deg off, its bottom 3 cm up (a missed band at its foot)
    R, t, s = _rest([(R0, t0, s0)])
    assert torch.allclose(R[0, :, 1], torch.tensor([0.0, 0.0, 1.0], dtype=R.dtype), atol=1e-9)  # y on the normal
    assert torch.allclose(R[0].T @ R[0], torch.eye(3, dtype=R.dtype), atol=1e-9)
    top_aligned = t0[2] + 0.5 * s0[1]                                  # the top once aligned about its centre
    assert abs(float(t[0, 2] - 0.5 * s[0, 1])) < 1e-9                 # bottom on the plane
    assert abs(float(t[0, 2] + 0.5 * s[0, 1] - top_aligned)) < 1e-9    # top kept
    assert torch.allclose(s[0, [0, 2]], s0[[0, 2]])
    # an upside-down box is aligned the same way (its y axis onto the downward normal)
    Ru, tu, su = _box(175.0, 0.0)
    R, _, _ = _rest([(Ru, tu, su)])
    assert torch.allclose(R[0, :, 1], torch.tensor([0.0, 0.0, -1.0], dtype=R.dtype), atol=1e-9)


@pytest.mark.parametrize("tilt, bottom, aligned, extended", [
    (12.0, 0.03, False, False),   # leaning: left as estimated
    (0.0, 0.002, True, False),    # on the table already (under min_gap)
    (5.0, 0.12, True, False),     # held above the table (over max_gap)
    (0.0, -0.01, True, False),    # reaching into the table: not moved
])
def test_rest_on_plane_leaves_what_does_not_stand_on_the_table(tilt, bottom, aligned, extended):
    import torch

    R0, t0, s0 = _box(tilt, bottom)
    R, t, s = _rest([(R0, t0, s0)])
    assert bool(torch.allclose(R, R0[None])) != aligned or tilt == 0.0
    assert torch.allclose(s[0], s0) and torch.allclose(t[0], t0)
    R, t, s = _rest([(R0, t0, s0)], align_deg=0.0)      # off
    assert torch.equal(R[0], R0) and torch.equal(t[0], t0)


def test_rest_on_plane_keeps_a_stacked_object_on_the_one_under_it():
    import torch

    below = _box(0.0, 0.0, size=(0.16, 0.05, 0.16))                 # a bowl on the table, 5 cm high
    above = _box(3.0, 0.052, size=(0.08, 0.10, 0.08), x=0.01)       # a can standing on it
    beside = _box(3.0, 0.03, size=(0.08, 0.10, 0.08), x=0.4)        # a can beside both, 3 cm short
    R, t, s = _rest([below, above, beside])
    assert torch.allclose(s[1], above[2]) and abs(float(t[1, 2] - above[1][2])) < 1e-3   # not pulled into the bowl
    assert abs(float(t[2, 2] - 0.5 * s[2, 1])) < 1e-9                                    # the free one rests


def test_estimator_fits_its_poses_to_the_plane_it_is_given(tiny_pose_checkpoint):
    from genpose_ros.config import ConfigError
    from genpose_ros.pose.estimator import PoseEstimator

    rng = np.random.default_rng(0)
    pts = (rng.normal(0, 0.03, (4, 256, 3)) + [0.0, 0.0, 0.8]).astype(np.float32)
    cats = ["bottle", "mug", "can", "laptop"]
    plane = (np.array([0.0, -0.8, -0.6]), 0.6)
    runs = {}
    for key, kw in (("free", {}), ("plane", {"support_plane": plane})):
        est = PoseEstimator.from_checkpoint(tiny_pose_checkpoint, seed=3)
        runs[key] = est.estimate(pts, cats, mode="score_scaling", **kw)
    cos = np.abs(np.einsum("bij,i->bj", runs["free"].R, plane[0])).max(axis=1)
    near = cos >= np.cos(np.radians(8.0))
    after = np.abs(np.einsum("bij,i->bj", runs["plane"].R, plane[0])).max(axis=1)
    assert np.all(after[near] > 1 - 1e-5)                                    # aligned
    assert np.allclose(runs["plane"].R[~near], runs["free"].R[~near], atol=1e-6)   # the others as sampled
    with pytest.raises(ConfigError, match="align_deg"):
        PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config={"support": {"align_deg": 60.0}})
