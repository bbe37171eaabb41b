"""Soak run of depth_completion_node: N frames at R Hz, depth/image and depth/points subscribed.

The real KITTI frame (1242x375, ip_basic, input sparse_depth, best-effort inputs as the node's
default) is published ``--frames`` times at ``--rate`` Hz by a client process over loopback DDS.
Prints one table: the node process's RSS (``VmRSS``) after warm-up, half-way and at the end, its
peak (``VmHWM``); frames sent, answered on depth/image and depth/points; the node's own counters
(frames in/out, drops by reason, ``gaps_*``: sets that never reached it); and the publish ->
receive latency median / p99 of depth/image and depth/points.

Usage::

    .venv/bin/python benchmarks/bench_soak.py [--frames 300] [--rate 10] [--reliability best_effort]

``make bench`` runs the default (300 frames, 30 s); the README's table is ``--frames 6000`` (10 min).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nodes import REPO, Bench  # noqa: E402 - sets up DDS (domain, profile) before rclpy

import numpy as np  # noqa: E402

from node_harness import KittiFrame  # noqa: E402


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    """``key`` (VmRSS: now, VmHWM: peak) of a process in MiB, from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _ms(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1e3:.1f}" if values else "nan"


def soak(frame: KittiFrame, n_frames: int, rate: float, reliability: str) -> dict:
    """Publish ``n_frames`` frames at ``rate`` Hz; return the measurements (see the module docstring)."""
    bench = Bench(frame, {"reliability": reliability}, subscribe_points=True)
    try:
        for _ in range(20):  # warm-up until the first answer (discovery both ways)
            key, _ = bench.publish()
            if bench.wait(key, 5.0):
                break
        bench.client.spin_for(1.0)
        before_depth, before_points = len(bench.received), len(bench.received_points)
        rss = {"start": rss_mb(bench.proc.pid)}
        sent_at: dict[int, float] = {}
        period, start = 1.0 / rate, time.perf_counter()
        for i in range(n_frames):
            key, sent = bench.publish()
            sent_at[key] = sent
            if i == n_frames // 2:
                rss["mid"] = rss_mb(bench.proc.pid)
            next_at = start + (i + 1) * period
            while time.perf_counter() < next_at:
                bench.client.executor.spin_once(timeout_sec=max(0.0, min(0.01, next_at - time.perf_counter())))
        elapsed = time.perf_counter() - start
        bench.client.spin_for(3.0)  # the last frames
        rss["end"], rss["peak"] = rss_mb(bench.proc.pid), rss_mb(bench.proc.pid, "VmHWM")
        counters = bench.node_counters()
        depth_lat = [bench.received[k] - t for k, t in sent_at.items() if k in bench.received]
        points_lat = [bench.received_points[k] - t for k, t in sent_at.items() if k in bench.received_points]
        return {
            "sent": n_frames, "sent_hz": n_frames / elapsed, "rss": rss,
            "depth_out": len(bench.received) - before_depth, "points_out": len(bench.received_points) - before_points,
            "counters": counters, "depth_lat": depth_lat, "points_lat": points_lat,
            "alive": bench.proc.proc.poll() is None,
        }
    finally:
        bench.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "kitti_raw_depth_completion_torch_kitti")
    parser.add_argument("--frames", type=int, default=300, help="frames to publish")
    parser.add_argument("--rate", type=float, default=10.0, help="publish rate (Hz)")
    parser.add_argument("--reliability", default="best_effort", choices=["best_effort", "reliable"],
                        help="node input QoS")
    args = parser.parse_args(argv)
    r = soak(KittiFrame(args.data), args.frames, args.rate, args.reliability)
    c = r["counters"]
    drops = {k[6:]: int(v) for k, v in c.items() if k.startswith("drops_") and k != "drops_total"}
    gaps = {k: int(v) for k, v in c.items() if k.startswith("gaps_")}
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"RMW {os.environ['RMW_IMPLEMENTATION']}; {datetime.date.today()}; depth_completion_node ip_basic, "
          f"KITTI 1242x375, {args.reliability} inputs, depth/image + depth/points subscribed")
    print(f"{r['sent']} frames at {r['sent_hz']:.2f} Hz ({r['sent'] / r['sent_hz'] / 60:.1f} min)\n")
    rss = r["rss"]
    rows = [
        ("node RSS start / mid / end (peak), MiB",
         f"{rss['start']:.0f} / {rss.get('mid', float('nan')):.0f} / {rss['end']:.0f} ({rss['peak']:.0f})"),
        ("frames sent / depth/image out / depth/points out", f"{r['sent']} / {r['depth_out']} / {r['points_out']}"),
        ("node frames_in / frames_out", f"{c.get('frames_in', '?')} / {c.get('frames_out', '?')}"),
        ("node drops by reason", ", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "none"),
        ("never reached the node (gaps_*)", ", ".join(f"{k} {v}" for k, v in sorted(gaps.items())) or "none"),
        ("latency depth/image median / p99, ms", f"{_ms(r['depth_lat'], 50)} / {_ms(r['depth_lat'], 99)}"),
        ("latency depth/points median / p99, ms", f"{_ms(r['points_lat'], 50)} / {_ms(r['points_lat'], 99)}"),
        ("node mean processing latency, ms", c.get("mean_latency_ms", "nan")),
        ("node alive at the end", "yes" if r["alive"] else "NO"),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0 if r["alive"] else 1


if __name__ == "__main__":
    sys.exit(main())
