"""Conversions between ROS messages and numpy / genpose_ros types (cv_bridge-free).

Images: ``rgb8``/``bgr8`` -> (H, W, 3) uint8, ``rgba8``/``bgra8`` -> (H, W, 4) uint8, ``mono8`` ->
(H, W) uint8, ``mono16``/``16UC1`` -> (H, W) uint16, ``32FC1`` -> (H, W) float32; `image_to_rgb`
reads any colour or grey 8-bit image as RGB. Poses: rotation (3, 3) object -> camera, translation
(3,) metres, box size (3,) metres, all in the image's optical frame.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Point, Pose, PoseArray
from sensor_msgs.msg import CameraInfo, Image
from scipy.spatial.transform import Rotation
from std_msgs.msg import ColorRGBA
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose
from visualization_msgs.msg import Marker, MarkerArray

from genpose_ros.ros.tf import matrix_to_transform, transform_to_matrix  # noqa: F401 (re-export)

ENCODINGS = {  # encoding -> (dtype, channels)
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1),
    "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1), "32FC1": (np.float32, 1),
}


class ImageConversionError(ValueError):
    """An Image message cannot be read or written as asked (encoding, size, data length)."""


def image_to_numpy(msg: Image, encodings: tuple[str, ...] | None = None) -> np.ndarray:
    """The pixels of ``msg`` as a numpy array (a copy); ``encodings``: the accepted ones."""
    if encodings is not None and msg.encoding not in encodings:
        raise ImageConversionError(
            f"wrong encoding {msg.encoding!r} on frame {msg.header.frame_id!r}; expected "
            f"{' or '.join(encodings)}")
    if msg.encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported encoding {msg.encoding!r}; supported: "
                                   f"{', '.join(ENCODINGS)}")
    dtype, channels = ENCODINGS[msg.encoding]
    h, w = int(msg.height), int(msg.width)
    if h == 0 or w == 0:
        raise ImageConversionError(f"empty image ({w}x{h}, encoding {msg.encoding})")
    row = w * channels * np.dtype(dtype).itemsize
    if msg.step < row:
        raise ImageConversionError(f"image step {msg.step} < {row} bytes needed for a "
                                   f"{w}-pixel {msg.encoding} row")
    data = np.frombuffer(msg.data, dtype=np.uint8)  # array.array('B') or bytes: no copy
    if data.size != h * msg.step:
        raise ImageConversionError(f"image data has {data.size} bytes, expected height {h} x "
                                   f"step {msg.step} = {h * msg.step}")
    rows = data.reshape(h, msg.step)[:, :row]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    arr = np.ascontiguousarray(rows).view(dt).reshape((h, w, channels) if channels > 1 else (h, w))
    return arr.astype(dtype, copy=True)


RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


def image_to_rgb(msg: Image, encodings: tuple[str, ...] = RGB_ENCODINGS) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an image in one of ``encodings`` (channel order fixed, alpha
    dropped, grey repeated)."""
    img = image_to_numpy(msg, encodings)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, 2::-1] if msg.encoding.startswith("bgr") else img[:, :, :3])


def numpy_to_image(array: np.ndarray, encoding: str, header=None) -> Image:
    """An Image message holding ``array`` with ``encoding`` (shape and dtype are checked)."""
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported encoding {encoding!r}; supported: "
                                   f"{', '.join(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    array = np.asarray(array)
    shape = "(H, W)" if channels == 1 else f"(H, W, {channels})"
    if array.ndim != (2 if channels == 1 else 3) or (channels > 1 and array.shape[2] != channels):
        raise ImageConversionError(f"{encoding} needs an array of shape {shape}, got {array.shape}")
    if array.dtype != dtype:
        raise ImageConversionError(f"{encoding} needs dtype {np.dtype(dtype).name}, got {array.dtype}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(array.shape[1] * channels * array.dtype.itemsize)
    msg.data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    return msg


def camera_info_to_intrinsics(msg: CameraInfo):
    """`genpose_ros.data.camera.Intrinsics` from a CameraInfo (its K matrix, image size)."""
    from genpose_ros.data.camera import Intrinsics

    k = np.asarray(msg.k, dtype=np.float64)
    if msg.width == 0 or msg.height == 0:
        raise ValueError(f"camera_info on {msg.header.frame_id!r} has no image size")
    if not np.all(np.isfinite(k)) or k[0] <= 0 or k[4] <= 0:
        raise ValueError(f"camera_info on {msg.header.frame_id!r} has an invalid K matrix {k.tolist()}")
    return Intrinsics(width=int(msg.width), height=int(msg.height), fx=float(k[0]), fy=float(k[4]),
                      cx=float(k[2]), cy=float(k[5]))


DISTORTION_MODELS = ("plumb_bob", "rational_polynomial")   # OpenCV's coefficients, undistorted with cv2


def camera_info_distortion(msg: CameraInfo) -> tuple[float, ...]:
    """The lens distortion coefficients of a CameraInfo (OpenCV order), () when it has none
    (all zero, as the D435's aligned streams). ValueError for coefficients of a model this
    package cannot undo (publish rectified images then: image_proc)."""
    d = tuple(float(x) for x in msg.d)
    if not any(d):
        return ()
    where = f"camera_info on {msg.header.frame_id!r}"
    if msg.distortion_model not in DISTORTION_MODELS:
        raise ValueError(f"{where}: distortion model {msg.distortion_model!r} (coefficients {list(d)}) is not "
                         f"supported ({', '.join(DISTORTION_MODELS)}); publish rectified images with zero "
                         "distortion (image_proc)")
    if not np.all(np.isfinite(d)) or len(d) < 4:
        raise ValueError(f"{where}: invalid {msg.distortion_model} coefficients {list(d)}")
    return d


def intrinsics_to_camera_info(intr, header=None, distortion: tuple[float, ...] = ()) -> CameraInfo:
    """A CameraInfo from Intrinsics: pinhole, or with ``distortion`` (plumb_bob coefficients:
    k1, k2, p1, p2, k3) the lens distortion of the images it describes."""
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(intr.width), int(intr.height)
    msg.distortion_model = "plumb_bob"
    msg.d = [float(x) for x in distortion] + [0.0] * (5 - len(distortion))
    msg.k = [float(intr.fx), 0.0, float(intr.cx), 0.0, float(intr.fy), float(intr.cy), 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [float(intr.fx), 0.0, float(intr.cx), 0.0,
             0.0, float(intr.fy), float(intr.cy), 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def rt_to_pose(R: np.ndarray, t: np.ndarray) -> Pose:
    """geometry_msgs/Pose from a rotation (3, 3) and a translation (3,) in metres."""
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in t)
    q = Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_quat()
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in q)
    return pose


def pose_to_rt(pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """(R (3, 3), t (3,)) from a geometry_msgs/Pose."""
    o, p = pose.orientation, pose.position
    return Rotation.from_quat([o.x, o.y, o.z, o.w]).as_matrix(), np.array([p.x, p.y, p.z])


UNKNOWN_COVARIANCE = [-1.0] + [0.0] * 35
"""PoseWithCovariance.covariance when it is unknown (first element -1, as sensor_msgs does)."""


def detections_to_msg(header, names, categories, R, t, size, score, covariance=None) -> Detection3DArray:
    """Detection3DArray: per instance ``id`` = its TF frame name, class, score, pose, box size.

    ``covariance``: per instance a (6, 6) pose covariance or None (unknown: `UNKNOWN_COVARIANCE`)."""
    out = Detection3DArray(header=header)
    for i, (name, category) in enumerate(zip(names, categories)):
        det = Detection3D(header=header, id=name)
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = category
        hyp.hypothesis.score = float(score[i])
        hyp.pose.pose = rt_to_pose(R[i], t[i])
        cov = None if covariance is None else covariance[i]
        hyp.pose.covariance = (UNKNOWN_COVARIANCE if cov is None
                               else [float(v) for v in np.asarray(cov, dtype=np.float64).reshape(36)])
        det.results.append(hyp)
        det.bbox.center = rt_to_pose(R[i], t[i])
        det.bbox.size.x, det.bbox.size.y, det.bbox.size.z = (float(v) for v in size[i])
        out.detections.append(det)
    return out


def detections_from_msg(msg: Detection3DArray) -> list[dict]:
    """[{id, category, score, R, t, size}] from a Detection3DArray (first hypothesis each)."""
    out = []
    for det in msg.detections:
        if not det.results:
            raise ValueError(f"detection {det.id!r} has no class hypothesis")
        R, t = pose_to_rt(det.bbox.center)
        out.append(dict(id=det.id, category=det.results[0].hypothesis.class_id,
                        score=det.results[0].hypothesis.score, R=R, t=t,
                        size=np.array([det.bbox.size.x, det.bbox.size.y, det.bbox.size.z])))
    return out


CATEGORY_COLORS = {  # RGB in [0, 1]
    "bottle": (0.12, 0.47, 0.71), "bowl": (1.0, 0.5, 0.05), "camera": (0.17, 0.63, 0.17),
    "can": (0.84, 0.15, 0.16), "laptop": (0.58, 0.4, 0.74), "mug": (0.55, 0.34, 0.29),
}


def _color(category: str, alpha: float) -> ColorRGBA:
    r, g, b = CATEGORY_COLORS.get(category, (0.8, 0.8, 0.8))
    return ColorRGBA(r=r, g=g, b=b, a=alpha)


def markers_to_msg(header, names, categories, R, t, size, axis_length: float = 0.05) -> MarkerArray:
    """MarkerArray: per instance a translucent sized box, RGB axes and a text label.

    Starts with a DELETEALL marker so instances that disappeared are cleared in RViz.
    """
    out = MarkerArray()
    out.markers.append(Marker(header=header, action=Marker.DELETEALL))
    for i, (name, category) in enumerate(zip(names, categories)):
        pose = rt_to_pose(R[i], t[i])
        box = Marker(header=header, ns="boxes", id=i, type=Marker.CUBE, action=Marker.ADD, pose=pose)
        box.scale.x, box.scale.y, box.scale.z = (max(float(v), 1e-3) for v in size[i])
        box.color = _color(category, 0.4)
        out.markers.append(box)
        axes = Marker(header=header, ns="axes", id=i, type=Marker.LINE_LIST, action=Marker.ADD, pose=pose)
        axes.scale.x = 0.004
        for k, rgb in enumerate([(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]):
            tip = [0.0, 0.0, 0.0]
            tip[k] = axis_length
            axes.points += [Point(), Point(x=tip[0], y=tip[1], z=tip[2])]
            axes.colors += [ColorRGBA(r=rgb[0], g=rgb[1], b=rgb[2], a=1.0)] * 2
        out.markers.append(axes)
        label = Marker(header=header, ns="labels", id=i, type=Marker.TEXT_VIEW_FACING,
                       action=Marker.ADD, text=name)
        label.pose.position.x, label.pose.position.y = float(t[i][0]), float(t[i][1])
        label.pose.position.z = float(t[i][2])
        label.pose.position.y -= float(np.max(size[i])) * 0.6  # above the box (y is down)
        label.pose.orientation.w = 1.0
        label.scale.z = 0.02
        label.color = _color(category, 1.0)
        out.markers.append(label)
    return out


def hypotheses_to_pose_array(header, hypotheses) -> PoseArray:
    """PoseArray of all candidate poses of all instances, flattened: (B, K, 4, 4), or a list of
    B arrays (K_i, 4, 4)."""
    out = PoseArray(header=header)
    hyp = (np.concatenate([np.reshape(h, (-1, 4, 4)) for h in hypotheses])
           if len(hypotheses) else np.zeros((0, 4, 4)))
    out.poses = [rt_to_pose(T[:3, :3], T[:3, 3]) for T in hyp]
    return out


def instance_transforms(header, names, R, t) -> list:
    """One TransformStamped per instance: parent = header.frame_id, child = its name."""
    out = []
    for i, name in enumerate(names):
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R[i], t[i]
        out.append(matrix_to_transform(T, header.frame_id, name, header.stamp))
    return out
