"""DiffusionDepth completion / monocular depth in PyTorch (the reference backend).

Loads a checkpoint directory written by :func:`depth_diffusion_ros.models.checkpoint.save_checkpoint`
(``model.safetensors`` + ``config.yaml``), pads each frame to the model's ``size_divisor``, runs
the DDIM sampler (:meth:`DiffusionDepth.sample`) and crops back. The initial noise comes from
:func:`depth_diffusion_ros.inference.preprocess.make_noise` with ``seed`` for every frame, the
same draw the ONNX Runtime / TensorRT backends use, so all backends agree for the same seed.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from depth_diffusion_ros.inference import preprocess
from depth_diffusion_ros.inference.backends.base import MONOCULAR_REFUSAL, BackendError, DepthResult

LOG = logging.getLogger(__name__)


class TorchCompletionBackend:
    """DiffusionDepth as a :class:`~depth_diffusion_ros.inference.backends.base.CompletionBackend`.

    Args:
        model_path: checkpoint directory (or its ``model.safetensors``).
        num_inference_steps: DDIM steps (default: the checkpoint config's, 20 for the paper).
        ensemble_size: samples per frame; > 1 returns the mean depth and the per-pixel standard
            deviation as ``uncertainty`` (metres).
        device: "cpu", "cuda" or "cuda:N".
        seed: seed of the initial noise (the same every frame: deterministic output).
        fp16: run under CUDA autocast float16 (CUDA only).
        compile: wrap the denoiser in ``torch.compile`` (first frame is slow).
    Raises BackendError naming the file for a missing/corrupt/mismatched checkpoint, and for
    bad options (steps < 1, ensemble_size < 1, fp16 without CUDA, CUDA not available).
    ``infer`` raises BackendError for bad frames (wrong shape/dtype, size mismatch).
    """

    name = "torch"

    def __init__(
        self,
        model_path: Union[str, Path],
        num_inference_steps: Optional[int] = None,
        ensemble_size: int = 1,
        device: str = "cpu",
        seed: int = 0,
        fp16: bool = False,
        compile: bool = False,
    ) -> None:
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - requirements-torch.txt installs it
            raise BackendError(f"the torch backend needs PyTorch: {exc}") from exc
        from depth_diffusion_ros.models.checkpoint import CheckpointError, load_checkpoint

        self._torch = torch
        self.model_path = str(model_path)
        if int(ensemble_size) < 1:
            raise BackendError(f"ensemble_size={ensemble_size}: must be >= 1")
        self.ensemble_size = int(ensemble_size)
        self.seed = int(seed)
        try:
            self.device = torch.device(device)
        except RuntimeError as exc:
            raise BackendError(f"device={device!r} is not a torch device: {exc}") from exc
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"device={device!r} requested but CUDA is not available")
        if fp16 and self.device.type != "cuda":
            raise BackendError("fp16=True needs a CUDA device (CPU float16 convolutions are not supported)")
        self.fp16 = bool(fp16)
        try:
            self.model = load_checkpoint(model_path, map_location=self.device)
        except CheckpointError as exc:
            raise BackendError(str(exc)) from exc
        cfg = self.model.config
        steps = cfg.num_inference_steps if num_inference_steps is None else int(num_inference_steps)
        if not 1 <= steps <= cfg.num_train_timesteps:
            raise BackendError(
                f"num_inference_steps={num_inference_steps}: must be in [1, {cfg.num_train_timesteps}] "
                f"for {self.model_path}"
            )
        self.num_inference_steps = steps
        self.size_divisor = int(self.model.size_divisor)
        self.mode = cfg.mode
        if compile:
            self.model.denoiser = torch.compile(self.model.denoiser)
        LOG.info("torch backend: %s (%s, %s, stride %d) on %s, %d steps, ensemble %d",
                 self.model_path, cfg.backbone, cfg.mode, cfg.latent_stride, self.device,
                 steps, self.ensemble_size)

    def infer(
        self, rgb: np.ndarray, sparse_depth: Optional[np.ndarray], intrinsics: Any = None
    ) -> DepthResult:
        """rgb (H,W,3) uint8, sparse_depth (H,W) float32 m (0 = missing) or None.

        intrinsics are not used by DiffusionDepth (accepted for the backend protocol).
        Returns DepthResult(depth (H,W) float32 m, uncertainty (H,W) float32 m or None).
        With sparse_depth None or all zero the model runs monocularly (same weights); a model with
        ``mask_unsupported`` (no trained monocular branch) raises BackendError instead.
        """
        torch = self._torch
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise BackendError(f"rgb must be (H, W, 3) uint8, got shape {rgb.shape} dtype {rgb.dtype}")
        h, w = rgb.shape[:2]
        if sparse_depth is not None:
            sparse_depth = np.asarray(sparse_depth, dtype=np.float32)
            if sparse_depth.shape != (h, w):
                raise BackendError(f"sparse_depth shape {sparse_depth.shape} differs from rgb size {(h, w)}")
        cfg = self.model.config
        if cfg.mode == "completion" and cfg.mask_unsupported and (sparse_depth is None or not np.any(sparse_depth > 0)):
            raise BackendError(f"{self.model_path}: {MONOCULAR_REFUSAL}")
        rgb_p, pads = preprocess.pad_to_multiple(rgb, self.size_divisor)
        H, W = rgb_p.shape[:2]
        rgb_t = torch.from_numpy(preprocess.rgb_to_tensor_layout(rgb_p)).to(self.device)
        sparse_t = valid_t = None
        if sparse_depth is not None and self.mode == "completion":
            sparse_p, _ = preprocess.pad_to_multiple(sparse_depth, self.size_divisor)
            s, v = preprocess.sparse_to_tensor_layout(sparse_p)
            sparse_t = torch.from_numpy(s).to(self.device)
            valid_t = torch.from_numpy(v).to(self.device)
        latent = self.model.latent_shape(H, W)
        noise = torch.from_numpy(preprocess.make_noise((self.ensemble_size,) + tuple(latent), self.seed))
        noise = noise.to(self.device)
        with torch.inference_mode(), torch.autocast(
            device_type=self.device.type, dtype=torch.float16, enabled=self.fp16
        ):
            depth, unc = self.model.sample(
                rgb_t, sparse_t, valid_t, noise=noise,
                num_inference_steps=self.num_inference_steps, ensemble_size=self.ensemble_size,
            )
        depth_np = preprocess.crop_padding(depth.float().cpu().numpy(), pads)[0, 0]
        unc_np = None
        if unc is not None:
            unc_np = np.ascontiguousarray(preprocess.crop_padding(unc.float().cpu().numpy(), pads)[0, 0])
        return DepthResult(depth=np.ascontiguousarray(depth_np, dtype=np.float32), uncertainty=unc_np)
