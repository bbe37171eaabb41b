"""The DDIM timestep rule (numpy only, no torch): which timesteps a sampler visits and in which pairs.

Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, Sec. 4.2 (sampling on a
sub-sequence of the training timesteps); the spacings of Lin et al., "Common Diffusion Noise
Schedules and Sample Steps are Flawed", WACV 2024, Table 2. The numbers equal
``diffusers.DDIMScheduler.set_timesteps`` (and the ``prev_timestep`` of its ``step``) for the same
settings (checked in ``test/test_ddim.py``).

Shared by the torch scheduler (:class:`~depth_diffusion_ros.models.ddim.DDIMScheduler`), the
models and the torch-free ONNX Runtime / TensorRT samplers, so all of them visit the same steps.
"""
from __future__ import annotations

import numpy as np

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def check_timestep_spacing(timestep_spacing: str) -> None:
    """Raise ValueError naming ``timestep_spacing`` unless it is one of :data:`TIMESTEP_SPACINGS`."""
    if timestep_spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"timestep_spacing={timestep_spacing!r}: must be one of {TIMESTEP_SPACINGS}")


def ddim_timesteps(
    num_inference_steps: int,
    num_train_timesteps: int = 1000,
    timestep_spacing: str = "leading",
    steps_offset: int = 0,
) -> np.ndarray:
    """The ``num_inference_steps`` timesteps a DDIM sampler visits, descending, int64 (n,).

    leading: ``arange(n) * (T // n) + steps_offset``; trailing: ``round(arange(T, 0, -T/n)) - 1``;
    linspace: ``round(linspace(0, T - 1, n))`` (each reversed to descending order).
    Raises ValueError for num_inference_steps outside [1, num_train_timesteps] or an unknown
    spacing (the message names the value).
    """
    n, T = int(num_inference_steps), int(num_train_timesteps)
    if n < 1 or n > T:
        raise ValueError(f"num_inference_steps={n}: must be in [1, num_train_timesteps={T}]")
    check_timestep_spacing(timestep_spacing)
    if timestep_spacing == "linspace":
        return np.linspace(0, T - 1, n).round()[::-1].copy().astype(np.int64)
    if timestep_spacing == "leading":
        ratio = T // n
        return (np.arange(0, n) * ratio).round()[::-1].copy().astype(np.int64) + int(steps_offset)
    return np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1  # trailing


def ddim_timestep_pairs(
    num_inference_steps: int,
    num_train_timesteps: int = 1000,
    timestep_spacing: str = "leading",
    steps_offset: int = 0,
) -> list[tuple[int, int]]:
    """[(t, prev_t), ...] in sampling order, prev_t = t - T // n as diffusers' DDIM step pairs them.

    prev_t < 0 on the last step means "use the final alpha" (``set_alpha_to_one``). Raises
    ValueError as :func:`ddim_timesteps`.
    """
    ts = ddim_timesteps(num_inference_steps, num_train_timesteps, timestep_spacing, steps_offset)
    ratio = int(num_train_timesteps) // int(num_inference_steps)
    return [(int(t), int(t) - ratio) for t in ts]
