"""Colour-guided depth super-resolution (CDSR): low-resolution depth + image -> depth at the image size.

The pipeline owns the frame: the depth camera's intrinsics (the LR depth is re-rendered into
the colour camera's when they differ), the one scale check (an integer factor, the same for
rows and columns, within the backend's range), hole filling and padding for DSR-Diff, the
ensemble of guidance samples and its uncertainty.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.resample import resample_sparse_depth, super_resolution_scale
from depth_diffusion_ros.inference import frames
from depth_diffusion_ros.inference.backends.base import GuidedSuperResolutionBackend, UpsamplingModel
from depth_diffusion_ros.inference.errors import BackendError, FrameError
from depth_diffusion_ros.inference.pipelines.common import DepthOutput, backend_label, checked_depth, depth_in_range
from depth_diffusion_ros.inference.sampler import aggregate_ensemble


class SuperResolutionPipeline:
    """Depth at the colour resolution from a low-resolution depth map.

    Args:
        backend: a classical upsampling backend (``upsample``) or a DSR-Diff backend.
        max_scale: largest scale a classical backend accepts (a learned one accepts its trained
            range ``min_scale..max_scale``).
        intrinsics_tolerance: pixels the depth camera's intrinsics may differ from the colour
            camera's (rescaled to the LR size) before the LR depth is re-rendered.
        min_depth, max_depth: ``depth_lr`` values outside this range (metres; e.g. 1e30 m, 1e-7 m,
            denormals) are missing pixels, filled like any hole.
    Attributes:
        min_scale, max_scale: the accepted range of integer scales.
    """

    def __init__(self, backend: Any, max_scale: int = 16, intrinsics_tolerance: float = 0.5,
                 min_depth: float = 0.0, max_depth: float = float("inf")) -> None:
        if isinstance(backend, GuidedSuperResolutionBackend):
            self.min_scale, self.max_scale = int(backend.min_scale), int(backend.max_scale)
        elif isinstance(backend, UpsamplingModel):
            self.min_scale, self.max_scale = 1, int(max_scale)
        else:
            raise BackendError(f"{backend_label(backend)!r} is not a super-resolution backend")
        self.backend = backend
        self.name = backend_label(backend)
        self.intrinsics_tolerance = float(intrinsics_tolerance)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)

    def scale(self, width: int, height: int, width_lr: int, height_lr: int) -> int:
        """The integer scale of a frame; FrameError (``bad_scale`` / ``scale_out_of_range``)."""
        try:
            return super_resolution_scale(height, width, height_lr, width_lr, self.min_scale, self.max_scale)
        except ValueError as exc:  # ScaleError
            raise FrameError(str(exc), getattr(exc, "reason", "bad_scale")) from exc

    def __call__(self, rgb: np.ndarray, depth_lr: np.ndarray, intrinsics: Optional[Intrinsics] = None,
                 depth_intrinsics: Optional[Intrinsics] = None) -> DepthOutput:
        """Super-resolve one frame.

        rgb: (H, W, 3) uint8; depth_lr: (h, w) float32 metres, 0/NaN = missing, registered to the
        colour camera (same optical frame), H = s*h and W = s*w; intrinsics: of ``rgb``;
        depth_intrinsics: of ``depth_lr`` when known (needs ``intrinsics``).
        Raises FrameError naming the problem (``bad_scale``, ``scale_out_of_range``,
        ``size_mismatch``, ``empty_depth_lr``, ``bad_frame``); BackendError from the backend.
        """
        rgb = frames.check_rgb(rgb)
        depth_lr = np.asarray(depth_lr, np.float32)
        if depth_lr.ndim != 2:
            raise FrameError(f"depth_lr must be (h, w), got shape {depth_lr.shape}")
        H, W = rgb.shape[:2]
        self.scale(W, H, depth_lr.shape[1], depth_lr.shape[0])
        depth_lr = self._registered(depth_in_range(depth_lr, self.min_depth, self.max_depth), intrinsics,
                                    depth_intrinsics)
        if not np.any(depth_lr > 0):
            raise FrameError(f"depth_lr has no valid pixel (all 0/NaN or outside min_depth..max_depth "
                             f"{self.min_depth:g}..{self.max_depth:g} m)", "empty_depth_lr")
        if isinstance(self.backend, GuidedSuperResolutionBackend):
            depth, unc = self._sample(rgb, depth_lr)
        else:
            depth, unc = checked_depth(self.backend.upsample(rgb, depth_lr), (H, W), self.backend), None
        return DepthOutput(depth, unc, intrinsics, rgb)

    def _registered(self, depth_lr: np.ndarray, intrinsics: Optional[Intrinsics],
                    depth_intrinsics: Optional[Intrinsics]) -> np.ndarray:
        """depth_lr in the colour camera's intrinsics at the LR size (re-rendered when they differ)."""
        if depth_intrinsics is None:
            return depth_lr
        h, w = depth_lr.shape
        if (depth_intrinsics.width, depth_intrinsics.height) != (w, h):
            raise FrameError(f"depth_lr is {w}x{h} but depth_lr/camera_info is "
                             f"{depth_intrinsics.width}x{depth_intrinsics.height}", "size_mismatch")
        if intrinsics is None:
            raise FrameError("depth_lr intrinsics given without the colour camera's", "bad_frame")
        target = intrinsics.scaled(w, h)
        if depth_intrinsics.max_difference(target) > self.intrinsics_tolerance:
            return resample_sparse_depth(depth_lr, depth_intrinsics, target)
        return depth_lr

    def _sample(self, rgb: np.ndarray, depth_lr: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """DSR-Diff: fill and pad, one guidance sample per ensemble member, aggregate."""
        b = self.backend
        inputs = frames.prepare_sr_inputs(rgb, depth_lr, b.size_divisor, self.min_scale, self.max_scale)
        noise = frames.make_noise((b.ensemble_size, b.guidance_dim), b.seed)
        members = [frames.finish_sr_output(b.sample(inputs, noise[k:k + 1]), inputs) for k in range(b.ensemble_size)]
        return aggregate_ensemble(np.stack(members, 0))
