"""Frames in the NOCS dataset layout: write ours, read ours and the real CAMERA / REAL275 ones.

Per image, with ``prefix = <folder>/<index:04d>`` (as NOCS):

    <prefix>_color.png   RGB image (stored as a normal 8-bit colour PNG)
    <prefix>_depth.png   uint16 depth in millimetres (NOCS CAMERA's 3-channel encoding is read too)
    <prefix>_mask.png    uint8 instance ids, 255 = background (NOCS convention)
    <prefix>_meta.txt    one line per instance: "<instance_id> <class_id> <model_name>"
    <prefix>_label.json  ground truth (the keys of the NOCS/GenPose ``_label.pkl``, see below)
    <prefix>_label.pkl   the same as a pickle, for the NOCS/GenPose tools (optional)

Label keys, one entry per instance: ``class_ids`` (1-based, NOCS order), ``instance_ids``,
``model_list``, ``rotations`` (n, 3, 3) R_cam_obj, ``translations`` (n, 3) m, ``scales`` (n,)
NOCS scale = box diagonal in m, ``size`` (n, 3) box extents of the unit-diagonal NOCS model
(metric size = size * scale), ``poses`` (n, 4, 4) sRT, ``bboxes`` (n, 4) [y1, x1, y2, x2],
``handle_visibility`` (n,) 0/1. Ours add ``sizes_m`` (n, 3), ``n_valid_points`` (n,),
``intrinsics`` and ``T_world_cam``.

Pickles can execute code when loaded, so the reader never unpickles by default: real NOCS
label pickles are read only with ``allow_pickle=True``, for files you trust.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np

from genpose_ros import CATEGORIES
from genpose_ros.data.camera import NOCS_CAMERA, NOCS_REAL275, Intrinsics
from genpose_ros.data.frame import Frame, InstanceGT

BACKGROUND = 255
"""Mask value of background pixels on disk (NOCS); in memory ``Frame.mask`` uses 0."""


def prefix_of(folder, index: int) -> Path:
    return Path(folder) / f"{index:04d}"


def _bbox(mask: np.ndarray) -> list[int]:
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return [0, 0, 0, 0]
    y1, y2 = np.flatnonzero(rows)[[0, -1]]
    x1, x2 = np.flatnonzero(cols)[[0, -1]]
    return [int(y1), int(x1), int(y2) + 1, int(x2) + 1]


def frame_labels(frame: Frame) -> dict:
    """The label dict (NOCS/GenPose keys, plain lists) of a frame."""
    insts = frame.instances
    scales = [inst.scale for inst in insts]
    poses = []
    for inst, s in zip(insts, scales):
        T = np.eye(4)
        T[:3, :3] = s * np.asarray(inst.R)
        T[:3, 3] = inst.t
        poses.append(T.tolist())
    return {
        "class_ids": [CATEGORIES.index(i.category) + 1 for i in insts],
        "instance_ids": [int(i.instance_id) for i in insts],
        "model_list": [i.model_name or f"{i.category}_{i.instance_id:02d}" for i in insts],
        "rotations": [np.asarray(i.R, float).tolist() for i in insts],
        "translations": [np.asarray(i.t, float).tolist() for i in insts],
        "scales": scales,
        "size": [(np.asarray(i.size, float) / s).tolist() for i, s in zip(insts, scales)],
        "sizes_m": [np.asarray(i.size, float).tolist() for i in insts],
        "poses": poses,
        "bboxes": [_bbox(frame.mask == i.instance_id) for i in insts],
        "handle_visibility": [int(bool(i.handle_visible)) for i in insts],
        "n_valid_points": [int(np.count_nonzero((frame.mask == i.instance_id) & (frame.depth > 0)))
                           for i in insts],
        "intrinsics": frame.intrinsics.to_dict(),
        "T_world_cam": None if frame.T_world_cam is None else np.asarray(frame.T_world_cam).tolist(),
    }


def _pickle_twin(labels: dict) -> dict:
    """The label dict with numpy arrays, as the NOCS/GenPose tools keep it."""
    out = dict(labels)
    out["class_ids"] = np.array(labels["class_ids"], dtype=np.int64)
    out["bboxes"] = np.array(labels["bboxes"], dtype=np.int64).reshape(-1, 4)
    for key, shape in (("rotations", (-1, 3, 3)), ("translations", (-1, 3)), ("size", (-1, 3)),
                       ("sizes_m", (-1, 3)), ("poses", (-1, 4, 4))):
        out[key] = np.array(labels[key], dtype=np.float32).reshape(shape)
    out["scales"] = np.array(labels["scales"], dtype=np.float32)
    return out


def write_frame(folder, index: int, frame: Frame, write_pickle: bool = True) -> Path:
    """Write one frame in the NOCS layout; returns its prefix (``folder/<index:04d>``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = prefix_of(folder, index)
    ids = [i.instance_id for i in frame.instances]
    if any(not 1 <= k < BACKGROUND for k in ids):
        raise ValueError(f"instance ids must be in 1..{BACKGROUND - 1} for the NOCS mask, got {ids}")
    if frame.depth.dtype != np.uint16:
        raise ValueError(f"frame.depth must be uint16 millimetres, got {frame.depth.dtype}")
    mask = np.full(frame.mask.shape, BACKGROUND, np.uint8)
    for k in ids:
        mask[frame.mask == k] = k
    ok = cv2.imwrite(f"{prefix}_color.png", cv2.cvtColor(frame.color, cv2.COLOR_RGB2BGR)) and \
        cv2.imwrite(f"{prefix}_depth.png", frame.depth) and cv2.imwrite(f"{prefix}_mask.png", mask)
    if not ok:
        raise OSError(f"could not write the images of {prefix}")
    labels = frame_labels(frame)
    with open(f"{prefix}_meta.txt", "w") as f:
        for k, c, m in zip(labels["instance_ids"], labels["class_ids"], labels["model_list"]):
            f.write(f"{k} {c} {m}\n")
    with open(f"{prefix}_label.json", "w") as f:
        json.dump(labels, f)
    if write_pickle:
        with open(f"{prefix}_label.pkl", "wb") as f:
            pickle.dump(_pickle_twin(labels), f)
    return prefix


def list_frames(folder, labelled: bool = False) -> list[str]:
    """Sorted prefixes of all frames (``*_color.png``) under ``folder``, recursively.

    ``labelled=True`` checks up front that every frame has its ``_label.json`` or ``_label.pkl``
    (an evaluation would otherwise stop at the first frame without, minutes in)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {folder} does not exist")
    prefixes = sorted(str(p)[: -len("_color.png")] for p in folder.rglob("*_color.png"))
    if labelled:
        bare = [p for p in prefixes if not (Path(f"{p}_label.json").exists() or Path(f"{p}_label.pkl").exists())]
        if bare:
            raise FileNotFoundError(
                f"{len(bare)} of {len(prefixes)} frames under {folder} have no labels (first: {bare[0]}): "
                "not a dataset written by `genpose data generate` or the NOCS/GenPose preprocessing")
    return prefixes


LABEL_KEYS = ("class_ids", "instance_ids", "model_list", "rotations", "translations", "scales")


def read_labels(prefix, allow_pickle: bool = False) -> dict:
    """The label dict of a frame: ``<prefix>_label.json``, or with ``allow_pickle=True`` the
    NOCS/GenPose ``<prefix>_label.pkl`` (only for files you trust)."""
    prefix = str(prefix)
    json_path, pkl_path = Path(f"{prefix}_label.json"), Path(f"{prefix}_label.pkl")
    if json_path.exists():
        try:
            labels = json.loads(json_path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"label file {json_path} is not valid JSON (truncated or corrupt?): {exc}") from None
        missing = [k for k in LABEL_KEYS if k not in labels] if isinstance(labels, dict) else list(LABEL_KEYS)
        if missing:
            raise ValueError(f"label file {json_path} lacks the keys {missing}")
        return labels
    if pkl_path.exists():
        if not allow_pickle:
            raise PermissionError(
                f"{pkl_path} is a pickle and there is no {json_path.name}; pickles can run code "
                "when loaded, so pass allow_pickle=True (CLI: --allow-pickle) only for trusted "
                "files such as the official NOCS/GenPose labels")
        with open(pkl_path, "rb") as f:
            return pickle.load(f)
    raise FileNotFoundError(f"no labels for {prefix}: neither {json_path.name} nor {pkl_path.name}; "
                            "raw NOCS folders need the labels made by the NOCS/GenPose "
                            "preprocessing (prepare_data)")


def load_depth(path) -> np.ndarray:
    """(H, W) uint16 depth in mm from a 16-bit PNG or NOCS CAMERA's 3-channel encoding."""
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None:
        raise FileNotFoundError(f"cannot read depth image {path}")
    if depth.ndim == 3:  # NOCS CAMERA: high byte in G, low byte in R (OpenCV BGR order)
        depth = depth[:, :, 1].astype(np.uint16) * 256 + depth[:, :, 2].astype(np.uint16)
    if depth.dtype != np.uint16:
        raise ValueError(f"depth image {path} has dtype {depth.dtype}, expected uint16")
    return depth


def _guess_intrinsics(prefix: str) -> Intrinsics:
    parts = [p.lower() for p in Path(prefix).parts]
    if any(p.startswith("real") for p in parts):
        return NOCS_REAL275
    if any(p.startswith("camera") for p in parts):
        return NOCS_CAMERA
    raise ValueError(f"labels of {prefix} carry no intrinsics and the path names neither a "
                     "'real' nor a 'camera' NOCS folder; pass intrinsics=...")


def read_frame(prefix, allow_pickle: bool = False, intrinsics: Intrinsics | None = None) -> Frame:
    """Read one frame written by ``write_frame`` or from a NOCS CAMERA / REAL275 folder.

    Args:
        prefix: the path without the ``_color.png`` suffix.
        allow_pickle: read ``_label.pkl`` when there is no JSON label (trusted files only).
        intrinsics: overrides the intrinsics in the labels (needed for NOCS labels, which
            have none, when the path does not tell REAL275 from CAMERA).
    """
    prefix = str(prefix)
    color = cv2.imread(f"{prefix}_color.png", cv2.IMREAD_COLOR)
    if color is None:
        raise FileNotFoundError(f"cannot read {prefix}_color.png")
    color = cv2.cvtColor(color, cv2.COLOR_BGR2RGB)
    depth = load_depth(f"{prefix}_depth.png")
    raw_mask = cv2.imread(f"{prefix}_mask.png", cv2.IMREAD_UNCHANGED)
    if raw_mask is None:
        raise FileNotFoundError(f"cannot read {prefix}_mask.png")
    if raw_mask.ndim == 3:
        raw_mask = raw_mask[:, :, 2]
    labels = read_labels(prefix, allow_pickle)
    if intrinsics is None:
        intrinsics = (Intrinsics.from_dict(labels["intrinsics"]) if labels.get("intrinsics")
                      else _guess_intrinsics(prefix))
    if depth.shape != raw_mask.shape or depth.shape != color.shape[:2]:
        raise ValueError(f"{prefix}: image sizes differ (color {color.shape[:2]}, depth "
                         f"{depth.shape}, mask {raw_mask.shape})")
    mask = np.zeros(raw_mask.shape, np.uint16)
    instances = []
    n = len(labels["class_ids"])
    sizes = labels.get("sizes_m")
    hv = labels.get("handle_visibility", [1] * n)
    for j in range(n):
        k = int(labels["instance_ids"][j])
        class_id = int(labels["class_ids"][j])
        if not 1 <= class_id <= len(CATEGORIES):
            raise ValueError(f"{prefix}: class id {class_id} is outside 1..{len(CATEGORIES)}")
        scale = float(np.asarray(labels["scales"][j]))
        size = (np.asarray(sizes[j], float) if sizes is not None
                else np.asarray(labels["size"][j], float) * scale)
        mask[raw_mask == k] = k
        instances.append(InstanceGT(
            instance_id=k, category=CATEGORIES[class_id - 1],
            R=np.asarray(labels["rotations"][j], dtype=np.float64).reshape(3, 3),
            t=np.asarray(labels["translations"][j], dtype=np.float64).reshape(3),
            size=size, handle_visible=bool(int(hv[j])), model_name=str(labels["model_list"][j])))
    T = labels.get("T_world_cam")
    return Frame(color=color, depth=depth, mask=mask, intrinsics=intrinsics, instances=instances,
                 T_world_cam=None if T is None else np.asarray(T, dtype=np.float64))
