"""Training and test frames of the segmenter: NOCS-layout folders -> Mask R-CNN targets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from genpose_ros import CATEGORIES
from genpose_ros.segmentation.model import resize_input

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
    prefixes = nocs_io.list_frames(root)
    if not prefixes:
        raise FileNotFoundError(f"no frames (<prefix>_color.png + mask + meta) in {root}")
    return list(prefixes)


class SegmentationDataset(Dataset):
    """(input (C, h, w) float, target dict) pairs for torchvision's Mask R-CNN.

    ``frames``: NOCS-layout frame prefixes (read with ``nocs_io.read_frame``) or in-memory
    objects with ``color``, ``depth``, ``mask``, ``intrinsics`` and ``instances`` (``Frame``).
    Frames are resized so the short side is ``short_side`` px; with ``augment`` they are
    domain-randomised (``segmentation.augment``). ``mode`` is the network input, "rgb" or "rgbd".
    """

    def __init__(self, frames, short_side: int = 320, augment: bool = False, seed: int = 0,
                 mode: str = "rgbd"):
        self.frames = frames if hasattr(frames, "__getitem__") else list(frames)
        if len(self.frames) == 0:
            raise ValueError("SegmentationDataset needs at least one frame")
        self.short_side = int(short_side)
        self.augment = augment
        self.mode = mode
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.frames)

    def _frame(self, i):
        f = self.frames[i]
        if isinstance(f, (str, Path)):
            from genpose_ros.data import nocs_io

            f = nocs_io.read_frame(f)
        return f

    def __getitem__(self, i):
        import cv2

        from genpose_ros.segmentation.augment import randomize
        from genpose_ros.segmentation.inputs import stack_input

        f = self._frame(i)
        color, depth, mask = np.asarray(f.color), np.asarray(f.depth), np.asarray(f.mask)
        h, w = mask.shape
        s = min(1.0, self.short_side / min(h, w))
        color, depth = resize_input(color, depth, s)
        if s < 1.0:
            mask = cv2.resize(mask, color.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        if self.augment:
            color, depth, mask = randomize(color, depth, mask, self.rng)
        masks, labels, boxes = frame_targets(mask, f.instances)
        image = stack_input(color, depth, fx=f.intrinsics.fx * s, mode=self.mode)
        target = {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels),
                  "masks": torch.from_numpy(masks.astype(np.uint8))}
        return image, target

    def worker_init(self, worker_id: int) -> None:
        self.rng = np.random.default_rng([int(self.rng.integers(1 << 31)), worker_id])
