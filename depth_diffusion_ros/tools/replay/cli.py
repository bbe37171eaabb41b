"""The ``depth-diffusion-ros replay`` command line: options, the summary it prints, the exit code."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from depth_diffusion_ros.evaluation.report import format_table
from depth_diffusion_ros.tools.bag_io import BagError
from depth_diffusion_ros.tools.replay.options import PIPELINES, TOPIC_ROLES, ReplayError, ReplayOptions
from depth_diffusion_ros.tools.replay.session import ReplayResult, replay


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``depth-diffusion-ros replay``."""
    parser.add_argument("bag", type=Path, help="input rosbag2 directory (e.g. from kitti-to-bag)")
    parser.add_argument("-o", "--output", type=Path, default=Path("out/replay"), help="output folder (default out/replay)")
    parser.add_argument("--pipeline", choices=PIPELINES, default="completion",
                        help="completion: depth_completion_node (+ lidar_depth_projection_node) on image + LiDAR/"
                             "sparse depth; super_resolution: depth_super_resolution_node on image + depth_lr; estimation: "
                             "depth_estimation_node on the image alone (scored against depth_gt, else every LiDAR point)")
    parser.add_argument("--backend", default=None,
                        help="backend of the pipeline's node (completion: ip_basic, nearest, torch, onnxruntime, ...; "
                             "super_resolution: bicubic, guided_filter, joint_bilateral, torch, ...; estimation: torch, "
                             "onnxruntime, tensorrt)")
    parser.add_argument("--params-file", type=Path, default=None, help="ROS 2 parameter YAML (e.g. config/kitti.yaml)")
    parser.add_argument("--model-path", default=None, help="model checkpoint/ONNX/engine for a learned backend")
    parser.add_argument("--steps", type=int, default=None, help="DDIM inference steps for a diffusion backend")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="parameter of the pipeline's node, NAME:=VALUE (the ROS spelling) or NAME=VALUE; "
                             "the value is YAML; repeatable. An unknown name fails and lists the node's parameters")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace replay's outputs (report.json, figures/, output_bag/) in a non-empty output folder")
    parser.add_argument("--onnx-cache", type=Path, default=None,
                        help="where a torch checkpoint given to --backend onnxruntime|tensorrt is exported "
                             "(default $DDR_ONNX_CACHE, else ~/.cache/depth_diffusion_ros/onnx)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="0 = wait for each frame's output before the next (default); R > 0 = recorded timing x R")
    parser.add_argument("--holdout-fraction", type=float, default=0.1,
                        help="fraction of each LiDAR scan held out for scoring when the bag has no ground truth")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    parser.add_argument("--frame-timeout", type=float, default=120.0, help="seconds to wait for a frame's output")
    parser.add_argument("--max-frames", type=int, default=None, help="replay only the first N frames")
    parser.add_argument("--max-figures", type=int, default=20, help="figures for the first N frames")
    parser.add_argument("--no-figures", action="store_true", help="do not write figures")
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="output bag storage")
    parser.add_argument("--namespace", default="", help="ROS namespace of the nodes")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS domain (default $ROS_DOMAIN_ID, else a random one so that replays never hear each other)")
    for role in TOPIC_ROLES:
        parser.add_argument(f"--{role.replace('_', '-')}-topic", dest=f"topic_{role}", default=None,
                            help=f"bag topic of the {role.replace('_', ' ')} (auto-detected by default)")


_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def parse_param(item: str) -> tuple[str, Any]:
    """``NAME:=VALUE`` (as ``ros2 run ... -p`` spells it) or ``NAME=VALUE`` -> (name, YAML value).

    Raises:
        ReplayError: no ``=``, or a name that is not a parameter name (letters, digits, ``_``, ``.``).
    """
    sep = ":=" if ":=" in item else "="
    if sep not in item:
        raise ReplayError(f"--param {item!r}: expected NAME:=VALUE (or NAME=VALUE)")
    name, value = item.split(sep, 1)
    name = name.strip()
    if not _PARAM_NAME.match(name):
        raise ReplayError(f"--param {item!r}: {name!r} is not a parameter name")
    try:
        return name, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ReplayError(f"--param {item!r}: the value is not valid YAML ({exc})") from exc


def options_from_args(args: argparse.Namespace) -> ReplayOptions:
    """ReplayOptions from parsed CLI arguments (``--param`` values parsed as YAML)."""
    node_params: dict[str, Any] = dict(parse_param(item) for item in args.param)
    if args.model_path:
        node_params["model_path"] = args.model_path
    if args.steps is not None:
        node_params["num_inference_steps"] = args.steps
    return ReplayOptions(
        bag=args.bag, output=args.output, backend=args.backend, params_file=args.params_file,
        node_params=node_params, rate=args.rate, holdout_fraction=args.holdout_fraction, seed=args.seed,
        frame_timeout=args.frame_timeout, max_frames=args.max_frames, figures=not args.no_figures,
        max_figures=args.max_figures, storage=args.storage, namespace=args.namespace, domain_id=args.domain_id,
        topics={r: getattr(args, f"topic_{r}") for r in TOPIC_ROLES},
        pipeline=args.pipeline, overwrite=args.overwrite, onnx_cache=args.onnx_cache,
    )


def print_summary(result: ReplayResult) -> None:
    """Per-frame table, mean and where the outputs went."""
    rep = result.report
    rows = [{"frame": f.get("frame_index", i), **f} for i, f in enumerate(rep["frames"])]
    if rep["mean"]:
        rows.append({"frame": "mean", **rep["mean"]})
    print(format_table(rows, [("frame", "frame")]))
    print(f"frames scored: {rep['n_frames']}  skipped: {rep['skipped'] or 'none'}")
    for err in rep["errors"]:
        print(f"error: {err}")
    print(f"report:  {result.report_path}\noutputs: {result.output_bag}")
    if result.figures_dir is not None:
        print(f"figures: {result.figures_dir}")


def run(args: argparse.Namespace) -> int:
    """CLI entry: 0 when at least one frame was scored, 1 when none, 2 on bad input."""
    try:
        result = replay(options_from_args(args))
    except (ReplayError, BagError) as exc:
        print(f"replay: error: {exc}", file=sys.stderr)
        if getattr(exc, "report_path", None):
            print(f"replay: the error is recorded in {exc.report_path}", file=sys.stderr)  # type: ignore[attr-defined]
        return 2
    print_summary(result)
    return 0 if result.report["n_frames"] else 1
