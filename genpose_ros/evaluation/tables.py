"""NOCS accuracy and mAP tables (IoU25/50/75, 5deg2cm, 5deg5cm, 10deg2cm, 10deg5cm), computed
as the NOCS authors' ``compute_degree_cm_mAP`` and GenPose's ``compute_mAP`` do.

Records: one dict per ground-truth instance (``category``, ``handle_visible``, ``R_gt``,
``t_gt``, ``size_gt`` and its own prediction ``R_pred``, ``t_pred``, ``size_pred``, ``score``;
``R_pred`` None = missed), and one per prediction without ground truth (``R_gt`` None: a false
positive). Records with the same ``image`` key come from one image; without it every record is
an image of its own.

- Accuracy: the share of ground-truth instances whose own prediction is within the threshold.
- mAP: per image and category the predictions, by falling score, take the first free ground
  truth in the references' order (highest IoU; smallest deg + cm), separately for every
  threshold; predictions left without one are false positives. All-point interpolated AP over
  the ranked predictions of a category, recall against its ground-truth count.
- Thresholds as in the references: pose inclusive (error <= deg and <= cm), IoU strict (> 0.25).
- mean: over the six NOCS categories; a category without ground truth counts 0, as in both
  references (their mean is over all classes).
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from genpose_ros import CATEGORIES
from genpose_ros.evaluation.metrics import iou_3d, record_errors, rotation_error_deg, translation_error_cm

POSE_THRESHOLDS = {"5deg2cm": (5.0, 2.0), "5deg5cm": (5.0, 5.0),
                   "10deg2cm": (10.0, 2.0), "10deg5cm": (10.0, 5.0)}
IOU_THRESHOLDS = {"IoU25": 0.25, "IoU50": 0.50, "IoU75": 0.75}
METRICS = tuple(IOU_THRESHOLDS) + tuple(POSE_THRESHOLDS)
MEAN_NOTE = ("mean: over the six NOCS categories (a category without instances counts 0, as in the "
             "NOCS and GenPose evaluation code)")


def is_ground_truth(rec: dict) -> bool:
    return rec.get("R_gt") is not None


def is_predicted(rec: dict) -> bool:
    return rec.get("R_pred") is not None and rec.get("t_pred") is not None


def ranking(scores) -> np.ndarray:
    """Indices by falling score, as both references rank (``np.argsort(scores)[::-1]``): the
    float32 scores of a results file tie often, and the tie order changes the AP."""
    return np.argsort(np.asarray(scores, float))[::-1]


def compute_ap(success: np.ndarray, scores: np.ndarray, n_gt: int) -> float:
    """Average precision (NOCS / VOC style, all-point interpolation) of predictions ranked by
    score (``ranking``); ``success`` marks the true positives, ``n_gt`` the number of
    ground-truth objects."""
    if n_gt == 0:
        return float("nan")
    if len(success) == 0:
        return 0.0
    tp = np.asarray(success, bool)[ranking(scores)]
    cum = np.cumsum(tp)
    precision = np.concatenate([[0.0], cum / np.arange(1, len(tp) + 1), [0.0]])
    recall = np.concatenate([[0.0], cum / n_gt, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[idx] - recall[idx - 1]) * precision[idx]))


def greedy_match(pred_order, gt_orders, passes: np.ndarray, first_free_only: bool) -> np.ndarray:
    """The references' matching loop. Predictions in ``pred_order`` each walk their ground-truth
    order ``gt_orders[i]``, skip those already taken and take the first one that ``passes``
    (P, G) allows; ``first_free_only`` stops at the first free one (the IoU loop's ``break``).
    Returns (P,) bool: which predictions found a ground truth."""
    taken = np.zeros(passes.shape[1], bool)
    hit = np.zeros(passes.shape[0], bool)
    for i in pred_order:
        for j in gt_orders[i]:
            if taken[j]:
                continue
            if passes[i, j]:
                taken[j] = hit[i] = True
                break
            if first_free_only:
                break
    return hit


def pair_errors(preds: list[dict], gts: list[dict], iou_variant: str) -> tuple[np.ndarray, ...]:
    """(P, G) rotation errors (deg), translation errors (cm) and IoUs of every prediction
    against every ground truth of one image and category (IoU NaN without a predicted size)."""
    rot = np.full((len(preds), len(gts)), np.inf)
    trans = np.full_like(rot, np.inf)
    iou = np.zeros_like(rot)
    for j, g in enumerate(gts):
        hv = bool(g.get("handle_visible", True))
        for i, p in enumerate(preds):
            rot[i, j] = rotation_error_deg(p["R_pred"], g["R_gt"], g["category"], hv)
            trans[i, j] = translation_error_cm(p["t_pred"], g["t_gt"])
            iou[i, j] = math.nan if p.get("size_pred") is None else iou_3d(
                p["R_pred"], p["t_pred"], p["size_pred"], g["R_gt"], g["t_gt"], g["size_gt"],
                g["category"], hv, variant=iou_variant)
    return rot, trans, iou


def image_matches(preds: list[dict], gts: list[dict], iou_variant: str) -> tuple[np.ndarray, dict]:
    """One image's predictions of one category by falling score: (scores (P,), {metric: (P,)
    bool true positives})."""
    scores = np.array([_score(p) for p in preds])
    order = ranking(scores)
    rot, trans, iou = pair_errors([preds[i] for i in order], gts, iou_variant)
    ranked = np.arange(len(preds))
    hits = {}
    for m, thr in IOU_THRESHOLDS.items():
        hits[m] = greedy_match(ranked, np.argsort(iou, axis=1)[:, ::-1], iou > thr, first_free_only=True)
    for m, (deg, cm) in POSE_THRESHOLDS.items():
        hits[m] = greedy_match(ranked, np.argsort(rot + trans, axis=1), (rot <= deg) & (trans <= cm),
                               first_free_only=False)
    return scores[order], hits


def _score(rec: dict) -> float:
    return 1.0 if rec.get("score") is None else float(rec["score"])


def by_image_and_category(records: list[dict]) -> dict[tuple, tuple[list[dict], list[dict]]]:
    """{(image, category): (predictions, ground truths)}; checks the categories."""
    groups = defaultdict(lambda: ([], []))
    for i, rec in enumerate(records):
        cat = rec.get("category")
        if cat not in CATEGORIES:
            raise ValueError(f"record {i} has unknown category {cat!r}; known: {', '.join(CATEGORIES)}")
        image = rec.get("image")
        preds, gts = groups[(("record", i) if image is None else image, cat)]
        if is_predicted(rec):
            preds.append(rec)
        if is_ground_truth(rec):
            gts.append(rec)
    return groups


def average_precisions(records: list[dict], iou_variant: str = "exact") -> dict[str, dict[str, float]]:
    """{metric: {category: AP in %}} for the categories with ground truth."""
    hits, scores = defaultdict(lambda: defaultdict(list)), defaultdict(list)
    n_gt, sized = defaultdict(int), defaultdict(lambda: True)
    for (_, cat), (preds, gts) in by_image_and_category(records).items():
        n_gt[cat] += len(gts)
        sized[cat] &= all(p.get("size_pred") is not None for p in preds)
        ranked_scores, image_hits = image_matches(preds, gts, iou_variant)
        scores[cat] += ranked_scores.tolist()
        for m, h in image_hits.items():
            hits[m][cat] += h.tolist()
    ap = {m: {} for m in METRICS}
    for cat in (c for c in CATEGORIES if n_gt[c]):
        for m in METRICS:
            undefined = m in IOU_THRESHOLDS and not sized[cat]
            ap[m][cat] = math.nan if undefined else 100.0 * compute_ap(hits[m][cat], scores[cat], n_gt[cat])
    return ap


def accuracies(records: list[dict], errors: list[dict]) -> dict[str, dict[str, float]]:
    """{metric: {category: % of ground-truth instances within the threshold}}."""
    acc = {m: {} for m in METRICS}
    for cat in CATEGORIES:
        errs = [e for r, e in zip(records, errors) if r["category"] == cat]
        if not errs:
            continue
        rot, trans, iou = (np.array([e[k] for e in errs]) for k in ("rot", "trans", "iou"))
        for m, (deg, cm) in POSE_THRESHOLDS.items():
            acc[m][cat] = 100.0 * float(((rot <= deg) & (trans <= cm)).mean())
        for m, thr in IOU_THRESHOLDS.items():
            acc[m][cat] = math.nan if np.isnan(iou).any() else 100.0 * float((iou > thr).mean())
    return acc


REST_KINDS = {"upright": 20.0, "tilted": 60.0, "lying": 120.0, "upside down": 180.0}
"""Resting poses by the angle (deg) between the object's y axis and the world's up axis: up to
each bound (the first one that holds)."""
REST_NOTE = "the angle of the object's up axis to the world's: " + ", ".join(
    f"{kind} <= {bound:.0f} deg" for kind, bound in list(REST_KINDS.items())[:-1]) + f", else {list(REST_KINDS)[-1]}"


def rest_kind(R_cam_obj, T_world_cam) -> str | None:
    """How an object rests (a ``REST_KINDS`` key) from its camera-frame rotation and the camera's
    pose in a world frame whose z axis points up; None when the camera pose is unknown."""
    if T_world_cam is None:
        return None
    up = np.asarray(T_world_cam)[:3, :3] @ np.asarray(R_cam_obj)[:, 1]
    angle = math.degrees(math.acos(float(np.clip(up[2] / max(np.linalg.norm(up), 1e-12), -1.0, 1.0))))
    return next(kind for kind, bound in REST_KINDS.items() if angle <= bound)


def by_rest(records: list[dict], errors: list[dict]) -> dict:
    """{resting pose: {category: {"n", "5deg2cm", "10deg5cm"}}} of the ground-truth records that
    carry a ``rest`` (``rest_kind``); {} when none does."""
    out = {}
    for kind in REST_KINDS:
        pairs = [(r, e) for r, e in zip(records, errors) if r.get("rest") == kind]
        if pairs:
            acc = accuracies([r for r, _ in pairs], [e for _, e in pairs])
            out[kind] = {c: {"n": sum(r["category"] == c for r, _ in pairs),
                             "5deg2cm": acc["5deg2cm"][c], "10deg5cm": acc["10deg5cm"][c]}
                         for c in CATEGORIES if c in acc["5deg2cm"]}
    return out


def format_rest_table(rest: dict, metric: str = "5deg2cm") -> str:
    """Markdown table of ``by_rest``: resting poses as rows, categories as columns ("% (n)")."""
    lines = ["| resting pose | " + " | ".join(CATEGORIES) + " |", "|---" * (len(CATEGORIES) + 1) + "|"]
    for kind, cats in rest.items():
        cells = [f"{cats[c][metric]:.1f} ({cats[c]['n']})" if c in cats else "" for c in CATEGORIES]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def category_mean(per_category: dict[str, float]) -> float:
    """Mean over the six categories; a missing category counts 0, a NaN one makes it NaN, and
    without any category it is NaN."""
    return float(sum(per_category.values()) / len(CATEGORIES)) if per_category else math.nan


def present_mean(tables: dict, metric: str, kind: str = "accuracy") -> float:
    """Mean of ``nocs_tables(...)[kind][metric]`` over the categories that have ground truth
    (the demo's scene holds some of the six); NaN without any."""
    values = [tables[kind][metric][c] for c in tables["counts"] if c in tables[kind][metric]]
    return float(np.mean(values)) if values else math.nan


def nocs_tables(records: list[dict], iou_variant: str = "exact", errors: list[dict] | None = None) -> dict:
    """Accuracy and mAP tables in percent, per category and their mean (see the module docstring).

    Args:
        records: ground-truth and false-positive records (module docstring).
        iou_variant: "exact", "aabb" or "nocs" (``metrics``).
        errors: ``metrics.record_errors`` of the ground-truth records, when already computed.
    Returns:
        {"accuracy": {metric: {category: %, ..., "mean": %}}, "mAP": same layout,
         "counts": {category: n ground truth}, "false_positives": {category: n},
         "median_rot_deg": {...}, "median_trans_cm": {...}, "iou_variant": str}; NaN where
        undefined (IoU metrics when a prediction has no size).
    """
    gts = [r for r in records if is_ground_truth(r)]
    ap = average_precisions(records, iou_variant)  # also checks the categories
    if errors is None:
        errors = [record_errors(r, iou_variant) for r in gts]
    acc = accuracies(gts, errors)
    for table in (acc, ap):
        for m in METRICS:
            table[m]["mean"] = category_mean(table[m])
    counts = {c: n for c in CATEGORIES if (n := sum(r["category"] == c for r in gts))}
    fps = {c: n for c in CATEGORIES if (n := sum(r["category"] == c for r in records if not is_ground_truth(r)))}
    med = {k: {c: float(np.median([e[k] for r, e in zip(gts, errors) if r["category"] == c])) for c in counts}
           for k in ("rot", "trans")}
    return {"accuracy": acc, "mAP": ap, "counts": counts, "false_positives": fps,
            "median_rot_deg": med["rot"], "median_trans_cm": med["trans"], "iou_variant": iou_variant}


def format_table(tables: dict, kind: str = "accuracy", present: bool = False) -> str:
    """Markdown table (the six categories and their mean as rows, metrics as columns) of
    ``nocs_tables(...)[kind]``; ``present``: where some categories have no ground truth, a last
    row with the mean over those that have (`present_mean`)."""
    if kind not in ("accuracy", "mAP"):
        raise ValueError(f"kind must be 'accuracy' or 'mAP', got {kind!r}")
    t = tables[kind]
    lines = ["| category | n | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 2) + "|"]
    for row in (*CATEGORIES, "mean"):
        n = tables["counts"].get(row, 0) if row != "mean" else sum(tables["counts"].values())
        cells = [_cell(t[m].get(row, math.nan)) for m in METRICS]
        lines.append(f"| {'mean (6 categories)' if row == 'mean' else row} | {n} | " + " | ".join(cells) + " |")
    if present and len(tables["counts"]) < len(CATEGORIES):
        cells = [_cell(present_mean(tables, m, kind)) for m in METRICS]
        lines.append(f"| mean ({len(tables['counts'])} categories present) | {sum(tables['counts'].values())} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.1f}"
