"""pose_node: depth + instance masks + camera_info -> 6D pose and size of every instance.

    ros2 run genpose_ros pose_node --ros-args --params-file config/pose_node.yaml

Inputs (synchronised by stamp within ``slop`` s; only the latest set is processed): aligned
depth (16UC1 mm or 32FC1 m), the masks pair (docs/ros.md), the colour image when the overlay is
on; camera_info is taken as the latest one received. All instances of a frame go to the
estimator in one batch. Outputs: see `pose_outputs.PoseOutputs`. Topic names are relative, so a
node namespace (``-r __ns:=/robot1``, a launch ``namespace``) moves all of them.
Each object keeps its name ``<frame_prefix><category>_<n>`` (Detection3D.id and TF child frame)
from frame to frame, and its class is the category check's evidence summed over its frames
(`genpose_ros.identity`, ``category_memory``); symmetric objects get the stable yaw of
`genpose_ros.pose.canonical`, and each pose carries the covariance of the K hypotheses.
Bad input (wrong encoding, sizes, no or implausible depth, no camera_info, empty mask, unknown
class, inputs that never synchronise, repeated or older stamps, too many instances, scores
outside [0, 1]) is reported as a warning naming the problem (docs/ros.md, "Input checks"), and
the next frame is processed as usual. With config/estimator.yaml's ``support.plane`` the
table's plane is fitted to the depth outside the masks and the poses are fitted to it
(``genpose_ros.pose.support``); with ``gravity_frame`` (the robot's base) only a plane facing up
in that frame counts as the table.
"""
from __future__ import annotations

import math
import sys
import time
from collections import deque

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

from genpose_ros.identity import IdentityTable, most_likely
from genpose_ros.paths import pose_checkpoint
from genpose_ros.pose.canonical import canonical_poses, pose_covariance
from genpose_ros.pose.support import table_plane
from genpose_ros.pose.tracker import TrackerSettings
from genpose_ros.ros.frame_input import InputProblem, instance_points, read_frame
from genpose_ros.ros.pose_outputs import PoseOutputs, empty_result
from genpose_ros.ros.params import accept_changes, check_device, declare
from genpose_ros.ros.problems import ProblemLog
from genpose_ros.ros.qos import InputSubscription
from genpose_ros.ros.spin import run_node, shutting_down
from genpose_ros.ros.sync import ApproximateSync, StampOrder, Worker, stamp_ns

IDENTITY_PARAMS = ("iou_min", "max_centroid_dist", "max_lost", "category_memory", "category_min_p")
PARAMS = {  # the one table of this node's parameters and defaults (config/pose_node.yaml mirrors it)
    "checkpoint": "",             # "" = the newest models/genpose_*.pt
    "device": "cpu",
    "threads": 0,                 # torch CPU threads (0 = torch's default)
    "mode": "",                   # genpose | score_scaling | regression; "" = config/estimator.yaml default_mode
    "sampler_overrides": "",      # YAML mapping over config/estimator.yaml's settings of `mode`, e.g. "{n_steps: 10}"
    "n_points": 0,                # points per object; 0 = the model's input size (another value is rejected)
    "min_points": 50,
    "min_score": 0.3,             # instances with a lower segmentation score are ignored
    "max_instances": 20,          # per frame; beyond, the lowest-scoring are dropped (0 = no cap)
    "min_depth": 0.1,             # m; the median valid depth of a frame must lie between
    "max_depth": 10.0,            # min_depth and max_depth (catches wrong units)
    "seed": 0,
    "slop": 0.02,                 # s, approximate time sync
    "queue_size": 5,
    "stamp_restart": 1.0,         # s; stamps jumping back further mean a restarted source
    "input_timeout": 10.0,        # s with no input message at all: a warning naming each input's publishers (0 = off)
    "input_qos": "auto",          # auto (reliable or best effort, as the publishers) |
    "input_qos_depth": 5,         # reliable | sensor_data
    "color_topic": "camera/camera/color/image_raw",          # relative: follow the namespace
    "depth_topic": "camera/camera/aligned_depth_to_color/image_raw",
    "camera_info_topic": "camera/camera/color/camera_info",
    "masks_topic": "genpose/masks",
    "detections_2d_topic": "genpose/detections_2d",
    "output_prefix": "genpose",
    "frame_prefix": "",           # prepended to every object's TF frame and Detection3D.id
    "publish_hypotheses": False,
    "publish_overlay": True,
    "gravity_frame": "",          # a TF frame whose +z is up (the robot's base); set: a table plane whose normal
    "support_max_tilt_deg": 30.0,  # is further than this from it (a wall) is not used (config/estimator.yaml support)
    # identity across frames: minimum mask IoU, or maximum point-centroid distance (m), the frames
    # an unseen object keeps its name, and how its class sums the category check's evidence over
    # frames (genpose_ros.identity); the defaults of the tracker's association
    **{k: getattr(TrackerSettings(), k) for k in IDENTITY_PARAMS},
}
DYNAMIC = ("min_score", "min_points", "max_instances")   # read at every frame: `ros2 param set` changes them
BOUNDS = {"threads": ">=0", "input_timeout": ">=0", "n_points": ">=0", "min_points": ">=1", "min_score": "0..1",
          "max_instances": ">=0", "min_depth": ">0", "max_depth": ">0", "support_max_tilt_deg": "0..90",
          "iou_min": "0..1", "max_centroid_dist": ">=0", "max_lost": ">=0", "category_memory": "0..1",
          "category_min_p": "0..1"}   # params.check_range


def load_estimator(checkpoint: str, device: str, seed: int = 0):
    path = pose_checkpoint(checkpoint)
    from genpose_ros.pose.estimator import PoseEstimator  # imports torch: after the cheap checks

    return PoseEstimator.from_checkpoint(str(path), device=device, seed=seed), path


def sampler_overrides(text: str, mode: str) -> dict:
    """The ``sampler_overrides`` parameter (a YAML mapping) checked against config/estimator.yaml."""
    import yaml

    from genpose_ros.config import sampler_settings

    try:
        overrides = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError:
        overrides = None
    if not isinstance(overrides, dict):
        raise ValueError(f"parameter 'sampler_overrides': expected a YAML mapping such as "
                         f"'{{n_steps: 10}}', got {text!r}")
    sampler_settings(mode, overrides)
    return overrides


class PoseNode(Node):
    """Single-frame pose estimation; `TrackingNode` overrides `estimate`."""

    def __init__(self, name: str = "pose_node", extra_params: dict | None = None, **kwargs):
        super().__init__(name, **kwargs)
        params = {**PARAMS, **(extra_params or {})}
        self.p = declare(self, params, BOUNDS, dynamic=DYNAMIC)
        accept_changes(self, params, BOUNDS, DYNAMIC)
        check_device(self.p["device"])
        if self.p["min_depth"] >= self.p["max_depth"]:
            raise ValueError(f"parameters 'min_depth' ({self.p['min_depth']:g} m) and 'max_depth' "
                             f"({self.p['max_depth']:g} m): min_depth must be the smaller")
        self.check_mode()
        if self.p["frame_prefix"].startswith("/"):
            raise ValueError(f"frame_prefix {self.p['frame_prefix']!r}: TF frame names do not start "
                             "with '/' (e.g. robot1/)")
        if self.p["threads"] > 0:
            import torch
            torch.set_num_threads(self.p["threads"])
        self.overrides = sampler_overrides(self.p["sampler_overrides"], self.p["mode"])
        self.estimator, path = load_estimator(self.p["checkpoint"], self.p["device"], self.p["seed"])
        self.check_n_points()
        self.get_logger().info(f"pose checkpoint {path}, mode {self.p['mode']}"
                               + (f" with {self.overrides}" if self.overrides else ""))
        if self.estimator.category_note:
            self.get_logger().warning(self.estimator.category_note)
        self.rng = np.random.default_rng(self.p["seed"])
        self._problems = ProblemLog(self.get_logger())
        self.problems = self._problems.items
        self.frame_times: deque[float] = deque(maxlen=200)
        self.frames_done = self.n_rejected = self.n_relabelled = 0
        self._info = None
        self.identities = IdentityTable(*(self.p[k] for k in IDENTITY_PARAMS[:3]), self.estimator.categories,
                                        *(self.p[k] for k in IDENTITY_PARAMS[3:]))
        if self.p["gravity_frame"]:  # the world's up direction for the table plane
            from genpose_ros.ros.tf import TransformBuffer, TransformListener

            self.tf_buffer = TransformBuffer()
            self._tf_listener = TransformListener(self.tf_buffer, self)

        self.outputs = PoseOutputs(self, self.p["output_prefix"], self.p["publish_hypotheses"],
                                   self.p["publish_overlay"])
        inputs = [(Image, "depth_topic"), (Image, "masks_topic"), (Detection2DArray, "detections_2d_topic")]
        if self.p["publish_overlay"]:
            inputs.append((Image, "color_topic"))
        self.sync = ApproximateSync(len(inputs), self.p["slop"], self._on_set, self.p["queue_size"],
                                    names=[self.resolve_topic_name(self.p[k]) for _, k in inputs],
                                    on_stall=self.warn)
        self.order = StampOrder(self.p["stamp_restart"])
        # camera_info first: the executor serves ready subscriptions in creation order
        qos, depth = self.p["input_qos"], self.p["input_qos_depth"]
        self._subs = [InputSubscription(self, CameraInfo, self.p["camera_info_topic"], self._on_info,
                                        qos, depth)]
        self._subs += [InputSubscription(self, t, self.p[k], lambda m, i=i: self.sync.add(i, m), qos, depth)
                       for i, (t, k) in enumerate(inputs)]
        self.worker = Worker(self._process_safe, name=f"{name}_worker")
        self._started, self._idle_warned = time.monotonic(), False
        if self.p["input_timeout"] > 0:
            self.create_timer(self.p["input_timeout"] / 4, self._check_idle)

    def check_mode(self):
        from genpose_ros.config import default_mode
        from genpose_ros.pose.estimator import SINGLE_FRAME_MODES, check_mode

        self.p["mode"] = self.p["mode"] or default_mode()
        if self.p["mode"] == "tracking":
            raise ValueError("mode 'tracking' needs the previous poses: run tracking_node instead")
        check_mode(self.p["mode"], SINGLE_FRAME_MODES)

    def check_n_points(self):
        """n_points 0 -> the model's input size; any other size would be resampled: rejected."""
        model_n = self.estimator.n_points
        if self.p["n_points"] == 0:
            self.p["n_points"] = model_n
        elif self.p["n_points"] != model_n:
            raise ValueError(f"parameter 'n_points' is {self.p['n_points']} but the model takes {model_n} "
                             "points per object; set 0 to use the model's")

    # -- inputs ---------------------------------------------------------------------------------
    def _on_info(self, msg: CameraInfo):
        if self._info is None:
            self.get_logger().info(f"camera_info received: {msg.width}x{msg.height}, frame {msg.header.frame_id!r}")
        self._info = msg

    def _check_idle(self):
        """No input message at all for ``input_timeout`` s (a camera not started or unplugged, a
        namespace that differs): one warning per silence, naming every input and how many
        publishers it has, which tells a topic nobody publishes from a publisher that is quiet."""
        age = self.sync.last_message_age()
        idle = time.monotonic() - self._started if age is None else age
        if idle < self.p["input_timeout"]:
            self._idle_warned = False
            return
        if self._idle_warned:
            return
        self._idle_warned = True
        topics = [self.resolve_topic_name(self.p["camera_info_topic"]), *self.sync.names]
        counts = ", ".join(f"{t} ({_publishers(self.count_publishers(t))})" for t in topics)
        self.warn(f"no input for {idle:.0f} s ({'since start-up' if age is None else 'since the last message'}): "
                  f"{counts}; a topic without publishers is not published under that name (is the camera "
                  "driver running, in this namespace?), one with publishers is quiet or its QoS does not match")

    def _on_set(self, depth, masks, det2d, color=None):
        self.get_logger().debug(f"synchronised set {depth.header.stamp.sec}.{depth.header.stamp.nanosec:09d}")
        accept, note = self.order.check(stamp_ns(depth))
        if note:
            self.warn(note)
        if accept and note:  # accepted with a note: the source restarted
            self.on_restart()
        if accept:
            self.worker.slot.put((depth, masks, det2d, color))

    def on_restart(self):
        """The input stamps jumped back (a restarted source); `TrackingNode` drops its tracks."""

    def _camera_info(self, wait_s: float = 1.0):
        """The latest camera_info; waits up to ``wait_s`` for the first one (right after start-up
        its subscription may be matched later than the image ones)."""
        deadline = time.monotonic() + wait_s
        while self._info is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._info

    def warn(self, text: str, period_s: float = 2.0):
        self._problems.warn(text, period_s)

    # -- processing -----------------------------------------------------------------------------
    def _process_safe(self, item):
        try:
            self.process(*item)
        except InputProblem as exc:
            self.warn(str(exc))
        except Exception as exc:  # keep serving: one bad frame must not stop the node
            if not shutting_down(self.context):  # else: the publishers are gone
                self.warn(f"frame failed: {type(exc).__name__}: {exc}")

    def process(self, depth, masks, det2d, color=None):
        t0 = time.perf_counter()
        frame = read_frame(depth, masks, det2d, self._camera_info(), color, self.p["camera_info_topic"],
                           (self.p["min_depth"], self.p["max_depth"]), self.p["max_instances"])
        if frame.depth_note:
            self.warn(frame.depth_note, period_s=math.inf)
        for w in frame.notes:
            self.warn(w)
        batch = instance_points(frame, self.p["n_points"], self.p["min_points"], self.rng,
                                self.p["min_score"])
        for w in batch.warnings:
            self.warn(w)
        evidence = self.check_categories(batch)
        names, cats, R, t, size, score, hyp = self.estimate(frame, batch, evidence)
        R, hyp = canonical_poses(R, t, cats, hyp)
        cov = [pose_covariance(R[i], t[i], None if hyp is None else hyp[i]) for i in range(len(cats))]
        names = [self.p["frame_prefix"] + n for n in names]
        self.outputs.publish(frame.header, names, cats, R, t, size, score, cov,
                             hyp if self.p["publish_hypotheses"] else None, frame.color,
                             frame.intrinsics.matrix())
        self.frame_times.append(time.perf_counter() - t0)
        self.frames_done += 1
        self.get_logger().debug(f"frame {frame.header.stamp.sec}.{frame.header.stamp.nanosec:09d}: "
                                f"{len(names)} objects in {1e3 * self.frame_times[-1]:.0f} ms")

    def check_categories(self, batch):
        """The segmenter's categories weighed against the points' (the estimator's category check,
        config/estimator.yaml ``category``): each instance takes its most likely class (changed
        ones counted for the closing report); returns the evidence (B, C) or None without a head."""
        evidence = self.estimator.category_evidence(batch.points, [i.category for i in batch.instances],
                                                    seg_scores(batch))
        if evidence is None:
            return None
        for inst, cat in zip(batch.instances, most_likely(evidence, self.estimator.categories)):
            if cat != inst.category:
                self.get_logger().debug(f"instance {inst.instance_id}: {inst.category} -> {cat} (category check)")
                self.n_relabelled += 1
                inst.category = cat
        return evidence

    def estimate(self, frame, batch, evidence=None):
        """(names, categories, R, t, size, score, hypotheses: B arrays (K, 4, 4)) for the
        instances of ``batch``; names stable across frames. ``evidence``: `check_categories`'
        (tracking_node sums it over its tracks' frames)."""
        cats = [inst.category for inst in batch.instances]
        if not cats:
            return [], [], *empty_result(0), None
        masks, cents = [i.mask for i in batch.instances], centroids(batch)
        cats = self.identities.classes(cats, masks, cents, evidence)   # an object's class over its frames
        est = self.estimator.estimate(batch.points, cats, mode=self.p["mode"], return_hypotheses=True,
                                      support_plane=self.support_plane(frame),
                                      masks=masks, intrinsics=frame.intrinsics,
                                      mask_scores=seg_scores(batch), **self.overrides)
        keep = self.count_rejected(est.rejected)
        if not len(keep):
            return [], [], *empty_result(0), None
        est, batch = est.take(keep), batch.take(keep)
        score = est.score * seg_scores(batch)  # mask confidence x agreement of the pose samples
        names, cats = self.identities.assign([cats[i] for i in keep], [masks[i] for i in keep],
                                             [cents[i] for i in keep], None if evidence is None else evidence[keep])
        return names, cats, est.R, est.t, est.size, score, list(est.hypotheses)

    def count_rejected(self, rejected) -> np.ndarray:
        """Indices of the instances kept: config/estimator.yaml ``reject`` drops a pose the verifier
        rates badly whose mask scored low (counted in the final report)."""
        self.n_rejected += int(rejected.sum())
        return np.flatnonzero(~rejected)

    def support_plane(self, frame):
        """The table's plane in the camera frame, fitted to the depth outside every mask of the
        frame, when config/estimator.yaml's ``support.plane`` is on (else or without one: None);
        with ``gravity_frame``, only a plane facing up in it (no plane while TF lacks it)."""
        if not self.estimator.config["support"]["plane"] or not frame.instances:
            return None
        up = None
        if self.p["gravity_frame"]:
            up = self.gravity_up(frame.header)
            if up is None:
                return None
        return table_plane(frame.depth_mm, frame.intrinsics, np.stack([i.mask for i in frame.instances]),
                           up, self.p["support_max_tilt_deg"])

    def gravity_up(self, header):
        """``gravity_frame``'s +z axis in the image's frame at its stamp (else the latest), or None
        with a warning while TF has no such transform."""
        from genpose_ros.ros.tf import TransformLookupError

        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        for time_ns in (stamp_ns, None):
            try:
                T = self.tf_buffer.lookup(header.frame_id, self.p["gravity_frame"], time_ns)
                return T[:3, 2]
            except TransformLookupError as exc:
                problem = exc
        self.warn(f"gravity_frame {self.p['gravity_frame']!r}: no transform to {header.frame_id!r} yet "
                  f"({problem}); no table plane for this frame")
        return None

    def final_report(self, text: str):
        """Log a closing summary, also when rclpy is already shut down or shutting down (Ctrl-C)."""
        if not shutting_down(self.context):
            self.get_logger().info(text)
        else:
            print(f"[{self.get_name()}] {text}", file=sys.stderr, flush=True)

    def destroy_node(self):
        if not hasattr(self, "worker"):   # the constructor stopped early (a bad parameter)
            return super().destroy_node()
        self.final_report(f"{self.sync.matched} synchronised frames, {self.frames_done} processed, "
                          f"{self.worker.slot.dropped} skipped while busy, {self.n_rejected} detections "
                          f"dropped as doubtful (config/estimator.yaml reject), {self.n_relabelled} categories "
                          "changed by the category check")
        self.worker.stop()
        super().destroy_node()


def _publishers(n: int) -> str:
    return f"{n} publisher{'' if n == 1 else 's'}"


def centroids(batch) -> list[np.ndarray]:
    """(3,) mean of each instance's points."""
    return [p.mean(axis=0) for p in batch.points]


def seg_scores(batch) -> np.ndarray:
    """(B,) segmentation confidence of each instance of ``batch``."""
    return np.array([inst.score for inst in batch.instances], dtype=np.float32)


def main(args=None):
    sys.exit(run_node(PoseNode, args))


if __name__ == "__main__":
    main()
