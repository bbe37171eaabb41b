"""Reading and writing rosbag2 files with the ``rosbags`` library.

Used by ``kitti-to-bag`` (writing), ``replay`` (reading the input bag, recording the nodes'
output) and the demo. Messages are built and decoded as ``rosbags`` message objects in the
ROS 2 Humble type store (Humble, Jazzy and Kilted share these message layouts, so the CDR bytes
are the same on each distribution and rclpy can publish them as serialized messages).

Decoding reuses the ROS boundary (:mod:`depth_diffusion_ros.ros`): its image and camera_info
readers access message fields by name, so they read rosbags message objects as they read rclpy
ones; their :class:`~depth_diffusion_ros.ros.errors.InputError` becomes :class:`BagError` here
(same message). Rotations use :mod:`depth_diffusion_ros.geometry.transforms`.

The reader (:class:`BagReader`, :class:`BagMessage`, :func:`deserialize`: rosbag2
directories, single ``.mcap`` files, salvage of damaged files) lives in
:mod:`~depth_diffusion_ros.tools.bag_reader`, the shared names in
:mod:`~depth_diffusion_ros.tools.bag_types`; both are re-exported here.

Conventions (see ``docs/interfaces.md``): depth in float32 metres, 0 = missing inside arrays and
NaN in a published 32FC1 image; transforms ``T_target_source`` 4x4 in metres; stamps in integer
nanoseconds.
"""
from __future__ import annotations

import dataclasses
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from depth_diffusion_ros.geometry.depth_codecs import encode_depth
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.transforms import matrix_to_quaternion, quaternion_to_matrix
from depth_diffusion_ros.ros.camera_info import camera_info_to_intrinsics
from depth_diffusion_ros.ros.errors import InputError
from depth_diffusion_ros.ros.image import depth_from_image, image_to_array, rgb_from_image
from depth_diffusion_ros.tools.bag_reader import BagMessage, BagReader, deserialize  # noqa: F401 - re-exported
from depth_diffusion_ros.tools.bag_types import (  # noqa: F401 - re-exported
    CAMERA_INFO,
    DIAGNOSTIC_ARRAY,
    IMAGE,
    POINTCLOUD2,
    STRING,
    TF_MESSAGE,
    TYPESTORE,
    BagError,
)

#: sensor_msgs/PointField datatype codes.
POINTFIELD_FLOAT32 = 7
_POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


# --------------------------------------------------------------------------------------------
# Message builders (rosbags message objects)
# --------------------------------------------------------------------------------------------
def _types() -> Any:
    return TYPESTORE.types


def make_header(stamp_ns: int, frame_id: str) -> Any:
    """std_msgs/Header with ``stamp`` from integer nanoseconds."""
    t = _types()
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return t["std_msgs/msg/Header"](
        stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id
    )


def make_image(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/Image from an array.

    array: (H, W, 3) uint8 for ``rgb8``/``bgr8``, (H, W) uint8 ``mono8``, (H, W) uint16
    ``16UC1``, (H, W) float32 ``32FC1``. Little-endian, rows packed (step = W * bytes/pixel).
    Raises ValueError when the array does not match the encoding.
    """
    expected = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "mono8": (np.uint8, 2),
                "16UC1": (np.uint16, 2), "32FC1": (np.float32, 2)}
    if encoding not in expected:
        raise ValueError(f"unsupported image encoding {encoding!r}; use one of {sorted(expected)}")
    dtype, ndim = expected[encoding]
    array = np.asarray(array)
    if array.ndim != ndim or (ndim == 3 and array.shape[2] != 3) or array.dtype != dtype:
        raise ValueError(
            f"{encoding} image needs a {'(H,W,3)' if ndim == 3 else '(H,W)'} {np.dtype(dtype).name} "
            f"array, got shape {array.shape} dtype {array.dtype}"
        )
    array = np.ascontiguousarray(array.astype(np.dtype(dtype).newbyteorder("<"), copy=False))
    h, w = array.shape[:2]
    return _types()[IMAGE](
        header=make_header(stamp_ns, frame_id), height=h, width=w, encoding=encoding,
        is_bigendian=0, step=array.nbytes // h if h else 0,
        data=np.frombuffer(array.tobytes(), dtype=np.uint8),
    )


def make_depth_image(depth_m: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
    """32FC1 sensor_msgs/Image in metres, NaN where ``depth_m`` is 0 (missing)."""
    return make_image(encode_depth(np.asarray(depth_m, dtype=np.float32), "32FC1"), "32FC1",
                      stamp_ns, frame_id)


def make_camera_info(intrinsics: Intrinsics, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/CameraInfo of a rectified pinhole camera.

    K = intrinsics.K, P = [K | 0] (a projection translation such as KITTI's P_rect[:, 3] is folded
    into the camera <- LiDAR transform instead), R = I, D = 0 (plumb_bob). Units: pixels.
    """
    K = intrinsics.K
    P = np.zeros((3, 4))
    P[:, :3] = K
    t = _types()
    return t[CAMERA_INFO](
        header=make_header(stamp_ns, frame_id), height=int(intrinsics.height),
        width=int(intrinsics.width), distortion_model="plumb_bob", d=np.zeros(5),
        k=K.reshape(-1).astype(np.float64), r=np.eye(3).reshape(-1), p=P.reshape(-1),
        binning_x=0, binning_y=0,
        roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                 do_rectify=False),
    )


def make_pointcloud_xyzi(points: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
    """Unorganised sensor_msgs/PointCloud2 with float32 fields x, y, z, intensity (point_step 16).

    points: (N, 4) float32 ``x, y, z, intensity`` (metres; KITTI reflectance in [0, 1]) or (N, 3)
    (intensity 0). Raises ValueError for other shapes.
    """
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] not in (3, 4):
        raise ValueError(f"points must be (N,3) or (N,4), got shape {points.shape}")
    if points.shape[1] == 3:
        points = np.concatenate([points, np.zeros((len(points), 1), np.float32)], axis=1)
    points = np.ascontiguousarray(points.astype("<f4", copy=False))
    t = _types()
    fields = [t["sensor_msgs/msg/PointField"](name=n, offset=4 * i, datatype=POINTFIELD_FLOAT32, count=1)
              for i, n in enumerate(("x", "y", "z", "intensity"))]
    n = len(points)
    return t[POINTCLOUD2](
        header=make_header(stamp_ns, frame_id), height=1, width=n, fields=fields,
        is_bigendian=False, point_step=16, row_step=16 * n,
        data=np.frombuffer(points.tobytes(), dtype=np.uint8), is_dense=True,
    )


def make_tf_message(T_parent_child: np.ndarray, parent: str, child: str, stamp_ns: int) -> Any:
    """tf2_msgs/TFMessage with one transform: the pose of ``child`` in ``parent``.

    ``T_parent_child`` (4x4, metres) maps points from the child frame to the parent frame, which
    is what tf2 stores for header.frame_id=parent, child_frame_id=child.
    """
    T = np.asarray(T_parent_child, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"transform must be 4x4, got {T.shape}")
    qx, qy, qz, qw = matrix_to_quaternion(T[:3, :3])
    t = _types()
    ts = t["geometry_msgs/msg/TransformStamped"](
        header=make_header(stamp_ns, parent), child_frame_id=child,
        transform=t["geometry_msgs/msg/Transform"](
            translation=t["geometry_msgs/msg/Vector3"](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
            rotation=t["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
        ),
    )
    return t[TF_MESSAGE](transforms=[ts])


# --------------------------------------------------------------------------------------------
# Message decoders (rosbags message objects -> numpy)
# --------------------------------------------------------------------------------------------
@contextmanager
def _as_bag_error() -> Iterator[None]:
    """Re-raise the ROS boundary's InputError as BagError with the same message."""
    try:
        yield
    except InputError as exc:
        raise BagError(str(exc)) from exc


def _mono16_as_16uc1(msg: Any) -> Any:
    """``mono16`` has the layout of ``16UC1`` (uint16, one channel): read it as such."""
    return dataclasses.replace(msg, encoding="16UC1") if msg.encoding == "mono16" else msg


def image_msg_to_array(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> array as encoded: (H,W,3) uint8 rgb8/bgr8, (H,W) uint8/uint16/float32.

    :func:`depth_diffusion_ros.ros.image.image_to_array` (``mono16`` read as ``16UC1``).
    Raises BagError naming the encoding or the size that does not fit.
    """
    with _as_bag_error():
        return image_to_array(_mono16_as_16uc1(msg))


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image rgb8|bgr8|mono8 -> (H, W, 3) uint8 RGB.

    :func:`depth_diffusion_ros.ros.image.rgb_from_image`. Raises BagError for another encoding
    or a malformed image.
    """
    with _as_bag_error():
        return rgb_from_image(msg)


def depth_msg_to_array(msg: Any) -> np.ndarray:
    """sensor_msgs/Image 16UC1|mono16 (mm) | 32FC1 (m) -> (H, W) float32 metres, 0 = invalid.

    :func:`depth_diffusion_ros.ros.image.depth_from_image`. Raises BagError for another
    encoding or a malformed image.
    """
    with _as_bag_error():
        return depth_from_image(_mono16_as_16uc1(msg))


def camera_info_msg_to_intrinsics(msg: Any) -> Intrinsics:
    """sensor_msgs/CameraInfo -> Intrinsics (P for rectified images, K otherwise).

    :func:`depth_diffusion_ros.ros.camera_info.camera_info_to_intrinsics`. Raises BagError for
    non-finite or unusable intrinsics.
    """
    with _as_bag_error():
        return camera_info_to_intrinsics(msg)


def pointcloud_msg_to_array(msg: Any, fields: Sequence[str] = ("x", "y", "z")) -> np.ndarray:
    """sensor_msgs/PointCloud2 -> (N, len(fields)) float32, rows with a non-finite x/y/z removed.

    Any PointField numeric datatype is read; a missing ``intensity`` field reads as 0 (wider
    than :func:`depth_diffusion_ros.ros.pointcloud.pointcloud2_to_xyz`, which reads float x, y, z
    only, so the bag tools keep their own reader).
    Raises BagError when x, y or z is missing, a field read has an unknown datatype or does not fit
    in ``point_step``, or the data is shorter than the header says.
    """
    offsets = {f.name: (int(f.offset), int(f.datatype)) for f in msg.fields}
    for name in ("x", "y", "z"):
        if name not in offsets:
            raise BagError(f"PointCloud2 has no {name!r} field (fields: {sorted(offsets)})")
    n = int(msg.width) * int(msg.height)
    step = int(msg.point_step)
    layout = {}
    for name in fields:
        if name not in offsets:
            continue
        off, dt = offsets[name]
        if dt not in _POINTFIELD_DTYPES:
            raise BagError(f"PointCloud2 field {name!r} has unknown datatype {dt}")
        dtype = np.dtype(_POINTFIELD_DTYPES[dt]).newbyteorder(">" if msg.is_bigendian else "<")
        if off + dtype.itemsize > step:
            raise BagError(f"PointCloud2 field {name!r} at offset {off} ({dtype.itemsize} bytes) does not fit in "
                           f"point_step {step}")
        layout[name] = (off, dtype)
    if n == 0:
        return np.zeros((0, len(fields)), dtype=np.float32)
    data = np.asarray(msg.data, dtype=np.uint8)
    if data.size < n * step:
        raise BagError(f"PointCloud2 data has {data.size} bytes, header says {n} x {step}")
    rows = data[: n * step].reshape(n, step)
    out = np.zeros((n, len(fields)), dtype=np.float32)
    for j, name in enumerate(fields):
        if name in layout:
            off, dtype = layout[name]
            with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32: inf, left out below
                out[:, j] = np.ascontiguousarray(rows[:, off:off + dtype.itemsize]).view(dtype).reshape(-1)
    finite = np.isfinite(out[:, :3] if len(fields) >= 3 else out).all(axis=1)
    return out[finite]


def select_points(msg: Any, keep: np.ndarray) -> Any:
    """Copy of a PointCloud2 with only the points where ``keep`` (bool (N,)) is True.

    The result is unorganised (height 1); fields and point_step are unchanged.
    """
    n = int(msg.width) * int(msg.height)
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (n,):
        raise ValueError(f"keep mask has shape {keep.shape}, cloud has {n} points")
    step = int(msg.point_step)
    rows = np.asarray(msg.data, dtype=np.uint8)[: n * step].reshape(n, step)[keep]
    m = int(keep.sum())
    return _types()[POINTCLOUD2](
        header=msg.header, height=1, width=m, fields=msg.fields, is_bigendian=msg.is_bigendian,
        point_step=step, row_step=step * m, data=np.ascontiguousarray(rows).reshape(-1),
        is_dense=msg.is_dense,
    )


def tf_message_to_transforms(msg: Any) -> list[tuple[str, str, np.ndarray]]:
    """tf2_msgs/TFMessage -> list of ``(parent, child, T_parent_child (4,4))``."""
    out = []
    for ts in msg.transforms:
        tr, rot = ts.transform.translation, ts.transform.rotation
        T = np.eye(4)
        T[:3, :3] = quaternion_to_matrix(rot.x, rot.y, rot.z, rot.w)
        T[:3, 3] = [tr.x, tr.y, tr.z]
        out.append((ts.header.frame_id.lstrip("/"), ts.child_frame_id.lstrip("/"), T))
    return out


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------
def _qos(latched: bool, reliable: bool = True) -> Qos:
    zero = QosTime(sec=0, nsec=0)
    return Qos(
        history=QosHistory.KEEP_LAST, depth=1 if latched else 10,
        reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
        deadline=zero, lifespan=zero, liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=zero, avoid_ros_namespace_conventions=False,
    )


def probe_writable(folder: Path, probe_name: str = ".ddr_write_probe") -> None:
    """Create ``folder`` (with its parents) and write and remove an empty probe file in it.

    Raises:
        OSError: the folder cannot be created or written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / probe_name
    probe.write_bytes(b"")
    probe.unlink()


def prepare_bag_path(path: Path | str, overwrite: bool = False) -> Path:
    """Check that a bag can be written at ``path`` (a directory that must not exist yet).

    With ``overwrite`` an existing rosbag2 directory (one with metadata.yaml, or empty) is
    removed first; any other existing path is refused. Raises BagError naming the path when the
    parent is not writable or the path is taken.
    """
    path = Path(path)
    if path.exists():
        is_bag = path.is_dir() and ((path / "metadata.yaml").exists() or not any(path.iterdir()))
        if not overwrite or not is_bag:
            raise BagError(
                f"output bag {path} already exists"
                + (" (use --overwrite to replace it)" if is_bag else " and is not a rosbag2 directory")
            )
        shutil.rmtree(path)
    try:
        probe_writable(path.parent, f".ddr_write_probe_{path.name}")
    except OSError as exc:
        raise BagError(f"cannot write the bag {path}: {exc.strerror or exc}") from exc
    return path


class BagWriter:
    """rosbag2 writer (MCAP by default, sqlite3 on request) for rosbags messages or CDR bytes.

    Use as a context manager; the bag's metadata.yaml is written when it closes, also when an
    exception leaves the ``with`` block, so what was written before an error stays readable.

    >>> with BagWriter("out/bag", storage="mcap") as bag:          # doctest: +SKIP
    ...     bag.add_topic("/kitti/camera_color_left/image_raw", IMAGE)
    ...     bag.write("/kitti/camera_color_left/image_raw", stamp_ns, image_msg)
    """

    def __init__(self, path: Path | str, storage: str = "mcap", overwrite: bool = False) -> None:
        if storage not in STORAGES:
            raise BagError(f"unknown storage {storage!r}; choose one of {sorted(STORAGES)}")
        self.path = prepare_bag_path(path, overwrite)
        self.storage = storage
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self._open = False

    def __enter__(self) -> "BagWriter":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        self._writer.open()
        self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            self._writer.close()

    def add_topic(self, topic: str, msgtype: str, latched: bool = False) -> None:
        """Declare a topic; ``latched`` offers transient-local QoS (as /tf_static needs)."""
        if topic in self._connections:
            return
        if msgtype not in TYPESTORE.fielddefs:
            raise BagError(f"unknown message type {msgtype!r} for topic {topic}")
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=TYPESTORE, offered_qos_profiles=[_qos(latched)]
        )
        self.counts[topic] = 0

    def write(self, topic: str, timestamp_ns: int, msg: Any) -> None:
        """Write one message (a rosbags message object, or serialized CDR ``bytes``)."""
        if topic not in self._connections:
            raise BagError(f"topic {topic} was not declared with add_topic")
        conn = self._connections[topic]
        data = msg if isinstance(msg, (bytes, bytearray, memoryview)) else TYPESTORE.serialize_cdr(msg, conn.msgtype)
        self._writer.write(conn, int(timestamp_ns), bytes(data))
        self.counts[topic] += 1
