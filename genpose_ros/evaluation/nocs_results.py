"""NOCS results files: one pickled dict per image (``results_<frame>.pkl``: gt_/pred_ class_ids,
bboxes, RTs (4x4, scale in the rotation part), scales, pred_scores, gt_handle_visibility), the
format the NOCS / SPD / GenPose evaluation tools read. Reading such a file executes pickle, so
``read_results`` needs ``allow_pickle=True`` (trusted files only); ``eval.json`` holds the same
records without pickle (``report.records_from_json``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genpose_ros import CATEGORIES

RESULTS_PREFIX = "results_"
REQUIRED_KEYS = ("gt_class_ids", "gt_RTs", "gt_scales", "pred_class_ids", "pred_RTs", "pred_scales")


def _srt(R, t, size) -> tuple[np.ndarray, np.ndarray]:
    """NOCS convention: RT = [s R | t] with s = box diagonal, scales = size / s."""
    s = float(np.linalg.norm(size))
    RT = np.eye(4, dtype=np.float32)
    RT[:3, :3], RT[:3, 3] = np.asarray(R) * s, t
    return RT, (np.asarray(size) / s).astype(np.float32)


def _unsrt(RT) -> tuple[np.ndarray, np.ndarray, float]:
    RT = np.asarray(RT, np.float64)
    s = float(np.cbrt(np.linalg.det(RT[:3, :3])))
    return RT[:3, :3] / s, RT[:3, 3], s


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1] if len(ys) else [0, 0, 0, 0]


def _box_iou(a, b) -> float:
    """IoU of two (y1, x1, y2, x2) boxes."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - h * w
    return float(h * w / union) if union > 0 else 0.0


def results_dict(prefix, frame, recs: list[dict]) -> dict:
    """The NOCS results dict of one image from its records (``runner.make_record``)."""
    gt_RT, gt_s, pr_RT, pr_s, pr_sc, pr_cls, pr_box, gt_box = [], [], [], [], [], [], [], []
    for r in recs:
        RT, sc = _srt(r["R_gt"], r["t_gt"], r["size_gt"])
        gt_RT.append(RT)
        gt_s.append(sc)
        box = _bbox(frame.mask == r["instance_id"])
        gt_box.append(box)
        if r["R_pred"] is not None:
            RT, sc = _srt(r["R_pred"], r["t_pred"], r["size_pred"])
            pr_RT.append(RT)
            pr_s.append(sc)
            pr_sc.append(r["score"])
            pr_cls.append(CATEGORIES.index(r["category"]) + 1)
            pr_box.append(box)
    return {
        "image_path": str(prefix),
        "gt_class_ids": np.array([CATEGORIES.index(r["category"]) + 1 for r in recs], np.int32),
        "gt_bboxes": np.array(gt_box, np.int32).reshape(-1, 4),
        "gt_RTs": np.array(gt_RT, np.float32).reshape(-1, 4, 4),
        "gt_scales": np.array(gt_s, np.float32).reshape(-1, 3),
        "gt_handle_visibility": np.array([int(r["handle_visible"]) for r in recs], np.int32),
        "pred_class_ids": np.array(pr_cls, np.int32),
        "pred_bboxes": np.array(pr_box, np.int32).reshape(-1, 4),
        "pred_RTs": np.array(pr_RT, np.float32).reshape(-1, 4, 4),
        "pred_scales": np.array(pr_s, np.float32).reshape(-1, 3),
        "pred_scores": np.array(pr_sc, np.float32),
    }


def save_results(frames: list, folder) -> int:
    """One pickled NOCS results dict per image of ``frames`` ((prefix, frame, records) as
    ``runner.run_frames`` returns them); returns the number of files."""
    import pickle

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, (prefix, frame, recs) in enumerate(frames):
        with open(folder / f"{RESULTS_PREFIX}{k:05d}.pkl", "wb") as f:
            pickle.dump(results_dict(prefix, frame, recs), f)
    return len(frames)


def _load(path: Path) -> dict:
    import pickle

    try:
        with open(path, "rb") as f:
            r = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable NOCS results pickle ({exc})") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(r, dict) or k not in r]
    if missing:
        raise ValueError(f"{path} is not a NOCS results dict (missing {missing})")
    return r


def _pairing(r: dict, g: int, tg: np.ndarray, used: set) -> int | None:
    """The unused prediction of GT ``g``'s class whose 2D box overlaps it most (IoU > 0.5),
    else the one with the nearest translation; None when no prediction of the class is left."""
    best, best_key = None, None
    for p, pc in enumerate(r["pred_class_ids"]):
        if pc != r["gt_class_ids"][g] or p in used:
            continue
        iou = _box_iou(r["gt_bboxes"][g], r["pred_bboxes"][p]) if "gt_bboxes" in r and "pred_bboxes" in r else 0.0
        key = (-round(iou, 6) if iou > 0.5 else 0.0, float(np.linalg.norm(np.asarray(r["pred_RTs"][p])[:3, 3] - tg)))
        if best_key is None or key < best_key:
            best, best_key = p, key
    return best


def _prediction(r: dict, p: int, scores) -> dict:
    Rp, tp, sp = _unsrt(r["pred_RTs"][p])
    return {"R_pred": Rp, "t_pred": tp, "size_pred": np.asarray(r["pred_scales"][p]) * sp, "score": float(scores[p])}


def _category(cls) -> str:
    if not 1 <= int(cls) <= len(CATEGORIES):
        raise ValueError(f"class id {cls} is not a NOCS category id (1-{len(CATEGORIES)}: {', '.join(CATEGORIES)})")
    return CATEGORIES[int(cls) - 1]


def records_from_results(r: dict, image) -> list[dict]:
    """Records (``tables.nocs_tables``) of one NOCS results dict: one per ground-truth instance
    with the prediction paired to it (``_pairing``, for the accuracy and per-instance errors),
    and one per prediction left over (a false positive, ``R_gt`` None)."""
    hv = r.get("gt_handle_visibility", np.ones(len(r["gt_class_ids"])))
    scores = r.get("pred_scores", np.ones(len(r["pred_class_ids"])))
    records, used = [], set()
    for g, cls in enumerate(r["gt_class_ids"]):
        Rg, tg, sg = _unsrt(r["gt_RTs"][g])
        rec = {"image": image, "category": _category(cls), "handle_visible": bool(hv[g]), "R_gt": Rg,
               "t_gt": tg, "size_gt": np.asarray(r["gt_scales"][g]) * sg, "R_pred": None, "t_pred": None,
               "size_pred": None, "score": None}
        p = _pairing(r, g, tg, used)
        if p is not None:
            used.add(p)
            rec.update(_prediction(r, p, scores))
        records.append(rec)
    for p, cls in enumerate(r["pred_class_ids"]):
        if p not in used:
            records.append({"image": image, "category": _category(cls), "handle_visible": True,
                            "R_gt": None, "t_gt": None, "size_gt": None, **_prediction(r, p, scores)})
    return records


def read_results(folder, allow_pickle: bool = False) -> list[dict]:
    """Records from a folder of NOCS results .pkl files (``records_from_results`` per file).
    Pickle runs code from the file: ``allow_pickle`` must be set."""
    if not allow_pickle:
        raise PermissionError("reading NOCS results files unpickles them, which can run code from the file; "
                              "pass allow_pickle=True (--allow-pickle) for files you trust")
    files = sorted(Path(folder).glob("*.pkl"))
    if not files:
        raise FileNotFoundError(f"no .pkl results files in {folder}")
    records = []
    for k, path in enumerate(files):
        r = _load(path)
        try:
            records += records_from_results(r, image=k)
        except (ValueError, IndexError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from None
    return records
