"""``sensor_msgs/PointCloud2`` <-> numpy.

Reading accepts any consistent layout (fields x, y, z as FLOAT32 or FLOAT64 at any
non-overlapping offsets, any ``point_step`` that holds every field, row padding, either byte
order); writing uses the organised
``depth_image_proc/point_cloud_xyzrgb`` layout of :mod:`depth_diffusion_ros.geometry.pointcloud`.
"""
from __future__ import annotations

import array
from typing import Optional

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.pointcloud import FIELDS, POINT_STEP, pack_depth_xyzrgb, unpack_xyz
from depth_diffusion_ros.ros.errors import InputError

_FLOAT_TYPES = {PointField.FLOAT32: "f4", PointField.FLOAT64: "f8"}
#: PointField datatype -> bytes per element (INT8 .. FLOAT64)
_DATATYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 8}


def _malformed(message: str) -> InputError:
    return InputError(f"PointCloud2 {message}", reason="malformed_points")


def _check_fields(msg: PointCloud2) -> None:
    """Every field of a known datatype fits in ``point_step``; x, y, z have count 1 and do not overlap."""
    point_step = int(msg.point_step)
    spans = {}
    for f in msg.fields:
        size = _DATATYPE_SIZES.get(int(f.datatype))
        if size is None:  # an unknown datatype in a field this reader never reads
            continue
        extent = size * max(1, int(f.count))
        if int(f.offset) + extent > point_step:
            raise _malformed(f"field {f.name!r} at offset {f.offset} ({extent} bytes) does not fit in "
                             f"point_step {point_step}")
        if f.name in ("x", "y", "z"):
            if int(f.count) > 1:
                raise _malformed(f"field {f.name!r} has count {f.count}; expected 1")
            spans[f.name] = (int(f.offset), int(f.offset) + extent)
    names = sorted(spans, key=lambda n: spans[n][0])
    for a, b in zip(names, names[1:]):
        if spans[a][1] > spans[b][0]:
            raise _malformed(f"fields {a!r} (bytes {spans[a][0]}..{spans[a][1]}) and {b!r} (bytes "
                             f"{spans[b][0]}..{spans[b][1]}) overlap")


def pointcloud2_to_xyz(msg: PointCloud2) -> np.ndarray:
    """Finite x, y, z of every point of a cloud.

    Args:
        msg: any PointCloud2 with fields ``x``, ``y``, ``z`` of datatype FLOAT32 or FLOAT64
            (e.g. a Velodyne/Ouster driver cloud with intensity, ring, time fields).

    Returns:
        (N, 3) float32 metres in ``msg.header.frame_id``; points with a NaN/inf coordinate are
        left out; N may be 0 for an empty cloud.

    Raises:
        InputError (reason ``malformed_points``): a missing x/y/z field, a non-float datatype,
            a field (any field of a known datatype, count included) outside ``point_step``,
            x/y/z overlapping or with a count > 1, ``row_step < width * point_step`` or ``data``
            not exactly ``row_step * height`` bytes. The message names what is wrong.
    """
    fields = {f.name: f for f in msg.fields}
    missing = [n for n in ("x", "y", "z") if n not in fields]
    if missing:
        raise InputError(
            f"PointCloud2 has no {'/'.join(missing)} field (fields: {sorted(fields) or 'none'})",
            reason="malformed_points",
        )
    h, w = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    n = h * w
    if n == 0:
        return np.zeros((0, 3), dtype=np.float32)
    formats = []
    for name in ("x", "y", "z"):
        f = fields[name]
        if f.datatype not in _FLOAT_TYPES:
            raise InputError(
                f"PointCloud2 field {name!r} has datatype {f.datatype}; expected FLOAT32 (7) or FLOAT64 (8)",
                reason="malformed_points",
            )
        code = _FLOAT_TYPES[f.datatype]
        formats.append((">" if msg.is_bigendian else "<") + code)
    _check_fields(msg)
    if row_step < w * point_step:
        raise InputError(
            f"PointCloud2 row_step {row_step} is smaller than width * point_step = {w} * {point_step}",
            reason="malformed_points",
        )
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size != row_step * h:
        raise _malformed(f"data has {buf.size} bytes but {w}x{h} points with row_step {row_step} "
                         f"need {row_step * h} (height * row_step, exactly)")
    if row_step != w * point_step:
        buf = np.ascontiguousarray(buf[: row_step * h].reshape(h, row_step)[:, : w * point_step]).reshape(-1)
    offsets = {name: int(fields[name].offset) for name in ("x", "y", "z")}
    ox = offsets["x"]
    if (all(fmt == "<f4" for fmt in formats) and ox % 4 == 0 and point_step % 4 == 0
            and offsets["y"] == ox + 4 and offsets["z"] == ox + 8):
        # x, y, z are three consecutive little-endian float32 words (every common LiDAR layout):
        # a strided (n, 3) view of the data, no per-field copies
        xyz = buf[: n * point_step].view("<f4").reshape(n, point_step // 4)[:, ox // 4: ox // 4 + 3]
    elif all(fmt == "<f4" for fmt in formats):
        xyz = unpack_xyz(buf, point_step, offsets, n)
    else:
        dt = np.dtype({"names": ["x", "y", "z"], "formats": formats,
                       "offsets": [offsets["x"], offsets["y"], offsets["z"]], "itemsize": point_step})
        rec = buf[: n * point_step].view(dt)
        with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 range: inf, left out
            xyz = np.stack([rec["x"], rec["y"], rec["z"]], axis=-1).astype(np.float32)
    return _finite_rows(xyz)


def _finite_rows(xyz: np.ndarray) -> np.ndarray:
    """Contiguous native float32 copy of the rows of an (n, 3) array without NaN/inf."""
    # A finite sum means no NaN or inf anywhere (either one makes the sum NaN or inf), which is
    # the usual case and needs no mask; an overflowing sum only takes the exact path below.
    with np.errstate(over="ignore", invalid="ignore"):
        all_finite = bool(np.isfinite(xyz.sum(dtype=np.float32)))
    if all_finite:
        return np.array(xyz, dtype=np.float32, order="C")
    keep = np.isfinite(xyz[:, 0]) & np.isfinite(xyz[:, 1]) & np.isfinite(xyz[:, 2])
    return np.array(xyz[keep], dtype=np.float32, order="C")


def depth_to_pointcloud2(
    depth: np.ndarray,
    intrinsics: Intrinsics,
    header: Header,
    rgb: Optional[np.ndarray] = None,
) -> PointCloud2:
    """Organised cloud (height H, width W) of a depth image, as depth_image_proc publishes it.

    Each pixel (u, v) with depth z > 0 becomes ``((u - cx) z / fx, (v - cy) z / fy, z)`` in the
    camera optical frame (``header.frame_id``); invalid pixels are NaN points, so
    ``is_dense = False``. Layout: x, y, z FLOAT32 at 0, 4, 8 (+ rgb packed at 16 when ``rgb``
    is given), ``point_step = 32``, ``row_step = 32 W``, little-endian.

    Every call returns a new message with its own data. A publisher that sends one cloud per
    frame should use :class:`PointCloud2Builder`, which reuses the message and its buffer.

    Args:
        depth: (H, W) float32 metres, 0 or non-finite = invalid.
        intrinsics: of the depth image (size must equal (W, H)).
        header: stamp and camera frame.
        rgb: (H, W, 3) uint8 RGB colours or None.

    Raises:
        ValueError: depth/intrinsics/rgb sizes differ.
    """
    return PointCloud2Builder().build(depth, intrinsics, header, rgb)


def _cloud_fields(with_rgb: bool) -> list[PointField]:
    return [
        PointField(name=name, offset=offset, datatype=PointField.FLOAT32, count=1)
        for name, offset in FIELDS
        if with_rgb or name != "rgb"
    ]


class PointCloud2Builder:
    """Organised PointCloud2 of depth images for one publisher, reusing one message and buffer.

    ``build`` writes the points straight into the ``array.array('B')`` that becomes
    ``msg.data`` (rclpy's ``data`` setter keeps an ``array.array('B')`` as it is, without a copy;
    ``publish`` then copies it once into the C message). While the size and the presence of rgb
    stay the same, the next ``build`` overwrites the same message and buffer: no 15 MB
    allocation (and page faults) per 1242x375 frame. So the returned message is only valid until
    the next ``build`` — publish it (rclpy serialises synchronously) and do not keep it.

    Layout and validity rules are those of :func:`depth_to_pointcloud2`.
    """

    def __init__(self) -> None:
        self._msg: Optional[PointCloud2] = None
        self._key: Optional[tuple[int, int, bool]] = None

    def build(self, depth: np.ndarray, intrinsics: Intrinsics, header: Header,
              rgb: Optional[np.ndarray] = None) -> PointCloud2:
        """The cloud of ``depth`` (see :func:`depth_to_pointcloud2`); valid until the next call.

        Raises:
            ValueError: depth/intrinsics/rgb sizes differ.
        """
        d = np.asarray(depth)
        if d.ndim != 2 or d.shape != (intrinsics.height, intrinsics.width):
            raise ValueError(
                f"depth shape {d.shape} does not match intrinsics size "
                f"{intrinsics.width}x{intrinsics.height}"
            )
        h, w = d.shape
        key = (h, w, rgb is not None)
        msg = self._msg
        if msg is None or key != self._key:
            msg = PointCloud2()
            msg.height, msg.width = h, w
            msg.fields = _cloud_fields(rgb is not None)
            msg.is_bigendian = False
            msg.point_step = POINT_STEP
            msg.row_step = POINT_STEP * w
            msg.is_dense = False
            msg.data = array.array("B", [0]) * (h * w * POINT_STEP)  # zero padding bytes
            self._msg, self._key = msg, key
        pack_depth_xyzrgb(d, intrinsics, rgb, out=msg.data)
        msg.header = header
        return msg
