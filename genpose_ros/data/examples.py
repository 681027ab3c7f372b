"""Example pictures of the synthetic data (``genpose data examples``): one PNG per category
(four random instances of it among other objects) and a strip of a tracking sequence; with
``distribution="wide"`` (or "tilted") the category PNGs of that distribution (``wide_<category>.png``)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from genpose_ros import CATEGORIES
from genpose_ros.data.render import Renderer
from genpose_ros.data.scenes import sample_camera_pose, sample_scene, sample_sequence
from genpose_ros.data.sensor import sample_sensor
from genpose_ros.data.visualize import depth_colour, draw_box, instance_colour


def _boxes(frame, only: str | None = None) -> np.ndarray:
    img = frame.color.copy()
    for inst in frame.instances:
        if only is None or inst.category == only:
            label = inst.category + ("" if inst.handle_visible else " (handle hidden)")
            draw_box(img, inst.R, inst.t, inst.size, frame.intrinsics,
                     instance_colour(inst.instance_id), label)
    return img


def _whole(frame, inst, margin: int = 3) -> bool:
    ys, xs = np.nonzero(frame.mask == inst.instance_id)
    H, W = frame.mask.shape
    return len(xs) > 800 and xs.min() > margin and ys.min() > margin and \
        xs.max() < W - margin and ys.max() < H - margin


def category_example(category: str, seed: int = 0, scale: float = 0.75, distribution: str = "standard") -> np.ndarray:
    """(H, 3W, 3) uint8 RGB: colour | colour with the GT boxes of ``category`` | depth."""
    rng = np.random.default_rng([seed, CATEGORIES.index(category)])
    others = [CATEGORIES[i] for i in rng.integers(len(CATEGORIES), size=2)]
    renderer = Renderer()
    best, best_score = None, -1
    for _ in range(12):  # the view showing most instances of the category whole
        scene = sample_scene(rng, categories=[category] * 4 + others, distribution=distribution)
        if distribution == "wide":
            renderer.sensor = sample_sensor(rng)
        frame = renderer.render(scene, sample_camera_pose(rng, scene, distribution), rng)
        score = sum(_whole(frame, i) for i in frame.instances if i.category == category)
        if score > best_score:
            best, best_score = frame, score
        if score >= 4:
            break
    frame = best
    img = np.concatenate([frame.color, _boxes(frame, category), depth_colour(frame.depth)], axis=1)
    return cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def sequence_example(seed: int = 0, n_frames: int = 30, shown: int = 4, scale: float = 0.5) -> np.ndarray:
    """(H, shown*W, 3) uint8 RGB: evenly spaced frames of one tracking sequence with GT boxes."""
    rng = np.random.default_rng(seed)
    seq = sample_sequence(rng, n_frames, n_objects=5)
    renderer = Renderer()
    tiles = []
    for i in np.linspace(0, n_frames - 1, shown).round().astype(int):
        frame = renderer.render(*seq.frame(i), rng)
        tile = _boxes(frame)
        cv2.putText(tile, f"frame {i}", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2)
        tiles.append(tile)
    img = np.concatenate(tiles, axis=1)
    return cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def write_examples(out_dir, seed: int = 0, distribution: str = "standard") -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    prefix = "data" if distribution == "standard" else distribution  # wide_<category>.png, tilted_<category>.png
    for cat in CATEGORIES:
        path = out / f"{prefix}_{cat}.png"
        cv2.imwrite(str(path), cv2.cvtColor(category_example(cat, seed, distribution=distribution),
                                            cv2.COLOR_RGB2BGR))
        written.append(path)
    if distribution != "standard":
        return written
    path = out / "data_sequence.png"
    cv2.imwrite(str(path), cv2.cvtColor(sequence_example(seed), cv2.COLOR_RGB2BGR))
    written.append(path)
    return written
