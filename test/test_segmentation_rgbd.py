"""The RGB-D segmenter's inputs, domain randomisation, weight transfer, confusion and COCO path."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from genpose_ros import CATEGORIES
from genpose_ros.segmentation import augment
from genpose_ros.segmentation.evaluate import Confusion, format_found
from genpose_ros.segmentation.inputs import depth_features, stack_input
from genpose_ros.segmentation.model import (TINY_CONFIG, CheckpointError, Segmenter, build_model,
                                            set_test_size, transfer_weights)

RGBD = replace(TINY_CONFIG, min_size=96, max_size=128, train_min_sizes=(96,))
RGB = replace(RGBD, input="rgb")
FX = 500.0


def plane_depth(h=96, w=128, slope=0.5, z0=1000.0):
    """A plane rising away from the camera along the image y axis: z = z0 (1 + slope v / f)
    in mm at pixel row v (measured from the centre), i.e. dz/dY = slope in camera coordinates
    near the centre."""
    v = np.arange(h, dtype=np.float64)[:, None] - h / 2
    z = z0 / (1.0 - slope * v / FX)
    return np.repeat(z, w, axis=1).astype(np.uint16)


def test_depth_features_of_a_tilted_plane():
    depth = plane_depth()
    depth[10:14, 20:24] = 0                                   # a hole
    f = depth_features(depth, FX)
    assert f.shape == (5, 96, 128) and f.dtype == np.float32
    assert (f[:, 10:14, 20:24] == 0).all() and (f[0, 40:50, 60:70] == 1).all()
    assert np.allclose(f[1, 48, 64], depth[48, 64] / 2000.0, atol=1e-3)
    # z = z0 + slope * Y (camera Y down)  ->  normal ~ (0, slope, -1) / norm, facing the camera
    n = f[2:, 40:56, 50:80].reshape(3, -1).mean(1)
    expected = np.array([0.0, 0.5, -1.0]) / np.linalg.norm([0.0, 0.5, -1.0])
    assert np.allclose(n, expected, atol=0.05), n


def test_stack_input_channels_and_colour_only_fallback():
    rgb = np.full((96, 128, 3), 255, np.uint8)
    x = stack_input(rgb, plane_depth(), FX, mode="rgbd")
    assert x.shape == (8, 96, 128) and torch.allclose(x[:3], torch.ones(3, 96, 128))
    assert (stack_input(rgb, None, FX, mode="rgbd")[3:] == 0).all()
    assert stack_input(rgb, plane_depth(), FX, mode="rgb").shape == (3, 96, 128)
    with pytest.raises(ValueError, match="depth image is 64x48 px but the colour image is 128x96"):
        stack_input(rgb, np.zeros((48, 64), np.uint16), FX)
    with pytest.raises(ValueError, match="uint16 depth in millimetres"):
        stack_input(rgb, np.zeros((96, 128), np.float32), FX)
    with pytest.raises(ValueError, match="unknown segmenter input 'rgbx'"):
        stack_input(rgb, None, FX, mode="rgbx")


def test_rgb_weights_into_an_rgbd_model_give_the_same_detections():
    torch.manual_seed(0)
    rgb_model = build_model(RGB).eval()
    rgbd_model = build_model(RGBD)
    assert transfer_weights(rgbd_model, rgb_model.state_dict()) == []
    stem = rgbd_model.backbone.body["0"][0].weight
    assert stem.shape[1] == 8 and (stem[:, 3:] == 0).all()
    rng = np.random.default_rng(0)
    image = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    a = Segmenter(rgb_model, RGB, score_threshold=0.0).predict(image)
    b = Segmenter(rgbd_model, RGBD, score_threshold=0.0).predict(image, plane_depth(), FX)
    assert len(a) == len(b) > 0
    assert all(x.category == y.category and abs(x.score - y.score) < 1e-5 for x, y in zip(a, b))
    # ... and a model trained on depth does see it: other weights -> other output
    with torch.no_grad():
        stem[:, 3:] = 1.0
    c = Segmenter(rgbd_model, RGBD, score_threshold=0.0).predict(image, plane_depth(), FX)
    assert [round(x.score, 4) for x in c] != [round(x.score, 4) for x in b]


def test_depth_cleanup_drops_the_background_caught_by_a_mask():
    torch.manual_seed(0)
    model = build_model(RGB).eval()                    # colour only: depth is used for the clean-up alone
    model.roi_heads.mask_predictor.mask_fcn_logits.bias.data[:] = 20.0   # masks: whole boxes
    seg = Segmenter(model, RGB, score_threshold=0.0)
    plain = Segmenter(model, RGB, score_threshold=0.0, depth_cleanup=False)
    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    raw = plain.predict(rgb)
    assert raw
    cols = np.nonzero(raw[0].mask.any(axis=0))[0]
    edge = cols[0] + max(1, len(cols) // 8)            # the first mask spills 1/8 over a wall
    depth = np.full((96, 128), 700, np.uint16)
    depth[:, :edge] = 1500
    cleaned = seg.predict(rgb, depth)
    assert len(raw) == len(cleaned)
    for r, c in zip(raw, cleaned):
        wall, obj = int(r.mask[:, :edge].sum()), int(r.mask[:, edge:].sum())
        keep_wall, keep_obj = wall >= 0.2 * max(wall, obj), obj >= 0.2 * max(wall, obj)
        assert (c.mask[:, :edge] == (r.mask[:, :edge] & keep_wall)).all()
        assert (c.mask[:, edge:] == (r.mask[:, edge:] & keep_obj)).all()
    assert raw[0].mask[:, :edge].any() and not cleaned[0].mask[:, :edge].any()
    assert (cleaned[0].mask[:, edge:] == raw[0].mask[:, edge:]).all()
    # without a depth image the masks are the network's own
    assert all((a.mask == b.mask).all() for a, b in zip(seg.predict(rgb), raw))


def test_a_detection_without_depth_under_it_is_left_out():
    """``min_depth_pixels``: a mask over pixels the depth does not see (background beyond its
    range) has nothing to pose; with no depth image at all every detection stays."""
    torch.manual_seed(0)
    model = build_model(RGB).eval()
    model.roi_heads.mask_predictor.mask_fcn_logits.bias.data[:] = 20.0   # masks: whole boxes
    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    raw = Segmenter(model, RGB, score_threshold=0.0, depth_cleanup=False).predict(rgb)
    assert len(raw) >= 2
    depth = np.full((96, 128), 700, np.uint16)
    depth[raw[0].mask & ~raw[1].mask] = 0                # the first one's pixels but the second's: no depth
    seen = int(np.count_nonzero(raw[0].mask & (depth > 0)))
    for need, kept in ((seen + 1, False), (seen, True), (0, True)):
        seg = Segmenter(model, RGB, score_threshold=0.0, depth_cleanup=False, min_depth_pixels=need)
        out = seg.predict(rgb, depth)
        assert len(out) == len(raw) - (not kept)
        assert any(np.array_equal(d.mask, raw[0].mask) for d in out) == kept
        assert len(seg.predict(rgb)) == len(raw)          # no depth image: nothing to judge by


def test_segmenter_rejects_depth_of_another_size():
    seg = Segmenter(build_model(RGBD), RGBD)
    with pytest.raises(ValueError, match="align depth to colour"):
        seg.predict(np.zeros((96, 128, 3), np.uint8), np.zeros((48, 64), np.uint16))


def test_randomize_keeps_geometry_consistent():
    rng = np.random.default_rng(1)
    h, w = 60, 80
    rgb = np.full((h, w, 3), 128, np.uint8)
    mask = np.zeros((h, w), np.uint16)
    mask[10:30, 5:25] = 4
    depth = np.where(mask > 0, 800, 1500).astype(np.uint16)
    flips = 0
    for _ in range(40):
        c, d, m = augment.randomize(rgb, depth, mask, rng)
        assert c.shape == rgb.shape and c.dtype == np.uint8 and m.dtype == np.uint16
        assert np.array_equal(np.unique(m), [0, 4]) and (m == 4).sum() == 400
        flipped = m[15, w - 10] == 4
        flips += flipped
        if d is not None:
            assert d.shape == depth.shape and d.dtype == np.uint16
            obj = d[m == 4]                      # depth stays with its object, up to noise/holes
            assert np.all((obj == 0) | (np.abs(obj.astype(int) - 800) < 60))
    assert 5 < flips < 35                        # left-right flips happen about half the time


def test_confusion_counts_by_hand():
    def box(y0, x0, size=10):
        m = np.zeros((40, 40), bool)
        m[y0:y0 + size, x0:x0 + size] = True
        return m
    gt = [box(0, 0), box(0, 20), box(20, 0)]
    gt_cats = ["bottle", "can", "mug"]
    preds = [box(0, 0), box(0, 20), box(30, 30), box(20, 0)]
    pred_cats = ["bottle", "bowl", "laptop", "mug"]
    scores = [0.9, 0.8, 0.7, 0.3]                   # the mug is found below the threshold
    conf = Confusion(score_threshold=0.5)
    conf.add(preds, pred_cats, scores, gt, gt_cats)
    c = conf.counts
    row, col = conf.rows.index, conf.cols.index
    assert c[row("bottle"), col("bottle")] == 1
    assert c[row("can"), col("bowl")] == 1          # a can labelled bowl
    assert c[row("mug"), col("missed")] == 1
    assert c[row("background"), col("laptop")] == 1  # a detection of nothing
    assert c.sum() == 4
    conf.add(preds, pred_cats, [0.1] * 4, gt, gt_cats)       # nothing above the threshold
    assert c[row("bottle"), col("missed")] == 1 and c.sum() == 7
    conf.add([], [], [], [], [])                              # an empty frame
    assert c.sum() == 7
    # found by distance: only frames with distances count; found = own category
    conf.add(preds, pred_cats, scores, gt, gt_cats, gt_distances=[0.4, 1.3, 1.7])
    assert conf.found_by_distance() == [
        {"range_m": [0.0, 0.5], "objects": 1, "found": 1},            # the bottle
        {"range_m": [1.2, 1.6], "objects": 1, "found": 0},            # the can labelled bowl
        {"range_m": [1.6, None], "objects": 1, "found": 0}]   # the mug below threshold
    # found by border: every object above touches the image's edge; two inside it do not
    conf.add([box(15, 15)], ["bottle"], [0.9], [box(15, 15), box(15, 28)], ["bottle", "bowl"])
    assert conf.found_by_border() == [{"where": "whole in view", "objects": 2, "found": 1},
                                      {"where": "cut by the border", "objects": 9, "found": 2}]
    assert format_found(conf.found_by_border()).splitlines()[2:] == [
        "| whole in view | 2 | 1 | 50.0 |", "| cut by the border | 9 | 2 | 22.2 |"]


def test_coco_class_map_and_nocs_initialisation():
    from genpose_ros.segmentation import coco

    names = coco.coco_categories()
    assert coco.coco_label_map(names) == {44: "bottle", 47: "mug", 51: "bowl", 73: "laptop"}
    assert coco.NOT_IN_COCO == ("camera", "can")
    torch.manual_seed(0)
    coco_state = build_model(coco.COCO_CONFIG).state_dict()   # same architecture, built here
    state = coco.nocs_init_state(coco_state, names)
    logits = "roi_heads.mask_predictor.mask_fcn_logits.weight"
    boxes = "roi_heads.box_predictor.bbox_pred.weight"
    assert state[logits].shape[0] == 7 and state[boxes].shape[0] == 28
    mug, cup = CATEGORIES.index("mug") + 1, 47
    assert torch.equal(state[logits][mug], coco_state[logits][cup])
    assert torch.equal(state[boxes][4 * mug:4 * mug + 4], coco_state[boxes][4 * cup:4 * cup + 4])
    assert not torch.equal(state[logits][CATEGORIES.index("can") + 1], coco_state[logits][0])
    target = build_model(replace(coco.COCO_CONFIG, num_classes=7, input="rgbd"))
    assert transfer_weights(target, state) == []


def test_coco_segmenter_reports_only_nocs_categories():
    from genpose_ros.segmentation import coco

    torch.manual_seed(0)
    state = build_model(coco.COCO_CONFIG).state_dict()
    # A classifier that calls every box a person (COCO 1) or a cup (COCO 47), equally likely.
    state["roi_heads.box_predictor.cls_score.weight"].zero_()
    bias = state["roi_heads.box_predictor.cls_score.bias"]
    bias.zero_()
    bias[[1, 47]] = 6.0
    seg = coco.coco_segmenter(state=state, score_threshold=0.0)
    seg.cfg = replace(seg.cfg, min_size=96, max_size=128)     # small and fast for the test
    set_test_size(seg.model, seg.cfg)
    rng = np.random.default_rng(0)
    image = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    dets = seg.predict(image)
    assert {d.category for d in dets} == {"mug"}                   # cups, reported as mugs
    with torch.no_grad():
        raw = seg.model([stack_input(image, None, mode="rgb")])[0]["labels"].tolist()
    assert set(raw) == {1, 47}
    assert len(dets) == raw.count(47) and len(raw) > len(dets)     # persons dropped


def test_coco_weights_without_internet_is_one_clear_error(tmp_path, monkeypatch):
    from genpose_ros.segmentation import coco
    from genpose_ros.segmentation.load import load_segmenter

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")    # nothing listens there
    with pytest.raises(CheckpointError) as err:
        coco.load_coco_state()
    text = str(err.value)
    assert "cannot get torchvision's COCO Mask R-CNN weights" in text and "\n" not in text
    assert str(tmp_path) in text
    with pytest.raises(CheckpointError) as err:    # what `--masks coco` / maskrcnn_node weights:=coco say
        load_segmenter("coco")
    assert str(err.value) == text
    bad = tmp_path / "coco.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read COCO Mask R-CNN weights"):
        coco.load_coco_state(bad)


def test_training_on_streamed_frames(tmp_path):
    """The segmenter trains on frames rendered while it trains (the pose training's stream, here
    near and wide scenes)."""
    from genpose_ros.segmentation.model import load_checkpoint
    from genpose_ros.segmentation.train import train

    torch.set_num_threads(1)
    out = train([], tmp_path, steps=2, batch_size=2, cfg=RGBD, save_every=100, progress=False,
                stream_workers=1, stream_mix="close=1,wide=1")
    _, cfg, ckpt = load_checkpoint(out)
    assert ckpt["step"] == 2 and cfg.input == "rgbd"
    with pytest.raises(ValueError, match="--stream-workers"):
        train([], tmp_path / "none", steps=1, cfg=RGBD, progress=False)
