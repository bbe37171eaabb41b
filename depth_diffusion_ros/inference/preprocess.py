"""Frame <-> tensor-layout conversion shared by the torch, ONNX Runtime and TensorRT backends.

numpy only (no torch), so the exported-model backends run without torch and every backend
feeds its model exactly the same arrays. Conventions (see DESIGN.md): tensors are NCHW
float32, ``rgb`` in [0, 1], depth in metres with 0 = missing and a separate ``valid_mask``.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np


def pad_to_multiple(
    array: np.ndarray, divisor: int, mode: str = "auto"
) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Pad an (H, W) or (H, W, C) array at the bottom and right to multiples of ``divisor``.

    mode: "auto" (default) repeats the border for images (3-D arrays), so the network sees no
    artificial black edge, and pads 2-D arrays (depth) with 0 = missing; "edge" or "constant"
    (zeros) force one behaviour.
    Returns (padded, (pad_bottom, pad_right)); undo with :func:`crop_padding`.
    Raises ValueError for divisor < 1, an array that is not 2-D/3-D, or an unknown mode.
    """
    a = np.asarray(array)
    d = int(divisor)
    if d < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    if a.ndim not in (2, 3):
        raise ValueError(f"array must be (H, W) or (H, W, C), got shape {a.shape}")
    if mode not in ("auto", "edge", "constant"):
        raise ValueError(f"mode must be 'auto', 'edge' or 'constant', got {mode!r}")
    h, w = a.shape[:2]
    pad_bottom, pad_right = (-h) % d, (-w) % d
    if pad_bottom == 0 and pad_right == 0:
        return a, (0, 0)
    widths = [(0, pad_bottom), (0, pad_right)] + [(0, 0)] * (a.ndim - 2)
    np_mode = "edge" if (mode == "edge" or (mode == "auto" and a.ndim == 3)) else "constant"
    return np.pad(a, widths, mode=np_mode), (pad_bottom, pad_right)


def crop_padding(array: np.ndarray, pads: Tuple[int, int]) -> np.ndarray:
    """Undo :func:`pad_to_multiple`: (N, C, H, W) arrays lose the padding on their last two
    axes, (H, W) and (H, W, C) arrays on their first two."""
    pb, pr = int(pads[0]), int(pads[1])
    a = np.asarray(array)
    if a.ndim == 4:
        H, W = a.shape[2:]
        return a[:, :, : H - pb, : W - pr]
    H, W = a.shape[:2]
    return a[: H - pb, : W - pr]


def rgb_to_tensor_layout(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [0, 1] (C-contiguous).

    Raises ValueError naming the shape/dtype when the input is not (H, W, 3) uint8."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got shape {a.shape} dtype {a.dtype}")
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)


def sparse_to_tensor_layout(sparse: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(H, W) sparse depth in metres (0, NaN, inf or < 0 = missing) -> (sparse (1,1,H,W)
    float32 with 0 where missing, valid_mask (1,1,H,W) float32 in {0, 1}).

    Raises ValueError naming the shape when the input is not 2-D."""
    a = np.asarray(sparse, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"sparse depth must be (H, W), got shape {a.shape}")
    valid = np.isfinite(a) & (a > 0)
    depth = np.where(valid, a, np.float32(0.0)).astype(np.float32)
    return depth[None, None].copy(), valid[None, None].astype(np.float32)


def make_noise(
    shape: Tuple[int, ...], seed: int
) -> np.ndarray:
    """Standard-normal float32 initial latents from ``numpy.random.default_rng(seed)``.

    The same draw is used by every backend, so torch, ONNX Runtime and TensorRT start the DDIM
    loop from identical noise for the same seed."""
    rng = np.random.default_rng(int(seed))
    return rng.standard_normal(tuple(int(s) for s in shape), dtype=np.float32)
