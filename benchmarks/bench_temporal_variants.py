"""Ways for the previous output to enter the shipped completion model (issue 17), on the shared
KITTI sequence: the variants behind the README's temporal-prior paragraph (torch, CPU).

Per block (static 52-65 with a static camera; 44-51 and 0-11 with KISS-ICP ego-motion), RMSE / MAE
(mm) of the model's output against the 10 % held-out LiDAR of each frame (as bench_temporal.py):

* ``single``: one frame at a time (the shipped 1-step sampler from t = T-1);
* ``sdedit t0=..``: the previous filtered output (TemporalFilter's state), warped into this
  camera (holes: this frame's first classical fill), encoded into the latent (``DiffusionDepth.encode_depth``), noised to t0
  (x_t0 = sqrt(abar) z + sqrt(1 - abar) eps, SDEdit, Meng et al., ICLR 2022) and denoised in one
  DDIM step from t0;
* ``prior fill k``: the previous *filtered* depth (TemporalFilter's state), warped, replaces the
  model's classical fill k (0 = IP-Basic, the node's ``temporal_prior``; 1 = linear) where it lands;
* ``prior fill 0, LiDAR veto r``: as prior fill 0, dropped within 2 px of a current return it
  disagrees with by more than r;
* ``self-refine``: the frame's own output fed back as fill 0 once (no previous frame).

Then, for ``prior fill 0`` on the static block, where its squared-error reduction lies: by the
held-out point's depth and by a local edge measure (7x7 max-min of the single-frame depth over
depth).

    .venv/bin/python benchmarks/bench_temporal_variants.py
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_temporal import load_block  # noqa: E402

BLOCKS = (("static 52-65", range(52, 66), False), ("moving 44-51", range(44, 52), True),
          ("moving 0-11", range(0, 12), True))
VARIANTS = ("single", "sdedit t0=999", "sdedit t0=500", "sdedit t0=100", "prior fill 0", "prior fill 1",
            "prior fill 0, LiDAR veto 0.05", "prior fill 0, LiDAR veto 0.2", "self-refine")


class Runner:
    def __init__(self, backend) -> None:
        self.be = backend

    def feed(self, f):
        from depth_diffusion_ros.inference import frames as F  # noqa: N812
        from depth_diffusion_ros.inference.pipelines.common import classical_priors

        be = self.be
        rgb_p, pads = F.pad_to_multiple(f["rgb"], be.size_divisor)
        sparse_t, valid_t = F.sparse_to_tensor_layout(F.pad_to_multiple(f["sparse"], be.size_divisor)[0])
        feed = {"rgb": F.rgb_to_tensor_layout(rgb_p), "sparse_depth": sparse_t, "valid_mask": valid_t,
                "priors": classical_priors(be.external_priors, f["sparse"], be.size_divisor)}
        noise = F.make_noise((1,) + be.latent_shape(*rgb_p.shape[:2]), be.seed)
        return feed, pads, noise

    def depth(self, feed, pads, latents, start=None):
        import torch

        from depth_diffusion_ros.inference import frames as F  # noqa: N812

        be = self.be
        cond = be.encode(feed)
        pairs = be.scheduler.pairs(1)
        if start is not None:  # SDEdit: noise the encoded latent to t0, one step from there
            z, t0 = start
            a = be.model.alphas_cumprod[t0].float()
            latents = (a.sqrt() * z + (1 - a).sqrt() * torch.from_numpy(latents)).numpy()
            pairs = [(t0, -1)]
        out = np.asarray(be.decode(be.run_steps(latents, cond, pairs), cond), np.float32)
        return F.crop_padding(out[0, 0], pads)

    def run(self, frames, variant: str, odometry: bool) -> list[np.ndarray]:
        import torch

        from depth_diffusion_ros.geometry.odometry import LidarOdometry, lidar_motion_in_camera
        from depth_diffusion_ros.inference import frames as F  # noqa: N812
        from depth_diffusion_ros.inference.pipelines.common import DepthOutput
        from depth_diffusion_ros.inference.temporal import TemporalFilter

        filt, odo, prev, outs = TemporalFilter(), LidarOdometry(), None, []
        divisor = self.be.size_divisor
        for f in frames:
            feed, pads, noise = self.feed(f)
            lm = odo.update(f["scan"]) if odometry else None
            T = None if lm is None else lidar_motion_in_camera(lm, f["T_camera_lidar"])  # noqa: N806
            start = None
            if variant == "self-refine":
                own = F.pad_to_multiple(self.depth(feed, pads, noise), divisor)[0]
                feed["priors"][0, 0] = np.where(own > 0, own, feed["priors"][0, 0])
            elif variant.startswith("prior"):
                warped = filt.previous("camera", 0.1 * f["n"], f["sparse"].shape, f["K"], T)
                if warped is not None:
                    if "veto" in variant:
                        s = f["sparse"]
                        hit = (warped > 0) & (s > 0)
                        bad = (hit & (np.abs(warped - s) > float(variant.split()[-1]) * s)).astype(np.uint8)
                        warped = np.where(cv2.dilate(bad, np.ones((5, 5), np.uint8)) > 0, 0.0, warped)
                    k = int(variant.split(",")[0].split()[-1])
                    wp = F.pad_to_multiple(warped.astype(np.float32), divisor)[0]
                    feed["priors"][0, k] = np.where(wp > 0, wp, feed["priors"][0, k])
            elif variant.startswith("sdedit") and prev is not None:
                warped = filt.previous("camera", 0.1 * f["n"], prev.shape, f["K"], T)
                fill = feed["priors"][0, 0][: prev.shape[0], : prev.shape[1]]
                dense = np.where(warped > 0, warped, fill)
                dense = F.pad_to_multiple(np.where(dense > 0, dense, 1.0).astype(np.float32), divisor)[0]
                with torch.inference_mode():
                    start = (self.be.model.encode_depth(torch.from_numpy(dense)[None, None]), int(variant[10:]))
            depth = self.depth(feed, pads, noise, start)
            res = filt(DepthOutput(depth, None, f["K"], f["rgb"], f["sparse"]), "camera", 0.1 * f["n"], T)
            prev = res.output.depth
            outs.append(depth)
        return outs


def errors(depths, frames) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signed error m, held-out depth m, edge measure) at every held-out point of the block."""
    err, gt, edge = [], [], []
    for d, f in zip(depths, frames):
        m = f["gt"] > 0
        err.append((d - f["gt"])[m])
        gt.append(f["gt"][m])
        k = np.ones((7, 7), np.uint8)
        edge.append(((cv2.dilate(d, k) - cv2.erode(d, k)) / np.maximum(d, 1e-3))[m])
    return np.concatenate(err), np.concatenate(gt), np.concatenate(edge)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("DDR_SHARED_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    from depth_diffusion_ros.evaluation.metrics import depth_metrics
    from depth_diffusion_ros.inference.backends import make_completion_backend

    torch.set_num_threads(args.threads)
    runner = Runner(make_completion_backend("torch"))
    seq = args.shared / "kitti_raw_2011_09_26_sequence"
    print("| block | variant | RMSE mm | MAE mm |\n|---|---|---|---|")
    kept = {}
    for block, numbers, moving in BLOCKS:
        frames = load_block(seq, tuple(numbers))
        for variant in VARIANTS:
            depths = runner.run(frames, variant, moving)
            per = [depth_metrics(d, f["gt"]) for d, f in zip(depths, frames)]
            print(f"| {block} | {variant} | {1000 * np.mean([m['rmse'] for m in per]):.0f} "
                  f"| {1000 * np.mean([m['mae'] for m in per]):.0f} |", flush=True)
            if not moving and variant in ("single", "prior fill 0"):
                kept[variant] = errors(depths, frames)
    (ea, gt, edge), (eb, _, _) = kept["single"], kept["prior fill 0"]
    gain = ea ** 2 - eb ** 2
    print("\nstatic 52-65, prior fill 0 vs single: where the squared-error reduction lies\n")
    print("| held-out points | share of points | share of the reduction | MAE single mm | MAE prior mm |")
    print("|---|---|---|---|---|")
    groups = [(f"depth {lo}-{hi} m", (gt >= lo) & (gt < hi)) for lo, hi in ((0, 10), (10, 20), (20, 40), (40, 100))]
    groups += [(f"edge {lo}-{hi}", (edge >= lo) & (edge < hi)) for lo, hi in ((0, 0.1), (0.1, 0.3))]
    groups += [("edge >= 0.3", edge >= 0.3)]
    for name, s in groups:
        print(f"| {name} | {100 * s.mean():.1f} % | {100 * gain[s].sum() / gain.sum():.1f} % "
              f"| {1000 * np.abs(ea[s]).mean():.0f} | {1000 * np.abs(eb[s]).mean():.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
