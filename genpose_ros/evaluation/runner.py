"""Running the estimator over a NOCS-layout split, one record per ground-truth instance
(``tables.nocs_tables``): single frames, or sequences with the tracker the tracking node uses
(``pose/tracker.py``). Masks come from the ground truth, or from a segmenter run on the frame's
colour and depth (``segmenter=``), as NOCS and GenPose evaluate: each detection is matched to
the unmatched ground-truth object of its category that it overlaps most (mask IoU >= 0.5, best
score first); objects left over are missed, detections left over are false positives.
Each frame's table plane (``pose.support.table_plane``, outside the masks used) goes to the
estimator when ``support`` (default: config/estimator.yaml ``support.plane``), and the objects'
masks with the intrinsics when ``border`` (boxes the image border cuts, ``pose.border``), as the
nodes do."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from genpose_ros.data.nocs_io import list_frames, read_frame
from genpose_ros.data.pointcloud import TooFewPointsError, object_points, outline_margins
from genpose_ros.identity import most_likely
from genpose_ros.pose.support import table_plane
from genpose_ros.pose.tracker import Tracker, TrackerSettings


def frame_plane(estimator, frame, masks, support: bool | None = None):
    """The table plane of ``frame`` outside ``masks`` ((H, W) or (N, H, W) bool) when ``support``
    (None: the estimator's config ``support.plane``), else None."""
    if support is None:
        support = bool(estimator.config["support"]["plane"])
    return table_plane(frame.depth, frame.intrinsics, masks) if support else None


def border_inputs(frame, masks, border: bool = True) -> dict:
    """``estimate``'s ``masks`` and ``intrinsics`` for the objects' ``masks`` (an iterable, read
    only when ``border``) of ``frame`` when ``border``, else nothing."""
    return {"masks": list(masks), "intrinsics": frame.intrinsics} if border else {}


def frame_batch(frame, n_points: int, rng: np.random.Generator, erode: tuple[int, tuple[int, ...]] | None = None):
    """Points of every GT instance of a frame (GT masks); ``erode`` (pixels, sides): each mask's
    outline eroded by that many pixels on those sides (indices into ``OUTLINE_SIDES``).

    Returns (points (B, n_points, 3) float32, usable instances, instances with too few points).
    """
    pts, ok, missed = [], [], []
    for inst in frame.instances:
        mask = frame.mask == inst.instance_id
        if erode:
            mask &= (outline_margins(mask)[..., list(erode[1])] >= erode[0]).all(-1)
        try:
            pts.append(object_points(frame.depth, mask, frame.intrinsics, n_points, rng))
            ok.append(inst)
        except TooFewPointsError:
            missed.append(inst)
    points = np.stack(pts).astype(np.float32) if pts else np.zeros((0, n_points, 3), np.float32)
    return points, ok, missed


MATCH_MASK_IOU = 0.5


def detection_batch(frame, detections, n_points: int, rng: np.random.Generator):
    """Points of every detection of a segmenter (best first) with enough valid depth.

    Returns (points (B, n_points, 3) float32, the detections kept, how many were too small)."""
    pts, kept, small = [], [], 0
    for det in detections:
        try:
            pts.append(object_points(frame.depth, det.mask, frame.intrinsics, n_points, rng))
            kept.append(det)
        except TooFewPointsError:
            small += 1
    points = np.stack(pts).astype(np.float32) if pts else np.zeros((0, n_points, 3), np.float32)
    return points, kept, small


def match_detections(frame, detections) -> dict[int, int]:
    """{detection index: ground-truth instance index}: each detection, best score first, takes
    the free ground-truth object of its category with the largest mask IoU (>= 0.5)."""
    taken, pairs = set(), {}
    for d in sorted(range(len(detections)), key=lambda k: -detections[k].score):
        det = detections[d]
        best, best_iou = None, MATCH_MASK_IOU
        for g, inst in enumerate(frame.instances):
            if g in taken or inst.category != det.category:
                continue
            gt = frame.mask == inst.instance_id
            iou = (gt & det.mask).sum() / max((gt | det.mask).sum(), 1)
            if iou >= best_iou:
                best, best_iou = g, iou
        if best is not None:
            taken.add(best)
            pairs[d] = best
    return pairs


def false_positive_record(category: str, image, R, t, size, score) -> dict:
    """A prediction that covers no ground-truth object."""
    return {"image": image, "category": category, "handle_visible": True, "R_gt": None,
            "t_gt": None, "size_gt": None, "R_pred": R, "t_pred": t, "size_pred": size,
            "score": score, "instance_id": -1}


def make_record(inst, image=None, R=None, t=None, size=None, score=None) -> dict:
    """The record of a ground-truth instance of image ``image`` and its prediction (None: missed)."""
    return {"image": image, "category": inst.category, "handle_visible": bool(inst.handle_visible),
            "R_gt": np.asarray(inst.R), "t_gt": np.asarray(inst.t), "size_gt": np.asarray(inst.size),
            "R_pred": R, "t_pred": t, "size_pred": size, "score": score, "instance_id": int(inst.instance_id)}


def run_frames(estimator, prefixes: list[str], mode: str, overrides: dict | None = None, n_points: int = 1024,
               seed: int = 0, keep_hypotheses: bool = False, progress: bool = True,
               segmenter=None, erode: tuple[int, tuple[int, ...]] | None = None,
               support: bool | None = None, border: bool = True, reject: bool = True) -> dict:
    """Single-frame evaluation: one estimate() call per frame (all its objects in one batch);
    ``erode``: ground-truth masks eroded as in ``frame_batch``; ``support``: with the table plane
    (None: config's ``support.plane``); ``border``: with the boxes the image border cuts extended;
    ``reject``: a segmenter's detections that config ``reject`` drops are dropped.

    Returns {"records": [...], "latency_ms": [...per frame...], "frames": [(prefix, frame, frame records)],
    "hypotheses": [(K, 4, 4) per record] when keep_hypotheses}; with a ``segmenter``, its masks
    (``run_frame_detections``) and also "segment_ms" per frame and "rejected" (how many detections).
    """
    rng = np.random.default_rng(seed)
    out = {"records": [], "latency_ms": [], "frames": [], "hypotheses": [], "segment_ms": [], "rejected": 0}
    for k, prefix in enumerate(tqdm(prefixes, desc=f"eval {mode}", disable=not progress, mininterval=5)):
        frame = read_frame(prefix)
        if segmenter is not None:
            recs = run_frame_detections(estimator, segmenter, frame, k, mode, overrides, n_points,
                                        rng, out, support, border, reject)
            out["records"] += recs
            out["frames"].append((prefix, frame, recs))
            continue
        points, ok, missed = frame_batch(frame, n_points, rng, erode)
        recs = []
        if ok:
            est = estimator.estimate(points, [i.category for i in ok], mode=mode,
                                     return_hypotheses=keep_hypotheses,
                                     support_plane=frame_plane(estimator, frame, frame.mask > 0, support),
                                     **border_inputs(frame, (frame.mask == i.instance_id for i in ok), border),
                                     **(overrides or {}))
            out["latency_ms"].append(estimator.last_timing["total_ms"])
            for j, inst in enumerate(ok):
                recs.append(make_record(inst, k, est.R[j], est.t[j], est.size[j], float(est.score[j])))
                if keep_hypotheses:
                    out["hypotheses"].append(est.hypotheses[j])
        for inst in missed:
            recs.append(make_record(inst, k))
            if keep_hypotheses:
                out["hypotheses"].append(None)
        out["records"] += recs
        out["frames"].append((prefix, frame, recs))
    label_rest(out["frames"])
    return out


def label_rest(frames: list) -> None:
    """Sets ``rest`` (``tables.rest_kind``: upright, tilted, lying, upside down) on the
    ground-truth records of ``frames`` ((prefix, frame, records)) whose frame knows its camera pose."""
    from genpose_ros.evaluation.tables import rest_kind

    for _, frame, recs in frames:
        for r in recs:
            if r.get("R_gt") is not None:
                r["rest"] = rest_kind(r["R_gt"], frame.T_world_cam)


def segment(segmenter, estimator, frame, n_points: int, rng, out: dict):
    """The segmenter's detections of ``frame`` (its time in ``out["segment_ms"]``) and, as
    ``detection_batch``, the points of those with enough depth: (detections, points, kept,
    evidence), the categories of those kept as the estimator's category check makes them (the
    most likely of ``evidence``, `PoseEstimator.category_evidence`, None without a head; changes
    counted in ``out["relabelled"]``)."""
    import time

    t0 = time.perf_counter()
    detections = segmenter.predict(frame.color, frame.depth, fx=frame.intrinsics.fx)
    out["segment_ms"].append(1e3 * (time.perf_counter() - t0))
    points, kept, _ = detection_batch(frame, detections, n_points, rng)
    evidence = estimator.category_evidence(points, [d.category for d in kept], [d.score for d in kept])
    if evidence is None:
        return detections, points, kept, None
    cats = most_likely(evidence, estimator.categories)
    out["relabelled"] = out.get("relabelled", 0) + sum(c != d.category for c, d in zip(cats, kept))
    return detections, points, [replace(d, category=c) for d, c in zip(kept, cats)], evidence


def detection_records(frame, image, kept: list, poses, rejected, out: dict) -> list[dict]:
    """Records of one frame's detections ``kept`` with their ``poses`` (R, t, size, score arrays):
    those ``rejected`` (config reject, or None) are left out as the nodes leave them out (counted
    in ``out["rejected"]``); the rest are matched to the ground truth (``match_detections``).
    The score is the one a node publishes, mask confidence x agreement of the pose samples, which
    ranks the detections for mAP as NOCS ranks by the detection score."""
    R, t, size, score = poses
    idx = range(len(kept)) if rejected is None else np.flatnonzero(~rejected)
    out["rejected"] += len(kept) - len(idx)
    dets = [kept[d] for d in idx]
    preds = [(R[d], t[d], size[d], float(score[d] * kept[d].score)) for d in idx]
    pairs = match_detections(frame, dets)
    owner = {g: d for d, g in pairs.items()}
    recs = [make_record(inst, image, *preds[owner[g]]) if g in owner else make_record(inst, image)
            for g, inst in enumerate(frame.instances)]
    recs += [false_positive_record(dets[d].category, image, *preds[d]) for d in range(len(dets)) if d not in pairs]
    return recs


def run_frame_detections(estimator, segmenter, frame, image, mode, overrides, n_points, rng,
                         out: dict, support: bool | None = None, border: bool = True,
                         reject: bool = True) -> list[dict]:
    """One frame with the segmenter's masks: records of every ground-truth object (matched or
    missed) and of every unmatched detection (false positive); with ``reject``, the detections
    config/estimator.yaml ``reject`` drops are left out (counted in ``out["rejected"]``)."""
    detections, points, kept, _ = segment(segmenter, estimator, frame, n_points, rng, out)
    if not kept:
        return detection_records(frame, image, [], (None,) * 4, None, out)
    plane = frame_plane(estimator, frame, np.stack([d.mask for d in detections]), support)
    est = estimator.estimate(points, [d.category for d in kept], mode=mode, support_plane=plane,
                             mask_scores=[d.score for d in kept] if reject else None,
                             **border_inputs(frame, (d.mask for d in kept), border), **(overrides or {}))
    out["latency_ms"].append(estimator.last_timing["total_ms"])
    return detection_records(frame, image, kept, (est.R, est.t, est.size, est.score), est.rejected, out)


def sequence_folders(root) -> list[Path]:
    root = Path(root)
    seqs = sorted(p for p in root.iterdir() if p.is_dir())
    return seqs if seqs else [root]


def run_tracking(estimator, root, overrides: dict | None = None, init_mode: str | None = None,
                 n_points: int = 1024, seed: int = 0, max_frames: int | None = None, progress: bool = True,
                 settings: TrackerSettings | None = None, support: bool | None = None,
                 border: bool = True, segmenter=None, reject: bool = True) -> dict:
    """The tracker over each sequence under ``root`` in frame order (a fresh tracker per sequence):
    objects are associated, warm-started and re-initialised as in tracking_node; ``init_mode`` is
    the from-scratch mode (None: the estimator's default mode), ``overrides`` the tracking steps' sampler settings, ``settings`` a
    ``TrackerSettings``, ``support``, ``border``, ``segmenter`` and ``reject`` as ``run_frames``'
    (with a segmenter the tracker follows its detections, as tracking_node does). Frames where
    every object was warm-started count in ``latency_ms``, the others in ``init_latency_ms``."""
    rng = np.random.default_rng(seed)
    out = {"records": [], "latency_ms": [], "init_latency_ms": [], "frames": [], "segment_ms": [], "rejected": 0}
    for seq in tqdm(sequence_folders(root), desc="eval tracking", disable=not progress, mininterval=5):
        tracker = Tracker(estimator, init_mode, settings, {"tracking": overrides or {}})
        for prefix in list_frames(seq, labelled=True)[:max_frames]:
            frame = read_frame(prefix)
            image = len(out["frames"])
            if segmenter is not None:
                detections, points, kept, evidence = segment(segmenter, estimator, frame, n_points, rng, out)
                poses, rejected = (None,) * 4, None
                if kept:
                    step = tracker.step(points, [d.category for d in kept], [d.mask for d in kept],
                                        frame_plane(estimator, frame, np.stack([d.mask for d in detections]), support),
                                        frame.intrinsics if border else None,
                                        [d.score for d in kept] if reject else None, evidence)
                    (out["init_latency_ms"] if step.full else out["latency_ms"]).append(step.ms)
                    poses, rejected = (step.R, step.t, step.size, step.score), step.rejected
                    out["voted"] = out.get("voted", 0) + sum(c != d.category for c, d in zip(step.categories, kept))
                    kept = [replace(d, category=c) for d, c in zip(kept, step.categories)]
                recs = detection_records(frame, image, kept, poses, rejected, out)
                out["records"] += recs
                out["frames"].append((prefix, frame, recs))
                continue
            points, ok, missed = frame_batch(frame, n_points, rng)
            recs = []
            if ok:
                step = tracker.step(points, [i.category for i in ok], [frame.mask == i.instance_id for i in ok],
                                    frame_plane(estimator, frame, frame.mask > 0, support),
                                    frame.intrinsics if border else None)
                (out["init_latency_ms"] if step.full else out["latency_ms"]).append(step.ms)
                recs = [make_record(inst, image, step.R[j], step.t[j], step.size[j], float(step.score[j]))
                        for j, inst in enumerate(ok)]
            recs += [make_record(inst, image) for inst in missed]
            out["records"] += recs
            out["frames"].append((prefix, frame, recs))
    label_rest(out["frames"])
    return out
