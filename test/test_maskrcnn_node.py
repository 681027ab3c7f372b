"""maskrcnn_node with a real (tiny, randomly initialised) torch Mask R-CNN over real DDS."""
from dataclasses import replace

import time

import numpy as np
import pytest

import rclpy
import torch

from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from conftest import spin_until  # noqa: E402
from genpose_ros import CATEGORIES  # noqa: E402
from genpose_ros.ros.conversions import image_to_numpy, numpy_to_image  # noqa: E402
from genpose_ros.ros.maskrcnn_node import MaskRCNNNode  # noqa: E402
from genpose_ros.ros.masks import decode_masks, encode_masks  # noqa: E402
from genpose_ros.ros.qos import qos_from_name  # noqa: E402
from genpose_ros.segmentation.model import TINY_CONFIG, build_model, save_checkpoint  # noqa: E402

CFG = replace(TINY_CONFIG, min_size=96, max_size=128, train_min_sizes=(96,))
H, W = 96, 128


@pytest.fixture(scope="module")
def tiny_weights(tiny_maskrcnn_weights):
    torch.set_num_threads(1)
    return tiny_maskrcnn_weights


def _rgb(seed=0):
    rng = np.random.default_rng(seed)
    img = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    img[30:70, 40:90] = (200, 50, 50)
    return img


def _header(sec, nanosec=0):
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id="camera_color_optical_frame")


class Rig:
    """The node under test plus a peer node that publishes inputs and records outputs."""

    def __init__(self, ctx, params, prefix):
        overrides = [Parameter(k, value=v) for k, v in
                     {"output_prefix": prefix, "color_topic": f"{prefix}/color",
                      "gt_masks_topic": f"{prefix}/gt/masks",
                      "gt_detections_2d_topic": f"{prefix}/gt/detections_2d", **params}.items()]
        self.node = MaskRCNNNode(context=ctx, parameter_overrides=overrides)
        self.peer = rclpy.create_node("maskrcnn_test_peer", context=ctx)
        self.ex = SingleThreadedExecutor(context=ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.peer)
        qos = qos_from_name("reliable", 5)
        self.pub_color = self.peer.create_publisher(Image, f"{prefix}/color", qos)
        self.pub_gt_masks = self.peer.create_publisher(Image, f"{prefix}/gt/masks", qos)
        self.pub_gt_det = self.peer.create_publisher(Detection2DArray,
                                                     f"{prefix}/gt/detections_2d", qos)
        self.masks, self.dets = {}, {}
        key = lambda m: (m.header.stamp.sec, m.header.stamp.nanosec)  # noqa: E731
        self.peer.create_subscription(Image, f"{prefix}/masks",
                                      lambda m: self.masks.setdefault(key(m), m), qos)
        self.peer.create_subscription(Detection2DArray, f"{prefix}/detections_2d",
                                      lambda m: self.dets.setdefault(key(m), m), qos)
        spin_until(self.ex, lambda: self.pub_color.get_subscription_count() > 0, 5.0)

    def send_until(self, make_msg, done, timeout_s=20.0):
        """Publish (again every second, DDS discovery may lose the first) until ``done()``."""
        for _ in range(int(timeout_s)):
            make_msg()
            if spin_until(self.ex, done, 1.0):
                return True
        return False

    def close(self):
        self.node.destroy_node()
        self.peer.destroy_node()


def test_masks_pair_has_colour_header(ros_context, tiny_weights):
    # colour only: no depth image, so no depth clean-up or support plane (an RGB model needs none)
    rig = Rig(ros_context, {"weights": str(tiny_weights), "score_threshold": 0.0, "depth_cleanup": False,
                            "support_plane": False}, "/t1")
    try:
        header = _header(7, 123)
        stamp = (7, 123)
        ok = rig.send_until(lambda: rig.pub_color.publish(numpy_to_image(_rgb(), "rgb8", header)),
                            lambda: stamp in rig.masks and stamp in rig.dets)
        assert ok, rig.node.problems
        masks, dets = rig.masks[stamp], rig.dets[stamp]
        assert masks.header == header and dets.header == header
        assert masks.encoding == "mono16" and (masks.height, masks.width) == (H, W)
        ids = image_to_numpy(masks)
        instances = decode_masks(masks, dets)
        # an untrained model still proposes boxes at threshold 0: the pair must be consistent
        assert 1 <= len(instances) <= CFG.detections_per_image
        assert [i.instance_id for i in instances] == list(range(1, len(instances) + 1))
        assert set(np.unique(ids)) <= {0} | {i.instance_id for i in instances}
        scores = [i.score for i in instances]
        assert scores == sorted(scores, reverse=True) and 0 <= min(scores) <= max(scores) <= 1
        assert all(i.category in CATEGORIES for i in instances)
        assert rig.node.latencies and not rig.node.problems
        assert rig.node.segmenter.depth_cleanup is False and rig.node.segmenter.support is None
    finally:
        rig.close()


def test_bad_frames_warn_and_next_frame_is_served(ros_context, tiny_weights):
    rig = Rig(ros_context, {"weights": str(tiny_weights), "score_threshold": 0.0,
                            "expected_width": W, "expected_height": H}, "/t2")
    try:
        mono = numpy_to_image(np.zeros((H, W), np.uint8), "mono8", _header(1))
        assert rig.send_until(lambda: rig.pub_color.publish(mono),
                              lambda: any("wrong encoding 'mono8'" in p for p in rig.node.problems))
        small = numpy_to_image(np.zeros((48, 64, 3), np.uint8), "rgb8", _header(2))
        assert rig.send_until(lambda: rig.pub_color.publish(small),
                              lambda: any("wrong image size 64x48, expected 128x96" in p
                                          for p in rig.node.problems))
        bgr = numpy_to_image(_rgb()[:, :, ::-1].copy(), "bgr8", _header(3))
        assert rig.send_until(lambda: rig.pub_color.publish(bgr), lambda: (3, 0) in rig.masks)
        assert (1, 0) not in rig.masks and (2, 0) not in rig.masks
    finally:
        rig.close()


def test_corrupt_weights_warn_then_reload(ros_context, tiny_weights, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(tiny_weights.read_bytes()[:5000])
    rig = Rig(ros_context, {"weights": str(corrupt), "score_threshold": 0.0}, "/t3")
    try:
        assert any("corrupt.pt" in p and "not a valid torch checkpoint" in p
                   for p in rig.node.problems), rig.node.problems
        frame = numpy_to_image(_rgb(), "rgb8", _header(4))
        assert rig.send_until(lambda: rig.pub_color.publish(frame),
                              lambda: any("no Mask R-CNN model loaded" in p
                                          for p in rig.node.problems))
        assert not rig.masks
        result = rig.node.set_parameters([Parameter("weights", value=str(tmp_path / "nope.pt"))])
        assert not result[0].successful and "not found" in result[0].reason
        result = rig.node.set_parameters([Parameter("weights", value=str(tiny_weights))])
        assert result[0].successful
        result = rig.node.set_parameters([Parameter("score_threshold", value=5.0)])   # a percentage?
        assert not result[0].successful and result[0].reason == "score_threshold must be between 0 and 1, got 5"
        assert rig.node.segmenter.score_threshold == 0.0
        result = rig.node.set_parameters([Parameter("depth_cleanup", value=False)])   # read at start-up
        assert not result[0].successful and "read-only" in result[0].reason
        assert rig.send_until(lambda: rig.pub_color.publish(frame), lambda: (4, 0) in rig.masks)
    finally:
        rig.close()


def test_ground_truth_source_republishes_true_masks(ros_context):
    rig = Rig(ros_context, {"source": "ground_truth"}, "/t4")
    try:
        ids = np.zeros((H, W), np.uint16)
        ids[10:40, 10:50], ids[50:90, 60:120] = 1, 2
        header = _header(9, 5)
        masks, dets = encode_masks(ids, [(1, "mug", 1.0), (2, "laptop", 1.0)], header)

        def send():
            rig.pub_gt_masks.publish(masks)
            rig.pub_gt_det.publish(dets)

        assert rig.send_until(send, lambda: (9, 5) in rig.masks and (9, 5) in rig.dets)
        out = decode_masks(rig.masks[(9, 5)], rig.dets[(9, 5)])
        assert rig.masks[(9, 5)].header == header
        assert [(i.instance_id, i.category) for i in out] == [(1, "mug"), (2, "laptop")]
        assert np.array_equal(out[1].mask, ids == 2)
        # a pair whose detections name an id twice is rejected with a warning
        bad_masks, bad_dets = encode_masks(ids, [(1, "mug", 1.0)], _header(10))
        bad_dets.detections.append(bad_dets.detections[0])

        def send_bad():
            rig.pub_gt_masks.publish(bad_masks)
            rig.pub_gt_det.publish(bad_dets)

        assert rig.send_until(send_bad, lambda: any("listed twice" in p for p in rig.node.problems))
        assert (10, 0) not in rig.masks
        result = rig.node.set_parameters([Parameter("score_threshold", value=0.9)])   # no model here
        assert not result[0].successful
        assert result[0].reason == "source ground_truth runs no Mask R-CNN: score_threshold has no effect"
    finally:
        rig.close()


def test_unknown_source_is_refused(ros_context):
    with pytest.raises(ValueError, match="unknown source 'lidar'"):
        MaskRCNNNode(context=ros_context, parameter_overrides=[Parameter("source", value="lidar")])


@pytest.mark.parametrize("name,value,message", [
    ("support_grow_px", 40, "support grow_px must be a whole number of pixels 0-10, got 40"),
    ("score_threshold", 50, "score_threshold must be between 0 and 1, got 50"),
    ("mask_threshold", -0.5, "mask_threshold must be between 0 and 1, got -0.5"),
    ("duplicate_overlap", 1.5, "duplicate_overlap must be between 0 and 1, got 1.5"),
])
def test_bad_segmenter_setting_is_refused(ros_context, name, value, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        MaskRCNNNode(context=ros_context, parameter_overrides=[Parameter(name, value=value)])


def test_nonfinite_weights_are_refused_and_the_node_keeps_serving(ros_context, tiny_weights, tmp_path):
    model = build_model(CFG)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight[0, 0] = float("nan")
    bad = save_checkpoint(tmp_path / "diverged.pt", model, CFG, half=True)
    rig = Rig(ros_context, {"weights": str(bad), "score_threshold": 0.0}, "/t5")
    try:
        assert any("diverged.pt is unusable: NaN or Inf weights in 1 of" in p
                   and "roi_heads.box_predictor.cls_score.weight" in p
                   for p in rig.node.problems), rig.node.problems
        assert rig.node.segmenter is None
        assert rig.node.set_parameters([Parameter("weights", value=str(tiny_weights))])[0].successful
        bgra = numpy_to_image(np.dstack([_rgb()[:, :, ::-1], np.full((H, W), 255, np.uint8)]),
                              "bgra8", _header(5))
        assert rig.send_until(lambda: rig.pub_color.publish(bgra), lambda: (5, 0) in rig.masks)
    finally:
        rig.close()


@pytest.fixture(scope="module")
def tiny_rgbd_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("maskrcnn_rgbd") / "tiny_rgbd.pt"
    return save_checkpoint(path, build_model(CFG), CFG, half=True)


def _depth(h=H, w=W):
    depth = np.full((h, w), 1000, np.uint16)
    depth[30:70, 40:90] = 800
    return depth


def test_rgbd_model_uses_depth_and_falls_back_to_colour(ros_context, tiny_rgbd_weights):
    """An RGB-D model segments with the depth of the same stamp; without depth, or with depth
    of another size, it warns and still publishes masks from colour alone."""
    assert CFG.input == "rgbd"
    rig = Rig(ros_context, {"weights": str(tiny_rgbd_weights), "score_threshold": 0.0,
                            "depth_topic": "/t6/depth"}, "/t6")
    try:
        pub_depth = rig.peer.create_publisher(Image, "/t6/depth", qos_from_name("reliable", 5))
        spin_until(rig.ex, lambda: pub_depth.get_subscription_count() > 0, 5.0)

        def both(sec, depth):
            pub_depth.publish(numpy_to_image(depth, "16UC1", _header(sec)))
            rig.ex.spin_once(timeout_sec=0.05)
            rig.pub_color.publish(numpy_to_image(_rgb(), "rgb8", _header(sec)))

        assert rig.send_until(lambda: both(1, _depth()), lambda: (1, 0) in rig.masks)
        assert not rig.node.problems, rig.node.problems
        # no depth at that stamp: colour alone, with a warning naming the depth topic
        assert rig.send_until(lambda: rig.pub_color.publish(numpy_to_image(_rgb(), "rgb8", _header(5))),
                              lambda: (5, 0) in rig.masks)
        assert any("RGB-D model" in p and "/t6/depth" in p and "colour alone" in p
                   for p in rig.node.problems), rig.node.problems
        # depth of another size: unusable, colour alone again
        assert rig.send_until(lambda: both(9, _depth(48, 64)), lambda: (9, 0) in rig.masks)
        assert any("depth image is 64x48 px, colour 128x96 px" in p for p in rig.node.problems)
        # depth arriving 60 ms after its colour frame (within depth_wait): used, no new warning
        n_problems = len(rig.node.problems)

        def colour_first(sec):
            rig.pub_color.publish(numpy_to_image(_rgb(), "rgb8", _header(sec)))
            t_end = time.monotonic() + 0.06
            while time.monotonic() < t_end:
                rig.ex.spin_once(timeout_sec=0.01)
            pub_depth.publish(numpy_to_image(_depth(), "16UC1", _header(sec)))

        assert rig.send_until(lambda: colour_first(13), lambda: (13, 0) in rig.masks)
        assert len(rig.node.problems) == n_problems, list(rig.node.problems)[n_problems:]
    finally:
        rig.close()


def test_closing_ends_a_frame_waiting_for_its_depth_image(ros_context, tiny_rgbd_weights):
    """A colour frame waits up to depth_wait for its depth image; closing the node ends that
    wait at once, and the worker thread stops without publishing."""
    rig = Rig(ros_context, {"weights": str(tiny_rgbd_weights), "depth_topic": "/t7/depth",
                            "depth_wait": 30.0}, "/t7")
    try:
        worker = rig.node.worker
        # the worker takes the frame and waits for a depth image that never comes
        assert rig.send_until(lambda: rig.pub_color.publish(numpy_to_image(_rgb(), "rgb8", _header(2))),
                              lambda: _waiting(rig.node), timeout_s=10)
    finally:
        t0 = time.monotonic()
        rig.close()
    assert time.monotonic() - t0 < 2.0
    worker._thread.join(2.0)
    assert not worker._thread.is_alive()
    assert rig.node.frames_done == 0 and not rig.masks


def _waiting(node) -> bool:
    """Whether the node's worker thread is waiting for a frame's depth image."""
    return node.waiting_for_depth is not None
