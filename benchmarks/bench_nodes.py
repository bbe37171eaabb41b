"""Latency and throughput of the ROS boundary and the depth completion node (KITTI, 1242x375).

Three tables:

1. per-stage latency in-process (no DDS): Image -> ndarray, ndarray -> Image, LiDAR projection,
   IP-Basic, PointCloud2 packing, colormap (median / p90 over ``--repeats``);
2. end-to-end latency of ``depth_completion_node`` (backend ip_basic, or the ``--node-param``
   settings, e.g. ``--node-param backend=onnxruntime``; a separate process): from
   publishing image + camera_info + sparse_depth to receiving ``depth/image`` (and
   ``depth/points`` when subscribed), one frame at a time, ``--frames`` frames;
3. throughput when the frames are published at ``--rate`` Hz for ``--duration`` seconds: frames
   in, frames out, drops counted by the node, frames lost on the way, and the node process's
   peak RSS (``VmHWM`` in ``/proc/<pid>/status``).

Usage::

    .venv/bin/python benchmarks/bench_nodes.py [--duration 60] [--frames 30] [--rate 10]

The real frame is KITTI raw 2011_09_26_drive_0001 #5 from ``../shared/data`` (``--data``).
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))  # node_harness: node process + rclpy client helpers

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(101, 200)))
# The node tests' Fast DDS profile (32 MiB SHM segments, 100 ms heartbeat; test/conftest.py sets it
# for pytest). Fast DDS reads it once per process, so it is set before rclpy is imported; the node
# process inherits it. DDR_TEST_FASTDDS_PROFILE= (empty) keeps Fast DDS's defaults (a 512 KiB SHM
# segment: most KITTI-sized samples are then lost or resent late); a user's
# FASTDDS_DEFAULT_PROFILES_FILE wins.
_DDS_PROFILE = os.environ.get("DDR_TEST_FASTDDS_PROFILE", str(REPO / "test" / "fastdds_test_profile.xml"))
if _DDS_PROFILE and os.environ["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp":
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", _DDS_PROFILE)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from depth_diffusion_ros.evaluation.figures import colorize_depth  # noqa: E402
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth  # noqa: E402
from depth_diffusion_ros.inference.backends import make_completion_backend  # noqa: E402
from depth_diffusion_ros.inference.pipelines import CompletionPipeline  # noqa: E402
from depth_diffusion_ros.nodes.process import keep_frame_memory  # noqa: E402
from depth_diffusion_ros.ros import (  # noqa: E402
    ImageBuilder,
    PointCloud2Builder,
    array_to_image,
    depth_from_image,
    depth_to_image,
    depth_to_pointcloud2,
    pointcloud2_to_xyz,
    rgb_from_image,
)
from node_harness import KittiFrame, NodeProcess, RosClient, diagnostic_values, stamp_header  # noqa: E402

MODULE = "depth_diffusion_ros.nodes.depth_completion_node"


def _stats(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


def _time(fn, repeats: int) -> tuple[float, float, float]:
    """(median, p90, min) seconds; the minimum is the least disturbed by other processes."""
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return (*_stats(out), min(out))


def stage_table(frame: KittiFrame, repeats: int) -> list[tuple[str, float, float, float]]:
    image_msg = frame.image(1.0)
    sparse_msg = frame.sparse_image(1.0)
    points_msg = frame.points(1.0)
    pipeline = CompletionPipeline(make_completion_backend("ip_basic"))
    dense = pipeline(frame.rgb, frame.sparse, frame.intrinsics).depth
    header = stamp_header(KittiFrame.CAMERA_FRAME, 1.0)
    cloud, image = PointCloud2Builder(), ImageBuilder()  # what depth_completion_node publishes with
    cloud_msg = depth_to_pointcloud2(dense, frame.intrinsics, header, frame.rgb)
    rows = [
        ("Image rgb8 -> ndarray (rgb_from_image)", *_time(lambda: rgb_from_image(image_msg), repeats)),
        ("Image 32FC1 -> ndarray m (depth_from_image)", *_time(lambda: depth_from_image(sparse_msg), repeats)),
        ("ndarray -> Image rgb8 (array_to_image)", *_time(lambda: array_to_image(frame.rgb, "rgb8", header), repeats)),
        ("ndarray -> Image 32FC1 (depth_to_image)", *_time(lambda: depth_to_image(dense, header), repeats)),
        ("  same, reused message (ImageBuilder.depth)", *_time(lambda: image.depth(dense, header), repeats)),
        ("PointCloud2 -> xyz (121,948 pts)", *_time(lambda: pointcloud2_to_xyz(points_msg), repeats)),
        ("LiDAR projection (project_lidar_to_depth)",
         *_time(lambda: project_lidar_to_depth(frame.scan, frame.calib.T_camera_lidar, frame.intrinsics), repeats)),
        ("IP-Basic completion (CompletionPipeline)",
         *_time(lambda: pipeline(frame.rgb, frame.sparse, frame.intrinsics), repeats)),
        ("PointCloud2 packing, organised + rgb", *_time(lambda: depth_to_pointcloud2(dense, frame.intrinsics, header, frame.rgb), repeats)),
        ("  same, reused message (PointCloud2Builder)", *_time(lambda: cloud.build(dense, frame.intrinsics, header, frame.rgb), repeats)),
        ("  serialise it (the copy rclpy publish makes)", *_time(lambda: serialize_message(cloud_msg), repeats)),
        ("colormap (colorize_depth), fixed range", *_time(lambda: colorize_depth(dense, 0.0, 80.0), repeats)),
        ("colormap (colorize_depth), per-frame range", *_time(lambda: colorize_depth(dense), repeats)),
    ]
    return rows


class Bench:
    """A node process plus a client that publishes the KITTI frame and listens to the outputs."""

    def __init__(self, frame: KittiFrame, params: dict, subscribe_points: bool) -> None:
        self.frame = frame
        self.proc = NodeProcess(MODULE, dict({"backend": "ip_basic", "input": "sparse_depth",
                                              "diagnostics_period": 0.5, "log_throttle": 30.0}, **params))
        self.client = c = RosClient("bench_client")
        self.pub_image = c.publisher(Image, "image")
        self.pub_info = c.publisher(CameraInfo, "camera_info")
        self.pub_sparse = c.publisher(Image, "sparse_depth")
        self.depth = c.subscribe(Image, "depth/image")
        self.points = c.subscribe(PointCloud2, "depth/points") if subscribe_points else None
        self.diag = c.subscribe(DiagnosticArray, "diagnostics")
        subs = [self.depth, self.diag] + ([self.points] if self.points else [])
        c.wait_matched([self.pub_image, self.pub_info, self.pub_sparse], subs, timeout=60)
        self.templates = (frame.image(0.0), frame.camera_info(0.0), frame.sparse_image(0.0))
        self.received: dict[int, float] = {}
        self.received_points: dict[int, float] = {}
        self.depth.sub.callback = lambda m: self.received.setdefault(_ns(m), time.perf_counter())
        if self.points:
            self.points.sub.callback = lambda m: self.received_points.setdefault(_ns(m), time.perf_counter())
        self.next_t = 5000.0

    def publish(self) -> tuple[int, float]:
        t = self.next_t
        self.next_t += 0.1
        header = stamp_header(KittiFrame.CAMERA_FRAME, t)
        for msg in self.templates:
            msg.header = header
        sent = time.perf_counter()
        self.pub_image.publish(self.templates[0])
        self.pub_info.publish(self.templates[1])
        self.pub_sparse.publish(self.templates[2])
        return _ns(self.templates[0]), sent

    def wait(self, key: int, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if key in self.received and (self.points is None or key in self.received_points):
                return True
            self.client.executor.spin_once(timeout_sec=0.01)
        return False

    def node_counters(self) -> dict[str, str]:
        self.client.spin_for(1.2)
        return diagnostic_values(self.diag.messages[-1]) if self.diag.messages else {}

    def minor_faults(self) -> int:
        """Minor page faults of the node process so far (``minflt`` in ``/proc/<pid>/stat``)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[7])

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    def close(self) -> None:
        self.client.destroy()
        self.proc.cleanup()


def _ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def end_to_end(frame: KittiFrame, n_frames: int, subscribe_points: bool,
               node_params: dict | None = None) -> tuple[float, float, float, float, int, float]:
    bench = Bench(frame, dict(node_params or {}, reliability="reliable"), subscribe_points)
    try:
        for _ in range(20):  # warm-up until the first answer (discovery both ways)
            key, _ = bench.publish()
            if bench.wait(key, 5.0):
                break
        depth_lat, points_lat, missing = [], [], 0
        faults_before = bench.minor_faults()
        for _ in range(n_frames):
            key, sent = bench.publish()
            if not bench.wait(key, 30.0):
                missing += 1
                continue
            depth_lat.append(bench.received[key] - sent)
            if subscribe_points:
                points_lat.append(bench.received_points[key] - sent)
        faults = (bench.minor_faults() - faults_before) / n_frames
        d50, d90 = _stats(depth_lat)
        p50, p90 = _stats(points_lat) if points_lat else (float("nan"), float("nan"))
        return d50, d90, p50, p90, missing, faults
    finally:
        bench.close()


def throughput(frame: KittiFrame, rate: float, duration: float, reliability: str,
               node_params: dict | None = None) -> dict:
    bench = Bench(frame, dict(node_params or {}, reliability=reliability), subscribe_points=False)
    try:
        for _ in range(20):
            key, _ = bench.publish()
            if bench.wait(key, 5.0):
                break
        before = len(bench.received)
        faults_before = bench.minor_faults()
        period = 1.0 / rate
        start = time.perf_counter()
        sent = 0
        while time.perf_counter() - start < duration:
            bench.publish()
            sent += 1
            next_at = start + sent * period
            while time.perf_counter() < next_at:
                bench.client.executor.spin_once(timeout_sec=max(0.0, min(0.01, next_at - time.perf_counter())))
        elapsed = time.perf_counter() - start
        bench.client.spin_for(3.0)  # let the last frames arrive
        out = len(bench.received) - before
        faults = bench.minor_faults() - faults_before
        counters = bench.node_counters()
        return {"reliability": reliability, "rate": sent / elapsed, "in": sent, "out": out,
                "node_drops": int(counters.get("drops_total", 0)), "node_frames_in": int(counters.get("frames_in", 0)),
                "mean_latency_ms": counters.get("mean_latency_ms", "nan"), "peak_rss_mb": bench.peak_rss_mb(),
                "out_hz": out / elapsed, "faults_per_frame": faults / max(sent, 1),
                "drop_reasons": {k[6:]: v for k, v in counters.items() if k.startswith("drops_") and k != "drops_total"},
                "log_tail": bench.proc.log()[-1500:]}
    finally:
        bench.close()


def parse_node_params(items: list[str]) -> dict:
    """{name: value} from NAME=VALUE strings (values parsed as YAML scalars); ValueError names a bad item."""
    import yaml

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--node-param {item!r}: expected NAME=VALUE")
        out[name] = yaml.safe_load(value) if value else ""
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "kitti_raw_depth_completion_torch_kitti")
    parser.add_argument("--repeats", type=int, default=20, help="repeats per in-process stage")
    parser.add_argument("--frames", type=int, default=30, help="frames for the end-to-end latency")
    parser.add_argument("--rate", type=float, default=10.0, help="publish rate of the throughput run (Hz)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the throughput run")
    parser.add_argument("--reliability", default="both", choices=["both", "best_effort", "reliable"],
                        help="node input QoS of the throughput run(s)")
    parser.add_argument("--tables", default="1,2,3", help="comma-separated tables to run (1 stages, 2 end-to-end, "
                        "3 throughput)")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME=VALUE",
                        help="a depth_completion_node parameter for tables 2 and 3 (repeatable), e.g. "
                             "backend=onnxruntime; values are read as YAML (numbers, true/false)")
    args = parser.parse_args(argv)
    tables = {t.strip() for t in args.tables.split(",")}
    node_params = parse_node_params(args.node_param)
    # the allocator setting of the nodes (run_node), for this process too: the stages and the client
    # see what a node sees. DDR_MALLOC_TUNING=0 leaves glibc's defaults here and in the node process.
    tuned = keep_frame_memory()
    frame = KittiFrame(args.data)
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"RMW {os.environ['RMW_IMPLEMENTATION']}; frame 1242x375 KITTI raw 2011_09_26_0001 #5; "
          f"glibc keep_frame_memory {'on' if tuned else 'off'} (DDR_MALLOC_TUNING)")

    if "1" in tables:
        print("\n1) per-stage latency, in-process (ms)")
        print(f"| {'stage':<45} | median | p90 | min |\n|{'-' * 47}|-------:|----:|----:|")
        for name, med, p90, low in stage_table(frame, args.repeats):
            print(f"| {name:<45} | {med * 1e3:6.1f} | {p90 * 1e3:5.1f} | {low * 1e3:5.1f} |")

    if "2" in tables:
        print(f"\n2) depth_completion_node end-to-end latency, publish -> receive, {args.frames} frames (ms); "
              f"node parameters {node_params or {'backend': 'ip_basic'}}")
        print("| outputs subscribed | depth/image median | p90 | depth/points median | p90 | unanswered | "
              "node page faults / frame |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for with_points in (False, True):
            d50, d90, p50, p90, missing, faults = end_to_end(frame, args.frames, with_points, node_params)
            label = "depth/image + depth/points" if with_points else "depth/image"
            print(f"| {label} | {d50 * 1e3:.1f} | {d90 * 1e3:.1f} | {p50 * 1e3:.1f} | {p90 * 1e3:.1f} | {missing} | {faults:.0f} |")

    if "3" in tables:
        print(f"\n3) throughput at {args.rate:g} Hz for {args.duration:g} s (depth/image subscribed)")
        print("| input QoS | sent Hz | frames in | frames out | out Hz | node drops | lost in transport | "
              "node mean latency ms | node peak RSS MB | node page faults / frame |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        modes = ["best_effort", "reliable"] if args.reliability == "both" else [args.reliability]
        results = [throughput(frame, args.rate, args.duration, m, node_params) for m in modes]
        for r in results:
            lost = r["in"] - r["out"] - r["node_drops"]
            print(f"| {r['reliability']} | {r['rate']:.1f} | {r['in']} | {r['out']} | {r['out_hz']:.1f} | "
                  f"{r['node_drops']} | {max(lost, 0)} | {r['mean_latency_ms']} | {r['peak_rss_mb']:.0f} | "
                  f"{r['faults_per_frame']:.0f} |")
        for r in results:
            print(f"node drops by reason ({r['reliability']}): {r['drop_reasons'] or 'none'}")
            if os.environ.get("DDR_BENCH_VERBOSE"):
                print(r["log_tail"])
    print(f"Fast DDS profile: {os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE') or 'Fast DDS defaults'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
