"""Classical baselines on the KITTI raw frame: accuracy and per-stage CPU latency.

Accuracy: IP-Basic (Ku et al., CRV 2018) and nearest fill against KITTI DC
groundtruth_image_02.png, with two inputs: KITTI DC velodyne_raw_image_02.png and our own
projection of raw/lidar_data.bin with the raw calibration (camera 2).
Latency: median of N runs at 1242x375 of each stage of the LiDAR -> dense depth -> point cloud path.

Run: .venv/bin/python benchmarks/bench_baselines.py [--runs 20] [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import cv2

from depth_diffusion_ros.evaluation.metrics import depth_metrics, to_kitti_units
from depth_diffusion_ros.geometry.calibration import read_kitti_raw_calib, read_velodyne_bin
from depth_diffusion_ros.geometry.depth_codecs import read_kitti_depth_png
from depth_diffusion_ros.geometry.pointcloud import pack_xyzrgb
from depth_diffusion_ros.geometry.projection import depth_to_points, project_lidar_to_depth
from depth_diffusion_ros.inference.backends import make_completion_backend
from depth_diffusion_ros.inference.pipelines import CompletionPipeline

from timing import median_ms  # noqa: E402 - benchmarks/timing.py, beside this script

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs per stage (median reported)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("DDR_SHARED_DATA", REPO.parent / "shared" / "data")))
    args = ap.parse_args()
    cv2.setNumThreads(1)

    root = args.data / "kitti_raw_depth_completion_torch_kitti"
    raw, dc = root / "raw", root / "depth_completion"
    calib = read_kitti_raw_calib(raw / "calib_cam_to_cam.txt", raw / "calib_velo_to_cam.txt", camera=2)
    points = read_velodyne_bin(raw / "lidar_data.bin")
    rgb = cv2.cvtColor(cv2.imread(str(raw / "sync_rect" / "cam_02.png")), cv2.COLOR_BGR2RGB)
    gt = read_kitti_depth_png(dc / "groundtruth_image_02.png")
    inputs = {
        "velodyne_raw_image_02": read_kitti_depth_png(dc / "velodyne_raw_image_02.png"),
        "own projection of lidar_data.bin": project_lidar_to_depth(points, calib.T_camera_lidar, calib.intrinsics),
    }

    methods = {name: CompletionPipeline(make_completion_backend(backend, **options)) for name, backend, options in (
        ("IP-Basic (bilateral)", "ip_basic", {}), ("IP-Basic (gaussian)", "ip_basic", {"blur_type": "gaussian"}),
        ("nearest fill", "nearest", {}))}
    print(f"# KITTI raw 2011_09_26_drive_0001 frame 5, 1242x375, GT {int((gt > 0).sum())} px")
    print(f"# machine: {platform.machine()} {os.cpu_count()} CPUs, cv2 threads 1, no GPU\n")
    print("| input | valid px | method | RMSE mm | MAE mm | iRMSE 1/km | iMAE 1/km | delta1 |")
    print("|---|---|---|---|---|---|---|---|")
    for in_name, sparse in inputs.items():
        for method, pipeline in methods.items():
            k = to_kitti_units(depth_metrics(pipeline(rgb, sparse).depth, gt))
            print(f"| {in_name} | {int((sparse > 0).sum())} | {method} | {k['rmse_mm']:.1f} | {k['mae_mm']:.1f} "
                  f"| {k['irmse_1_km']:.2f} | {k['imae_1_km']:.2f} | {k['delta1']:.4f} |")

    sparse = inputs["velodyne_raw_image_02"]
    dense = methods["IP-Basic (bilateral)"](rgb, sparse).depth
    stages = [
        (f"LiDAR projection ({len(points)} pts, z-buffer)",
         lambda: project_lidar_to_depth(points, calib.T_camera_lidar, calib.intrinsics)),
        *[(name, lambda p=pipeline: p(rgb, sparse)) for name, pipeline in methods.items()],
        ("depth_to_points", lambda: depth_to_points(dense, calib.intrinsics)),
        ("depth_to_points + pack_xyzrgb", lambda: pack_xyzrgb(depth_to_points(dense, calib.intrinsics), rgb)),
    ]
    print(f"\n| stage @1242x375 | median ms (N={args.runs}) |")
    print("|---|---|")
    for name, fn in stages:
        print(f"| {name} | {median_ms(fn, args.runs):.2f} |")


if __name__ == "__main__":
    main()
