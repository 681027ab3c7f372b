"""Consistency of published objects over a sequence: do names follow objects, and do the frames
of symmetric objects stay put (docs/ros.md, "Object frames and what a detection means")?

Input: per-object records of consecutive frames matched to the ground truth (as
`genpose_ros.ros.demo.evaluate` makes them): ``frame``, ``gt_id``, ``category``,
``handle_visible``, ``name`` (None when missed), ``R_pred`` and ``R_gt`` (3, 3), and
``size_gt`` when known; false positives (``R_gt`` None) have no object to follow and are left
out. An object is its id, class and size: the simulator numbers the objects of each scene
anew, and the next scene's object 1 is another object (of another size).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy.spatial.transform import Rotation

from genpose_ros.evaluation.metrics import is_symmetric


def _turn_deg(A0: np.ndarray, A1: np.ndarray) -> float:
    return float(np.degrees(Rotation.from_matrix(A0.T @ A1).magnitude()))


def _stats(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
            "max": float(v.max())}


def sequence_consistency(records: list[dict]) -> dict:
    """Id switches between consecutive frames, distinct names per object, and the frame-to-frame
    turn of each published frame relative to its object (degrees; symmetric vs other objects)."""
    by_object = defaultdict(list)
    for r in records:
        if r.get("name") is not None and r.get("R_gt") is not None:
            size = r.get("size_gt")
            by_object[(r["gt_id"], r["category"], None if size is None else tuple(np.round(size, 5)))].append(r)
    pairs = switches = 0
    names = []
    turns = {"symmetric": [], "other": []}
    for recs in by_object.values():
        recs.sort(key=lambda r: r["frame"])
        names.append(len({r["name"] for r in recs}))
        for a, b in zip(recs, recs[1:]):
            if b["frame"] != a["frame"] + 1:
                continue
            pairs += 1
            switches += a["name"] != b["name"]
            kind = "symmetric" if is_symmetric(b["category"], b["handle_visible"]) else "other"
            turns[kind].append(_turn_deg(a["R_gt"].T @ a["R_pred"], b["R_gt"].T @ b["R_pred"]))
    return {"objects": len(by_object), "distinct_names": int(sum(names)), "pairs": pairs,
            "id_switches": int(switches),
            "turn_deg": {k: _stats(v) for k, v in turns.items()}}


def format_consistency(c: dict) -> str:
    lines = [f"  {c['objects']} objects, {c['distinct_names']} distinct names, {c['id_switches']} id "
             f"switches in {c['pairs']} consecutive pairs"]
    for kind, s in c["turn_deg"].items():
        if s["n"]:
            lines.append(f"  frame-to-frame turn of the published frame, {kind} objects: median "
                         f"{s['median']:.1f} deg, p90 {s['p90']:.1f} deg (n={s['n']})")
    return "\n".join(lines)
