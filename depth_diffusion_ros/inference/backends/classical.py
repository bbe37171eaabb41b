"""Classical backends: IP-Basic, linear interpolation and nearest fill (completion), bicubic, guided filter and joint
bilateral upsampling (super-resolution), the row-median reference (monocular estimation; its
fitted medians are its only file). CPU only; see
:mod:`depth_diffusion_ros.baselines` for the algorithms and their sources. The pipelines check
the frame (sizes, dtypes, scale) before these run.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from depth_diffusion_ros.baselines.ip_basic import BLUR_TYPES, ip_basic_complete
from depth_diffusion_ros.baselines.linear import linear_interpolate
from depth_diffusion_ros.baselines.nearest import nearest_fill
from depth_diffusion_ros.baselines.row_median import RowMedianDepth
from depth_diffusion_ros.baselines.upsampling import (
    bicubic_upsample,
    guided_filter_upsample,
    joint_bilateral_upsample,
)
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.inference.errors import BackendError, FrameError


class IPBasicBackend:
    """IP-Basic depth completion (Ku et al., CRV 2018).

    Args:
        max_depth: inversion constant, metres (100 for KITTI).
        extrapolate: extend the top value of each column to the top of the frame.
        blur_type: "bilateral", "gaussian" or "none".
    Raises:
        ValueError: bad options.
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

    def complete(self, rgb: np.ndarray, sparse_depth: np.ndarray) -> np.ndarray:
        """(H, W, 3) rgb (unused), (H, W) sparse metres -> dense (H, W) float32 metres."""
        return ip_basic_complete(sparse_depth, self.max_depth, self.extrapolate, self.blur_type)


class LinearInterpolationBackend:
    """Linear interpolation over a Delaunay triangulation of the measured pixels, nearest fill
    outside their convex hull (no options)."""

    name = "linear"

    def complete(self, rgb: np.ndarray, sparse_depth: np.ndarray) -> np.ndarray:
        """(H, W) sparse metres -> dense (H, W) float32 metres."""
        return linear_interpolate(sparse_depth)


class NearestFillBackend:
    """Nearest-valid-pixel fill (no options)."""

    name = "nearest"

    def complete(self, rgb: np.ndarray, sparse_depth: np.ndarray) -> np.ndarray:
        """(H, W) sparse metres -> dense (H, W) float32 metres."""
        return nearest_fill(sparse_depth)


class BicubicBackend:
    """Bicubic depth upsampling to the RGB size (no options)."""

    name = "bicubic"

    def upsample(self, rgb: np.ndarray, depth_lr: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 rgb, (h, w) metres -> (H, W) float32 metres."""
        return bicubic_upsample(depth_lr, rgb.shape[:2])


class GuidedFilterBackend:
    """Guided-filter upsampling (He et al., ECCV 2010).

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

    def upsample(self, rgb: np.ndarray, depth_lr: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 rgb, (h, w) metres -> (H, W) float32 metres."""
        return guided_filter_upsample(depth_lr, rgb, self.radius, self.eps)


class JointBilateralBackend:
    """Joint bilateral upsampling (Kopf et al., SIGGRAPH 2007).

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

    def upsample(self, rgb: np.ndarray, depth_lr: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 rgb, (h, w) metres -> (H, W) float32 metres."""
        return joint_bilateral_upsample(depth_lr, rgb, self.diameter, self.sigma_color, self.sigma_space)


class RowMedianBackend:
    """The row-median reference of monocular depth (:mod:`depth_diffusion_ros.baselines.row_median`):
    each row's median training depth by viewing angle, no image content.

    Args:
        model_path: the reference's JSON (:meth:`RowMedianDepth.save`, shipped beside the
            monocular weights as ``row_median_reference.json``).
    Raises BackendError for a missing or invalid file.
    """

    name = "row_median"
    size_divisor = 1
    canonical_focal = None

    def __init__(self, model_path: str = "") -> None:
        if not model_path:
            raise BackendError("the row_median backend needs model_path (a row_median_reference.json)")
        try:
            self.reference = RowMedianDepth.load(model_path)
        except ValueError as exc:
            raise BackendError(str(exc)) from exc
        self.model_file = str(model_path)

    def estimate(self, rgb: np.ndarray, intrinsics: Optional[Intrinsics]) -> np.ndarray:
        if intrinsics is None:
            raise FrameError("the row-median reference needs the camera intrinsics", "bad_frame")
        h, w = rgb.shape[:2]  # padded at the bottom/right: the principal point stays
        return self.reference.predict(Intrinsics(intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy, w, h))
