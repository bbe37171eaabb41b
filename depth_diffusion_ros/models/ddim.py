"""DDIM noise schedule and sampler step (Song, Meng, Ermon, "Denoising Diffusion Implicit Models",
ICLR 2021, eq. 12), written for this package and shared by DiffusionDepth and DSR-Diff.

The numbers (``betas``, ``alphas_cumprod``, the ``timesteps`` chosen by :meth:`set_timesteps`,
the outputs of :meth:`step` and :meth:`add_noise`) equal those of ``diffusers.DDIMScheduler``
for the same settings (``clip_sample`` on or off) with ``thresholding=False`` and
``rescale_betas_zero_snr=False`` (checked in ``test/test_ddim.py``).

Forward process (DDPM, Ho et al. 2020, eq. 4):
    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
DDIM reverse step (Song et al. 2021, eq. 12), with sigma_t = eta * sqrt((1-abar_prev)/(1-abar_t))
* sqrt(1 - abar_t/abar_prev):
    x_{prev} = sqrt(abar_prev) x0_pred + sqrt(1 - abar_prev - sigma_t^2) eps_pred + sigma_t z

:func:`ddim_step_tensor` is the tensor-only step used inside exported graphs: timesteps are
tensors, the alpha look-ups are gathers, there is no data-dependent Python control flow.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from depth_diffusion_ros.models.config_base import DDIMConfig
from depth_diffusion_ros.models.ddim_schedule import (
    PREDICTION_TYPES,
    check_timestep_spacing,
    ddim_timestep_pairs,
    ddim_timesteps,
)


def make_betas(
    num_train_timesteps: int = 1000,
    beta_schedule: str = "linear",
    beta_start: float = 0.0001,
    beta_end: float = 0.02,
) -> torch.Tensor:
    """Noise schedule betas, (num_train_timesteps,) float32.

    linear: DDPM (Ho et al. 2020, Sec. 4); scaled_linear: linear in sqrt(beta) (latent
    diffusion, Rombach et al. 2022); squaredcos_cap_v2: cosine schedule (Nichol & Dhariwal 2021,
    eq. 17) with betas capped at 0.999.
    Raises ValueError for an unknown schedule.
    """
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    if beta_schedule == "scaled_linear":
        return (
            torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32)
            ** 2
        )
    if beta_schedule == "squaredcos_cap_v2":
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = []
        for i in range(num_train_timesteps):
            t1 = i / num_train_timesteps
            t2 = (i + 1) / num_train_timesteps
            betas.append(min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999))
        return torch.tensor(betas, dtype=torch.float32)
    raise ValueError(
        f"beta_schedule={beta_schedule!r}: must be linear, scaled_linear or squaredcos_cap_v2"
    )


def _gather(table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """table[t] reshaped to (-1, 1, 1, 1) so it broadcasts over (B, C, H, W) (t scalar or (B,))."""
    return table.index_select(0, t.reshape(-1).long()).reshape(-1, 1, 1, 1)


def _x0_and_eps(
    model_output: torch.Tensor, sample: torch.Tensor, alpha_prod_t: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred_original_sample, pred_epsilon) from the network output (diffusers' formulas)."""
    beta_prod_t = 1 - alpha_prod_t
    if prediction_type == "epsilon":
        pred_original = (sample - beta_prod_t**0.5 * model_output) / alpha_prod_t**0.5
        return pred_original, model_output
    if prediction_type == "sample":
        pred_epsilon = (sample - alpha_prod_t**0.5 * model_output) / beta_prod_t**0.5
        return model_output, pred_epsilon
    if prediction_type == "v_prediction":
        pred_original = alpha_prod_t**0.5 * sample - beta_prod_t**0.5 * model_output
        pred_epsilon = alpha_prod_t**0.5 * model_output + beta_prod_t**0.5 * sample
        return pred_original, pred_epsilon
    raise ValueError(f"prediction_type={prediction_type!r}: must be one of {PREDICTION_TYPES}")


def ddim_step_tensor(
    alphas_cumprod: torch.Tensor,
    final_alpha_cumprod: torch.Tensor,
    model_output: torch.Tensor,
    timestep: torch.Tensor,
    prev_timestep: torch.Tensor,
    sample: torch.Tensor,
    prediction_type: str = "epsilon",
    clip_sample_range: Optional[float] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic (eta = 0) DDIM step (Song et al. 2021, eq. 12) in tensor ops only.

    alphas_cumprod: (T,) float32; final_alpha_cumprod: 0-d or (1,) float32 (used where
    prev_timestep < 0); model_output, sample: (B, C, h, w); timestep, prev_timestep: int64
    tensors, 0-d or (B,). clip_sample_range: clamp the x0 prediction to [-r, r] (diffusers'
    ``clip_sample``), None = no clipping.
    Returns (prev_sample, pred_original_sample), both (B, C, h, w).
    Export-friendly: gathers and ``torch.where`` instead of Python branches on values.
    """
    alpha_prod_t = _gather(alphas_cumprod, timestep).to(sample.dtype)
    prev = prev_timestep.reshape(-1).long()
    alpha_prev = _gather(alphas_cumprod, prev.clamp(min=0)).to(sample.dtype)
    final = final_alpha_cumprod.reshape(1, 1, 1, 1).to(sample.dtype)
    alpha_prod_prev = torch.where(prev.reshape(-1, 1, 1, 1) >= 0, alpha_prev, final)
    pred_original, pred_epsilon = _x0_and_eps(model_output, sample, alpha_prod_t, prediction_type)
    if clip_sample_range is not None:
        pred_original = pred_original.clamp(-clip_sample_range, clip_sample_range)
    prev_sample = alpha_prod_prev**0.5 * pred_original + (1 - alpha_prod_prev) ** 0.5 * pred_epsilon
    return prev_sample, pred_original


@dataclass
class DDIMStepOutput:
    """prev_sample: x_{t-1}; pred_original_sample: the predicted x_0, both (B, C, h, w)."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class DDIMScheduler:
    """DDIM schedule and step (Song et al. 2021), numerically equal to ``diffusers.DDIMScheduler``.

    Args:
        num_train_timesteps: T of the forward process (DiffusionDepth: 1000).
        beta_start, beta_end, beta_schedule: see :func:`make_betas`.
        set_alpha_to_one: abar used after the last step (prev timestep < 0) is 1 if True, else
            abar_0 (diffusers semantics).
        steps_offset: added to the "leading" timesteps (Stable Diffusion uses 1).
        timestep_spacing: "leading", "trailing" or "linspace" (Lin et al. 2024, Table 2).
        prediction_type: "epsilon" (DiffusionDepth), "sample" or "v_prediction".
        clip_sample, clip_sample_range: clamp the x0 prediction to [-range, range] in each step.
    Not supported (simply absent): dynamic thresholding, zero-terminal-SNR rescaling,
    ``use_clipped_model_output``.
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        timestep_spacing: str = "leading",
        prediction_type: str = "epsilon",
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
    ) -> None:
        check_timestep_spacing(timestep_spacing)
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type={prediction_type!r}: must be one of {PREDICTION_TYPES}")
        self.num_train_timesteps = int(num_train_timesteps)
        self.steps_offset = int(steps_offset)
        self.timestep_spacing = timestep_spacing
        self.prediction_type = prediction_type
        self.clip_sample_range: Optional[float] = float(clip_sample_range) if clip_sample else None
        self.betas = make_betas(num_train_timesteps, beta_schedule, beta_start, beta_end)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.final_alpha_cumprod = (
            torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0].clone()
        )
        self.num_inference_steps: Optional[int] = None
        self.timesteps = torch.from_numpy(np.arange(0, num_train_timesteps)[::-1].copy().astype(np.int64))

    @classmethod
    def from_config(cls, config: DDIMConfig) -> "DDIMScheduler":
        """Build from a model config's DDIM fields (:class:`~depth_diffusion_ros.models.config_base.DDIMConfig`:
        DiffusionDepthConfig, DSRDiffConfig)."""
        return cls(**{name: getattr(config, name) for name in DDIMConfig.SCHEDULER_FIELDS})

    # ------------------------------------------------------------------ timesteps
    def compute_timesteps(self, num_inference_steps: int) -> np.ndarray:
        """The ``num_inference_steps`` timesteps (descending int64) for this schedule's spacing
        (:func:`~depth_diffusion_ros.models.ddim_schedule.ddim_timesteps`), without changing the
        scheduler's state.

        Raises ValueError if num_inference_steps is < 1 or > num_train_timesteps.
        """
        return ddim_timesteps(num_inference_steps, self.num_train_timesteps, self.timestep_spacing, self.steps_offset)

    def set_timesteps(
        self, num_inference_steps: int, device: Union[str, torch.device, None] = None
    ) -> torch.Tensor:
        """Set and return the inference timesteps (as ``diffusers.DDIMScheduler.set_timesteps``)."""
        ts = self.compute_timesteps(num_inference_steps)
        self.num_inference_steps = int(num_inference_steps)
        self.timesteps = torch.from_numpy(ts).to(device)
        return self.timesteps

    def previous_timestep(self, timestep: Union[int, torch.Tensor]) -> Union[int, torch.Tensor]:
        """t - T // num_inference_steps, as diffusers' DDIM step computes it (may be < 0)."""
        if self.num_inference_steps is None:
            raise RuntimeError("call set_timesteps() before step()/previous_timestep()")
        return timestep - self.num_train_timesteps // self.num_inference_steps

    def timestep_pairs(self, num_inference_steps: Optional[int] = None) -> list[tuple[int, int]]:
        """[(t, prev_t), ...] as :meth:`step` pairs them (prev_t = t - T // n, may be < 0).

        Uses the current timesteps, or computes them for ``num_inference_steps`` without
        changing the scheduler's state.
        """
        if num_inference_steps is None:
            if self.num_inference_steps is None:
                raise RuntimeError("call set_timesteps() first or pass num_inference_steps")
            num_inference_steps = self.num_inference_steps
        return ddim_timestep_pairs(num_inference_steps, self.num_train_timesteps, self.timestep_spacing,
                                   self.steps_offset)

    # ------------------------------------------------------------------ process
    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """Forward diffusion q(x_t | x_0) (Ho et al. 2020, eq. 4). timesteps: (B,) int64."""
        ac = self.alphas_cumprod.to(device=original_samples.device, dtype=original_samples.dtype)
        a = _gather(ac, timesteps.to(original_samples.device))
        return a**0.5 * original_samples + (1 - a) ** 0.5 * noise

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[int, torch.Tensor],
        sample: torch.Tensor,
        eta: float = 0.0,
        generator: Optional[torch.Generator] = None,
        variance_noise: Optional[torch.Tensor] = None,
        prev_timestep: Union[int, torch.Tensor, None] = None,
    ) -> DDIMStepOutput:
        """One DDIM step (Song et al. 2021, eq. 12) from ``timestep`` to ``prev_timestep``
        (default ``timestep - T // num_inference_steps``, as diffusers).

        model_output, sample: (B, C, h, w). eta = 0 is deterministic; eta > 0 adds
        sigma_t * variance_noise (drawn from ``generator`` when not given).
        """
        if prev_timestep is None:
            prev_timestep = self.previous_timestep(timestep)
        device = sample.device
        t = torch.as_tensor(timestep, device=device).long()
        tp = torch.as_tensor(prev_timestep, device=device).long()
        ac = self.alphas_cumprod.to(device)
        final = self.final_alpha_cumprod.to(device)
        prev_sample, pred_original = ddim_step_tensor(
            ac, final, model_output, t, tp, sample, self.prediction_type, self.clip_sample_range
        )
        if eta > 0:
            a_t = _gather(ac, t).to(sample.dtype)
            a_prev = torch.where(
                tp.reshape(-1, 1, 1, 1) >= 0,
                _gather(ac, tp.clamp(min=0)),
                final.reshape(1, 1, 1, 1),
            ).to(sample.dtype)
            variance = ((1 - a_prev) / (1 - a_t)) * (1 - a_t / a_prev)
            std = eta * variance**0.5
            _, eps = _x0_and_eps(model_output, sample, a_t, self.prediction_type)
            prev_sample = a_prev**0.5 * pred_original + (1 - a_prev - std**2) ** 0.5 * eps
            if variance_noise is None:
                variance_noise = torch.randn(
                    model_output.shape, generator=generator, device=device, dtype=model_output.dtype
                )
            prev_sample = prev_sample + std * variance_noise
        return DDIMStepOutput(prev_sample=prev_sample, pred_original_sample=pred_original)
