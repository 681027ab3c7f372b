"""config/estimator.yaml ``reject`` in pose_node and tracking_node, in-process over real DDS (a
module of its own: test_ros_pose_node's pose_node process publishes on the same topics)."""
import time

import pytest

from test_ros_pose_node import Rig


@pytest.mark.parametrize("node_class", ["pose_node.PoseNode", "tracking_node.TrackingNode"])
def test_doubtful_detections_are_dropped(node_class, ros_context, tiny_pose_checkpoint, capfd):
    """config/estimator.yaml reject in the nodes (in-process, real DDS): a pose the verifier rates
    worse than rating_deg from a mask scored below mask_score is not published."""
    import importlib

    from rclpy.parameter import Parameter

    module, name = node_class.split(".")
    Node = getattr(importlib.import_module(f"genpose_ros.ros.{module}"), name)
    node = Node(context=ros_context, parameter_overrides=[
        Parameter("checkpoint", value=str(tiny_pose_checkpoint)), Parameter("slop", value=0.0),
        Parameter("min_points", value=30), Parameter("publish_overlay", value=False)])
    assert node.estimator.rejects and node.estimator.config["reject"]["mask_score"] == 0.9
    node.estimator.config["reject"]["rating_deg"] = 1e-6   # every pose of the untrained model rated worse
    rig = Rig(ros_context)
    rig.ex.add_node(node)
    try:
        assert rig.spin_until(lambda: all(p.get_subscription_count() > 0 for k, p in rig.pubs.items()
                                          if k != "color"), 20.0)   # no overlay: no colour subscription
        time.sleep(0.3)
        for _ in range(3):   # camera_info may meet the node after the first set
            sec = rig.send()   # mug scored 0.9 (kept), can 0.8 (dropped)
            if rig.spin_until(lambda: sec in rig.detections, 10.0):
                break
        rig.expect_processed(sec, 1)
        assert [d.id for d in rig.detections[sec].detections] == ["mug_0"]
        sec = rig.send(dets=[(1, "mug", 0.5), (2, "can", 0.5)])   # all dropped: an empty array
        rig.expect_processed(sec, 0)
    finally:
        rig.ex.remove_node(node)
        node.destroy_node()
        rig.node.destroy_node()
    assert node.n_rejected >= 3
    assert f"{node.n_rejected} detections dropped as doubtful" in capfd.readouterr().err
