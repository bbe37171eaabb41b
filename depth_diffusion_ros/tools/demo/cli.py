"""The ``depth-diffusion-ros demo`` command line: the sections in order, the printed tables and
``OUTPUT/summary.json``."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from depth_diffusion_ros.evaluation.report import format_table, write_json_atomic
from depth_diffusion_ros.tools.demo.backends import WEIGHTS_DIR, BackendChoice, discover_backends
from depth_diffusion_ros.tools.demo.completion import completion_datasets, per_frame_table, replay_completion
from depth_diffusion_ros.tools.demo.data import SR_SCALE
from depth_diffusion_ros.tools.demo.estimation import TABLE_COLUMNS as MONOCULAR_COLUMNS
from depth_diffusion_ros.tools.demo.estimation import run_monocular
from depth_diffusion_ros.tools.demo.super_resolution import SR_TABLE_COLUMNS, run_super_resolution


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``depth-diffusion-ros demo``."""
    parser.add_argument("-o", "--output", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--backends", default=None, help="comma-separated backends/labels to run (default: all available)")
    parser.add_argument("--frames", type=int, default=3, help="Middlebury frames (sparse patterns)")
    parser.add_argument("--scan-rows", type=int, default=64, help="scan lines of the simulated LiDAR")
    parser.add_argument("--scan-col-step", type=int, default=4, help="column step of the simulated LiDAR")
    parser.add_argument("--kitti-dir", type=Path, default=Path(os.environ["KITTI_DIR"]) if os.environ.get("KITTI_DIR") else None,
                        help="a KITTI raw drive / object / torch_kitti folder (default $KITTI_DIR)")
    parser.add_argument("--max-frames", type=int, default=5, help="frames per KITTI bag")
    parser.add_argument("--no-kitti", action="store_true", help="only the embedded Middlebury data")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps for diffusion backends")
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR,
                        help="folder of model folders for the learned backends (default: the shipped weights)")
    parser.add_argument("--frame-timeout", type=float, default=300.0, help="seconds to wait for one frame")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sparse sampling and the held-out split")
    parser.add_argument("--sr-backends", default=None,
                        help="comma-separated super-resolution backends/labels (default: all available)")
    parser.add_argument("--no-sr", action="store_true", help="skip the super-resolution section")
    parser.add_argument("--sr-frames", type=int, default=3, help="NYU frames in the super-resolution section")
    parser.add_argument("--no-monocular", action="store_true", help="skip the monocular (depth_estimation_node) section")


def _print_completion(rows: list[dict[str, Any]], choices: list[BackendChoice]) -> list[str]:
    """The completion table, the per-frame KITTI table; returns the skipped backends (printed too)."""
    print()
    print("Depth completion on the same frames (KITTI units: mm, 1/km; latency = publish -> depth/image, "
          "2-core CPU)" if os.cpu_count() == 2 else "Depth completion on the same frames (KITTI units: mm, 1/km)")
    print(format_table(rows, [("dataset", "dataset"), ("backend", "backend"), ("gt", "scored against"),
                              ("frames", "frames")]))
    per_frame = per_frame_table(rows)
    if per_frame:
        print()
        print("RMSE [mm] per KITTI frame (frame = position in the bag; KITTI object: 0 = 000000, 1 = 000001). "
              "The shipped DiffusionDepth model was trained on object 000000 (and the KITTI raw sequence); "
              "object 000001 and the kitti_dc frame (raw drive 0001) are held out (see its MODEL_CARD.md)")
        print(per_frame)
    skipped_backends = [f"{c.label} ({c.skip})" for c in choices if c.skip]
    if skipped_backends:
        print("skipped backends: " + "; ".join(skipped_backends))
    return skipped_backends


def _print_super_resolution(sr_rows: list[dict[str, Any]], sr_skipped: list[str]) -> None:
    if sr_rows:
        print()
        print(f"Depth super-resolution x{SR_SCALE} (depth_lr = {SR_SCALE}x{SR_SCALE} block average of the valid GT; "
              "depth_super_resolution_node, scored against the full-resolution GT; latency = publish -> depth/image)")
        print(format_table(sr_rows, [("dataset", "dataset"), ("backend", "backend"), ("size", "HR size"),
                                     ("frames", "frames")], SR_TABLE_COLUMNS))
    if sr_skipped:
        print("skipped super-resolution backends: " + "; ".join(sr_skipped))


def _print_monocular(rows: list[dict[str, Any]], skipped: list[str]) -> None:
    if rows:
        print()
        print("Monocular depth (depth_estimation_node, the image alone; held-out KITTI frames, Eigen protocol: "
              "Garg crop, 80 m cap; row_median = the ground-plane reference every model must beat)")
        print(format_table(rows, [("dataset", "dataset"), ("model", "model"), ("frames", "frames")], MONOCULAR_COLUMNS))
    if skipped:
        print("monocular section skipped: " + "; ".join(skipped))


def _runnable_backends(args: argparse.Namespace) -> tuple[list[BackendChoice], list[BackendChoice]]:
    """(every backend choice, the runnable ones); says which run (the skipped ones are listed,
    with their reasons, once: under the table)."""
    only = [b.strip() for b in args.backends.split(",")] if args.backends else None
    choices = discover_backends(Path(args.weights_dir), only=only, steps=args.steps)
    runnable = [c for c in choices if c.skip is None]
    n_skipped = len(choices) - len(runnable)
    print(f"completion backends: {', '.join(c.label for c in runnable) or 'none'}"
          + (f" ({n_skipped} skipped: see under the table)" if n_skipped else ""), flush=True)
    return choices, runnable


def run(args: argparse.Namespace) -> int:
    """Run the demo; prints the metrics table. 0 when every dataset scored with some backend."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    t0 = time.perf_counter()
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"demo: error: cannot create {out}: {exc}", file=sys.stderr)
        return 2
    choices, runnable = _runnable_backends(args)
    if not runnable:
        print("demo: error: no backend to run", file=sys.stderr)
        return 2
    bags = out / "bags"
    datasets = completion_datasets(args, bags)
    if datasets is None:
        return 2
    rows: list[dict[str, Any]] = []
    failures = 0
    for data in datasets:
        for choice in runnable:
            row, failed = replay_completion(args, out, data, choice)
            rows.append(row)
            failures += failed
    sr_rows, sr_skipped = ([], []) if args.no_sr else run_super_resolution(args, out, bags)
    sr_failures = sum(1 for r in sr_rows if r.get("rmse_mm") is None)
    mono_rows, mono_skipped = ([], []) if args.no_monocular or args.no_kitti else run_monocular(
        out, bags, Path(args.weights_dir), args.frame_timeout)
    mono_failures = sum(1 for r in mono_rows if r.get("abs_rel") is None)
    wall = time.perf_counter() - t0
    skipped_backends = _print_completion(rows, choices)
    _print_super_resolution(sr_rows, sr_skipped)
    _print_monocular(mono_rows, mono_skipped)
    write_json_atomic(out / "summary.json", {"rows": rows, "skipped_backends": skipped_backends,
                                             "super_resolution_rows": sr_rows,
                                             "skipped_super_resolution_backends": sr_skipped,
                                             "monocular_rows": mono_rows, "skipped_monocular": mono_skipped,
                                             "wall_s": wall})
    print(f"\noutputs: {out}/<dataset>/<backend>/ (report.json, figures/, output_bag/); bags: {bags}; "
          f"ONNX exports: {out / 'onnx_cache'}; "
          f"summary: {out / 'summary.json'}")
    print(f"demo wall time: {wall:.1f} s")
    return 0 if not failures and not sr_failures and not mono_failures and all(r.get("rmse_mm") is not None for r in rows) else 1
