"""`genpose demo` scoring of the recorded detections against the simulator ground truth (real
vision_msgs messages, as the recorder receives them)."""
from types import SimpleNamespace

import numpy as np
import pytest
from std_msgs.msg import Header

from genpose_ros.data.frame import InstanceGT
from genpose_ros.evaluation.tables import format_table, nocs_tables, present_mean
from genpose_ros.ros.conversions import detections_to_msg
from genpose_ros.ros.demo import evaluate
from genpose_ros.ros.realsense_node import ground_truth_to_msg


def test_unmatched_detections_are_false_positives():
    I, size = np.eye(3), np.array([0.1, 0.12, 0.1])
    gt = InstanceGT(instance_id=3, category="mug", R=I, t=np.array([0.0, 0.0, 0.6]), size=size, handle_visible=False)
    R, t = [I, I], [gt.t + [0.005, 0, 0], gt.t + [0.4, 0, 0]]  # 0.5 cm off, and 40 cm away
    dets = detections_to_msg(Header(), ["mug_0", "mug_1"], ["mug", "mug"], R, t, [size, size], [0.6, 0.9])
    rec = SimpleNamespace(detections={7: dets}, ground_truth={7: ground_truth_to_msg(Header(), [gt])})
    records, lines = evaluate(rec)
    assert [r["name"] for r in records] == ["mug_0", "mug_1"] and records[1]["R_gt"] is None
    assert records[0]["trans_err_cm"] == pytest.approx(0.5, abs=1e-6) and "false positive" in lines[1]
    tab = nocs_tables(records)
    assert tab["accuracy"]["5deg2cm"]["mug"] == 100.0
    assert tab["mAP"]["5deg2cm"]["mug"] == pytest.approx(50.0)  # the far one ranks first


def test_the_demo_table_has_the_mean_over_the_categories_its_scene_holds():
    """Two of the six categories in the scene: a mug found, a bowl 30 deg off. The six-category
    mean (the benchmark's) counts the four absent ones as 0; the demo's last row does not."""
    I, size = np.eye(3), np.array([0.1, 0.12, 0.1])
    turned = np.array([[np.cos(0.52), -np.sin(0.52), 0], [np.sin(0.52), np.cos(0.52), 0], [0, 0, 1]])
    gts = [InstanceGT(instance_id=1, category="mug", R=I, t=np.array([0.0, 0.0, 0.6]), size=size, handle_visible=True),
           InstanceGT(instance_id=2, category="bowl", R=I, t=np.array([0.2, 0.0, 0.6]), size=size)]
    dets = detections_to_msg(Header(), ["mug_0", "bowl_0"], ["mug", "bowl"], [I, turned], [g.t for g in gts],
                             [size, size], [0.9, 0.9])
    records, _ = evaluate(SimpleNamespace(detections={1: dets}, ground_truth={1: ground_truth_to_msg(Header(), gts)}))
    tab = nocs_tables(records)
    assert tab["accuracy"]["5deg2cm"]["mean"] == pytest.approx(100 / 6)
    assert present_mean(tab, "5deg2cm") == pytest.approx(50.0) and present_mean(tab, "IoU50") == pytest.approx(100.0)
    last = format_table(tab, present=True).splitlines()[-1]
    assert last.startswith("| mean (2 categories present) | 2 | 100.0 |") and "| 50.0 |" in last
    assert "categories present" not in format_table(tab)


def test_each_object_takes_the_detection_nearest_to_it_within_its_extent():
    """Two mugs, one detection on the second: it is the second's (not the first's because the
    first comes first), and the first is missed; a detection beyond an object's extent is no
    match, even when it is the only one of its class."""
    I, size = np.eye(3), np.array([0.12, 0.1, 0.09])   # half the diagonal: 9.1 cm
    near = InstanceGT(instance_id=7, category="mug", R=I, t=np.array([0.02, 0.23, 0.49]), size=size,
                      handle_visible=True)
    far = InstanceGT(instance_id=8, category="mug", R=I, t=np.array([0.23, -0.16, 0.80]), size=size,
                     handle_visible=True)
    truth = ground_truth_to_msg(Header(), [near, far])
    dets = detections_to_msg(Header(), ["mug_0"], ["mug"], [I], [far.t + [0.01, 0, 0]], [size], [0.9])
    records, _ = evaluate(SimpleNamespace(detections={1: dets}, ground_truth={1: truth}))
    assert [(r["gt_id"], r["name"]) for r in records] == [("7", None), ("8", "mug_0")]
    assert records[1]["trans_err_cm"] == pytest.approx(1.0, abs=1e-6)
    dets = detections_to_msg(Header(), ["mug_0"], ["mug"], [I], [near.t + [0.1, 0, 0]], [size], [0.9])
    records, lines = evaluate(SimpleNamespace(detections={1: dets}, ground_truth={1: truth}))
    assert [r["name"] for r in records] == [None, None, "mug_0"] and records[2]["R_gt"] is None
    assert "false positive" in lines[2]
