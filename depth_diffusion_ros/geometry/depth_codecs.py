"""Depth image encodings (REP 117/118) and KITTI depth pngs.

Conventions: inside arrays depth is float32 metres with ``0`` = invalid. A published ``32FC1``
image uses ``NaN`` for invalid pixels; a ``16UC1`` image is millimetres with ``0`` = invalid.
KITTI depth pngs (Uhrig et al., "Sparsity Invariant CNNs", 3DV 2017) are uint16 with
``depth_m = value / 256`` and ``0`` = no measurement.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import cv2
import numpy as np

SUPPORTED_ENCODINGS = ("16UC1", "32FC1")
MM_PER_M = 1000.0
KITTI_DEPTH_SCALE = 256.0
_UINT16_MAX = 65535


def sanitize_depth(depth: np.ndarray) -> np.ndarray:
    """Return a float32 copy with NaN/inf/<=0 set to 0 (the array convention for invalid)."""
    d = np.asarray(depth, dtype=np.float32).copy()
    bad = ~np.isfinite(d) | (d <= 0)
    d[bad] = 0.0
    return d


def _check_2d(array: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2:
        raise ValueError(f"{what} must be a (H, W) image, got shape {a.shape}")
    return a


def decode_depth(array: np.ndarray, encoding: str) -> np.ndarray:
    """Decode a depth image array to metres.

    Args:
        array: (H, W) uint16 millimetres for ``16UC1``, float32 metres for ``32FC1``
            (a trailing channel axis of size 1 is accepted).
        encoding: ``"16UC1"`` or ``"32FC1"``.

    Returns:
        (H, W) float32 metres, 0 = invalid (NaN, inf and values <= 0 become 0).

    Raises:
        ValueError: unsupported encoding, wrong dtype for the encoding, or not 2-D.
    """
    a = _check_2d(array, "depth image")
    if encoding == "16UC1":
        if a.dtype != np.uint16:
            raise ValueError(f"16UC1 depth must be uint16 millimetres, got dtype {a.dtype}")
        return a.astype(np.float32) / np.float32(MM_PER_M)
    if encoding == "32FC1":
        if a.dtype not in (np.float32, np.float64):
            raise ValueError(f"32FC1 depth must be float32 metres, got dtype {a.dtype}")
        return sanitize_depth(a)
    raise ValueError(f"unsupported depth encoding {encoding!r}; expected one of {SUPPORTED_ENCODINGS}")


def encode_depth(depth_m: np.ndarray, encoding: str) -> np.ndarray:
    """Encode float metres (0 or non-finite = invalid) for publishing.

    Args:
        depth_m: (H, W) depth in metres.
        encoding: ``"16UC1"`` -> uint16 millimetres, rounded, 0 = invalid, values above
            65.535 m clipped to 65535; ``"32FC1"`` -> float32 metres with NaN = invalid.

    Raises:
        ValueError: unsupported encoding or not 2-D.
    """
    d = sanitize_depth(_check_2d(depth_m, "depth"))
    if encoding == "16UC1":
        mm = np.rint(d.astype(np.float64) * MM_PER_M)
        return np.clip(mm, 0, _UINT16_MAX).astype(np.uint16)
    if encoding == "32FC1":
        out = d.copy()
        out[d <= 0] = np.nan
        return out
    raise ValueError(f"unsupported depth encoding {encoding!r}; expected one of {SUPPORTED_ENCODINGS}")


def read_kitti_depth_png(path: Union[str, Path]) -> np.ndarray:
    """Read a KITTI depth png (uint16, value/256 metres, 0 = missing).

    Returns:
        (H, W) float32 metres, 0 = invalid.

    Raises:
        FileNotFoundError: the file does not exist or cannot be decoded.
        ValueError: the png is not single-channel uint16.
    """
    p = Path(path)
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f"cannot read KITTI depth png {p}")
    if img.dtype != np.uint16 or img.ndim != 2:
        raise ValueError(
            f"KITTI depth png {p} must be single-channel uint16, got dtype {img.dtype} shape {img.shape}"
        )
    return img.astype(np.float32) / np.float32(KITTI_DEPTH_SCALE)


def write_kitti_depth_png(path: Union[str, Path], depth_m: np.ndarray) -> None:
    """Write depth in metres as a KITTI uint16 png (round(depth*256), clipped, 0 = invalid).

    Raises:
        ValueError: not 2-D.
        OSError: the file could not be written.
    """
    d = sanitize_depth(_check_2d(depth_m, "depth"))
    v = np.clip(np.rint(d.astype(np.float64) * KITTI_DEPTH_SCALE), 0, _UINT16_MAX).astype(np.uint16)
    if not cv2.imwrite(str(path), v):
        raise OSError(f"cannot write KITTI depth png {path}")
