"""``genpose eval``: NOCS metrics of one estimator mode on a dataset, with GT masks.

    genpose eval --data data/synth/test --mode score_scaling --ckpt models/genpose_light.pt \\
        --out runs/eval_ss --save-results runs/eval_ss/results
    genpose eval --data data/synth/test_seq --mode tracking --ckpt models/genpose_light.pt --out runs/eval_trk
    genpose eval --score-results published/results --allow-pickle --out runs/published   # others' files

Writes ``eval.json`` and ``eval.md`` (accuracy and mAP tables per category + mean, latency per
frame) and PNG plots (rotation / translation error CDFs; the rotation hypotheses of a symmetric
and an asymmetric object). ``--save-results DIR`` writes one pickled NOCS results dict per image
(``results_<frame>.pkl``: gt_/pred_ class_ids, bboxes, RTs (4x4, scale in the rotation part),
scales, pred_scores, gt_handle_visibility), the format the NOCS / SPD / GenPose tools read.
Reading such files back executes pickle, so it needs ``--allow-pickle`` (trusted files only).

The tracking mode runs over sequence folders in frame order: an object is initialised with
``--init-mode`` the first time it is seen and tracked from its previous estimate afterwards.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

RESULTS_PREFIX = "results_"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="NOCS-layout split (sequences for --mode tracking)")
    p.add_argument("--mode", default="score_scaling", choices=["genpose", "score_scaling", "regression", "tracking"])
    p.add_argument("--ckpt", default=None, help="pose checkpoint (default: newest models/genpose_*.pt)")
    p.add_argument("--out", default="runs/eval", help="folder for eval.json, eval.md and the plots")
    p.add_argument("--save-results", default=None, help="write per-image pickled NOCS results dicts here")
    p.add_argument("--score-results", default=None, help="score a folder of NOCS results .pkl files instead")
    p.add_argument("--allow-pickle", action="store_true", help="allow reading pickled results files (trusted only)")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--init-mode", default="score_scaling", help="first-frame mode of --mode tracking")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iou", default="exact", choices=["exact", "aabb", "nocs"], help="3D IoU variant")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="sampler overrides, e.g. --set n_steps=10 solver=heun num_candidates=20")


def parse_overrides(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like KEY=VALUE")
        k, v = item.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def default_checkpoint() -> Path:
    from genpose_ros.paths import find_model, package_share
    found = find_model("genpose_*.pt")
    if found is None:
        raise FileNotFoundError(f"no pose checkpoint given and none in {package_share() / 'models'} (genpose_*.pt)")
    return found


# ----------------------------------------------------------------------------- running the estimator

def frame_batch(frame, n_points: int, rng: np.random.Generator):
    """Points of every GT instance of a frame (GT masks).

    Returns (points (B, n_points, 3) float32, usable instances, instances with too few points).
    """
    from genpose_ros.data.pointcloud import TooFewPointsError, object_points

    pts, ok, missed = [], [], []
    for inst in frame.instances:
        try:
            pts.append(object_points(frame.depth, frame.mask == inst.instance_id, frame.intrinsics, n_points, rng))
            ok.append(inst)
        except TooFewPointsError:
            missed.append(inst)
    points = np.stack(pts).astype(np.float32) if pts else np.zeros((0, n_points, 3), np.float32)
    return points, ok, missed


def make_record(inst, R=None, t=None, size=None, score=None) -> dict:
    return {"category": inst.category, "handle_visible": bool(inst.handle_visible), "R_gt": np.asarray(inst.R),
            "t_gt": np.asarray(inst.t), "size_gt": np.asarray(inst.size), "R_pred": R, "t_pred": t,
            "size_pred": size, "score": score, "instance_id": int(inst.instance_id)}


def run_frames(estimator, prefixes: list[str], mode: str, overrides: dict | None = None, n_points: int = 1024,
               seed: int = 0, keep_hypotheses: bool = False, progress: bool = True) -> dict:
    """Single-frame evaluation: one estimate() call per frame (all its objects in one batch).

    Returns {"records": [...], "latency_ms": [...per frame...], "frames": [(prefix, frame records)],
    "hypotheses": [(K, 4, 4) per record] when keep_hypotheses}.
    """
    from tqdm import tqdm

    from genpose_ros.data.nocs_io import read_frame

    rng = np.random.default_rng(seed)
    out = {"records": [], "latency_ms": [], "frames": [], "hypotheses": []}
    for prefix in tqdm(prefixes, desc=f"eval {mode}", disable=not progress, mininterval=5):
        frame = read_frame(prefix)
        points, ok, missed = frame_batch(frame, n_points, rng)
        recs = []
        if ok:
            est = estimator.estimate(points, [i.category for i in ok], mode=mode,
                                     return_hypotheses=keep_hypotheses, **(overrides or {}))
            out["latency_ms"].append(estimator.last_timing["total_ms"])
            for j, inst in enumerate(ok):
                recs.append(make_record(inst, est.R[j], est.t[j], est.size[j], float(est.score[j])))
                if keep_hypotheses:
                    out["hypotheses"].append(est.hypotheses[j])
        for inst in missed:
            recs.append(make_record(inst))
            if keep_hypotheses:
                out["hypotheses"].append(None)
        out["records"] += recs
        out["frames"].append((prefix, frame, recs))
    return out


def sequence_folders(root) -> list[Path]:
    root = Path(root)
    seqs = sorted(p for p in root.iterdir() if p.is_dir())
    return seqs if seqs else [root]


def run_tracking(estimator, root, overrides: dict | None = None, init_mode: str = "score_scaling",
                 n_points: int = 1024, seed: int = 0, max_frames: int | None = None, progress: bool = True) -> dict:
    """Tracking over the sequences under ``root``: init with ``init_mode``, then warm starts.
    Only frames where every object is tracked count in ``latency_ms`` (``init_latency_ms`` the rest)."""
    from tqdm import tqdm

    from genpose_ros.data.nocs_io import list_frames, read_frame

    rng = np.random.default_rng(seed)
    out = {"records": [], "latency_ms": [], "init_latency_ms": [], "frames": []}
    seqs = sequence_folders(root)
    for seq in tqdm(seqs, desc="eval tracking", disable=not progress, mininterval=5):
        tracks: dict[int, np.ndarray] = {}  # instance id -> previous (4, 4) pose
        for prefix in list_frames(seq)[:max_frames]:
            frame = read_frame(prefix)
            points, ok, missed = frame_batch(frame, n_points, rng)
            warm = [j for j, i in enumerate(ok) if i.instance_id in tracks]
            cold = [j for j, i in enumerate(ok) if i.instance_id not in tracks]
            res: dict[int, tuple] = {}
            ms = 0.0
            for idx, mode in ((warm, "tracking"), (cold, init_mode)):
                if not idx:
                    continue
                kw = dict(overrides or {}) if mode == "tracking" else {}
                if mode == "tracking":
                    kw["prev_poses"] = np.stack([tracks[ok[j].instance_id] for j in idx])
                est = estimator.estimate(points[idx], [ok[j].category for j in idx], mode=mode, **kw)
                ms += estimator.last_timing["total_ms"]
                for n, j in enumerate(idx):
                    res[j] = (est.R[n], est.t[n], est.size[n], float(est.score[n]))
                    T = np.eye(4, dtype=np.float32)
                    T[:3, :3], T[:3, 3] = est.R[n], est.t[n]
                    tracks[ok[j].instance_id] = T
            if ok:
                (out["latency_ms"] if not cold else out["init_latency_ms"]).append(ms)
            recs = [make_record(inst, *res[j]) for j, inst in enumerate(ok)] + [make_record(i) for i in missed]
            for inst in missed:  # lost: re-initialise when it is seen again
                tracks.pop(inst.instance_id, None)
            out["records"] += recs
            out["frames"].append((prefix, frame, recs))
    return out


# ----------------------------------------------------------------------------- NOCS results files

def _srt(R, t, size) -> tuple[np.ndarray, np.ndarray]:
    """NOCS convention: RT = [s R | t] with s = box diagonal, scales = size / s."""
    s = float(np.linalg.norm(size))
    RT = np.eye(4, dtype=np.float32)
    RT[:3, :3], RT[:3, 3] = np.asarray(R) * s, t
    return RT, (np.asarray(size) / s).astype(np.float32)


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1] if len(ys) else [0, 0, 0, 0]


def save_results(frames: list, folder) -> int:
    """One pickled NOCS results dict per image; returns the number of files."""
    import pickle

    from genpose_ros import CATEGORIES

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, (prefix, frame, recs) in enumerate(frames):
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
        result = {
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
        with open(folder / f"{RESULTS_PREFIX}{k:05d}.pkl", "wb") as f:
            pickle.dump(result, f)
    return len(frames)


def _unsrt(RT) -> tuple[np.ndarray, np.ndarray, float]:
    RT = np.asarray(RT, np.float64)
    s = float(np.cbrt(np.linalg.det(RT[:3, :3])))
    return RT[:3, :3] / s, RT[:3, 3], s


def _box_iou(a, b) -> float:
    """IoU of two (y1, x1, y2, x2) boxes."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - h * w
    return float(h * w / union) if union > 0 else 0.0


def read_results(folder, allow_pickle: bool = False) -> list[dict]:
    """Records (for metrics.nocs_tables) from a folder of NOCS results .pkl files.

    Each GT instance is matched to the unused prediction of the same class whose 2D box overlaps
    it most (IoU > 0.5), else to the one with the nearest translation (none left -> missed). Pickle runs code from the file: ``allow_pickle`` must be set.
    """
    import pickle

    from genpose_ros import CATEGORIES

    if not allow_pickle:
        raise PermissionError("reading NOCS results files unpickles them, which can run code from the file; "
                              "pass allow_pickle=True (--allow-pickle) for files you trust")
    files = sorted(Path(folder).glob("*.pkl"))
    if not files:
        raise FileNotFoundError(f"no .pkl results files in {folder}")
    records = []
    for path in files:
        with open(path, "rb") as f:
            r = pickle.load(f)
        missing = [k for k in ("gt_class_ids", "gt_RTs", "gt_scales", "pred_class_ids", "pred_RTs", "pred_scales")
                   if k not in r]
        if missing:
            raise ValueError(f"{path} is not a NOCS results dict (missing {missing})")
        hv = r.get("gt_handle_visibility", np.ones(len(r["gt_class_ids"])))
        used = set()
        scores = r.get("pred_scores", np.ones(len(r["pred_class_ids"])))
        for g, cls in enumerate(r["gt_class_ids"]):
            Rg, tg, sg = _unsrt(r["gt_RTs"][g])
            best, best_key = None, None
            for p, pc in enumerate(r["pred_class_ids"]):
                if pc != cls or p in used:
                    continue
                # 2D box overlap first (the NOCS tools' detections come with boxes), then 3D distance
                iou = _box_iou(r["gt_bboxes"][g], r["pred_bboxes"][p]) if "gt_bboxes" in r and "pred_bboxes" in r else 0.0
                key = (-round(iou, 6) if iou > 0.5 else 0.0,
                       float(np.linalg.norm(np.asarray(r["pred_RTs"][p])[:3, 3] - tg)))
                if best_key is None or key < best_key:
                    best, best_key = p, key
            rec = {"category": CATEGORIES[int(cls) - 1], "handle_visible": bool(hv[g]), "R_gt": Rg, "t_gt": tg,
                   "size_gt": np.asarray(r["gt_scales"][g]) * sg, "R_pred": None, "t_pred": None,
                   "size_pred": None, "score": None}
            if best is not None:
                used.add(best)
                Rp, tp, sp = _unsrt(r["pred_RTs"][best])
                rec.update(R_pred=Rp, t_pred=tp, size_pred=np.asarray(r["pred_scales"][best]) * sp,
                           score=float(scores[best]))
            records.append(rec)
    return records


# ----------------------------------------------------------------------------- reports and plots

def errors_of(records: list[dict]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from genpose_ros.evaluation import metrics

    rot, trans, cats = [], [], []
    for r in records:
        e = metrics.record_errors({**r, "size_pred": None})  # pose errors only
        rot.append(e["rot"])
        trans.append(e["trans"])
        cats.append(r["category"])
    return np.array(rot), np.array(trans), cats


def plot_error_cdfs(runs: dict[str, list[dict]], path) -> Path:
    """Rotation and translation error CDFs, one curve per run (e.g. per mode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, records in runs.items():
        rot, trans, _ = errors_of(records)
        for ax, e, lim in ((axes[0], rot, 45), (axes[1], trans, 10)):
            xs = np.sort(np.minimum(e, 1e9))
            ax.plot(xs, np.arange(1, len(xs) + 1) / max(len(xs), 1), label=name)
            ax.set_xlim(0, lim)
    axes[0].set(xlabel="rotation error (deg, symmetry-aware)", ylabel="fraction of instances")
    axes[1].set(xlabel="translation error (cm)")
    for ax, v in ((axes[0], (5, 10)), (axes[1], (2, 5))):
        for x in v:
            ax.axvline(x, color="grey", lw=0.5, ls="--")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_hypotheses(examples: list[tuple[str, np.ndarray, np.ndarray]], path) -> Path:
    """Rotation hypotheses like GenPose's Fig. 4: the x / y / z axis directions of the K candidate
    rotations (dots) and of the ground truth (stars), as azimuth / elevation in the camera frame.
    ``examples``: (title, hypotheses (K, 4, 4), R_gt (3, 3))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(examples), figsize=(5.5 * len(examples), 4.2), squeeze=False)
    colors = ("tab:red", "tab:green", "tab:blue")

    def azel(v):
        v = v / np.linalg.norm(v, axis=-1, keepdims=True)
        return np.degrees(np.arctan2(v[..., 0], v[..., 2])), np.degrees(np.arcsin(np.clip(-v[..., 1], -1, 1)))

    for ax, (title, hyp, R_gt) in zip(axes[0], examples):
        for a in range(3):
            az, el = azel(hyp[:, :3, a])
            ax.scatter(az, el, s=10, alpha=0.5, color=colors[a], label=f"{'xyz'[a]} axis (candidates)")
            gaz, gel = azel(R_gt[:, a])
            ax.scatter([gaz], [gel], s=180, marker="*", color=colors[a], edgecolor="k", label=f"{'xyz'[a]} axis (GT)")
        ax.set(xlim=(-180, 180), ylim=(-90, 90), xlabel="azimuth (deg)", ylabel="elevation (deg)", title=title)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def hypothesis_examples(estimator, prefixes: list[str], n_points: int = 1024, seed: int = 0,
                        overrides: dict | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """One symmetric (bottle / can / bowl) and one asymmetric (laptop / camera / mug with handle)
    instance from the first frames that have them, with their genpose-mode candidates."""
    from genpose_ros.evaluation import metrics
    from genpose_ros.data.nocs_io import read_frame

    rng = np.random.default_rng(seed)
    want = {True: None, False: None}
    for prefix in prefixes:
        frame = read_frame(prefix)
        points, ok, _ = frame_batch(frame, n_points, rng)
        for j, inst in enumerate(ok):
            sym = metrics.is_symmetric(inst.category, inst.handle_visible)
            if want[sym] is None:
                est = estimator.estimate(points[j:j + 1], [inst.category], mode="genpose", return_hypotheses=True,
                                         **(overrides or {}))
                kind = "symmetric" if sym else "asymmetric"
                want[sym] = (f"{inst.category} ({kind}), K={est.hypotheses.shape[1]}", est.hypotheses[0],
                             np.asarray(inst.R))
        if all(v is not None for v in want.values()):
            break
    return [v for v in (want[True], want[False]) if v is not None]


def summary(records: list[dict], latency_ms: list[float], iou: str = "exact") -> dict:
    from genpose_ros.evaluation import metrics

    tables = metrics.nocs_tables(records, iou_variant=iou)
    lat = np.asarray(latency_ms, float)
    return {"tables": tables, "n_instances": len(records),
            "latency_ms_mean": float(lat.mean()) if len(lat) else math.nan,
            "latency_ms_median": float(np.median(lat)) if len(lat) else math.nan}


def markdown(title: str, s: dict) -> str:
    from genpose_ros.evaluation import metrics

    return "\n".join([f"# {title}", "", f"{s['n_instances']} instances; latency per frame: "
                      f"mean {s['latency_ms_mean']:.1f} ms, median {s['latency_ms_median']:.1f} ms; "
                      f"3D IoU variant: {s['tables']['iou_variant']}.", "",
                      "## Accuracy (% of instances within the threshold)", "",
                      metrics.format_table(s["tables"], "accuracy"), "", "## mAP (%)", "",
                      metrics.format_table(s["tables"], "mAP"), ""])


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.score_results:
        records = read_results(args.score_results, allow_pickle=args.allow_pickle)
        s = summary(records, [], args.iou)
        title = f"NOCS results files {args.score_results}"
    else:
        if not args.data:
            raise ValueError("--data is required (or --score-results to score existing results files)")
        from genpose_ros.data.nocs_io import list_frames
        from genpose_ros.pose.estimator import PoseEstimator

        ckpt = args.ckpt or default_checkpoint()
        est = PoseEstimator.from_checkpoint(ckpt, device=args.device, seed=args.seed)
        overrides = parse_overrides(args.set)
        t0 = time.time()
        if args.mode == "tracking":
            res = run_tracking(est, args.data, overrides, args.init_mode, seed=args.seed, max_frames=args.max_frames)
        else:
            prefixes = list_frames(args.data)[:args.max_frames]
            if not prefixes:
                raise ValueError(f"no frames under {args.data}")
            res = run_frames(est, prefixes, args.mode, overrides, seed=args.seed)
            plot_hypotheses(hypothesis_examples(est, prefixes, seed=args.seed), out / "hypotheses.png")
        records = res["records"]
        s = summary(records, res["latency_ms"], args.iou)
        s.update(mode=args.mode, checkpoint=str(ckpt), overrides=overrides, wall_s=time.time() - t0)
        plot_error_cdfs({args.mode: records}, out / "error_cdf.png")
        if args.save_results:
            n = save_results(res["frames"], args.save_results)
            print(f"wrote {n} NOCS results files to {args.save_results}")
        title = f"genpose eval: {args.mode} on {args.data}"
    (out / "eval.json").write_text(json.dumps(_jsonable(s), indent=1))
    md = markdown(title, s)
    (out / "eval.md").write_text(md)
    print(md)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genpose eval")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
