"""``depth-diffusion-ros build-engine``: ONNX -> TensorRT engine, cached (no torch needed).

Examples::

    depth-diffusion-ros build-engine --onnx out/onnx/kitti --cache-dir ~/.cache/depth_diffusion_ros/engines
    depth-diffusion-ros build-engine --onnx out/onnx/kitti/step.onnx --precision fp32 --force
    # Jetson AGX Orin / Xavier: run the graph on DLA core 0, GPU fallback for unsupported layers
    depth-diffusion-ros build-engine --onnx out/onnx/kitti --dla-core 0 --workspace-mb 512
    # dynamic export: give the optimisation-profile range of each dynamic input
    depth-diffusion-ros build-engine --onnx dyn/encoder.onnx \\
        --profile rgb:1x3x256x512:1x3x352x1216:1x3x384x1280 ...

Engines are keyed by the ONNX file's SHA-256, precision, TensorRT version and GPU name (in the
file name and a JSON sidecar) and rebuilt only when one of them changes or ``--force`` is given;
the TensorRT backend uses the same cache, so building ahead of time avoids a slow first start.
TensorRT 10 builds fp16/int8 with builder flags; TensorRT 11 (strongly typed) builds fp16 from
the graph's ``.fp16.onnx`` copy (written by ``export --fp16-onnx``, else made once in the
cache directory) and refuses int8 (quantize the ONNX with Q/DQ nodes instead).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--onnx", required=True, help="an .onnx file or an export directory (all its .onnx files)")
    parser.add_argument("--cache-dir", default="", help="engine cache directory ('' = the backend's default)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16",
                        help="TensorRT 10: builder flags; TensorRT 11: fp16 from the .fp16.onnx copy, no int8")
    parser.add_argument("--workspace-mb", type=int, default=1024, help="builder workspace memory pool limit (MiB)")
    parser.add_argument("--dla-core", type=int, default=-1, help="Jetson DLA core (0/1); -1 = GPU")
    parser.add_argument("--force", action="store_true", help="rebuild even if a matching engine is cached")
    parser.add_argument("--profile", action="append", default=[],
                        help="NAME:MIN:OPT:MAX shapes as AxBxC (dynamic inputs), repeatable")
    parser.add_argument("--gpu-name", default="", help="GPU name for the cache key ('' = ask CUDA)")


def parse_profile(text: str) -> tuple[str, tuple[tuple[int, ...], ...]]:
    """``rgb:1x3x256x512:1x3x352x1216:1x3x384x1280`` -> ("rgb", (min, opt, max)); ValueError if bad."""
    parts = text.split(":")
    if len(parts) != 4:
        raise ValueError(f"--profile {text!r}: expected NAME:MIN:OPT:MAX")
    try:
        shapes = tuple(tuple(int(d) for d in p.lower().split("x")) for p in parts[1:])
    except ValueError as exc:
        raise ValueError(f"--profile {text!r}: shapes must look like 1x3x352x1216") from exc
    return parts[0], shapes


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from depth_diffusion_ros.runtime import tensorrt_engine as te
    from depth_diffusion_ros.runtime.onnx_fp16 import is_fp16_file

    src = Path(args.onnx)
    # a folder's *.fp16.onnx files are the TensorRT 11 fp16 copies of its graphs, picked per precision
    files = sorted(f for f in src.glob("*.onnx") if not is_fp16_file(f)) if src.is_dir() else [src]
    if not files or not all(f.is_file() for f in files):
        print(f"build-engine: no ONNX file at {src}", file=sys.stderr)
        return 1
    try:
        profiles = dict(parse_profile(p) for p in args.profile)
        trt = te.load_tensorrt()
        gpu_name = args.gpu_name or None
        if gpu_name is None:
            from depth_diffusion_ros.runtime.cuda_runtime import CudaRuntime

            gpu_name = CudaRuntime().device_name(0)
    except (ImportError, ValueError) as exc:
        print(f"build-engine: {exc}", file=sys.stderr)
        return 1
    cache = Path(args.cache_dir or te.DEFAULT_ENGINE_CACHE_DIR)
    status = 0
    for f in files:
        try:
            res = te.get_or_build_engine(
                f, cache, precision=args.precision, force_engine_update=args.force,
                workspace_bytes=args.workspace_mb << 20, profile_ranges=profiles or None,
                dla_core=args.dla_core, trt=trt, gpu_name=gpu_name,
            )
        except te.EngineBuildError as exc:
            print(f"build-engine: {exc}", file=sys.stderr)
            status = 1
            continue
        what = f"built ({res.reason})" if res.built else "cached"
        via = f" (from {res.onnx_path.name})" if res.onnx_path is not None and res.onnx_path != f else ""
        print(f"{f}{via} -> {res.engine_path}  [{what}]")
    return status
