"""PyTorch backends (the reference): DiffusionDepth, DSR-Diff and DenseDepth from a checkpoint or a module.

Checkpoints are directories written by :func:`depth_diffusion_ros.models.checkpoint.save_checkpoint`
(``model.safetensors`` + ``config.yaml``). The pipelines feed these backends exactly the arrays
they feed the exported ones (same padding, same seeded initial noise), so torch, ONNX Runtime
and TensorRT agree for the same weights and seed.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from depth_diffusion_ros.inference.backends.base import DiffusionBackend, GuidedSuperResolutionBackend, OneShotBackend
from depth_diffusion_ros.inference.backends.exported import DEFAULT_COMPLETION_CHECKPOINT
from depth_diffusion_ros.inference.errors import BackendError
from depth_diffusion_ros.inference.frames import SRInputs
from depth_diffusion_ros.inference.sampler import SamplingOptions, SchedulerSpec

LOG = logging.getLogger(__name__)

#: The shipped DSR-Diff demo weights (the super-resolution backend's default ``model_path``).
DEMO_SR_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "dsr_diff_demo"


class _TorchModel:
    """Loading shared by the torch backends: PyTorch, the device, the checkpoint's model (of one
    architecture) and the sampling settings resolved against its config (None: a one-shot model
    has none)."""

    def _load(self, what: str, architecture: Union[str, tuple], model_path: Union[str, Path, None], model: Any, device: str,
              sampling: Optional[SamplingOptions]) -> None:
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - requirements-torch.txt installs it
            raise BackendError(f"the torch {what} backend needs PyTorch: {exc}") from exc
        self._torch = torch
        if model is not None:
            self.model, self.device = model, next(model.parameters()).device
            self.model_file = f"<in-memory {type(model).__name__}>"
        else:
            try:
                self.device = torch.device(device)
            except RuntimeError as exc:
                raise BackendError(f"device={device!r} is not a torch device: {exc}") from exc
            if self.device.type == "cuda" and not torch.cuda.is_available():
                raise BackendError(f"device={device!r} requested but CUDA is not available")
            from depth_diffusion_ros.models.checkpoint import (
                CheckpointError,
                architecture_of,
                load_checkpoint,
                read_checkpoint_config,
            )

            path = Path(model_path)
            self.model_file = str(path.parent if path.suffix == ".safetensors" else path)
            names = (architecture,) if isinstance(architecture, str) else tuple(architecture)
            try:
                found = architecture_of(read_checkpoint_config(path)) if len(names) > 1 else names[0]
                self.model = load_checkpoint(path, map_location=self.device,
                                             architecture=found if found in names else names[0])
            except CheckpointError as exc:
                raise BackendError(str(exc)) from exc
        cfg = self.model.config
        if sampling is not None:
            self.sampling = sampling
            self.num_inference_steps = sampling.steps(cfg.num_inference_steps, cfg.num_train_timesteps, self.model_file)
        self.size_divisor = int(self.model.size_divisor)
        self.canonical_focal = getattr(self.model, "canonical_focal", None)  # models.checkpoint metadata
        prior = getattr(self.model, "depth_prior", None)
        if prior:
            from depth_diffusion_ros.baselines.row_median import RowMedianDepth

            self.depth_prior = RowMedianDepth.from_json(prior, f"{self.model_file}: depth_prior")


class TorchDiffusionDepthBackend(_TorchModel, DiffusionBackend):
    """DiffusionDepth in PyTorch (depth completion, or monocular depth for a monocular model);
    also IID-RDepth (monocular, same graph parts; ``uses_aux`` with AV-LFE: a feed's
    ``rgb_aux`` reaches its encoder).

    Args:
        model_path: checkpoint directory (or its ``model.safetensors``); None = the shipped
            completion model (``weights/diffusion_depth_kitti``).
        model: an in-memory DiffusionDepth instead of ``model_path`` (training-time evaluation;
            its train/eval mode is left to the caller).
        num_inference_steps: DDIM steps (default: the checkpoint config's, 20 for the paper).
        ensemble_size: samples per frame; > 1 also gives the per-pixel standard deviation.
        device: "cpu", "cuda" or "cuda:N".
        seed: seed of the initial noise (the same every frame: deterministic output).
        fp16: run under CUDA autocast float16 (CUDA only).
        compile: wrap the denoiser in ``torch.compile`` (the first frame is slow).
    Raises BackendError naming the file for a missing/corrupt/mismatched checkpoint, and for
    bad options (steps out of range, ensemble_size < 1, fp16 without CUDA, CUDA not available).
    """

    name = "torch"

    def __init__(
        self,
        model_path: Union[str, Path, None] = None,
        num_inference_steps: Optional[int] = None,
        ensemble_size: int = 1,
        device: str = "cpu",
        seed: int = 0,
        fp16: bool = False,
        compile: bool = False,
        model: Any = None,
    ) -> None:
        if model is None and not model_path:
            model_path = DEFAULT_COMPLETION_CHECKPOINT
        from depth_diffusion_ros.models.checkpoint import DIFFUSION_DEPTH_ARCHITECTURES

        self._load("completion", DIFFUSION_DEPTH_ARCHITECTURES, model_path, model, device,
                   SamplingOptions(num_inference_steps, ensemble_size, seed))
        if fp16 and self.device.type != "cuda":
            raise BackendError("fp16=True needs a CUDA device (CPU float16 convolutions are not supported)")
        self.fp16 = bool(fp16)
        cfg = self.model.config
        self.scheduler = SchedulerSpec.from_config(cfg)
        self.mode, self.mask_unsupported = cfg.mode, bool(cfg.mask_unsupported)
        self.external_priors = tuple(cfg.external_priors) if cfg.mode == "completion" else ()
        self.latent_channels, self.latent_stride = int(cfg.latent_channels), int(cfg.latent_stride)
        self.uses_aux = bool(getattr(self.model, "uses_aux", False))
        if compile:
            self.model.denoiser = self._torch.compile(self.model.denoiser)
        LOG.info("torch backend: %s (%s, %s, stride %d) on %s, %d steps, ensemble %d", self.model_file,
                 cfg.backbone, cfg.mode, cfg.latent_stride, self.device, self.num_inference_steps,
                 self.ensemble_size)

    def _context(self) -> Any:
        torch = self._torch
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.fp16))
        return stack

    def _tensor(self, array: np.ndarray) -> Any:
        return self._torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def encode(self, feed: Mapping[str, np.ndarray]) -> Any:
        with self._context():
            if self.mode != "completion":
                if self.uses_aux and "rgb_aux" in feed:
                    return self.model.encode_condition(self._tensor(feed["rgb"]), rgb_aux=self._tensor(feed["rgb_aux"]))
                if hasattr(self.model, "condition_parts"):  # DiffusionDepth: unpacked, as below
                    return self.model.condition_parts(self._tensor(feed["rgb"]))
                return self.model.encode_condition(self._tensor(feed["rgb"]), None, None)
            priors = self._tensor(feed["priors"]) if "priors" in feed else None
            # the unpacked condition (DiffusionDepth.condition_parts): no pack-unpack round trip
            return self.model.condition_parts(self._tensor(feed["rgb"]), self._tensor(feed["sparse_depth"]),
                                              self._tensor(feed["valid_mask"]), priors)

    def repeat(self, cond: Any, n: int) -> Any:
        if isinstance(cond, dict):
            return {k: v.repeat_interleave(n, dim=0) for k, v in cond.items()}
        return cond.repeat_interleave(n, dim=0)

    def run_steps(self, latents: np.ndarray, cond: Any, pairs: Any) -> Any:
        torch = self._torch
        x = self._tensor(latents)
        with self._context():
            for t, prev in pairs:
                tt = torch.tensor(t, dtype=torch.long, device=self.device)
                tp = torch.tensor(prev, dtype=torch.long, device=self.device)
                x = self.model.ddim_step(x, tt, tp, cond)
        return x

    def decode(self, latents: Any, cond: Any) -> np.ndarray:
        with self._context():
            return self.model.decode(latents, cond).float().cpu().numpy()


class TorchDSRDiffBackend(_TorchModel, GuidedSuperResolutionBackend):
    """DSR-Diff colour-guided depth super-resolution in PyTorch (the reference SR backend).

    Args:
        model_path: checkpoint directory (or its ``model.safetensors``); None = the shipped
            demo weights (:data:`DEMO_SR_WEIGHTS`).
        num_inference_steps: GRN DDIM steps (default: the checkpoint's, 4).
        ensemble_size: guidance samples per frame; > 1 also gives the per-pixel standard deviation.
        device: "cpu", "cuda" or "cuda:N".
        seed: seed of the initial guidance noise (the same for every frame).
    Attributes:
        min_scale, max_scale: the trained scale range; the pipeline rejects other scales.
    Raises:
        BackendError: missing/corrupt/mismatched checkpoint (names the file), bad options.
    """

    name = "torch"

    def __init__(
        self,
        model_path: Union[str, Path, None] = None,
        num_inference_steps: Optional[int] = None,
        ensemble_size: int = 1,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        self._load("super-resolution", "dsr_diff", model_path or DEMO_SR_WEIGHTS, None, device,
                   SamplingOptions(num_inference_steps, ensemble_size, seed))
        cfg = self.model.config
        self.min_scale, self.max_scale = int(cfg.min_scale), int(cfg.max_scale)
        self.guidance_dim = int(self.model.latent_shape()[0])
        LOG.info("torch SR backend: %s (scales x%d..x%d, %d DDIM steps, ensemble %d) on %s", self.model_file,
                 self.min_scale, self.max_scale, self.num_inference_steps, self.ensemble_size, self.device)

    def sample(self, inputs: SRInputs, noise: np.ndarray) -> np.ndarray:
        torch = self._torch
        t = {k: torch.from_numpy(v).to(self.device) for k, v in inputs.feed().items()}
        with torch.inference_mode():
            depth = self.model.sample(t["rgb"], t["depth_lr"], t["valid_mask_lr"],
                                         noise=torch.from_numpy(noise).to(self.device),
                                         num_inference_steps=self.num_inference_steps)
        return depth.float().cpu().numpy()


class TorchDenseDepthBackend(_TorchModel, OneShotBackend):
    """DenseDepth monocular depth in PyTorch (the reference for its ONNX export): one pass of
    :meth:`DenseDepth.sample <depth_diffusion_ros.models.densedepth.DenseDepth.sample>` per frame
    (the reciprocal output mapped back to metres as in training's evaluation).

    Args:
        model_path: DenseDepth checkpoint directory (or its ``model.safetensors``); there are no
            shipped DenseDepth weights, so it is required unless ``model`` is given.
        model: an in-memory DenseDepth instead (training-time scoring; its mode is left alone).
        num_inference_steps: ignored with a logged warning (no DDIM steps; see :class:`OneShotBackend`).
        ensemble_size: must be 1 (BackendError otherwise: no ensemble for a deterministic regressor).
        device: "cpu", "cuda" or "cuda:N". seed: unused (nothing is random).
    Raises BackendError naming the file for a missing/corrupt/mismatched checkpoint or one of
    another architecture or mode, for ensemble_size != 1, and for a device that is not there.
    """

    name = "torch"

    def __init__(self, model_path: Union[str, Path, None] = None, num_inference_steps: Optional[int] = None,
                 ensemble_size: int = 1, device: str = "cpu", seed: int = 0, model: Any = None) -> None:
        if model is None and not model_path:
            raise BackendError("the torch DenseDepth backend needs model_path (a DenseDepth checkpoint folder)")
        self._check_request(model_path or f"<in-memory {type(model).__name__}>", num_inference_steps, ensemble_size)
        self._load("estimation", "densedepth", model_path, model, device, None)
        if self.model.config.mode != "monocular":
            raise BackendError(f"{self.model_file}: a DenseDepth in {self.model.config.mode!r} mode, not monocular")
        LOG.info("torch backend: %s (DenseDepth %s, one-shot) on %s", self.model_file, self.model.config.encoder,
                 self.device)

    def _run(self, rgb: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            return self.model.sample(torch.from_numpy(rgb).to(self.device)).float().cpu().numpy()
