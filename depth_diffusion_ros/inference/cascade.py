"""Cascade pipeline: low-resolution depth (monocular or completion), then colour-guided SR.

RGB-D-Fusion (Kirch et al., arXiv 2307.15988, Sec. 3) predicts depth at low resolution with a
first diffusion model and up-samples it with a second, depth super-resolution model conditioned
on the RGB-D input. :class:`CascadeBackend` composes any
:class:`~depth_diffusion_ros.inference.backends.base.CompletionBackend` (run on the image and
the sparse depth reduced by ``scale``) with any
:class:`~depth_diffusion_ros.inference.backends.base.SuperResolutionBackend` (run on the
full-resolution image and the low-resolution depth), and is itself a CompletionBackend, so a
node or the replay tool can use it like any other backend.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.inference.backends.base import (
    BackendError,
    CompletionBackend,
    DepthResult,
    SuperResolutionBackend,
)


def downsample_sparse_depth(sparse_depth: np.ndarray, scale: int) -> np.ndarray:
    """Reduce a sparse depth map by an integer ``scale``: each LR pixel keeps the nearest
    (smallest) valid depth of its ``scale x scale`` block, 0 if the block has none (no
    interpolation across missing pixels, as a LiDAR projected at the lower resolution would).

    Args:
        sparse_depth: (H, W) metres, 0/NaN = missing; H, W multiples of ``scale``.
    Returns:
        (H/scale, W/scale) float32 metres.
    Raises:
        ValueError: non-integer scale or sizes not divisible.
    """
    d = np.asarray(sparse_depth, dtype=np.float32)
    s = int(scale)
    if s != scale or s < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if d.ndim != 2 or d.shape[0] % s or d.shape[1] % s:
        raise ValueError(f"sparse depth {d.shape} must be 2-D with sizes divisible by {s}")
    h, w = d.shape[0] // s, d.shape[1] // s
    blocks = np.where(np.isfinite(d) & (d > 0), d, np.inf).reshape(h, s, w, s)
    out = blocks.min(axis=(1, 3))
    out[~np.isfinite(out)] = 0.0
    return out.astype(np.float32)


class CascadeBackend:
    """Low-resolution depth from ``completion`` at 1/``scale``, then ``super_resolution``.

    Args:
        completion: a CompletionBackend (monocular when ``sparse_depth`` is None).
        super_resolution: a SuperResolutionBackend accepting the factor ``scale``.
        scale: integer reduction of the first stage (e.g. 4: a 1216x352 frame runs its first
            stage at 304x88).
    ``infer`` pads the frame at the bottom/right (edge pixels; sparse depth with 0) to a
    multiple of ``scale`` and crops the result back. The first stage's intrinsics are
    ``intrinsics.scaled(w, h)``. The returned uncertainty is the SR stage's when it has one,
    else the first stage's up-sampled (nearest), else None.
    Raises BackendError when ``scale`` is not an integer >= 1, or (from ``infer``) for bad frames.
    """

    name = "cascade"

    def __init__(self, completion: CompletionBackend, super_resolution: SuperResolutionBackend, scale: int = 4):
        if int(scale) != scale or scale < 1:
            raise BackendError(f"cascade scale must be an integer >= 1, got {scale}")
        self.completion = completion
        self.super_resolution = super_resolution
        self.scale = int(scale)
        self.name = f"cascade({getattr(completion, 'name', '?')}->{getattr(super_resolution, 'name', '?')})"

    def infer(self, rgb: np.ndarray, sparse_depth: Optional[np.ndarray], intrinsics: Optional[Intrinsics]) -> DepthResult:
        """rgb (H,W,3) uint8, sparse_depth (H,W) m or None -> DepthResult at (H, W)."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise BackendError(f"rgb must be (H, W, 3) uint8, got shape {rgb.shape} dtype {rgb.dtype}")
        H, W = rgb.shape[:2]
        s = self.scale
        pb, pr = (-H) % s, (-W) % s
        rgb_p = np.pad(rgb, ((0, pb), (0, pr), (0, 0)), mode="edge") if (pb or pr) else rgb
        h, w = rgb_p.shape[0] // s, rgb_p.shape[1] // s
        rgb_lr = cv2.resize(rgb_p, (w, h), interpolation=cv2.INTER_AREA)
        sparse_lr = None
        if sparse_depth is not None:
            sd = np.asarray(sparse_depth, dtype=np.float32)
            if sd.shape != (H, W):
                raise BackendError(f"sparse_depth shape {sd.shape} differs from rgb size {(H, W)}")
            sd = np.pad(sd, ((0, pb), (0, pr))) if (pb or pr) else sd
            sparse_lr = downsample_sparse_depth(sd, s)
        intr_lr = intrinsics.scaled(w, h) if intrinsics is not None else None
        low = self.completion.infer(rgb_lr, sparse_lr, intr_lr)
        if not np.any(low.depth > 0):
            raise BackendError(f"cascade: the first stage ({getattr(self.completion, 'name', '?')}) gave no valid depth")
        high = self.super_resolution.infer(rgb_p, low.depth.astype(np.float32))
        depth = high.depth[:H, :W]
        unc = high.uncertainty
        if unc is None and low.uncertainty is not None:
            unc = cv2.resize(low.uncertainty.astype(np.float32), (rgb_p.shape[1], rgb_p.shape[0]),
                             interpolation=cv2.INTER_NEAREST)
        if unc is not None:
            unc = np.ascontiguousarray(unc[:H, :W], dtype=np.float32)
        return DepthResult(depth=np.ascontiguousarray(depth, dtype=np.float32), uncertainty=unc)


def make_cascade_backend(completion: str, super_resolution: str, scale: int = 4,
                         completion_options: Optional[dict] = None,
                         super_resolution_options: Optional[dict] = None) -> CascadeBackend:
    """Build a :class:`CascadeBackend` from registry names (see
    :mod:`depth_diffusion_ros.inference.backends`), e.g. ``("ip_basic", "torch", 4,
    super_resolution_options={"model_path": ...})``."""
    from depth_diffusion_ros.inference.backends import make_completion_backend, make_super_resolution_backend

    return CascadeBackend(
        make_completion_backend(completion, **(completion_options or {})),
        make_super_resolution_backend(super_resolution, **(super_resolution_options or {})),
        scale,
    )
