"""``depth-diffusion-ros export``: torch checkpoint -> ONNX (checked against torch on a real frame).

Examples::

    depth-diffusion-ros export --output out/onnx/kitti                 # shipped default model, KITTI frames
    depth-diffusion-ros export --checkpoint DIR --output DIR2 --frame-size 640x480   # another camera
    depth-diffusion-ros export ... --form unrolled --steps 10          # whole loop, 10 steps
    depth-diffusion-ros export ... --form both --ensemble-size 4 --dynamic

Size: the graphs are exported for the frame the model will see. ``--frame-size WxH`` is the
camera's image size (default 1242x375, KITTI); DiffusionDepth pads a frame at the bottom and
right up to the next multiple of its config's ``size_divisor`` (the image by repeating its edge
pixels, the sparse depth with 0 = no return; the output is cropped back), so KITTI's 1242x375
becomes 1248x384 with the default ``size_divisor: 32``. ``--height/--width`` set the graph size
directly (multiples of the size divisor). A static graph refuses any other size at start (the
ONNX Runtime / TensorRT backend names both sizes); ``--dynamic`` accepts any size, at the cost of
the slower torch.export-based exporter and TensorRT optimisation profiles, so static is the
default. DSR-Diff (``--model dsr_diff``) is exported for ``--frame-size`` (default 640x480, NYU)
as the high-resolution size, padded as its pipeline pads (the low-resolution map edge-repeated
until the high-resolution size is a multiple of the model's size divisor).

Monocular models trained at a canonical focal length (stored with their weights: the KITTI
monocular DiffusionDepth and DenseDepth, 360.77 px) see every frame resized to it first (the
estimation pipeline's canonical camera), so their graphs are exported for that size: the frame
at the camera's ``--camera-focal`` (pixels at ``--frame-size``; default the KITTI camera's
721.54 px for the default 1242x375) brought to the canonical focal length, then padded: a KITTI
frame -> 621x188 -> 640x192.

DenseDepth (``--model densedepth``, or any DenseDepth checkpoint: the model is read from the
checkpoint's ``architecture`` when ``--model`` is not given) is one graph, ``densedepth.onnx``
(rgb -> metric depth; :mod:`depth_diffusion_ros.export.densedepth`), checked against torch to
1 mm + 1e-4 relative on the real KITTI frame; ``--form``, ``--steps`` and ``--ensemble-size`` do
not apply to it (a one-shot regressor).

``--fp16-onnx`` also writes ``<stem>.fp16.onnx`` beside each graph (onnxconverter-common:
fp16 weights and activations, float32 inputs/outputs), the file TensorRT 11 builds fp16 engines
from (it has no fp16 builder flag); copy it to the robot with the folder.

The step form (encoder + one DDIM step + decoder, host loop) is the default: it accepts any
``num_inference_steps`` and lets TensorRT keep the latents on the GPU and replay the step as a
CUDA graph. Measured on the 2-core CI CPU (benchmarks/bench_runtime.py, ONNX Runtime, default
config at 1216x352): 1347/2109/3234/5197 ms for 1/5/10/20 steps vs 1238/2009/3007/5150 ms
unrolled — the unrolled graph is 1-9 % faster and needs ~150 MB less memory, and is the better
choice only when the step count is fixed; both are 2.6-3.5x faster than torch eager. Parity: each single-pass graph must
match torch to 1e-4, the whole sampling loop to 1e-3 m (+1e-4 relative), on a real KITTI frame
(or NYU for non-KITTI aspect ratios) from ``--data-dir``; ``--no-check`` skips it.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Optional

from depth_diffusion_ros.inference.backends.exported import DEFAULT_COMPLETION_CHECKPOINT

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_CHECKPOINTS = {"diffusion_depth": DEFAULT_COMPLETION_CHECKPOINT, "dsr_diff": WEIGHTS / "dsr_diff_demo"}
DEFAULT_DATA_DIR = os.environ.get("DDR_SHARED_DATA", str(Path(__file__).resolve().parents[2].parent / "shared" / "data"))


MODELS = ("diffusion_depth", "dsr_diff", "densedepth")
#: fx (pixels) of the KITTI raw left colour camera at 1242x375 (P_rect_02 of 2011_09_26): the
#: default --camera-focal with the default frame size
KITTI_FOCAL = 721.5377


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODELS, default=None,
                        help="which model the checkpoint holds (default: the checkpoint's architecture; "
                             "diffusion_depth without --checkpoint)")
    parser.add_argument("--checkpoint", default="",
                        help="checkpoint directory (model.safetensors + config.yaml); '' = the shipped weights "
                             "(weights/diffusion_depth_kitti or weights/dsr_diff_demo)")
    parser.add_argument("--output", required=True, help="output directory for the .onnx files")
    parser.add_argument("--frame-size", default=None, metavar="WxH",
                        help="camera image size the graphs are for (default 1242x375 KITTI; 640x480 for dsr_diff), "
                             "padded bottom/right to the model's size divisor")
    parser.add_argument("--camera-focal", type=float, default=None, metavar="PX",
                        help="the camera's fx (pixels at --frame-size), for a model with a canonical focal length: "
                             f"the graphs are exported for the frame resized to it (default {KITTI_FOCAL} px, KITTI, "
                             "with the default frame size)")
    parser.add_argument("--height", type=int, default=None, help="graph input height (default: from --frame-size)")
    parser.add_argument("--width", type=int, default=None, help="graph input width (default: from --frame-size)")
    parser.add_argument("--form", choices=("step", "unrolled", "both"), default="step",
                        help="step: encoder+step+decoder for a host loop (any steps); unrolled: one graph")
    parser.add_argument("--steps", type=int, default=0, help="DDIM steps (unrolled graph; 0 = config default)")
    parser.add_argument("--ensemble-size", type=int, default=1, help="samples per frame of the unrolled graph")
    parser.add_argument("--scale", type=int, default=4, help="dsr_diff: super-resolution factor of the graph")
    parser.add_argument("--dynamic", action="store_true", help="dynamic batch/height/width axes")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (17 for TensorRT 10)")
    parser.add_argument("--dynamo", action="store_true", help="use the torch.export-based exporter (opset >= 18)")
    parser.add_argument("--no-check", action="store_true", help="skip the parity check against torch")
    parser.add_argument("--fp16-onnx", action="store_true",
                        help="also write <stem>.fp16.onnx beside each graph (fp16 weights/activations, float32 I/O): "
                             "what TensorRT 11 builds fp16 engines from")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="shared data (real frames for the check)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")


def write_fp16_copies(paths) -> None:
    """``--fp16-onnx``: the fp16 copy of each exported graph beside it (printed, one a line)."""
    from depth_diffusion_ros.runtime.onnx_fp16 import write_fp16_onnx

    for path in paths:
        print(f"{write_fp16_onnx(path)}  [fp16 copy of {Path(path).name}, float32 I/O]")


DEFAULT_FRAME_SIZES = {"diffusion_depth": "1242x375", "dsr_diff": "640x480", "densedepth": "1242x375"}


def sr_padded_size(height: int, width: int, scale: int, size_divisor: int) -> tuple[int, int]:
    """High-resolution (H, W) a DSR-Diff graph sees for an image of (height, width) at ``scale``:
    the low-resolution map (height/scale rows) is edge-padded until ``rows * scale`` is a multiple
    of ``size_divisor`` (inference.frames.prepare_sr_inputs). Raises ValueError when the size is
    not a multiple of the scale."""
    if height % scale or width % scale:
        raise ValueError(f"--frame-size {width}x{height} is not a multiple of --scale {scale}")

    def padded(n: int) -> int:
        lr = n // scale
        while (lr * scale) % size_divisor:
            lr += 1
        return lr * scale

    return padded(height), padded(width)


def graph_size(args: argparse.Namespace, size_divisor: int,
               canonical_focal: Optional[float] = None) -> tuple[int, int, str]:
    """(height, width, how it was chosen) of the exported graphs (see the module docstring);
    ``canonical_focal`` (pixels): the model's, the frame is brought to it first.

    Raises ValueError for a malformed --frame-size, or a canonical focal length with a
    --frame-size but no --camera-focal (the graph size would be a guess).
    """
    from depth_diffusion_ros.tools.onnx_cache import padded_size, parse_frame_size

    fw, fh = parse_frame_size(args.frame_size or DEFAULT_FRAME_SIZES[args.model])
    frame = f"frame {fw}x{fh}"
    if args.model == "dsr_diff":
        h, w = sr_padded_size(fh, fw, args.scale, size_divisor)
    else:
        if canonical_focal and (args.height, args.width) == (None, None):
            fw, fh, frame = _canonical_frame(args, fw, fh, canonical_focal)
        h, w = padded_size(fh, fw, size_divisor)
    h, w = args.height or h, args.width or w
    how = (f"{frame} padded at the bottom/right to a multiple of {size_divisor}"
           if (args.height, args.width) == (None, None) else "--height/--width")
    return h, w, how


def _canonical_frame(args: argparse.Namespace, fw: int, fh: int, canonical_focal: float) -> tuple[int, int, str]:
    """(width, height, words) of a fw x fh frame at the camera's --camera-focal resized to the
    model's canonical focal length (as the estimation pipeline resizes it)."""
    from depth_diffusion_ros.geometry.intrinsics import Intrinsics
    from depth_diffusion_ros.inference.pipelines.estimation import canonical_size

    focal = getattr(args, "camera_focal", None) or (None if args.frame_size else KITTI_FOCAL)
    if not focal or focal <= 0:
        raise ValueError(f"the model runs at its canonical focal length {canonical_focal:g} px: give the camera's "
                         f"--camera-focal (fx in pixels at --frame-size {fw}x{fh}) or --height/--width")
    cw, ch = canonical_size(Intrinsics(fx=focal, fy=focal, cx=fw / 2, cy=fh / 2, width=fw, height=fh),
                            canonical_focal)
    return cw, ch, f"frame {fw}x{fh} at {focal:g} px resized to the canonical {canonical_focal:g} px ({cw}x{ch}),"


def _export_diffusion_depth(args: argparse.Namespace) -> int:
    """DiffusionDepth: load, choose the size, export, check parity on a real frame, print."""
    from depth_diffusion_ros.export.diffusion_depth import (
        check_host_loop_parity,
        export_diffusion_depth,
        load_diffusion_depth_family,
    )
    from depth_diffusion_ros.export.frames import FrameError, frame_for_size, tensor_inputs

    model = load_diffusion_depth_family(args.checkpoint)
    args.height, args.width, how = graph_size(args, int(model.config.size_divisor),
                                              getattr(model, "canonical_focal", None))
    forms = ("step", "unrolled") if args.form == "both" else (args.form,)
    print(f"exporting {args.checkpoint} ({', '.join(forms)} form) for {args.width}x{args.height} ({how}) "
          f"-> {args.output}; with the parity check this takes about 20 s on a 2-core CPU ...", flush=True)
    inputs = None
    if not args.no_check:
        try:
            inputs = tensor_inputs(*frame_for_size(args.data_dir, args.height, args.width))
        except FrameError as exc:
            print(f"export: no real frame for the parity check ({exc}); using random inputs", file=sys.stderr)
    report = export_diffusion_depth(
        model, args.output, args.height, args.width, forms=forms,
        num_inference_steps=args.steps or None, ensemble_size=args.ensemble_size, inputs=inputs,
        dynamic=args.dynamic, opset=args.opset, dynamo=args.dynamo, check=not args.no_check,
    )
    for g in report.graphs:
        errs = ", ".join(f"{k} {v:.2e}" for k, v in g.max_abs_error.items()) or "not checked"
        print(f"{g.path}  [{g.graph}]  export {g.seconds:.1f}s  max |onnx - torch|: {errs}")
    if "step" in forms and inputs is not None:
        steps = args.steps or model.config.num_inference_steps
        err = check_host_loop_parity(model, args.output, inputs, steps, args.ensemble_size)
        print(f"host DDIM loop over the step graphs, {steps} steps: max |onnx - torch| depth {err:.2e} m")
    if args.fp16_onnx:
        write_fp16_copies([g.path for g in report.graphs])
    print(f"model sha256 {report.model_sha256}")
    return 0


def _export_densedepth(args: argparse.Namespace) -> int:
    """DenseDepth: load, choose the size (its canonical one), export ``densedepth.onnx``, check
    parity on the real KITTI frame, print."""
    from depth_diffusion_ros.export.densedepth import export_densedepth, load_densedepth
    from depth_diffusion_ros.export.frames import FrameError, frame_for_size, tensor_inputs

    model = load_densedepth(args.checkpoint)
    args.height, args.width, how = graph_size(args, int(model.size_divisor), getattr(model, "canonical_focal", None))
    print(f"exporting {args.checkpoint} (DenseDepth {model.config.encoder}, one graph) for {args.width}x{args.height} "
          f"({how}) -> {args.output} ...", flush=True)
    rgb = None
    if not args.no_check:
        try:
            rgb = tensor_inputs(*frame_for_size(args.data_dir, args.height, args.width))["rgb"]
        except FrameError as exc:
            print(f"export: no real frame for the parity check ({exc}); using random inputs", file=sys.stderr)
    report = export_densedepth(model, args.output, args.height, args.width, rgb=rgb, dynamic=args.dynamic,
                               opset=args.opset, dynamo=args.dynamo, check=not args.no_check)
    for g in report.graphs:
        errs = ", ".join(f"{k} {v:.2e} m" for k, v in g.max_abs_error.items()) or "not checked"
        print(f"{g.path}  [{g.graph}]  export {g.seconds:.1f}s  max |onnx - torch|: {errs}")
    if args.fp16_onnx:
        write_fp16_copies([g.path for g in report.graphs])
    print(f"model sha256 {report.model_sha256}")
    return 0


def checkpoint_model(checkpoint: str) -> str:
    """The --model of a checkpoint folder: its config.yaml ``architecture`` (densedepth,
    dsr_diff), else diffusion_depth (also IID-RDepth: the same export); diffusion_depth when
    there is no config to read (the loader then names the problem)."""
    from depth_diffusion_ros.inference.backends.exported import checkpoint_architecture

    arch = checkpoint_architecture(Path(checkpoint)) if checkpoint else None
    return arch if arch in ("densedepth", "dsr_diff") else "diffusion_depth"


def _export_dsr_diff(args: argparse.Namespace) -> int:
    from depth_diffusion_ros.export.dsr_diff import export_dsr_diff_cli
    from depth_diffusion_ros.models.checkpoint import load_checkpoint

    divisor = int(load_checkpoint(args.checkpoint, architecture="dsr_diff").size_divisor)
    args.height, args.width, how = graph_size(args, divisor)
    print(f"exporting {args.checkpoint} (x{args.scale}) for {args.width}x{args.height} ({how}) -> {args.output} ...",
          flush=True)
    status, path = export_dsr_diff_cli(args)
    if status == 0 and args.fp16_onnx:
        write_fp16_copies([path])
    return status


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch

    from depth_diffusion_ros.export.onnx_export import ExportError

    if args.threads:
        torch.set_num_threads(args.threads)
    args.model = args.model or checkpoint_model(args.checkpoint)
    if not args.checkpoint and args.model not in DEFAULT_CHECKPOINTS:
        print(f"export failed: --model {args.model} has no shipped weights: give --checkpoint", file=sys.stderr)
        return 1
    args.checkpoint = args.checkpoint or str(DEFAULT_CHECKPOINTS[args.model])
    exporters = {"dsr_diff": _export_dsr_diff, "densedepth": _export_densedepth}
    try:
        return exporters.get(args.model, _export_diffusion_depth)(args)
    except (ExportError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
