"""What a backend offers the pipelines (:mod:`depth_diffusion_ros.inference.pipelines`).

A backend runs one model on tensors or arrays at the size it is given; the pipelines own the
frame (processing size, padding, the DDIM loop, the ensemble). Five kinds:

* classical completion (IP-Basic, nearest fill): ``complete(rgb, sparse_depth) -> depth``;
* classical super-resolution (bicubic, guided filter, joint bilateral):
  ``upsample(rgb, depth_lr) -> depth``;
* learned DiffusionDepth (torch, onnxruntime, tensorrt): a :class:`DiffusionBackend`, the model
  in parts for the pipeline's DDIM loop (:func:`~depth_diffusion_ros.inference.sampler.sample_members`);
* learned DSR-Diff (torch, onnxruntime, tensorrt): a :class:`GuidedSuperResolutionBackend`,
  ``sample(inputs, noise)`` for one guidance sample (the GRN's short DDIM loop runs inside);
* learned one-shot monocular regressors (DenseDepth; torch, onnxruntime, tensorrt): a
  :class:`OneShotBackend`, ``estimate(rgb, intrinsics) -> depth`` (one network pass: no DDIM
  steps, no ensemble, no uncertainty).

Backends are looked up by name in :mod:`depth_diffusion_ros.inference.backends` and imported
lazily: asking for ``onnxruntime`` never imports torch.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from depth_diffusion_ros.inference.errors import BackendError
from depth_diffusion_ros.inference.frames import SRInputs
from depth_diffusion_ros.inference.sampler import SamplingOptions, SchedulerSpec

LOG = logging.getLogger(__name__)


@runtime_checkable
class CompletionModel(Protocol):
    """A classical depth completion method."""

    name: str

    def complete(self, rgb: np.ndarray, sparse_depth: np.ndarray) -> np.ndarray:
        """rgb (H, W, 3) uint8, sparse_depth (H, W) float32 m (0 = missing) -> (H, W) float32 m."""
        ...


@runtime_checkable
class UpsamplingModel(Protocol):
    """A classical colour-guided depth upsampling method."""

    name: str

    def upsample(self, rgb: np.ndarray, depth_lr: np.ndarray) -> np.ndarray:
        """rgb (H, W, 3) uint8, depth_lr (h, w) float32 m -> (H, W) float32 m."""
        ...


class StaticInput:
    """A backend whose graph may be exported for one input size: ``input_hw`` ((H, W); None
    entries = any) and ``model_file`` (named in errors)."""

    model_file: str = ""
    input_hw: tuple = (None, None)

    def check_input_size(self, height: int, width: int, frame_hw: tuple[int, int]) -> None:
        """BackendError when a static graph cannot take the padded (height, width) input of a
        frame of ``frame_hw`` (H, W) pixels."""
        want = tuple(self.input_hw)
        if any(s is not None and s != v for s, v in zip(want, (height, width))):
            h, w = frame_hw
            raise BackendError(
                f"{self.model_file}: exported for {want[1]}x{want[0]} (WxH) input, got a {w}x{h} frame "
                f"(padded to {width}x{height}); export again with --height {height} --width {width} or resize"
            )


class SampledBackend:
    """A learned backend's sampling settings (``sampling``) and where its model came from
    (``model_file``, named in errors); the pipelines read ``num_inference_steps`` (resolved
    against the model's default), ``ensemble_size`` and ``seed``."""

    model_file: str = ""
    sampling: SamplingOptions
    num_inference_steps: int

    @property
    def ensemble_size(self) -> int:
        return int(self.sampling.ensemble_size)

    @property
    def seed(self) -> int:
        return int(self.sampling.seed)


class DiffusionBackend(StaticInput, SampledBackend):
    """A DiffusionDepth model in the parts the pipeline's DDIM loop calls.

    Subclasses (torch, ONNX Runtime, TensorRT) set in their constructor the
    :class:`SampledBackend` fields, ``scheduler`` (:class:`SchedulerSpec`), ``size_divisor``, ``mode`` ("completion" |
    "monocular"), ``mask_unsupported``, ``latent_channels``, ``latent_stride``, ``external_priors``
    (the classical fills the model takes as the ``priors`` input, :mod:`depth_diffusion_ros.baselines.fills`),
    and optionally
    ``input_hw`` ((H, W) of a static graph), ``batch_capacity`` (members per call; None = any),
    ``form`` ("step", or "unrolled" for a graph with the whole loop: then ``sample_unrolled``),
    ``canonical_focal`` (pixels, the focal length a monocular model's training frames were brought
    to; None = none: :class:`~depth_diffusion_ros.inference.pipelines.EstimationPipeline`),
    ``depth_prior`` (a :class:`~depth_diffusion_ros.baselines.row_median.RowMedianDepth` the
    model's output is a ratio to, or None).

    Tensors: feed {"rgb" (1,3,H,W) [0,1], "sparse_depth" (1,1,H,W) m, "valid_mask" (1,1,H,W)
    (, "priors" (1,K,H,W) m)} float32; latents (n, C, H/s, W/s); depth (n, 1, H, W) metres, or (n, 2, H, W) [depth, sigma]
    for a model with an uncertainty head.
    """

    name = "diffusion"
    form = "step"
    batch_capacity: Optional[int] = None
    scheduler: SchedulerSpec
    size_divisor: int
    mode: str = "completion"
    mask_unsupported: bool = False
    canonical_focal: Optional[float] = None
    depth_prior: Any = None
    external_priors: tuple = ()
    latent_channels: int
    latent_stride: int

    @property
    def needs_lidar(self) -> bool:
        """True for completion models with ``mask_unsupported`` (no trained monocular branch)."""
        return self.mode == "completion" and bool(self.mask_unsupported)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(C, H/s, W/s): the initial noise of one member for a (padded) H x W input."""
        s = int(self.latent_stride)
        return (int(self.latent_channels), int(height) // s, int(width) // s)

    # the parts; ``Any`` values may be device tensors the backend keeps between calls
    def encode(self, feed: Mapping[str, np.ndarray]) -> Any:
        """The condition of one frame (1, C_cond, H/s, W/s)."""
        raise NotImplementedError

    def step(self, latents: Any, cond: Any, timestep: int, prev_timestep: int) -> Any:
        """One DDIM step (eta 0) from ``timestep`` to ``prev_timestep`` (< 0: the last step)."""
        raise NotImplementedError

    def decode(self, latents: Any, cond: Any) -> np.ndarray:
        """Depth (n, 1 | 2, H, W) float32 metres on the host (channel 1: the predicted sigma)."""
        raise NotImplementedError

    def sample_unrolled(self, feed: Mapping[str, np.ndarray], noise: np.ndarray) -> np.ndarray:
        """form "unrolled": the whole loop in one call; depth (n, 1 | 2, H, W) of n = len(noise) members."""
        raise NotImplementedError

    def to_numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value)

    def repeat(self, cond: Any, n: int) -> Any:
        """The condition for ``n`` members at once (batch axis repeated)."""
        return np.repeat(self.to_numpy(cond), n, axis=0)

    def run_steps(self, latents: np.ndarray, cond: Any, pairs: Sequence[tuple[int, int]]) -> Any:
        """Apply :meth:`step` for each (t, prev_t) pair; returns the final latents."""
        for t, prev in pairs:
            latents = self.step(latents, cond, t, prev)
        return latents


class GuidedSuperResolutionBackend(SampledBackend):
    """A DSR-Diff model: one guidance sample of colour-guided depth super-resolution.

    Subclasses set the :class:`SampledBackend` fields, ``size_divisor`` (HR sizes are padded to it), ``min_scale`` / ``max_scale`` (the trained range) and
    ``guidance_dim`` (length of the guidance latent).
    """

    name = "guided_diffusion"
    size_divisor: int
    min_scale: int
    max_scale: int
    guidance_dim: int

    def sample(self, inputs: SRInputs, noise: np.ndarray) -> np.ndarray:
        """Depth (1, 1, Hp, Wp) float32 metres of the padded frame for guidance noise (1, G)."""
        raise NotImplementedError


#: What a one-shot regressor's name is in its messages (DenseDepth is the one such model here).
ONE_SHOT = "a one-shot regressor (one network pass: no diffusion)"


class OneShotBackend(StaticInput):
    """A one-shot monocular regressor (DenseDepth) as an
    :class:`~depth_diffusion_ros.inference.pipelines.MonocularModel`: one network pass per frame.

    The learned backends' sampling options mean nothing to it, and are handled explicitly
    (:meth:`_check_request`): ``ensemble_size`` > 1 is refused (every member would be the same
    deterministic map, so an ensemble would cost E passes for no spread: there is no uncertainty
    to publish), ``num_inference_steps`` is ignored with a logged warning (there are no DDIM
    steps), ``seed`` is unused (nothing is random). It has no ``num_inference_steps`` attribute.

    Subclasses set ``name``, ``model_file``, ``size_divisor``, ``canonical_focal`` (pixels, or
    None), optionally ``input_hw`` (a static graph), and implement :meth:`_run`.
    """

    size_divisor: int = 32
    canonical_focal: Optional[float] = None
    depth_prior: Any = None  # a one-shot model predicts metres directly

    @staticmethod
    def _check_request(model: Any, num_inference_steps: Optional[int], ensemble_size: int) -> None:
        """BackendError for ``ensemble_size`` != 1 (naming ``model`` and why); a warning for a set
        ``num_inference_steps`` (ignored)."""
        if int(ensemble_size) != 1:
            raise BackendError(
                f"{model}: ensemble_size={ensemble_size} is not possible: DenseDepth is {ONE_SHOT}, so "
                "every ensemble member would be the same map and there is no spread to publish on "
                "depth/uncertainty; use ensemble_size 1")
        if num_inference_steps is not None:
            LOG.warning("%s: num_inference_steps=%s ignored: DenseDepth is %s and has no DDIM steps", model,
                        num_inference_steps, ONE_SHOT)

    def estimate(self, rgb: np.ndarray, intrinsics: Any = None) -> np.ndarray:
        """rgb (H, W, 3) uint8, H and W multiples of ``size_divisor`` (the pipeline pads) ->
        depth (H, W) float32 metres in the model's [min_depth, max_depth]. ``intrinsics`` are
        not used (the pipeline brings the frame to the canonical focal length first).
        Raises BackendError for a size a static graph was not exported for."""
        from depth_diffusion_ros.inference.frames import rgb_to_tensor_layout

        h, w = rgb.shape[:2]
        self.check_input_size(h, w, (h, w))
        return np.asarray(self._run(rgb_to_tensor_layout(rgb)), np.float32)[0, 0]

    def _run(self, rgb: np.ndarray) -> np.ndarray:
        """rgb (1, 3, H, W) float32 in [0, 1] -> depth (1, 1, H, W) metres."""
        raise NotImplementedError
