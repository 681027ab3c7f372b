"""Stable object names across frames (genpose_ros.identity), the stable-yaw rule for symmetric
objects and the pose covariance of the hypotheses (genpose_ros.pose.canonical)."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from genpose_ros import CATEGORIES
from genpose_ros.identity import IdentityTable, lowest_free, one_to_one
from genpose_ros.pose.canonical import (canonical_poses, pose_covariance, stable_yaw,
                                        yaw_agreement, yaw_is_arbitrary)


def _mask(x0, shape=(40, 60)):
    m = np.zeros(shape, bool)
    m[10:20, x0:x0 + 10] = True
    return m


def test_names_follow_objects_and_are_reused():
    table = IdentityTable(iou_min=0.2, max_dist=0.05, max_lost=1)

    def names(*args):
        assigned, classes = table.assign(*args)
        assert classes == args[0]   # without evidence: the classes as given
        return assigned

    a, b = np.array([0.0, 0, 0.5]), np.array([0.2, 0, 0.5])
    assert names(["can", "can"], [_mask(0), _mask(30)], [a, b]) == ["can_0", "can_1"]
    # detections come in the other order, objects moved a little: the names follow the objects
    assert names(["can", "can"], [_mask(32), _mask(2)], [b + 0.01, a + 0.01]) == ["can_1", "can_0"]
    # can_0 unseen for two frames (> max_lost): its number is free again, can_1 keeps its own
    assert names(["can"], [_mask(32)], [b]) == ["can_1"]
    assert names(["can"], [_mask(32)], [b]) == ["can_1"]
    assert names(["can", "can", "mug"], [_mask(32), _mask(0), _mask(15)],
                 [b, a + 0.3, a - 0.3]) == ["can_1", "can_0", "mug_0"]
    assert lowest_free([0, 1, 3]) == 2 and lowest_free([]) == 0
    # pairs best first, each side taken once: the second-best pair of a taken object goes
    assert one_to_one([(0, "a"), (1, "a"), (1, "b"), (0, "b"), (2, "c")]) == {0: "a", 1: "b", 2: "c"}


def _evidence(readings):
    """(B, 6) log-probabilities over CATEGORIES: each row's {class: p}, the rest shared."""
    rows = []
    for reading in readings:
        rest = (1.0 - sum(reading.values())) / (len(CATEGORIES) - len(reading))
        rows.append([np.log(reading.get(c, rest)) for c in CATEGORIES])
    return np.array(rows)


def test_an_objects_class_is_its_evidence_summed_over_frames():
    """The category check's evidence: one frame's wrong class neither renames an object nor starts
    a second one; a lasting one does; an instance that gives the object's class almost nothing
    is another object."""
    table = IdentityTable(iou_min=0.2, max_dist=0.05, max_lost=1, names=CATEGORIES, memory=0.8, min_p=0.05)
    a, b = np.array([0.0, 0, 0.5]), np.array([0.2, 0, 0.5])
    masks, cents = [_mask(0), _mask(30)], [a, b]
    can = _evidence([{"can": 0.9}, {"bowl": 0.9}])
    for _ in range(2):
        assert table.assign(["can", "bowl"], masks, cents, can) == (["can_0", "bowl_0"], ["can", "bowl"])
    mug = _evidence([{"mug": 0.7, "can": 0.2}, {"bowl": 0.9}])
    # `classes` tells the class beforehand and leaves the table as it is
    assert table.classes(["mug", "bowl"], masks, cents, mug) == ["can", "bowl"]
    assert table.assign(["mug", "bowl"], masks, cents, mug) == (["can_0", "bowl_0"], ["can", "bowl"])
    for frames in range(2, 12):
        named, classes = table.assign(["mug", "bowl"], masks, cents, mug)
        if classes[0] == "mug":
            break
    assert 2 <= frames <= 10 and named == ["mug_0", "bowl_0"] and len(table.known) == 2
    # sure of another class (the mug's class at 1e-3): a second object, the first one unseen
    sure = _evidence([{"bottle": 0.999}, {"bowl": 0.9}])
    assert table.assign(["bottle", "bowl"], masks, cents, sure) == (["bottle_0", "bowl_0"], ["bottle", "bowl"])
    assert [k.lost for k in table.known] == [1, 0, 0]
    # memory 0: each frame's own class
    forgetful = IdentityTable(0.2, 0.05, 1, CATEGORIES, memory=0.0)
    forgetful.assign(["can", "bowl"], masks, cents, can)
    assert forgetful.assign(["mug", "bowl"], masks, cents, mug) == (["mug_0", "bowl_0"], ["mug", "bowl"])


def _random_rotation(seed):
    return Rotation.random(random_state=seed).as_matrix()


@pytest.mark.parametrize("seed", range(5))
def test_stable_yaw_is_independent_of_the_estimated_yaw(seed):
    R, t = _random_rotation(seed), np.array([0.1, -0.05, 0.6])
    ref = stable_yaw(R, t)
    np.testing.assert_allclose(ref.T @ ref, np.eye(3), atol=1e-9)
    assert np.linalg.det(ref) == pytest.approx(1.0)
    np.testing.assert_allclose(ref[:, 1], R[:, 1], atol=1e-9)          # the axis is kept
    view = -t / np.linalg.norm(t)
    # z faces the camera: as close to the viewing direction as a vector normal to y can be
    assert ref[:, 2] @ view == pytest.approx(np.sqrt(1 - (R[:, 1] @ view) ** 2), abs=1e-9)
    for yaw in (0.3, 2.0, -2.9):
        turned = R @ Rotation.from_euler("y", yaw).as_matrix()
        np.testing.assert_allclose(stable_yaw(turned, t), ref, atol=1e-9)


def test_stable_yaw_when_looking_along_the_axis():
    R = Rotation.from_euler("x", -90, degrees=True).as_matrix()   # y towards the camera (-z)
    out = stable_yaw(R, np.array([0.0, 0.0, 0.5]))
    np.testing.assert_allclose(out[:, 2], [0, -1, 0], atol=1e-9)  # z towards the top of the image


def _hypotheses(R, t, rng, k=40, rot_std=0.05, t_std=0.01, yaw_spread=0.0):
    H = np.tile(np.eye(4), (k, 1, 1))
    for i in range(k):
        noise = Rotation.from_rotvec(rng.normal(0, rot_std, 3)).as_matrix()
        yaw = Rotation.from_euler("y", rng.uniform(-yaw_spread, yaw_spread)).as_matrix()
        H[i, :3, :3] = noise @ R @ yaw
        H[i, :3, 3] = t + rng.normal(0, t_std, 3)
    return H


def test_covariance_of_the_hypotheses():
    rng = np.random.default_rng(0)
    R, t = _random_rotation(1), np.array([0.0, 0.1, 0.7])
    H = _hypotheses(R, t, rng, k=400)
    cov = pose_covariance(R, t, H)
    assert cov.shape == (6, 6) and np.allclose(cov, cov.T)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), [0.01] * 3 + [0.05] * 3, rtol=0.15)
    assert pose_covariance(R, t, H[:1]) is None and pose_covariance(R, t, None) is None


def test_symmetric_objects_get_one_yaw_and_no_spread_about_their_axis():
    rng = np.random.default_rng(1)
    R, t = _random_rotation(2), np.array([0.05, 0.0, 0.6])
    H = _hypotheses(R, t, rng, k=60, rot_std=0.01, yaw_spread=np.pi)
    assert yaw_agreement(H) < 0.3 and yaw_agreement(_hypotheses(R, t, rng, rot_std=0.01)) > 0.9
    assert yaw_is_arbitrary("can", None) and not yaw_is_arbitrary("laptop", H)
    assert yaw_is_arbitrary("mug", H) and not yaw_is_arbitrary("mug", H[:1])
    Rc, Hc = canonical_poses(R[None], t[None], ["bowl"], [H])
    np.testing.assert_allclose(Rc[0], stable_yaw(R, t), atol=1e-6)
    raw, canon = pose_covariance(R, t, H), pose_covariance(Rc[0], t, Hc[0])
    assert np.trace(raw[3:, 3:]) > 1.0 > 100 * np.trace(canon[3:, 3:])
    R_laptop, _ = canonical_poses(R[None], t[None], ["laptop"], [H])  # asymmetric: untouched
    np.testing.assert_allclose(R_laptop[0], R, atol=1e-6)


def test_sequence_consistency_counts_switches_and_turns():
    from genpose_ros.evaluation.consistency import sequence_consistency

    R = _random_rotation(3)
    yaw = [Rotation.from_euler("y", a).as_matrix() for a in (0.0, 1.0, 1.0, 1.0)]
    recs = [dict(frame=f, gt_id=1, category="can", handle_visible=True, name="can_0" if f < 3 else "can_1",
                 R_gt=R, R_pred=R @ yaw[f]) for f in range(4)]
    recs += [dict(frame=f, gt_id=2, category="laptop", handle_visible=True, name="laptop_0",
                  R_gt=np.eye(3), R_pred=np.eye(3)) for f in (0, 1, 3)]
    c = sequence_consistency(recs)
    assert (c["objects"], c["distinct_names"], c["pairs"], c["id_switches"]) == (2, 3, 4, 1)
    assert c["turn_deg"]["symmetric"]["max"] == pytest.approx(np.degrees(1.0))
    assert c["turn_deg"]["symmetric"]["median"] == pytest.approx(0.0, abs=1e-6)
    assert c["turn_deg"]["other"]["n"] == 1
    # the next scene's can 1 (another size) is another object: no switch from the first one's name
    later = [dict(r, frame=r["frame"] + 4, size_gt=np.array([0.07, 0.12, 0.07]), name="can_3") for r in recs[:4]]
    first = [dict(r, size_gt=np.array([0.06, 0.1, 0.06])) for r in recs[:4]]
    c = sequence_consistency(first + later)
    assert (c["objects"], c["distinct_names"], c["pairs"], c["id_switches"]) == (2, 3, 6, 1)


def test_stable_yaw_of_a_batch_equals_one_by_one():
    Rs = np.stack([_random_rotation(s) for s in range(6)] + [Rotation.from_euler("x", -90, degrees=True).as_matrix()])
    t = np.array([0.0, 0.0, 0.5])
    np.testing.assert_allclose(stable_yaw(Rs, t), np.stack([stable_yaw(R, t) for R in Rs]), atol=1e-12)
