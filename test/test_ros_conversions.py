"""Message conversions and the masks pair: round trips and named errors."""
import numpy as np
import pytest


from std_msgs.msg import Header  # noqa: E402

from genpose_ros.data.camera import D435_640x480  # noqa: E402
from genpose_ros.ros.conversions import (ImageConversionError, camera_info_to_intrinsics,  # noqa: E402
                                         detections_from_msg, detections_to_msg,
                                         hypotheses_to_pose_array, image_to_numpy, image_to_rgb,
                                         intrinsics_to_camera_info, markers_to_msg, numpy_to_image,
                                         camera_info_distortion)
from genpose_ros.ros.frame_input import InputProblem, read_depth_mm  # noqa: E402
from genpose_ros.ros.masks import (MaskMessageError, decode_masks, encode_masks,  # noqa: E402
                                   instance_image_from_masks)
from genpose_ros.overlay import draw_overlay  # noqa: E402


@pytest.mark.parametrize("encoding,shape,dtype", [
    ("rgb8", (4, 5, 3), np.uint8), ("bgr8", (4, 5, 3), np.uint8), ("mono8", (4, 5), np.uint8),
    ("16UC1", (4, 5), np.uint16), ("mono16", (4, 5), np.uint16), ("32FC1", (4, 5), np.float32)])
def test_image_round_trip(encoding, shape, dtype):
    a = (np.random.default_rng(0).random(shape) * 200).astype(dtype)
    msg = numpy_to_image(a, encoding, Header(frame_id="f"))
    assert (msg.encoding, msg.width, msg.height, msg.header.frame_id) == (encoding, 5, 4, "f")
    np.testing.assert_array_equal(image_to_numpy(msg), a)


def test_image_padding_and_big_endian():
    a = np.arange(12, dtype=np.uint16).reshape(3, 4)
    msg = numpy_to_image(a, "16UC1")
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(3, 8)
    msg.data = np.hstack([rows, np.zeros((3, 4), np.uint8)]).tobytes()   # 4 padding bytes per row
    msg.step = 12
    np.testing.assert_array_equal(image_to_numpy(msg), a)
    msg = numpy_to_image(a, "16UC1")
    msg.data, msg.is_bigendian = a.astype(">u2").tobytes(), 1
    np.testing.assert_array_equal(image_to_numpy(msg), a)


def test_image_errors_name_the_problem():
    msg = numpy_to_image(np.zeros((4, 5, 3), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="wrong encoding 'rgb8'.*expected 16UC1"):
        image_to_numpy(msg, ("16UC1",))
    msg.height = 5
    with pytest.raises(ImageConversionError, match="60 bytes, expected height 5 x step 15 = 75"):
        image_to_numpy(msg)
    msg.encoding = "yuv422"
    with pytest.raises(ImageConversionError, match="unsupported encoding 'yuv422'"):
        image_to_numpy(msg)
    with pytest.raises(ImageConversionError, match="needs dtype uint16"):
        numpy_to_image(np.zeros((2, 2), np.float32), "16UC1")
    with pytest.raises(ImageConversionError, match=r"shape \(H, W, 3\)"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")


def test_camera_info_round_trip_and_errors():
    info = intrinsics_to_camera_info(D435_640x480)
    assert camera_info_to_intrinsics(info) == D435_640x480 and camera_info_distortion(info) == ()
    barrel = (-0.12, 0.05, 0.001, -0.0015, 0.0)
    assert camera_info_distortion(intrinsics_to_camera_info(D435_640x480, distortion=barrel)) == barrel
    info.d = [0.1, float("nan"), 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"invalid plumb_bob coefficients \[0.1, nan"):
        camera_info_distortion(info)
    info.k[0] = 0.0
    with pytest.raises(ValueError, match="invalid K"):
        camera_info_to_intrinsics(info)


def test_colour_encodings_to_rgb():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    alpha = np.full((2, 3, 1), 7, np.uint8)
    for enc, img in (("rgb8", rgb), ("bgr8", rgb[:, :, ::-1]), ("rgba8", np.dstack([rgb, alpha])),
                     ("bgra8", np.dstack([rgb[:, :, ::-1], alpha]))):
        np.testing.assert_array_equal(image_to_rgb(numpy_to_image(np.ascontiguousarray(img), enc)),
                                      rgb, err_msg=enc)
    grey = image_to_rgb(numpy_to_image(rgb[:, :, 0].copy(), "mono8"))
    assert grey.shape == (2, 3, 3) and np.array_equal(grey[:, :, 2], rgb[:, :, 0])
    with pytest.raises(ImageConversionError, match="wrong encoding 'mono8'"):
        image_to_rgb(numpy_to_image(rgb[:, :, 0].copy(), "mono8"), ("rgb8", "bgr8"))
    with pytest.raises(ImageConversionError, match=r"bgra8 needs an array of shape \(H, W, 4\)"):
        numpy_to_image(rgb, "bgra8")


def test_depth_reading():
    m = numpy_to_image(np.full((2, 3), 0.5, np.float32), "32FC1")
    depth, note = read_depth_mm(m)
    np.testing.assert_array_equal(depth, np.full((2, 3), 500, np.uint16))
    assert note is None
    nan = numpy_to_image(np.full((2, 3), np.nan, np.float32), "32FC1")
    with pytest.raises(InputProblem, match="6 of 6 pixels NaN"):
        read_depth_mm(nan)


def test_detections_markers_hypotheses():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    R = (q * np.sign(np.linalg.det(q)))[None]
    t, size = np.array([[0.1, -0.05, 0.7]]), np.array([[0.08, 0.12, 0.08]])
    h = Header(frame_id="camera_color_optical_frame")
    msg = detections_to_msg(h, ["mug_0"], ["mug"], R, t, size, [0.8])
    back = detections_from_msg(msg)[0]
    assert (back["id"], back["category"]) == ("mug_0", "mug") and back["score"] == pytest.approx(0.8)
    np.testing.assert_allclose(back["R"], R[0], atol=1e-9)
    np.testing.assert_allclose(back["size"], size[0])
    markers = markers_to_msg(h, ["mug_0"], ["mug"], R, t, size).markers
    assert [m.ns for m in markers] == ["", "boxes", "axes", "labels"] and markers[0].action == 3
    assert markers[1].scale.x == pytest.approx(0.08) and len(markers[2].points) == 6
    T = np.tile(np.eye(4), (2, 3, 1, 1))
    assert len(hypotheses_to_pose_array(h, T).poses) == 6


def test_masks_pair_round_trip_and_overlap():
    a = np.zeros((6, 8), bool)
    a[1:4, 1:5] = True
    b = np.zeros((6, 8), bool)
    b[2:5, 3:7] = True
    ids = instance_image_from_masks([a, b], [0.4, 0.9])     # b wins the overlap
    assert ids[2, 3] == 2 and ids[1, 1] == 1
    h = Header(frame_id="cam")
    h.stamp.sec = 5
    image, dets = encode_masks(ids, [(1, "mug", 0.4), (2, "bowl", 0.9)], h)
    assert image.encoding == "mono16" and dets.header.stamp.sec == 5
    box = dets.detections[1].bbox
    assert (box.center.position.x, box.center.position.y, box.size_x, box.size_y) == (4.5, 3.0, 4, 3)
    out = decode_masks(image, dets)
    assert [(i.instance_id, i.category) for i in out] == [(1, "mug"), (2, "bowl")]
    np.testing.assert_array_equal(out[1].mask, b)


def test_masks_pair_errors():
    h = Header(frame_id="cam")
    image, dets = encode_masks(np.ones((2, 2), np.uint16), [(1, "mug", 1.0)], h)
    dets.header.stamp.sec = 3
    with pytest.raises(MaskMessageError, match="differs from detections stamp"):
        decode_masks(image, dets)
    dets.header.stamp.sec = 0
    dets.detections[0].id = "mug"
    with pytest.raises(MaskMessageError, match="not an instance id"):
        decode_masks(image, dets)
    with pytest.raises(MaskMessageError, match="listed twice"):
        encode_masks(np.ones((2, 2), np.uint16), [(1, "mug", 1.0), (1, "can", 1.0)], h)
    with pytest.raises(MaskMessageError, match="0 is background"):
        encode_masks(np.ones((2, 2), np.uint16), [(0, "mug", 1.0)], h)
    image.encoding = "rgb8"
    with pytest.raises(MaskMessageError, match="masks image"):
        decode_masks(image, encode_masks(np.ones((2, 2), np.uint16), [(1, "mug", 1.0)], h)[1])


def test_overlay_draws_inside_the_image():
    rgb = np.zeros((480, 640, 3), np.uint8)
    out = draw_overlay(rgb, D435_640x480.matrix(), np.eye(3)[None], np.array([[0, 0, 0.6]]),
                       np.array([[0.1, 0.1, 0.1]]), ["mug_0 0.9"], ["mug"])
    assert out.shape == rgb.shape and out.any() and not rgb.any()
    behind = draw_overlay(rgb, D435_640x480.matrix(), np.eye(3)[None], np.array([[0, 0, -0.6]]),
                          np.array([[0.1, 0.1, 0.1]]), ["x"], ["mug"])
    assert not behind.any()
