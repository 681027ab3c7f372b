"""``genpose eval``: NOCS metrics of one estimator mode on a dataset, with GT masks.

    genpose eval --data data/synth/test --mode score_scaling --checkpoint models/genpose_light.pt \\
        --out runs/eval_ss --save-results runs/eval_ss/results
    genpose eval --data data/synth/test_seq --mode tracking --checkpoint models/genpose_light.pt --out runs/eval_trk
    genpose eval --score-results published/results --allow-pickle --out runs/published   # others' files
    genpose eval --score-results runs/eval_ss/eval.json --iou nocs --out runs/eval_ss_nocs    # no pickle

Writes ``eval.json`` (tables, latency, one entry per instance with its ground truth, prediction
and errors) and ``eval.md`` (accuracy and mAP tables per category + mean over the six
categories; ``tables``) and PNG plots (``plots``). ``--save-results DIR`` writes one pickled
NOCS results dict per image, the format the NOCS / SPD / GenPose tools read (``nocs_results``);
reading such files back executes pickle, so it needs ``--allow-pickle`` (trusted files only).
``--score-results`` takes such a folder or an ``eval.json``; predictions without a ground truth
count as false positives.

The tracking mode runs the tracking node's tracker (``pose/tracker.py``) over sequence folders
in frame order, with ``--init-mode`` as its from-scratch mode (``runner.run_tracking``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from genpose_ros.arguments import add_checkpoint, add_device, add_threads, apply_threads, parse_overrides, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=["pose", "segmentation"], default="pose",
                   help="pose: NOCS pose metrics; segmentation: mask AP, confusion matrix and "
                        "latency of the Mask R-CNN named by --checkpoint (default "
                        "models/maskrcnn_light.pt; coco: torchvision's COCO model)")
    p.add_argument("--data", help="NOCS-layout split (sequences for --mode tracking)")
    p.add_argument("--mode", default=None,
                   help="estimator mode (genpose_ros.pose.estimator.MODES; default: config/estimator.yaml)")
    add_checkpoint(p)
    p.add_argument("--out", default="runs/eval", help="folder for eval.json, eval.md and the plots")
    p.add_argument("--save-results", default=None, help="write per-image pickled NOCS results dicts here")
    p.add_argument("--score-results", default=None, help="score a folder of NOCS results .pkl files or an eval.json instead")
    p.add_argument("--allow-pickle", action="store_true", help="allow reading pickled results files (trusted only)")
    p.add_argument("--max-frames", type=positive_int, default=None)
    p.add_argument("--init-mode", default=None, help="first-frame mode of --mode tracking (default: the default mode)")
    add_device(p)
    add_threads(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iou", default="exact", choices=["exact", "aabb", "nocs"],
                   help="3D IoU variant: exact, or the NOCS code's number with (nocs) or without (aabb) its axis bug")
    p.add_argument("--masks", default="ground_truth",
                   help="ground_truth, or a segmenter run on the split's colour and depth: "
                        "a Mask R-CNN weights file (e.g. models/maskrcnn_light.pt) or coco; "
                        "missed objects count as failures, extra detections as false positives")
    p.add_argument("--erode-masks", type=mask_erosion, default=None, metavar="PX[:SIDES]",
                   help="ground-truth masks with their outline eroded by PX pixels on SIDES (below, above, right, "
                        "left, comma-separated; default all four): how poses hold up under a predicted mask drawn "
                        "inside the object, e.g. 1:below")
    for flag, text in ABLATIONS.items():
        p.add_argument(flag, action="store_true", help=text)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="sampler overrides, e.g. --set n_steps=10 solver=heun num_candidates=20")
    p.add_argument("--tracker", nargs="*", default=[], metavar="KEY=VALUE",
                   help="with --mode tracking: tracker settings other than tracking_node's defaults "
                        "(config/tracking_node.yaml), e.g. --tracker category_memory=0 doubt_deg=0")


ABLATIONS = {  # switches that leave out one part of the pipeline (store_true flags)
    "--no-depth-cleanup": "with --masks <segmenter>: use its masks untrimmed by depth (ablation of "
                          "config/maskrcnn.yaml's depth_cleanup)",
    "--no-support-plane": "no table plane: poses not fitted to it (config/estimator.yaml support.plane) and, "
                          "with --masks <segmenter>, masks not fitted to it (config/maskrcnn.yaml support_plane)",
    "--no-border-extension": "boxes the image border cuts left as estimated (config/estimator.yaml border)",
    "--no-reject": "with --masks <segmenter>: keep the detections config/estimator.yaml reject drops "
                   "(a pose the verifier rates badly from a low-scoring mask)",
    "--overlapping-masks": "with --masks <segmenter>: score every detection with its own whole mask, as NOCS "
                           "does, instead of the masks pair maskrcnn_node publishes (one detection per pixel)",
    "--no-category-check": "with --masks <segmenter>: its categories as they are, not weighed against the "
                           "category head's reading of the points (config/estimator.yaml category)",
}


def mask_erosion(text: str) -> tuple[int, tuple[int, ...]]:
    """``PX[:SIDES]`` of ``--erode-masks`` -> (pixels, indices into ``pointcloud.OUTLINE_SIDES``)."""
    from genpose_ros.data.pointcloud import OUTLINE_CAP, OUTLINE_SIDES

    px, _, sides = text.partition(":")
    names = [s.strip() for s in sides.split(",")] if sides else list(OUTLINE_SIDES)
    unknown = [n for n in names if n not in OUTLINE_SIDES]
    if not px.strip().isdigit() or not 1 <= int(px) <= OUTLINE_CAP or unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected PX[:SIDES] with PX 1-{OUTLINE_CAP} and SIDES from {', '.join(OUTLINE_SIDES)}, got {text!r}")
    return int(px), tuple(sorted({OUTLINE_SIDES.index(n) for n in names}))


def read_records(path, allow_pickle: bool = False) -> list[dict]:
    """Records of an ``eval.json`` or of a folder of NOCS results .pkl files."""
    from genpose_ros.evaluation import nocs_results, report

    if Path(path).is_file():
        return report.records_from_json(path)
    return nocs_results.read_results(path, allow_pickle=allow_pickle)


def evaluate_estimator(args: argparse.Namespace, out: Path) -> tuple[dict, str]:
    from genpose_ros.config import default_mode, sampler_settings
    from genpose_ros.data.nocs_io import list_frames
    from genpose_ros.data.pointcloud import OUTLINE_SIDES
    from genpose_ros.evaluation import nocs_results, plots, report, runner
    from genpose_ros.paths import pose_checkpoint
    from genpose_ros.pose.estimator import PoseEstimator, check_mode
    from genpose_ros.pose.tracker import TrackerSettings

    if not args.data:
        raise ValueError("--data is required (or --score-results to score existing results files)")
    args.mode = check_mode(args.mode or default_mode())
    if args.erode_masks and (args.masks != "ground_truth" or args.mode == "tracking"):
        raise ValueError("--erode-masks erodes the ground-truth masks of single frames: "
                         "not with --masks <segmenter> or --mode tracking")
    args.init_mode = check_mode(args.init_mode or default_mode())
    overrides = parse_overrides(args.set)
    sampler_settings(args.mode, overrides)  # checked before the model loads
    if args.tracker and args.mode != "tracking":
        raise ValueError("--tracker sets the tracker of --mode tracking")
    tracker_overrides = parse_overrides(args.tracker)
    tracker = TrackerSettings.with_overrides(tracker_overrides)
    ckpt = pose_checkpoint(args.checkpoint)
    apply_threads(args)
    est = PoseEstimator.from_checkpoint(ckpt, device=args.device, seed=args.seed)
    if args.no_category_check:
        est.category_head = None
    elif est.category_note and args.masks != "ground_truth":
        print(est.category_note, file=sys.stderr)
    t0 = time.time()
    support = False if args.no_support_plane else None   # None: config/estimator.yaml's support.plane
    if args.mode != "tracking":   # the split's labels checked before the segmenter loads
        prefixes = list_frames(args.data, labelled=True)[:args.max_frames]
        if not prefixes:
            raise ValueError(f"no frames under {args.data}")
    segmenter = None
    if args.masks != "ground_truth":
        from genpose_ros.segmentation.load import PublishedMasks, load_segmenter, segmenter_options

        options = segmenter_options()   # config/maskrcnn.yaml, as maskrcnn_node runs it
        options["depth_cleanup"] &= not args.no_depth_cleanup
        if args.no_support_plane:
            options["support"] = None
        segmenter = load_segmenter(args.masks, args.device, **options)
        if not args.overlapping_masks:
            segmenter = PublishedMasks(segmenter)
    if args.mode == "tracking":
        res = runner.run_tracking(est, args.data, overrides, args.init_mode, seed=args.seed, settings=tracker,
                                  max_frames=args.max_frames, support=support, border=not args.no_border_extension,
                                  segmenter=segmenter, reject=not args.no_reject)
    else:
        res = runner.run_frames(est, prefixes, args.mode, overrides, seed=args.seed,
                                segmenter=segmenter, erode=args.erode_masks, support=support,
                                border=not args.no_border_extension, reject=not args.no_reject)
        plots.plot_hypotheses(plots.hypothesis_examples(est, prefixes, seed=args.seed), out / "hypotheses.png")
    s = report.summary(res["records"], res["latency_ms"], args.iou)
    s.update(mode=args.mode, checkpoint=str(ckpt), overrides=overrides, wall_s=time.time() - t0,
             masks=args.masks + (" (no depth clean-up)" if args.no_depth_cleanup else "")
             + (" (no support plane)" if args.no_support_plane else "")
             + (" (no border extension)" if args.no_border_extension else "")
             + (" (no reject)" if args.no_reject and args.masks != "ground_truth" else "")
             + (" (no category check)" if args.no_category_check and args.masks != "ground_truth" else "")
             + (" (overlapping masks)" if args.overlapping_masks and args.masks != "ground_truth" else "")
             + (f" eroded {args.erode_masks[0]} px ({', '.join(OUTLINE_SIDES[i] for i in args.erode_masks[1])})"
                if args.erode_masks else ""))
    if tracker_overrides:
        s["tracker"] = tracker_overrides
    if res.get("segment_ms"):
        s["segment_ms_median"] = statistics.median(res["segment_ms"])
        s["rejected"] = res["rejected"]
        s["relabelled"] = res.get("relabelled", 0)
        if "voted" in res:
            s["voted"] = res["voted"]
    plots.plot_error_cdfs({args.mode: res["records"]}, out / "error_cdf.png")
    if args.save_results:
        n = nocs_results.save_results(res["frames"], args.save_results)
        print(f"wrote {n} NOCS results files to {args.save_results}")
    return s, f"genpose eval: {args.mode} on {args.data}"


def evaluate_segmenter(args: argparse.Namespace, out: Path) -> int:
    """``--task segmentation``: seg_eval.json and seg_confusion.png in ``out``."""
    from genpose_ros.segmentation.evaluate import report

    if not args.data:
        raise ValueError("--data is required")
    apply_threads(args)
    report(args.checkpoint or "models/maskrcnn_light.pt", args.data, args.max_frames, args.device,
           json_path=out / "seg_eval.json", confusion_path=out / "seg_confusion.png",
           threads=getattr(args, "threads", None))
    return 0


def run(args: argparse.Namespace) -> int:
    from genpose_ros.evaluation import report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.task == "segmentation":
        return evaluate_segmenter(args, out)
    if args.score_results:
        records = read_records(args.score_results, allow_pickle=args.allow_pickle)
        s, title = report.summary(records, [], args.iou), f"results {args.score_results}"
    else:
        s, title = evaluate_estimator(args, out)
    print(report.write(out, title, s))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genpose eval")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
