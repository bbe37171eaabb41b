"""What every pipeline returns, and what the frame pipelines share: the processing size, the padded
DiffusionDepth run, the resize back to the input size."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.resample import resize_depth_nearest
from depth_diffusion_ros.inference import frames
from depth_diffusion_ros.inference.backends.base import DiffusionBackend
from depth_diffusion_ros.inference.errors import BackendError, FrameError
from depth_diffusion_ros.inference.sampler import aggregate_depth_members, sample_members


@dataclass
class DepthOutput:
    """One frame's result (named, as diffusers' pipelines return theirs).

    depth: (H, W) float32 metres, 0 where there is no estimate.
    uncertainty: (H, W) float32 metres, the per-pixel standard deviation over the diffusion
        ensemble, combined with the model's own predicted one when it has an uncertainty head
        (:func:`~depth_diffusion_ros.inference.sampler.aggregate_depth_members`), or None (a
        single sample of a model without the head, or a classical backend).
    intrinsics: the intrinsics of ``depth`` (rescaled when the pipeline ran at a processing
        size and did not resize back), or None when none were given.
    rgb: (H, W, 3) uint8, the guidance image at the size of ``depth`` (colours of a point cloud).
    sparse_depth: (H, W) float32 metres (0 = none), the sparse input the backend saw, at the size
        of ``depth``; set by the completion pipeline (None when it resized back or for other
        pipelines). The temporal filter compares the warped previous depth against it.
    """

    depth: np.ndarray
    uncertainty: Optional[np.ndarray]
    intrinsics: Optional[Intrinsics]
    rgb: np.ndarray
    sparse_depth: Optional[np.ndarray] = None


def run_diffusion_depth(backend: DiffusionBackend, rgb: np.ndarray, sparse_depth: Optional[np.ndarray],
                        rgb_aux: Optional[np.ndarray] = None,
                        prior_depth: Optional[np.ndarray] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """A DiffusionDepth backend on one frame: pad to its size divisor (with the model's classical
    fills of the sparse input when it takes them), sample every ensemble member from the seeded
    noise, aggregate, crop back.

    rgb (H, W, 3) uint8; sparse_depth (H, W) float32 m, 0 = missing, or None (monocular: zeros);
    rgb_aux (H, W, 3) uint8: an auxiliary view (IID-RDepth's AV-LFE) for a backend with
    ``uses_aux``, padded as rgb and fed as ``rgb_aux``; ignored by the others.
    prior_depth (H, W) float32 m, 0 = none: replaces the model's first classical fill where > 0
    (the temporal prior, see CompletionPipeline); the caller checks the backend takes priors.
    Returns (depth (H, W) m, uncertainty (H, W) m | None). BackendError when a static graph
    cannot take the padded size.
    """
    h, w = rgb.shape[:2]
    rgb_p, pads = frames.pad_to_multiple(rgb, backend.size_divisor)
    H, W = rgb_p.shape[:2]
    backend.check_input_size(H, W, (h, w))
    sparse = np.zeros((h, w), np.float32) if sparse_depth is None else sparse_depth
    sparse_p, _ = frames.pad_to_multiple(np.asarray(sparse, np.float32), backend.size_divisor)
    sparse_t, valid_t = frames.sparse_to_tensor_layout(sparse_p)
    feed = {"rgb": frames.rgb_to_tensor_layout(rgb_p), "sparse_depth": sparse_t, "valid_mask": valid_t}
    if rgb_aux is not None and getattr(backend, "uses_aux", False):
        feed["rgb_aux"] = frames.rgb_to_tensor_layout(frames.pad_to_multiple(rgb_aux, backend.size_divisor)[0])
    if backend.external_priors:
        feed["priors"] = classical_priors(backend.external_priors, sparse, backend.size_divisor)
        if prior_depth is not None:
            given = frames.pad_to_multiple(np.asarray(prior_depth, np.float32), backend.size_divisor)[0]
            feed["priors"][0, 0] = np.where(given > 0, given, feed["priors"][0, 0])
    noise = frames.make_noise((backend.ensemble_size,) + backend.latent_shape(H, W), backend.seed)
    members = sample_members(backend, feed, noise, backend.num_inference_steps)
    depth, unc = aggregate_depth_members(members)
    depth = np.ascontiguousarray(frames.crop_padding(depth, pads), np.float32)
    if unc is not None:
        unc = np.ascontiguousarray(frames.crop_padding(unc, pads), np.float32)
    return depth, unc


def classical_priors(names: tuple, sparse_depth: np.ndarray, size_divisor: int) -> np.ndarray:
    """The model's classical fills of the frame's sparse depth, computed at the frame's size and
    padded as the sparse depth is (0 = none): (1, K, Hp, Wp) float32 metres."""
    from depth_diffusion_ros.baselines.fills import prior_fills

    fills = prior_fills(names, sparse_depth)
    return np.stack([frames.pad_to_multiple(f, size_divisor)[0] for f in fills])[None].astype(np.float32)


def checked_depth(depth: Any, shape: tuple[int, int], backend: Any) -> np.ndarray:
    """A backend's depth as float32 of the frame's (H, W); BackendError naming the backend otherwise."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape != tuple(shape):
        raise BackendError(f"backend {backend_label(backend)!r} returned depth {depth.shape} for a "
                           f"{shape[1]}x{shape[0]} frame")
    return depth


def backend_label(backend: Any) -> str:
    """The backend's name for messages (its class name when it has none)."""
    return str(getattr(backend, "name", type(backend).__name__))



class FramePipeline:
    """What the frame pipelines (completion, estimation) share: the backend, the processing size
    and the resize back to the input size.

    processing_size: (width, height) the backend runs at, or None (the input size, or what the
        subclass chooses).
    resize_back: return depth at the input size (nearest neighbour: no value invented between an
        estimate and an empty pixel) instead of the processing size.
    Raises ValueError for a processing size that is not two positive integers.
    """

    def __init__(self, backend: Any, processing_size: Optional[tuple[int, int]] = None,
                 resize_back: bool = False) -> None:
        if processing_size is not None:
            w, h = (int(v) for v in processing_size)
            if w <= 0 or h <= 0:
                raise ValueError(f"processing_size must be two positive integers (width, height), got {processing_size}")
            processing_size = (w, h)
        self.backend = backend
        self.processing_size = processing_size
        self.resize_back = bool(resize_back)
        self.name = backend_label(backend)

    @staticmethod
    def _input_size(rgb: np.ndarray, intrinsics: Optional[Intrinsics]) -> tuple[int, int]:
        """(width, height) of ``rgb``; FrameError ``size_mismatch`` when ``intrinsics`` are for another size."""
        h, w = rgb.shape[:2]
        if intrinsics is not None and (intrinsics.width, intrinsics.height) != (w, h):
            raise FrameError(f"image is {w}x{h} but its intrinsics are for {intrinsics.width}x{intrinsics.height}",
                             "size_mismatch")
        return w, h

    def _finish(self, depth: np.ndarray, unc: Optional[np.ndarray], proc: Optional[Intrinsics],
                rgb_proc: np.ndarray, rgb: np.ndarray, intrinsics: Optional[Intrinsics]) -> DepthOutput:
        """The frame's output at the processing size (``proc``, ``rgb_proc``), or with
        ``resize_back`` at the input size (``rgb``, ``intrinsics``)."""
        if not self.resize_back or depth.shape == rgb.shape[:2]:
            return DepthOutput(depth, unc, proc, rgb_proc)
        h, w = rgb.shape[:2]
        unc = None if unc is None else resize_depth_nearest(unc, w, h)
        return DepthOutput(resize_depth_nearest(depth, w, h), unc, intrinsics, rgb)


def depth_in_range(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """(H, W) float32 metres with every value outside [min_depth, max_depth] (and NaN, inf) set to
    0 = missing; ``depth`` itself is not changed."""
    d = np.asarray(depth, np.float32)
    with np.errstate(invalid="ignore"):
        keep = (d >= min_depth) & (d <= max_depth)
    if keep.all():
        return d
    return np.where(keep, d, np.float32(0.0))
