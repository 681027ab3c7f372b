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
