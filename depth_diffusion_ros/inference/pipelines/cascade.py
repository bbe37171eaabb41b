"""Cascade: depth completion at low resolution, then colour-guided super-resolution.

RGB-D-Fusion (Kirch et al., arXiv 2307.15988, Sec. 3) predicts depth at low resolution with a
first diffusion model and up-samples it with a second, super-resolution model conditioned on the
RGB-D input. :class:`CascadePipeline` runs any completion backend on the image and the sparse
depth reduced by ``scale`` (nearest return per block) and any super-resolution backend on the
full-resolution image and that low-resolution depth. The completion node selects it with its
``cascade_scale`` parameter.
"""
from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from depth_diffusion_ros.geometry.resample import downsample_sparse_depth, resize_depth_nearest
from depth_diffusion_ros.inference.errors import BackendError, FrameError
from depth_diffusion_ros.inference.frames import check_rgb
from depth_diffusion_ros.inference.pipelines.common import DepthOutput, depth_in_range
from depth_diffusion_ros.inference.pipelines.completion import CompletionPipeline
from depth_diffusion_ros.inference.pipelines.super_resolution import SuperResolutionPipeline


class CascadePipeline:
    """Low-resolution completion by ``completion`` at 1/``scale``, then ``super_resolution``.

    Args:
        completion: a completion backend (classical or DiffusionDepth).
        super_resolution: a super-resolution backend accepting the factor ``scale``.
        scale: integer reduction of the first stage (e.g. 4: a 1216x352 frame runs its first
            stage at 304x88).
        min_depth, max_depth: sparse input outside this range (metres) is ignored (as in
            :class:`CompletionPipeline`).
    The frame is padded at the bottom/right (edge pixels; sparse depth with 0) to a multiple of
    ``scale`` and the result cropped back. The returned uncertainty is the super-resolution
    stage's when it has one, else the first stage's up-sampled (nearest), else None.
    Raises BackendError when ``scale`` is not an integer >= 1 or the super-resolution backend
    does not accept it.
    """

    def __init__(self, completion: Any, super_resolution: Any, scale: int = 4, min_depth: float = 0.1,
                 max_depth: float = float("inf")) -> None:
        if int(scale) != scale or scale < 1:
            raise BackendError(f"cascade scale must be an integer >= 1, got {scale}")
        self.scale = int(scale)
        self.first = CompletionPipeline(completion)
        self.second = SuperResolutionPipeline(super_resolution, max_scale=self.scale)
        if not self.second.min_scale <= self.scale <= self.second.max_scale:
            raise BackendError(f"cascade scale x{self.scale} is outside the super-resolution backend's range "
                               f"x{self.second.min_scale}..x{self.second.max_scale}")
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.name = f"cascade({self.first.name}->{self.second.name})"

    def __call__(self, rgb: np.ndarray, sparse_depth: Optional[np.ndarray] = None,
                 intrinsics: Optional[Intrinsics] = None, points: Optional[np.ndarray] = None,
                 T_camera_points: Optional[np.ndarray] = None) -> DepthOutput:  # noqa: N803
        """The inputs of :meth:`CompletionPipeline.__call__`; returns depth at the input size."""
        rgb = check_rgb(rgb)
        H, W = rgb.shape[:2]
        if points is not None:
            if intrinsics is None:
                raise FrameError("LiDAR points need the camera intrinsics to be projected", "bad_frame")
            sparse_depth = project_lidar_to_depth(np.asarray(points, np.float32),
                                                  np.eye(4) if T_camera_points is None else T_camera_points,
                                                  intrinsics, min_depth=self.min_depth, max_depth=self.max_depth)
        if sparse_depth is None:
            raise FrameError("depth completion needs sparse depth or LiDAR points (none given)", "empty_sparse_depth")
        sd = np.asarray(sparse_depth, np.float32)
        if sd.shape != (H, W):
            raise FrameError(f"sparse_depth shape {sd.shape} differs from rgb size {(H, W)}", "size_mismatch")
        sd = depth_in_range(sd, self.min_depth, self.max_depth)
        s = self.scale
        pb, pr = (-H) % s, (-W) % s
        rgb_p = np.pad(rgb, ((0, pb), (0, pr), (0, 0)), mode="edge") if (pb or pr) else rgb
        h, w = rgb_p.shape[0] // s, rgb_p.shape[1] // s
        rgb_lr = cv2.resize(rgb_p, (w, h), interpolation=cv2.INTER_AREA)
        sparse_lr = downsample_sparse_depth(np.pad(sd, ((0, pb), (0, pr))) if (pb or pr) else sd, s)
        intr_lr = intrinsics.scaled(w, h) if intrinsics is not None else None
        low = self.first(rgb_lr, sparse_lr, intr_lr)
        if not np.any(low.depth > 0):
            raise BackendError(f"cascade: the first stage ({self.first.name}) gave no valid depth")
        high = self.second(rgb_p, low.depth)
        unc = high.uncertainty
        if unc is None and low.uncertainty is not None:
            unc = resize_depth_nearest(low.uncertainty, rgb_p.shape[1], rgb_p.shape[0])
        if unc is not None:
            unc = np.ascontiguousarray(unc[:H, :W], dtype=np.float32)
        return DepthOutput(np.ascontiguousarray(high.depth[:H, :W], np.float32), unc, intrinsics, rgb)
