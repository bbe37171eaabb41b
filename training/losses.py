"""Masked depth losses shared by training code (the models' own ``training_losses`` may use them).

All take ``pred``, ``target`` (B, 1, H, W) metres and a ``mask`` (B, 1, H, W) {0, 1} or bool of
pixels with ground truth; the mean is over valid pixels (0 when there is none, so a batch without
GT yields a zero, differentiable loss rather than NaN).
"""
from __future__ import annotations

from typing import Dict, Mapping

import torch


def _valid(mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((mask > 0.5) & (target > 0)).to(target.dtype)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean |pred - target| over valid pixels (metres). DiffusionDepth's L1 term (Sec. 3.4)."""
    m = _valid(mask, target)
    return ((pred - target).abs() * m).sum() / m.sum().clamp(min=1.0)


def masked_l2(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean (pred - target)^2 over valid pixels (m^2). DiffusionDepth's L2 term (Sec. 3.4)."""
    m = _valid(mask, target)
    return (((pred - target) ** 2) * m).sum() / m.sum().clamp(min=1.0)


def silog_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, variance_focus: float = 0.85,
               eps: float = 1e-6) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al., NeurIPS 2014, Eq. 4; BTS weighting lambda = 0.85):
    ``sqrt(mean(g^2) - lambda * mean(g)^2) * 10`` with ``g = log pred - log target``."""
    m = _valid(mask, target)
    n = m.sum().clamp(min=1.0)
    g = (torch.log(pred.clamp(min=eps)) - torch.log(target.clamp(min=eps))) * m
    mean_g = g.sum() / n
    return torch.sqrt(((g**2).sum() / n - variance_focus * mean_g**2).clamp(min=0.0) + eps) * 10.0


def weighted_total(parts: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> Dict[str, torch.Tensor]:
    """``{"loss": sum_k weights[k] * parts[k], **detached parts}`` (the ``training_losses`` dict).

    Raises:
        KeyError: a weight names a part that is not there.
    """
    missing = sorted(set(weights) - set(parts))
    if missing:
        raise KeyError(f"loss weights for missing parts {missing}; parts are {sorted(parts)}")
    total = sum(float(w) * parts[k] for k, w in weights.items())
    out = {k: v.detach() for k, v in parts.items()}
    out["loss"] = total
    return out
