"""Boxes the image border cuts (pose/border.py): which edges a mask meets, and the extension."""
import numpy as np
import pytest
import torch

from genpose_ros.data.camera import Intrinsics
from genpose_ros.pose.border import BorderSettings, border_cuts, extend_cut

CAM = Intrinsics(width=640, height=480, fx=600.0, fy=600.0, cx=320.0, cy=240.0)
PRIOR = torch.tensor([[0.32, 0.22, 0.26]], dtype=torch.float64)  # a laptop's mean box


def box_mask(R, t, size, cam=CAM) -> np.ndarray:
    """(H, W) bool: the image pixels the box's corners span (their bounding rectangle), clipped."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    corners = t + (signs * (0.5 * np.asarray(size))) @ np.asarray(R).T
    u = cam.fx * corners[:, 0] / corners[:, 2] + cam.cx
    v = cam.fy * corners[:, 1] / corners[:, 2] + cam.cy
    mask = np.zeros((cam.height, cam.width), bool)
    x0, x1 = np.clip([u.min(), u.max()], 0, cam.width).astype(int)
    y0, y1 = np.clip([v.min(), v.max()], 0, cam.height).astype(int)
    mask[y0:y1, x0:x1] = True
    return mask


def test_border_cuts_names_the_edges_a_mask_meets():
    m = np.zeros((4, 48, 64), bool)
    m[0, 10:20, 0:5] = True       # left
    m[1, 40:48, 60:64] = True     # right and bottom
    m[2, 0:1, 30:32] = True       # 2 pixels on the top edge: below min_pixels
    m[3, 20:30, 20:30] = True     # inside
    cuts = border_cuts(m, border_px=2, min_pixels=3)
    assert cuts.tolist() == [[True, False, False, False], [False, True, False, True],
                             [False, False, False, False], [False, False, False, False]]
    with pytest.raises(ValueError, match=r"mask 0: expected \(H, W\)"):
        border_cuts([np.zeros(5, bool)])


def _extend(R, t, size, mask, plane=None):
    cuts = border_cuts([mask])
    R, t, size = (torch.as_tensor(np.asarray(x, dtype=np.float64))[None] for x in (R, t, size))
    t2, s2 = extend_cut(R, t, size, cuts, CAM.fx, CAM.fy, PRIOR, plane)
    return t2[0].numpy(), s2[0].numpy(), cuts[0]


def test_a_box_cut_at_the_right_edge_grows_outwards_with_its_inner_face_kept():
    R = np.eye(3)
    seen_right = (CAM.width - CAM.cx) * 0.8 / CAM.fx        # where the image ends at 0.8 m: x = 0.427
    t, size = np.array([(0.15 + seen_right) / 2, 0.0, 0.8]), np.array([seen_right - 0.15, 0.22, 0.26])
    mask = box_mask(R, t, size)
    t2, s2, cuts = _extend(R, t, size, mask)
    assert cuts.tolist() == [False, True, False, False]
    assert s2[0] == pytest.approx(0.32) and np.allclose(s2[1:], size[1:])        # x grown to the prior
    assert t2[0] - s2[0] / 2 == pytest.approx(0.15)                              # the left face kept
    assert np.allclose(t2[1:], t[1:])
    # the same box seen whole (its mask inside the image), or already as long as the prior: unchanged
    for tt, ss in ((t - [0.3, 0, 0], size), (t, size + [0.1, 0, 0])):
        t3, s3, _ = _extend(R, tt, ss, box_mask(R, tt, ss) if ss is size else mask)
        assert np.allclose(t3, tt) and np.allclose(s3, ss)


def test_the_cut_axis_is_the_one_running_out_of_the_image():
    # turned 90 deg about the camera's y: the box's z axis now runs along the image's x
    R = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    t, size = np.array([0.33, 0.0, 0.8]), np.array([0.32, 0.22, 0.2])
    t2, s2, cuts = _extend(R, t, size, box_mask(R, t, size))
    assert cuts[1]
    assert s2[2] == pytest.approx(0.26) and np.allclose(s2[:2], size[:2])
    assert t2[0] - t[0] == pytest.approx(0.03)                                  # half of 0.26 - 0.2, outwards


@pytest.mark.parametrize("uncut, width", [
    ((0.9, 0.9), 0.9 * 0.32),     # a small laptop: its width scaled as its height and depth
    ((0.5, 0.6), 0.85 * 0.32),    # far smaller than the mean: the scale's floor
    ((1.5, 1.5), 1.2 * 0.32),     # far larger: its ceiling
])
def test_the_extension_is_scaled_as_the_uncut_axes(uncut, width):
    R = np.eye(3)
    seen_right = (CAM.width - CAM.cx) * 0.8 / CAM.fx
    size = np.array([seen_right - 0.2, 0.22 * uncut[0], 0.26 * uncut[1]])
    t = np.array([(0.2 + seen_right) / 2, 0.0, 0.8])
    t2, s2, _ = _extend(R, t, size, box_mask(R, t, size))
    assert s2[0] == pytest.approx(width) and t2[0] - s2[0] / 2 == pytest.approx(0.2)


def test_an_axis_along_the_viewing_ray_is_never_the_cut_axis():
    # on the optical axis, cut on the right: x runs out of the image, z along the ray does not move
    R = np.eye(3)
    t, size = np.array([0.0, 0.0, 0.8]), np.array([0.32, 0.22, 0.1])
    mask = np.zeros((CAM.height, CAM.width), bool)
    mask[200:280, 600:] = True
    t2, s2, _ = _extend(R, t, size, mask)
    assert np.allclose(s2, size) and np.allclose(t2, t)          # x already long enough, z untouched
    # x along the ray (a hair off it), y and z 45 deg from the image's axes: with min_cos 0.9 no axis runs out
    c = np.sqrt(0.5)
    R = torch.tensor([[[0.0, c, c], [0.0, c, -c], [-1.0, 0.0, 0.0]]], dtype=torch.float64)
    tt, ss = torch.tensor([[1e-6, 0.0, 0.8]], dtype=torch.float64), torch.tensor([[0.1, 0.1, 0.1]], dtype=torch.float64)
    t2, s2 = extend_cut(R, tt, ss, border_cuts([mask]), CAM.fx, CAM.fy, PRIOR, settings=BorderSettings(min_cos=0.9))
    assert torch.equal(s2, ss) and torch.equal(t2, tt)


def test_a_box_is_not_extended_into_the_table():
    # seen from the front, cut at the image's bottom edge by its lower part; the table's normal
    # is the camera's -y (up in the image)
    R = np.eye(3)
    t, size = np.array([0.0, 0.25, 0.8]), np.array([0.32, 0.12, 0.26])
    mask = box_mask(R, t, size)
    plane = (np.array([0.0, -1.0, 0.0]), 0.31)
    t2, s2, cuts = _extend(R, t, size, mask, plane)
    assert cuts.tolist() == [False, False, False, True]
    assert np.allclose(s2, size) and np.allclose(t2, t)
    t3, s3, _ = _extend(R, t, size, mask)                                        # no table: grows down
    assert s3[1] == pytest.approx(0.22) and t3[1] > t[1]


def test_bad_border_settings_are_one_line():
    with pytest.raises(ValueError, match="min_cos"):
        BorderSettings(min_cos=0.0)
    with pytest.raises(ValueError, match="border_px"):
        BorderSettings(border_px=0)
    with pytest.raises(ValueError, match="scale_range"):
        BorderSettings(scale_range=(1.1, 1.2))
    with pytest.raises(ValueError, match="categories must be a list of category names, got 'laptop'"):
        BorderSettings.from_config({"categories": "laptop", "border_px": 2, "min_pixels": 3, "min_cos": 0.7,
                                    "scale_range": [0.85, 1.2]})
    with pytest.raises(ValueError, match=r"scale_range must be \[low, high\], got 0.9"):
        BorderSettings.from_config({"categories": [], "border_px": 2, "min_pixels": 3, "min_cos": 0.7,
                                    "scale_range": 0.9})


def test_estimator_extends_only_its_border_categories(tiny_pose_checkpoint):
    from genpose_ros.config import ConfigError
    from genpose_ros.pose.estimator import PoseEstimator

    rng = np.random.default_rng(0)
    pts = (rng.normal(0, 0.03, (3, 256, 3)) + [0.3, 0.0, 0.8]).astype(np.float32)
    cats = ["laptop", "mug", "laptop"]
    masks = np.zeros((3, CAM.height, CAM.width), bool)
    masks[:2, 200:300, 560:] = True          # two objects cut at the right edge ...
    masks[2, 200:300, 400:500] = True        # ... and one inside the image
    runs = {}
    for key, kw in (("free", {}), ("border", {"masks": masks, "intrinsics": CAM})):
        est = PoseEstimator.from_checkpoint(tiny_pose_checkpoint, seed=3)
        runs[key] = est.estimate(pts, cats, mode="score_scaling", **kw)
    free, border = runs["free"], runs["border"]
    assert np.allclose(border.R, free.R)
    assert np.allclose(border.size[1:], free.size[1:]) and np.allclose(border.t[1:], free.t[1:])
    assert np.all(border.size[0] >= free.size[0] - 1e-7)
    est = PoseEstimator.from_checkpoint(tiny_pose_checkpoint)
    with pytest.raises(ValueError, match="masks and intrinsics go together"):
        est.estimate(pts, cats, masks=masks)
    with pytest.raises(ValueError, match="3 point clouds but 2 masks"):
        est.estimate(pts, cats, masks=masks[:2], intrinsics=CAM)
    with pytest.raises(ConfigError, match="border.categories names categories the model does not know: "
                                          r"\['laptops'\]"):
        PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config={"border": {"categories": ["laptops"]}})
