"""Configuration of DSR-Diff (colour-guided depth super-resolution with latent diffusion).

A dataclass on the shared config base (:mod:`depth_diffusion_ros.models.config_base`: YAML
round trip, the DDIM fields); no torch import, so a node can read a checkpoint's ``config.yaml``
(for example its trained scale range) without torch installed.

Source: Shi et al., "DSR-Diff: Depth Map Super-Resolution with Diffusion Model",
arXiv 2311.09919 (GGN / DSRN / GRN, two-stage training). The depth-noise augmentation fields
follow Kirch et al., "RGB-D-Fusion", arXiv 2307.15988, Sec. 3 (Gaussian noise on the
low-resolution depth condition, sigma drawn per sample).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, FrozenSet, List

from depth_diffusion_ros.models.config_base import DDIMConfig


@dataclass
class DSRDiffConfig(DDIMConfig):
    """Hyper-parameters of :class:`~depth_diffusion_ros.models.dsr_diff.DSRDiff`.

    Network (DSR-Diff Sec. 3.2-3.4):
        channels: feature channels C of the DSRN (depth and colour branches, fusion group).
        num_heads: heads of the transposed (channel) self-attention in each transformer block.
        ffn_expansion: hidden-width factor of the gated feed-forward network.
        dfe_blocks / cfe_blocks / fusion_blocks: transformer blocks in the depth feature
            extraction (DFE) group, colour feature extraction (CFE) group and the
            reconstruction group after the feature fusion module (FFM).
        feature_stride: the DSRN's colour/fusion branch runs at H/feature_stride (pixel
            unshuffle in, pixel shuffle out).
        guidance_dim: length of the compact guidance vector z (the "latent space" of the GRN).
        ggn_channels / ggn_downsamples: width and number of stride-2 stages of the guidance
            encoders (GGN and the GRN's condition encoder), after a stride-4 pixel unshuffle.
        guidance_input: "unshuffle" (the encoders see the HR-size inputs through a x4 pixel
            unshuffle) or "pool" (they see them at H/4: colour and HR depth area-averaged, LR
            depth resized to H/4; cheaper at 640x480, design choice 10).
        grn_hidden / grn_layers: width and depth of the GRN's MLP denoiser.
        residual_scale: factor on the DSRN head's residual channel (normalised depth units).
        head_kernel: kernel size (3 or 1) of the DSRN head's last convolution (the one that
            predicts the candidate weights for every sub-pixel; 1 is ~9x cheaper).
        upsample_mode: "bicubic" or "bilinear": the DSRN's base upsampling of the LR depth (the
            first candidate and the residual's base; bilinear is much cheaper in ONNX Runtime
            at 640x480).
    Diffusion (GRN, DDIM through ``models/ddim.py``): the fields of
        :class:`~depth_diffusion_ros.models.config_base.DDIMConfig`, with
        ``num_inference_steps`` 4 by default.
    Scales:
        scales: the integer scale factors trained on (the paper: 4, 8, 16). Inference accepts
            any integer scale between min(scales) and max(scales).
    Training:
        stage: 1 (GGN + DSRN from HR depth) or 2 (GRN only, GGN/DSRN frozen).
        loss weights (``l1``, ``rmse`` stage 1; ``diff_l1``, ``rec_l1``, ``eps_mse`` stage 2;
        ``rmse_weight`` also adds the RMSE to stage 2's reconstruction term).
        depth_noise_sigma: (min, max) of the per-sample Gaussian sigma added to the normalised
            low-resolution depth (units: fraction of the sample's max LR depth).
        depth_noise_prob: probability that a sample is augmented at all.
    """

    channels: int = 32
    num_heads: int = 2
    ffn_expansion: float = 2.0
    dfe_blocks: int = 2
    cfe_blocks: int = 2
    fusion_blocks: int = 3
    feature_stride: int = 2
    guidance_dim: int = 64
    ggn_channels: int = 32
    ggn_downsamples: int = 2
    guidance_input: str = "unshuffle"
    grn_hidden: int = 128
    grn_layers: int = 4
    residual_scale: float = 0.01
    head_kernel: int = 3
    upsample_mode: str = "bicubic"
    num_inference_steps: int = 4  # DDIMConfig's field, a shorter default for the GRN
    scales: list = field(default_factory=lambda: [4, 8, 16])
    stage: int = 1
    l1_weight: float = 1.0
    rmse_weight: float = 0.0
    diff_l1_weight: float = 1.0
    rec_l1_weight: float = 1.0
    eps_mse_weight: float = 0.0
    depth_noise_sigma: list = field(default_factory=lambda: [0.0, 0.03])
    depth_noise_prob: float = 1.0

    architecture: ClassVar[str] = "dsr_diff"
    # Fields of config.yaml that may be edited after training without changing the weights.
    RUNTIME_FIELDS: ClassVar[FrozenSet[str]] = DDIMConfig.DDIM_RUNTIME_FIELDS | {
        "stage", "l1_weight", "rmse_weight", "diff_l1_weight", "rec_l1_weight", "eps_mse_weight",
        "depth_noise_sigma", "depth_noise_prob",
    }

    def normalise(self) -> None:
        self.scales = [int(s) for s in self.scales]
        self.depth_noise_sigma = [float(s) for s in self.depth_noise_sigma]

    def problems(self) -> List[str]:
        out = []
        if self.channels <= 0 or self.channels % self.num_heads:
            out.append(f"channels ({self.channels}) must be > 0 and divisible by num_heads ({self.num_heads})")
        if self.feature_stride not in (1, 2, 4):
            out.append(f"feature_stride must be 1, 2 or 4, got {self.feature_stride}")
        if not self.scales or min(self.scales) < 1:
            out.append(f"scales must be positive integers, got {self.scales}")
        if self.guidance_input not in ("unshuffle", "pool"):
            out.append(f"guidance_input must be 'unshuffle' or 'pool', got {self.guidance_input!r}")
        if self.head_kernel not in (1, 3):
            out.append(f"head_kernel must be 1 or 3, got {self.head_kernel}")
        if self.upsample_mode not in ("bicubic", "bilinear"):
            out.append(f"upsample_mode must be 'bicubic' or 'bilinear', got {self.upsample_mode!r}")
        if self.stage not in (1, 2):
            out.append(f"stage must be 1 or 2, got {self.stage}")
        lo_hi = self.depth_noise_sigma
        if len(lo_hi) != 2 or lo_hi[0] < 0 or lo_hi[1] < lo_hi[0]:
            out.append(f"depth_noise_sigma must be [min, max] with 0 <= min <= max, got {lo_hi}")
        if not 0.0 <= self.depth_noise_prob <= 1.0:
            out.append(f"depth_noise_prob must be in [0, 1], got {self.depth_noise_prob}")
        return out + super().problems()

    @property
    def min_scale(self) -> int:
        return min(self.scales)

    @property
    def max_scale(self) -> int:
        return max(self.scales)
