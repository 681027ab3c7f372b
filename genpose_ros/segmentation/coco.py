"""torchvision's COCO-pretrained Mask R-CNN (ResNet-50 FPN) for workstations with internet.

COCO has four of the six NOCS categories: ``bottle``, ``bowl``, ``cup`` (-> ``mug``) and
``laptop``. **``camera`` and ``can`` are not COCO classes**: the COCO model never reports
them; fine-tune (``genpose train --task segmentation --init coco``) to get all six.

- ``coco_segmenter(device)``: the COCO model as a ``Segmenter`` whose detections are mapped to
  NOCS categories (other COCO classes are dropped); ``weights: coco`` in ``maskrcnn_node``.
- ``nocs_init_state(coco_state)``: the COCO weights re-indexed for the 7 NOCS classes
  (background + six): rows of the four shared classes are copied, camera and can start fresh.

torchvision downloads the weights (~170 MB) on first use into its cache
(``~/.cache/torch/hub/checkpoints``); where that is impossible the error is one line naming
the cache path. A local copy of the file can be given instead (``state_path``); it is read
with ``weights_only=True``.
"""
from __future__ import annotations

from pathlib import Path

from genpose_ros import CATEGORIES
from genpose_ros.checkpoint import read_file
from genpose_ros.segmentation.model import CheckpointError, Segmenter, SegmenterConfig, build_model

COCO_TO_NOCS = {"bottle": "bottle", "bowl": "bowl", "cup": "mug", "laptop": "laptop"}
NOT_IN_COCO = tuple(c for c in CATEGORIES if c not in COCO_TO_NOCS.values())   # camera, can
COCO_CONFIG = SegmenterConfig(input="rgb", backbone="resnet50", num_classes=91, min_size=480,
                              max_size=640, train_min_sizes=(480,), detections_per_image=50)
# Class-specific layers of torchvision's Mask R-CNN heads: rows indexed by class id.
_CLASS_ROWS = {"roi_heads.box_predictor.cls_score": 1, "roi_heads.box_predictor.bbox_pred": 4,
               "roi_heads.mask_predictor.mask_fcn_logits": 1}


def coco_categories() -> list[str]:
    """COCO's 91 category names in torchvision's class-id order (index 0: background)."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    return list(MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])


def coco_label_map(categories: list[str] | None = None) -> dict[int, str]:
    """COCO class id -> NOCS category, for the four classes the two share."""
    categories = coco_categories() if categories is None else categories
    return {i: COCO_TO_NOCS[name] for i, name in enumerate(categories) if name in COCO_TO_NOCS}


def load_coco_state(state_path: str | Path | None = None) -> dict:
    """The COCO Mask R-CNN state dict: from ``state_path``, else torchvision's cache/download."""
    if state_path is not None:
        return read_file(state_path, "COCO Mask R-CNN weights")
    from torch.hub import get_dir, load_state_dict_from_url
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    url = MaskRCNN_ResNet50_FPN_Weights.COCO_V1.url
    try:
        return load_state_dict_from_url(url, map_location="cpu", progress=True,
                                        weights_only=True)
    except Exception as exc:  # URLError, HTTPError, socket errors, hash mismatch, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot get torchvision's COCO Mask R-CNN weights ({reason}); "
                              f"this needs internet once, or the file {Path(url).name} in "
                              f"{Path(get_dir()) / 'checkpoints'}") from None


def coco_segmenter(device: str = "cpu", state: dict | None = None, **kwargs) -> Segmenter:
    """The COCO model (RGB, ResNet-50 FPN) reporting bottle, bowl, mug (cup) and laptop."""
    model = build_model(COCO_CONFIG)
    state = load_coco_state() if state is None else state   # its own errors (offline) as they are
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"COCO weights do not fit torchvision's Mask R-CNN ResNet-50 FPN "
                              f"({str(exc).splitlines()[0]})") from None
    return Segmenter(model, COCO_CONFIG, device, label_map=coco_label_map(), **kwargs)


def nocs_init_state(coco_state: dict, categories: list[str] | None = None) -> dict:
    """``coco_state`` with its class-specific rows re-indexed to NOCS ids (0 background,
    ``CATEGORIES[i]`` = i + 1); rows of ``camera`` and ``can`` are left out, so
    ``transfer_weights`` keeps those layers' fresh initialisation only where shapes differ.
    The returned dict holds only what fits a 7-class ResNet-50 model."""
    to_coco = {nocs: i for i, nocs in coco_label_map(categories).items()}
    out = {k: v for k, v in coco_state.items() if k.rsplit(".", 1)[0] not in _CLASS_ROWS}
    fresh = build_model(SegmenterConfig(input="rgb", backbone="resnet50")).state_dict()
    for name, per_class in _CLASS_ROWS.items():
        for suffix in ("weight", "bias"):
            key = f"{name}.{suffix}"
            target = fresh[key].clone()
            src = coco_state[key]
            for nocs_id, nocs in enumerate(["__background__", *CATEGORIES]):
                coco_id = 0 if nocs_id == 0 else to_coco.get(nocs)
                if coco_id is not None:
                    target[nocs_id * per_class:(nocs_id + 1) * per_class] = \
                        src[coco_id * per_class:(coco_id + 1) * per_class]
            out[key] = target
    return out
