"""Training convergence of runs at equal compute: validation accuracy against wall-clock time.

    python -m genpose_ros.evaluation.convergence --logs joint=runs/j/log.jsonl genpose=runs/g/log.jsonl \\
        --eval joint=runs/j_eval/eval.json genpose=runs/g_eval/eval.json --json docs/convergence.json

Reads the validation records of ``genpose train`` logs (``val_diffusion_*``: the single-sample
score-scaling sampler; ``val_regression_*``: the regression head; both on the same validation
instances) and prints a Markdown table: each run's diffusion-sampler 5deg2cm / 10deg5cm at a
quarter, half, three quarters and the end of the time the slowest-validating run spent in its
pose stages, the time each run needed to reach ``--target`` of the best final 5deg2cm, and,
with ``--eval``, the final model's ``genpose eval`` numbers (mean over categories). Writes
the same as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_validation(path: str) -> list[dict]:
    """Validation records of one training log, in order: elapsed_s, step, stage, val_* keys."""
    return [r for line in Path(path).read_text().splitlines() if line.strip()
            for r in [json.loads(line)] if "val_diffusion_5deg2cm" in r]


def at_time(records: list[dict], t: float, key: str) -> float | None:
    """The value of ``key`` at the last validation at or before ``t`` seconds."""
    before = [r[key] for r in records if r["elapsed_s"] <= t + 1e-6]
    return before[-1] if before else None


def time_to_reach(records: list[dict], value: float, key: str = "val_diffusion_5deg2cm") -> float | None:
    return next((r["elapsed_s"] for r in records if r[key] >= value), None)


def report(logs: dict[str, str], evals: dict[str, str], target: float = 0.9) -> dict:
    runs = {name: read_validation(path) for name, path in logs.items()}
    empty = [name for name, recs in runs.items() if not recs]
    if empty:
        raise ValueError(f"no validation records (val_diffusion_5deg2cm) in the logs of {empty}")
    horizon = min(recs[-1]["elapsed_s"] for recs in runs.values())
    checkpoints = [round(horizon * f) for f in (0.25, 0.5, 0.75, 1.0)]
    best_final = max(at_time(recs, horizon, "val_diffusion_5deg2cm") for recs in runs.values())
    out = {"horizon_s": horizon, "checkpoints_s": checkpoints, "target": target,
           "target_5deg2cm": target * best_final, "runs": {}}
    for name, recs in runs.items():
        row = {"steps": at_time(recs, horizon, "step"),
               "diffusion_5deg2cm": [at_time(recs, t, "val_diffusion_5deg2cm") for t in checkpoints],
               "diffusion_10deg5cm": [at_time(recs, t, "val_diffusion_10deg5cm") for t in checkpoints],
               "regression_5deg2cm_end": at_time(recs, horizon, "val_regression_5deg2cm"),
               "time_to_target_s": time_to_reach(recs, target * best_final) if best_final > 0 else None}
        if name in evals:
            acc = json.loads(Path(evals[name]).read_text())["tables"]["accuracy"]
            row["eval"] = {m: acc[m]["mean"] for m in ("5deg2cm", "10deg5cm", "IoU75") if m in acc}
        out["runs"][name] = row
    return out


def markdown(r: dict) -> str:
    def fmt(v, unit=""):
        return "n/a" if v is None else f"{v:.1f}{unit}"

    ts = " / ".join(str(t) for t in r["checkpoints_s"]) + " s"
    lines = [f"| run | steps | val 5deg2cm at {ts} | val 10deg5cm at {ts} | regression head 5deg2cm | "
             f"time to {r['target_5deg2cm']:.1f} (5deg2cm) | final eval 5deg2cm / 10deg5cm / IoU75 |",
             "|---" * 7 + "|"]
    for name, row in r["runs"].items():
        ev = row.get("eval", {})
        lines.append(f"| {name} | {row['steps']} | {' / '.join(fmt(v) for v in row['diffusion_5deg2cm'])} | "
                     f"{' / '.join(fmt(v) for v in row['diffusion_10deg5cm'])} | "
                     f"{fmt(row['regression_5deg2cm_end'])} | {fmt(row['time_to_target_s'], ' s')} | "
                     f"{' / '.join(fmt(ev.get(m)) for m in ('5deg2cm', '10deg5cm', 'IoU75')) if ev else 'n/a'} |")
    return "\n".join(lines)


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    bad = [i for i in items if "=" not in i]
    if bad:
        raise ValueError(f"{flag} entries look like NAME=PATH, got {bad}")
    return dict(i.split("=", 1) for i in items)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m genpose_ros.evaluation.convergence", description=__doc__.split("\n")[0])
    p.add_argument("--logs", nargs="+", required=True, metavar="NAME=LOG.jsonl")
    p.add_argument("--eval", nargs="*", default=[], metavar="NAME=EVAL.json", help="`genpose eval` outputs")
    p.add_argument("--target", type=float, default=0.9, help="share of the best final 5deg2cm to reach")
    p.add_argument("--json", default=None, help="write the report here")
    args = p.parse_args(argv)
    try:
        r = report(_pairs(args.logs, "--logs"), _pairs(args.eval, "--eval"), args.target)
    except (OSError, ValueError, KeyError) as exc:
        print(f"convergence: {exc}", file=sys.stderr)
        return 2
    print(markdown(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
