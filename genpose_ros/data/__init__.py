"""Synthetic category-level RGB-D data, NOCS-format I/O and per-instance datasets.

Light imports only here; the renderer (embreex, trimesh) and the dataset (torch) are imported
from their modules:

    from genpose_ros.data.scenes import sample_scene, sample_camera_pose, sample_sequence
    from genpose_ros.data.render import Renderer
    from genpose_ros.data.nocs_io import write_frame, read_frame, list_frames
    from genpose_ros.data.dataset import InstanceDataset
"""
from genpose_ros.data.camera import D435_640x480, Intrinsics, backproject, project
from genpose_ros.data.frame import Frame, InstanceGT

DISTRIBUTIONS = ("standard", "wide", "tilted", "close")  # data/families.py; `genpose data generate --distribution`

__all__ = ["DISTRIBUTIONS", "D435_640x480", "Intrinsics", "backproject", "project", "Frame", "InstanceGT"]
