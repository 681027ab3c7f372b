"""``genpose bench``: every estimator mode side by side on one test split (GT masks).

    genpose bench --data data/synth/test --seq data/synth/test_seq --json docs/bench.json \\
        --logs joint=runs/joint/log.jsonl genpose=runs/genpose/log.jsonl

Modes: ``regression`` (head only); ``genpose_energy`` (K=50, energy ranking, keep 60 %);
``genpose_random`` (the same candidates, random ranking); ``genpose_oracle`` (the best of the
same K candidates against the ground truth: an upper bound); ``genpose_verifier`` (the same
candidates, the pose verifier's rotation ranking, then its turn check and roll check);
``score_scaling`` (one sample, no turn or roll check); ``score_scaling_verifier`` (one sample,
the verifier's turn check, polish and roll check);
``tracking`` (on the sequences, the tracking node's tracker: warm starts from the previous
estimate, re-initialisation as configured). For each: 5deg2cm, 5deg5cm, 10deg2cm, 10deg5cm,
IoU25/50/75 (share of instances, mean over the six NOCS categories and per category) and ``ms_per_frame`` / ``ms_p90``: the median / 90th percentile latency of estimate() on a 6-object frame.
Ablations: score-scaling schedules, the verifier rows without the roll check, the ODE solvers (adaptive RK45 reference vs fixed-step
Euler / Heun), and the size (SizeNet vs the pose model's size head, same poses). With a wide
split (``--wide``, default ``<data>_wide``): GenPose and score scaling on it beside the standard
split. Writes the JSON, a Markdown twin, and PNG plots (error CDFs, rotation hypotheses,
training convergence from the given training logs).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from genpose_ros.arguments import add_checkpoint, add_device, add_threads, apply_threads, positive_int

KEYS = {"5deg2cm": "5deg2cm", "5deg5cm": "5deg5cm", "10deg2cm": "10deg2cm", "10deg5cm": "10deg5cm",
        "IoU25": "iou25", "IoU50": "iou50", "IoU75": "iou75"}
SCALING_ABLATION = {
    "none (k=1)": {"schedule": "none"},
    "gaussian k=2": {"schedule": "gaussian", "schedule_kwargs": {"k": 2.0, "s": 0.05}},
    "gaussian k=4": {"schedule": "gaussian", "schedule_kwargs": {"k": 4.0, "s": 0.05}},
    "gaussian k=8 (default)": {"schedule": "gaussian", "schedule_kwargs": {"k": 8.0, "s": 0.05}},
    "gaussian k=16": {"schedule": "gaussian", "schedule_kwargs": {"k": 16.0, "s": 0.05}},
    "gaussian k=4, s=0.02": {"schedule": "gaussian", "schedule_kwargs": {"k": 4.0, "s": 0.02}},
    "exponential k=4, tau=0.1": {"schedule": "exponential", "schedule_kwargs": {"k": 4.0, "tau": 0.1}},
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="single-frame test split")
    p.add_argument("--seq", default=None, help="sequence split for tracking (default: <data>_seq if present)")
    p.add_argument("--wide", default=None,
                   help="wide-distribution split for the robustness table (default: <data>_wide if present)")
    add_checkpoint(p)
    p.add_argument("--json", default="docs/bench.json")
    p.add_argument("--md", default=None, help="Markdown report (default: the JSON path with .md)")
    p.add_argument("--images", default="docs/images", help="folder for bench_*.png")
    p.add_argument("--logs", nargs="*", default=[], metavar="NAME=LOG.jsonl",
                   help="training logs for the convergence plot (e.g. joint=run/log.jsonl,resumed/log.jsonl genpose=...)")
    p.add_argument("--max-frames", type=positive_int, default=None)
    p.add_argument("--seq-frames", type=positive_int, default=None, help="frames per sequence for tracking")
    p.add_argument("--solver-frames", type=positive_int, default=20, help="frames of the RK45 / Heun solver ablation")
    add_device(p)
    add_threads(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-ablations", action="store_true")


def _row(s: dict) -> dict:
    """Bench row from report.summary: mean metrics + per category."""
    acc = s["tables"]["accuracy"]
    row = {KEYS[m]: _num(acc[m]["mean"]) for m in KEYS}
    row["per_category"] = {c: {KEYS[m]: _num(acc[m][c]) for m in KEYS} for c in s["tables"]["counts"]}
    row["median_rot_deg"] = {c: _num(v) for c, v in s["tables"]["median_rot_deg"].items()}
    row["median_trans_cm"] = {c: _num(v) for c, v in s["tables"]["median_trans_cm"].items()}
    row["n_instances"] = s["n_instances"]
    row["ms_per_frame_dataset_mean"] = _num(s["latency_ms_mean"])
    row["by_rest"] = {kind: {c: {k: _num(v) if k != "n" else v for k, v in cell.items()} for c, cell in cats.items()}
                      for kind, cats in s.get("by_rest", {}).items()}
    return row


def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 2)


def six_object_batch(prefixes: list[str], n_points: int = 1024, seed: int = 0):
    """The first 6 usable instances of the split: points (6, N, 3), categories, GT poses (6, 4, 4)."""
    from genpose_ros.data.nocs_io import read_frame
    from genpose_ros.evaluation.runner import frame_batch

    rng = np.random.default_rng(seed)
    pts, cats, poses = [], [], []
    for prefix in prefixes:
        points, ok, _ = frame_batch(read_frame(prefix), n_points, rng)
        for j, inst in enumerate(ok):
            T = np.eye(4, dtype=np.float32)
            T[:3, :3], T[:3, 3] = inst.R, inst.t
            pts.append(points[j]), cats.append(inst.category), poses.append(T)
        if len(pts) >= 6:
            break
    if len(pts) < 6:
        raise ValueError("the test split has fewer than 6 usable instances")
    return np.stack(pts[:6]), cats[:6], np.stack(poses[:6])


TIMING_REPS = 21
TIMING_SEED = 0


def time_six(est, batch, mode: str, reps: int = TIMING_REPS, **kw) -> dict:
    """Latency (ms) of estimate() on a 6-object frame over ``reps`` calls after a first one:
    the median ``ms_per_frame`` and the 90th percentile ``ms_p90``. The calls' random draws,
    seeded by ``TIMING_SEED``, decide how much work a call does (the roll check estimates again
    only the objects the verifier doubts), so a few calls can land on either side."""
    pts, cats, poses = batch
    if mode == "tracking":
        rng = np.random.default_rng(0)
        prev = poses.copy()
        prev[:, :3, 3] += rng.normal(0, 0.01, (6, 3))  # previous estimates ~1 cm off
        kw["prev_poses"] = prev
    est.generator.manual_seed(TIMING_SEED)
    times = []
    for _ in range(reps + 1):
        est.estimate(pts, cats, mode=mode, **kw)
        times.append(est.last_timing["total_ms"])
    return {"ms_per_frame": round(float(np.median(times[1:])), 1),
            "ms_p90": round(float(np.percentile(times[1:], 90)), 1)}


PLAIN = {"verify_turns": 0, "roll_turns": 0, "tilt_deg": 0.0, "support": False, "border": False}
"""The papers' samplers: no turn, roll or tilt check (they need the pose verifier), no table
plane, no border extension (``support``, ``border``: the runner's, not sampler settings)."""

CHECKS = {"roll check": {"roll_turns": 0}, "tilt check": {"tilt_deg": 0.0}, "support plane": {"support": False},
          "border extension": {"border": False}}
"""The estimator's checks the verifier rows are measured without, one at a time."""


def _runs(kw: dict) -> tuple[dict, dict]:
    """(sampler settings, the runner's ``support`` and ``border``) of a row's settings."""
    kw = dict(kw)
    return kw, {"support": kw.pop("support", None), "border": kw.pop("border", True)}


def verifier_rows(est) -> list[tuple[str, str, dict]]:
    """(row, mode, settings) of the modes with the pose verifier, when the estimator has one:
    GenPose with the verifier's rotation ranking, score scaling with its turn check (the turns
    of config/estimator.yaml, 12 where it has none)."""
    if est.verifier is None:
        return []
    turns = int(est.config["modes"]["score_scaling"]["verify_turns"]) or 12
    return [("genpose_verifier", "genpose", {"ranking": "verifier"}),
            ("score_scaling_verifier", "score_scaling", {"verify_turns": turns})]


def oracle_records(records: list[dict], hypotheses: list) -> list[dict]:
    """Best of the K candidates per instance against the GT (min of rot/5deg + trans/2cm)."""
    from genpose_ros.evaluation import metrics

    out = []
    for rec, hyp in zip(records, hypotheses):
        if hyp is None:
            out.append(rec)
            continue
        rot = metrics.rotation_error_deg(hyp[:, :3, :3], np.broadcast_to(rec["R_gt"], (len(hyp), 3, 3)),
                                         rec["category"], rec["handle_visible"])
        trans = np.linalg.norm(hyp[:, :3, 3] - rec["t_gt"], axis=-1) * 100
        k = int(np.argmin(np.asarray(rot) / 5.0 + trans / 2.0))
        out.append({**rec, "R_pred": hyp[k, :3, :3], "t_pred": hyp[k, :3, 3]})
    return out


def read_curves(logs: list[str]) -> dict:
    """{name: {"diffusion": [[step, 5deg2cm]], "regression": [...]}} from training log.jsonl files."""
    curves = {}
    for item in logs:
        if "=" not in item:
            raise ValueError(f"--logs entries look like NAME=PATH, got {item!r}")
        name, paths = item.split("=", 1)
        recs = [json.loads(line) for path in paths.split(",")  # a run and its resumed continuation
                for line in Path(path).read_text().splitlines() if line.strip()]
        curves[name] = {
            "diffusion": [[r["step"], r["val_diffusion_5deg2cm"]] for r in recs if "val_diffusion_5deg2cm" in r],
            "regression": [[r["step"], r["val_regression_5deg2cm"]] for r in recs if "val_regression_5deg2cm" in r],
            "diffusion_10deg5cm": [[r["step"], r["val_diffusion_10deg5cm"]] for r in recs
                                   if "val_diffusion_10deg5cm" in r],
        }
    return curves


def plot_convergence(curves: dict, path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, (name, c) in enumerate(curves.items()):
        color = f"C{i}"
        for ax, key in ((axes[0], "diffusion"), (axes[1], "diffusion_10deg5cm")):
            if c[key]:
                xs, ys = zip(*c[key])
                ax.plot(xs, ys, marker=".", color=color, label=f"{name}: diffusion sampler")
        if c["regression"] and any(v > 0 for _, v in c["regression"]):
            xs, ys = zip(*c["regression"])
            axes[0].plot(xs, ys, ls="--", color=color, label=f"{name}: regression head")
    axes[0].set(xlabel="training step (all stages)", ylabel="validation 5deg2cm (%)")
    axes[1].set(xlabel="training step (all stages)", ylabel="validation 10deg5cm (%)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("regression-pretrained joint training vs GenPose end-to-end (single-sample sampler)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def run(args: argparse.Namespace) -> int:
    from genpose_ros.config import sampler_settings
    from genpose_ros.data.nocs_io import list_frames
    from genpose_ros.evaluation import plots, runner
    from genpose_ros.evaluation.report import machine_info, summary
    from genpose_ros.paths import pose_checkpoint
    from genpose_ros.pose.estimator import PoseEstimator
    from genpose_ros.pose.tracker import TrackerSettings

    for given, flag in ((args.seq, "--seq"), (args.wide, "--wide")):
        if given and not Path(given).is_dir():
            raise FileNotFoundError(f"{flag} {given}: no such folder")
    ckpt = pose_checkpoint(args.checkpoint)
    apply_threads(args)
    t_start = time.time()
    est = PoseEstimator.from_checkpoint(ckpt, device=args.device, seed=args.seed)
    prefixes = list_frames(args.data, labelled=True)[:args.max_frames]
    if not prefixes:
        raise ValueError(f"no frames under {args.data}")
    seq = args.seq or (str(Path(args.data)) + "_seq")
    if Path(seq).is_dir():   # every split is checked before the first run, not minutes in
        for folder in runner.sequence_folders(seq):
            list_frames(folder, labelled=True)
    wide = args.wide or (str(Path(args.data)) + "_wide")
    wide_prefixes = list_frames(wide, labelled=True)[:args.max_frames] if Path(wide).is_dir() else []
    images = Path(args.images)
    images.mkdir(parents=True, exist_ok=True)
    six = six_object_batch(prefixes)
    report = {"machine": machine_info(args.device), "checkpoint": str(ckpt), "data": str(args.data),
              "n_frames": len(prefixes), "masks": "ground truth", "modes": {}, "settings": {}}
    report["device"] = report["machine"]["name"]

    def settings(mode, **kw):  # what the sampler runs with (config/estimator.yaml + overrides)
        return sampler_settings(mode, kw, est.config)

    def reseed():
        est.generator.manual_seed(args.seed)
        est.rng = np.random.default_rng(args.seed)

    def mode_run(name, mode, keep=False, frames=None, **kw):
        reseed()
        kw, scene = _runs(kw)
        res = runner.run_frames(est, frames or prefixes, mode, kw, seed=args.seed, keep_hypotheses=keep, **scene)
        row = _row(summary(res["records"], res["latency_ms"]))
        row.update(time_six(est, six, mode, **kw))
        row["settings"] = {"mode": mode, **settings(mode, **kw),
                           "support_plane": est.config["support"]["plane"] if scene["support"] is None else scene["support"],
                           "border": scene["border"]}
        report["modes"][name] = row
        print(f"{name}: 5deg2cm {row['5deg2cm']} 10deg5cm {row['10deg5cm']} iou50 {row['iou50']} "
              f"{row['ms_per_frame']} ms/frame", flush=True)
        return res

    runs = {}
    runs["regression"] = mode_run("regression", "regression")["records"]
    g = mode_run("genpose_energy", "genpose", keep=True, ranking="energy", **PLAIN)
    runs["genpose_energy"] = g["records"]
    runs["genpose_random"] = mode_run("genpose_random", "genpose", ranking="random", **PLAIN)["records"]
    oracle = oracle_records(g["records"], g["hypotheses"])
    row = _row(summary(oracle, g["latency_ms"]))
    row.update({k: report["modes"]["genpose_energy"][k] for k in ("ms_per_frame", "ms_p90")})
    row["settings"] = {"mode": "genpose", "aggregation": "best of K against the ground truth (upper bound)"}
    report["modes"]["genpose_oracle"] = row
    runs["genpose_oracle"] = oracle
    verified = verifier_rows(est)
    for name, mode, kw in verified[:1] + [("score_scaling", "score_scaling", PLAIN)] + verified[1:]:
        runs[name] = mode_run(name, mode, **kw)["records"]
    tracker_rows = [("tracking", TrackerSettings())] if Path(seq).is_dir() else []
    if tracker_rows and not args.skip_ablations:   # the tracker without its doubt check (GenPose's warm start alone)
        tracker_rows.append(("tracking_no_doubt", TrackerSettings(doubt_deg=0.0)))
    for name, tracker in tracker_rows:
        reseed()
        tr = runner.run_tracking(est, seq, {}, "score_scaling", seed=args.seed, max_frames=args.seq_frames,
                                 settings=tracker)
        row = _row(summary(tr["records"], tr["latency_ms"]))
        row.update(time_six(est, six, "tracking", rate=tracker.doubt_deg > 0))
        frames_ms = tr["latency_ms"] + tr["init_latency_ms"]   # every frame: first, re-initialised, doubted
        row["ms_sequence_mean"] = round(float(np.mean(frames_ms)), 1)
        row["settings"] = {"mode": "tracking", "init_mode": "score_scaling", "data": seq, **settings("tracking"),
                           "tracker": asdict(tracker)}
        report["modes"][name] = row
        runs[name] = tr["records"]
        print(f"{name}: 5deg2cm {row['5deg2cm']} {row['ms_per_frame']} ms/frame, "
              f"{row['ms_sequence_mean']} ms mean over the sequences' frames", flush=True)

    if wide_prefixes:
        report["wide"] = {"data": wide, "n_frames": len(wide_prefixes), "modes": {}}
        for name, mode, kw in [("genpose_energy", "genpose", {"ranking": "energy", **PLAIN}),
                               ("score_scaling", "score_scaling", PLAIN)] + verified:
            reseed()
            kw, scene = _runs(kw)
            res = runner.run_frames(est, wide_prefixes, mode, kw, seed=args.seed, **scene)
            report["wide"]["modes"][name] = _row(summary(res["records"], res["latency_ms"]))
            print(f"wide {name}: 5deg2cm {report['wide']['modes'][name]['5deg2cm']}", flush=True)

    if not args.skip_ablations:
        abl = report.setdefault("ablations", {})
        from genpose_ros.evaluation.size_ablation import run_ablation

        abl["size"] = run_ablation(args.data, str(ckpt), ["genpose", "score_scaling"], ["head", "net"],
                                   args.max_frames, args.seed, device=args.device)
        abl["score_scaling"] = {}
        for name, kw in SCALING_ABLATION.items():  # pose metrics only (IoU needs no sampler change)
            reseed()
            res = runner.run_frames(est, prefixes, "score_scaling", kw, seed=args.seed, progress=False)
            recs = [{**r, "size_pred": None} for r in res["records"]]
            r = _row(summary(recs, res["latency_ms"]))
            abl["score_scaling"][name] = {k: r[k] for k in ("5deg2cm", "5deg5cm", "10deg2cm", "10deg5cm")}
            abl["score_scaling"][name]["per_category_5deg2cm"] = {c: v["5deg2cm"] for c, v in r["per_category"].items()}
            print(f"score scaling {name}: {abl['score_scaling'][name]}", flush=True)
        abl["checks"] = {}
        for name, mode, kw in verified:  # the verifier rows without each check
            abl["checks"][name] = {}
            for check, off in CHECKS.items():
                reseed()
                run_kw, scene = _runs({**kw, **off})
                res = runner.run_frames(est, prefixes, mode, run_kw, seed=args.seed, progress=False, **scene)
                r = _row(summary(res["records"], res["latency_ms"]))
                row = {k: r[k] for k in ("5deg2cm", "5deg5cm", "10deg2cm", "10deg5cm", "iou75")}
                row.update(time_six(est, six, mode, **run_kw))
                abl["checks"][name][check] = row
                print(f"{name} without the {check}: {row}", flush=True)
        abl["solvers"] = {}
        sub = prefixes[:args.solver_frames]
        for name, kw in {"euler 20 steps (default)": {"solver": "euler", "n_steps": 20},
                         "heun 10 steps": {"solver": "heun", "n_steps": 10},
                         "rk45 adaptive (rtol=atol=1e-5)": {"solver": "rk45"}}.items():
            reseed()
            res = runner.run_frames(est, sub, "genpose", kw, seed=args.seed, progress=False)
            recs = [{**r, "size_pred": None} for r in res["records"]]
            r = _row(summary(recs, res["latency_ms"]))
            abl["solvers"][name] = {k: r[k] for k in ("5deg2cm", "5deg5cm", "10deg2cm", "10deg5cm")}
            abl["solvers"][name]["ms_per_frame"] = time_six(est, six, "genpose", reps=3, **kw)["ms_per_frame"]
            abl["solvers"][name]["nfe"] = est.last_timing["nfe"]
            abl["solvers"][name]["frames"] = len(sub)
            print(f"solver {name}: {abl['solvers'][name]}", flush=True)

    # plots
    figures = {"error_cdf": plots.plot_error_cdfs(runs, images / "bench_error_cdf.png")}
    reseed()
    examples = plots.hypothesis_examples(est, prefixes, seed=args.seed)
    if examples:
        figures["hypotheses"] = plots.plot_hypotheses(examples, images / "bench_hypotheses.png")
    if args.logs:
        report["convergence"] = read_curves(args.logs)
    elif Path(args.json).is_file():  # keep the curves of an earlier report (training logs are not shipped)
        try:
            report["convergence"] = json.loads(Path(args.json).read_text())["convergence"]
        except (KeyError, ValueError):
            pass
    if report.get("convergence"):
        figures["convergence"] = plot_convergence(report["convergence"], images / "bench_convergence.png")
    report["plots"] = {k: str(v) for k, v in figures.items()}
    report["wall_s"] = round(time.time() - t_start, 1)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    md_path = Path(args.md) if args.md else out.with_suffix(".md")
    md_path.write_text(markdown(report, md_path.parent))
    print(md_path.read_text())
    return 0


def markdown(report: dict, base: Path) -> str:
    cols = ["5deg2cm", "5deg5cm", "10deg2cm", "10deg5cm", "iou25", "iou50", "iou75", "ms_per_frame", "ms_p90"]

    def fmt(v):
        return "n/a" if v is None else (f"{v:.1f}" if isinstance(v, (int, float)) else str(v))

    lines = ["# Benchmark", "",
             f"Checkpoint `{report['checkpoint']}`, data `{report['data']}` ({report['n_frames']} frames, "
             f"{report['masks']} masks). Machine: {report['machine']['name']}; torch {report['machine']['torch']}; "
             f"load average at start {report['machine'].get('load_average_at_start')}.", "",
             "Accuracy = share of instances (%) within the threshold (pose thresholds inclusive), mean over the six "
             "NOCS categories (one without instances counts 0); `ms_per_frame` / `ms_p90` = "
             f"median / 90th percentile latency of {TIMING_REPS} estimate() calls on a 6-object frame "
             "(encoder + sampler + checks).", "",
             "| mode | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in report["modes"].items():
        lines.append(f"| {name} | " + " | ".join(fmt(row.get(c)) for c in cols) + " |")
    for name, row in report["modes"].items():
        if "ms_sequence_mean" in row:
            lines.append(f"\n`{name}` (on `{row['settings']['data']}`): {fmt(row['ms_sequence_mean'])} ms per frame on "
                         "average over the sequences' frames (first frames, re-initialised and doubted objects included); "
                         "its `ms_per_frame` is a warm-started 6-object frame.")
    cats = list(next(iter(report["modes"].values()))["per_category"])
    lines += ["", "## 5deg2cm per category", "", "| mode | " + " | ".join(cats) + " |", "|---" * (len(cats) + 1) + "|"]
    for name, row in report["modes"].items():
        lines.append(f"| {name} | " + " | ".join(fmt(row["per_category"].get(c, {}).get("5deg2cm")) for c in cats) + " |")
    lines += rest_markdown(report)
    abl = report.get("ablations", {})
    if abl.get("score_scaling"):
        lines += ["", "## Score-scaling schedule ablation (single sample, the steps and turn check of "
                  "config/estimator.yaml)", "",
                  "| schedule | 5deg2cm | 5deg5cm | 10deg2cm | 10deg5cm |", "|---|---|---|---|---|"]
        for name, r in abl["score_scaling"].items():
            lines.append(f"| {name} | {fmt(r['5deg2cm'])} | {fmt(r['5deg5cm'])} | {fmt(r['10deg2cm'])} | {fmt(r['10deg5cm'])} |")
    if abl.get("checks"):
        lines += ["", "## Roll check, tilt check, support plane and border extension ablation (the verifier rows; "
                  "`all`: the defaults of config/estimator.yaml, `roll_turns`, `tilt_deg`, `support.plane` and "
                  "`border.categories`)", "",
                  "| mode | checks | 5deg2cm | 10deg5cm | IoU75 | ms_per_frame | ms_p90 |", "|---|---|---|---|---|---|---|"]
        for name, rows in abl["checks"].items():
            row = report["modes"].get(name, {})
            lines.append(f"| {name} | all | {fmt(row.get('5deg2cm'))} | {fmt(row.get('10deg5cm'))} | "
                         f"{fmt(row.get('iou75'))} | {fmt(row.get('ms_per_frame'))} | {fmt(row.get('ms_p90'))} |")
            for check, r in rows.items():
                lines.append(f"| {name} | without the {check} | {fmt(r['5deg2cm'])} | {fmt(r['10deg5cm'])} | "
                             f"{fmt(r['iou75'])} | {fmt(r['ms_per_frame'])} | {fmt(r.get('ms_p90'))} |")
    if abl.get("solvers"):
        lines += ["", "## ODE solvers (genpose mode, K=50)", "",
                  "| solver | frames | 5deg2cm | 10deg5cm | network evals | ms_per_frame |", "|---|---|---|---|---|---|"]
        for name, r in abl["solvers"].items():
            lines.append(f"| {name} | {r['frames']} | {fmt(r['5deg2cm'])} | {fmt(r['10deg5cm'])} | {r['nfe']} | "
                         f"{fmt(r['ms_per_frame'])} |")
    if abl.get("size"):
        from genpose_ros.evaluation.size_ablation import markdown as size_markdown

        lines += ["", "## Size: SizeNet (net) against the pose model's size head (head), same poses", "",
                  "`net+centre`: the SizeNet also places the box centre of the categories in "
                  "config/estimator.yaml `size.centre` (the default; other rows keep the sampled translation).", "",
                  size_markdown(abl["size"])]
    if report.get("wide"):
        lines += wide_markdown(report, fmt)
    lines += [""]
    for name, path in report.get("plots", {}).items():
        try:
            rel = os.path.relpath(path, base)
        except ValueError:
            rel = path
        lines += [f"![{name}]({rel})", ""]
    return "\n".join(lines)


def rest_markdown(report: dict, mode: str = "genpose_verifier") -> list[str]:
    """5deg2cm of ``mode`` by how the objects rest, on the standard and the wide split."""
    from genpose_ros.evaluation.tables import REST_NOTE, format_rest_table

    lines = []
    for split, modes in (("standard", report["modes"]), ("wide", report.get("wide", {}).get("modes", {}))):
        rest = modes.get(mode, {}).get("by_rest")
        if rest:
            lines += ["", f"## {mode} 5deg2cm by resting pose, {split} split (% (instances); {REST_NOTE})", "",
                      format_rest_table(rest, "5deg2cm")]
    return lines


def wide_markdown(report: dict, fmt) -> list[str]:
    """The standard split beside the wide one, and the wide/standard ratio of 5deg2cm."""
    w = report["wide"]
    cols = ["5deg2cm", "5deg5cm", "10deg2cm", "10deg5cm", "iou25", "iou50", "iou75"]
    lines = ["", f"## Wide split (`{w['data']}`, {w['n_frames']} frames)", "",
             "| split | mode | " + " | ".join(cols) + " | wide / standard 5deg2cm (%) |", "|---" * (len(cols) + 3) + "|"]
    for name, row in w["modes"].items():
        std = report["modes"].get(name, {})
        lines.append(f"| standard | {name} | " + " | ".join(fmt(std.get(c)) for c in cols) + " | |")
        ratio = 100 * row["5deg2cm"] / std["5deg2cm"] if std.get("5deg2cm") and row["5deg2cm"] is not None else None
        lines.append(f"| wide | {name} | " + " | ".join(fmt(row.get(c)) for c in cols) + f" | {fmt(ratio)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genpose bench")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
