"""DiffusionDepth compute per part (GMAC, FlopCounterMode, MAC = FLOP/2) and CPU time per step.

Prints a table for 1216x352 (the KITTI depth-completion crop) for the demo default config, the
same model at latent strides 4 and 2 (the authors' stride), and optionally the paper's Swin-L
setting (``--paper``; builds a 200M-parameter backbone, slow on small machines).

    python benchmarks/bench_diffusion_depth_macs.py [--height 352 --width 1216] [--time] [--paper]

``--time`` adds the median CPU wall time of one denoising step (``DiffusionDepth.denoise``),
torch threads = ``--threads``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from depth_diffusion_ros.models.config import DiffusionDepthConfig, paper_config
from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth
from depth_diffusion_ros.models.flops import diffusion_depth_gmacs


def step_ms(model: DiffusionDepth, height: int, width: int, repeats: int = 3) -> float:
    rgb = torch.rand(1, 3, height, width)
    with torch.no_grad():
        cond = model.encode_condition(rgb, torch.zeros(1, 1, height, width) if model.completion else None)
        lat = torch.randn(1, *model.latent_shape(height, width))
        t = torch.tensor(500)
        model.denoise(lat, t, cond)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.denoise(lat, t, cond)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=352)
    parser.add_argument("--width", type=int, default=1216)
    parser.add_argument("--time", action="store_true", help="also time one denoising step on CPU")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paper", action="store_true", help="include the Swin-L stride-2 paper config")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    configs = [
        ("demo default (resnet18, s=8, 64 ch)", DiffusionDepthConfig()),
        ("same, latent stride 4", DiffusionDepthConfig(latent_stride=4)),
        ("same, latent stride 2 (authors' stride)", DiffusionDepthConfig(latent_stride=2)),
        ("monocular, s=8", DiffusionDepthConfig(mode="monocular")),
    ]
    if args.paper:
        configs.append(("paper: Swin-L, s=2, monocular", paper_config(
            backbone_kwargs={"img_size": [args.height, args.width]})))

    h, w = args.height, args.width
    header = "| config | params M | encode GMAC | denoise step GMAC | decode GMAC | total (20 steps) GMAC |"
    if args.time:
        header += " step ms (CPU) |"
    print(f"DiffusionDepth compute at {w}x{h} (batch 1), MAC = FLOP/2 (torch FlopCounterMode)")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, cfg in configs:
        model = DiffusionDepth(cfg).eval()
        g = diffusion_depth_gmacs(model, h, w)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        total = g["encode_condition"] + 20 * g["denoise_step"] + g["decode"]
        row = (f"| {name} | {params:.1f} | {g['encode_condition']:.2f} | {g['denoise_step']:.2f} | "
               f"{g['decode']:.2f} | {total:.1f} |")
        if args.time:
            row += f" {step_ms(model, h, w):.0f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
