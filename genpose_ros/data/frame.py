"""The RGB-D frame with per-instance ground truth, shared by the renderer, the NOCS reader
and writer, the dataset and the nodes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genpose_ros.data.camera import Intrinsics


@dataclass
class InstanceGT:
    """Ground truth of one object instance in a frame.

    Attributes:
        instance_id: the id of its pixels in ``Frame.mask`` (>= 1).
        category: one of ``genpose_ros.CATEGORIES``.
        R: (3, 3) rotation object -> camera (``R_cam_obj``), NOCS canonical object frame.
        t: (3,) translation of the tight box centre in the camera frame, metres.
        size: (3,) tight box edge lengths (x, y, z) in metres.
        handle_visible: for mugs, whether the handle is seen in this view (True otherwise).
        model_name: name of the object model (NOCS meta.txt), informative only.
    """

    instance_id: int
    category: str
    R: np.ndarray
    t: np.ndarray
    size: np.ndarray
    handle_visible: bool = True
    model_name: str = ""

    @property
    def scale(self) -> float:
        """NOCS scale: the diagonal of the tight box (metres)."""
        return float(np.linalg.norm(self.size))

    @property
    def pose(self) -> np.ndarray:
        """(4, 4) T_cam_obj."""
        T = np.eye(4)
        T[:3, :3] = self.R
        T[:3, 3] = self.t
        return T


@dataclass
class Frame:
    """One RGB-D frame.

    Attributes:
        color: (H, W, 3) uint8 RGB.
        depth: (H, W) uint16 depth in millimetres (0 = no measurement).
        mask: (H, W) uint16 instance ids (0 = none).
        intrinsics: camera intrinsics of all three images.
        instances: ground truth of the instances present in ``mask``.
        T_world_cam: (4, 4) camera pose in the scene's world frame, when known.
    """

    color: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    intrinsics: Intrinsics
    instances: list[InstanceGT] = field(default_factory=list)
    T_world_cam: np.ndarray | None = None

    @property
    def depth_m(self) -> np.ndarray:
        """(H, W) float32 depth in metres."""
        return self.depth.astype(np.float32) / 1000.0
