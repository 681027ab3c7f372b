"""Size ablation: the pose model's size head against the SizeNet, on the same estimated poses.

    python -m genpose_ros.evaluation.size_ablation --data data/synth/test \\
        --checkpoint models/genpose_light.pt --json docs/size_ablation.json --threads 1

For each pose mode the estimator runs once per size method (``size.method`` of
config/estimator.yaml) with the same seed (identical points and poses), and once more as
``net+centre``, the SizeNet also placing the box centre of the categories in ``size.centre``
(the estimator's default; the translation changes, hence the 5deg2cm / 10deg5cm columns), and the NOCS IoU metrics plus
the size errors (``size_errors``) are tabulated, averaged over categories, with IoU75 per
category. Prints Markdown tables and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from genpose_ros import CATEGORIES


def size_errors(records: list[dict]) -> dict:
    """Size errors, means over categories (missed instances left out): ``rel_pct`` = 100 x mean
    |log(pred / gt)| over the axes, ``abs_mm`` = mean |pred - gt| in mm, ``rel_pct_good_pose`` the
    same as ``rel_pct`` over the instances whose pose is within 10 deg and 5 cm (where an error
    is the size's own, not a turned frame's), ``height_slope`` the least-squares slope of
    predicted against true height (1 = follows the object, 0 = a category constant)."""
    from genpose_ros.evaluation.metrics import record_errors
    from genpose_ros.evaluation.tables import is_ground_truth

    per = {c: [] for c in CATEGORIES}
    for r in records:
        if is_ground_truth(r) and r["size_pred"] is not None:
            pred, gt = np.asarray(r["size_pred"], float), np.asarray(r["size_gt"], float)
            e = record_errors({**r, "size_pred": None})
            per[r["category"]].append((np.abs(np.log(pred / gt)).mean(), np.abs(pred - gt).mean(),
                                       e["rot"] < 10 and e["trans"] < 5, pred[1], gt[1]))
    cats = [c for c in CATEGORIES if per[c]]

    def mean_over_categories(fn) -> float:
        vals = [v for v in (fn(np.array(per[c], dtype=float)) for c in cats) if np.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")

    def slope(a: np.ndarray) -> float:
        x, y = a[:, 4] - a[:, 4].mean(), a[:, 3] - a[:, 3].mean()
        return float((x * y).sum() / (x * x).sum()) if len(a) > 1 and (x * x).sum() > 0 else float("nan")

    return {"rel_pct": mean_over_categories(lambda a: 100 * a[:, 0].mean()),
            "abs_mm": mean_over_categories(lambda a: 1000 * a[:, 1].mean()),
            "rel_pct_good_pose": mean_over_categories(
                lambda a: 100 * a[a[:, 2] > 0, 0].mean() if (a[:, 2] > 0).any() else float("nan")),
            "height_slope": mean_over_categories(slope),
            "height_slope_per_category": {c: slope(np.array(per[c], dtype=float)) for c in cats}}


def run_ablation(data: str, ckpt: str, modes: list[str], methods: list[str], max_frames: int | None = None,
                 seed: int = 0, size_ckpt: str | None = None, device: str = "cpu") -> list[dict]:
    """One row per (mode, size method): IoU and 5deg2cm means, IoU75 per category, ``size_errors``;
    without the table plane, which would extend both methods' boxes down to it."""
    from genpose_ros.data.nocs_io import list_frames
    from genpose_ros.evaluation.runner import run_frames
    from genpose_ros.evaluation.tables import nocs_tables
    from genpose_ros.pose.estimator import PoseEstimator

    prefixes = list_frames(data)[:max_frames]
    if not prefixes:
        raise ValueError(f"no frames under {data}")
    rows = []
    for mode in modes:
        variants = [(m, False) for m in methods] + [("net", True)] * ("net" in methods)
        for method, centre in variants:
            size_cfg = {"method": method, **({} if centre else {"centre": []}),
                        **({"checkpoint": size_ckpt} if size_ckpt else {})}
            est = PoseEstimator.from_checkpoint(ckpt, device=device, config={"size": size_cfg}, seed=seed)
            res = run_frames(est, prefixes, mode, seed=seed, support=False)
            tables = nocs_tables(res["records"])
            acc = tables["accuracy"]
            means = {k: acc[k]["mean"] for k in ("IoU25", "IoU50", "IoU75", "5deg2cm", "10deg5cm")}
            rows.append({"mode": mode, "size": method + "+centre" * centre, **means,
                         "IoU75_per_category": {c: acc["IoU75"][c] for c in tables["counts"]},
                         **size_errors(res["records"]), "n_instances": len(res["records"])})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| mode | size | IoU25 | IoU50 | IoU75 | size error (%) | size error (mm) "
             "| size error at 10deg5cm poses (%) | height slope | 5deg2cm | 10deg5cm |", "|---" * 11 + "|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['size']} | {r['IoU25']:.1f} | {r['IoU50']:.1f} | {r['IoU75']:.1f} | "
                     f"{r['rel_pct']:.1f} | {r['abs_mm']:.1f} | {r['rel_pct_good_pose']:.1f} | "
                     f"{r['height_slope']:.2f} | {r['5deg2cm']:.1f} | {r['10deg5cm']:.1f} |")
    lines += ["", "IoU75 per category:", "", "| mode | size | " + " | ".join(CATEGORIES) + " |", "|---|---|" + "---|" * len(CATEGORIES)]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['size']} | "
                     + " | ".join(f"{r['IoU75_per_category'].get(c, float('nan')):.1f}" for c in CATEGORIES) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from genpose_ros.arguments import add_checkpoint, add_threads, apply_threads, positive_int
    from genpose_ros.pose.estimator import SINGLE_FRAME_MODES, SIZE_METHODS

    p = argparse.ArgumentParser(prog="python -m genpose_ros.evaluation.size_ablation",
                                description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="NOCS-layout split")
    add_checkpoint(p)
    p.add_argument("--size-checkpoint", default=None,
                   help="SizeNet checkpoint (default: size.checkpoint of config/estimator.yaml)")
    p.add_argument("--size-ckpt", dest="size_checkpoint", help=argparse.SUPPRESS)
    p.add_argument("--modes", nargs="+", default=["genpose", "score_scaling"], choices=SINGLE_FRAME_MODES)
    p.add_argument("--methods", nargs="+", default=["head", "net"], choices=SIZE_METHODS)
    p.add_argument("--max-frames", type=positive_int, default=None)
    p.add_argument("--seed", type=int, default=0)
    add_threads(p)
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args(argv)
    import torch

    from genpose_ros.checkpoint import CheckpointError
    from genpose_ros.evaluation.report import machine_info
    from genpose_ros.paths import pose_checkpoint

    apply_threads(args)
    machine = machine_info("cpu")
    t0 = time.time()
    try:
        ckpt = pose_checkpoint(args.checkpoint)
        rows = run_ablation(args.data, str(ckpt), args.modes, args.methods, args.max_frames, args.seed,
                            args.size_checkpoint)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"size ablation: {exc}", file=sys.stderr)
        return 2
    print(markdown(rows))
    if args.json:
        info = {"data": args.data, "checkpoint": str(ckpt), "seed": args.seed, "threads": torch.get_num_threads(),
                "machine": machine, "wall_s": round(time.time() - t0, 1), "rows": rows}
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
