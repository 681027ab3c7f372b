"""The light Mask R-CNN: model, safe checkpoints, training, prediction and mask AP."""
from dataclasses import replace
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from genpose_ros import CATEGORIES
from genpose_ros.segmentation.model import (TINY_CONFIG, CheckpointError, Segmenter, build_model,
                                      drop_duplicates, instance_image, load_checkpoint, save_checkpoint)
from genpose_ros.segmentation.evaluate import MaskAPAccumulator, average_precision, mask_iou
from genpose_ros.segmentation.data import SegmentationDataset, frame_targets
from genpose_ros.segmentation.train import output_paths, train

# Small enough for a few seconds per training run, big enough to learn one scene.
TEST_CONFIG = replace(TINY_CONFIG, min_size=96, max_size=128, train_min_sizes=(96,))


def shapes_frame(seed: int = 0, h: int = 96, w: int = 128):
    """A bowl-coloured ellipse and a laptop-coloured rectangle on a noisy background, both
    standing 10 cm in front of a wall 1 m away."""
    rng = np.random.default_rng(seed)
    color = (rng.random((h, w, 3)) * 40 + 60).astype(np.uint8)
    mask = np.zeros((h, w), np.uint16)
    cv2.ellipse(mask, (38, 48), (18, 13), 0, 0, 360, 1, -1)
    cv2.rectangle(mask, (75, 22), (112, 76), 2, -1)
    color[mask == 1] = (220, 60, 40)
    color[mask == 2] = (40, 80, 220)
    instances = [SimpleNamespace(instance_id=1, category="bowl"),
                 SimpleNamespace(instance_id=2, category="laptop")]
    depth = np.where(mask > 0, 900, 1000).astype(np.uint16)
    return SimpleNamespace(color=color, depth=depth, mask=mask, instances=instances,
                           intrinsics=SimpleNamespace(fx=100.0))


@pytest.fixture(scope="module")
def overfit_checkpoint(tmp_path_factory):
    """A tiny Mask R-CNN trained from scratch on one synthetic image (the real training loop)."""
    torch.set_num_threads(1)   # fastest on a busy 2-core machine
    out = tmp_path_factory.mktemp("seg")
    # 200 steps: 100 were enough on one CPU and too few on another (other float rounding)
    return train([shapes_frame()], out, steps=200, batch_size=1, lr=4e-3, cfg=TEST_CONFIG,
                 save_every=1000, progress=False)


def test_overfit_finds_both_objects(overfit_checkpoint):
    frame = shapes_frame()
    seg = Segmenter.from_checkpoint(overfit_checkpoint, score_threshold=0.3)
    dets = seg.predict(frame.color, frame.depth, fx=100.0)
    best = {}
    for d in dets:
        assert d.mask.shape == frame.mask.shape and d.mask.dtype == bool
        gt = frame.mask == (1 if d.category == "bowl" else 2)
        iou = (d.mask & gt).sum() / max((d.mask | gt).sum(), 1)
        best[d.category] = max(best.get(d.category, 0.0), iou)
    assert best.get("bowl", 0) > 0.5, f"detections: {[(d.category, d.score) for d in dets]}"
    assert best.get("laptop", 0) > 0.5, f"detections: {[(d.category, d.score) for d in dets]}"
    assert all(c in CATEGORIES for c in best)


def test_training_resumes_from_state(overfit_checkpoint, tmp_path):
    weights, state = output_paths(overfit_checkpoint.parent)
    assert weights == overfit_checkpoint and state.is_file()
    out = train([shapes_frame()], tmp_path / "more.pt", steps=202, batch_size=1, lr=1e-3,
                cfg=TEST_CONFIG, resume=state, progress=False)
    _, _, ckpt = load_checkpoint(out)
    assert ckpt["step"] == 202
    assert "optimizer" not in ckpt                      # the shipped file is weights only
    assert all(v.dtype != torch.float32 for v in ckpt["model"].values())   # fp16 floats
    adam = load_checkpoint(output_paths(tmp_path / "more.pt")[1])[2]["optimizer"]["state"]
    assert {int(v["step"]) for v in adam.values()} == {202}   # the optimizer went on, not restarted


def test_checkpoint_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    model = build_model(TEST_CONFIG).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, TEST_CONFIG)
    seg = Segmenter.from_checkpoint(path, score_threshold=0.0)
    ref = Segmenter(model, TEST_CONFIG, score_threshold=0.0)
    rgb = shapes_frame().color
    a, b = seg.predict(rgb), ref.predict(rgb)
    assert len(a) == len(b) and [d.category for d in a] == [d.category for d in b]
    assert np.allclose([d.score for d in a], [d.score for d in b], atol=1e-5)

    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt.pt.*not a valid torch checkpoint"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": model.state_dict()}, foreign)
    with pytest.raises(CheckpointError, match="not a genpose_ros Mask R-CNN checkpoint"):
        load_checkpoint(foreign)
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["fpn_channels"] = 48                # weights no longer fit the config
    mismatched = tmp_path / "mismatched.pt"
    torch.save(ckpt, mismatched)
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_checkpoint(mismatched)


def test_predict_rejects_bad_images():
    seg = Segmenter(build_model(TEST_CONFIG), TEST_CONFIG)
    with pytest.raises(ValueError, match="uint8"):
        seg.predict(np.zeros((96, 128, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        seg.predict(np.zeros((96, 128), np.uint8))
    with pytest.raises(ValueError, match="too small"):
        seg.predict(np.zeros((4, 4, 3), np.uint8))


def test_dataset_targets_and_flip():
    frame = shapes_frame()
    masks, labels, boxes = frame_targets(frame.mask, frame.instances)
    assert labels.tolist() == [CATEGORIES.index("bowl") + 1, CATEGORIES.index("laptop") + 1]
    assert boxes[1].tolist() == [75, 22, 113, 77]
    assert masks.shape == (2, 96, 128)
    tiny = SimpleNamespace(color=frame.color, mask=(frame.mask == 1).astype(np.uint16) * 3,
                           instances=[SimpleNamespace(instance_id=3, category="mug")])
    tiny.mask[:] = 0
    tiny.mask[0, :5] = 3                                 # 5 pixels: too small to be a target
    assert len(frame_targets(tiny.mask, tiny.instances)[1]) == 0
    with pytest.raises(ValueError, match="unknown category 'cup'"):
        frame_targets(frame.mask, [SimpleNamespace(instance_id=1, category="cup")])
    ds = SegmentationDataset([frame] * 8, short_side=48, augment=True, seed=1)
    for i in range(8):
        image, target = ds[i]
        assert image.shape == (8, 48, 64) and 0 <= image[:3].min() and image[:3].max() <= 1
        m = target["masks"][0].numpy().astype(bool)
        x0, y0, x1, y1 = target["boxes"][0].tolist()
        ys, xs = np.nonzero(m)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)


def test_instance_image_prefers_first_detection():
    a = np.zeros((4, 4), bool); a[:2] = True
    b = np.zeros((4, 4), bool); b[1:] = True
    dets = [SimpleNamespace(mask=a), SimpleNamespace(mask=b)]
    ids, kept = instance_image(dets, (4, 4))
    assert ids[:2].tolist() == [[1] * 4] * 2 and ids[2:].tolist() == [[2] * 4] * 2 and kept == dets
    ids, kept = instance_image(dets, (4, 4), max_overlap=0.4)   # b: 1 of 3 rows under a
    assert ids[2:].tolist() == [[2] * 4] * 2 and kept == dets
    ids, kept = instance_image(dets, (4, 4), max_overlap=0.3)
    assert ids.tolist() == [[1] * 4] * 2 + [[0] * 4] * 2 and kept == dets[:1]


def test_drop_duplicates_keeps_masks_mostly_outside_the_better_ones():
    m = np.zeros((5, 10, 10), bool)
    m[0, :, :5] = True            # the best
    m[1, :, 1:5] = True           # all inside it: dropped
    m[2, :, 3:8] = True           # 2 of 5 columns inside it: kept
    m[3, :, 5:9] = True           # 3 of 4 columns inside 2 (0 and 2 together count)
    assert drop_duplicates(m, 0.8) == [0, 2, 3, 4]    # 4: empty, kept
    assert drop_duplicates(m, 0.7) == [0, 2, 4]
    assert drop_duplicates(m, 1.0) == [0, 1, 2, 3, 4]


def test_shipped_segmenter_object_seen_again_under_another_class_is_left_out_of_the_masks_pair():
    """A simulated frame (seed 8) where the shipped model finds a mug and, with a lower score, the
    same mug as a camera: painted one per pixel the camera keeps a sliver of its mask; with
    config/maskrcnn.yaml's duplicate_overlap it is left out and the pair holds the six objects."""
    from genpose_ros.config import find_config, load_config
    from genpose_ros.data.realsense import SimSource
    from genpose_ros.paths import package_share
    from genpose_ros.segmentation.load import PublishedMasks, load_segmenter, segmenter_options

    path = package_share() / "models" / "maskrcnn_light.pt"
    if not path.is_file():
        pytest.skip("no shipped Mask R-CNN weights")
    torch.set_num_threads(1)
    capture = SimSource(8, 0, 1).read()
    gt = capture.ground_truth
    segmenter = load_segmenter(str(path), **segmenter_options())
    dets = segmenter.predict(capture.color, capture.depth_mm, gt.intrinsics.fx)
    ids, kept = instance_image(dets, gt.mask.shape)
    assert len(kept) == len(dets) == len(gt.instances) + 1
    share = [np.count_nonzero(ids == k + 1) / np.count_nonzero(d.mask) for k, d in enumerate(dets)]
    sliver = int(np.argmin(share))
    assert share[sliver] < 0.05 and min(np.delete(share, sliver)) > 0.5, share
    overlap = load_config(find_config("maskrcnn.yaml"))["/**/maskrcnn_node"]["ros__parameters"]["duplicate_overlap"]
    ids, kept = instance_image(dets, gt.mask.shape, overlap)
    assert kept == dets[:sliver] + dets[sliver + 1:]
    assert sorted(d.category for d in kept) == sorted(i.category for i in gt.instances)
    assert dets[sliver].category not in [i.category for i in gt.instances if (gt.mask == i.instance_id)[
        dets[sliver].mask].any()]
    # `genpose eval --masks` scores these published masks: the same detections, one per pixel
    published = PublishedMasks(segmenter).predict(capture.color, capture.depth_mm, gt.intrinsics.fx)
    assert [d.category for d in published] == [d.category for d in kept]
    assert all((d.mask == (ids == k + 1)).all() for k, d in enumerate(published))


def test_average_precision_by_hand():
    # 2 objects; detections: a hit (0.9) then a false alarm (0.8): precision 1 up to recall 0.5.
    assert average_precision(np.array([True, False]), np.array([0.9, 0.8]), 2) == \
        pytest.approx(51 / 101)
    # false alarm ranked first: precision 0.5 at recall 0.5
    assert average_precision(np.array([False, True]), np.array([0.9, 0.8]), 2) == \
        pytest.approx(0.5 * 51 / 101)
    assert average_precision(np.zeros(0, bool), np.zeros(0), 3) == 0.0


def test_mask_ap_table():
    m = np.zeros((3, 20, 20), bool)
    m[0, :10, :10] = True
    m[1, 10:, 10:] = True
    m[2, :10, 10:] = True
    shifted = np.roll(m[1], 3, axis=1)           # IoU 49/91 = 0.54 with m[1]
    assert mask_iou(shifted[None], m[1][None])[0, 0] == pytest.approx(70 / 130)
    acc = MaskAPAccumulator()
    acc.add([m[0], shifted, m[2]], ["bowl", "mug", "can"], [0.9, 0.8, 0.7],
            [m[0], m[1]], ["bowl", "mug"])
    t = acc.table()
    assert t["bowl"]["AP"] == pytest.approx(1.0)
    assert t["mug"]["AP50"] == pytest.approx(1.0) and t["mug"]["AP75"] == 0.0
    assert t["mug"]["AP"] == pytest.approx(0.1)   # only the 0.50 threshold of ten matches
    assert np.isnan(t["can"]["AP"])               # no ground truth: left out of the mean
    assert t["mean"]["AP"] == pytest.approx((1.0 + 0.1) / 2)
    with pytest.raises(ValueError, match="unknown category"):
        acc.add([m[0]], ["cup"], [0.5], [], [])


def test_eval_command_on_nocs_folder(overfit_checkpoint, tmp_path):
    """`python -m genpose_ros.segmentation.evaluate` on frames written in the NOCS layout."""
    import json

    from genpose_ros.data.camera import Intrinsics
    from genpose_ros.data.frame import Frame, InstanceGT
    from genpose_ros.data.nocs_io import write_frame
    from genpose_ros.segmentation.evaluate import main

    f = shapes_frame()
    gt = [InstanceGT(i.instance_id, i.category, np.eye(3), np.array([0, 0, 0.5]),
                     np.full(3, 0.1)) for i in f.instances]
    frame = Frame(color=f.color, depth=f.depth, mask=f.mask,
                  intrinsics=Intrinsics(128, 96, 120.0, 120.0, 64.0, 48.0), instances=gt)
    for k in range(2):
        write_frame(tmp_path / "test" / f"{k:05d}", 0, frame, write_pickle=False)
    out = tmp_path / "eval.json"
    assert main(["--weights", str(overfit_checkpoint), "--data", str(tmp_path / "test"),
                 "--json", str(out), "--threads", "1", "--latency-runs", "2"]) == 0
    table = json.loads(out.read_text())
    assert table["n_images"] == 2 and table["bowl"]["n_gt"] == 2 and table["mug"]["n_gt"] == 0
    assert table["bowl"]["AP50"] >= 0.5 and table["laptop"]["AP50"] >= 0.5, table
    assert table["latency"]["image"] == "128x96" and table["latency"]["median_s"] > 0
    # the same through the genpose tool, with the confusion matrix beside the numbers
    from genpose_ros import cli

    assert cli.main(["eval", "--task", "segmentation", "--checkpoint", str(overfit_checkpoint),
                     "--data", str(tmp_path / "test"), "--out", str(tmp_path / "cli"),
                     "--threads", "1"]) == 0
    again = json.loads((tmp_path / "cli" / "seg_eval.json").read_text())
    assert again["bowl"]["AP"] == table["bowl"]["AP"]
    counts = np.array(again["confusion"]["counts"])
    assert counts[CATEGORIES.index("bowl"), CATEGORIES.index("bowl")] == 2
    # every object is 0.5 m away: one distance bin, its found objects the confusion's diagonal
    found = again["confusion"]["found_by_distance"]
    assert [r["range_m"] for r in found] == [[0.5, 0.8]] and found[0]["objects"] == 4
    assert found[0]["found"] == sum(counts[k, k] for k in range(len(CATEGORIES)))
    assert (tmp_path / "cli" / "seg_confusion.png").stat().st_size > 1000


def test_shipped_weights_segment_a_rendered_scene():
    """models/maskrcnn_light.pt finds objects of the right category in a fresh synthetic scene."""
    from genpose_ros.data.render import Renderer
    from genpose_ros.data.scenes import sample_camera_pose, sample_scene
    from genpose_ros.paths import package_share

    path = package_share() / "models" / "maskrcnn_light.pt"
    if not path.is_file():
        pytest.skip("no shipped Mask R-CNN weights")
    torch.set_num_threads(1)
    seg = Segmenter.from_checkpoint(path, score_threshold=0.5)
    assert seg.cfg.min_size <= 320 and path.stat().st_size < 40e6   # the latency-checked size
    hits, n_gt = 0, 0
    for seed in (11, 12):
        rng = np.random.default_rng(seed)
        scene = sample_scene(rng, n_objects=4)
        frame = Renderer().render(scene, sample_camera_pose(rng, scene), rng)
        dets = seg.predict(frame.color, frame.depth, fx=frame.intrinsics.fx)
        n_gt += len(frame.instances)
        for inst in frame.instances:
            gt = frame.mask == inst.instance_id
            ious = [(d.mask & gt).sum() / (d.mask | gt).sum() for d in dets
                    if d.category == inst.category]
            hits += bool(ious) and max(ious) >= 0.5
    assert hits >= max(1, n_gt // 4), f"{hits} of {n_gt} objects found"


def test_nearest_resize_keeps_the_colour_pixel_grid():
    """Depth and training masks shrunk by ``exact`` nearest neighbour lie where the area-averaged
    colour does; OpenCV's floor grid (checkpoints before version 3) puts them right of and below it."""
    from genpose_ros.segmentation.model import resize_nearest

    mask = np.zeros((480, 640), np.uint8)
    mask[100:221, 150:331] = 1
    size = (427, 320)
    colour = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA)

    def centroid(m):
        ys, xs = np.nonzero(m >= 0.5)
        return np.array([xs.mean(), ys.mean()])

    exact = centroid(resize_nearest(mask, size, "exact")) - centroid(colour)
    floor = centroid(resize_nearest(mask, size, "floor")) - centroid(colour)
    assert np.abs(exact).max() < 0.2, exact
    assert (floor > 0.25).all(), floor
    with pytest.raises(ValueError, match="unknown nearest-neighbour resize 'round'"):
        resize_nearest(mask, size, "round")


def test_paste_back_moves_masks_by_the_checkpoint_offset():
    from genpose_ros.segmentation.model import paste_back

    soft = torch.zeros(2, 1, 64, 80)
    soft[0, 0, 20:40, 30:50] = 1.0
    soft[1, 0, 5:15, 10:60] = 0.7
    plain = torch.nn.functional.interpolate(soft, size=(96, 120), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(paste_back(soft, (96, 120)), plain, atol=1e-5)
    moved = paste_back(soft, (64, 80), (2.0, 1.0))       # masks 2 px right and 1 px down of the objects
    assert torch.allclose(moved[:, 10:50, 5:70], soft[:, 0, 11:51, 7:72], atol=1e-5)
    assert paste_back(soft[:0], (96, 120)).shape == (0, 96, 120)




def test_predict_computes_what_the_model_computes():
    """``Segmenter`` runs a copy of the model with its batch norms folded, skips the model's
    resize to the same size and pastes the masks itself: the same detections as the model's
    own forward followed by ``paste_back``, and the model handed to it is left as it was."""
    from genpose_ros.segmentation.model import paste_back, resize_input, stack_input

    torch.manual_seed(0)
    model = build_model(TEST_CONFIG)
    for m in model.modules():             # batch norms with statistics of their own
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.weight.data.uniform_(0.5, 1.5)
    model.eval()
    seg = Segmenter(model, TEST_CONFIG, score_threshold=0.0, depth_cleanup=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in seg.model.backbone.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    frame = shapes_frame(h=120, w=160)                  # shrunk to the network's 96 x 128
    h, w = frame.color.shape[:2]
    got = seg.predict(frame.color, frame.depth, fx=100.0)

    scale = min(TEST_CONFIG.min_size / min(h, w), TEST_CONFIG.max_size / max(h, w))
    rgb_s, depth_s = resize_input(frame.color, frame.depth, scale, TEST_CONFIG.nearest)
    model.roi_heads.score_thresh = 1e-3
    with torch.no_grad():
        ref = model([stack_input(rgb_s, depth_s, fx=100.0 * scale, mode=TEST_CONFIG.input)])[0]
    masks = paste_back(ref["masks"], (h, w)).numpy() >= 0.5
    assert len(got) == len(ref["scores"]) > 0
    assert np.allclose([d.score for d in got], ref["scores"].numpy(), atol=1e-4)
    assert [d.category for d in got] == [CATEGORIES[int(c) - 1] for c in ref["labels"]]
    agree = [(d.mask == m).mean() for d, m in zip(got, masks)]
    assert min(agree) > 0.999, agree
    small = shapes_frame(h=72, w=96)                    # enlarged to the network's input, masks back at 96 x 72
    dets = seg.predict(small.color, small.depth, fx=100.0)
    assert dets and all(d.mask.shape == (72, 96) for d in dets)
    assert all(0 <= d.box[0] <= d.box[2] <= 96.5 and 0 <= d.box[1] <= d.box[3] <= 72.5 for d in dets)


def test_checkpoints_before_version_3_read_the_floor_grid_and_its_offset(tmp_path):
    from genpose_ros.segmentation.model import LEGACY_MASK_OFFSET_PX

    model = build_model(TEST_CONFIG).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, TEST_CONFIG)
    cfg = load_checkpoint(path)[1]
    assert cfg.nearest == "exact" and cfg.mask_offset_px == (0.0, 0.0)
    ckpt = torch.load(path, weights_only=True)
    ckpt["version"] = 2
    del ckpt["config"]["nearest"], ckpt["config"]["mask_offset_px"]
    torch.save(ckpt, tmp_path / "v2.pt")
    cfg = load_checkpoint(tmp_path / "v2.pt")[1]
    assert cfg.nearest == "floor" and cfg.mask_offset_px == tuple(LEGACY_MASK_OFFSET_PX)
    ckpt["version"] = 3
    ckpt["config"].update(nearest="round", mask_offset_px=[0.0, 0.0])
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt: bad model config.*nearest 'round'"):
        load_checkpoint(tmp_path / "bad.pt")
