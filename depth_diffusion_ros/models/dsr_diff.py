"""DSR-Diff: colour-guided depth super-resolution with a diffusion model in a guidance latent space.

Source: Y. Shi, B. Xia, R. Zhu, Q. Liao, W. Yang, "DSR-Diff: Depth Map Super-Resolution with
Diffusion Model", arXiv 2311.09919 (2023). The authors released no code; this module is built
from the paper. Depth-noise augmentation of the LR condition: Kirch, Olyunina, Ondreka, Dai,
"RGB-D-Fusion: Image Conditioned Depth Diffusion of Humanoid Subjects", arXiv 2307.15988, Sec. 3.3.

Parts (paper Sec. 3; the networks are in :mod:`depth_diffusion_ros.models.dsr_diff_blocks`):

* **GGN** (guidance generation network, Sec. 3.2): compresses the HR depth, the HR colour image
  and the (upsampled) LR depth into a compact guidance vector ``z`` (B, guidance_dim). Used in
  stage 1 only, where the HR depth is known.
* **DSRN** (depth super-resolution network, Sec. 3.3): a depth feature extraction group (DFE)
  on the LR depth and a colour feature extraction group (CFE) on the HR image, both built from
  transformer-style blocks whose normalised features are modulated by ``z``; the feature fusion
  module (FFM) convolves the colour features and multiplies them element-wise with the upsampled
  depth features; a reconstruction group turns the fused features into a residual that is added
  to the bicubically upsampled LR depth.
* **GRN** (guidance recovery network, Sec. 3.4): a diffusion model in the guidance's latent space
  that estimates ``z`` from the LR depth and the HR colour only (a condition encoder with the
  GGN's structure plus an MLP denoiser), sampled with a few DDIM steps (the shared
  :mod:`depth_diffusion_ros.models.ddim` scheduler).

Training (Sec. 3.5, two stages): stage 1 trains GGN + DSRN end to end with an L1 loss on the
super-resolved depth; stage 2 freezes them and trains only the GRN: the GRN runs its whole
reverse process (with gradients) from noise and is supervised by L1 between the estimated and
the GGN's guidance, plus (weighted) L1 on the depth the frozen DSRN makes from the estimate.

Checkpoints: :func:`depth_diffusion_ros.models.checkpoint.save_checkpoint` /
:func:`~depth_diffusion_ros.models.checkpoint.load_checkpoint`, as for every model here.

Design choices the paper leaves open (also listed in the demo model card)
-------------------------------------------------------------------------
1. **Depth normalisation**: the network works on depth divided by the per-sample maximum of the
   valid LR depth (so indoor and outdoor scenes share one range, (0, 1]); outputs are scaled back
   to metres. LR holes are filled with the nearest valid value and a validity mask is an input.
2. **One network for all integer scales**: the DFE runs at the LR resolution and the FFM
   upsamples depth features bilinearly to the working resolution in one step, so one set of
   weights serves every integer scale in its trained range (the shipped weights: x2..x16, trained
   on x2, x4, x8, x16 at once); the paper trains one network per scale.
3. **Working resolution**: the CFE / fusion / reconstruction groups run at H/``feature_stride``
   (pixel unshuffle in, pixel shuffle out), which keeps CPU cost low. The bicubic LR depth at the
   working resolution is also embedded and added after the FFM (the network learns a residual).
4. **Transformer block**: Restormer-style (Zamir et al., CVPR 2022) transposed channel
   self-attention + gated depth-wise feed-forward; the guidance enters as channel-wise scale
   and shift of the normalised features, ``(1 + W1 z) * LN(F) + W2 z`` (DiffIR-style dynamic
   modulation; the ``1 +`` keeps the block an identity-friendly residual at initialisation).
5. **Guidance**: ``z`` is a vector (global average pool + MLP), layer-normalised without affine
   so its entries have zero mean and unit variance per sample, the scale the diffusion assumes.
6. **GRN diffusion**: epsilon prediction, DDIM (eta 0) with ``num_inference_steps`` (default 4)
   out of ``num_train_timesteps`` (1000, linear betas); stage 2 unrolls all steps with gradients
   (as DiffIR, Xia et al. ICCV 2023, which DSR-Diff follows) and may add the usual noise MSE
   (``eps_mse_weight``, 0 by default).
7. **Depth-noise augmentation** (RGB-D-Fusion): in both stages the normalised LR depth condition
   gets Gaussian noise with sigma ~ U[depth_noise_sigma] per sample (probability
   ``depth_noise_prob``); the GGN sees the clean LR depth and HR depth.
8. **Reconstruction head**: the paper does not detail how the DSRN turns fused features into
   depth (CDSR networks usually regress it with a last convolution). Here the last convolution
   predicts, per HR pixel, softmax weights over 10 candidate depths (the bicubic value and the 3x3 LR neighbours of the pixel's LR cell) plus a small residual, a
   kernel-prediction form as in DKN (Kim, Ponce, Ham, IJCV 2021). The residual is multiplied by
   ``residual_scale`` (0.01): with Adam every weight moves by ~lr per step, and an unscaled
   residual head then shifts the normalised depth by decimetres per step and drowns the signal.
   Measured on one fixed batch of 8 crops at x8 (135 Adam steps, lr 1e-3): L1 -29 % with this
   head, -3 % with a directly regressed residual, which decides what a demo trained for minutes
   on a CPU can do.
9. **Depth loss**: the paper trains with L1. L1 drives ambiguous pixels at depth edges to one
   side (a median), which RMSE, the CDSR metric, punishes; ``rmse_weight`` adds the batch RMSE
   of the normalised depth to the stage-1 loss (and to stage 2's reconstruction term). The demo
   uses 1.0; 0 is the paper's loss.
10. **CPU cost at 640x480** (the shipped weights: <= 100 ms in ONNX Runtime, 2 threads): what
   costs there is not the transformer groups at H/4 but the full-resolution glue. Measured on
   random weights of the demo widths (x8, 2 threads, quiet 2-core CPU): 151 ms as first built;
   the candidate softmax as exp / sum instead of ONNX ``Softmax`` over channels (same values)
   107 ms; the guidance encoders on H/4 inputs (``guidance_input: pool``: area-averaged colour,
   LR depth resized to H/4, instead of a full-resolution bicubic and a x4 pixel unshuffle) 97 ms;
   plus a 1x1 last head convolution (``head_kernel: 1``) and a bilinear base upsampling
   (``upsample_mode: bilinear``; ONNX Runtime's cubic Resize alone took ~25 ms) 72 ms. The
   paper-setting config keeps the defaults (unshuffle, 3x3, bicubic).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from depth_diffusion_ros.models.ddim import DDIMScheduler, ddim_step_tensor
from depth_diffusion_ros.models.dsr_diff_blocks import (
    DepthSuperResolutionNetwork,
    GuidanceGenerationNetwork,
    GuidanceRecoveryNetwork,
)
from depth_diffusion_ros.models.dsr_diff_config import DSRDiffConfig
from depth_diffusion_ros.models.losses import masked_l1, masked_rmse

_EPS = 1e-6


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def depth_normaliser(depth_lr: torch.Tensor, valid_mask_lr: torch.Tensor) -> torch.Tensor:
    """Per-sample scale (B,1,1,1) metres: max of the valid LR depth (design choice 1)."""
    masked = depth_lr * valid_mask_lr
    return masked.amax(dim=(1, 2, 3), keepdim=True).clamp_min(_EPS)


def augment_depth_noise(
    depth: torch.Tensor,
    sigma_range: tuple,
    probability: float = 1.0,
    generator: Optional[torch.Generator] = None,
) -> tuple:
    """RGB-D-Fusion depth-noise augmentation (Kirch et al., arXiv 2307.15988, Sec. 3.3).

    Adds ``sigma_b * N(0, 1)`` to every pixel of sample b, with ``sigma_b ~ U[lo, hi]``
    drawn per sample, applied to a sample with the given probability (else sigma_b = 0).

    Args:
        depth: (B,1,h,w) normalised LR depth.
        sigma_range: (lo, hi), 0 <= lo <= hi, in the units of ``depth``.
    Returns:
        (noisy depth (B,1,h,w), sigmas (B,)).
    """
    lo, hi = float(sigma_range[0]), float(sigma_range[1])
    if lo < 0 or hi < lo:
        raise ValueError(f"sigma_range must satisfy 0 <= lo <= hi, got {sigma_range}")
    b = depth.shape[0]
    kw = dict(device=depth.device, dtype=depth.dtype, generator=generator)
    sigmas = lo + (hi - lo) * torch.rand(b, **kw)
    if probability < 1.0:
        sigmas = sigmas * (torch.rand(b, **kw) < probability).to(depth.dtype)
    noise = torch.randn(depth.shape, **kw)
    return depth + sigmas.view(b, 1, 1, 1) * noise, sigmas


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------
class DSRDiff(nn.Module):
    """DSR-Diff (arXiv 2311.09919) for colour-guided depth super-resolution (CDSR).

    Tensors: rgb (B,3,H,W) in [0,1]; depth_lr (B,1,h,w) metres with holes filled (see
    :func:`~depth_diffusion_ros.geometry.resample.fill_depth_holes`); valid_mask_lr (B,1,h,w)
    {0,1}; H = s*h, W = s*w for an integer scale s; H, W multiples of ``size_divisor``.
    Output depth (B,1,H,W) metres (>= 0).

    ``stage`` (1 or 2) selects what :meth:`training_losses` trains; :meth:`set_stage` also sets
    ``requires_grad`` (stage 2: GRN only).
    """

    def __init__(self, config: Optional[DSRDiffConfig] = None):
        super().__init__()
        self.config = config or DSRDiffConfig()
        self.ggn = GuidanceGenerationNetwork(self.config)
        self.dsrn = DepthSuperResolutionNetwork(self.config)
        self.grn = GuidanceRecoveryNetwork(self.config)
        self.scheduler = DDIMScheduler.from_config(self.config)
        self.register_buffer("alphas_cumprod", self.scheduler.alphas_cumprod.clone(), persistent=False)
        self.register_buffer(
            "final_alpha_cumprod", self.scheduler.final_alpha_cumprod.clone().reshape(()), persistent=False
        )
        self.set_stage(self.config.stage)

    # ---------------------------------------------------------------- bookkeeping
    @property
    def size_divisor(self) -> int:
        """HR H and W must be multiples of this (GGN/GRN pixel unshuffle x4, DSRN stride)."""
        return int(max(4, self.config.feature_stride))

    @property
    def stage(self) -> int:
        return self.config.stage

    def set_stage(self, stage: int) -> None:
        """Select training stage 1 (GGN + DSRN trainable, GRN frozen) or 2 (GRN only)."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        self.config.stage = stage
        for p in self.ggn.parameters():
            p.requires_grad_(stage == 1)
        for p in self.dsrn.parameters():
            p.requires_grad_(stage == 1)
        for p in self.grn.parameters():
            p.requires_grad_(stage == 2)

    def inference_timesteps(self, num_inference_steps: Optional[int] = None) -> list:
        """[(t, prev_t), ...] descending DDIM timestep pairs (python ints) from the shared
        scheduler (prev_t < 0 on the last step, as diffusers)."""
        n = int(num_inference_steps or self.config.num_inference_steps)
        self.scheduler.set_timesteps(n)
        return self.scheduler.timestep_pairs()

    def check_inputs(self, rgb: torch.Tensor, depth_lr: torch.Tensor) -> int:
        """Return the integer scale or raise ValueError naming the shapes."""
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f"rgb must be (B,3,H,W), got {tuple(rgb.shape)}")
        if depth_lr.dim() != 4 or depth_lr.shape[1] != 1 or depth_lr.shape[0] != rgb.shape[0]:
            raise ValueError(f"depth_lr must be (B,1,h,w) with B={rgb.shape[0]}, got {tuple(depth_lr.shape)}")
        H, W = rgb.shape[-2:]
        if H % self.size_divisor or W % self.size_divisor:
            raise ValueError(f"H, W ({H}, {W}) must be multiples of {self.size_divisor}; pad first")
        from depth_diffusion_ros.geometry.resample import super_resolution_scale

        return super_resolution_scale(H, W, depth_lr.shape[-2], depth_lr.shape[-1], 1, None)

    # ---------------------------------------------------------------- pieces
    @staticmethod
    def _normalise(depth_lr, valid_mask_lr):
        if valid_mask_lr is None:
            valid_mask_lr = (depth_lr > 0).to(depth_lr.dtype)
        scale = depth_normaliser(depth_lr, valid_mask_lr)
        return depth_lr / scale, valid_mask_lr, scale

    def _guidance_inputs(self, rgb, depth_lr_n, valid_mask_lr, depth_hr_n=None) -> list:
        """The guidance encoders' inputs: [rgb, (HR depth,) LR depth up, LR mask up] at the HR size,
        or at (H/4, W/4) with colour and HR depth area-averaged (``guidance_input: pool``)."""
        H, W = rgb.shape[-2], rgb.shape[-1]
        pooled = self.config.guidance_input == "pool"
        size = (H // 4, W // 4) if pooled else (H, W)
        up = F.interpolate(depth_lr_n, size=size, mode="bicubic", align_corners=False)
        mask_up = F.interpolate(valid_mask_lr, size=size, mode="bilinear", align_corners=False)
        if pooled:
            rgb = F.avg_pool2d(rgb, 4)
            depth_hr_n = None if depth_hr_n is None else F.avg_pool2d(depth_hr_n, 4)
        return [rgb, up, mask_up] if depth_hr_n is None else [rgb, depth_hr_n, up, mask_up]

    def encode_condition(self, rgb: torch.Tensor, depth_lr_n: torch.Tensor, valid_mask_lr: torch.Tensor) -> torch.Tensor:
        """GRN condition c (B,G) from HR colour and the *normalised* LR depth + mask."""
        return self.grn.cond_encoder(torch.cat(self._guidance_inputs(rgb, depth_lr_n, valid_mask_lr), dim=1))

    def generate_guidance(self, rgb, depth_hr_n, depth_lr_n, valid_mask_lr) -> torch.Tensor:
        """GGN guidance z (B,G) from normalised HR depth, HR colour and normalised LR depth."""
        return self.ggn(*self._guidance_inputs(rgb, depth_lr_n, valid_mask_lr, depth_hr_n))

    def denoise(self, latents: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """One GRN pass: noise_pred (B,G) for guidance latents z_t (B,G) at ``timestep``."""
        if not isinstance(timestep, torch.Tensor):
            timestep = torch.tensor([timestep], dtype=torch.float32, device=latents.device)
        return self.grn.denoiser(latents, timestep, cond)

    def ddim_step(self, latents, timestep, prev_timestep, cond) -> torch.Tensor:
        """One deterministic DDIM step (eta 0; Song et al., ICLR 2021, Eq. 12) z_t -> z_prev.

        Timesteps may be python ints or tensors (a negative ``prev_timestep`` means the final
        step, using ``final_alpha_cumprod`` as diffusers does). Differentiable.
        """
        noise_pred = self.denoise(latents, timestep, cond)
        return self._ddim_update(latents, noise_pred, timestep, prev_timestep)

    def _ddim_update(self, latents, noise_pred, timestep, prev_timestep):
        device = latents.device
        t = torch.as_tensor(timestep, device=device).long().reshape(-1)
        tp = torch.as_tensor(prev_timestep, device=device).long().reshape(-1)
        b, g = latents.shape
        prev_sample, _ = ddim_step_tensor(
            self.alphas_cumprod, self.final_alpha_cumprod, noise_pred.reshape(b, g, 1, 1), t, tp,
            latents.reshape(b, g, 1, 1), self.config.prediction_type, self.scheduler.clip_sample_range,
        )
        return prev_sample.reshape(b, g)

    def decode(self, guidance, rgb, depth_lr_n, valid_mask_lr) -> torch.Tensor:
        """DSRN: normalised HR depth (B,1,H,W) from guidance, colour and normalised LR depth."""
        return self.dsrn(rgb, depth_lr_n, valid_mask_lr, guidance)

    def sample_guidance(self, rgb, depth_lr_n, valid_mask_lr, noise=None, num_inference_steps=None,
                        generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Run the GRN's reverse process (DDIM) from noise; differentiable w.r.t. the GRN."""
        cond = self.encode_condition(rgb, depth_lr_n, valid_mask_lr)
        if noise is None:
            noise = torch.randn(cond.shape, generator=generator, device=cond.device, dtype=cond.dtype)
        z = noise
        for t, prev in self.inference_timesteps(num_inference_steps):
            z = self.ddim_step(z, t, prev, cond)
        return z

    # ---------------------------------------------------------------- public API
    @torch.no_grad()
    def sample(self, rgb, depth_lr, valid_mask_lr=None, noise=None, num_inference_steps=None,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Super-resolve with one guidance sample: depth (B,1,H,W) metres (ensembles and their
        uncertainty are the pipelines' job, :mod:`depth_diffusion_ros.inference.pipelines`).

        noise: (B, guidance_dim) initial guidance latent, else drawn from ``generator``.
        """
        self.check_inputs(rgb, depth_lr)
        d_n, mask, scale = self._normalise(depth_lr, valid_mask_lr)
        z = self.sample_guidance(rgb, d_n, mask, noise, num_inference_steps, generator)
        return self.decode(z, rgb, d_n, mask).clamp_min(0.0) * scale

    def forward(self, rgb: torch.Tensor, depth_lr: torch.Tensor, valid_mask_lr: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        """Whole inference as one graph (ONNX export): returns depth (B,1,H,W) metres.

        ``noise`` (B, guidance_dim) is the initial guidance latent; the DDIM loop is unrolled
        over ``config.num_inference_steps`` with timesteps as tensors.
        """
        d_n, mask, scale = self._normalise(depth_lr, valid_mask_lr)
        cond = self.encode_condition(rgb, d_n, mask)
        z = noise
        for t, prev in self.inference_timesteps():
            t_t = torch.full((1,), t, dtype=torch.long, device=rgb.device)
            p_t = torch.full((1,), prev, dtype=torch.long, device=rgb.device)
            z = self.ddim_step(z, t_t, p_t, cond)
        return self.decode(z, rgb, d_n, mask).clamp_min(0.0) * scale

    def latent_shape(self) -> tuple:
        """Shape of the guidance latent per sample: (guidance_dim,)."""
        return (self.config.guidance_dim,)

    # ---------------------------------------------------------------- training
    def _prepare_batch(self, batch: dict, generator=None):
        rgb = batch["rgb"]
        depth_lr = batch["depth_lr"]
        mask_lr = batch.get("valid_mask_lr")
        if mask_lr is None:
            mask_lr = (depth_lr > 0).to(depth_lr.dtype)
        gt = batch["gt_depth"]
        gt_mask = batch.get("gt_mask")
        if gt_mask is None:
            gt_mask = (gt > 0).to(gt.dtype)
        self.check_inputs(rgb, depth_lr)
        scale = depth_normaliser(depth_lr, mask_lr)
        d_n = depth_lr / scale
        gt_n = gt / scale
        cfg = self.config
        if self.training and cfg.depth_noise_sigma[1] > 0 and cfg.depth_noise_prob > 0:
            d_n_noisy, _ = augment_depth_noise(d_n, cfg.depth_noise_sigma, cfg.depth_noise_prob, generator)
        else:
            d_n_noisy = d_n
        return rgb, d_n, d_n_noisy, mask_lr, gt_n, gt_mask

    def training_losses(self, batch: dict, generator: Optional[torch.Generator] = None) -> dict:
        """Losses of the current stage; ``loss`` is the weighted total.

        Batch: rgb (B,3,H,W) [0,1]; depth_lr (B,1,h,w) m (holes filled); valid_mask_lr
        (B,1,h,w); gt_depth (B,1,H,W) m; gt_mask (B,1,H,W). Depth losses are computed in the
        normalised units (depth / per-sample LR max).

        Stage 1 (DSR-Diff Sec. 3.5): ``l1`` = L1(DSRN(GGN(...)), gt) on valid GT, plus
        ``rmse_weight`` x the batch RMSE (design choice 9; 0 = the paper's L1 only).
        Stage 2: ``diff_l1`` = L1(z_hat, z_GGN) with z_hat from the full DDIM reverse process
        (with gradients), ``rec_l1`` = L1(DSRN(z_hat), gt) through the frozen DSRN, optional
        ``eps_mse`` = MSE(noise_pred, noise) at a random timestep.
        """
        cfg = self.config
        rgb, d_n, d_cond, mask_lr, gt_n, gt_mask = self._prepare_batch(batch, generator)
        if cfg.stage == 1:
            z = self.generate_guidance(rgb, gt_n, d_n, mask_lr)
            pred = self.decode(z, rgb, d_cond, mask_lr)
            l1 = masked_l1(pred, gt_n, gt_mask)
            out = {"l1": l1.detach()}
            total = cfg.l1_weight * l1
            if cfg.rmse_weight > 0:
                rmse = masked_rmse(pred, gt_n, gt_mask)
                total = total + cfg.rmse_weight * rmse
                out["rmse"] = rmse.detach()
            out["loss"] = total
            return out
        with torch.no_grad():
            z_target = self.generate_guidance(rgb, gt_n, d_n, mask_lr)
        z_hat = self.sample_guidance(rgb, d_cond, mask_lr, generator=generator)
        diff_l1 = (z_hat - z_target).abs().mean()
        total = cfg.diff_l1_weight * diff_l1
        out = {"diff_l1": diff_l1.detach()}
        if cfg.rec_l1_weight > 0:
            pred = self.decode(z_hat, rgb, d_cond, mask_lr)
            rec = masked_l1(pred, gt_n, gt_mask)
            if cfg.rmse_weight > 0:
                rec = rec + cfg.rmse_weight * masked_rmse(pred, gt_n, gt_mask)
            total = total + cfg.rec_l1_weight * rec
            out["rec_l1"] = rec.detach()
        if cfg.eps_mse_weight > 0:
            b = z_target.shape[0]
            t = torch.randint(0, cfg.num_train_timesteps, (b,), generator=generator).to(z_target.device)
            noise = torch.randn(z_target.shape, generator=generator).to(z_target.device)
            z_t = self.scheduler.add_noise(z_target[..., None, None], noise[..., None, None], t).flatten(1)
            cond = self.encode_condition(rgb, d_cond, mask_lr)
            eps = F.mse_loss(self.grn.denoiser(z_t, t.float(), cond), noise)
            total = total + cfg.eps_mse_weight * eps
            out["eps_mse"] = eps.detach()
        out["loss"] = total
        return out

def build_dsr_diff(cfg: dict) -> DSRDiff:
    """Training-config entry point (``model.type: depth_diffusion_ros.models.dsr_diff:build_dsr_diff``).

    ``cfg`` holds :class:`DSRDiffConfig` fields; ``stage: 2`` freezes GGN and DSRN (load the
    stage-1 weights with the trainer's ``model.init_from``).
    """
    return DSRDiff(DSRDiffConfig.from_dict(dict(cfg)))
