"""``depth-diffusion-ros export``: torch checkpoint -> ONNX (checked against torch on a real frame).

Examples::

    depth-diffusion-ros export --checkpoint depth_diffusion_ros/weights/diffusion_depth_kitti_demo \\
        --output out/onnx/kitti --height 352 --width 1216            # step form (default)
    depth-diffusion-ros export ... --form unrolled --steps 10          # whole loop, 10 steps
    depth-diffusion-ros export ... --form both --ensemble-size 4 --dynamic

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

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_CHECKPOINTS = {"diffusion_depth": WEIGHTS / "diffusion_depth_kitti_demo", "dsr_diff": WEIGHTS / "dsr_diff_demo"}
DEFAULT_DATA_DIR = os.environ.get("DDR_SHARED_DATA", str(Path(__file__).resolve().parents[2].parent / "shared" / "data"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=("diffusion_depth", "dsr_diff"), default="diffusion_depth",
                        help="which model the checkpoint holds")
    parser.add_argument("--checkpoint", default="",
                        help="checkpoint directory (model.safetensors + config.yaml); '' = the shipped demo weights")
    parser.add_argument("--output", required=True, help="output directory for the .onnx files")
    parser.add_argument("--height", type=int, default=352, help="input height (multiple of the size divisor)")
    parser.add_argument("--width", type=int, default=1216, help="input width (multiple of the size divisor)")
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


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch

    from depth_diffusion_ros.export.onnx_export import ExportError

    if args.threads:
        torch.set_num_threads(args.threads)
    args.checkpoint = args.checkpoint or str(DEFAULT_CHECKPOINTS[args.model])
    try:
        if args.model == "dsr_diff":
            from depth_diffusion_ros.export.dsr_diff import export_dsr_diff_cli

            status, path = export_dsr_diff_cli(args)
            if status == 0 and args.fp16_onnx:
                write_fp16_copies([path])
            return status
        from depth_diffusion_ros.export.diffusion_depth import check_host_loop_parity, export_diffusion_depth
        from depth_diffusion_ros.export.frames import FrameError, frame_for_size, tensor_inputs
        from depth_diffusion_ros.models.checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint, architecture="diffusion_depth").eval()
        inputs = None
        if not args.no_check:
            try:
                inputs = tensor_inputs(*frame_for_size(args.data_dir, args.height, args.width))
            except FrameError as exc:
                print(f"export: no real frame for the parity check ({exc}); using random inputs", file=sys.stderr)
        forms = ("step", "unrolled") if args.form == "both" else (args.form,)
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
    except (ExportError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    return 0
