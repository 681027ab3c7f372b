"""Dataset generation: scenes x views (or sequences) rendered and written in the NOCS layout,
with a dataset card. Used by ``genpose data generate``.

Each scene (or sequence) k draws from its own generator seeded by (seed, split, k), so the
output does not depend on the number of worker processes.
"""
from __future__ import annotations

import json
import os
import platform
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genpose_ros import CATEGORIES, __version__
from genpose_ros.data.camera import D435_MODES

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


@dataclass
class GenerateConfig:
    out: str
    split: str
    seed: int
    scenes: int = 0
    views_per_scene: int = 1
    sequences: int = 0
    frames: int = 30
    noise: bool = True
    write_pickle: bool = True
    n_objects: int | None = None
    distribution: str = "standard"  # "wide": families, WIDE_SCENE_RANGES and a random sensor per frame;
                                    # "tilted": the standard one with most objects tilted or lying;
                                    # "close": the standard one seen from 0.25-0.55 m
    resolution: str = "640x480"     # the D435 colour mode rendered (data.camera.D435_MODES)


def unit_rng(cfg: GenerateConfig, kind: int, k: int) -> np.random.Generator:
    """Generator of scene/sequence ``k`` (kind 0 = scene, 1 = sequence)."""
    return np.random.default_rng(np.random.SeedSequence([cfg.seed, SPLIT_CODES[cfg.split], kind, k]))


def _renderer(cfg: GenerateConfig):
    from genpose_ros.data.render import Renderer
    from genpose_ros.data.sensor import SensorModel
    return Renderer(D435_MODES[cfg.resolution], sensor=SensorModel() if cfg.noise else None)


def scene_frames(renderer, rng: np.random.Generator, views: int, n_objects: int | None = None,
                 distribution: str = "standard", noise: bool = True):
    """Frames of one random table scene of ``distribution`` seen from ``views`` random camera
    poses (a generator; the poses are drawn before any rendering)."""
    from genpose_ros.data.scenes import sample_camera_pose, sample_scene
    scene = sample_scene(rng, n_objects, distribution=distribution)
    poses = [(scene, sample_camera_pose(rng, scene, distribution)) for _ in range(views)]
    yield from render_views(renderer, rng, poses, distribution, noise)


def render_views(renderer, rng: np.random.Generator, views, distribution: str = "standard", noise: bool = True):
    """Frames of (scene, T_world_cam) views; the wide distribution draws a depth sensor per frame."""
    from genpose_ros.data.sensor import sample_sensor
    for scene, T_world_cam in views:
        if distribution == "wide" and noise:
            renderer.sensor = sample_sensor(rng)
        yield renderer.render(scene, T_world_cam, rng)


_RENDERERS: dict = {}   # per process, one per camera, sensor model and distribution (which swaps sensors)


def render_unit(args: tuple[GenerateConfig, int, int]) -> dict:
    """Render and write one scene (kind 0, ``views_per_scene`` views) or one sequence (kind 1).
    Returns its statistics."""
    from genpose_ros.data.nocs_io import write_frame
    from genpose_ros.data.scenes import sample_sequence
    cfg, kind, k = args
    key = (cfg.resolution, cfg.noise, cfg.distribution)
    if key not in _RENDERERS:
        _RENDERERS[key] = _renderer(cfg)
    renderer = _RENDERERS[key]
    rng = unit_rng(cfg, kind, k)
    stats = {"frames": 0, "instances": Counter(), "handle_hidden": 0, "mugs": 0, "empty": 0}
    if kind == 0:
        folder = Path(cfg.out) / f"{k:05d}"
        frames = scene_frames(renderer, rng, cfg.views_per_scene, cfg.n_objects, cfg.distribution, cfg.noise)
    else:
        seq = sample_sequence(rng, cfg.frames, cfg.n_objects, cfg.distribution)
        folder = Path(cfg.out) / f"seq_{k:03d}"
        frames = render_views(renderer, rng, [seq.frame(i) for i in range(len(seq))], cfg.distribution, cfg.noise)
    for v, frame in enumerate(frames):
        write_frame(folder, v, frame, write_pickle=cfg.write_pickle)
        stats["frames"] += 1
        stats["empty"] += int(not frame.instances)
        for inst in frame.instances:
            stats["instances"][inst.category] += 1
            if inst.category == "mug":
                stats["mugs"] += 1
                stats["handle_hidden"] += int(not inst.handle_visible)
    return stats


def generate(cfg: GenerateConfig, workers: int = 1, progress: bool = True) -> dict:
    """Render the whole split into ``cfg.out`` and write dataset_card.json/.md; returns the card."""
    from tqdm import tqdm
    if cfg.split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {list(SPLIT_CODES)}, got {cfg.split!r}")
    if cfg.scenes < 0 or cfg.sequences < 0 or cfg.views_per_scene < 1 or cfg.frames < 1:
        raise ValueError("scenes and sequences must be >= 0, views per scene and frames >= 1")
    if cfg.scenes == 0 and cfg.sequences == 0:
        raise ValueError("nothing to generate: give --scenes N and/or --sequences N")
    from genpose_ros.data.families import check_distribution
    check_distribution(cfg.distribution)
    if cfg.resolution not in D435_MODES:
        raise ValueError(f"resolution must be one of {', '.join(D435_MODES)}, got {cfg.resolution!r}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(cfg, 0, k) for k in range(cfg.scenes)] + [(cfg, 1, k) for k in range(cfg.sequences)]
    total = Counter()
    frames = empty = mugs = hidden = 0
    t0 = time.time()
    bar = tqdm(total=cfg.scenes * cfg.views_per_scene + cfg.sequences * cfg.frames, unit="frame",
               desc=f"{cfg.split} -> {out}", disable=not progress)

    def collect(stats):
        nonlocal frames, empty, mugs, hidden
        total.update(stats["instances"])
        frames += stats["frames"]
        empty += stats["empty"]
        mugs += stats["mugs"]
        hidden += stats["handle_hidden"]
        bar.update(stats["frames"])

    if workers > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(workers) as pool:
            for stats in pool.imap_unordered(render_unit, jobs):
                collect(stats)
    else:
        for job in jobs:
            collect(render_unit(job))
    bar.close()
    seconds = time.time() - t0
    card = dataset_card(cfg, frames, total, empty, mugs, hidden, seconds, workers)
    with open(out / "dataset_card.json", "w") as f:
        json.dump(card, f, indent=2)
    with open(out / "dataset_card.md", "w") as f:
        f.write(card_markdown(card))
    return card


def dataset_card(cfg, frames, counts, empty, mugs, hidden, seconds, workers) -> dict:
    from genpose_ros.data.families import family_ranges
    from genpose_ros.data.objects import PARAM_RANGES
    from genpose_ros.data.scenes import SEQUENCE_RANGES, scene_ranges
    from genpose_ros.data.sensor import WIDE_SENSOR_RANGES, SensorModel
    wide = cfg.distribution == "wide"
    card = {
        "name": f"genpose_ros synthetic NOCS-category RGB-D ({cfg.split})",
        "generator_version": __version__,
        "split": cfg.split, "seed": cfg.seed,
        "scenes": cfg.scenes, "views_per_scene": cfg.views_per_scene,
        "sequences": cfg.sequences, "frames_per_sequence": cfg.frames if cfg.sequences else 0,
        "frames": frames, "frames_without_instances": empty,
        "instances_per_category": {c: int(counts.get(c, 0)) for c in CATEGORIES},
        "instances": int(sum(counts.values())),
        "mugs_with_hidden_handle": hidden, "mugs": mugs,
        "layout": "NOCS: <scene>/<view>_{color,depth,mask}.png, _meta.txt, _label.json (+ .pkl)",
        "depth": "uint16 millimetres", "mask": "uint8 instance ids, 255 = background",
        "intrinsics": D435_MODES[cfg.resolution].to_dict(),
        "sensor_model": SensorModel().to_dict() if cfg.noise else None,
        "object_parameter_ranges": PARAM_RANGES,
        "scene_parameter_ranges": scene_ranges(cfg.distribution),
        "sequence_parameter_ranges": SEQUENCE_RANGES if cfg.sequences else None,
        "generation_seconds": round(seconds, 1), "workers": workers,
        "frames_per_second": round(frames / max(seconds, 1e-9), 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    if cfg.distribution in ("tilted", "close"):
        card.update(name=card["name"].replace(")", f", {cfg.distribution} distribution)"),
                    distribution=cfg.distribution)
    if wide:  # keys only the wide cards have: standard cards stay as they were
        card.update(name=card["name"].replace(")", ", wide distribution)"), distribution="wide",
                    object_families=family_ranges(),
                    sensor_ranges_per_frame=WIDE_SENSOR_RANGES if cfg.noise else None)
        del card["object_parameter_ranges"]
    return card


def card_markdown(card: dict) -> str:
    lines = [f"# {card['name']}", "",
             f"- split `{card['split']}`, seed {card['seed']}, generator {card['generator_version']}",
             f"- {card['frames']} frames: {card['scenes']} scenes x {card['views_per_scene']} views"
             f" + {card['sequences']} sequences x {card['frames_per_sequence']} frames",
             f"- {card['instances']} annotated instances; {card['frames_without_instances']} frames "
             "without any", f"- mugs with the handle hidden: {card['mugs_with_hidden_handle']} of "
             f"{card['mugs']}", f"- layout: {card['layout']}; depth {card['depth']}; mask {card['mask']}",
             f"- intrinsics: {card['intrinsics']}",
             f"- rendered in {card['generation_seconds']} s with {card['workers']} worker(s) "
             f"({card['frames_per_second']} frames/s, {card['machine']})", "",
             "| category | instances |", "|---|---|"]
    lines += [f"| {c} | {n} |" for c, n in card["instances_per_category"].items()]
    lines += ["", "## Object parameter ranges (m, deg)", ""]
    if "object_families" in card:
        for cat, fams in card["object_families"].items():
            for name, f in fams.items():
                lines.append(f"- {cat} / {name} (weight {f['weight']}): " + _ranges_text(f["ranges"])
                             + "".join(f", {k} {v}" for k, v in f["options"].items()))
    else:
        for cat, ranges in card["object_parameter_ranges"].items():
            lines.append(f"- {cat}: " + _ranges_text(ranges))
    lines += ["", "## Scene parameter ranges", ""]
    lines += [f"- {k}: {v}" for k, v in card["scene_parameter_ranges"].items()]
    if card.get("sequence_parameter_ranges"):
        lines += ["", "## Sequence parameter ranges", ""]
        lines += [f"- {k}: {v}" for k, v in card["sequence_parameter_ranges"].items()]
    lines += ["", "## Depth sensor model", "", f"{card['sensor_model']}", ""]
    if card.get("sensor_ranges_per_frame"):
        lines += ["Drawn per frame: " + _ranges_text(card["sensor_ranges_per_frame"]), ""]
    return "\n".join(lines)


def _ranges_text(ranges: dict) -> str:
    return ", ".join(f"{k} {v[0]}-{v[1]}" for k, v in ranges.items())
