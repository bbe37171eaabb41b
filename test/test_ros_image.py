"""Image <-> ndarray and CameraInfo -> intrinsics at the ROS boundary (real message types)."""
from __future__ import annotations

import array
import math

import cv2
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from depth_diffusion_ros.geometry.depth_codecs import decode_depth, encode_depth
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.ros import (
    ImageBuilder,
    InputError,
    array_to_image,
    camera_info_to_intrinsics,
    depth_from_image,
    depth_to_image,
    image_to_array,
    intrinsics_to_camera_info,
    rgb_from_image,
)

KITTI_P2 = [721.5377, 0.0, 609.5593, 44.85728, 0.0, 721.5377, 172.854, 0.2163791, 0.0, 0.0, 1.0, 0.002745884]


@pytest.fixture(scope="module")
def kitti_rgb(kitti_raw_dir):
    bgr = cv2.imread(str(kitti_raw_dir / "raw/sync_rect/cam_02.png"), cv2.IMREAD_COLOR)
    assert bgr is not None and bgr.shape == (375, 1242, 3)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _manual_image(arr: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """Build an Image by hand with ``pad`` extra bytes per row, independent of array_to_image."""
    a = np.ascontiguousarray(arr)
    if bigendian:
        a = a.astype(a.dtype.newbyteorder(">"))
    h = a.shape[0]
    row = a.reshape(h, -1).view(np.uint8).reshape(h, -1)
    padded = np.concatenate([row, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=h, width=a.shape[1], encoding=encoding, is_bigendian=int(bigendian),
                step=padded.shape[1])
    msg.data = array.array("B", padded.tobytes())
    return msg


def test_rgb8_round_trip_real_kitti_frame(kitti_rgb):
    header = Header(frame_id="camera_color_left")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = array_to_image(kitti_rgb, "rgb8", header)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (375, 1242, 1242 * 3, "rgb8")
    wire = deserialize_message(serialize_message(msg), Image)
    assert wire.header.frame_id == "camera_color_left" and wire.header.stamp.nanosec == 345
    np.testing.assert_array_equal(rgb_from_image(wire), kitti_rgb)
    np.testing.assert_array_equal(image_to_array(wire), kitti_rgb)


def test_bgr8_and_mono8_become_rgb(kitti_rgb):
    bgr = np.ascontiguousarray(kitti_rgb[:, :, ::-1])
    np.testing.assert_array_equal(rgb_from_image(array_to_image(bgr, "bgr8")), kitti_rgb)
    # image_to_array keeps the encoded order
    np.testing.assert_array_equal(image_to_array(array_to_image(bgr, "bgr8")), bgr)
    grey = kitti_rgb[:, :, 1].copy()
    rgb = rgb_from_image(array_to_image(grey, "mono8"))
    assert rgb.shape == (375, 1242, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], grey)


@pytest.mark.parametrize("encoding,dtype", [("rgb8", np.uint8), ("mono8", np.uint8),
                                            ("16UC1", np.uint16), ("32FC1", np.float32)])
@pytest.mark.parametrize("bigendian", [False, True])
def test_step_padding_and_byte_order(encoding, dtype, bigendian):
    rng = np.random.default_rng(0)
    shape = (7, 11, 3) if encoding == "rgb8" else (7, 11)
    if dtype == np.float32:
        arr = rng.uniform(0.5, 80.0, shape).astype(dtype)
    else:
        arr = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    msg = _manual_image(arr, encoding, pad=5, bigendian=bigendian)
    out = image_to_array(msg)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_depth_decoding_16uc1_and_32fc1():
    mm = np.array([[0, 1000, 65535], [2500, 0, 1]], np.uint16)
    d = depth_from_image(array_to_image(mm, "16UC1"))
    np.testing.assert_allclose(d, [[0, 1.0, 65.535], [2.5, 0, 0.001]], rtol=1e-6)
    m = np.array([[np.nan, 1.5, np.inf], [-1.0, 0.0, 80.0]], np.float32)
    d = depth_from_image(array_to_image(m, "32FC1"))
    np.testing.assert_array_equal(d, np.array([[0, 1.5, 0], [0, 0, 80.0]], np.float32))
    assert d.dtype == np.float32
    # the bit-selecting 32FC1 path gives decode_depth's result, bit for bit (-0.0 -> +0.0)
    rng = np.random.default_rng(4)
    m = rng.uniform(-2.0, 90.0, (40, 60)).astype(np.float32)
    m[rng.random(m.shape) < 0.5] = np.nan
    m[0, :4] = [np.inf, -np.inf, -0.0, 1e-42]
    for big in (False, True):
        msg = _manual_image(m, "32FC1", pad=8, bigendian=big)
        assert depth_from_image(msg).tobytes() == decode_depth(m, "32FC1").tobytes()


def test_depth_to_image_uses_nan_for_invalid():
    depth = np.array([[0.0, 2.0], [3.5, 0.0]], np.float32)
    msg = depth_to_image(depth, Header(frame_id="cam"))
    assert msg.encoding == "32FC1" and msg.step == 8 and msg.header.frame_id == "cam"
    out = image_to_array(msg)
    assert math.isnan(out[0, 0]) and math.isnan(out[1, 1])
    assert out[0, 1] == 2.0 and out[1, 0] == 3.5
    np.testing.assert_array_equal(depth_from_image(msg), depth)



def test_image_builder_reuses_one_message_and_matches_the_functions(kitti_rgb):
    """Same bytes as array_to_image / depth_to_image; one message per size and encoding."""
    builder = ImageBuilder()
    rng = np.random.default_rng(2)
    first = None
    for i in range(3):
        depth = rng.uniform(0.5, 80.0, (375, 1242)).astype(np.float32)
        depth[rng.random(depth.shape) < 0.5] = 0.0
        depth[0, :4] = [np.nan, np.inf, -3.0, 0.0]
        header = Header(frame_id=f"cam{i}")
        msg = builder.depth(depth, header)
        first = first or msg
        assert msg is first and msg.header.frame_id == f"cam{i}"
        # the REP 118 encoding of geometry.depth_codecs, packed by array_to_image
        ref = array_to_image(encode_depth(depth, "32FC1"), "32FC1", header)
        assert (msg.encoding, msg.step, msg.is_bigendian) == (ref.encoding, ref.step, ref.is_bigendian)
        assert bytes(msg.data) == bytes(ref.data) == bytes(depth_to_image(depth, header).data)
    back = deserialize_message(serialize_message(first), Image)
    np.testing.assert_array_equal(depth_from_image(back), np.where(np.isfinite(depth) & (depth > 0), depth, 0))
    colour = builder.image(kitti_rgb, "rgb8", Header(frame_id="rgb"))
    assert colour is not first and bytes(colour.data) == bytes(array_to_image(kitti_rgb, "rgb8").data)
    np.testing.assert_array_equal(rgb_from_image(colour), kitti_rgb)
    assert builder.depth(depth[:, :, None].astype(np.float64)).width == 1242  # (H, W, 1) float64
    with pytest.raises(ValueError, match=r"needs a \(H, W, 3\) uint8 array"):
        builder.image(depth, "rgb8")
    with pytest.raises(ValueError, match="must be a \\(H, W\\) image"):
        builder.depth(np.zeros((2, 3, 4), np.float32))


@pytest.mark.parametrize("encoding", ["rgba8", "bayer_rggb8", "yuv422", "16SC1", ""])
def test_unknown_encoding_is_named(encoding):
    msg = Image(height=2, width=2, encoding=encoding, step=8)
    msg.data = array.array("B", bytes(16))
    with pytest.raises(InputError, match=repr(encoding)) as err:
        image_to_array(msg)
    assert err.value.reason == "bad_encoding"


def test_wrong_kind_of_encoding_is_named():
    depth_msg = array_to_image(np.ones((2, 2), np.float32), "32FC1")
    with pytest.raises(InputError, match="'32FC1' is not a colour encoding"):
        rgb_from_image(depth_msg)
    rgb_msg = array_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8")
    with pytest.raises(InputError, match="'rgb8' is not supported") as err:
        depth_from_image(rgb_msg)
    assert err.value.reason == "bad_encoding"


def test_malformed_layouts_are_rejected():
    msg = Image(height=4, width=4, encoding="rgb8", step=10)
    msg.data = array.array("B", bytes(40))
    with pytest.raises(InputError, match="step 10 is smaller than one row") as err:
        image_to_array(msg)
    assert err.value.reason == "malformed_image"
    msg = Image(height=4, width=4, encoding="16UC1", step=8)
    msg.data = array.array("B", bytes(31))
    with pytest.raises(InputError, match="31 bytes but 4x4 16UC1 with step 8 needs 32"):
        image_to_array(msg)
    with pytest.raises(InputError, match="empty") as err:
        image_to_array(Image(height=0, width=0, encoding="mono8"))
    assert err.value.reason == "empty_image"


def test_array_to_image_rejects_mismatched_dtype():
    with pytest.raises(ValueError, match="16UC1 image needs"):
        array_to_image(np.zeros((2, 2), np.float32), "16UC1")
    with pytest.raises(ValueError, match="rgb8 image needs"):
        array_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ValueError, match="'rgba8'"):
        array_to_image(np.zeros((2, 2, 4), np.uint8), "rgba8")


def _kitti_camera_info(width=1242, height=375) -> CameraInfo:
    ci = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    ci.header.frame_id = "camera_color_left"
    ci.k = [721.5377, 0.0, 609.5593, 0.0, 721.5377, 172.854, 0.0, 0.0, 1.0]
    ci.p = KITTI_P2
    ci.r = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    ci.d = [0.0] * 5
    return ci


def test_camera_info_uses_p_for_rectified_and_k_otherwise():
    ci = _kitti_camera_info()
    ci.k = [700.0, 0.0, 600.0, 0.0, 700.0, 170.0, 0.0, 0.0, 1.0]
    intr = camera_info_to_intrinsics(ci)
    assert intr == Intrinsics(721.5377, 721.5377, 609.5593, 172.854, 1242, 375)
    ci.p = [0.0] * 12
    assert camera_info_to_intrinsics(ci).fx == 700.0


@pytest.mark.parametrize("field,index,value,reason", [
    ("p", 0, float("nan"), "non_finite_intrinsics"),
    ("k", 2, float("inf"), "non_finite_intrinsics"),
])
def test_non_finite_intrinsics_raise_input_error(field, index, value, reason):
    ci = _kitti_camera_info()
    vals = list(getattr(ci, field))
    vals[index] = value
    setattr(ci, field, vals)
    with pytest.raises(InputError, match="non-finite") as err:
        camera_info_to_intrinsics(ci)
    assert err.value.reason == reason


def test_uncalibrated_or_empty_camera_info_is_rejected():
    with pytest.raises(InputError, match="camera_info") as err:
        camera_info_to_intrinsics(CameraInfo(width=640, height=480))
    assert err.value.reason == "bad_camera_info"
    ci = _kitti_camera_info(width=0, height=0)
    with pytest.raises(InputError, match="size"):
        camera_info_to_intrinsics(ci)


def test_intrinsics_to_camera_info_full_and_scaled():
    src = _kitti_camera_info()
    intr = camera_info_to_intrinsics(src)
    out = intrinsics_to_camera_info(intr, src.header, source=src)
    np.testing.assert_allclose(out.p, src.p, rtol=1e-12)
    assert camera_info_to_intrinsics(out) == intr
    half = intr.scaled(621, 188)
    out = intrinsics_to_camera_info(half, Header(frame_id="x"), source=src)
    assert (out.width, out.height) == (621, 188)
    assert camera_info_to_intrinsics(out) == half
    assert out.p[3] == pytest.approx(KITTI_P2[3] * half.fx / KITTI_P2[0])
    wire = deserialize_message(serialize_message(out), CameraInfo)
    assert list(wire.k) == list(out.k)





def test_same_as_cv_bridge_where_available(kitti_rgb):
    """On a real ROS install our conversions must equal cv_bridge's (skipped where it is absent)."""
    try:
        from cv_bridge import CvBridge
    except ImportError:
        pytest.skip("cv_bridge is not importable here (no ROS install); parity runs on real ROS installs")
    bridge = CvBridge()
    depth = np.where(kitti_rgb[:, :, 0] > 128, kitti_rgb[:, :, 1].astype(np.float32) / 3.0, np.nan).astype(np.float32)
    mm = (np.nan_to_num(depth) * 1000).astype(np.uint16)
    for arr, enc in [(kitti_rgb, "rgb8"), (kitti_rgb[:, :, ::-1].copy(), "bgr8"),
                     (kitti_rgb[:, :, 0].copy(), "mono8"), (mm, "16UC1"), (depth, "32FC1")]:
        theirs = bridge.cv2_to_imgmsg(arr, encoding=enc)
        ours = array_to_image(arr, enc)
        assert (ours.height, ours.width, ours.step, ours.encoding, ours.is_bigendian) == (
            theirs.height, theirs.width, theirs.step, theirs.encoding, theirs.is_bigendian)
        assert bytes(ours.data) == bytes(theirs.data)
        np.testing.assert_array_equal(image_to_array(theirs), bridge.imgmsg_to_cv2(theirs))
