"""The two modules of IID-RDepth with a property to test: the invertible (bi-Lipschitz) transform
of the InvT-IndDiffusion decoder, and the auxiliary-view low-level feature enhancement (AV-LFE).

* :class:`LipschitzConv2d`: a convolution whose operator norm is bounded by ``bound``: the weight,
  reshaped to (out, in*k*k), is divided by ``k * sigma_max`` (its exact largest singular value,
  ``torch.linalg.matrix_norm(ord=2)``) whenever ``k * sigma_max > bound``. A k x k convolution
  with zero padding is that matrix applied to the k*k shifted copies of the input stacked, whose
  norm is at most k times the input's, so ``||conv(x) - conv(y)|| <= bound * ||x - y||`` exactly
  (no power-iteration estimate that could undershoot). In eval mode the scaled weight is cached
  (export: no SVD in the graph).
* :class:`InvertibleResidualBlock` (i-ResNet, Behrmann et al., ICML 2019): ``y = x + g(x)`` with
  ``Lip(g) <= c < 1`` (two Lipschitz convolutions of bound sqrt(c) around an ELU, 1-Lipschitz),
  so ``(1 - c) ||x - x'|| <= ||y - y'|| <= (1 + c) ||x - x'||`` and the inverse is the fixed
  point of ``x = y - g(x)`` (Banach; error <= c^n / (1 - c) * ||g(y)|| after n iterations).
* :class:`InvertibleTransform`: a stack of them; bi-Lipschitz with constants
  ``prod(1 + c)`` and ``prod(1 / (1 - c))``.
* :class:`AuxViewEnhancement`: for each pixel of the main view's low-level feature, attention
  over a ``window`` x ``window`` neighbourhood of the auxiliary view's feature (scaled dot
  products of 1x1 projections, softmax over the window: a local correlation that finds the
  pixel's match under small motion / disparity), the attended auxiliary values fused by a gate:
  ``f' = f + w * sigmoid(G[f, a]) * P a``, ``w`` in {0, 1} per sample (0: no auxiliary view,
  f' = f exactly), ``P`` zero-initialised (the module starts as the identity: plug-and-play).
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn


class LipschitzConv2d(nn.Module):
    """Conv2d (stride 1, 'same' zero padding) with operator norm <= ``bound`` (module docstring)."""

    def __init__(self, cin: int, cout: int, kernel: int, bound: float) -> None:
        super().__init__()
        self.kernel, self.bound = int(kernel), float(bound)
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self._cache: Optional[tuple] = None

    def norm_bound(self) -> torch.Tensor:
        """``k * sigma_max(W reshaped)``: an upper bound of the raw convolution's operator norm."""
        w = self.weight.reshape(self.weight.shape[0], -1)
        return self.kernel * torch.linalg.matrix_norm(w, ord=2)

    def compute_scaled_weight(self) -> torch.Tensor:
        """The weight scaled down so that the operator norm is <= ``bound`` (differentiable)."""
        return self.weight * (self.bound / torch.clamp(self.norm_bound(), min=self.bound))

    def scaled_weight(self) -> torch.Tensor:
        """The weight used: computed in training; in eval mode cached until the weight changes
        (its version counter), so inference and an ONNX trace see a constant (no SVD)."""
        if self.training:
            return self.compute_scaled_weight()
        key = (self.weight._version, self.weight.data_ptr())
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self.compute_scaled_weight().detach())
        return self._cache[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.scaled_weight(), self.bias, padding=self.kernel // 2)


class InvertibleResidualBlock(nn.Module):
    """``y = x + g(x)``, ``g = conv1x1 . ELU . conv3x3``, Lip(g) <= ``coeff`` < 1 (module docstring)."""

    def __init__(self, channels: int, hidden: int, coeff: float) -> None:
        super().__init__()
        b = math.sqrt(coeff)
        self.coeff = float(coeff)
        self.conv1 = LipschitzConv2d(channels, hidden, 3, b)
        self.conv2 = LipschitzConv2d(hidden, channels, 1, b)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """g(x): the residual branch."""
        return self.conv2(F.elu(self.conv1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)

    def inverse(self, y: torch.Tensor, iterations: int = 60) -> torch.Tensor:
        """x with x + g(x) = y by the fixed-point iteration x <- y - g(x), from x = y."""
        x = y
        for _ in range(int(iterations)):
            x = y - self.branch(x)
        return x


class InvertibleTransform(nn.Module):
    """A stack of :class:`InvertibleResidualBlock` (channels preserved), with its inverse."""

    def __init__(self, channels: int, hidden: int, blocks: int, coeff: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(InvertibleResidualBlock(channels, hidden, coeff) for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def inverse(self, y: torch.Tensor, iterations: int = 60) -> torch.Tensor:
        for block in reversed(self.blocks):
            y = block.inverse(y, iterations)
        return y

    def lipschitz_bounds(self) -> tuple[float, float]:
        """(Lip of the transform, Lip of its inverse): prod(1 + c), prod(1 / (1 - c))."""
        fwd, inv = 1.0, 1.0
        for block in self.blocks:
            fwd *= 1.0 + block.coeff
            inv /= 1.0 - block.coeff
        return fwd, inv


def window_gather(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, window*window, H, W): every pixel's zero-padded neighbourhood
    (row-major offsets), as slices of the padded map (exports to Pad + Slice)."""
    h, w = x.shape[-2:]
    r = window // 2
    p = F.pad(x, (r, r, r, r))
    return torch.stack([p[..., dy:dy + h, dx:dx + w] for dy in range(window) for dx in range(window)], dim=2)


class AuxViewEnhancement(nn.Module):
    """AV-LFE on one low-level level (module docstring): f (B,C,H,W), f_aux (B,C,H,W),
    aux_weight (B,1,1,1) in {0,1} -> f' (B,C,H,W)."""

    def __init__(self, channels: int, dim: int, window: int) -> None:
        super().__init__()
        self.dim, self.window = int(dim), int(window)
        self.query = nn.Conv2d(channels, dim, 1)
        self.key = nn.Conv2d(channels, dim, 1)
        self.value = nn.Conv2d(channels, dim, 1)
        self.gate = nn.Conv2d(channels + dim, channels, 1)
        self.proj = nn.Conv2d(dim, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def attend(self, f: torch.Tensor, f_aux: torch.Tensor) -> torch.Tensor:
        """The attended auxiliary values a (B, dim, H, W)."""
        q = self.query(f)  # (B,d,H,W)
        k = window_gather(self.key(f_aux), self.window)  # (B,d,K,H,W)
        v = window_gather(self.value(f_aux), self.window)  # (B,d,K,H,W)
        attn = torch.softmax((q.unsqueeze(2) * k).sum(1) / math.sqrt(self.dim), dim=1)  # (B,K,H,W)
        return (attn.unsqueeze(1) * v).sum(2)  # (B,d,H,W)

    def forward(self, f: torch.Tensor, f_aux: torch.Tensor, aux_weight: torch.Tensor) -> torch.Tensor:
        a = self.attend(f, f_aux)
        g = torch.sigmoid(self.gate(torch.cat([f, a], dim=1)))
        return f + aux_weight * g * self.proj(a)


def stack_levels(feats: List[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of each (B,C_i,h_i,w_i) to ``size`` and concatenation on channels."""
    return torch.cat([f if tuple(f.shape[-2:]) == tuple(size) else
                      F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats], dim=1)
