"""Training and evaluation targets of the segmenter from NOCS-layout frames (shared by
``segmentation.train`` and ``segmentation.evaluate``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genpose_ros import CATEGORIES

MIN_PIXELS = 20   # instances with fewer visible pixels are not training targets


def frame_targets(mask: np.ndarray, instances, min_pixels: int = MIN_PIXELS):
    """Instance-id image (H, W) + per-instance categories -> ``(masks (N, H, W) bool,
    labels (N,) int64 NOCS class ids, boxes (N, 4) float32 x0 y0 x1 y1 px)``.

    ``instances`` is a sequence of objects with ``instance_id`` and ``category`` (``InstanceGT``).
    """
    masks, labels, boxes = [], [], []
    for inst in instances:
        if inst.category not in CATEGORIES:
            raise ValueError(f"unknown category {inst.category!r}; known: {CATEGORIES}")
        m = mask == inst.instance_id
        if m.sum() < min_pixels:
            continue
        ys, xs = np.nonzero(m)
        masks.append(m)
        labels.append(CATEGORIES.index(inst.category) + 1)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    h, w = mask.shape
    return (np.array(masks, bool).reshape(-1, h, w), np.array(labels, np.int64),
            np.array(boxes, np.float32).reshape(-1, 4))


def list_frames(root: str | Path) -> list[str]:
    """Frame prefixes of a NOCS-layout folder (via ``genpose_ros.data.nocs_io``)."""
    from genpose_ros.data import nocs_io

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    prefixes = nocs_io.list_frames(root, labelled=True)
    if not prefixes:
        raise FileNotFoundError(f"no frames (<prefix>_color.png + mask + meta) in {root}")
    return list(prefixes)
