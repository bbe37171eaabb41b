"""DSR-Diff colour-guided depth super-resolution in PyTorch (the reference SR backend).

Loads a checkpoint directory written by :func:`depth_diffusion_ros.models.dsr_diff.save_dsr_diff`
(``model.safetensors`` + ``config.yaml``), checks the scale (an integer within the trained range),
fills LR holes and pads with :func:`depth_diffusion_ros.models.dsr_diff_io.prepare_sr_inputs`,
runs the GRN's DDIM sampler and the DSRN, and crops back. The initial guidance noise comes from
:func:`depth_diffusion_ros.inference.preprocess.make_noise` with ``seed`` on every frame (the same
draw an ONNX Runtime / TensorRT backend uses), so the output is deterministic.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

import numpy as np

from depth_diffusion_ros.inference import preprocess
from depth_diffusion_ros.inference.backends.base import BackendError, DepthResult
from depth_diffusion_ros.models.dsr_diff_io import finish_sr_output, prepare_sr_inputs

LOG = logging.getLogger(__name__)

#: The shipped DSR-Diff demo weights (used when ``model_path`` is not given).
DEMO_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "dsr_diff_demo"


class TorchSuperResolutionBackend:
    """DSR-Diff as a :class:`~depth_diffusion_ros.inference.backends.base.SuperResolutionBackend`.

    Args:
        model_path: checkpoint directory (or its ``model.safetensors``); None = :data:`DEMO_WEIGHTS`.
        num_inference_steps: GRN DDIM steps (default: the checkpoint's, 4).
        ensemble_size: guidance samples per frame; > 1 returns the mean depth and the per-pixel
            standard deviation as ``uncertainty`` (metres).
        device: "cpu", "cuda" or "cuda:N".
        seed: seed of the initial guidance noise (the same for every frame).
    Attributes:
        min_scale, max_scale: the trained scale range; ``infer`` rejects other scales.
    Raises:
        BackendError: missing/corrupt/mismatched checkpoint (names the file), bad options.
        ``infer`` raises BackendError for bad frames: wrong shape/dtype, a scale that is not an
        integer or outside the trained range, LR depth without any valid pixel.
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
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - requirements-torch.txt installs it
            raise BackendError(f"the torch super-resolution backend needs PyTorch: {exc}") from exc
        from depth_diffusion_ros.models.dsr_diff import load_dsr_diff

        self._torch = torch
        path = Path(model_path) if model_path else DEMO_WEIGHTS
        if path.suffix == ".safetensors":
            path = path.parent
        self.model_path = str(path)
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
        try:
            self.model = load_dsr_diff(path, map_location=str(self.device))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise BackendError(f"cannot load DSR-Diff checkpoint {path}: {exc}") from exc
        cfg = self.model.config
        steps = cfg.num_inference_steps if num_inference_steps is None else int(num_inference_steps)
        if not 1 <= steps <= cfg.num_train_timesteps:
            raise BackendError(
                f"num_inference_steps={num_inference_steps}: must be in [1, {cfg.num_train_timesteps}] for {path}"
            )
        self.num_inference_steps = steps
        self.min_scale, self.max_scale = cfg.min_scale, cfg.max_scale
        self.size_divisor = int(self.model.size_divisor)
        LOG.info("torch SR backend: %s (scales x%d..x%d, %d DDIM steps, ensemble %d) on %s",
                 self.model_path, self.min_scale, self.max_scale, steps, self.ensemble_size, self.device)

    def infer(self, rgb: np.ndarray, depth_lr: np.ndarray) -> DepthResult:
        """rgb (H,W,3) uint8, depth_lr (h,w) float32 m (0/NaN = missing), H = s*h, W = s*w.

        Returns DepthResult(depth (H,W) float32 m, 0 where the LR input had no measurement
        nearby; uncertainty (H,W) float32 m or None).
        """
        torch = self._torch
        try:
            inp = prepare_sr_inputs(rgb, depth_lr, self.size_divisor, self.min_scale, self.max_scale)
        except ValueError as exc:
            raise BackendError(f"super-resolution input rejected: {exc}") from exc
        noise = preprocess.make_noise((self.ensemble_size,) + tuple(self.model.latent_shape()), self.seed)
        rgb_t = torch.from_numpy(inp.rgb).to(self.device)
        d_t = torch.from_numpy(inp.depth_lr).to(self.device)
        m_t = torch.from_numpy(inp.valid_mask_lr).to(self.device)
        outs = []
        with torch.inference_mode():
            for k in range(self.ensemble_size):
                z0 = torch.from_numpy(noise[k:k + 1]).to(self.device)
                depth, _ = self.model.sample(rgb_t, d_t, m_t, noise=z0, num_inference_steps=self.num_inference_steps)
                outs.append(finish_sr_output(depth.float().cpu().numpy(), inp))
        if len(outs) == 1:
            return DepthResult(depth=outs[0], uncertainty=None)
        stack = np.stack(outs, 0)
        valid = (stack > 0).all(axis=0)
        mean = np.where(valid, stack.mean(0), 0.0).astype(np.float32)
        std = np.where(valid, stack.std(0), 0.0).astype(np.float32)
        return DepthResult(depth=mean, uncertainty=std)
