"""One way to name a segmenter everywhere (``genpose eval --masks``, ``maskrcnn_node weights``):
a Mask R-CNN weights file (package-relative paths allowed) or ``coco``."""
from __future__ import annotations


def load_segmenter(weights: str, device: str = "cpu", **kwargs):
    """The ``Segmenter`` named by ``weights``; ``kwargs`` go to it (score / mask thresholds).
    Raises ``CheckpointError`` (one line) for a missing, corrupt or unusable file."""
    if str(weights) == "coco":   # torchvision's COCO model: bottle, bowl, cup -> mug, laptop
        from genpose_ros.segmentation.coco import coco_segmenter

        return coco_segmenter(device, **kwargs)
    from genpose_ros.paths import resolve
    from genpose_ros.segmentation.model import Segmenter

    return Segmenter.from_checkpoint(resolve(str(weights)), device, **kwargs)
