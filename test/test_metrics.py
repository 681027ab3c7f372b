"""NOCS metrics on hand-made cases."""
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from genpose_ros.evaluation.metrics import (compute_ap, format_table, iou_3d, nocs_tables,
                                 rotation_error_deg, translation_error_cm)

I = np.eye(3)


def rot(axis, deg):
    return Rotation.from_euler(axis, deg, degrees=True).as_matrix()


@pytest.mark.parametrize("category", ["bottle", "bowl", "can"])
def test_turn_about_y_is_free_for_symmetric_categories(category):
    assert rotation_error_deg(rot("y", 73), I, category) == pytest.approx(0.0, abs=1e-6)
    assert rotation_error_deg(rot("x", 20) @ rot("y", 73), I, category) == pytest.approx(20.0)


@pytest.mark.parametrize("category", ["laptop", "camera"])
def test_turn_about_y_counts_for_asymmetric_categories(category):
    assert rotation_error_deg(rot("y", 73), I, category) == pytest.approx(73.0)


def test_mug_depends_on_handle_visibility():
    assert rotation_error_deg(rot("y", 40), I, "mug", handle_visible=True) == pytest.approx(40.0)
    assert rotation_error_deg(rot("y", 40), I, "mug", handle_visible=False) == pytest.approx(0.0, abs=1e-6)


def test_batched_rotation_errors():
    R = np.stack([rot("y", 30), rot("y", 30), rot("z", 10)])
    err = rotation_error_deg(R, I, ["bowl", "mug", "mug"], [True, True, False])
    np.testing.assert_allclose(err, [0.0, 30.0, 10.0], atol=1e-6)


def test_translation_error_in_cm():
    assert translation_error_cm([0.03, 0.04, 1.0], [0.0, 0.0, 1.0]) == pytest.approx(5.0)


def test_iou_identical_disjoint_and_shifted():
    s = np.array([0.1, 0.2, 0.1])
    t = np.array([0.02, -0.05, 0.7])
    assert iou_3d(I, t, s, I, t, s, "camera") == pytest.approx(1.0)
    assert iou_3d(I, t + [0.5, 0, 0], s, I, t, s, "camera") == 0.0
    # shifted by half a width along x: overlap 1/2 of each box -> 0.5 / 1.5
    assert iou_3d(I, t + [0.05, 0, 0], s, I, t, s, "camera") == pytest.approx(1 / 3, rel=1e-6)
    assert iou_3d(I, t, s, I, t, s, "bottle") == pytest.approx(1.0)


def test_exact_iou_of_turned_cubes_and_nocs_variants():
    c = np.full(3, 0.1)
    t = np.array([0.0, 0.0, 0.5])
    # a square turned 45 deg overlaps its copy in a regular octagon of area 2 (sqrt2 - 1) a^2
    octagon = 2 * (math.sqrt(2) - 1)
    expected = octagon / (2 - octagon)
    assert iou_3d(rot("z", 45), t, c, I, t, c, "camera") == pytest.approx(expected, rel=1e-6)
    assert iou_3d(rot("z", 45), t, c, I, t, c, "camera", variant="aabb") == pytest.approx(0.5)
    assert 0 < iou_3d(rot("z", 45), t, c, I, t, c, "camera", variant="nocs") < 1
    with pytest.raises(ValueError, match="unknown IoU variant"):
        iou_3d(I, t, c, I, t, c, "camera", variant="bogus")


def test_exact_iou_matches_monte_carlo():
    rng = np.random.default_rng(0)
    R1, R2 = Rotation.random(2, random_state=1).as_matrix()
    s1, s2 = np.array([0.12, 0.08, 0.1]), np.array([0.1, 0.1, 0.14])
    t1, t2 = np.array([0.01, 0.02, 0.6]), np.array([0.0, 0.0, 0.6])
    pts = rng.uniform(-0.12, 0.12, (300_000, 3)) + t2
    in1 = (np.abs((pts - t1) @ R1) <= s1 / 2).all(1)
    in2 = (np.abs((pts - t2) @ R2) <= s2 / 2).all(1)
    mc = (in1 & in2).sum() / (in1 | in2).sum()
    assert iou_3d(R1, t1, s1, R2, t2, s2, "camera") == pytest.approx(mc, abs=0.01)


def test_symmetric_iou_maximises_over_turns_about_y():
    s = np.array([0.15, 0.05, 0.08])  # a non-square footprint makes the turn matter
    t = np.array([0.0, 0.0, 0.6])
    assert iou_3d(rot("y", 35), t, s, I, t, s, "bowl") == pytest.approx(1.0, abs=1e-3)
    assert iou_3d(rot("y", 35), t, s, I, t, s, "mug", handle_visible=False) == pytest.approx(1.0, abs=1e-3)
    assert iou_3d(rot("y", 35), t, s, I, t, s, "mug", handle_visible=True) < 0.8


def _record(cat, R_pred, t_pred, score=1.0, handle_visible=True, size=(0.1, 0.1, 0.1)):
    return {"category": cat, "handle_visible": handle_visible, "R_gt": I, "t_gt": np.zeros(3) + [0, 0, .5],
            "size_gt": np.array(size), "R_pred": R_pred, "t_pred": np.asarray(t_pred) + [0, 0, .5],
            "size_pred": np.array(size), "score": score}


def test_nocs_tables_hand_case():
    records = [
        _record("bottle", rot("y", 90), [0.01, 0, 0], 0.9),  # symmetric: 0 deg, 1 cm
        _record("laptop", rot("y", 7), [0.03, 0, 0], 0.8),   # 7 deg, 3 cm
        _record("laptop", I, [0.0, 0, 0], 0.3),              # perfect, lower score
        {**_record("laptop", I, [0, 0, 0]), "R_pred": None, "t_pred": None},  # missed
    ]
    tab = nocs_tables(records)
    acc = tab["accuracy"]
    assert tab["counts"] == {"bottle": 1, "laptop": 3}
    assert acc["5deg2cm"]["bottle"] == 100.0
    assert acc["5deg2cm"]["laptop"] == pytest.approx(100 / 3)
    assert acc["10deg5cm"]["laptop"] == pytest.approx(200 / 3)
    assert acc["5deg2cm"]["mean"] == pytest.approx((100 + 100 / 3) / 2)
    assert acc["IoU50"]["laptop"] == pytest.approx(200 / 3)
    # laptop 5deg2cm ranking: [fail (0.8), success (0.3)], 3 GT -> AP = 1/3 * 1/2
    assert tab["mAP"]["5deg2cm"]["laptop"] == pytest.approx(100 / 6)
    assert "| laptop | 3 |" in format_table(tab)
    with pytest.raises(ValueError, match="unknown category"):
        nocs_tables([{**records[0], "category": "cup"}])


def test_iou_metrics_are_undefined_without_sizes():
    rec = {**_record("can", I, [0, 0, 0]), "size_pred": None}
    tab = nocs_tables([rec])
    assert math.isnan(tab["accuracy"]["IoU25"]["can"])
    assert tab["accuracy"]["5deg2cm"]["can"] == 100.0


def test_average_precision():
    assert compute_ap(np.array([1, 1, 0]), np.array([0.9, 0.8, 0.1]), 3) == pytest.approx(2 / 3)
    assert compute_ap(np.array([0, 1]), np.array([0.9, 0.1]), 1) == pytest.approx(0.5)
    assert compute_ap(np.array([], bool), np.array([]), 2) == 0.0
