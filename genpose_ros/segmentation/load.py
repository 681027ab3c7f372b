"""One way to name a segmenter everywhere (``genpose eval --masks``, ``maskrcnn_node weights``):
a Mask R-CNN weights file (package-relative paths allowed) or ``coco``; one way to read its
options (thresholds, depth clean-up, support plane) from ``maskrcnn_node``'s parameters; and
`PublishedMasks`, its detections as maskrcnn_node publishes them."""
from __future__ import annotations


def load_segmenter(weights: str, device: str = "cpu", **kwargs):
    """The ``Segmenter`` named by ``weights``; ``kwargs`` go to it (``segmenter_options``).
    Raises ``CheckpointError`` (one line) for a missing, corrupt or unusable file."""
    if str(weights) == "coco":   # torchvision's COCO model: bottle, bowl, cup -> mug, laptop
        from genpose_ros.segmentation.coco import coco_segmenter

        return coco_segmenter(device, **kwargs)
    from genpose_ros.paths import resolve
    from genpose_ros.segmentation.model import Segmenter

    return Segmenter.from_checkpoint(resolve(str(weights)), device, **kwargs)


def segmenter_options(params: dict | None = None) -> dict:
    """``Segmenter`` keyword arguments from ``maskrcnn_node`` parameters: ``params``, or the
    defaults of config/maskrcnn.yaml (its one owner) when None."""
    from genpose_ros.segmentation.support import SupportPlane

    if params is None:
        params = node_defaults()
    support = SupportPlane(trim_height=float(params["support_trim_height"]),
                           grow_px=int(params["support_grow_px"]),
                           grow_height=float(params["support_grow_height"]))
    return {"score_threshold": threshold("score_threshold", params["score_threshold"]),
            "mask_threshold": threshold("mask_threshold", params["mask_threshold"]),
            "depth_cleanup": bool(params["depth_cleanup"]),
            "min_depth_pixels": int(params["min_depth_pixels"]),
            "support": support if params["support_plane"] else None}


def node_defaults() -> dict:
    """maskrcnn_node's parameters as config/maskrcnn.yaml (their one owner) sets them."""
    from genpose_ros.config import find_config, load_config

    return load_config(find_config("maskrcnn.yaml"))["/**/maskrcnn_node"]["ros__parameters"]


def threshold(name: str, value) -> float:
    """A score or mask-probability threshold: a number in [0, 1] (ValueError naming it otherwise)."""
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value:g}")
    return value


class PublishedMasks:
    """A segmenter whose ``predict`` gives the detections as maskrcnn_node publishes them in the
    masks pair: one detection per pixel (the better one where masks overlap), a detection with
    more than ``duplicate_overlap`` of its mask under better ones left out
    (``segmentation.model.instance_image``); the default, config/maskrcnn.yaml's."""

    def __init__(self, segmenter, duplicate_overlap: float | None = None):
        if duplicate_overlap is None:
            duplicate_overlap = node_defaults()["duplicate_overlap"]
        self.segmenter = segmenter
        self.duplicate_overlap = threshold("duplicate_overlap", duplicate_overlap)

    def predict(self, rgb, depth=None, fx=None, score_threshold=None) -> list:
        from dataclasses import replace

        from genpose_ros.segmentation.model import instance_image

        detections = self.segmenter.predict(rgb, depth, fx=fx, score_threshold=score_threshold)
        ids, kept = instance_image(detections, rgb.shape[:2], self.duplicate_overlap)
        return [replace(d, mask=ids == k + 1) for k, d in enumerate(kept)]
