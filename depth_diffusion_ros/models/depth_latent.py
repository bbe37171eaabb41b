"""Depth latent space: an encoder depth -> (d, H/s, W/s) latent and a decoder back to metres.

DiffusionDepth (arXiv 2303.05021, Sec. 3.4) denoises a d = 16 channel depth latent; the authors'
code keeps it at stride 2 and decodes with a reciprocal parameterisation
``depth = 1 / sigmoid(x) - 1``. Note 1/sigmoid(x) - 1 = exp(-x) exactly, i.e. a log-depth
output; we compute it as ``exp(-x)`` (same function, no overflow at sigmoid(x) -> 0).
Our stride ``s`` is a config value (default 8, ~16x fewer latent positions than stride 2).

Completion mode: the decoder also receives full-resolution *guidance* (the normalised log of the
densified LiDAR prior and its validity, see :mod:`depth_diffusion_ros.models.prior`) and
predicts, per pixel, a log residual ``r`` over the prior and a gate ``g``; the output is
    log depth = log_mono + sigmoid(g) * prior_valid * (log(prior) + r - log_mono),
so with no LiDAR (prior_valid = 0) it is exactly the monocular decode ``exp(-x)``. u and r are
soft-bounded with tanh (:data:`U_BOUND`, :data:`R_BOUND`) for stable early training.

With two priors (guidance = [pull-push prior, its validity, scan-line prior, measured-pixel
mask], ``DiffusionDepthConfig.prior_scanline_gap`` > 0) the head also predicts a selection
logit ``a`` and
    log(prior) = log P + sigmoid(a) * (log S - log P),
    a = w * (log S - log P) + b + head output,
where w, b are learned scalars initialised to the hand rule
:func:`~depth_diffusion_ros.models.prior.select_scanline` (a soft step at
log(1 + max_farther)) and the head's image-dependent correction starts near zero.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from depth_diffusion_ros.models.neck import ConvAct


class LogDepthNormalizer(nn.Module):
    """Maps metres to normalised log depth: [min_depth, max_depth] -> [-1, 1], and back.

    forward(depth (B,1,H,W) m) -> (B,1,H,W) normalised (depth clamped to >= min_depth first).
    """

    def __init__(self, min_depth: float, max_depth: float) -> None:
        super().__init__()
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.center = 0.5 * (math.log(min_depth) + math.log(max_depth))
        self.scale = 0.5 * (math.log(max_depth) - math.log(min_depth))

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        return (torch.log(depth.clamp(min=self.min_depth)) - self.center) / self.scale

    def log_depth(self, normalised: torch.Tensor) -> torch.Tensor:
        """Inverse of forward, in log metres."""
        return normalised * self.scale + self.center


U_BOUND = 1.25  # |u| bound: depth within [min_depth, max_depth] widened by 25 % of the log range
R_BOUND = 1.0  # bound of the log residual over the LiDAR prior (a factor e^-1 .. e^1)


def _num_halvings(stride: int) -> int:
    n = int(round(math.log2(stride)))
    if 2**n != stride:
        raise ValueError(f"latent stride {stride} must be a power of two")
    return n


class DepthEncoder(nn.Module):
    """Depth (B,1,H,W) metres -> latent (B, latent_channels, H/s, W/s) in (-1, 1).

    Input is normalised log depth; log2(s) stride-2 conv + SiLU stages, channels doubling from
    ``channels // 2**(log2 s)`` (min 8) up to ``channels``. No normalisation layers here or in
    the decoder: a per-sample GroupNorm would erase the absolute (metric) depth level.
    """

    def __init__(self, latent_channels: int, stride: int, channels: int, normalizer: LogDepthNormalizer) -> None:
        super().__init__()
        n = _num_halvings(stride)
        self.normalizer = normalizer
        widths = [max(8, channels // 2 ** (n - i)) for i in range(n + 1)]
        layers: list[nn.Module] = [ConvAct(1, widths[0], 3)]
        for i in range(n):
            layers.append(ConvAct(widths[i], widths[i + 1], 3, stride=2))
        layers.append(nn.Conv2d(widths[-1], latent_channels, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        # tanh keeps the latent in (-1, 1), the range DDPM-style samples live in, so the
        # latent-alignment term anchors the refined latents' scale to that of the noise
        return torch.tanh(self.net(self.normalizer(depth)))


class DepthDecoder(nn.Module):
    """Latent (B, d, H/s, W/s) [+ guidance (B, G, H, W)] -> depth (B,1,H,W) metres.

    log2(s) stages of (bilinear x2 upsample, conv + SiLU), channels halving from ``channels``
    (min 8). At full resolution the guidance channels are concatenated and a head predicts
    u (monocular: depth = exp(-x) = 1/sigmoid(x) - 1, the authors' parameterisation, with
    x = -(center + scale*u), i.e. u is normalised log depth) and, when ``guidance_channels`` is 2
    (completion), the residual r and gate g described in the module docstring. u starts at
    the value of max_depth / 4 so an untrained model predicts a plausible depth.
    """

    def __init__(
        self,
        latent_channels: int,
        stride: int,
        channels: int,
        normalizer: LogDepthNormalizer,
        guidance_channels: int = 0,
        select_max_farther: float = 0.1,
        select_sharpness: float = 50.0,
        skip_channels: tuple = (),
        uncertainty: bool = False,
        head_kernel: int = 3,
    ) -> None:
        super().__init__()
        n = _num_halvings(stride)
        if len(skip_channels) > max(0, n - 1):
            raise ValueError(f"skip_channels={skip_channels}: at most {max(0, n - 1)} for stride {stride}")
        if guidance_channels not in (0, 2, 4):
            raise ValueError(f"guidance_channels={guidance_channels}: must be 0, 2 or 4")
        self.normalizer = normalizer
        self.guidance_channels = int(guidance_channels)
        self.skip_channels = tuple(int(c) for c in skip_channels)
        widths = [max(8, channels // 2**i) for i in range(n + 1)]
        self.stem = ConvAct(latent_channels, widths[0], 3)
        skips = list(self.skip_channels) + [0] * (n - len(self.skip_channels))
        # with image skips the last upsampling (to full resolution) has no conv of its own: the
        # refine layer is the only conv before the head there (full-resolution layers set the speed)
        n_convs = n - 1 if self.skip_channels else n
        self.ups = nn.ModuleList(ConvAct(widths[i] + skips[i], widths[i + 1], 3) for i in range(n_convs))
        if n_convs < n:
            widths[-1] = widths[-2]
        self.refine = ConvAct(widths[-1] + self.guidance_channels, widths[-1], 3)
        out = {0: 1, 2: 3, 4: 4}[self.guidance_channels]
        self.uncertainty = bool(uncertainty)
        self.uncertainty_index = out
        out += int(self.uncertainty)
        if self.guidance_channels == 4:
            self.select_weight = nn.Parameter(torch.tensor(-float(select_sharpness)))
            self.select_bias = nn.Parameter(torch.tensor(float(select_sharpness) * math.log1p(select_max_farther)))
        self.head = nn.Conv2d(widths[-1], out, head_kernel, padding=head_kernel // 2)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()
            # start at max_depth / 4 (a typical scene depth: ~20 m for KITTI's 80 m, 2.5 m for
            # NYU's 10 m) so the monocular branch is not metres off at the first step
            u0 = (math.log(normalizer.max_depth / 4.0) - normalizer.center) / normalizer.scale
            u0 = max(-0.9, min(0.9, u0)) * U_BOUND
            self.head.bias[0] = U_BOUND * math.atanh(u0 / U_BOUND)
            if self.guidance_channels:
                self.head.bias[2] = 4.0  # start by trusting the LiDAR prior (gate 0.98) where it exists
            if self.uncertainty:
                self.head.bias[self.uncertainty_index] = math.log(0.1)  # b = 0.1: a 10 % error scale

    def forward(self, latents: torch.Tensor, guidance: torch.Tensor | None = None,
                skips: list | None = None) -> torch.Tensor:
        """Returns *log* depth (B,1,H,W), with ``uncertainty`` (B,2,H,W): [log depth, log b], b the
        scale of a Laplace distribution of log depth (:func:`laplace_log_depth_nll`). guidance (B,G,H,W) (zeros when None: no LiDAR);
        skips: image features [(B, skip_channels[i], H/s*2**(i+1), W/s*2**(i+1))] coarse to fine
        (zeros when None)."""
        h = self.stem(latents)
        for i in range(len(self.ups) + (1 if self.skip_channels else 0)):
            h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
            if i < len(self.skip_channels):
                skip = skips[i] if skips else h.new_zeros(h.shape[0], self.skip_channels[i], h.shape[2], h.shape[3])
                h = torch.cat([h, skip], dim=1)
            if i < len(self.ups):
                h = self.ups[i](h)
        if self.guidance_channels:
            if guidance is None:
                guidance = h.new_zeros(h.shape[0], self.guidance_channels, h.shape[2], h.shape[3])
            h = torch.cat([h, guidance], dim=1)
        out = self.head(self.refine(h))
        # depth = 1/sigmoid(x) - 1 = exp(-x) with x = -(center + scale * u): the head predicts u
        # in normalised log depth ([-1, 1] spans [min_depth, max_depth]), which keeps the
        # head's steps in a useful range for Adam (a raw x would need ~log(80) of bias travel).
        # u is soft-bounded (U_BOUND * tanh) so an early, wild latent cannot decode to depths
        # far outside the range (whose squared error would blow up the L2 term).
        u = U_BOUND * torch.tanh(out[:, 0:1] / U_BOUND)
        log_mono = self.normalizer.log_depth(u)
        if not self.guidance_channels:
            return self._with_uncertainty(log_mono, out)
        assert guidance is not None
        prior_norm, prior_valid = guidance[:, 0:1], guidance[:, 1:2]
        log_prior = self.normalizer.log_depth(prior_norm)
        if self.guidance_channels == 4:
            log_ratio = (self.normalizer.log_depth(guidance[:, 2:3]) - log_prior) * prior_valid
            select = torch.sigmoid(self.select_weight * log_ratio + self.select_bias + out[:, 3:4])
            log_prior = log_prior + select * log_ratio
        gate = torch.sigmoid(out[:, 2:3]) * prior_valid
        residual = R_BOUND * torch.tanh(out[:, 1:2] / R_BOUND)  # |log residual| < R_BOUND
        return self._with_uncertainty(log_mono + gate * (log_prior + residual - log_mono), out)

    def _with_uncertainty(self, log_depth: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if not self.uncertainty:
            return log_depth
        # log b soft-bounded to [log 1e-3, log 3]: a 0.1 % .. 300 % error scale
        i = self.uncertainty_index
        log_b = LOG_B_MID + LOG_B_HALF * torch.tanh((out[:, i:i + 1] - LOG_B_MID) / LOG_B_HALF)
        return torch.cat([log_depth, log_b], dim=1)


LOG_B_MID = 0.5 * (math.log(1e-3) + math.log(3.0))
LOG_B_HALF = 0.5 * (math.log(3.0) - math.log(1e-3))


def laplace_log_depth_nll(log_depth: torch.Tensor, log_b: torch.Tensor, gt: torch.Tensor,
                          valid: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood (up to log 2) of the GT's log depth under a Laplace
    distribution centred at ``log_depth`` (detached: the uncertainty head learns the error's scale
    without pulling the depth) with scale b = exp(log_b): |log gt - sg(log d)| / b + log b.

    The aleatoric-uncertainty loss of Kendall & Gal, "What Uncertainties Do We Need in Bayesian
    Deep Learning for Computer Vision?", NeurIPS 2017, eq. 8 (their L1 / Laplace form), on log depth.
    All (B,1,H,W); gt metres, valid {0,1}. Returns a scalar (0 when nothing is valid).
    """
    err = (torch.log(gt.clamp(min=1e-3)) - log_depth.detach()).abs()
    nll = err * torch.exp(-log_b) + log_b
    return (nll * valid).sum() / valid.sum().clamp(min=1.0)
