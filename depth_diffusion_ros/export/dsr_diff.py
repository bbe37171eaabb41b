"""Export DSR-Diff (Shi et al., arXiv 2311.09919) colour-guided depth super-resolution to ONNX.

The guidance latent is a vector (guidance_dim) and the GRN's denoiser is a small MLP, so the
whole sampler is exported as one graph per (scale, num_inference_steps) — the step loop costs
microseconds next to the DSRN:

    ``dsr_diff_x<s>_<N>steps.onnx``: rgb (1,3,H,W) [0,1], depth_lr (1,1,H/s,W/s) m (holes filled),
    valid_mask_lr (1,1,H/s,W/s), noise (1,G) -> depth (1,1,H,W) m

It is the model's own export path (``DSRDiff.forward``: normalisation, GRN condition, DDIM loop
unrolled with tensor timesteps, DSRN, rescaling), checked against ``DSRDiff.sample`` on a real
NYU frame (whole loop: 1e-3 m + 1e-4 relative). metadata_props as for DiffusionDepth plus
``scale``, ``guidance_dim``, ``min_scale``/``max_scale``.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from depth_diffusion_ros.export.onnx_export import DEFAULT_OPSET, check_parity, export_onnx, model_sha256, write_metadata
from depth_diffusion_ros.inference.backends.exported import sr_file_name  # the name the backends look for


def nyu_sr_inputs(data_dir: str | Path, height: int, width: int, scale: int) -> dict[str, np.ndarray]:
    """A real NYU frame (RGB + Kinect depth) bottom-centre cropped to (height, width), its depth
    bicubically downsampled by ``scale`` (the CDSR degradation), holes filled, NCHW float32."""
    from depth_diffusion_ros.export.frames import fit_frame, load_nyu_frame
    from depth_diffusion_ros.geometry.resample import bicubic_downsample_depth
    from depth_diffusion_ros.inference.frames import prepare_sr_inputs

    root = Path(data_dir)
    rgb, _ = load_nyu_frame(root, n_points=1)
    import cv2

    gt = cv2.imread(str(root / "nyu_depth_v2_metric3d/depth/sync_depth_00000.png"), cv2.IMREAD_UNCHANGED)
    gt = gt.astype(np.float32) / 1000.0
    rgb, gt = fit_frame(rgb, gt, height, width)
    lr = bicubic_downsample_depth(gt, scale)
    inp = prepare_sr_inputs(rgb, lr, 1, scale, scale)
    return {"rgb": inp.rgb, "depth_lr": inp.depth_lr, "valid_mask_lr": inp.valid_mask_lr}


def export_dsr_diff(
    model: Any,
    out_dir: str | Path,
    height: int,
    width: int,
    scale: int,
    num_inference_steps: Optional[int] = None,
    inputs: Optional[Mapping[str, np.ndarray]] = None,
    check: bool = True,
    atol: float = 1e-3,
    rtol: float = 1e-4,
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
    seed: int = 0,
) -> tuple[Path, dict]:
    """Export DSR-Diff for HR size (height, width) and integer ``scale``; returns (path, errors).

    inputs: {"rgb" (1,3,H,W), "depth_lr", "valid_mask_lr" (1,1,H/s,W/s)} float32 for the parity
    check (a real frame; None = random). Raises ValueError for sizes the model rejects,
    ParityError/ExportError naming the file.
    """
    import torch

    model = model.eval()
    cfg = model.config
    steps = int(num_inference_steps or cfg.num_inference_steps)
    if height % scale or width % scale:
        raise ValueError(f"{width}x{height} is not divisible by scale {scale}")
    h, w = height // scale, width // scale
    rng = np.random.default_rng(seed)
    if inputs is None:
        rgb = rng.random((1, 3, height, width), dtype=np.float32)
        d = rng.uniform(0.5, 8.0, (1, 1, h, w)).astype(np.float32)
        inputs = {"rgb": rgb, "depth_lr": d, "valid_mask_lr": np.ones_like(d)}
    feed = {k: np.ascontiguousarray(inputs[k], np.float32) for k in ("rgb", "depth_lr", "valid_mask_lr")}
    feed["noise"] = rng.standard_normal((1,) + tuple(model.latent_shape()), dtype=np.float32)
    t = {k: torch.from_numpy(v) for k, v in feed.items()}
    model.check_inputs(t["rgb"], t["depth_lr"])

    class Sampler(torch.nn.Module):
        """DSRDiff.forward with ``steps`` DDIM steps (config restored after tracing)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, rgb, depth_lr, valid_mask_lr, noise):
            saved = self.model.config.num_inference_steps
            self.model.config.num_inference_steps = steps
            try:
                return self.model(rgb, depth_lr, valid_mask_lr, noise)
            finally:
                self.model.config.num_inference_steps = saved

    with torch.no_grad():
        ref = model.sample(t["rgb"], t["depth_lr"], t["valid_mask_lr"], noise=t["noise"], num_inference_steps=steps)
    path = Path(out_dir) / sr_file_name(scale, steps)
    meta = {
        "graph": "sr_sampler", "model": "dsr_diff", "model_sha256": model_sha256(model),
        "export_id": uuid.uuid4().hex, "config": cfg.to_dict(), "num_inference_steps": steps,
        "ensemble_size": 1, "scale": int(scale), "height": int(height), "width": int(width),
        "size_divisor": int(model.size_divisor), "guidance_dim": int(model.latent_shape()[0]),
        "min_scale": int(cfg.min_scale), "max_scale": int(cfg.max_scale),
    }
    t0 = time.perf_counter()
    export_onnx(Sampler().eval(), (t["rgb"], t["depth_lr"], t["valid_mask_lr"], t["noise"]), path,
                ["rgb", "depth_lr", "valid_mask_lr", "noise"], ["depth"], opset=opset, dynamo=dynamo, metadata=meta)
    errors: dict = {}
    if check:
        errors = check_parity(path, feed, {"depth": ref.numpy()}, atol=atol, rtol=rtol).max_abs
        write_metadata(path, {"parity_max_abs_error": errors, "parity_atol": atol, "parity_rtol": rtol,
                              "export_seconds": round(time.perf_counter() - t0, 2)})
    return path, errors


def export_dsr_diff_cli(args: Any) -> tuple[int, Path]:
    """``depth-diffusion-ros export --model dsr_diff``: load, export one scale, print errors.
    Returns (exit status, the written graph)."""
    from depth_diffusion_ros.models.checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint, architecture="dsr_diff")
    inputs = None
    if not args.no_check:
        try:
            inputs = nyu_sr_inputs(args.data_dir, args.height, args.width, args.scale)
        except (FileNotFoundError, ValueError) as exc:
            print(f"export: no real frame for the parity check ({exc}); using random inputs")
    path, errors = export_dsr_diff(model, args.output, args.height, args.width, args.scale,
                                   num_inference_steps=args.steps or None, inputs=inputs,
                                   check=not args.no_check, opset=args.opset, dynamo=args.dynamo)
    errs = ", ".join(f"{k} {v:.2e}" for k, v in errors.items()) or "not checked"
    print(f"{path}  [sr_sampler x{args.scale}]  max |onnx - torch|: {errs}")
    return 0, Path(path)
