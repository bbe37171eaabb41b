"""End-to-end latency of ``depth_super_resolution_node`` (a separate process, loopback DDS).

From publishing colour image + camera_info + ``depth_lr`` to receiving ``depth/image``, one frame
at a time, ``--frames`` frames after a warm-up until the first answer (the ONNX export of the
first run happens there), for each ``--backend``; ``onnxruntime`` runs the shipped DSR-Diff weights
exported first as a user would (``depth-diffusion-ros export --model dsr_diff --frame-size 640x480
--scale S``, into a temporary directory). The frame is the real
NYU-Depth-v2 ``rgb_00100`` from ``../shared/data`` (640x480, never trained on), its depth block
averaged ``--scale`` times smaller (``geometry.degradation.block_average_depth``): the depth-camera
case the super-resolution issue sets its budget for (<= 150 ms at 640x480 x8).

    .venv/bin/python benchmarks/bench_sr_node.py [--frames 30] [--scale 8] [--backend onnxruntime --backend joint_bilateral]

Prints a Markdown table: median / p90 / min ms and unanswered frames per backend.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # training/ (the NYU loader)
sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench_nodes sets the ROS environment (localhost discovery, Fast DDS profile) before rclpy loads
from bench_nodes import _ns, _stats  # noqa: E402

from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from depth_diffusion_ros.geometry.degradation import block_average_depth  # noqa: E402
from depth_diffusion_ros.geometry.intrinsics import Intrinsics  # noqa: E402
from depth_diffusion_ros.ros import array_to_image, intrinsics_to_camera_info  # noqa: E402
from node_harness import NodeProcess, RosClient, stamp_header  # noqa: E402

MODULE = "depth_diffusion_ros.nodes.depth_super_resolution_node"
FRAME = "nyu_rgb_optical"
NYU_K = (518.8579, 519.46961, 325.58245, 253.73617)  # fx, fy, cx, cy (NYU-Depth-v2 colour camera)


def latency(backend: str, rgb, depth_lr, n_frames: int, model_path: str = "") -> tuple[float, float, float, int]:
    """(median, p90, min) seconds publish -> depth/image and the unanswered count."""
    params = {"backend": backend, "reliability": "reliable", "diagnostics_period": 0.5, "log_throttle": 30.0}
    if model_path:
        params["model_path"] = model_path
    proc = NodeProcess(MODULE, params)
    client = RosClient("bench_sr_client")
    try:
        pubs = [client.publisher(Image, "image"), client.publisher(CameraInfo, "camera_info"),
                client.publisher(Image, "depth_lr")]
        depth = client.subscribe(Image, "depth/image")
        client.wait_matched(pubs, [depth], timeout=120)
        received: dict[int, float] = {}
        depth.sub.callback = lambda m: received.setdefault(_ns(m), time.perf_counter())
        msgs = (array_to_image(rgb, "rgb8"), intrinsics_to_camera_info(Intrinsics(*NYU_K, width=640, height=480),
                                                                       stamp_header(FRAME, 0.0)),
                array_to_image(depth_lr, "32FC1"))
        t = [7000.0]

        def send() -> tuple[int, float]:
            t[0] += 0.1
            for m in msgs:
                m.header = stamp_header(FRAME, t[0])
            sent = time.perf_counter()
            for p, m in zip(pubs, msgs):
                p.publish(m)
            return _ns(msgs[0]), sent

        def wait(key: int, timeout: float) -> bool:
            end = time.monotonic() + timeout
            while time.monotonic() < end and key not in received:
                client.executor.spin_once(timeout_sec=0.01)
            return key in received

        for _ in range(20):  # warm-up until the first answer (discovery, export, first run)
            if wait(send()[0], 60.0):
                break
        lat, missing = [], 0
        for _ in range(n_frames):
            key, sent = send()
            if wait(key, 30.0):
                lat.append(received[key] - sent)
            else:
                missing += 1
        if not lat:
            return math.nan, math.nan, math.nan, missing
        return (*_stats(lat), min(lat), missing)
    finally:
        client.destroy()
        proc.cleanup()


def main(argv=None) -> int:
    from training.datasets.sr_datasets import nyu_frames

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "nyu_depth_v2_metric3d")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--scale", type=int, default=8)
    p.add_argument("--backend", action="append", default=None,
                   help="node backend (repeatable; default onnxruntime, joint_bilateral, guided_filter)")
    args = p.parse_args(argv)
    backends = args.backend or ["onnxruntime", "joint_bilateral", "guided_filter"]
    f = nyu_frames(args.data, names=["rgb_00100"]).load_frame(0)
    rgb, gt = f["rgb"], f["gt_depth"]
    depth_lr = block_average_depth(gt, args.scale)
    load = os.getloadavg()[0]
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"RMW {os.environ['RMW_IMPLEMENTATION']}; NYU rgb_00100 640x480, depth_lr {depth_lr.shape[1]}x"
          f"{depth_lr.shape[0]} (x{args.scale} block average); load average {load:.2f}")
    print(f"\ndepth_super_resolution_node, publish -> depth/image, {args.frames} frames (ms)")
    print("| backend | median | p90 | min | unanswered |\n|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        if "onnxruntime" in backends:
            subprocess.run([sys.executable, "-m", "depth_diffusion_ros.cli", "export", "--model", "dsr_diff",
                            "--frame-size", "640x480", "--scale", str(args.scale), "--output", tmp],
                           check=True, stdout=subprocess.DEVNULL)
        for b in backends:
            med, p90, low, missing = latency(b, rgb, depth_lr, args.frames, tmp if b == "onnxruntime" else "")
            print(f"| {b} | {med * 1e3:.1f} | {p90 * 1e3:.1f} | {low * 1e3:.1f} | {missing} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
