"""The depth losses of the models' ``training_losses`` (one home; ``training`` uses them from here).

Masked pixel losses: ``pred``, ``target`` (B, 1, H, W) in the same units (metres, or a model's
normalised depth) and a ``mask`` (B, 1, H, W) of {0, 1} weights (build one from ground truth
with :func:`valid_depth_mask`); means run over the masked pixels and are 0 when there is none, so
a batch without GT gives a zero, differentiable loss rather than NaN.

DenseDepth loss (Alhashim & Wonka, "High Quality Monocular Depth Estimation via Transfer
Learning", arXiv 1812.11941, Sec. 3.2, Eq. 1-4), also used for the SR regression baseline:

    L(y, y_hat) = lambda * L_depth + L_grad + L_SSIM,   lambda = 0.1
    L_depth = mean |y - y_hat|                                   (Eq. 2)
    L_grad  = mean (|g_x(y, y_hat)| + |g_y(y, y_hat)|)           (Eq. 3; g = difference of the
              forward finite differences of y and y_hat along x / y)
    L_SSIM  = (1 - SSIM(y, y_hat)) / 2                           (Eq. 4)

SSIM (Wang et al., IEEE TIP 2004): 11x11 Gaussian window, sigma 1.5, C1 = (0.01 L)^2,
C2 = (0.03 L)^2 with the dynamic range L (the authors' code uses L = max depth in their
reciprocal-depth units, 1000/10 for NYU), 'valid' windows only (no padding), mean over the map.
With a validity mask, L_depth and L_grad average over valid pixels (a gradient term counts where
both of its pixels are valid); SSIM runs on the maps with invalid GT pixels replaced by the
prediction (so they contribute no structural error).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------- masked pixel losses
def valid_depth_mask(depth: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Bool (B, 1, H, W): pixels with ground truth, ``depth > 0`` and (if given) ``mask > 0.5``."""
    valid = depth > 0
    return valid if mask is None else (mask > 0.5) & valid


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum(values * mask) / max(sum(mask), 1): the mean over the masked pixels (0 when none)."""
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |pred - target| over the masked pixels (units of the depth). DiffusionDepth's L1 term
    (arXiv 2303.05021, Sec. 3.4), DSR-Diff's L1 (arXiv 2311.09919, Sec. 3.5), DenseDepth's L_depth."""
    return masked_mean((pred - target).abs(), mask)


def masked_l2(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean (pred - target)^2 over the masked pixels (squared units). DiffusionDepth's L2 term."""
    return masked_mean((pred - target) ** 2, mask)


def masked_rmse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sqrt(:func:`masked_l2` + 1e-12): the batch RMSE over the masked pixels (units of the depth)."""
    return torch.sqrt(masked_l2(pred, target, mask) + 1e-12)


def silog_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, variance_focus: float = 0.85,
               eps: float = 1e-6) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al., NeurIPS 2014, Eq. 4; BTS weighting lambda = 0.85):
    ``sqrt(mean(g^2) - lambda * mean(g)^2) * 10`` with ``g = log pred - log target`` over the
    masked pixels (pred, target metres)."""
    n = mask.sum().clamp(min=1.0)
    g = (torch.log(pred.clamp(min=eps)) - torch.log(target.clamp(min=eps))) * mask
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


# ----------------------------------------------------------------------------- DenseDepth
def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32, device=None) -> torch.Tensor:
    """(1, 1, size, size) normalised 2-D Gaussian window."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).reshape(1, 1, size, size)


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float, window_size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of (B,1,H,W) maps (Wang et al. 2004), Gaussian window, valid windows only.

    Raises:
        ValueError: maps smaller than the window or shapes differ.
    """
    if pred.shape != target.shape:
        raise ValueError(f"ssim: shapes differ {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.shape[-1] < window_size or pred.shape[-2] < window_size:
        raise ValueError(f"ssim: maps {tuple(pred.shape[-2:])} are smaller than the {window_size}px window")
    c = pred.shape[1]
    w = gaussian_window(window_size, sigma, pred.dtype, pred.device).expand(c, 1, window_size, window_size)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x = F.conv2d(pred, w, groups=c)
    mu_y = F.conv2d(target, w, groups=c)
    sxx = F.conv2d(pred * pred, w, groups=c) - mu_x**2
    syy = F.conv2d(target * target, w, groups=c) - mu_y**2
    sxy = F.conv2d(pred * target, w, groups=c) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean()


def gradient_loss(pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """DenseDepth Eq. 3: mean over pixels of |dx(y) - dx(y_hat)| + |dy(y) - dy(y_hat)|.

    Forward differences; the x and y terms are averaged over their own (valid) positions and
    summed.
    """
    dx_p, dx_t = pred[..., :, 1:] - pred[..., :, :-1], target[..., :, 1:] - target[..., :, :-1]
    dy_p, dy_t = pred[..., 1:, :] - pred[..., :-1, :], target[..., 1:, :] - target[..., :-1, :]
    ex, ey = (dx_p - dx_t).abs(), (dy_p - dy_t).abs()
    if mask is None:
        return ex.mean() + ey.mean()
    mx = mask[..., :, 1:] * mask[..., :, :-1]
    my = mask[..., 1:, :] * mask[..., :-1, :]
    return masked_mean(ex, mx) + masked_mean(ey, my)


def densedepth_loss(pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None,
                    depth_weight: float = 0.1, data_range: float = 1.0) -> Dict[str, torch.Tensor]:
    """DenseDepth loss (module docstring) on (B,1,H,W) maps.

    Args:
        pred, target: same units (the paper: reciprocal depth max_depth / depth).
        mask: (B,1,H,W) {0,1} valid GT, or None (all valid).
        depth_weight: lambda (0.1 in the paper).
        data_range: SSIM dynamic range L.
    Returns:
        dict with ``loss`` (total), ``l_depth``, ``l_grad``, ``l_ssim``.
    """
    if mask is None:
        l_depth = (pred - target).abs().mean()
        tgt_for_ssim = target
    else:
        l_depth = masked_l1(pred, target, mask)
        tgt_for_ssim = torch.where(mask > 0, target, pred.detach())
    l_grad = gradient_loss(pred, target, mask)
    l_ssim = (1.0 - ssim(pred, tgt_for_ssim, data_range)) / 2.0
    l_ssim = l_ssim.clamp(0.0, 1.0)
    total = depth_weight * l_depth + l_grad + l_ssim
    return {"loss": total, "l_depth": l_depth, "l_grad": l_grad, "l_ssim": l_ssim}
