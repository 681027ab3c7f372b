"""One way to name a segmenter everywhere (``genpose eval --masks``, ``maskrcnn_node weights``):
a Mask R-CNN weights file (package-relative paths allowed) or ``coco``; and one way to read its
options (thresholds, depth clean-up, support plane) from ``maskrcnn_node``'s parameters."""
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
        from genpose_ros.config import find_config, load_config

        params = load_config(find_config("maskrcnn.yaml"))["/**/maskrcnn_node"]["ros__parameters"]
    support = SupportPlane(trim_height=float(params["support_trim_height"]),
                           grow_px=int(params["support_grow_px"]),
                           grow_height=float(params["support_grow_height"]))
    return {"score_threshold": float(params["score_threshold"]),
            "mask_threshold": float(params["mask_threshold"]),
            "depth_cleanup": bool(params["depth_cleanup"]),
            "support": support if params["support_plane"] else None}
