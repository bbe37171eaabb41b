"""Shipped DiffusionDepth demo weights vs IP-Basic vs nearest fill on held-out KITTI frames.

Frames (none used for training the demo weights, see their MODEL_CARD.md):
  * raw 2011_09_26_drive_0001 frame 5, camera 2: input = KITTI DC velodyne_raw, GT = KITTI DC
    semi-dense ground truth (``groundtruth_image_02.png``);
  * object frame 000001: input = 90 % of the LiDAR scan, GT = the other 10 % of the points
    (``tools.bag_io.holdout_mask`` with seed 0 and frame index 1: the split of
    ``kitti-to-bag --holdout-fraction 0.1`` / ``replay``).
Metrics: KITTI depth-completion units (RMSE/MAE mm, iRMSE/iMAE 1/km) from
``depth_diffusion_ros.evaluation.metrics``. Then the model's inference time per 1216x352 frame on
this machine for 1, 5, 10 and 20 DDIM steps and the denoiser GMAC per step.

    .venv/bin/python benchmarks/bench_demo_weights.py [--weights DIR] [--steps N] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from depth_diffusion_ros.baselines import ip_basic_complete, nearest_fill  # noqa: E402
from depth_diffusion_ros.models.checkpoint import load_checkpoint  # noqa: E402
from depth_diffusion_ros.models.flops import diffusion_depth_gmacs  # noqa: E402
from training.datasets.kitti import KittiFileList, KittiObject, torch_kitti_frames  # noqa: E402
from training.evaluate import evaluate_baseline, evaluate_model  # noqa: E402

DEFAULT_WEIGHTS = REPO / "depth_diffusion_ros" / "weights" / "diffusion_depth_kitti_demo"
SHARED = Path(os.environ.get("DDR_SHARED_DATA", REPO.parent / "shared" / "data"))
KEYS = ("rmse_mm", "mae_mm", "irmse_1_km", "imae_1_km")


def held_out_sets(shared: Path) -> dict:
    """The held-out evaluation datasets (name -> dataset)."""
    return {
        "raw 0001/5 cam2 (DC GT)": KittiFileList(
            torch_kitti_frames(shared / "kitti_raw_depth_completion_torch_kitti", cameras=[2])),
        "object 000001 (10% held-out LiDAR)": KittiObject(
            shared / "kitti_object_kuixu", ids=["000001"], gt_source="heldout", holdout_fraction=0.1,
            holdout_space="points", seed=0),
    }


def timing(model, steps_list, repeats: int) -> dict:
    """Median seconds per 1216x352 frame (LiDAR completion) for each DDIM step count."""
    ds = KittiFileList(torch_kitti_frames(SHARED / "kitti_raw_depth_completion_torch_kitti", cameras=[2]))
    s = ds[0]
    y0, x0 = 375 - 352, (1242 - 1216) // 2
    rgb = s["rgb"][None, :, y0:, x0:x0 + 1216]
    sparse = s["sparse_depth"][None, :, y0:, x0:x0 + 1216]
    valid = s["valid_mask"][None, :, y0:, x0:x0 + 1216]
    out = {}
    with torch.no_grad():
        model.sample(rgb, sparse, valid, num_inference_steps=1)  # warm-up
        for n in steps_list:
            times = []
            for r in range(repeats):
                g = torch.Generator().manual_seed(r)
                t0 = time.perf_counter()
                model.sample(rgb, sparse, valid, num_inference_steps=n, generator=g)
                times.append(time.perf_counter() - t0)
            out[n] = statistics.median(times)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--steps", type=int, default=None, help="DDIM steps for the accuracy table (default: config)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="timed runs per step count (median)")
    p.add_argument("--timing-steps", default="1,5,10,20")
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not SHARED.is_dir():
        print(f"shared data not found at {SHARED} (set DDR_SHARED_DATA)")
        return 1
    model = load_checkpoint(args.weights)
    steps = args.steps or model.config.num_inference_steps
    print(f"machine: {platform.machine()} {platform.processor() or ''} CPU, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {args.threads} threads, no GPU used")
    print(f"weights: {args.weights}  ({model.config.backbone}, latent stride {model.config.latent_stride}, "
          f"{steps} DDIM steps for accuracy)\n")
    results = {}
    header = f"{'frame':<36} {'method':<22} " + " ".join(f"{k:>11}" for k in KEYS)
    print(header)
    print("-" * len(header))
    for name, ds in held_out_sets(SHARED).items():
        rows = {
            f"DiffusionDepth demo ({steps} st)": evaluate_model(model, ds, "kitti_dc", steps),
            "IP-Basic": evaluate_baseline(lambda rgb, s: ip_basic_complete(s), ds, "kitti_dc"),
            "nearest fill": evaluate_baseline(lambda rgb, s: nearest_fill(s), ds, "kitti_dc"),
        }
        results[name] = {k: v["mean"] for k, v in rows.items()}
        for method, r in rows.items():
            print(f"{name:<36} {method:<22} " + " ".join(f"{r['mean'][k]:>11.1f}" for k in KEYS))
    if not args.no_timing:
        steps_list = [int(x) for x in args.timing_steps.split(",")]
        gm = diffusion_depth_gmacs(model, 352, 1216)
        t = timing(model, steps_list, args.repeats)
        results["timing_s_per_frame_1216x352"] = t
        results["gmacs"] = gm
        print(f"\ninference at 1216x352 on this CPU ({args.threads} threads, median of {args.repeats}):")
        print(f"{'DDIM steps':>10} {'s/frame':>9} {'GMAC':>8}")
        for n in steps_list:
            total = gm["encode_condition"] + n * gm["denoise_step"] + gm["decode"]
            print(f"{n:>10} {t[n]:>9.2f} {total:>8.1f}")
        print(f"denoiser: {gm['denoise_step']:.2f} GMAC/step; condition encoder {gm['encode_condition']:.2f} GMAC; "
              f"decoder {gm['decode']:.2f} GMAC")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
