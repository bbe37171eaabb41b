"""Classical backends: IP-Basic and nearest fill (completion), bicubic, guided filter and joint
bilateral upsampling (super-resolution). CPU only, no model file; see
:mod:`depth_diffusion_ros.baselines` for the algorithms and their sources.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from depth_diffusion_ros.baselines.ip_basic import BLUR_TYPES, ip_basic_complete
from depth_diffusion_ros.baselines.nearest import nearest_fill
from depth_diffusion_ros.baselines.upsampling import (
    bicubic_upsample,
    guided_filter_upsample,
    joint_bilateral_upsample,
)
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.inference.backends.base import BackendError, DepthResult


def _check_sparse(name: str, rgb: Optional[np.ndarray], sparse_depth: Optional[np.ndarray]) -> np.ndarray:
    if sparse_depth is None:
        raise BackendError(f"backend {name!r} needs sparse depth (it cannot run monocular)")
    d = np.asarray(sparse_depth)
    if d.ndim != 2:
        raise BackendError(f"backend {name!r}: sparse_depth must be (H, W), got shape {d.shape}")
    if rgb is not None and np.asarray(rgb).shape[:2] != d.shape:
        raise BackendError(
            f"backend {name!r}: rgb size {np.asarray(rgb).shape[:2]} differs from sparse_depth size {d.shape}"
        )
    return d.astype(np.float32, copy=False)


def _check_sr(name: str, rgb: np.ndarray, depth_lr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(rgb)
    if g.ndim != 3 or g.shape[2] != 3 or g.dtype != np.uint8:
        raise BackendError(f"backend {name!r}: rgb must be (H, W, 3) uint8, got shape {g.shape} dtype {g.dtype}")
    d = np.asarray(depth_lr)
    if d.ndim != 2:
        raise BackendError(f"backend {name!r}: depth_lr must be (h, w), got shape {d.shape}")
    if d.shape[0] > g.shape[0] or d.shape[1] > g.shape[1]:
        raise BackendError(f"backend {name!r}: depth_lr {d.shape} is larger than the rgb image {g.shape[:2]}")
    return g, d.astype(np.float32, copy=False)


class IPBasicBackend:
    """IP-Basic depth completion (Ku et al., CRV 2018) as a :class:`CompletionBackend`.

    Args:
        max_depth: inversion constant, metres (100 for KITTI).
        extrapolate: extend the top value of each column to the top of the frame.
        blur_type: "bilateral", "gaussian" or "none".

    Raises:
        ValueError: bad options. ``infer`` raises BackendError without sparse depth.
    """

    name = "ip_basic"

    def __init__(self, max_depth: float = 100.0, extrapolate: bool = True, blur_type: str = "bilateral") -> None:
        if not (max_depth > 0):
            raise ValueError(f"ip_basic max_depth must be > 0, got {max_depth}")
        if blur_type not in BLUR_TYPES:
            raise ValueError(f"ip_basic blur_type must be one of {BLUR_TYPES}, got {blur_type!r}")
        self.max_depth = float(max_depth)
        self.extrapolate = bool(extrapolate)
        self.blur_type = blur_type

    def infer(self, rgb: np.ndarray, sparse_depth: Optional[np.ndarray], intrinsics: Intrinsics) -> DepthResult:
        """(H, W, 3) rgb (unused), (H, W) sparse metres -> dense (H, W) float32 metres."""
        d = _check_sparse(self.name, rgb, sparse_depth)
        return DepthResult(
            depth=ip_basic_complete(d, self.max_depth, self.extrapolate, self.blur_type), uncertainty=None
        )


class NearestFillBackend:
    """Nearest-valid-pixel fill as a :class:`CompletionBackend` (no options)."""

    name = "nearest"

    def infer(self, rgb: np.ndarray, sparse_depth: Optional[np.ndarray], intrinsics: Intrinsics) -> DepthResult:
        """(H, W) sparse metres -> dense (H, W) float32 metres; BackendError without sparse depth."""
        d = _check_sparse(self.name, rgb, sparse_depth)
        return DepthResult(depth=nearest_fill(d), uncertainty=None)


class BicubicBackend:
    """Bicubic depth upsampling to the RGB size as a :class:`SuperResolutionBackend` (no options)."""

    name = "bicubic"

    def infer(self, rgb: np.ndarray, depth_lr: np.ndarray) -> DepthResult:
        """(H, W, 3) uint8 rgb, (h, w) metres -> (H, W) float32 metres."""
        g, d = _check_sr(self.name, rgb, depth_lr)
        return DepthResult(depth=bicubic_upsample(d, g.shape[:2]), uncertainty=None)


class GuidedFilterBackend:
    """Guided-filter upsampling (He et al., ECCV 2010) as a :class:`SuperResolutionBackend`.

    Args:
        radius: window radius in output pixels; None = a quarter of the upsampling factor.
        eps: regularisation in squared [0, 1] intensity units.
    """

    name = "guided_filter"

    def __init__(self, radius: Optional[int] = None, eps: float = 1e-2) -> None:
        if radius is not None and int(radius) < 1:
            raise ValueError(f"guided_filter radius must be >= 1, got {radius}")
        if not (eps > 0):
            raise ValueError(f"guided_filter eps must be > 0, got {eps}")
        self.radius = None if radius is None else int(radius)
        self.eps = float(eps)

    def infer(self, rgb: np.ndarray, depth_lr: np.ndarray) -> DepthResult:
        """(H, W, 3) uint8 rgb, (h, w) metres -> (H, W) float32 metres."""
        g, d = _check_sr(self.name, rgb, depth_lr)
        return DepthResult(depth=guided_filter_upsample(d, g, self.radius, self.eps), uncertainty=None)


class JointBilateralBackend:
    """Joint bilateral upsampling (Kopf et al., SIGGRAPH 2007) as a :class:`SuperResolutionBackend`.

    Args:
        diameter: filter diameter in pixels, -1 = from sigma_space.
        sigma_color: range sigma, 8-bit intensity units.
        sigma_space: spatial sigma in output pixels; None = half the upsampling factor.
    """

    name = "joint_bilateral"

    def __init__(self, diameter: int = -1, sigma_color: float = 6.0, sigma_space: Optional[float] = None) -> None:
        if not (sigma_color > 0) or (sigma_space is not None and not (sigma_space > 0)):
            raise ValueError(f"joint_bilateral sigmas must be > 0, got {sigma_color}, {sigma_space}")
        self.diameter = int(diameter)
        self.sigma_color = float(sigma_color)
        self.sigma_space = None if sigma_space is None else float(sigma_space)

    def infer(self, rgb: np.ndarray, depth_lr: np.ndarray) -> DepthResult:
        """(H, W, 3) uint8 rgb, (h, w) metres -> (H, W) float32 metres."""
        g, d = _check_sr(self.name, rgb, depth_lr)
        out = joint_bilateral_upsample(d, g, self.diameter, self.sigma_color, self.sigma_space)
        return DepthResult(depth=out, uncertainty=None)
