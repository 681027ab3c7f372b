"""Procedural objects, scenes and the renderer: masks, depth and GT poses agree."""
import numpy as np
import pytest

from genpose_ros import CATEGORIES
from genpose_ros.data.camera import backproject, project
from genpose_ros.data.objects import make_object
from genpose_ros.data.render import Renderer
from genpose_ros.data.scenes import (_UPRIGHT, camera_on_hemisphere, sample_camera_pose,
                                     sample_scene, sample_sequence)


@pytest.mark.parametrize("category", CATEGORIES)
def test_objects_are_centred_in_the_canonical_frame(category):
    m = make_object(category, np.random.default_rng(1))
    v = m.triangles.reshape(-1, 3)
    np.testing.assert_allclose(v.max(0) + v.min(0), 0, atol=1e-6)
    np.testing.assert_allclose(v.max(0) - v.min(0), m.size, atol=1e-6)
    assert 0.03 < m.size.max() < 0.5  # real-world sizes in metres
    if category in ("bottle", "bowl", "can"):
        assert m.size[0] == pytest.approx(m.size[2], rel=0.02)  # round about y
    assert (m.handle_part >= 0) == (category == "mug")


def test_unknown_category_is_rejected():
    with pytest.raises(ValueError, match="unknown category 'cup'"):
        make_object("cup", np.random.default_rng(0))


def test_rendered_masks_and_depth_match_the_gt_poses():
    rng = np.random.default_rng(7)
    scene = sample_scene(rng, categories=list(CATEGORIES))
    renderer = Renderer(sensor=None)
    frame = renderer.render(scene, sample_camera_pose(rng, scene), rng)
    assert frame.color.shape == (480, 640, 3) and frame.color.dtype == np.uint8
    assert frame.depth.dtype == np.uint16 and frame.mask.dtype == np.uint16
    assert len(frame.instances) >= 3
    ids = {i.instance_id for i in frame.instances}
    assert set(np.unique(frame.mask)) - {0} == ids
    for inst in frame.instances:
        sel = frame.mask == inst.instance_id
        assert (frame.depth[sel] > 0).all()  # clean depth exists on every object pixel
        pts = backproject(frame.depth_m, sel, frame.intrinsics)
        local = (pts - inst.t) @ inst.R  # into the object frame
        inside = (np.abs(local) <= inst.size / 2 + 0.002).all(axis=1)
        assert inside.mean() > 0.99, inst.category
        # the mask lies within the projection of the GT box
        signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)])
        uv = project((signs * inst.size / 2) @ inst.R.T + inst.t, frame.intrinsics)
        ys, xs = np.nonzero(sel)
        assert xs.min() >= uv[:, 0].min() - 2 and xs.max() <= uv[:, 0].max() + 2
        assert ys.min() >= uv[:, 1].min() - 2 and ys.max() <= uv[:, 1].max() + 2


def _single_mug_scene(rng):
    scene = sample_scene(rng, categories=["mug"])
    scene.clutter = []
    obj = scene.objects[0]
    T = np.eye(4)
    T[:3, :3] = _UPRIGHT.as_matrix()  # handle (+x) along world +x
    T[2, 3] = obj.model.size[1] / 2
    obj.T_world_obj = T
    return scene, obj


def test_mug_handle_visibility_depends_on_the_view():
    rng = np.random.default_rng(3)
    scene, obj = _single_mug_scene(rng)
    target = np.array([0.0, 0.0, obj.model.size[1] / 2])
    renderer = Renderer(sensor=None)
    front = renderer.render(scene, camera_on_hemisphere(target, 0.5, 0.0, 0.0), rng)
    back = renderer.render(scene, camera_on_hemisphere(target, 0.5, 0.0, 180.0), rng)
    assert front.instances[0].handle_visible
    assert not back.instances[0].handle_visible


def test_sequences_are_smooth():
    seq = sample_sequence(np.random.default_rng(0), 12, n_objects=4)
    assert seq.T_world_cam.shape == (12, 4, 4)
    assert seq.T_world_obj.shape == (12, len(seq.scene.objects), 4, 4)
    step = np.linalg.norm(np.diff(seq.T_world_cam[:, :3, 3], axis=0), axis=1)
    assert step.max() < 0.05  # under 5 cm and 5 deg per frame
    for a, b in zip(seq.T_world_cam[:-1], seq.T_world_cam[1:]):
        cos = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1) / 2
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))) < 5
    moved = np.linalg.norm(seq.T_world_obj[-1, :, :3, 3] - seq.T_world_obj[0, :, :3, 3], axis=1)
    assert (moved[seq.moving] > 0.005).all()
    still = [k for k in range(len(moved)) if k not in seq.moving]
    assert np.allclose(moved[still], 0)
    scene, T = seq.frame(5)
    np.testing.assert_allclose(scene.objects[0].T_world_obj, seq.T_world_obj[5, 0])
