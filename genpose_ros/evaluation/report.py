"""The report of an evaluation: ``eval.json`` (tables, latency and one entry per instance, so
the results read back without pickle) and ``eval.md`` (accuracy and mAP tables)."""
from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import numpy as np

from genpose_ros.evaluation import metrics, tables


def summary(records: list[dict], latency_ms: list[float], iou: str = "exact") -> dict:
    """Tables, latency per frame and per-instance results of the records of one run."""
    gts = [r for r in records if tables.is_ground_truth(r)]
    errors = [metrics.record_errors(r, iou) for r in gts]
    lat = np.asarray(latency_ms, float)
    return {"tables": tables.nocs_tables(records, iou, errors), "mean_over": tables.MEAN_NOTE,
            "n_instances": len(gts), "latency_ms_mean": float(lat.mean()) if len(lat) else math.nan,
            "latency_ms_median": float(np.median(lat)) if len(lat) else math.nan,
            "instances": instance_rows(records, gts, errors), "by_rest": tables.by_rest(gts, errors)}


def instance_rows(records: list[dict], gts: list[dict], errors: list[dict]) -> list[dict]:
    """One JSON-ready entry per record: its image, category, ground truth and prediction (R
    row-major, t and size in metres; null when absent), score and errors (null when undefined)."""
    err = {id(r): e for r, e in zip(gts, errors)}
    rows = []
    for r in records:
        e = err.get(id(r), {})
        rows.append({"image": r.get("image"), "instance_id": r.get("instance_id"), "category": r["category"],
                     "handle_visible": bool(r.get("handle_visible", True)), "score": r.get("score"),
                     "gt": _pose(r, "gt"), "pred": _pose(r, "pred"), "rot_err_deg": _finite(e.get("rot")),
                     "trans_err_cm": _finite(e.get("trans")), "iou": _finite(e.get("iou")),
                     "rest": r.get("rest")})
    return rows


def _pose(r: dict, which: str) -> dict | None:
    if r.get(f"R_{which}") is None:
        return None
    size = r.get(f"size_{which}")
    return {"R": np.asarray(r[f"R_{which}"], float).tolist(), "t": np.asarray(r[f"t_{which}"], float).tolist(),
            "size": None if size is None else np.asarray(size, float).tolist()}


def _finite(x):
    return None if x is None or not math.isfinite(x) else float(x)


def records_from_json(path) -> list[dict]:
    """The records of an ``eval.json`` (its ``instances``), for ``tables.nocs_tables``."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text())["instances"]
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    except (KeyError, TypeError):
        raise ValueError(f"{path} has no per-instance results ('instances'); was it written by genpose eval?") from None
    records = []
    for k, row in enumerate(rows):
        try:
            rec = {"image": row["image"], "category": row["category"], "handle_visible": row["handle_visible"],
                   "score": row["score"], "instance_id": row.get("instance_id"), "rest": row.get("rest")}
            for which in ("gt", "pred"):
                pose = row[which] or {}
                rec[f"R_{which}"], rec[f"t_{which}"], rec[f"size_{which}"] = (
                    None if pose.get(key) is None else np.asarray(pose[key], float) for key in ("R", "t", "size"))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"{path}: instance {k} is malformed ({exc!r})") from None
        records.append(rec)
    return records


def masks_line(s: dict) -> list[str]:
    """How many objects a segmenter's masks found, and its false positives (empty for the
    ground-truth masks)."""
    if s.get("masks", "ground_truth") == "ground_truth":
        return []
    found = sum(r["pred"] is not None for r in s["instances"] if r["gt"] is not None)
    fps = sum(s["tables"]["false_positives"].values())
    return [f"Masks: {s['masks']} (segmenter median {s.get('segment_ms_median', math.nan):.0f} ms "
            f"per frame); objects found {found} / {s['n_instances']}, false positives {fps}"
            + (f" ({s['rejected']} detections dropped by config/estimator.yaml reject)." if s.get("rejected")
               else ".")
            + (f" The category check changed {s['relabelled']} detections' categories." if s.get("relabelled")
               else "")
            + (f" Summed over each track's frames it gave {s['voted']} detections another class than their frame's own." if s.get("voted") else ""), ""]


def markdown(title: str, s: dict) -> str:
    return "\n".join([f"# {title}", "", f"{s['n_instances']} instances; latency per frame: "
                      f"mean {s['latency_ms_mean']:.1f} ms, median {s['latency_ms_median']:.1f} ms; "
                      f"3D IoU variant: {s['tables']['iou_variant']}; {s['mean_over']}.", "",
                      *masks_line(s),
                      "## Accuracy (% of instances within the threshold)", "",
                      tables.format_table(s["tables"], "accuracy"), "", "## mAP (%)", "",
                      tables.format_table(s["tables"], "mAP"), "", *rest_section(s)])


def rest_section(s: dict) -> list[str]:
    """Accuracy by how the objects rest (upright, tilted, lying, upside down), when the split's
    labels give the camera pose (``T_world_cam``)."""
    if not s.get("by_rest"):
        return []
    return [f"## By resting pose ({tables.REST_NOTE})", "",
            "5deg2cm, % (instances):", "", tables.format_rest_table(s["by_rest"], "5deg2cm"), "",
            "10deg5cm:", "", tables.format_rest_table(s["by_rest"], "10deg5cm"), ""]


def jsonable(x):
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return jsonable(x.item())
    return x


def write(out, title: str, s: dict) -> str:
    """Writes ``eval.json`` and ``eval.md`` into ``out``; returns the Markdown."""
    out = Path(out)
    (out / "eval.json").write_text(json.dumps(jsonable(s), indent=1))
    md = markdown(title, s)
    (out / "eval.md").write_text(md)
    return md


def machine_info(device: str) -> dict:
    """The machine a measurement ran on (CPU model, cores, torch threads, GPU, load) and a one-line ``name``."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": str(torch.__version__), "python": platform.python_version(), "device": device,
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    info["name"] = (f"{info['gpu']} (GPU)" if "gpu" in info else f"{cpu}, {os.cpu_count()} cores, "
                    f"{info['torch_threads']} torch thread(s), shared machine")
    return info
