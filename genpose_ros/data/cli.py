"""`genpose data generate|show|bench`: make, inspect and time synthetic NOCS-format datasets.

    genpose data generate --out data/synth/train --scenes 600 --views-per-scene 4 --split train --seed 0
    genpose data generate --out data/synth/test_seq --sequences 10 --frames 30 --split test --seed 0
    genpose data generate --out data/synth/test_wide --scenes 50 --views-per-scene 4 --split test \
        --seed 0 --distribution wide
    genpose data show data/synth/train --index 0 --out frame.png
    genpose data bench --frames 40 --objects 8 --workers 2
    genpose data examples --out docs/images [--distribution wide]
"""
from __future__ import annotations

import argparse
import os
import sys

from genpose_ros.arguments import non_negative_int, positive_int
from genpose_ros.data import DISTRIBUTIONS
from genpose_ros.data.camera import D435_MODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    gen = sub.add_parser("generate", help="render a synthetic split in the NOCS layout")
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--scenes", type=non_negative_int, default=0, help="number of table scenes")
    gen.add_argument("--views-per-scene", type=positive_int, default=1, help="camera views per scene")
    gen.add_argument("--sequences", type=non_negative_int, default=0, help="number of tracking sequences")
    gen.add_argument("--frames", type=positive_int, default=30, help="frames per sequence")
    gen.add_argument("--split", choices=["train", "val", "test"], required=True)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--objects", type=int, default=None, help="objects per scene (default 3-8)")
    gen.add_argument("--workers", type=positive_int, default=min(2, os.cpu_count() or 1),
                     help="worker processes (default: min(2, CPUs))")
    gen.add_argument("--no-noise", action="store_true", help="clean depth (no D435 sensor model)")
    gen.add_argument("--no-pickle", action="store_true", help="write JSON labels only")
    gen.add_argument("--resolution", choices=list(D435_MODES), default="640x480",
                     help="the simulated D435's colour mode (and its intrinsics)")
    gen.add_argument("--distribution", choices=DISTRIBUTIONS, default="standard",
                     help="wide: more shape families and sizes, cameras 0.25-1.6 m, more roll and "
                          "elevation, stronger random depth noise, denser clutter; tilted: the standard "
                          "scenes with 80 %% of the objects tilted or lying; close: the standard scenes "
                          "seen from 0.25-0.55 m, objects cut by the border (docs/data.md)")

    show = sub.add_parser("show", help="one PNG with RGB, depth, masks and projected GT boxes")
    show.add_argument("folder")
    show.add_argument("--index", type=int, default=0, help="frame index in sorted order")
    show.add_argument("--out", required=True, help="output PNG")
    show.add_argument("--allow-pickle", action="store_true",
                      help="read NOCS _label.pkl files (only for trusted data)")

    bench = sub.add_parser("bench", help="measure the rendering rate (frames/s)")
    bench.add_argument("--frames", type=positive_int, default=40)
    bench.add_argument("--objects", type=positive_int, default=8)
    bench.add_argument("--workers", type=positive_int, default=min(2, os.cpu_count() or 1))
    bench.add_argument("--write", action="store_true", help="also write the frames (to a temp dir)")
    ex = sub.add_parser("examples", help="example PNGs: one per category and a sequence strip")
    ex.add_argument("--out", default="docs/images", help="output folder")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--distribution", choices=DISTRIBUTIONS, default="standard",
                    help="wide / tilted / close: <distribution>_<category>.png of that distribution")
    parser.set_defaults(_data_parser=parser)


def run(args) -> int:
    if args.data_command == "generate":
        from genpose_ros.data.generate import GenerateConfig, generate
        cfg = GenerateConfig(out=args.out, split=args.split, seed=args.seed, scenes=args.scenes,
                             views_per_scene=args.views_per_scene, sequences=args.sequences,
                             frames=args.frames, noise=not args.no_noise,
                             write_pickle=not args.no_pickle, n_objects=args.objects,
                             distribution=args.distribution, resolution=args.resolution)
        try:
            card = generate(cfg, workers=max(1, args.workers))
        except ValueError as exc:
            print(f"genpose data generate: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {card['frames']} frames, {card['instances']} instances to {args.out} "
              f"({card['frames_per_second']} frames/s)")
        return 0
    if args.data_command == "show":
        from genpose_ros.data.nocs_io import list_frames, read_frame
        from genpose_ros.data.visualize import frame_overview
        import cv2
        try:
            prefixes = list_frames(args.folder)
        except FileNotFoundError as exc:
            print(f"genpose data show: {exc}", file=sys.stderr)
            return 2
        if not prefixes:
            print(f"genpose data show: no *_color.png frames under {args.folder}", file=sys.stderr)
            return 2
        if not 0 <= args.index < len(prefixes):
            print(f"genpose data show: index {args.index} out of range 0..{len(prefixes) - 1}",
                  file=sys.stderr)
            return 2
        frame = read_frame(prefixes[args.index], allow_pickle=args.allow_pickle)
        img = frame_overview(frame, title=os.path.relpath(prefixes[args.index], args.folder))
        if not cv2.imwrite(args.out, cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
            print(f"genpose data show: cannot write {args.out}", file=sys.stderr)
            return 2
        print(f"wrote {args.out} ({len(frame.instances)} instances)")
        return 0
    if args.data_command == "bench":
        from genpose_ros.data.bench import render_rate
        res = render_rate(args.frames, args.objects, max(1, args.workers), args.write)
        print(f"{res['frames']} frames of 640x480, {args.objects} objects, {res['workers']} "
              f"worker(s): {res['frames_per_second']:.2f} frames/s "
              f"({res['cpu_seconds_per_frame'] * 1000:.0f} ms CPU per frame)")
        return 0
    if args.data_command == "examples":
        from genpose_ros.data.examples import write_examples
        for path in write_examples(args.out, args.seed, args.distribution):
            print(f"wrote {path}")
        return 0
    args._data_parser.print_help()
    return 2
