"""Monocular metric depth (image only), kept metric across cameras by a canonical focal length.

A monocular network can only read depth from how large things look, and how large a thing of a
given size and distance looks is set by the focal length: the same scene through a lens of half
the focal length looks twice as far. Metric3D (Yin et al., ICCV 2023, Sec. 3.2, "canonical
camera space transformation") therefore trains on frames brought to one canonical focal length
and brings every input to it: here the input is resized by ``canonical_focal / fx`` (the
``canonical_focal`` transform of ``training.transforms`` does the same to the training frames),
the network runs, and the depth is de-canonicalised by ``fx_processing / canonical_focal`` (1 up
to the rounding of the size; not 1 only when a fixed processing size is asked for, where the
label transformation of Metric3D, ``d = d_c * f / f_c``, is the correction). A camera of another
focal length or image size (a frame resized by 0.5 has half the focal length) then gives the same
metric depth for the same scene.
"""
from __future__ import annotations

from typing import Any, Optional, Protocol, runtime_checkable

import numpy as np

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.resample import resize_rgb
from depth_diffusion_ros.inference.backends.base import DiffusionBackend
from depth_diffusion_ros.inference.errors import MONOCULAR_REFUSAL, BackendError, FrameError
from depth_diffusion_ros.inference.frames import check_rgb, crop_padding, pad_to_multiple
from depth_diffusion_ros.inference.pipelines.common import (
    DepthOutput,
    FramePipeline,
    backend_label,
    checked_depth,
    run_diffusion_depth,
)


@runtime_checkable
class MonocularModel(Protocol):
    """A one-shot monocular method (a DenseDepth network:
    :class:`~depth_diffusion_ros.inference.backends.base.OneShotBackend`; the row-median
    reference): ``estimate(rgb, intrinsics) -> depth``; ``canonical_focal`` as
    :class:`DiffusionBackend`'s (the frame is brought to it before ``estimate`` and the depth
    de-canonicalised after, exactly as for a DiffusionDepth model)."""

    name: str
    size_divisor: int

    def estimate(self, rgb: np.ndarray, intrinsics: Optional[Intrinsics]) -> np.ndarray:
        """rgb (H, W, 3) uint8 with H, W multiples of ``size_divisor`` (padded at the bottom and
        right), intrinsics of the unpadded image or None -> (H, W) float32 metres."""
        ...


def canonical_size(intrinsics: Intrinsics, canonical_focal: float) -> tuple[int, int]:
    """(width, height) that brings ``intrinsics.fx`` to ``canonical_focal`` pixels (rounded; at least 1)."""
    s = float(canonical_focal) / intrinsics.fx
    return max(1, int(round(intrinsics.width * s))), max(1, int(round(intrinsics.height * s)))


class EstimationPipeline(FramePipeline):
    """Monocular metric depth from an image alone.

    Args:
        backend: a DiffusionDepth backend whose model runs without sparse depth (a monocular
            model, or a completion model trained with LiDAR dropout), or a :class:`MonocularModel`
            (a DenseDepth backend, the row-median reference).
        processing_size: (width, height) the backend runs at; None = the canonical size (with a
            canonical focal length) or the input size.
        resize_back: return depth at the input size (nearest neighbour) instead of the
            processing size (then ``intrinsics`` of the output are the processing size's).
        canonical_focal: pixels; None = the backend's own (``backend.canonical_focal``, from
            the weights), 0 = none (the frame runs at its own focal length).
    Raises:
        BackendError: a backend that cannot estimate from an image alone (a classical one, or a
            completion model with ``mask_unsupported``).
        ValueError: a processing size that is not two positive integers, a negative focal.
    """

    def __init__(self, backend: Any, processing_size: Optional[tuple[int, int]] = None,
                 resize_back: bool = False, canonical_focal: Optional[float] = None) -> None:
        if isinstance(backend, DiffusionBackend):
            if backend.needs_lidar:
                raise BackendError(f"{backend.model_file}: {MONOCULAR_REFUSAL}")
        elif not isinstance(backend, MonocularModel):
            raise BackendError(f"backend {backend_label(backend)!r} cannot estimate depth from an image alone")
        super().__init__(backend, processing_size, resize_back)
        focal = getattr(backend, "canonical_focal", None) if canonical_focal is None else canonical_focal
        if focal is not None and float(focal) < 0:
            raise ValueError(f"canonical_focal must be >= 0 pixels (0 = none), got {focal}")
        self.canonical_focal = float(focal) if focal else None

    def _target(self, rgb: np.ndarray, intrinsics: Optional[Intrinsics]) -> tuple[int, int, Optional[Intrinsics]]:
        """(width, height, intrinsics) the backend runs this frame at."""
        w, h = self._input_size(rgb, intrinsics)
        if self.processing_size is None and self.canonical_focal is None:
            return w, h, intrinsics
        if intrinsics is None:
            need = "a canonical focal length" if self.processing_size is None else "a processing size"
            raise FrameError(f"running at {need} needs the camera intrinsics", "bad_frame")
        pw, ph = self.processing_size or canonical_size(intrinsics, self.canonical_focal)
        return pw, ph, intrinsics.scaled(pw, ph)

    @property
    def uses_aux(self) -> bool:
        """True when the backend takes an auxiliary view (IID-RDepth with AV-LFE)."""
        return bool(getattr(self.backend, "uses_aux", False))

    def __call__(self, rgb: np.ndarray, intrinsics: Optional[Intrinsics] = None,
                 rgb_aux: Optional[np.ndarray] = None) -> DepthOutput:
        """Estimate depth for one (H, W, 3) uint8 image; ``intrinsics`` (of ``rgb``) are needed
        with a canonical focal length or a processing size. ``rgb_aux``: an optional second view
        of the same size (the previous frame, a stereo partner), resized as ``rgb`` and used by
        a backend with ``uses_aux`` (IID-RDepth's AV-LFE), ignored otherwise.

        Returns depth (and uncertainty) in metres at the processing size, or at the input size
        with ``resize_back``. Raises FrameError for a bad image or missing intrinsics;
        BackendError from the backend.
        """
        rgb = check_rgb(rgb)
        w, h, proc = self._target(rgb, intrinsics)
        rgb_proc = resize_rgb(rgb, w, h)
        aux_proc = None
        if rgb_aux is not None and self.uses_aux:
            rgb_aux = check_rgb(rgb_aux)
            if rgb_aux.shape != rgb.shape:
                raise FrameError(f"image_aux {rgb_aux.shape[1]}x{rgb_aux.shape[0]} is not the size of the image "
                                 f"{rgb.shape[1]}x{rgb.shape[0]}", "bad_frame")
            aux_proc = resize_rgb(rgb_aux, w, h)
        if isinstance(self.backend, DiffusionBackend):
            depth, unc = run_diffusion_depth(self.backend, rgb_proc, None, aux_proc)
        else:
            depth, unc = self._estimate(rgb_proc, proc), None
        prior = getattr(self.backend, "depth_prior", None)
        if prior is not None:  # the model's output is a ratio to the ground-plane prior of this camera
            if proc is None:
                raise FrameError("a model relative to a row prior needs the camera intrinsics", "bad_frame")
            ratio_to_m = prior.predict(proc)
            depth = depth * ratio_to_m
            unc = None if unc is None else unc * ratio_to_m
        if self.canonical_focal is not None and proc is not None:
            factor = np.float32(proc.fx / self.canonical_focal)  # de-canonicalise (1 up to rounding)
            depth = depth * factor
            unc = None if unc is None else unc * factor
        return self._finish(depth, unc, proc, rgb_proc, rgb, intrinsics)

    def _estimate(self, rgb: np.ndarray, intrinsics: Optional[Intrinsics]) -> np.ndarray:
        """A one-shot backend, padded to its ``size_divisor`` (BackendError from a static graph of
        another size, naming both sizes)."""
        rgb_p, pads = pad_to_multiple(rgb, int(self.backend.size_divisor))
        check_size = getattr(self.backend, "check_input_size", None)
        if check_size is not None:
            check_size(rgb_p.shape[0], rgb_p.shape[1], rgb.shape[:2])
        depth = checked_depth(self.backend.estimate(rgb_p, intrinsics), rgb_p.shape[:2], self.backend)
        return np.ascontiguousarray(crop_padding(depth, pads), np.float32)
