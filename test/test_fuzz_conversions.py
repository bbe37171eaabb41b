"""Property-based fuzzing (hypothesis) of everything that turns received bytes into arrays.

Random Image, CameraInfo and PointCloud2 fields — encodings, sizes, steps, endianness, NaN/inf,
huge declared sizes with tiny data, field layouts — go through the ROS boundary's conversions,
the bag tools' decoders, the completion / super-resolution pipelines and the synchroniser.
Whatever comes in, each either returns a well-formed result or raises the package's named
error (InputError at the ROS boundary, BagError in the bag tools, FrameError in the pipelines);
nothing else may escape. Settings: ``fuzz_settings.py`` (``make fuzz`` runs many more examples).
"""
from __future__ import annotations

import array
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

import fuzz_settings  # registers and loads the profile
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.inference.backends import make_completion_backend, make_super_resolution_backend
from depth_diffusion_ros.inference.errors import FrameError
from depth_diffusion_ros.inference.pipelines import CompletionPipeline, SuperResolutionPipeline
from depth_diffusion_ros.ros import (
    ENCODINGS,
    ApproximateTimeSynchronizer,
    InputError,
    camera_info_to_intrinsics,
    depth_from_image,
    image_to_array,
    pointcloud2_to_xyz,
    rgb_from_image,
    stamp_to_ns,
)
from depth_diffusion_ros.tools import bag_io

U32 = 2**32 - 1
sizes = st.one_of(st.integers(0, 24), st.sampled_from([1242, 375, 65535, 2**31, U32]), st.integers(0, U32))
encodings = st.one_of(st.sampled_from(list(ENCODINGS) + ["mono16", "rgba8", "8UC1", "yuv422", "32FC3", ""]),
                      st.text(max_size=12))
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
odd_floats = st.one_of(floats, st.sampled_from([0.0, -0.0, 1e-300, 1e300, 5e-324, 1e9, -1e9, 721.5, 609.6]))
raw = st.binary(max_size=2048)
depth_values = st.one_of(st.floats(width=32), st.sampled_from([0.0, 1e-45, 1e-38, 1e-7, 1e30, 3.4e38, -1.0]))


@st.composite
def images(draw) -> Image:
    """An Image with random fields; half the time data of the declared size (so decoding runs)."""
    msg = Image(height=draw(sizes), width=draw(sizes), encoding=draw(encodings),
                is_bigendian=draw(st.integers(0, 255)))
    h, w = msg.height, msg.width
    dtype, channels = ENCODINGS.get(msg.encoding, (np.dtype(np.uint8), 1))
    row = w * channels * dtype.itemsize
    consistent = h * row <= 1 << 16 and draw(st.booleans())
    msg.step = (row + draw(st.integers(0, 3))) & U32 if consistent else draw(sizes)
    if consistent and h * msg.step <= 1 << 16:
        if dtype == np.float32 and draw(st.booleans()):  # NaN, inf, denormals, huge and negative depths
            values = draw(hnp.arrays(np.float32, h * msg.step // 4, elements=depth_values))
            data = values.tobytes() + bytes(h * msg.step % 4)
        else:
            data = draw(st.binary(min_size=h * msg.step, max_size=h * msg.step))
        data += draw(st.sampled_from([b"", b"", b"\x00"]))  # sometimes one byte too many
    else:
        data = draw(raw)
    msg.data = array.array("B", data)
    return msg


@given(images())
def test_image_decoders_return_arrays_or_raise_input_error(msg: Image) -> None:
    for decode in (image_to_array, rgb_from_image, depth_from_image):
        try:
            out = decode(msg)
        except InputError as exc:
            assert exc.reason in ("bad_encoding", "empty_image", "malformed_image")
            continue
        assert out.shape[:2] == (msg.height, msg.width)
        if decode is depth_from_image:
            assert out.dtype == np.float32 and np.all(np.isfinite(out)) and np.all(out >= 0)
        if decode is rgb_from_image:
            assert out.dtype == np.uint8 and out.shape[2] == 3


@st.composite
def camera_infos(draw) -> CameraInfo:
    plausible = st.floats(0.5, 5000.0)
    pick = st.one_of(odd_floats, plausible)
    msg = CameraInfo(width=draw(sizes), height=draw(sizes), binning_x=draw(st.sampled_from([0, 1, 2, 3, 2**31, U32])),
                     binning_y=draw(st.integers(0, 4)))
    msg.distortion_model = draw(st.one_of(st.sampled_from(["plumb_bob", "rational_polynomial", "equidistant", "",
                                                           "fisheye62", "kannala_brandt8"]), st.text(max_size=8)))
    msg.d = draw(st.lists(odd_floats, max_size=15))
    fx, fy, cx, cy = draw(pick), draw(pick), draw(pick), draw(pick)
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0] if draw(st.booleans()) else draw(st.lists(odd_floats, min_size=9,
                                                                                                max_size=9))
    msg.p = draw(st.one_of(st.just([0.0] * 12), st.just([fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]),
                           st.lists(odd_floats, min_size=12, max_size=12)))
    msg.roi.x_offset, msg.roi.y_offset = draw(sizes), draw(sizes)
    msg.roi.width, msg.roi.height = draw(sizes), draw(sizes)
    return msg


@given(camera_infos())
def test_camera_info_gives_usable_intrinsics_or_an_input_error(msg: CameraInfo) -> None:
    try:
        intr = camera_info_to_intrinsics(msg)
    except InputError as exc:
        assert exc.reason in ("non_finite_intrinsics", "unsupported_distortion_model", "bad_camera_info")
        return
    assert all(math.isfinite(v) for v in (intr.fx, intr.fy, intr.cx, intr.cy))
    assert intr.fx > 0 and intr.fy > 0 and 0 < intr.width <= msg.width and 0 < intr.height <= msg.height


FIELD_NAMES = st.sampled_from(["x", "y", "z", "intensity", "ring", "t", "rgb"])


@st.composite
def clouds(draw) -> PointCloud2:
    fields = [PointField(name=draw(FIELD_NAMES), offset=draw(st.integers(0, 40)), datatype=draw(st.integers(0, 10)),
                         count=draw(st.integers(0, 3))) for _ in range(draw(st.integers(0, 6)))]
    if draw(st.booleans()):  # often a plausible x, y, z so the reader gets past the layout checks
        fields += [PointField(name=n, offset=o, datatype=draw(st.sampled_from([7, 8])), count=1)
                   for n, o in zip("xyz", (0, 8, 16))]
    msg = PointCloud2(height=draw(sizes), width=draw(sizes), point_step=draw(st.integers(0, 48)),
                      is_bigendian=draw(st.booleans()), is_dense=draw(st.booleans()))
    msg.fields = fields
    n = msg.height * msg.width
    consistent = n * msg.point_step <= 1 << 15 and draw(st.booleans())
    msg.row_step = (msg.width * msg.point_step + draw(st.integers(0, 4))) & U32 if consistent else draw(sizes)
    size = msg.height * msg.row_step
    data = draw(st.binary(min_size=size, max_size=size)) if consistent and size <= 1 << 15 else draw(raw)
    msg.data = array.array("B", data)
    return msg


@given(clouds())
def test_pointcloud_reader_returns_finite_points_or_raises_input_error(msg: PointCloud2) -> None:
    try:
        xyz = pointcloud2_to_xyz(msg)
    except InputError as exc:
        assert exc.reason == "malformed_points"
        return
    assert xyz.dtype == np.float32 and xyz.ndim == 2 and xyz.shape[1] == 3
    assert xyz.shape[0] <= msg.width * msg.height and np.all(np.isfinite(xyz))


TYPES = get_typestore(Stores.ROS2_HUMBLE).types


def _as_rosbags(msg, msgtype: str):
    """The same fields as a rosbags message object (what the bag tools decode)."""
    t = TYPES
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id="f")
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if msgtype == "image":
        return t["sensor_msgs/msg/Image"](header=header, height=msg.height, width=msg.width, encoding=msg.encoding,
                                         is_bigendian=msg.is_bigendian, step=msg.step, data=data)
    fields = [t["sensor_msgs/msg/PointField"](name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
              for f in msg.fields]
    return t["sensor_msgs/msg/PointCloud2"](header=header, height=msg.height, width=msg.width, fields=fields,
                                           is_bigendian=msg.is_bigendian, point_step=msg.point_step,
                                           row_step=msg.row_step, data=data, is_dense=msg.is_dense)


@given(images(), clouds(), raw)
def test_bag_decoders_raise_only_bag_error(image: Image, cloud: PointCloud2, cdr: bytes) -> None:
    img = _as_rosbags(image, "image")
    for decode in (bag_io.image_msg_to_array, bag_io.image_msg_to_rgb, bag_io.depth_msg_to_array):
        try:
            decode(img)
        except bag_io.BagError:
            pass
    try:
        pts = bag_io.pointcloud_msg_to_array(_as_rosbags(cloud, "cloud"), ("x", "y", "z", "intensity"))
        assert pts.shape[1] == 4 and np.all(np.isfinite(pts[:, :3]))
    except bag_io.BagError:
        pass
    for msgtype in (bag_io.IMAGE, bag_io.CAMERA_INFO, bag_io.POINTCLOUD2, bag_io.TF_MESSAGE):
        try:
            bag_io.deserialize(cdr, msgtype, "/fuzz")
        except bag_io.BagError:
            pass




@st.composite
def frames(draw) -> tuple[np.ndarray, np.ndarray]:
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    rgb = draw(hnp.arrays(np.uint8, (h, w, 3)))
    depth = draw(hnp.arrays(np.float32, (h, w), elements=depth_values))
    return rgb, depth


@pytest.mark.parametrize("backend", ["nearest", "ip_basic"])
@settings(max_examples=60 if not fuzz_settings.LONG else 2000)
@given(frame=frames())
def test_completion_returns_finite_depth_in_range_or_raises_frame_error(backend: str, frame) -> None:
    rgb, sparse = frame
    pipe = CompletionPipeline(make_completion_backend(backend), min_depth=0.1, max_depth=100.0)
    try:
        out = pipe(rgb, sparse, Intrinsics(5.0, 5.0, rgb.shape[1] / 2, rgb.shape[0] / 2, rgb.shape[1], rgb.shape[0]))
    except FrameError as exc:
        assert exc.reason == "empty_sparse_depth"
        return
    assert out.depth.shape == sparse.shape and np.all(np.isfinite(out.depth))
    assert np.all(out.depth <= 100.0 + 1e-3)  # nothing beyond max_depth was used


@settings(max_examples=60 if not fuzz_settings.LONG else 2000)
@given(frame=frames(), scale=st.integers(1, 5))
def test_super_resolution_returns_depth_or_raises_frame_error(frame, scale: int) -> None:
    rgb, depth = frame
    lr = depth[::scale, ::scale] if scale > 1 else depth
    pipe = SuperResolutionPipeline(make_super_resolution_backend("guided_filter"))
    try:
        out = pipe(np.ascontiguousarray(rgb), np.ascontiguousarray(lr))
    except FrameError as exc:
        assert exc.reason in ("bad_scale", "scale_out_of_range", "empty_depth_lr", "size_mismatch", "bad_frame")
        return
    assert out.depth.shape == rgb.shape[:2]


def _msg(kind: str, t_ns: int, ok: bool):
    m = Image() if kind == "image" else CameraInfo()
    m.header.stamp.sec, m.header.stamp.nanosec = divmod(t_ns, 10**9)
    m.header.frame_id = "ok" if ok else "bad"
    return m


@given(st.lists(st.tuples(st.sampled_from(["image", "camera_info"]),
                          st.one_of(st.integers(-5 * 10**9, 2 * 10**9), st.integers(0, 2**62))), max_size=30))
def test_no_interleaving_of_bad_messages_stops_the_next_good_set(noise) -> None:
    """Before each good set (sets 1 s apart), any bad messages stamped since the previous set, 50 s
    back (a loop) or far in the future: every good set is processed (future stamps refused,
    looping stamps reset, rejected sets never advance the synchroniser)."""
    processed = []

    def handler(image, info):
        if image.header.frame_id != "ok" or info.header.frame_id != "ok":
            return False
        processed.append(stamp_to_ns(image))
        return None

    now = 10**12
    sync = ApproximateTimeSynchronizer(["image", "camera_info"], 0.05, handler, queue_size=5,
                                       max_future=10.0, now_ns=lambda: now, jump_back=1.0)
    good = [now - 100 * 10**9 + k * 10**9 for k in range(4)]
    for k, t in enumerate(good):
        for kind, offset in noise[k::4]:
            if offset >= 2**40:  # far ahead of the clock
                stamp = now + 11 * 10**9 + offset
            elif offset < 0:  # the stream loops: 50 s back
                stamp = t - 50 * 10**9 + offset
            else:  # between the previous good set and this one
                stamp = t - 900_000_000 + offset % 800_000_000
            sync.add(kind, _msg(kind, stamp, ok=False))
        sync.add("image", _msg("image", t, True))
        sync.add("camera_info", _msg("camera_info", t, True))
    assert processed == good
