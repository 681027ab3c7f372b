"""Plots of an evaluation: rotation / translation error CDFs and the rotation hypotheses of a
symmetric and an asymmetric object."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genpose_ros.data.nocs_io import read_frame
from genpose_ros.evaluation import metrics
from genpose_ros.evaluation.runner import frame_batch


def errors_of(records: list[dict]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rot, trans, cats = [], [], []
    for r in records:
        if r.get("R_gt") is None:  # a false positive has no error
            continue
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
