"""Mask AP (COCO-style, numpy), class confusion and CPU latency of the Mask R-CNN segmenter.

    genpose eval --task segmentation --data data/synth/test --out runs/seg_eval
    python -m genpose_ros.segmentation.evaluate --weights models/maskrcnn_light.pt \\
        --data data/synth/test --json /tmp/seg_eval.json --confusion /tmp/seg_confusion.png

AP follows the COCO protocol for segmentation, without crowd regions or area ranges: per
category and IoU threshold (0.50:0.05:0.95), detections of all images sorted by score, each
matched greedily to the unmatched ground-truth mask of highest mask IoU, precision made
monotone and sampled at 101 recall points. ``AP`` is the mean over the ten thresholds,
``AP50`` the value at 0.5; the ``mean`` row averages the categories that have ground truth.

The confusion matrix counts, at the node's score threshold (0.5), what became of each true
object (the category of the detection covering it best with mask IoU >= 0.5, or "missed")
and, in its last row, the detections that cover no object ("background": false positives).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from genpose_ros import CATEGORIES
from genpose_ros.arguments import add_device

IOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(P, H, W) bool, (G, H, W) bool -> (P, G) mask IoU."""
    if len(pred) == 0 or len(gt) == 0:
        return np.zeros((len(pred), len(gt)))
    p = pred.reshape(len(pred), -1).astype(np.float32)
    g = gt.reshape(len(gt), -1).astype(np.float32)
    inter = p @ g.T
    union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
    return inter / np.maximum(union, 1.0)


def _match(ious: np.ndarray, thr: float) -> np.ndarray:
    """Greedy COCO matching of score-sorted detections: (P,) bool true positives."""
    tp = np.zeros(ious.shape[0], bool)
    taken = np.zeros(ious.shape[1], bool)
    for d in range(ious.shape[0]):
        cand = np.where(~taken & (ious[d] >= thr), ious[d], -1.0)
        if cand.size and cand.max() >= 0:
            g = int(cand.argmax())
            taken[g], tp[d] = True, True
    return tp


def average_precision(tp: np.ndarray, scores: np.ndarray, n_gt: int) -> float:
    """COCO 101-point interpolated AP of detections (tp flags, scores) against n_gt objects."""
    if n_gt == 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    tps = np.cumsum(tp[order])
    fps = np.cumsum(~tp[order])
    recall = tps / n_gt
    precision = tps / np.maximum(tps + fps, np.finfo(float).eps)
    precision = np.maximum.accumulate(precision[::-1])[::-1]   # monotone non-increasing
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(sampled.mean())


class MaskAPAccumulator:
    """Collects per-image predictions and ground truth; ``table()`` gives AP per category."""

    def __init__(self, categories=CATEGORIES):
        self.categories = list(categories)
        self._tp = {c: [] for c in self.categories}      # per category: (P, T) flags
        self._scores = {c: [] for c in self.categories}
        self._n_gt = {c: 0 for c in self.categories}
        self.n_images = 0

    def add(self, pred_masks, pred_categories, pred_scores, gt_masks, gt_categories) -> None:
        """One image: predictions (N, H, W) bool + categories + scores; ground truth likewise."""
        pred_scores = np.asarray(pred_scores, float)
        for c in set(pred_categories) | set(gt_categories):
            if c not in self._n_gt:
                raise ValueError(f"unknown category {c!r}; known: {self.categories}")
        for c in self.categories:
            pi = [i for i, pc in enumerate(pred_categories) if pc == c]
            gi = [i for i, gc in enumerate(gt_categories) if gc == c]
            self._n_gt[c] += len(gi)
            if not pi:
                continue
            pi = sorted(pi, key=lambda i: -pred_scores[i])
            pred = np.asarray([pred_masks[i] for i in pi], bool)                 # (P, H, W)
            gt = np.asarray([gt_masks[i] for i in gi], bool).reshape(len(gi), *pred.shape[1:])
            ious = mask_iou(pred, gt)
            self._tp[c].append(np.stack([_match(ious, t) for t in IOU_THRESHOLDS], axis=1))
            self._scores[c].append(pred_scores[pi])
        self.n_images += 1

    def table(self) -> dict:
        """``{category: {AP, AP50, AP75, n_gt, n_det}, "mean": {AP, AP50, AP75}}`` (AP in [0, 1];
        NaN for a category without ground truth)."""
        out = {}
        for c in self.categories:
            empty = np.zeros((0, len(IOU_THRESHOLDS)), bool)
            tp = np.concatenate(self._tp[c]) if self._tp[c] else empty
            sc = np.concatenate(self._scores[c]) if self._scores[c] else np.zeros(0)
            aps = np.array([average_precision(tp[:, k], sc, self._n_gt[c])
                            for k in range(len(IOU_THRESHOLDS))])
            out[c] = {"AP": float(aps.mean()), "AP50": float(aps[0]), "AP75": float(aps[5]),
                      "n_gt": self._n_gt[c], "n_det": int(len(sc))}
        valid = [out[c] for c in self.categories if self._n_gt[c] > 0]
        out["mean"] = {k: float(np.mean([v[k] for v in valid])) if valid else float("nan")
                       for k in ("AP", "AP50", "AP75")}
        return out


DISTANCE_EDGES = (0.5, 0.8, 1.2, 1.6)
"""Edges (m, camera to object centre) of the distance bins of ``Confusion.found_by_distance``."""


def touches_border(mask: np.ndarray) -> bool:
    """Whether an (H, W) mask has pixels in the image's first or last row or column."""
    m = np.asarray(mask, bool)
    return bool(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())


class Confusion:
    """Counts ``[true row, predicted column]``: rows = categories + "background" (false
    positives), columns = categories + "missed"; how many objects were found with their own
    category among those the image border cuts and the others, and, where the objects' distances
    are given, in each distance bin."""

    def __init__(self, categories=CATEGORIES, score_threshold: float = 0.5, iou: float = 0.5):
        self.categories = list(categories)
        self.rows = self.categories + ["background"]
        self.cols = self.categories + ["missed"]
        self.counts = np.zeros((len(self.rows), len(self.cols)), np.int64)
        self.distance = np.zeros((len(DISTANCE_EDGES) + 1, 2), np.int64)   # objects, found
        self.border = np.zeros((2, 2), np.int64)   # [whole in view, cut by the border] x [objects, found]
        self.score_threshold, self.iou = score_threshold, iou

    def add(self, pred_masks, pred_categories, pred_scores, gt_masks, gt_categories,
            gt_distances=None) -> None:
        keep = [i for i, s in enumerate(pred_scores) if s >= self.score_threshold]
        shapes = [np.shape(m) for m in list(gt_masks) + list(pred_masks)]
        if not shapes:
            return
        pixels = int(np.prod(shapes[0]))
        pred = np.asarray([pred_masks[i] for i in keep], bool).reshape(len(keep), pixels)
        gt = np.asarray(gt_masks, bool).reshape(len(gt_categories), pixels)
        ious = mask_iou(pred, gt)                                       # (P, G)
        covered = np.zeros(len(keep), bool)
        for g, cat in enumerate(gt_categories):
            p = int(ious[:, g].argmax()) if len(keep) else -1
            if p >= 0 and ious[p, g] >= self.iou:
                covered[p] = True
                col = self.cols.index(pred_categories[keep[p]])
            else:
                col = len(self.cols) - 1
            self.counts[self.rows.index(cat), col] += 1
            self.border[int(touches_border(gt_masks[g]))] += (1, self.cols[col] == cat)
            if gt_distances is not None:
                b = int(np.searchsorted(DISTANCE_EDGES, gt_distances[g], side="right"))
                self.distance[b] += (1, self.cols[col] == cat)
        for p in np.flatnonzero(~covered):
            if len(gt_categories) == 0 or ious[p].max() < self.iou:
                self.counts[-1, self.cols.index(pred_categories[keep[p]])] += 1

    def found_by_distance(self) -> list[dict]:
        """Objects and found objects (own category) per distance bin that has objects; the
        last bin's upper end is None (open)."""
        edges = (0.0,) + DISTANCE_EDGES + (None,)
        return [{"range_m": [edges[b], edges[b + 1]], "objects": int(n), "found": int(k)}
                for b, (n, k) in enumerate(self.distance) if n]

    def found_by_border(self) -> list[dict]:
        """Objects and found objects (own category) whole in view and cut by the image border."""
        return [{"where": where, "objects": int(n), "found": int(k)}
                for where, (n, k) in zip(("whole in view", "cut by the border"), self.border)]

    def as_dict(self) -> dict:
        return {"rows": self.rows, "columns": self.cols, "counts": self.counts.tolist(),
                "score_threshold": self.score_threshold, "mask_iou": self.iou,
                "found_by_distance": self.found_by_distance(), "found_by_border": self.found_by_border()}


    def plot(self, path, title: str = "") -> None:
        """A row-normalised heat map with the counts written in the cells (PNG)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        frac = self.counts / np.maximum(self.counts.sum(1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(7.5, 6))
        ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        for r in range(len(self.rows)):
            for c in range(len(self.cols)):
                if self.counts[r, c]:
                    ax.text(c, r, str(self.counts[r, c]), ha="center", va="center",
                            color="white" if frac[r, c] > 0.5 else "black", fontsize=9)
        ax.set_xticks(range(len(self.cols)), self.cols, rotation=30, ha="right")
        ax.set_yticks(range(len(self.rows)), self.rows)
        ax.set_xlabel("predicted (score >= %.2g, mask IoU >= %.2g)" % (self.score_threshold, self.iou))
        ax.set_ylabel("true object")
        ax.set_title(title or "segmentation confusion (counts; colour: fraction of the row)")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def evaluate(segmenter, frames, limit: int | None = None, progress: bool = True,
             confusion: Confusion | None = None) -> dict:
    """Mask AP of ``segmenter`` on ``frames`` (NOCS prefixes or ``Frame`` objects), plus the
    mean wall-clock time of ``predict`` per frame (seconds); fills ``confusion`` if given."""
    from tqdm import tqdm

    from genpose_ros.data import nocs_io
    from genpose_ros.segmentation.targets import frame_targets

    frames = list(frames)[:limit] if limit else list(frames)
    acc, times = MaskAPAccumulator(), []
    for f in tqdm(frames, desc="mask AP", disable=not progress):
        if isinstance(f, str):
            f = nocs_io.read_frame(f)
        t = time.perf_counter()
        dets = segmenter.predict(f.color, f.depth, fx=f.intrinsics.fx, score_threshold=0.05)
        times.append(time.perf_counter() - t)
        gt_masks, gt_labels, _ = frame_targets(f.mask, f.instances, min_pixels=1)
        pred = ([d.mask for d in dets], [d.category for d in dets], [d.score for d in dets],
                gt_masks, [CATEGORIES[k - 1] for k in gt_labels])
        acc.add(*pred)
        if confusion is not None:   # distances of the instances frame_targets kept (>= 1 pixel)
            present = set(np.unique(f.mask).tolist())
            dist = [float(np.linalg.norm(i.t)) for i in f.instances if i.instance_id in present]
            confusion.add(*pred, gt_distances=dist)
    table = acc.table()
    table["n_images"] = acc.n_images
    table["predict_s_mean"] = float(np.mean(times)) if times else float("nan")
    if confusion is not None:
        table["confusion"] = confusion.as_dict()
    return table


def latency(segmenter, rgb: np.ndarray, depth: np.ndarray | None = None, n: int = 20,
            warmup: int = 3) -> dict:
    """Wall-clock ``predict`` time on one frame: median / mean / p90 seconds over ``n`` runs."""
    for _ in range(warmup):
        segmenter.predict(rgb, depth)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        segmenter.predict(rgb, depth)
        ts.append(time.perf_counter() - t)
    ts = np.array(ts)
    return {"median_s": float(np.median(ts)), "mean_s": float(ts.mean()),
            "p90_s": float(np.percentile(ts, 90)), "runs": n}


def format_table(table: dict) -> str:
    """Markdown table of AP / AP50 / AP75 (percent) per category."""
    rows = ["| category | AP | AP50 | AP75 | GT instances |", "|---|---|---|---|---|"]
    for c in CATEGORIES:
        r = table[c]
        rows.append(f"| {c} | {100 * r['AP']:.1f} | {100 * r['AP50']:.1f} | "
                    f"{100 * r['AP75']:.1f} | {r['n_gt']} |")
    m = table["mean"]
    rows.append(f"| **mean** | {100 * m['AP']:.1f} | {100 * m['AP50']:.1f} | "
                f"{100 * m['AP75']:.1f} | |")
    return "\n".join(rows)


def format_found(rows: list[dict]) -> str:
    """Markdown table of ``Confusion.found_by_distance`` or ``found_by_border``."""
    out = ["| distance (m) | objects | found | % |" if rows and "range_m" in rows[0] else
           "| where | objects | found | % |", "|---|---|---|---|"]
    for r in rows:
        if "range_m" in r:
            lo, hi = r["range_m"]
            span = f"{lo:g}-{hi:g}" if hi is not None else f">= {lo:g}"
        else:
            span = r["where"]
        share = f"{100 * r['found'] / r['objects']:.1f}" if r["objects"] else "n/a"
        out.append(f"| {span} | {r['objects']} | {r['found']} | {share} |")
    return "\n".join(out)


def report(weights, data, limit: int | None = None, device: str = "cpu", latency_runs: int = 20,
           json_path=None, confusion_path=None, threads: int | None = None) -> dict:
    """Mask AP, confusion and latency of a weights file (or ``coco``) on a NOCS-layout folder;
    prints the table, writes the JSON and the confusion PNG where asked. Returns the table."""
    from genpose_ros.data import nocs_io
    from genpose_ros.segmentation.load import load_segmenter, segmenter_options
    from genpose_ros.segmentation.targets import list_frames

    seg = load_segmenter(str(weights), device, **segmenter_options())   # masks as maskrcnn_node draws them
    frames = list_frames(data)
    confusion = Confusion()
    table = evaluate(seg, frames, limit, confusion=confusion)
    if confusion_path:
        confusion.plot(confusion_path, f"{Path(str(weights)).name} on {Path(data).name}: "
                                       f"objects by true and predicted category")
    first = nocs_io.read_frame(frames[0])
    table["latency"] = latency(seg, first.color, first.depth, latency_runs)
    table["latency"].update(threads=threads, device=device,
                            image=f"{first.color.shape[1]}x{first.color.shape[0]}")
    table["weights"] = str(weights)
    print(format_table(table))
    print(f"\nobjects found (own category, score >= {confusion.score_threshold:g}, mask IoU >= "
          f"{confusion.iou:g}) by distance from the camera:")
    print(format_found(confusion.found_by_distance()))
    print(format_found(confusion.found_by_border()))
    lat = table["latency"]
    print(f"\n{table['n_images']} images; predict latency {lat['image']}: median "
          f"{1000 * lat['median_s']:.0f} ms, p90 {1000 * lat['p90_s']:.0f} ms "
          f"({threads or 'default'} threads, {device})")
    if json_path:
        Path(json_path).write_text(json.dumps(table, indent=2))
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="models/maskrcnn_light.pt")
    parser.add_argument("--data", required=True, help="NOCS-layout test folder")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N frames")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    add_device(parser)
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--confusion", help="write the confusion matrix PNG here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    report(args.weights, args.data, args.limit, args.device, args.latency_runs, args.json,
           args.confusion, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
