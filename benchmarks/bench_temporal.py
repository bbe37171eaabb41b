"""Temporal filter of depth completion against single-frame depth on the shared KITTI sequence.

For each completion method (IP-Basic; with ``--onnx`` the shipped DiffusionDepth through ONNX
Runtime, its default steps), single-frame and + :class:`~depth_diffusion_ros.inference.temporal.TemporalFilter`
(default settings, one state per block, frames stamped 0.1 s apart: KITTI's 10 Hz):

* **static block** (frames 52-65, the car stands still; static camera = the filter's identity
  ego-motion is right): per-pixel standard deviation of the published depth over the 14 frames at
  pixels the LiDAR sees in every frame (within 1 px of a return of the whole scan's projection,
  input and held-out points, in every frame: returns never land on the same pixel twice),
  median and p90 in mm; RMSE / MAE (mm) against the 10 % held-out LiDAR of each frame
  (``geometry.sampling.holdout_mask``, seed 0, frame number as index: the split of
  ``training.kitti_completion.validation_sets``), mean over frames.
* **moving blocks** (frames 0-11, the car drives at about 2 m/s; frames 44-51, it crawls at
  0.3-0.8 m/s): RMSE / MAE only.

Two temporal modes: the static-camera assumption (``T_prev_to_curr`` = identity, the node's
``temporal_ego_motion: static``) and the ego-motion from LiDAR odometry (KISS-ICP on the whole
raw scans, :class:`~depth_diffusion_ros.geometry.odometry.LidarOdometry`, converted into the
camera with the calibration's T_camera_lidar; the node's ``lidar_odometry``). The shared sequence
has no oxts poses, so there is no ground-truth motion to compare with.

Also the ms per frame of the method and of the filter (+ the odometry). Prints a Markdown table.

    .venv/bin/python benchmarks/bench_temporal.py [--onnx depth_diffusion_ros/weights/diffusion_depth_kitti/onnx] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BLOCKS = {"moving 0-11": tuple(range(0, 12)), "moving 44-51": tuple(range(44, 52)),
          "static 52-65": tuple(range(52, 66))}


def load_block(seq: Path, frames) -> list[dict]:
    """Per frame: rgb, sparse input, held-out gt (m), intrinsics, frame number, the whole raw
    scan (N, 3) in the LiDAR frame and T_camera_lidar (4, 4)."""
    from depth_diffusion_ros.geometry.intrinsics import Intrinsics
    from training.datasets.kitti_raw import KittiRawSequence
    from training.evaluate import sample_frame

    ds = KittiRawSequence(seq, frames=list(frames), holdout_fraction=0.1, seed=0)
    out = []
    for i, n in enumerate(frames):
        sample = ds[i]
        rgb, sparse, gt = sample_frame(sample)
        K = np.asarray(sample["K"], np.float64)  # noqa: N806
        files = ds.frames[i]
        scan = np.fromfile(files.lidar_bin, np.float32).reshape(-1, 4)[:, :3]
        out.append({"n": n, "rgb": rgb, "sparse": sparse, "gt": gt, "scan": scan,
                    "T_camera_lidar": files.calibration.T_camera_lidar,
                    "K": Intrinsics.from_matrix(K, rgb.shape[1], rgb.shape[0])})
    return out


MODES = (("single", "single-frame"), ("static", "temporal, static camera"),
         ("odometry", "temporal, LiDAR odometry"), ("prior_static", "temporal prior, static camera"),
         ("prior_odometry", "temporal prior, LiDAR odometry"),
         ("prior_veto_static", "temporal prior + LiDAR veto, static camera"),
         ("prior_veto_odometry", "temporal prior + LiDAR veto, LiDAR odometry"))


def run_method(pipeline, frames) -> tuple[dict, dict]:
    """Depths per mode and ms per frame of each mode: single-frame; the filter with a static
    camera / with LiDAR odometry; and, for a pipeline that takes a prior depth (DiffusionDepth),
    the filter whose previous depth also enters the model (``prior_depth``, issue 17), static /
    odometry, without and with the LiDAR veto (the node's ``temporal_prior_lidar_veto``). The odometry runs once per frame and is shared by its modes."""
    from depth_diffusion_ros.geometry.odometry import LidarOdometry, lidar_motion_in_camera
    from depth_diffusion_ros.inference.temporal import TemporalFilter

    with_prior = getattr(pipeline, "takes_prior_depth", False)
    keys = [k for k, _ in MODES if with_prior or not k.startswith("prior")]
    filters = {k: TemporalFilter() for k in keys if k != "single"}
    odometry = LidarOdometry()
    depths = {k: [] for k in keys}
    ms = dict.fromkeys(keys, 0.0)
    for f in frames:
        stamp = 0.1 * f["n"]
        t0 = time.perf_counter()
        out = pipeline(f["rgb"], f["sparse"], f["K"])
        single_ms = time.perf_counter() - t0
        t0 = time.perf_counter()
        lidar_motion = odometry.update(f["scan"])
        motion = None if lidar_motion is None else lidar_motion_in_camera(lidar_motion, f["T_camera_lidar"])
        odometry_ms = time.perf_counter() - t0
        depths["single"].append(out.depth)
        ms["single"] += single_ms
        for key, filt in filters.items():
            T = motion if key.endswith("odometry") else None  # noqa: N806
            t0 = time.perf_counter()
            cur, spent = out, single_ms
            if key.startswith("prior"):
                prior = filt.previous("camera", stamp, out.depth.shape, out.intrinsics, T,
                                      f["sparse"] if "veto" in key else None)
                if prior is not None:
                    cur = pipeline(f["rgb"], f["sparse"], f["K"], prior_depth=prior)
                    spent = 0.0
            depths[key].append(filt(cur, "camera", stamp, T).output.depth)
            ms[key] += time.perf_counter() - t0 + spent + (odometry_ms if key.endswith("odometry") else 0.0)
    return depths, {k: 1000 * v / len(frames) for k, v in ms.items()}


def scores(depths, frames, stability: bool) -> dict:
    from depth_diffusion_ros.evaluation.metrics import depth_metrics

    per = [depth_metrics(d, f["gt"]) for d, f in zip(depths, frames)]
    row = {"rmse_mm": 1000 * np.mean([m["rmse"] for m in per]), "mae_mm": 1000 * np.mean([m["mae"] for m in per])}
    if stability:
        # a scan's returns do not fall on the same pixels twice: "seen" = within 1 px of a return
        seen = np.logical_and.reduce([cv2.dilate(((f["sparse"] > 0) | (f["gt"] > 0)).astype(np.uint8),
                                                 np.ones((3, 3), np.uint8)) > 0 for f in frames])
        seen &= np.logical_and.reduce([d > 0 for d in depths])
        std = np.std(np.stack(depths)[:, seen], axis=0) * 1000
        row.update(std_median_mm=float(np.median(std)), std_p90_mm=float(np.percentile(std, 90)),
                   n_pixels=int(seen.sum()))
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("DDR_SHARED_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--onnx", type=Path, default=None, help="DiffusionDepth ONNX export folder (e.g. weights/diffusion_depth_kitti/onnx); off when absent")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    from depth_diffusion_ros.inference.backends import make_completion_backend
    from depth_diffusion_ros.inference.pipelines import CompletionPipeline

    methods = {"IP-Basic": CompletionPipeline(make_completion_backend("ip_basic"))}
    if args.onnx is not None:
        backend = make_completion_backend("onnxruntime", model_path=str(args.onnx),
                                          intra_op_num_threads=args.threads)
        methods["DiffusionDepth (ONNX Runtime)"] = CompletionPipeline(backend)
    seq = args.shared / "kitti_raw_2011_09_26_sequence"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
          f"frames 0.1 s apart, TemporalFilter defaults; ego-motion: static camera or KISS-ICP LiDAR odometry\n")
    print("| block | method | mode | std median mm | std p90 mm | RMSE mm | MAE mm | ms/frame |")
    print("|---|---|---|---|---|---|---|---|")
    for block, numbers in BLOCKS.items():
        frames = load_block(seq, numbers)
        static = block.startswith("static")
        for name, pipeline in methods.items():
            depths, ms = run_method(pipeline, frames)
            for key, mode in ((k, m) for k, m in MODES if k in depths):
                r = scores(depths[key], frames, static)
                std = (f"{r['std_median_mm']:.1f} | {r['std_p90_mm']:.1f}" if static else "- | -")
                print(f"| {block} | {name} | {mode} | {std} | {r['rmse_mm']:.0f} | {r['mae_mm']:.0f} "
                      f"| {ms[key]:.0f} |", flush=True)
            if static:
                print(f"<!-- {block}: stability over {r['n_pixels']} pixels seen by the LiDAR in all frames -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
