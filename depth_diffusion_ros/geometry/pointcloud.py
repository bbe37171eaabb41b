"""The ``sensor_msgs/PointCloud2`` byte layout, without ROS imports.

Layout of ``depth_image_proc/point_cloud_xyzrgb``: ``x, y, z`` float32 at byte offsets 0, 4, 8
and ``rgb`` at offset 16, a float32 whose bits are the uint32 ``r << 16 | g << 8 | b``;
``point_step = 32`` (little-endian). Organised clouds are (H, W) with ``row_step = W * 32``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import cv2
import numpy as np

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.projection import nan_invalid_depth, pixel_rays

POINT_STEP = 32
FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32
FIELDS = [("x", 0), ("y", 4), ("z", 8), ("rgb", 16)]  # all FLOAT32, count 1

POINT_DTYPE = np.dtype(
    {"names": ["x", "y", "z", "rgb"], "formats": ["<f4", "<f4", "<f4", "<f4"],
     "offsets": [0, 4, 8, 16], "itemsize": POINT_STEP}
)


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Pack (..., 3) uint8 RGB into float32 whose bits are ``r << 16 | g << 8 | b`` (shape (...))."""
    c = np.asarray(rgb)
    if c.shape[-1] != 3:
        raise ValueError(f"rgb must have 3 channels in the last axis, got shape {c.shape}")
    if c.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8, got dtype {c.dtype}")
    c32 = c.astype(np.uint32)
    packed = (c32[..., 0] << 16) | (c32[..., 1] << 8) | c32[..., 2]
    return packed.astype("<u4").view("<f4")


def unpack_rgb(rgb_float: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rgb`: float32 (...) -> uint8 (..., 3) RGB."""
    bits = np.ascontiguousarray(rgb_float, dtype="<f4").view("<u4")
    return np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], axis=-1).astype(np.uint8)


def pack_xyzrgb(points: np.ndarray, rgb: Optional[np.ndarray] = None) -> bytes:
    """Serialise points (and colours) to PointCloud2 ``data`` bytes in the layout above.

    Args:
        points: (H, W, 3) organised or (N, 3) float points in metres; NaN marks invalid points
            (keep them for organised clouds, with ``is_dense = False``).
        rgb: (H, W, 3) / (N, 3) uint8 RGB matching ``points``, or None (rgb bytes are 0).

    Returns:
        bytes of length ``n * 32`` with n = H*W or N, in row-major order.

    Raises:
        ValueError: wrong shapes, mismatched sizes or non-uint8 colours.
    """
    pts = np.asarray(points)
    if pts.ndim not in (2, 3) or pts.shape[-1] != 3:
        raise ValueError(f"points must be (H, W, 3) or (N, 3), got shape {pts.shape}")
    flat = pts.reshape(-1, 3)
    # (n, 8) float32 words = 32 bytes per point: x y z at words 0-2, rgb at word 4 (byte 16).
    cloud = np.zeros((flat.shape[0], POINT_STEP // 4), dtype="<f4")
    cloud[:, :3] = flat
    if rgb is not None:
        col = np.asarray(rgb)
        if col.shape != pts.shape:
            raise ValueError(f"rgb shape {col.shape} does not match points shape {pts.shape}")
        cloud[:, 4] = pack_rgb(col.reshape(-1, 3))
    return cloud.tobytes()


def pack_depth_xyzrgb(
    depth: np.ndarray,
    intrinsics: Intrinsics,
    rgb: Optional[np.ndarray] = None,
    out: Any = None,
) -> np.ndarray:
    """Unproject a depth image and write it straight into PointCloud2 ``data`` (layout above).

    The same points as ``pack_xyzrgb(depth_to_points(depth, intrinsics), rgb)`` (bit for bit),
    without the (H, W, 3) intermediate: ``z = depth``, ``x = z (u - cx) / fx``,
    ``y = z (v - cy) / fy`` with the per-pixel rays cached per intrinsics (see
    :func:`~depth_diffusion_ros.geometry.projection.pixel_rays`), so a frame is two
    multiplications per pixel plus the stores. A publisher that reuses ``out`` across frames
    also saves allocating (and page-faulting) a fresh H*W*32-byte buffer every frame.

    Args:
        depth: (H, W) metres; 0, negative and non-finite values are invalid (NaN points).
        intrinsics: of the depth image (size (W, H)).
        rgb: (H, W, 3) uint8 RGB or None (the rgb words are written as 0).
        out: a writable buffer of at least H*W*32 bytes (``array.array('B')``, ``bytearray``,
            uint8 ndarray) whose padding bytes (12-15 and 20-31 of every point) are 0, e.g. a
            new zero-filled buffer or one this function filled before: only x, y, z and rgb are
            written. None = a new zero-filled uint8 array.

    Returns:
        (H*W*32,) uint8 array viewing ``out`` (or the new buffer).

    Raises:
        ValueError: depth not (H, W) of the intrinsics size, rgb not (H, W, 3) uint8, or ``out``
            too small / read-only.
    """
    d = np.asarray(depth)
    if d.ndim != 2 or d.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(
            f"depth shape {d.shape} does not match intrinsics size {intrinsics.width}x{intrinsics.height}"
        )
    h, w = d.shape
    nbytes = h * w * POINT_STEP
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (h, w, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be ({h}, {w}, 3) uint8 to match the depth, got {rgb.shape} {rgb.dtype}")
    if out is None:
        buf = np.zeros(nbytes, dtype=np.uint8)
    else:
        buf = np.frombuffer(out, dtype=np.uint8)
        if buf.size < nbytes or not buf.flags.writeable:
            raise ValueError(f"out must be a writable buffer of >= {nbytes} bytes, got {buf.size} "
                             f"({'writable' if buf.flags.writeable else 'read-only'})")
        buf = buf[:nbytes]
    words = buf.view("<f4").reshape(h, w, POINT_STEP // 4)
    z = nan_invalid_depth(d)  # contiguous; then three strided stores
    xr, yr = pixel_rays(intrinsics)
    np.multiply(xr, z, out=words[..., 0])
    np.multiply(yr, z, out=words[..., 1])
    words[..., 2] = z
    rgb_word = words.view("<u4")[..., 4]
    if rgb is None:
        rgb_word[...] = 0
    else:
        # BGRA bytes read as a little-endian uint32 are a << 24 | r << 16 | g << 8 | b; clear a
        bgra = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGRA)
        np.bitwise_and(bgra.view("<u4")[..., 0], np.uint32(0x00FFFFFF), out=rgb_word)
    return buf


def _structured_dtype(point_step: int, offsets: Mapping[str, int], names: list[str]) -> np.dtype:
    for name in names:
        if name not in offsets:
            raise ValueError(f"point cloud has no field {name!r} (fields: {sorted(offsets)})")
        off = int(offsets[name])
        if off < 0 or off + 4 > point_step:
            raise ValueError(f"field {name!r} at offset {off} does not fit in point_step {point_step}")
    return np.dtype(
        {"names": names, "formats": ["<f4"] * len(names),
         "offsets": [int(offsets[n]) for n in names], "itemsize": int(point_step)}
    )


def unpack_xyz(data: bytes, point_step: int, offsets: Mapping[str, int], n: int) -> np.ndarray:
    """Read x, y, z (float32, little-endian) of ``n`` points from PointCloud2 ``data``.

    Args:
        data: the message's data bytes (``bytes``, ``bytearray``, ``memoryview`` or array).
        point_step: bytes per point.
        offsets: field name -> byte offset; must contain "x", "y", "z".
        n: number of points (``width * height``).

    Returns:
        (n, 3) float32, all points including NaN ones (filter with ``np.isfinite``).

    Raises:
        ValueError: missing field, offset outside the point or data shorter than n * point_step.
    """
    if point_step <= 0 or n < 0:
        raise ValueError(f"need point_step > 0 and n >= 0, got point_step={point_step}, n={n}")
    dt = _structured_dtype(point_step, offsets, ["x", "y", "z"])
    buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if buf.size < n * point_step:
        raise ValueError(
            f"point cloud data has {buf.size} bytes, need n * point_step = {n} * {point_step}"
        )
    rec = buf[: n * point_step].view(dt)
    out = np.empty((n, 3), dtype=np.float32)
    out[:, 0] = rec["x"]
    out[:, 1] = rec["y"]
    out[:, 2] = rec["z"]
    return out
