"""NOCS metrics on hand-made cases and on values the NOCS evaluation code returns."""
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from genpose_ros.evaluation.metrics import iou_3d, rotation_error_deg, translation_error_cm
from genpose_ros.evaluation.nocs_results import records_from_results
from genpose_ros.evaluation.report import records_from_json, summary, write
from genpose_ros.evaluation.tables import compute_ap, format_table, nocs_tables

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
    assert acc["5deg2cm"]["mean"] == pytest.approx((100 + 100 / 3) / 6)  # the six categories
    assert acc["IoU50"]["laptop"] == pytest.approx(200 / 3)
    # laptop 5deg2cm ranking: [fail (0.8), success (0.3)], 3 GT -> AP = 1/3 * 1/2
    assert tab["mAP"]["5deg2cm"]["laptop"] == pytest.approx(100 / 6)
    table = format_table(tab)
    assert "| laptop | 3 |" in table and "| can | 0 | n/a |" in table and "| mean (6 categories) | 4 |" in table
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


# ---------------------------------------------------------------- agreement with the NOCS code
# A box with a non-square footprint, predicted turned about its y axis by `deg`; the numbers are
# what the NOCS authors' compute_3d_iou_new returns (axis=0: as published; axis=1: axis fixed).
NOCS_SIZE, NOCS_T = np.array([0.16, 0.06, 0.12]), np.array([0.03, -0.02, 0.65])
NOCS_CODE = [  # (deg, category, handle visible, value of the published code, value with axis=1)
    (9.0, "bowl", True, 0.8364762041877206, 0.7564910511484885),
    (35.0, "bowl", True, 0.9794762478853237, 0.9649215857298412),
    (35.0, "mug", False, 0.9794762478853237, 0.9649215857298412),
    (35.0, "mug", True, 0.55818214047182, 0.5053449118536049),
    (35.0, "camera", True, 0.55818214047182, 0.5053449118536049),
]


@pytest.mark.parametrize("deg,category,handle,nocs,aabb", NOCS_CODE)
def test_nocs_and_aabb_variants_equal_the_nocs_code(deg, category, handle, nocs, aabb):
    args = (rot("y", deg), NOCS_T, NOCS_SIZE, I, NOCS_T, NOCS_SIZE, category, handle)
    assert iou_3d(*args, variant="nocs") == pytest.approx(nocs, abs=1e-12)
    assert iou_3d(*args, variant="aabb") == pytest.approx(aabb, abs=1e-12)


def test_nocs_variant_scans_the_full_circle_in_20_steps():
    # a bowl turned by half a turn: the 10th of the 20 turns (180 deg) brings every corner back
    # to its ground-truth place, so the published code returns 1; for a camera the half turn
    # counts and the misplaced corners give its meaningless intervals
    args = (rot("y", 180), NOCS_T, NOCS_SIZE, I, NOCS_T, NOCS_SIZE)
    assert iou_3d(*args, "bowl", variant="nocs") == pytest.approx(1.0, abs=1e-12)
    assert iou_3d(*args, "camera", variant="nocs") == pytest.approx(0.2549990328668442, abs=1e-12)
    # 9 deg off the grid of 18-deg turns: the scan never lines the boxes up, the exact IoU does
    args = (rot("y", 9), NOCS_T, NOCS_SIZE, I, NOCS_T, NOCS_SIZE, "bowl")
    assert iou_3d(*args, variant="aabb") < 0.76 and iou_3d(*args) == pytest.approx(1.0, abs=1e-3)


def test_pose_thresholds_are_inclusive_and_iou_thresholds_strict():
    at_2cm = _record("bottle", I, [0.02, 0, 0])  # exactly 2.0 cm, 0 deg
    at_5cm = _record("bottle", I, [0.05, 0, 0])
    tab = nocs_tables([at_2cm, at_5cm])
    assert tab["accuracy"]["5deg2cm"]["bottle"] == 50.0 and tab["accuracy"]["5deg5cm"]["bottle"] == 100.0
    assert tab["mAP"]["5deg5cm"]["bottle"] == 100.0
    # a box half as wide inside another, dyadic sizes: IoU exactly 0.5, which is not > 0.5
    half = {**_record("laptop", I, [0, 0, 0], size=(0.25, 0.25, 0.25)), "size_pred": np.array([0.125, 0.25, 0.25])}
    tab = nocs_tables([half], iou_variant="aabb")
    assert tab["accuracy"]["IoU50"]["laptop"] == 0.0 and tab["accuracy"]["IoU25"]["laptop"] == 100.0
    assert tab["mAP"]["IoU50"]["laptop"] == 0.0 and tab["mAP"]["IoU25"]["laptop"] == 100.0


def test_mean_is_over_the_six_categories():
    tab = nocs_tables([_record("bowl", I, [0, 0, 0]), _record("mug", I, [0.5, 0, 0])])
    assert tab["accuracy"]["10deg5cm"]["mean"] == pytest.approx(100 / 6)
    assert tab["mAP"]["10deg5cm"]["mean"] == pytest.approx(100 / 6)
    assert tab["counts"] == {"bowl": 1, "mug": 1}


def _fp(cat, t_pred, score, image=0):
    return {"image": image, "category": cat, "R_gt": None, "t_gt": None, "size_gt": None, "R_pred": I,
            "t_pred": np.asarray(t_pred) + [0, 0, .5], "size_pred": np.full(3, 0.1), "score": score}


def test_false_positives_lower_the_map_not_the_accuracy():
    good = {**_record("can", I, [0, 0, 0], 0.5), "image": 0}
    clean = nocs_tables([good])
    noisy = nocs_tables([good, _fp("can", [0.6, 0, 0], 0.9)])
    # ranking [false positive (0.9), true positive (0.5)] of 1 GT: precision 1/2 at recall 1
    for m in ("5deg2cm", "IoU50"):
        assert clean["mAP"][m]["can"] == 100.0 and noisy["mAP"][m]["can"] == pytest.approx(50.0)
    assert noisy["accuracy"]["5deg2cm"]["can"] == 100.0
    assert noisy["false_positives"] == {"can": 1} and noisy["counts"] == {"can": 1}
    # ranked below the true positive it costs nothing
    assert nocs_tables([good, _fp("can", [0.6, 0, 0], 0.1)])["mAP"]["5deg2cm"]["can"] == 100.0


def test_predictions_take_the_first_free_ground_truth_in_score_order():
    # two cans in one image, two predictions both nearest to the first one: the higher-scored
    # prediction takes it (1.5 cm off), the other one (0.5 cm off) is left without a free
    # ground truth within 2 cm of it (the second can is 10 cm away) -> 1 TP of 2 at rank 1
    gt1, gt2 = {**_record("can", I, [0.015, 0, 0], 0.9), "image": 3}, {**_record("can", I, [0, 0, 0]), "image": 3}
    gt2.update(t_gt=gt2["t_gt"] + [0.1, 0, 0], t_pred=gt1["t_gt"] + [0.005, 0, 0], score=0.4)
    tab = nocs_tables([gt1, gt2])
    assert tab["mAP"]["5deg2cm"]["can"] == pytest.approx(50.0)
    assert tab["accuracy"]["5deg2cm"]["can"] == pytest.approx(50.0)


def test_results_dict_keeps_unpaired_predictions_as_false_positives():
    RT = np.eye(4, dtype=np.float32)
    RT[:3, :3] *= np.linalg.norm([0.1, 0.1, 0.1])
    far = RT.copy()
    far[:3, 3] = [1.0, 0.0, 2.0]
    r = {"gt_class_ids": np.array([4]), "gt_RTs": RT[None], "gt_scales": np.full((1, 3), 1 / np.sqrt(3)),
         "gt_handle_visibility": np.array([1]), "pred_class_ids": np.array([4, 4]),
         "pred_RTs": np.stack([RT, far]), "pred_scales": np.full((2, 3), 1 / np.sqrt(3)),
         "pred_scores": np.array([0.5, 0.999], np.float32)}
    recs = records_from_results(r, image=0)
    assert [rec["R_gt"] is None for rec in recs] == [False, True]
    np.testing.assert_allclose(recs[0]["t_pred"], 0.0, atol=1e-7)  # paired with the nearest
    assert nocs_tables(recs)["mAP"]["10deg5cm"]["can"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="not a NOCS category id"):
        records_from_results({**r, "gt_class_ids": np.array([7])}, image=0)


def test_eval_json_holds_every_instance_and_reads_back(tmp_path):
    records = [{**_record("bowl", rot("x", 3), [0.01, 0, 0], 0.8), "image": 0, "instance_id": 2},
               {**_record("mug", I, [0, 0, 0]), "image": 0, "R_pred": None, "t_pred": None, "score": None},
               _fp("laptop", [0.3, 0, 0], 0.7, image=1)]
    s = summary(records, [12.0])
    write(tmp_path, "t", s)
    rows = s["instances"]
    assert [r["category"] for r in rows] == ["bowl", "mug", "laptop"]
    assert rows[0]["rot_err_deg"] == pytest.approx(3.0) and rows[0]["trans_err_cm"] == pytest.approx(1.0)
    assert rows[1]["pred"] is None and rows[1]["rot_err_deg"] is None and rows[2]["gt"] is None
    back = records_from_json(tmp_path / "eval.json")
    _assert_same_tables(summary(back, [12.0])["tables"], s["tables"])
    (tmp_path / "bad.json").write_text('{"tables": {}}')
    with pytest.raises(ValueError, match="no per-instance results"):
        records_from_json(tmp_path / "bad.json")


def _assert_same_tables(a, b):
    assert a["counts"] == b["counts"] and a["false_positives"] == b["false_positives"]
    for kind in ("accuracy", "mAP"):
        assert a[kind] == b[kind]


def test_tables_without_ground_truth_are_undefined():
    tab = nocs_tables([_fp("can", [0, 0, 0], 0.9)])
    assert tab["counts"] == {} and tab["false_positives"] == {"can": 1}
    assert math.isnan(tab["mAP"]["5deg2cm"]["mean"]) and math.isnan(tab["accuracy"]["IoU25"]["mean"])


def test_accuracy_by_resting_pose_from_the_camera_pose(tmp_path):
    from genpose_ros.evaluation.tables import by_rest, rest_kind

    T = np.eye(4)  # a camera whose frame is the world's: z up
    T[:3, :3] = rot("x", 20)
    up = T[:3, :3].T @ rot("x", 90)  # the object's y axis along the world's z, seen by that camera
    assert rest_kind(up, T) == "upright" and rest_kind(up, None) is None
    assert rest_kind(T[:3, :3].T @ rot("x", 90) @ rot("x", 45), T) == "tilted"
    assert rest_kind(T[:3, :3].T @ rot("x", 90) @ rot("z", 90), T) == "lying"
    assert rest_kind(T[:3, :3].T @ rot("x", -90), T) == "upside down"
    records = [{**_record("mug", I, [0, 0, 0]), "rest": "upright"},
               {**_record("mug", rot("y", 30), [0, 0, 0]), "rest": "lying"},
               {**_record("mug", rot("y", 8), [0, 0, 0]), "rest": "lying"},
               {**_record("can", I, [0.03, 0, 0]), "rest": "lying"},
               {**_record("bowl", I, [0, 0, 0]), "rest": None}]
    s = summary(records, [])
    assert s["by_rest"] == by_rest([r for r in records], [
        {"rot": e["rot_err_deg"], "trans": e["trans_err_cm"], "iou": e["iou"]} for e in s["instances"]])
    assert s["by_rest"]["upright"] == {"mug": {"n": 1, "5deg2cm": 100.0, "10deg5cm": 100.0}}
    assert s["by_rest"]["lying"]["mug"] == {"n": 2, "5deg2cm": 0.0, "10deg5cm": 50.0}
    assert s["by_rest"]["lying"]["can"] == {"n": 1, "5deg2cm": 0.0, "10deg5cm": 100.0}  # 3 cm off
    assert "bowl" not in str(s["by_rest"])  # no camera pose: no resting pose
    md = write(tmp_path, "t", s)
    assert "## By resting pose" in md and "| lying |  |  |  | 0.0 (1) |  | 0.0 (2) |" in md
    assert [r["rest"] for r in records_from_json(tmp_path / "eval.json")] == ["upright", "lying", "lying", "lying", None]
    assert "By resting pose" not in write(tmp_path, "t", summary([_record("mug", I, [0, 0, 0])], []))
