"""tracking_node: pose_node with memory. Each tracked object is warm-started from its previous
pose (estimator mode ``tracking``); it is estimated from scratch (mode ``mode``) when it is new,
was lost, has a low score, jumped implausibly, every ``reinit_every`` frames, and after a message
on ``<output_prefix>/reset`` (std_msgs/Empty).

    ros2 run genpose_ros tracking_node --ros-args --params-file config/tracking_node.yaml

Association across frames: same class, then greedily by mask IoU with the track's last mask and
by the distance between point-cloud centroids. TF frames are ``<category>_<track id>``; track
ids are never reused, so a reset shows up as new frame names. Same outputs as pose_node.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

import numpy as np
from std_msgs.msg import Empty

from genpose_ros.ros.pose_node import PoseNode, seg_scores
from genpose_ros.ros.pose_outputs import empty_result
from genpose_ros.ros.spin import run_node

TRACKING_PARAMS = {
    "reinit_every": 30,           # frames between full re-estimates of a track (0 = never)
    "min_track_score": -1e9,      # a track scoring below this is re-estimated next frame
    "max_jump": 0.08,             # m; a tracking step moving the object further is distrusted
    "iou_min": 0.2,               # association: minimum mask IoU ...
    "max_centroid_dist": 0.05,    # ... or maximum centroid distance (m)
    "max_lost": 5,                # frames a track survives unseen
}


@dataclass
class Track:
    track_id: int
    category: str
    T: np.ndarray          # (4, 4) T_cam_obj, last estimate
    size: np.ndarray       # (3,)
    score: float
    mask: np.ndarray       # (H, W) bool, last mask
    centroid: np.ndarray   # (3,) mean of the last object points
    lost: int = 0
    since_full: int = 0
    needs_full: bool = False

    @property
    def name(self) -> str:
        return f"{self.category}_{self.track_id}"


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return 0.0
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def associate(tracks: list[Track], masks, centroids, categories, iou_min: float, max_dist: float):
    """Greedy one-to-one matching -> list of track index (or None) per instance."""
    pairs = []
    for i, (m, c, cat) in enumerate(zip(masks, centroids, categories)):
        for j, tr in enumerate(tracks):
            if tr.category != cat:
                continue
            iou, dist = mask_iou(m, tr.mask), float(np.linalg.norm(c - tr.centroid))
            if iou >= iou_min or dist <= max_dist:
                pairs.append((iou + max(0.0, 1.0 - dist / max(max_dist, 1e-9)), i, j))
    match, used = [None] * len(masks), set()
    for _, i, j in sorted(pairs, reverse=True):
        if match[i] is None and j not in used:
            match[i] = j
            used.add(j)
    return match


class TrackingNode(PoseNode):
    def __init__(self, **kwargs):
        super().__init__("tracking_node", extra_params=TRACKING_PARAMS, **kwargs)
        self.tracks: list[Track] = []
        self.next_id: dict[str, int] = {}
        self.n_full = self.n_tracked = self.n_resets = 0
        self._reset = threading.Event()
        self.create_subscription(Empty, f"{self.p['output_prefix'].rstrip('/')}/reset",
                                 lambda _: self._reset.set(), 10)

    def check_mode(self):
        if self.p["mode"] == "tracking":
            raise ValueError("tracking_node's `mode` is the from-scratch mode (genpose, "
                             "score_scaling or regression); tracking steps use mode tracking")
        super().check_mode()

    def estimate(self, frame, batch):
        if self._reset.is_set():
            self._reset.clear()
            self.get_logger().info(f"reset: dropping {len(self.tracks)} tracks, re-estimating from scratch")
            self.tracks, self.n_resets = [], self.n_resets + 1
        insts = batch.instances
        cats = [i.category for i in insts]
        masks = [i.mask for i in insts]
        centroids = [p.mean(axis=0) for p in batch.points]
        match = associate(self.tracks, masks, centroids, cats, self.p["iou_min"],
                          self.p["max_centroid_dist"])
        reinit = self.p["reinit_every"]
        warm = [i for i, j in enumerate(match) if j is not None and not self.tracks[j].needs_full
                and not (reinit and self.tracks[match[i]].since_full + 1 >= reinit)]
        full = [i for i in range(len(insts)) if i not in warm]
        B = len(insts)
        R, t, size, score = empty_result(B)
        if warm:
            prev = np.stack([self.tracks[match[i]].T for i in warm]).astype(np.float32)
            est = self.estimator.estimate(batch.points[warm], [cats[i] for i in warm],
                                          mode="tracking", prev_poses=prev)
            R[warm], t[warm], size[warm], score[warm] = est.R, est.t, est.size, est.score
            self.n_tracked += len(warm)
        if full:
            est = self.estimator.estimate(batch.points[full], [cats[i] for i in full], mode=self.p["mode"])
            R[full], t[full], size[full], score[full] = est.R, est.t, est.size, est.score
            self.n_full += len(full)
        names = self._update_tracks(match, warm, insts, centroids, R, t, size, score)
        return names, cats, R, t, size, score * seg_scores(batch), None

    def _update_tracks(self, match, warm, insts, centroids, R, t, size, score):
        names, seen = [], set()
        for i, inst in enumerate(insts):
            T = np.eye(4)
            T[:3, :3], T[:3, 3] = R[i], t[i]
            j = match[i]
            if j is None:
                tid = self.next_id.get(inst.category, 0)
                self.next_id[inst.category] = tid + 1
                tr = Track(tid, inst.category, T, size[i], float(score[i]), inst.mask, centroids[i])
                self.tracks.append(tr)
            else:
                tr = self.tracks[j]
                jump = float(np.linalg.norm(T[:3, 3] - tr.T[:3, 3])) if i in warm else 0.0
                tr.T, tr.size, tr.score, tr.mask, tr.centroid = T, size[i], float(score[i]), inst.mask, centroids[i]
                tr.lost = 0
                tr.since_full = tr.since_full + 1 if i in warm else 0
                tr.needs_full = jump > self.p["max_jump"] or tr.score < self.p["min_track_score"]
            seen.add(id(tr))
            names.append(tr.name)
        for tr in self.tracks:
            if id(tr) not in seen:
                tr.lost += 1
                tr.needs_full = True
        self.tracks = [tr for tr in self.tracks if tr.lost <= self.p["max_lost"]]
        return names


    def destroy_node(self):
        self.final_report(f"{self.n_tracked} warm-started tracking steps, {self.n_full} "
                          f"from-scratch estimates, {self.n_resets} resets")
        super().destroy_node()


def main(args=None):
    sys.exit(run_node(TrackingNode, args))


if __name__ == "__main__":
    main()
