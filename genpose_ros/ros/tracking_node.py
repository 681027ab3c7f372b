"""tracking_node: pose_node with memory. Each tracked object is warm-started from its previous
pose (estimator mode ``tracking``); it is estimated from scratch (mode ``mode``) when it is new,
was lost, has a low score, jumped implausibly, every ``reinit_every`` frames, and after a message
on ``<output_prefix>/reset`` (std_msgs/Empty).

    ros2 run genpose_ros tracking_node --ros-args --params-file config/tracking_node.yaml

Association across frames: same class, then greedily by mask IoU with the track's last mask and
by the distance between point-cloud centroids (``genpose_ros.pose.tracker.Tracker``, the class
``genpose eval --mode tracking`` evaluates). A track's class is the most likely one of the
category check's evidence summed over its frames (``category_memory``), so one frame's wrong
class from the segmenter does not rename it. TF frames are ``<frame_prefix><category>_<track id>``;
a new track takes the smallest id of its class that no live track holds, so frame names are
reused once their object is gone. Same outputs as pose_node (stable yaw, covariance of the
candidates: `genpose_ros.pose.canonical`).
"""
from __future__ import annotations

import sys
import threading
from dataclasses import asdict

from std_msgs.msg import Empty

from genpose_ros.pose.tracker import Tracker, TrackerSettings
from genpose_ros.ros.pose_node import PoseNode, seg_scores
from genpose_ros.ros.spin import run_node

TRACKING_PARAMS = asdict(TrackerSettings())  # reinit_every, max_jump, ...: see pose/tracker.py


class TrackingNode(PoseNode):
    def __init__(self, **kwargs):
        super().__init__("tracking_node", extra_params=TRACKING_PARAMS, **kwargs)
        settings = TrackerSettings(**{k: self.p[k] for k in TRACKING_PARAMS})
        # sampler_overrides apply to the from-scratch mode; tracking steps use config/estimator.yaml
        self.tracker = Tracker(self.estimator, self.p["mode"], settings, {self.p["mode"]: self.overrides})
        self._reset = threading.Event()
        self.create_subscription(Empty, f"{self.p['output_prefix'].rstrip('/')}/reset",
                                 lambda _: self._reset.set(), 10)

    def check_mode(self):
        if self.p["mode"] == "tracking":  # "" (the default mode) is resolved by PoseNode.check_mode
            raise ValueError("tracking_node's `mode` is the from-scratch mode (genpose, "
                             "score_scaling or regression); tracking steps use mode tracking")
        super().check_mode()

    def on_restart(self):
        self._reset.set()

    def estimate(self, frame, batch, evidence=None):
        if self._reset.is_set():
            self._reset.clear()
            n = self.tracker.reset()
            self.get_logger().info(f"reset: dropping {n} tracks, re-estimating from scratch")
        cats = [i.category for i in batch.instances]
        scores = seg_scores(batch)
        step = self.tracker.step(batch.points, cats, [i.mask for i in batch.instances], self.support_plane(frame),
                                 frame.intrinsics, scores, evidence)
        keep = self.count_rejected(step.rejected)
        return ([step.names[i] for i in keep], [step.categories[i] for i in keep], step.R[keep], step.t[keep],
                step.size[keep], (step.score * scores)[keep], [step.hypotheses[i] for i in keep])

    def destroy_node(self):
        if not hasattr(self, "tracker"):   # the constructor stopped early (a bad parameter)
            return super().destroy_node()
        tr = self.tracker
        self.final_report(f"{tr.n_tracked} warm-started tracking steps, {tr.n_full} "
                          f"from-scratch estimates ({tr.n_doubted} steps doubted), {tr.n_resets} resets")
        super().destroy_node()


def main(args=None):
    sys.exit(run_node(TrackingNode, args))


if __name__ == "__main__":
    main()
