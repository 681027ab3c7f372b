"""The instance-mask message pair shared by maskrcnn_node, realsense_node (sim) and pose_node.

Both messages carry the SAME header as the colour image they were computed from:

- ``/genpose/masks``: ``sensor_msgs/Image``, encoding ``mono16``, one instance id per pixel
  (0 = background). Overlaps are resolved by score (the higher score owns the pixel).
- ``/genpose/detections_2d``: ``vision_msgs/Detection2DArray``, one Detection2D per instance:
  ``id`` = the instance id in the mask image (decimal string), ``results[0].hypothesis.class_id``
  = category name, ``results[0].hypothesis.score`` = confidence in [0, 1], ``bbox`` = the mask's
  axis-aligned box in pixels (centre + size).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from genpose_ros.ros.conversions import image_to_numpy, numpy_to_image

MASK_ENCODINGS = ("mono16", "16UC1")


class MaskMessageError(ValueError):
    """The masks image and the detections do not form a valid pair."""


@dataclass
class InstanceMask:
    """One decoded instance: id in the mask image, mask (H, W) bool, category, score."""
    instance_id: int
    mask: np.ndarray
    category: str
    score: float

    def __iter__(self):  # allows `for iid, mask, category, score in decode_masks(...)`
        return iter((self.instance_id, self.mask, self.category, self.score))


def instance_image_from_masks(masks, scores) -> np.ndarray:
    """(H, W) uint16 instance image from N boolean masks; instance i + 1 for masks[i].

    Where masks overlap the higher-scoring instance owns the pixel.
    """
    masks = [np.asarray(m, dtype=bool) for m in masks]
    if not masks:
        raise MaskMessageError("no masks given; use an all-zero image for an empty frame")
    if len(masks) != len(scores):
        raise MaskMessageError(f"{len(masks)} masks but {len(scores)} scores")
    if len(masks) > 65535:
        raise MaskMessageError(f"{len(masks)} instances do not fit a 16-bit instance image")
    out = np.zeros(masks[0].shape, dtype=np.uint16)
    for i in np.argsort(scores, kind="stable"):  # lowest first: the best-scoring paints last
        if masks[i].shape != out.shape:
            raise MaskMessageError(f"mask {i} has shape {masks[i].shape}, mask 0 {out.shape}")
        out[masks[i]] = i + 1
    return out


def encode_masks(instance_image: np.ndarray, detections, header) -> tuple[Image, Detection2DArray]:
    """(mono16 Image, Detection2DArray) for an instance image and its detections.

    ``instance_image``: (H, W) integer ids, 0 = none. ``detections``: iterable of
    ``(instance_id, category, score)``. The 2D box is computed from the mask pixels (all zeros
    when the instance has no pixels left after overlap resolution).
    """
    ids = np.asarray(instance_image)
    if ids.ndim != 2:
        raise MaskMessageError(f"instance image must be (H, W), got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() > 65535):
        raise MaskMessageError("instance ids must lie in [0, 65535]")
    header = copy.deepcopy(header)  # the two messages must not share one mutable header
    image = numpy_to_image(ids.astype(np.uint16), "mono16", copy.deepcopy(header))
    array = Detection2DArray(header=header)
    seen = set()
    for instance_id, category, score in detections:
        instance_id = int(instance_id)
        if instance_id <= 0:
            raise MaskMessageError(f"instance id must be >= 1 (0 is background), got {instance_id}")
        if instance_id in seen:
            raise MaskMessageError(f"instance id {instance_id} listed twice")
        if not category:
            raise MaskMessageError(f"instance {instance_id} has an empty category")
        seen.add(instance_id)
        det = Detection2D(header=header, id=str(instance_id))
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(category)
        hyp.hypothesis.score = float(score)
        det.results.append(hyp)
        v, u = np.nonzero(ids == instance_id)
        if u.size:
            det.bbox.center.position.x = float(u.min() + u.max()) / 2.0
            det.bbox.center.position.y = float(v.min() + v.max()) / 2.0
            det.bbox.size_x = float(u.max() - u.min() + 1)
            det.bbox.size_y = float(v.max() - v.min() + 1)
        array.detections.append(det)
    return image, array


def decode_masks(image: Image, detections: Detection2DArray) -> list[InstanceMask]:
    """The instances of a (masks, detections) pair, in the order of the detections.

    Raises `MaskMessageError` when the pair does not match (different stamps or frames, wrong
    encoding, bad or duplicate ids, a detection without a class). An instance whose mask is
    empty is returned with an all-False mask: the consumer decides what to do with it.
    """
    if (image.header.stamp.sec, image.header.stamp.nanosec) != \
            (detections.header.stamp.sec, detections.header.stamp.nanosec):
        raise MaskMessageError(
            f"masks stamp {image.header.stamp.sec}.{image.header.stamp.nanosec:09d} differs from "
            f"detections stamp {detections.header.stamp.sec}.{detections.header.stamp.nanosec:09d}")
    if image.header.frame_id != detections.header.frame_id:
        raise MaskMessageError(f"masks frame {image.header.frame_id!r} differs from detections "
                               f"frame {detections.header.frame_id!r}")
    try:
        ids = image_to_numpy(image, MASK_ENCODINGS)
    except ValueError as exc:
        raise MaskMessageError(f"masks image: {exc}") from exc
    out, seen = [], set()
    for det in detections.detections:
        try:
            instance_id = int(det.id)
        except ValueError:
            raise MaskMessageError(f"detection id {det.id!r} is not an instance id (an integer)") from None
        if instance_id <= 0 or instance_id > 65535:
            raise MaskMessageError(f"detection id {instance_id} is outside [1, 65535]")
        if instance_id in seen:
            raise MaskMessageError(f"instance id {instance_id} listed twice")
        seen.add(instance_id)
        if not det.results or not det.results[0].hypothesis.class_id:
            raise MaskMessageError(f"detection {instance_id} has no class")
        hyp = det.results[0].hypothesis
        out.append(InstanceMask(instance_id, ids == instance_id, hyp.class_id, float(hyp.score)))
    return out
