"""Training frames of the segmenter: NOCS-layout frames -> domain-randomised network inputs
and Mask R-CNN targets (``segmentation.targets``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from genpose_ros.segmentation.model import resize_input, resize_nearest
from genpose_ros.segmentation.targets import frame_targets


class SegmentationDataset(Dataset):
    """(input (C, h, w) float, target dict) pairs for torchvision's Mask R-CNN.

    ``frames``: NOCS-layout frame prefixes (read with ``nocs_io.read_frame``) or in-memory
    objects with ``color``, ``depth``, ``mask``, ``intrinsics`` and ``instances`` (``Frame``).
    Frames are resized so the short side is ``short_side`` px; with ``augment`` they are
    domain-randomised (``segmentation.augment``). ``mode`` is the network input, "rgb" or "rgbd";
    ``nearest`` the depth and mask resize (``model.resize_nearest``).
    """

    def __init__(self, frames, short_side: int = 320, augment: bool = False, seed: int = 0,
                 mode: str = "rgbd", nearest: str = "exact"):
        self.frames = frames if hasattr(frames, "__getitem__") else list(frames)
        if len(self.frames) == 0:
            raise ValueError("SegmentationDataset needs at least one frame")
        self.short_side = int(short_side)
        self.augment = augment
        self.mode, self.nearest = mode, nearest
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
        return training_sample(self._frame(i), self.short_side, self.mode, self.rng, self.augment, self.nearest)

    def worker_init(self, worker_id: int) -> None:
        self.rng = np.random.default_rng([int(self.rng.integers(1 << 31)), worker_id])


def training_sample(frame, short_side: int, mode: str, rng: np.random.Generator,
                    augment: bool = True, nearest: str = "exact"):
    """One ``Frame`` -> (network input (C, h, w), Mask R-CNN target dict): resized to the
    training short side (depth and masks by ``model.resize_nearest``), domain-randomised with
    ``augment``."""
    from genpose_ros.segmentation.augment import randomize
    from genpose_ros.segmentation.inputs import stack_input

    color, depth, mask = np.asarray(frame.color), np.asarray(frame.depth), np.asarray(frame.mask)
    h, w = mask.shape
    s = min(1.0, short_side / min(h, w))
    color, depth = resize_input(color, depth, s, nearest)
    if s < 1.0:
        mask = resize_nearest(mask, color.shape[1::-1], nearest)
    if augment:
        color, depth, mask = randomize(color, depth, mask, rng)
    masks, labels, boxes = frame_targets(mask, frame.instances)
    image = stack_input(color, depth, fx=frame.intrinsics.fx * s, mode=mode)
    target = {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels),
              "masks": torch.from_numpy(masks.astype(np.uint8))}
    return image, target


def streamed_samples(frame, short_side: int, mode: str, seed: int = 0, nearest: str = "exact") -> list:
    """``FrameStream`` transform (runs in the render workers): a freshly rendered frame ->
    [its randomised training sample] (the randomisation seeded by the frame's content)."""
    import zlib

    rng = np.random.default_rng([seed, zlib.crc32(frame.depth)])
    return [training_sample(frame, short_side, mode, rng, nearest=nearest)]
