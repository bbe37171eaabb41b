"""Depth completion: image + sparse depth or LiDAR points -> dense depth.

The pipeline owns the whole frame, as diffusers/Marigold pipelines do: the processing size
(the image is resized with area averaging, the sparse input re-projected — never interpolated —
and the intrinsics rescaled), padding to the model's size divisor and back, the DDIM sampler
loop and the ensemble over the chosen backend, and optionally resizing the result back to the
input size.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import numpy as np

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from depth_diffusion_ros.geometry.resample import resample_sparse_depth, resize_rgb
from depth_diffusion_ros.inference.backends.base import CompletionModel, DiffusionBackend
from depth_diffusion_ros.inference.errors import BackendError, FrameError
from depth_diffusion_ros.inference.frames import check_rgb, crop_padding, pad_to_multiple
from depth_diffusion_ros.inference.pipelines.common import (
    DepthOutput,
    FramePipeline,
    backend_label,
    checked_depth,
    depth_in_range,
    run_diffusion_depth,
)


class CompletionPipeline(FramePipeline):
    """Dense depth from an image and sparse depth (a depth image, or LiDAR points projected here).

    Args:
        backend: a classical completion backend (``complete``) or a DiffusionDepth backend.
        processing_size, resize_back: see :class:`~depth_diffusion_ros.inference.pipelines.common.FramePipeline`.
        min_depth, max_depth: sparse input outside this range (metres) is ignored: LiDAR returns
            are not projected, and sparse_depth pixels are treated as missing (so 1e30 m, 1e-7 m
            or denormal values never reach a backend).
    """

    def __init__(self, backend: Any, processing_size: Optional[tuple[int, int]] = None, resize_back: bool = False,
                 min_depth: float = 0.1, max_depth: float = float("inf")) -> None:
        if not isinstance(backend, (CompletionModel, DiffusionBackend)):
            raise BackendError(f"{backend_label(backend)!r} is not a depth completion backend")
        super().__init__(backend, processing_size, resize_back)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)

    @property
    def takes_prior_depth(self) -> bool:
        """Whether ``prior_depth`` can be given: a DiffusionDepth backend with classical fills
        (``external_priors``) as inputs."""
        return isinstance(self.backend, DiffusionBackend) and bool(self.backend.external_priors)

    def output_geometry(self, rgb: np.ndarray,
                        intrinsics: Optional[Intrinsics]) -> tuple[tuple[int, int], Optional[Intrinsics]]:
        """((H, W), intrinsics) of the processing resolution of this frame: the size and camera
        of the depth :meth:`__call__` returns (without ``resize_back``) and of a ``prior_depth``.
        Raises FrameError as :meth:`__call__`."""
        w, h, proc = self._target(rgb, intrinsics)
        return (h, w), proc

    def _target(self, rgb: np.ndarray, intrinsics: Optional[Intrinsics]) -> tuple[int, int, Optional[Intrinsics]]:
        """(width, height, intrinsics) of the processing resolution for this frame."""
        w, h = self._input_size(rgb, intrinsics)
        if self.processing_size is None or self.processing_size == (w, h):
            return w, h, intrinsics
        if intrinsics is None:
            raise FrameError("running at a processing size needs the camera intrinsics", "bad_frame")
        pw, ph = self.processing_size
        return pw, ph, intrinsics.scaled(pw, ph)

    def __call__(self, rgb: np.ndarray, sparse_depth: Optional[np.ndarray] = None,
                 intrinsics: Optional[Intrinsics] = None, points: Optional[np.ndarray] = None,
                 T_camera_points: Optional[np.ndarray] = None,  # noqa: N803
                 prior_depth: Union[np.ndarray, Callable[[np.ndarray], Optional[np.ndarray]], None] = None) -> DepthOutput:
        """Complete one frame.

        rgb: (H, W, 3) uint8. Sparse input, one of: ``sparse_depth`` (H, W) float32 metres (0 or
        NaN = missing) registered to ``rgb``; or ``points`` (N, 3) float32 metres in the frame of
        ``T_camera_points`` (4x4 camera <- points; identity when None), projected with the
        intrinsics at the processing size. intrinsics: of ``rgb`` (needed for points and for a
        processing size).
        prior_depth: (H, W) float32 metres at the processing size (0 = none), or None: a depth map
        from elsewhere that replaces the model's first classical fill of the sparse depth where
        it is > 0 — the temporal prior of issue 17 (the previous output warped into this camera,
        :meth:`~depth_diffusion_ros.inference.temporal.TemporalFilter.previous`): the model then
        refines the previous frames' depth with this frame's LiDAR instead of a fill of this
        scan alone. Or a function of the frame's sparse depth at the processing size returning
        such a map or None (e.g. to drop the prior where this scan disagrees with it). Only for a
        backend with ``takes_prior_depth``.
        Returns the DepthOutput with ``sparse_depth`` = the sparse input at the processing size
        (when the output is at that size).
        Raises FrameError: bad shapes (``bad_frame`` / ``size_mismatch``), no sparse input or no
        valid sparse pixel (``empty_sparse_depth``), a prior_depth of another size
        (``size_mismatch``); BackendError from the backend, or for a prior_depth the backend
        cannot take.
        """
        rgb = check_rgb(rgb)
        w, h, proc = self._target(rgb, intrinsics)
        sparse = self._sparse(rgb, sparse_depth, intrinsics, proc, points, T_camera_points)
        rgb_proc = resize_rgb(rgb, w, h)
        if callable(prior_depth):
            prior_depth = prior_depth(sparse)
        if prior_depth is not None:
            prior_depth = self._prior(prior_depth, (h, w))
        if isinstance(self.backend, DiffusionBackend):
            depth, unc = run_diffusion_depth(self.backend, rgb_proc, sparse, prior_depth=prior_depth)
        else:
            depth, unc = self._complete(rgb_proc, sparse), None
        out = self._finish(depth, unc, proc, rgb_proc, rgb, intrinsics)
        if out.depth.shape == sparse.shape:
            out.sparse_depth = sparse
        return out

    def _prior(self, prior_depth: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """prior_depth checked: this backend takes one, the processing size; outside min/max_depth = none."""
        if not self.takes_prior_depth:
            raise BackendError(f"backend {backend_label(self.backend)!r} takes no prior depth (only a DiffusionDepth "
                               "completion model with classical fills as inputs does)")
        prior = np.asarray(prior_depth, np.float32)
        if prior.shape != shape:
            raise FrameError(f"prior_depth has shape {prior.shape}, expected {shape} (the processing size)",
                             "size_mismatch")
        return depth_in_range(prior, self.min_depth, self.max_depth)

    def _complete(self, rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        """A non-diffusion backend, padded to its ``size_divisor`` (1 unless it declares one)."""
        divisor = int(getattr(self.backend, "size_divisor", 1))
        rgb_p, pads = pad_to_multiple(rgb, divisor)
        sparse_p, _ = pad_to_multiple(sparse, divisor)
        depth = checked_depth(self.backend.complete(rgb_p, sparse_p), rgb_p.shape[:2], self.backend)
        return np.ascontiguousarray(crop_padding(depth, pads))

    def _sparse(self, rgb: np.ndarray, sparse_depth: Optional[np.ndarray], intrinsics: Optional[Intrinsics],
                proc: Optional[Intrinsics], points: Optional[np.ndarray], T: Optional[np.ndarray]) -> np.ndarray:  # noqa: N803
        """The sparse input at the processing size, 0 = missing."""
        if points is not None:
            if proc is None:
                raise FrameError("LiDAR points need the camera intrinsics to be projected", "bad_frame")
            sparse = project_lidar_to_depth(np.asarray(points, np.float32), np.eye(4) if T is None else T, proc,
                                            min_depth=self.min_depth, max_depth=self.max_depth)
            what = "no LiDAR point projects into the image"
        elif sparse_depth is not None:
            sparse = np.asarray(sparse_depth, np.float32)
            if sparse.shape != rgb.shape[:2]:
                size = f"{sparse.shape[1]}x{sparse.shape[0]}" if sparse.ndim == 2 else f"of shape {sparse.shape}"
                raise FrameError(f"sparse_depth is {size} but image is {rgb.shape[1]}x{rgb.shape[0]}", "size_mismatch")
            sparse = depth_in_range(sparse, self.min_depth, self.max_depth)
            if proc is not None and proc != intrinsics:
                sparse = resample_sparse_depth(sparse, intrinsics, proc)
            what = (f"sparse_depth has no valid pixel (all 0/NaN or outside min_depth..max_depth "
                    f"{self.min_depth:g}..{self.max_depth:g} m)")
        else:
            raise FrameError("depth completion needs sparse depth or LiDAR points (none given)", "empty_sparse_depth")
        if not np.any(sparse > 0):
            raise FrameError(what, "empty_sparse_depth")
        return sparse
