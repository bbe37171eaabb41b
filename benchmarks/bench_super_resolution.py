"""Colour-guided depth super-resolution: DSR-Diff demo weights vs guided filter, joint bilateral
and bicubic upsampling, on frames the demo weights were NOT trained on.

Frames (from ../shared/data): NYU-Depth-v2 ``rgb_00100`` (640x480; the demo trained on rgb_00000
and rgb_00050 of the same basement) and Middlebury 2014 Motorcycle (scikit-image's 4x
downsampled copy), columns 60-100 % (the demo trained on columns 0-60 %), cropped to a multiple
of 64. Protocol (CDSR, as DSR-Diff Sec. 4.1): LR depth = antialiased bicubic downsampling of the
ground truth by 4, 8, 16, given to every method as is (0 = missing); RMSE in centimetres with
:func:`depth_diffusion_ros.evaluation.metrics.depth_metrics` over the same pixels for every
method: valid GT, an LR measurement nearby (bilinear LR validity >= 0.5), and a prediction from
every method (the classical filters leave some pixels next to LR holes empty). Latency: median
wall time of the super-resolution pipeline per frame on the NYU frame at x8 (640x480 output) with
``--threads`` torch threads.

Run: .venv/bin/python benchmarks/bench_super_resolution.py [--runs 3] [--threads 2]
     [--model-path depth_diffusion_ros/weights/dsr_diff_demo] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import cv2
import numpy as np

from depth_diffusion_ros.evaluation.metrics import depth_metrics
from depth_diffusion_ros.geometry.resample import bicubic_downsample_depth
from depth_diffusion_ros.inference.backends import make_super_resolution_backend
from depth_diffusion_ros.inference.pipelines import SuperResolutionPipeline

from timing import median_ms  # noqa: E402 - benchmarks/timing.py, beside this script

REPO = Path(__file__).resolve().parents[1]
SCALES = (4, 8, 16)


def held_out_frames(data: Path) -> dict:
    """name -> (rgb (H,W,3) uint8, gt (H,W) m), H and W multiples of 64."""
    import sys

    sys.path.insert(0, str(REPO))
    from training.datasets.sr_datasets import MiddleburyStereo, nyu_frames

    out = {}
    f = nyu_frames(data / "nyu_depth_v2_metric3d", names=["rgb_00100"]).load_frame(0)
    out["nyu_rgb_00100"] = (f["rgb"], f["gt_depth"])
    m = MiddleburyStereo(data / "middlebury2014_motorcycle_skimage", column_range=(0.6, 1.0)).load_frame(0)
    h, w = m["gt_depth"].shape
    H, W = h - h % 64, w - w % 64
    out["middlebury_right40"] = (np.ascontiguousarray(m["rgb"][:H, :W]), np.ascontiguousarray(m["gt_depth"][:H, :W]))
    return out


def support_mask(lr: np.ndarray, shape: tuple) -> np.ndarray:
    """HR pixels with an LR measurement nearby (bilinear LR validity >= 0.5)."""
    up = cv2.resize((lr > 0).astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return up >= 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--model-path", default=None, help="DSR-Diff checkpoint (default: shipped demo weights)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per method (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--steps", type=int, default=0, help="DDIM steps (0 = the checkpoint's)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    opts = {"model_path": args.model_path} if args.model_path else {}
    if args.steps:
        opts["num_inference_steps"] = args.steps
    methods = {name: SuperResolutionPipeline(make_super_resolution_backend(backend, **options)) for name, backend, options in (
        ("dsr_diff (demo)", "torch", opts), ("guided_filter", "guided_filter", {}),
        ("joint_bilateral", "joint_bilateral", {}), ("bicubic", "bicubic", {}))}
    frames = held_out_frames(Path(args.data))
    results: dict = {name: {} for name in methods}
    for fname, (rgb, gt) in frames.items():
        for s in SCALES:
            lr = bicubic_downsample_depth(gt, s)
            preds = {name: pipeline(rgb, lr).depth for name, pipeline in methods.items()}
            mask = (gt > 0) & support_mask(lr, gt.shape)
            for pred in preds.values():
                mask &= np.isfinite(pred) & (pred > 0)
            for name, pred in preds.items():
                m = depth_metrics(pred, gt, mask)
                results[name][f"{fname}_x{s}"] = {"rmse_cm": m["rmse"] * 100.0, "mae_cm": m["mae"] * 100.0,
                                                  "delta1": m["delta1"], "n_valid": m["n_valid"]}
    rgb, gt = frames["nyu_rgb_00100"]
    lr8 = bicubic_downsample_depth(gt, 8)
    for name, pipeline in methods.items():
        results[name]["ms_per_frame_nyu_x8"] = median_ms(lambda p=pipeline: p(rgb, lr8), args.runs)

    cols = [f"{f}_x{s}" for f in frames for s in SCALES]
    print(f"# CDSR RMSE (cm), held-out frames; CPU: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch threads {args.threads}")
    head = "| method | " + " | ".join(c.replace("nyu_rgb_00100", "NYU").replace("middlebury_right40", "Midd")
                                      for c in cols) + " | ms/frame (NYU x8, 640x480) |"
    print(head)
    print("|" + "---|" * (len(cols) + 2))
    for name, r in results.items():
        row = " | ".join(f"{r[c]['rmse_cm']:.2f}" for c in cols)
        print(f"| {name} | {row} | {r['ms_per_frame_nyu_x8']:.0f} |")
    n = {c: results["bicubic"][c]["n_valid"] for c in cols}
    print("pixels evaluated: " + ", ".join(f"{c} {v}" for c, v in n.items()))
    dsr = results["dsr_diff (demo)"]
    for f in frames:
        key = f"{f}_x8"
        verdict = all(dsr[key]["rmse_cm"] < results[b][key]["rmse_cm"] for b in ("guided_filter", "joint_bilateral"))
        print(f"{key}: demo weights beat guided filter and joint bilateral: {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
