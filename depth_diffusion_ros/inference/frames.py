"""Frame <-> tensor layout shared by every pipeline and backend (numpy only, no torch).

Conventions (DESIGN.md): tensors are NCHW float32, ``rgb`` in [0, 1], depth in metres with 0 =
missing and a separate ``valid_mask``. The pipelines (:mod:`depth_diffusion_ros.inference.pipelines`)
use these functions to pad a frame to the model's size divisor, lay it out for the network and
undo the padding afterwards, so torch, ONNX Runtime and TensorRT see exactly the same arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from depth_diffusion_ros.geometry.resample import fill_depth_holes, super_resolution_scale
from depth_diffusion_ros.inference.errors import FrameError


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    """The guidance image as an (H, W, 3) uint8 array; FrameError naming shape and dtype otherwise."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise FrameError(f"rgb must be (H, W, 3) uint8, got shape {a.shape} dtype {a.dtype}")
    return a


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

    Raises FrameError naming the shape/dtype when the input is not (H, W, 3) uint8."""
    a = check_rgb(rgb)
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)


def sparse_to_tensor_layout(sparse: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(H, W) sparse depth in metres (0, NaN, inf or < 0 = missing) -> (sparse (1,1,H,W)
    float32 with 0 where missing, valid_mask (1,1,H,W) float32 in {0, 1}).

    Raises FrameError naming the shape when the input is not 2-D."""
    a = np.asarray(sparse, dtype=np.float32)
    if a.ndim != 2:
        raise FrameError(f"sparse depth must be (H, W), got shape {a.shape}")
    valid = np.isfinite(a) & (a > 0)
    depth = np.where(valid, a, np.float32(0.0)).astype(np.float32)
    return depth[None, None].copy(), valid[None, None].astype(np.float32)


def make_noise(shape: Tuple[int, ...], seed: int) -> np.ndarray:
    """Standard-normal float32 initial latents from ``numpy.random.default_rng(seed)``.

    The same draw is used for every backend, so torch, ONNX Runtime and TensorRT start the DDIM
    loop from identical noise for the same seed."""
    rng = np.random.default_rng(int(seed))
    return rng.standard_normal(tuple(int(s) for s in shape), dtype=np.float32)


# ---------------------------------------------------------------------------- super-resolution
@dataclass
class SRInputs:
    """Network inputs of one super-resolution frame (NCHW float32) and what undoes the padding.

    rgb: (1,3,Hp,Wp) in [0,1]; depth_lr: (1,1,hp,wp) metres, holes filled; valid_mask_lr:
    (1,1,hp,wp) {0,1}; scale: the integer H/h; size: (H, W) before padding.
    """

    rgb: np.ndarray
    depth_lr: np.ndarray
    valid_mask_lr: np.ndarray
    scale: int
    size: tuple

    def feed(self) -> dict[str, np.ndarray]:
        """The graph inputs by name (rgb, depth_lr, valid_mask_lr)."""
        return {"rgb": self.rgb, "depth_lr": self.depth_lr, "valid_mask_lr": self.valid_mask_lr}


def prepare_sr_inputs(rgb: np.ndarray, depth_lr: np.ndarray, size_divisor: int,
                      min_scale: int = 1, max_scale: Optional[int] = None) -> SRInputs:
    """Check, fill and pad one frame for a DSR-Diff network.

    The LR map's holes are filled with the nearest valid depth (the network also gets the
    validity mask); it is edge-padded by ``p`` rows/cols and the image by ``p*scale`` so that
    the HR size becomes a multiple of ``size_divisor`` while the scale stays exact.

    Args:
        rgb: (H, W, 3) uint8; depth_lr: (h, w) float32 metres, 0/NaN = missing.
    Raises:
        FrameError: wrong shapes/dtypes, a non-integer or out-of-range scale (reason
            ``bad_scale`` / ``scale_out_of_range``), no valid depth (``empty_depth_lr``).
    """
    rgb = check_rgb(rgb)
    depth_lr = np.asarray(depth_lr)
    if depth_lr.ndim != 2:
        raise FrameError(f"depth_lr must be (h, w), got shape {depth_lr.shape}")
    H, W = rgb.shape[:2]
    h, w = depth_lr.shape
    try:
        scale = super_resolution_scale(H, W, h, w, min_scale, max_scale)
    except ValueError as exc:  # ScaleError
        raise FrameError(str(exc), getattr(exc, "reason", "bad_scale")) from exc
    try:
        filled, mask = fill_depth_holes(depth_lr)
    except ValueError as exc:
        raise FrameError(str(exc), "empty_depth_lr") from exc

    def _pad_lr(n: int) -> int:
        p = 0
        while ((n + p) * scale) % size_divisor:
            p += 1
        return p

    pb, pr = _pad_lr(h), _pad_lr(w)
    if pb or pr:
        filled = np.pad(filled, ((0, pb), (0, pr)), mode="edge")
        mask = np.pad(mask, ((0, pb), (0, pr)), mode="edge")
        rgb = np.pad(rgb, ((0, pb * scale), (0, pr * scale), (0, 0)), mode="edge")
    rgb_t = (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    return SRInputs(
        rgb=np.ascontiguousarray(rgb_t),
        depth_lr=np.ascontiguousarray(filled[None, None]),
        valid_mask_lr=np.ascontiguousarray(mask[None, None]),
        scale=scale,
        size=(H, W),
    )


def finish_sr_output(depth_hr: np.ndarray, inputs: SRInputs) -> np.ndarray:
    """Crop the padded network output back to (H, W) and mark unsupported pixels invalid.

    A pixel is kept where the bilinearly upsampled LR validity mask is >= 0.5, i.e. where the
    LR input had a measurement nearby; elsewhere (large LR holes) it is set to 0.

    Args:
        depth_hr: (Hp, Wp) or (1,1,Hp,Wp) metres.
    Returns:
        (H, W) float32 metres, 0 = invalid.
    """
    d = np.asarray(depth_hr, dtype=np.float32).reshape(depth_hr.shape[-2:])
    H, W = inputs.size
    mask_lr = inputs.valid_mask_lr[0, 0]
    if mask_lr.min() < 1.0:
        mask_hr = cv2.resize(mask_lr.astype(np.float32), (d.shape[1], d.shape[0]), interpolation=cv2.INTER_LINEAR)
        d = np.where(mask_hr >= 0.5, d, 0.0)
    d = d[:H, :W]
    d = np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)
    return d
