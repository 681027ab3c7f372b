"""Frame sources of realsense_node, all going through librealsense (pyrealsense2).

- `DeviceSource`: a live D435 (by serial), colour rgb8 + depth z16, depth aligned to colour.
- `BagSource`: a RealSense .bag recording (``rs.config.enable_device_from_file``), aligned too.
- `SimSource`: synthetic frames from `genpose_ros.data` pushed through a ``rs.software_device``
  (Z16 depth + RGB8 colour sensors, hardware-clock timestamps, a frame syncer), so they take the
  same librealsense frame path as a camera's. Also returns the simulator's ground truth.

Every source's ``read()`` returns a `Capture` or None when no frame is ready (or the bag ended).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genpose_ros.data.camera import Intrinsics, fit_plumb_bob


@dataclass
class Capture:
    color: np.ndarray               # (H, W, 3) uint8 RGB
    depth_mm: np.ndarray            # (H, W) uint16 millimetres, aligned to colour
    frame_number: int
    ground_truth: object = None     # genpose_ros.data.frame.Frame (sim only: mask + instances)


def _rs():
    try:
        import pyrealsense2 as rs
    except ImportError as exc:  # e.g. libusb-1.0-0 missing
        raise RuntimeError(f"pyrealsense2 cannot be imported ({exc}); on Debian/Ubuntu install "
                           "libusb-1.0-0") from None
    return rs


def _intrinsics(profile) -> Intrinsics:
    i = profile.as_video_stream_profile().get_intrinsics()
    return Intrinsics(i.width, i.height, i.fx, i.fy, i.ppx, i.ppy)


def stream_distortion(profile) -> tuple[float, ...]:
    """A stream's lens distortion as CameraInfo plumb_bob coefficients (k1, k2, p1, p2, k3); ()
    when it has none (the D435's colour stream reports zeros). librealsense's brown_conrady is
    plumb_bob; its other models are fitted to where librealsense projects a grid of points
    (its projection serves every model; its deprojection not modified_brown_conrady)."""
    rs = _rs()
    i = profile.as_video_stream_profile().get_intrinsics()
    coeffs = tuple(float(c) for c in i.coeffs[:5])
    if i.model == rs.distortion.none or not any(coeffs):
        return ()
    if i.model == rs.distortion.brown_conrady:
        return coeffs
    u, v = np.meshgrid(np.linspace(0, i.width - 1, 33), np.linspace(0, i.height - 1, 25))
    undistorted = (np.stack([u.ravel(), v.ravel()], 1) - [i.ppx, i.ppy]) / [i.fx, i.fy]
    pixels = np.array([rs.rs2_project_point_to_pixel(i, [float(x), float(y), 1.0]) for x, y in undistorted])
    return fit_plumb_bob(undistorted, (pixels - [i.ppx, i.ppy]) / [i.fx, i.fy])


class _PipelineSource:
    """Shared by device and bag playback: a pipeline with depth aligned to colour."""

    def __init__(self, config, width: int, height: int, fps: int, enable_streams: bool):
        rs = _rs()
        if enable_streams:
            config.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
            config.enable_stream(rs.stream.depth, width, height, rs.format.z16, fps)
        self.pipeline = rs.pipeline()
        profile = self.pipeline.start(config)
        self.depth_scale_mm = profile.get_device().first_depth_sensor().get_depth_scale() * 1000.0
        self.align = rs.align(rs.stream.color)
        color_profile = profile.get_stream(rs.stream.color)
        self.intrinsics = _intrinsics(color_profile)
        self.distortion = stream_distortion(color_profile)   # of colour and of the depth aligned to it
        self.max_skew_ms = 500.0 / max(color_profile.fps(), 1)  # half a frame period
        self.color_format = color_profile.format()
        depth_profile = profile.get_stream(rs.stream.depth)
        T_color_depth = np.eye(4)  # p_color = R p_depth + t; R stored column-major
        try:
            ext = depth_profile.get_extrinsics_to(color_profile)
            T_color_depth[:3, :3] = np.asarray(ext.rotation).reshape(3, 3).T
            T_color_depth[:3, 3] = ext.translation
        except RuntimeError:  # recordings without extrinsics: colour = depth frame
            pass
        self.T_depth_color = np.linalg.inv(T_color_depth)      # colour optical in depth optical
        # a recording of already aligned streams (the sim's) must not be re-aligned: rs.align
        # would punch holes into it
        if _intrinsics(depth_profile) == self.intrinsics and np.allclose(T_color_depth, np.eye(4)):
            self.align = None

    def read(self) -> Capture | None:
        rs = _rs()
        ok, frames = self.pipeline.try_wait_for_frames(100)
        if not ok:
            return None
        if self.align is not None:
            frames = self.align.process(frames)
        color, depth = frames.get_color_frame(), frames.get_depth_frame()
        if not color or not depth:
            return None
        if abs(color.get_timestamp() - depth.get_timestamp()) > self.max_skew_ms:
            return None  # not one frame (e.g. where a looping recording starts over)
        rgb = np.asanyarray(color.get_data()).copy()
        if self.color_format == rs.format.bgr8:
            rgb = rgb[:, :, ::-1].copy()
        elif self.color_format != rs.format.rgb8:
            raise RuntimeError(f"unsupported colour format {self.color_format} (need rgb8 or bgr8)")
        depth_mm = np.asanyarray(depth.get_data())
        if abs(self.depth_scale_mm - 1.0) > 1e-6:
            depth_mm = np.clip(np.round(depth_mm * self.depth_scale_mm), 0, 65535)
        return Capture(rgb, depth_mm.astype(np.uint16), int(color.get_frame_number()))

    def close(self):
        self.pipeline.stop()


class DeviceSource(_PipelineSource):
    def __init__(self, serial: str = "", width: int = 640, height: int = 480, fps: int = 30,
                 record_to: str = ""):
        rs = _rs()
        devices = [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]
        if not devices:
            raise RuntimeError("no RealSense device connected (use source:=bag or source:=sim)")
        if serial and serial not in devices:
            raise RuntimeError(f"RealSense {serial!r} not found; connected: {', '.join(devices)}")
        config = rs.config()
        if serial:
            config.enable_device(serial)
        if record_to:
            config.enable_record_to_file(record_to)
        super().__init__(config, width, height, fps, enable_streams=True)


class BagSource(_PipelineSource):
    def __init__(self, path: str, loop: bool = True):
        rs = _rs()
        import os
        if not path:
            raise FileNotFoundError("a bag source needs a recording: set bag_path (.bag, or .db3 from librealsense >= 2.57)")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"RealSense bag {path!r} not found")
        config = rs.config()
        config.enable_device_from_file(path, repeat_playback=loop)
        super().__init__(config, 0, 0, 0, enable_streams=False)
        # deliver every recorded frame at the node's rate instead of the recording's
        self.pipeline.get_active_profile().get_device().as_playback().set_real_time(False)


class SoftwareCamera:
    """A librealsense software device with a Z16 depth and an RGB8 colour sensor.

    ``push(color, depth_mm)`` feeds one frame pair and returns the pair as librealsense delivers
    it from its syncer (copies), or None if the syncer did not deliver both in time.
    ``record_to``: also record the streams with ``rs.recorder`` (librealsense 2.59 writes
    rosbag2 ``.db3`` files), playable with `BagSource`.
    """

    def __init__(self, intr: Intrinsics, fps: int = 30, record_to: str = ""):
        rs = _rs()
        self.intr, self.fps = intr, fps
        self.device = rs.software_device()
        rs_intr = rs.intrinsics()
        rs_intr.width, rs_intr.height = intr.width, intr.height
        rs_intr.fx, rs_intr.fy, rs_intr.ppx, rs_intr.ppy = intr.fx, intr.fy, intr.cx, intr.cy
        rs_intr.model, rs_intr.coeffs = rs.distortion.none, [0.0] * 5
        self.sensors, self.profiles = [], []
        for uid, (name, stream, fmt, bpp) in enumerate([("Depth", rs.stream.depth, rs.format.z16, 2),
                                                        ("Color", rs.stream.color, rs.format.rgb8, 3)]):
            sensor = self.device.add_sensor(name)
            vs = rs.video_stream()
            vs.type, vs.index, vs.uid, vs.fmt, vs.bpp = stream, 0, uid, fmt, bpp
            vs.width, vs.height, vs.fps, vs.intrinsics = intr.width, intr.height, fps, rs_intr
            self.profiles.append(sensor.add_video_stream(vs))
            self.sensors.append(sensor)
        self.sensors[0].add_read_only_option(rs.option.depth_units, 0.001)
        self.device.create_matcher(rs.matchers.default)
        self.syncer = rs.syncer()
        self.recorder = rs.recorder(record_to, self.device) if record_to else None
        self._started = self.recorder.query_sensors() if self.recorder else self.sensors
        for sensor, profile in zip(self._started, self.profiles):
            sensor.open(profile)
            sensor.start(self.syncer)
        self.frame_number = 0

    def push(self, color: np.ndarray, depth_mm: np.ndarray, timeout_ms: int = 1000):
        # The syncer bonds the two streams on the first pair, which may come out split: then
        # the pair is pushed once more (with the next frame number).
        out = self._push(color, depth_mm, timeout_ms)
        return out if out is not None or self.frame_number > 1 else self._push(color, depth_mm, timeout_ms)

    def _push(self, color: np.ndarray, depth_mm: np.ndarray, timeout_ms: int):
        rs = _rs()
        h, w = self.intr.height, self.intr.width
        if color.shape != (h, w, 3) or color.dtype != np.uint8:
            raise ValueError(f"colour must be ({h}, {w}, 3) uint8, got {color.shape} {color.dtype}")
        if depth_mm.shape != (h, w) or depth_mm.dtype != np.uint16:
            raise ValueError(f"depth must be ({h}, {w}) uint16 mm, got {depth_mm.shape} {depth_mm.dtype}")
        self.frame_number += 1
        stamp_ms = self.frame_number * 1000.0 / self.fps
        for sensor, profile, arr, bpp in zip(self.sensors, self.profiles, (depth_mm, color), (2, 3)):
            f = rs.software_video_frame()
            f.pixels, f.stride, f.bpp = np.ascontiguousarray(arr), w * bpp, bpp
            f.timestamp, f.domain = stamp_ms, rs.timestamp_domain.hardware_clock
            f.frame_number, f.profile = self.frame_number, profile.as_video_stream_profile()
            sensor.on_video_frame(f)
        while True:
            ok, frames = self.syncer.try_wait_for_frames(timeout_ms)
            if not ok:
                return None
            d, c = frames.get_depth_frame(), frames.get_color_frame()
            if d and c and d.get_frame_number() == c.get_frame_number() == self.frame_number:
                return (np.asanyarray(c.get_data()).copy(), np.asanyarray(d.get_data()).copy())
            if timeout_ms > 300:  # a split first pair: do not wait the full time for its partner
                timeout_ms = 300

    def close(self):
        for sensor in self._started:
            sensor.stop()
            sensor.close()
        self.recorder = None  # finalises the recording


class SimSource:
    """Synthetic D435 frames: smooth camera sequences over random table scenes.

    ``sequence_length`` frames per scene (then a new scene); ``n_objects`` per scene (0 =
    random); ``sensor_noise`` switches the D435 depth noise model; ``seed`` fixes everything.
    """

    def __init__(self, seed: int = 0, n_objects: int = 0, sequence_length: int = 30,
                 sensor_noise: bool = True, intr: Intrinsics | None = None, record_to: str = ""):
        from genpose_ros.data.camera import D435_640x480
        from genpose_ros.data.render import Renderer
        from genpose_ros.data.sensor import SensorModel

        self.intr = intr or D435_640x480
        self.rng = np.random.default_rng(seed)
        self.n_objects = n_objects or None
        self.sequence_length = max(1, int(sequence_length))
        self.renderer = Renderer(self.intr, sensor=SensorModel() if sensor_noise else None)
        self.camera = SoftwareCamera(self.intr, record_to=record_to)
        self.intrinsics, self.distortion = self.intr, ()
        self._sequence, self._index = None, 0

    def _next_frame(self):
        from genpose_ros.data.scenes import sample_sequence

        if self._sequence is None or self._index >= self.sequence_length:
            self._sequence = sample_sequence(self.rng, self.sequence_length, n_objects=self.n_objects)
            self._index = 0
        frame = render_sequence_frame(self.renderer, self._sequence, self._index, self.rng)
        self._index += 1
        return frame

    def read(self) -> Capture | None:
        frame = self._next_frame()
        out = self.camera.push(frame.color, frame.depth)
        if out is None:
            return None
        color, depth = out
        return Capture(color, depth, self.camera.frame_number, ground_truth=frame)

    def close(self):
        self.camera.close()


def render_sequence_frame(renderer, sequence, index: int, rng):
    """Frame ``index`` of a `genpose_ros.data.scenes.Sequence`."""
    scene, T_world_cam = sequence.frame(index)
    return renderer.render(scene, T_world_cam, rng)
