"""Multiply-accumulate (MAC) counting with ``torch.utils.flop_counter.FlopCounterMode``.

FlopCounterMode counts 2 FLOPs per multiply-add of matmuls/convolutions (elementwise ops,
norms and activations are not counted), so MAC = FLOP / 2 — the convention of most papers'
"GMACs" / "GFLOPs" tables for CNNs.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_macs(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Number of MACs of one call ``fn(*args, **kwargs)`` (run under ``torch.no_grad``).

    fn: a module or any callable running torch ops. Returns an int (MAC = FLOP / 2).
    """
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops()) // 2


def count_gmacs(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """:func:`count_macs` in units of 1e9."""
    return count_macs(fn, *args, **kwargs) / 1e9


def diffusion_depth_gmacs(model: torch.nn.Module, height: int = 352, width: int = 1216) -> Dict[str, float]:
    """GMACs of a DiffusionDepth's parts for one (1,3,H,W) frame (batch 1).

    Returns {"encode_condition", "denoise_step" (one denoiser pass = one DDIM step),
    "decode", "total_20_steps" (encode + 20 steps + decode, with the config's default steps
    substituted if it differs: key "total_<n>_steps")}.
    """
    model.eval()
    rgb = torch.zeros(1, 3, height, width)
    sparse = torch.zeros(1, 1, height, width)
    with torch.no_grad():
        cond = model.encode_condition(rgb, sparse if model.completion else None)
    latents = torch.zeros((1,) + tuple(model.latent_shape(height, width)))
    t = torch.tensor(500, dtype=torch.long)
    enc = count_gmacs(model.encode_condition, rgb, sparse if model.completion else None)
    step = count_gmacs(model.denoise, latents, t, cond)
    dec = count_gmacs(model.decode, latents, cond)
    n = int(model.config.num_inference_steps)
    return {
        "encode_condition": enc,
        "denoise_step": step,
        "decode": dec,
        f"total_{n}_steps": enc + n * step + dec,
    }
