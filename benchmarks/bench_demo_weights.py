"""Shipped DiffusionDepth demo weights vs IP-Basic vs nearest fill on held-out KITTI frames.

Frames (none used for training the demo weights, see their MODEL_CARD.md):
  * raw 2011_09_26_drive_0001 frame 5, camera 2: input = KITTI DC velodyne_raw, GT = KITTI DC
    semi-dense ground truth (``groundtruth_image_02.png``);
  * object frame 000001: input = 90 % of the LiDAR scan, GT = the other 10 % of the points
    (``geometry.sampling.holdout_mask``, seed 0, frame index 1: the split of
    ``kitti-to-bag --holdout-fraction 0.1`` / ``replay``).
The training frames are printed too, for reference. Metrics in KITTI depth-completion units
(RMSE/MAE mm, iRMSE/iMAE 1/km) from ``depth_diffusion_ros.evaluation.metrics``; "its LiDAR prior
alone" is the model's densification prior(s) without the network (with two priors: the hand-rule
selection the learned one starts from). Then the model's inference time
per 1216x352 frame on this machine for 1, 5, 10 and 20 DDIM steps, and the GMAC per part.

    .venv/bin/python benchmarks/bench_demo_weights.py [--weights DIR] [--steps N] [--threads 1]

On a shared 2-core machine use 1 thread: with 2 OpenMP threads competing with other processes,
a step was measured ~10x slower here.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from depth_diffusion_ros.models.checkpoint import load_checkpoint  # noqa: E402
from training.kitti_demo import (  # noqa: E402
    WEIGHTS,
    beats_ip_basic,
    format_scores,
    format_timing,
    score_weights,
    shared_data,
    time_weights,
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=str(WEIGHTS))
    p.add_argument("--steps", type=int, default=None, help="DDIM steps for the accuracy table (default: config)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2, help="timed runs per step count (median)")
    p.add_argument("--timing-steps", default="1,5,10,20")
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not shared_data().is_dir():
        print(f"shared data not found at {shared_data()} (set DDR_SHARED_DATA)")
        return 1
    model = load_checkpoint(args.weights, architecture="diffusion_depth")
    print(f"machine: {platform.machine()} CPU, {os.cpu_count()} cores (shared), torch {torch.__version__}, "
          f"{args.threads} thread(s), no GPU")
    print(f"weights: {args.weights} ({model.config.backbone}, latent stride {model.config.latent_stride})\n")
    scores = score_weights(model, args.steps)
    print(format_scores(scores))
    print("\nbeats IP-Basic in RMSE on the held-out frames:", beats_ip_basic(scores))
    results = {"scores": scores}
    if not args.no_timing:
        steps_list = tuple(int(x) for x in args.timing_steps.split(","))
        timing = time_weights(model, steps_list, args.repeats)
        results["timing"] = timing
        print(f"\ninference at 1216x352 on this CPU ({args.threads} thread(s), median of {args.repeats}):")
        print(format_timing(timing))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
