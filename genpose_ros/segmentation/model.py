"""Light Mask R-CNN instance segmentation of the six NOCS categories (torchvision).

The network is torchvision's ``MaskRCNN`` on a MobileNetV3-Large backbone with a narrow FPN
(strides 8, 16, 32 + a max-pool level), a narrow box head and a narrow mask head, so that a
640x480 frame is segmented at a small input size (short side 320 px by default) on a CPU.
Class ids follow NOCS: 0 = background, ``CATEGORIES[i]`` = i + 1.

    seg = Segmenter.from_checkpoint("models/maskrcnn_light.pt", device="cpu")
    detections = seg.predict(rgb, depth)  # (H, W, 3) uint8, (H, W) uint16 mm -> [Detection2D]

The input is RGB plus four depth-derived channels (``SegmenterConfig.input == "rgbd"``, see
``segmentation.inputs``) or RGB alone (``"rgb"``, the format of version-1 checkpoints).

Training frames live in ``segmentation.data`` / ``segmentation.targets``, training in
``segmentation.train`` (the entry of ``genpose train --task segmentation``), mask AP,
confusion and latency in ``segmentation.evaluate``; checkpoints use the shared safe core of
``genpose_ros.checkpoint``.
An optional detectron2 backend (``Detectron2Segmenter``) is used only where detectron2 is
installed; it is not part of the tested, shipped path.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genpose_ros import CATEGORIES
from genpose_ros.checkpoint import CheckpointError, check_format, load_state, read_file, save_file
from genpose_ros.config import checked
from genpose_ros.data.pointcloud import drop_depth_islands
from genpose_ros.segmentation.inputs import (D435_FX, check_depth, check_mode, check_rgb,
                                             input_normalisation, stack_input)
from genpose_ros.segmentation.support import SupportPlane, snap_masks

__all__ = ["CheckpointError", "Detection2D", "Segmenter", "SegmenterConfig", "build_model", "load_checkpoint",
           "save_checkpoint", "transfer_weights"]

CHECKPOINT_FORMAT = "genpose_ros.maskrcnn_light"
CHECKPOINT_VERSION = 3     # 2: ``input`` in the config (version 1 was RGB only); 3: ``nearest``
LEGACY_MASK_OFFSET_PX = (0.5, 0.5)
"""Where the masks of a version < 3 checkpoint lie relative to the objects (x, y, input-image px).
Those were trained on masks shrunk with OpenCV's floor nearest-neighbour resize, whose samples
sit half a source pixel or more up and left of the colour's, so their masks came out shifted
right and down (measured: 0.4 px in x and y, median, test split). Moving them back: mean mask IoU
of the matched test objects 0.928 -> 0.929, score scaling 5deg2cm with these masks val2 54.2 ->
54.5, test 50.2 -> 51.2 (docs/segmentation.md)."""
WHAT = "Mask R-CNN checkpoint"


@dataclass(frozen=True)
class SegmenterConfig:
    """Architecture and input-size settings; stored in every checkpoint."""

    input: str = "rgbd"                 # "rgbd" (RGB + depth channels) or "rgb"
    backbone: str = "mobilenet_v3"      # "mobilenet_v3" (light, below) or "resnet50" (COCO's)
    min_size: int = 320                 # short side of the network input at test time, px
    max_size: int = 427                 # long-side cap, px (640x480 -> 427x320)
    train_min_sizes: tuple = (272, 288, 304, 320, 336, 352)   # multi-scale training, px
    width_mult: float = 1.0             # MobileNetV3 channel multiplier
    fpn_channels: int = 128
    box_representation: int = 512       # width of the two-layer box head
    mask_layers: tuple = (128, 128, 128, 128)
    anchor_sizes: tuple = ((16, 24), (32, 48), (64, 96), (128, 192))   # px, one per FPN level
    detections_per_image: int = 20
    num_classes: int = len(CATEGORIES) + 1
    nearest: str = "exact"              # nearest-neighbour resize of depth and training masks: "exact"
                                        # (pixel centres aligned with the colour's) or "floor" (OpenCV's
                                        # INTER_NEAREST, off by half a source pixel; checkpoints < 3)
    mask_offset_px: tuple = (0.0, 0.0)  # (x, y) offset of the network's masks and boxes from the objects,
                                        # input-image px; predict() moves them back by it

    @classmethod
    def from_dict(cls, d: dict) -> "SegmenterConfig":
        values = checked(d, _plain(asdict(cls())), "segmenter config")
        tupled = {k: tuple(tuple(x) if isinstance(x, (list, tuple)) else x for x in v)
                  if isinstance(v, (list, tuple)) else v for k, v in values.items()}
        return cls(**tupled)


TINY_CONFIG = SegmenterConfig(min_size=128, max_size=171, train_min_sizes=(128,), width_mult=0.5,
                              fpn_channels=32, box_representation=64, mask_layers=(32, 32),
                              anchor_sizes=((8, 12), (16, 24), (32, 48), (64, 96)))
"""A very small variant for tests and smoke runs (about 1 M parameters)."""


@dataclass
class Detection2D:
    """One instance: ``mask`` (H, W) bool at the input image size, NOCS ``category``, ``score``."""

    mask: np.ndarray
    category: str
    score: float
    box: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))  # x0 y0 x1 y1, px


def build_model(cfg: SegmenterConfig = SegmenterConfig()) -> nn.Module:
    """A randomly initialised ``torchvision.models.detection.MaskRCNN`` (no downloads): the
    light MobileNetV3 one, or torchvision's ResNet-50 FPN one (``backbone="resnet50"``)."""
    if cfg.backbone == "resnet50":
        return _build_resnet50(cfg)
    if cfg.backbone != "mobilenet_v3":
        raise ValueError(f"unknown backbone {cfg.backbone!r}; known: mobilenet_v3, resnet50")
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    n_in = check_mode(cfg.input)
    features = mobilenet_v3_large(weights=None, width_mult=cfg.width_mult,
                                  norm_layer=nn.BatchNorm2d).features
    stem = features[0][0]
    features[0][0] = nn.Conv2d(n_in, stem.out_channels, stem.kernel_size, stem.stride,
                               stem.padding, bias=False)
    # Last block of each resolution: strides 8, 16 and 32.
    stage_ends = [i - 1 for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
    stage_ends = stage_ends[2:] + [len(features) - 1]          # (stride 8, stride 16, stride 32)
    return_layers = {str(idx): str(k) for k, idx in enumerate(stage_ends)}
    in_channels = [features[idx].out_channels for idx in stage_ends]
    backbone = BackboneWithFPN(features, return_layers, in_channels, cfg.fpn_channels,
                               extra_blocks=LastLevelMaxPool())
    n_levels = len(stage_ends) + 1
    if len(cfg.anchor_sizes) != n_levels:
        raise ValueError(f"anchor_sizes needs {n_levels} entries (one per FPN level), "
                         f"got {len(cfg.anchor_sizes)}")
    anchors = AnchorGenerator(cfg.anchor_sizes, ((0.5, 1.0, 2.0),) * n_levels)
    names = [str(k) for k in range(len(stage_ends))]
    box_pool = MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2)
    mask_pool = MultiScaleRoIAlign(names, output_size=14, sampling_ratio=2)
    mean, std = input_normalisation(cfg.input)
    return MaskRCNN(
        backbone, num_classes=None,
        min_size=cfg.train_min_sizes, max_size=cfg.max_size, image_mean=mean, image_std=std,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
        box_roi_pool=box_pool,
        box_head=TwoMLPHead(cfg.fpn_channels * 7 * 7, cfg.box_representation),
        box_predictor=FastRCNNPredictor(cfg.box_representation, cfg.num_classes),
        box_batch_size_per_image=64, box_detections_per_img=cfg.detections_per_image,
        mask_roi_pool=mask_pool,
        mask_head=MaskRCNNHeads(cfg.fpn_channels, list(cfg.mask_layers), 1),
        mask_predictor=MaskRCNNPredictor(cfg.mask_layers[-1], cfg.mask_layers[-1],
                                         cfg.num_classes),
    )


def _build_resnet50(cfg: SegmenterConfig) -> nn.Module:
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    mean, std = input_normalisation(cfg.input)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                  num_classes=cfg.num_classes, min_size=cfg.train_min_sizes,
                                  max_size=cfg.max_size, image_mean=mean, image_std=std,
                                  box_detections_per_img=cfg.detections_per_image)
    stem = model.backbone.body.conv1
    model.backbone.body.conv1 = nn.Conv2d(check_mode(cfg.input), stem.out_channels,
                                          stem.kernel_size, stem.stride, stem.padding, bias=False)
    return model


def set_test_size(model: nn.Module, cfg: SegmenterConfig) -> None:
    """Switch the model's resize step to the single test size (inference)."""
    model.transform.min_size = (cfg.min_size,)
    model.transform.max_size = cfg.max_size


# ---------------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(path: str | Path, model: nn.Module, cfg: SegmenterConfig, *,
                    half: bool = False, extra: dict | None = None) -> Path:
    """Write ``{format, version, config, categories, model, ...extra}``; ``half`` stores fp16
    floating tensors (the shipped file), which ``load_checkpoint`` casts back to fp32."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    ckpt = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "config": _plain(asdict(cfg)), "categories": list(CATEGORIES), "model": state}
    ckpt.update(extra or {})
    return save_file(path, ckpt)


def load_checkpoint(path: str | Path,
                    device: str = "cpu") -> tuple[nn.Module, SegmenterConfig, dict]:
    """Load a checkpoint safely (``weights_only=True``) into a fresh model.

    Returns ``(model in eval mode on device, config, the raw checkpoint dict)``. Raises
    ``CheckpointError`` naming the file and the problem for a missing, corrupt or mismatched file.
    """
    ckpt = read_file(path, WHAT)
    check_format(ckpt, path, CHECKPOINT_FORMAT, WHAT)
    if ckpt.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {ckpt['version']}, this code reads "
                              f"up to {CHECKPOINT_VERSION}")
    if list(ckpt.get("categories", [])) != list(CATEGORIES):
        raise CheckpointError(f"{path} was trained for categories {ckpt.get('categories')}, "
                              f"expected {list(CATEGORIES)}")
    try:
        config = dict(ckpt["config"])
        if ckpt.get("version", 1) < 2:
            config.setdefault("input", "rgb")
        if ckpt.get("version", 1) < 3:
            config.setdefault("nearest", "floor")
            config.setdefault("mask_offset_px", list(LEGACY_MASK_OFFSET_PX))
        cfg = SegmenterConfig.from_dict(config)
        check_mode(cfg.input)
        if cfg.nearest not in NEAREST:
            raise ValueError(f"nearest {cfg.nearest!r} is not one of {', '.join(NEAREST)}")
        if len(cfg.mask_offset_px) != 2:
            raise ValueError(f"mask_offset_px {cfg.mask_offset_px!r} is not (x, y)")
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad model config ({exc})") from exc
    model = build_model(cfg)
    load_state(model, {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}, path, WHAT)
    set_test_size(model, cfg)
    return model.to(device).eval(), cfg, ckpt


def transfer_weights(model: nn.Module, state: dict) -> list[str]:
    """Copy ``state`` into ``model`` wherever names and shapes fit; a first convolution with
    fewer input channels (an RGB checkpoint into an RGB-D model) fills the first channels and
    leaves the others zero, so the new model starts as the old one. Returns the names of the
    model's tensors that were left as initialised."""
    own = model.state_dict()
    left = []
    for name, target in own.items():
        src = state.get(name)
        if src is None:
            left.append(name)
            continue
        src = src.to(target.dtype)
        if src.shape == target.shape:
            target.copy_(src)
        elif (target.dim() == 4 and src.dim() == 4 and src.shape[0] == target.shape[0]
              and src.shape[1] < target.shape[1] and src.shape[2:] == target.shape[2:]):
            target.zero_()
            target[:, :src.shape[1]] = src
        else:
            left.append(name)
    model.load_state_dict(own)
    return left


def _plain(x):
    """Tuples -> lists, recursively (a checkpoint loadable with weights_only=True)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


# ---------------------------------------------------------------------------------------------
# Inference


def rgb_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 1]; ``ValueError`` for anything else."""
    return stack_input(rgb, None, mode="rgb")


class Segmenter:
    """Instance segmentation of one RGB frame into NOCS-category masks."""

    def __init__(self, model: nn.Module, cfg: SegmenterConfig, device: str = "cpu",
                 score_threshold: float = 0.5, mask_threshold: float = 0.5,
                 label_map: dict[int, str] | None = None, depth_cleanup: bool = True,
                 support: SupportPlane | None = None, min_depth_pixels: int = 0):
        """``label_map``: network class id -> NOCS category (default: NOCS ids 1..6); classes
        not in it are dropped (a COCO model's person, chair, ...). Where a depth image is given:
        ``support`` fits the masks to the table they stand on (``segmentation.support``: pixels
        of table dropped; with ``grow_px``, free pixels above it added), ``depth_cleanup`` drops
        the parts of each mask cut off by depth steps (``data.pointcloud.drop_depth_islands``:
        background caught at the outline), and a detection with fewer than ``min_depth_pixels``
        valid depth pixels under its mask is left out (nothing there to pose: background beyond
        the depth range taken for an object)."""
        self.label_map = label_map or {k + 1: c for k, c in enumerate(CATEGORIES)}
        self.model = inference_copy(model).to(device)
        self.cfg = cfg
        self.device = device
        self.score_threshold = float(score_threshold)
        self.mask_threshold = float(mask_threshold)
        self.depth_cleanup = bool(depth_cleanup)
        self.min_depth_pixels = int(min_depth_pixels)
        self.support = support
        set_test_size(self.model, cfg)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", **kwargs) -> "Segmenter":
        model, cfg, _ = load_checkpoint(path, device)
        return cls(model, cfg, device, **kwargs)

    @property
    def uses_depth(self) -> bool:
        return self.cfg.input == "rgbd"

    @property
    def wants_depth(self) -> bool:
        """Whether a depth image changes the result (network input or mask clean-up)."""
        return self.uses_depth or self.depth_cleanup or self.support is not None

    @torch.inference_mode()
    def predict(self, rgb: np.ndarray, depth: np.ndarray | None = None, fx: float | None = None,
                score_threshold: float | None = None) -> list[Detection2D]:
        """(H, W, 3) uint8 RGB (+ (H, W) uint16 depth in mm aligned to it, for an RGB-D model;
        ``fx`` its focal length in px) -> detections with score >= threshold, best first.
        An RGB-D model given no depth runs on colour alone (depth channels zero); a depth image
        of another size or type raises ``ValueError``, as does a bad colour image."""
        from torchvision.models.detection.roi_heads import paste_masks_in_image

        rgb = check_rgb(rgb)
        h, w = rgb.shape[:2]
        if depth is not None and self.wants_depth:
            check_depth(depth, (h, w))
        # Resize to the network's input size here, so the depth channels are computed at that
        # size (cheap) and the network's own resize step has nothing left to do.
        scale = min(self.cfg.min_size / min(h, w), self.cfg.max_size / max(h, w))
        rgb_s, depth_s = resize_input(rgb, depth if self.uses_depth else None, scale, self.cfg.nearest)
        sx, sy = rgb_s.shape[1] / w, rgb_s.shape[0] / h         # network-input px per image px
        fx = D435_FX * w / 640.0 if fx is None else float(fx)
        x = stack_input(rgb_s, depth_s, fx=fx * scale, mode=self.cfg.input).to(self.device)
        thr = self.score_threshold if score_threshold is None else float(score_threshold)
        # Filter inside the ROI heads, so masks are only computed and pasted for kept boxes.
        self.model.roi_heads.score_thresh = min(max(thr, 1e-3), 0.999)
        out = self._forward(x)
        known = torch.tensor([int(c) in self.label_map for c in out["labels"]], dtype=torch.bool)
        keep = (out["scores"] >= thr) & known.to(out["scores"].device)
        soft = paste_masks_in_image(out["masks"][keep], out["boxes"][keep], tuple(x.shape[-2:]))
        soft = paste_back(soft, (h, w), self.cfg.mask_offset_px)            # (N, h, w)
        masks = (soft >= self.mask_threshold).cpu().numpy().reshape(-1, h, w)
        if depth is not None and self.support is not None:
            masks = snap_masks(masks, depth, fx, self.support)
        if depth is not None and self.depth_cleanup:
            masks = np.array([drop_depth_islands(depth, m) for m in masks]).reshape(-1, h, w)
        labels = out["labels"][keep].cpu().numpy()
        scores = out["scores"][keep].cpu().numpy()
        dx, dy = self.cfg.mask_offset_px
        boxes = (out["boxes"][keep].cpu().numpy() / np.float32([sx, sy, sx, sy])
                 - np.float32([dx, dy, dx, dy])).astype(np.float32)
        seen = np.ones(len(masks), bool)
        if depth is not None and self.min_depth_pixels:
            valid = depth > 0
            seen = np.array([np.count_nonzero(m & valid) >= self.min_depth_pixels for m in masks], bool)
        return [Detection2D(mask=m, category=self.label_map[int(c)], score=float(s), box=b)
                for m, c, s, b, ok in zip(masks, labels, scores, boxes, seen) if ok]

    def _forward(self, x: torch.Tensor) -> dict:
        """The model's own forward on one input already at its test size, without its resize
        step (an interpolation to the same size) and without pasting the masks: boxes in
        network-input px, masks (N, 1, M, M) probabilities over their boxes."""
        from torchvision.models.detection.image_list import ImageList

        model = self.model
        image = model.transform.normalize(x)
        batch = model.transform.batch_images([image], size_divisible=model.transform.size_divisible)
        images = ImageList(batch.contiguous(memory_format=torch.channels_last), [tuple(x.shape[-2:])])
        features = model.backbone(images.tensors)
        proposals, _ = model.rpn(images, features)
        return model.roi_heads(features, proposals, images.image_sizes)[0][0]


def inference_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for inference: eval mode, every convolution + batch norm of the
    backbone folded into one convolution (``torch.nn.utils.fusion.fuse_conv_bn_eval``), the
    backbone in channels-last layout (faster convolutions on CPU). Computes what the model does."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.backbone.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, norm = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and type(norm) is nn.BatchNorm2d:
                seq._modules[a], seq._modules[b] = fuse_conv_bn_eval(conv, norm), nn.Identity()
    model.backbone.to(memory_format=torch.channels_last)
    return model


NEAREST = ("exact", "floor")


def resize_nearest(image: np.ndarray, size: tuple[int, int], nearest: str = "exact") -> np.ndarray:
    """``image`` resized to ``size`` (w, h) by nearest neighbour (no invented depths or labels at
    edges): ``exact`` samples at the pixel centres area-averaged colour has (OpenCV's
    INTER_NEAREST_EXACT), ``floor`` at OpenCV's INTER_NEAREST grid, which lies half a source pixel
    or more up and left of them (what checkpoints before version 3 were trained on)."""
    import cv2

    if nearest not in NEAREST:
        raise ValueError(f"unknown nearest-neighbour resize {nearest!r}; expected one of {', '.join(NEAREST)}")
    flag = cv2.INTER_NEAREST_EXACT if nearest == "exact" else cv2.INTER_NEAREST
    return cv2.resize(image, size, interpolation=flag)


def resize_input(rgb: np.ndarray, depth: np.ndarray | None, scale: float,
                 nearest: str = "exact") -> tuple[np.ndarray, np.ndarray | None]:
    """Colour (area averaging to shrink, bilinear to enlarge) and depth (``resize_nearest``)
    scaled."""
    size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
    if size == (rgb.shape[1], rgb.shape[0]):
        return rgb, depth
    import cv2

    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if depth is not None:
        depth = resize_nearest(depth, size, nearest)
    return rgb, depth


def paste_back(soft: torch.Tensor, shape: tuple[int, int], offset_px=(0.0, 0.0)) -> torch.Tensor:
    """The network's soft masks (N, 1, h', w') at the input image size ``shape`` (H, W), moved
    back by the checkpoint's ``mask_offset_px`` (x, y): (N, H, W)."""
    h, w = shape
    if len(soft) == 0:
        return soft.new_zeros((0, h, w))
    dx, dy = (float(v) for v in offset_px)
    if soft.shape[-2:] == (h, w) and dx == dy == 0.0:
        return soft[:, 0]
    # a bilinear resample whose output pixel centres lie (dx, dy) input px right of and below
    # the plain resize's; normalised coordinates of pixel centres (align_corners=False)
    xs = (torch.arange(w, dtype=soft.dtype, device=soft.device) + 0.5 + dx) / w * 2 - 1
    ys = (torch.arange(h, dtype=soft.dtype, device=soft.device) + 0.5 + dy) / h * 2 - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)
    return torch.nn.functional.grid_sample(soft, grid.expand(len(soft), h, w, 2), mode="bilinear",
                                           padding_mode="zeros", align_corners=False)[:, 0]


def instance_image(detections: list[Detection2D], shape: tuple[int, int],
                   max_overlap: float = 1.0) -> tuple[np.ndarray, list[Detection2D]]:
    """Paint detections (best first) into one (H, W) uint16 instance-id image, as the masks pair
    carries them: where masks overlap, the better one, earlier in the list, wins. A detection
    with more than ``max_overlap`` of its mask under better ones is left out: it is mostly the
    same object again under another class (torchvision's NMS is per class), and what the image
    could keep of it is a sliver along that object's outline. Returns (ids, the detections
    kept); id k + 1 is the k-th kept."""
    kept = [detections[k] for k in drop_duplicates(np.array([d.mask for d in detections]).reshape(
        -1, *shape), max_overlap)] if max_overlap < 1.0 else list(detections)
    ids = np.zeros(shape, np.uint16)
    for k in range(len(kept) - 1, -1, -1):
        ids[kept[k].mask] = k + 1
    return ids, kept


def drop_duplicates(masks: np.ndarray, max_overlap: float) -> list[int]:
    """Indices of the (N, H, W) bool ``masks`` (best first) kept: a mask with more than
    ``max_overlap`` of its pixels inside the masks kept before it is dropped (an empty one is kept)."""
    taken = np.zeros(masks.shape[1:], bool)
    keep = []
    for k, m in enumerate(masks):
        area = np.count_nonzero(m)
        if area and np.count_nonzero(m & taken) > max_overlap * area:
            continue
        keep.append(k)
        taken |= m
    return keep


# ---------------------------------------------------------------------------------------------
# Optional detectron2 backend


def detectron2_available() -> bool:
    try:
        import detectron2  # noqa: F401
    except ImportError:
        return False
    return True


class Detectron2Segmenter:
    """Same ``predict`` interface over a detectron2 Mask R-CNN (config + weights files).

    Optional: only where ``detectron2`` is installed (it is not on PyPI). The model must be
    trained with the NOCS class order (``CATEGORIES``, 0-based ids in detectron2). Not used by
    the shipped model, not covered by the tests.
    """

    def __init__(self, config_file: str, weights: str, device: str = "cpu",
                 score_threshold: float = 0.5):
        if not detectron2_available():
            raise ImportError("the detectron2 backend needs the detectron2 package "
                              "(build it from source); use the torchvision backend instead")
        from detectron2.config import get_cfg
        from detectron2.engine import DefaultPredictor

        cfg = get_cfg()
        cfg.merge_from_file(config_file)
        cfg.MODEL.WEIGHTS = weights
        cfg.MODEL.DEVICE = device
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(CATEGORIES)
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold
        cfg.INPUT.FORMAT = "RGB"
        self.predictor = DefaultPredictor(cfg)

    def predict(self, rgb: np.ndarray, depth: np.ndarray | None = None, fx: float | None = None,
                score_threshold: float | None = None) -> list[Detection2D]:
        rgb_to_tensor(rgb)  # same input checks as the torchvision backend (colour only)
        inst = self.predictor(rgb)["instances"].to("cpu")
        thr = 0.0 if score_threshold is None else score_threshold
        return [Detection2D(mask=m.numpy().astype(bool), category=CATEGORIES[int(c)],
                            score=float(s), box=b.numpy().astype(np.float32))
                for m, c, s, b in zip(inst.pred_masks, inst.pred_classes, inst.scores,
                                      inst.pred_boxes.tensor) if s >= thr]
