"""Camera model, masked-depth point sampling and the D435 noise model."""
import numpy as np
import pytest

from genpose_ros.data.camera import D435_640x480, Intrinsics, backproject, look_at, project, undistort, undistort_maps
from genpose_ros.data.pointcloud import TooFewPointsError, drop_depth_islands, object_points
from genpose_ros.data.sensor import SensorModel

TINY = Intrinsics(width=4, height=3, fx=2.0, fy=4.0, cx=1.5, cy=1.0)


def test_backproject_hand_computed():
    depth = np.zeros((3, 4), np.float32)
    depth[0, 3] = 2.0  # row 0, column 3
    depth[2, 0] = 1.0
    pts = backproject(depth, None, TINY)
    # (u - cx) / fx * z, (v - cy) / fy * z, z in row-major pixel order
    np.testing.assert_allclose(pts, [[(3 - 1.5) / 2 * 2, (0 - 1) / 4 * 2, 2.0],
                                     [(0 - 1.5) / 2 * 1, (2 - 1) / 4 * 1, 1.0]])
    mask = np.zeros((3, 4), bool)
    mask[2, 0] = True
    np.testing.assert_allclose(backproject(depth, mask, TINY), [[-0.75, 0.25, 1.0]])


def test_project_inverts_backproject():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 2.0, (3, 4)).astype(np.float32)
    pts = backproject(depth, None, TINY)
    v, u = np.mgrid[0:3, 0:4]
    np.testing.assert_allclose(project(pts, TINY), np.stack([u.ravel(), v.ravel()], 1), atol=1e-4)


def test_backproject_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="intrinsics expect"):
        backproject(np.zeros((5, 5)), None, TINY)


def distorted_view(image: np.ndarray, intr: Intrinsics, dist) -> np.ndarray:
    """What a camera with K = intr and lens distortion ``dist`` records of the scene a pinhole
    camera records as ``image`` (nearest pixel): the inverse of ``undistort``."""
    import cv2

    v, u = np.mgrid[0:intr.height, 0:intr.width].astype(np.float32)
    pix = np.stack([u.ravel(), v.ravel()], 1)[:, None]
    und = cv2.undistortPoints(pix, intr.matrix(), np.asarray(dist), P=intr.matrix()).reshape(intr.height, intr.width, 2)
    return cv2.remap(image, und[..., 0], und[..., 1], cv2.INTER_NEAREST)


def test_undistort_brings_a_distorted_camera_back_to_its_pinhole_points():
    """A patch near the image corner seen by a camera with barrel distortion: its points are
    more than a centimetre off read as pinhole, and where they belong once undistorted."""
    intr, dist = D435_640x480, (-0.12, 0.05, 0.001, -0.0015, 0.0)
    depth = np.full((480, 640), 1000, np.uint16)          # a wall 1 m away
    mask = np.zeros((480, 640), bool)
    mask[20:70, 20:80] = True                              # an object patch in the corner, 0.8 m
    depth[mask] = 800
    truth = backproject(depth / 1000.0, mask, intr).mean(0)
    seen_depth, seen_mask = distorted_view(depth, intr, dist), distorted_view(mask.view(np.uint8), intr, dist) > 0
    as_pinhole = backproject(seen_depth / 1000.0, seen_mask, intr).mean(0)
    assert np.linalg.norm(as_pinhole - truth) > 0.01       # more than a centimetre off
    maps = undistort_maps(intr, dist)
    fixed_depth, fixed_mask = undistort(seen_depth, maps), undistort(seen_mask, maps)
    assert fixed_mask.dtype == bool and fixed_depth.dtype == np.uint16
    assert np.linalg.norm(backproject(fixed_depth / 1000.0, fixed_mask, intr).mean(0) - truth) < 0.002
    assert (fixed_mask ^ mask).sum() < 0.05 * mask.sum()  # outline pixels only
    rgb = np.dstack([depth.astype(np.uint8)] * 3)
    assert undistort(rgb, maps, nearest=False).shape == rgb.shape


def test_look_at_is_an_optical_frame():
    T = look_at([1.0, 0.0, 0.5], [0.0, 0.0, 0.0])
    R = T[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    z = R[:, 2]
    np.testing.assert_allclose(z, -np.array([1.0, 0, 0.5]) / np.linalg.norm([1.0, 0, 0.5]))
    assert R[2, 1] < 0  # image y points down in the world


def test_object_points_samples_and_reports_too_few():
    depth = np.full((3, 4), 1500, np.uint16)
    mask = np.zeros((3, 4), bool)
    mask[1, 1:3] = True
    rng = np.random.default_rng(0)
    pts = object_points(depth, mask, TINY, 8, rng, min_points=2)
    assert pts.shape == (8, 3) and pts.dtype == np.float32
    np.testing.assert_allclose(pts[:, 2], 1.5)
    with pytest.raises(TooFewPointsError, match="only 2 valid depth points .* at least 3 needed"):
        object_points(depth, mask, TINY, 8, rng, min_points=3)
    depth[1, 1] = 0  # a missing measurement does not count
    with pytest.raises(TooFewPointsError) as info:
        object_points(depth, mask, TINY, 8, rng, min_points=2)
    assert (info.value.n_valid, info.value.n_needed) == (1, 2)
    with pytest.raises(ValueError, match="uint16"):
        object_points(depth.astype(np.float32), mask, TINY, 8, rng)


def test_drop_depth_islands_removes_background_rims_only():
    # an object at 0.8 m on a 1.5 m background; the mask spills two pixels over its left
    # edge onto the background and has a sensor hole in the middle
    depth = np.full((40, 60), 1500, np.uint16)
    depth[10:30, 20:40] = 800 + np.arange(20, dtype=np.uint16)[None, :] * 3   # a slanted face
    depth[18:20, 28:30] = 0
    mask = np.zeros_like(depth, dtype=bool)
    mask[10:30, 18:40] = True
    clean = drop_depth_islands(depth, mask)
    assert not clean[:, 18:20].any()                 # the background rim is gone
    assert clean[10:30, 20:40].all()                 # the object stays, its hole included
    # a second, similar-sized part at another depth is a part of the object, not a rim
    depth[10:30, 40:48] = 1200
    mask[10:30, 40:48] = True
    assert drop_depth_islands(depth, mask)[10:30, 40:48].all()
    # empty and depth-less masks come back unchanged
    assert not drop_depth_islands(depth, np.zeros_like(mask)).any()
    assert (drop_depth_islands(np.zeros_like(depth), mask) == mask).all()


def test_sensor_noise_grows_with_distance_squared():
    model = SensorModel(edge_dropout=0, holes_per_frame=0, subpixel_levels=0,
                        grazing_end_deg=0, smooth_noise_frac=0.0)
    rng = np.random.default_rng(0)
    stds = []
    for z in (0.5, 1.0):
        noisy = model.apply(np.full((120, 160), z, np.float32), None, rng)
        stds.append(noisy.std())
        assert noisy.std() == pytest.approx(model.depth_sigma(z), rel=0.1)
    assert stds[1] / stds[0] == pytest.approx(4.0, rel=0.15)


def test_sensor_drops_edges_grazing_and_range():
    model = SensorModel(subpixel_noise=0, holes_per_frame=0, edge_dropout=1.0)
    z = np.full((40, 40), 0.8, np.float32)
    z[:, 20:] = 1.2  # a depth step
    z[0, 0] = 0.1  # closer than the minimum range
    cos = np.ones_like(z)
    cos[30:, :5] = np.cos(np.radians(89))  # grazing surface
    out = model.apply(z, cos, np.random.default_rng(0))
    assert (out[5:25, 18:22] == 0).all()  # the step's neighbourhood is dropped
    assert (out[30:, :5] == 0).all()
    assert out[0, 0] == 0
    assert (out[5:25, 5:15] > 0).all()
    # disparity quantisation: depths take the values f b / (k / 32)
    fb = model.focal_px * model.baseline_m
    k = fb / out[5:25, 5:15] * model.subpixel_levels
    np.testing.assert_allclose(k, np.round(k), atol=1e-3)
