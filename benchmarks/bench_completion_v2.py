"""Speed of the default completion model against the classical peers, on one KITTI frame (1242x375).

Rows (median over ``--repeats`` runs after a warm-up, one frame at a time):
  * the classical peers (IP-Basic bilateral and gaussian, linear, nearest) through the
    CompletionPipeline a node runs;
  * the model in ONNX Runtime (CPU provider, ``--threads`` intra-op threads, the nodes' session
    options): the exported graph alone (unrolled, 1 step), and the whole CompletionPipeline
    (padding to the size divisor, tensor layout, sampling, aggregation) for the unrolled 1-step
    graph, the step graphs at 1, 2 and 4 steps, and an ensemble of 4;
  * the same pipeline in torch (``--threads`` threads) for reference;
  * GMAC per part (``models.flops``) at the padded size.

Writes ``speed.json`` into ``--out`` (default: the weights folder, where the model card reads it)
and prints the table. The graphs are exported into a temporary folder (torch needed for that).

    .venv/bin/python benchmarks/bench_completion_v2.py [--weights DIR] [--threads 2] [--repeats 20]

Measure on a quiet machine: the load average before and after is recorded in the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timing import median_ms  # noqa: E402 - benchmarks/timing.py, beside this script


def kitti_frame(shared: Path):
    """(rgb, sparse) of sequence frame 44 with 10 % of the points held out (the validation input)."""
    from training.datasets.kitti_raw import KittiRawSequence
    from training.evaluate import sample_frame

    rgb, sparse, _ = sample_frame(KittiRawSequence(shared / "kitti_raw_2011_09_26_sequence", frames=[44],
                                                   holdout_fraction=0.1, seed=0)[0])
    return rgb, sparse


def peer_rows(rgb, sparse, repeats: int) -> list[dict]:
    from training.kitti_completion import PEERS
    from training.evaluate import baseline_pipeline

    rows = []
    for label, (backend, options) in PEERS.items():
        fn = baseline_pipeline(backend, **options)
        rows.append({"what": label, "setting": "CompletionPipeline, numpy/OpenCV/scipy",
                     "ms": median_ms(lambda: fn(rgb, sparse), repeats)})
    return rows


def onnxruntime_rows(model, rgb, sparse, threads: int, repeats: int, export_dir: Path) -> list[dict]:
    import numpy as np

    from depth_diffusion_ros.export.diffusion_depth import export_diffusion_depth, unrolled_file_name
    from depth_diffusion_ros.inference import frames
    from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDiffusionDepthBackend
    from depth_diffusion_ros.inference.pipelines import CompletionPipeline

    H, W = (int(np.ceil(n / model.size_divisor)) * model.size_divisor for n in rgb.shape[:2])
    padded, _ = frames.pad_to_multiple(rgb, model.size_divisor)
    sp, _ = frames.pad_to_multiple(sparse, model.size_divisor)
    s_t, v_t = frames.sparse_to_tensor_layout(sp)
    inputs = {"rgb": frames.rgb_to_tensor_layout(padded), "sparse_depth": s_t, "valid_mask": v_t}
    rows = []
    names = tuple(model.config.external_priors)
    if names:  # the classical fills the pipeline computes beside the graphs
        from depth_diffusion_ros.inference.pipelines.common import classical_priors

        inputs["priors"] = classical_priors(names, sparse, model.size_divisor)
        rows.append({"what": "DiffusionDepth priors", "setting": f"classical fills {', '.join(names)}",
                     "ms": median_ms(lambda: classical_priors(names, sparse, model.size_divisor), repeats)})
    export_diffusion_depth(model, export_dir, H, W, forms=("step", "unrolled"), num_inference_steps=1, inputs=inputs)
    opts = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
    unrolled = OnnxRuntimeDiffusionDepthBackend(export_dir, num_inference_steps=1, export_form="unrolled", **opts)
    graph = unrolled.sampler_graph
    noise = frames.make_noise((1,) + unrolled.latent_shape(H, W), 0)
    feed = dict(inputs, noise=noise)
    rows.append({"what": "DiffusionDepth, ONNX Runtime", "setting": f"{unrolled_file_name(1, 1)} alone ({W}x{H}, priors given)",
                 "ms": median_ms(lambda: graph.run(feed), repeats)})
    pipe = CompletionPipeline(unrolled)
    rows.append({"what": "DiffusionDepth, ONNX Runtime", "setting": "CompletionPipeline, unrolled graph, 1 step",
                 "ms": median_ms(lambda: pipe(rgb, sparse), repeats)})
    for steps, ensemble in ((1, 1), (2, 1), (4, 1), (1, 4)):
        b = OnnxRuntimeDiffusionDepthBackend(export_dir, num_inference_steps=steps, ensemble_size=ensemble,
                                             export_form="step", **opts)
        p = CompletionPipeline(b)
        rows.append({"what": "DiffusionDepth, ONNX Runtime",
                     "setting": f"CompletionPipeline, step graphs, {steps} step{'s' if steps > 1 else ''}"
                                + (f", ensemble of {ensemble}" if ensemble > 1 else ""),
                     "ms": median_ms(lambda: p(rgb, sparse), max(3, repeats // ensemble))})
    return rows


def torch_rows(model, rgb, sparse, repeats: int) -> list[dict]:
    from depth_diffusion_ros.inference.backends.torch_backend import TorchDiffusionDepthBackend
    from depth_diffusion_ros.inference.pipelines import CompletionPipeline

    pipe = CompletionPipeline(TorchDiffusionDepthBackend(model=model, num_inference_steps=1))
    return [{"what": "DiffusionDepth, torch (eager)", "setting": "CompletionPipeline, 1 step",
             "ms": median_ms(lambda: pipe(rgb, sparse), max(3, repeats // 4))}]


def main(argv=None) -> int:
    import torch

    from depth_diffusion_ros.models.checkpoint import load_checkpoint
    from depth_diffusion_ros.models.flops import diffusion_depth_gmacs
    from training.completion_card import speed_table
    from training.kitti_completion import WEIGHTS, shared_data

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=str(WEIGHTS))
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op and torch threads")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", default=None, help="folder for speed.json (default: --weights)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    model = load_checkpoint(args.weights, architecture="diffusion_depth").eval()
    rgb, sparse = kitti_frame(shared_data())
    rows = peer_rows(rgb, sparse, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        rows += onnxruntime_rows(model, rgb, sparse, args.threads, args.repeats, Path(tmp))
    rows += torch_rows(model, rgb, sparse, args.repeats)
    H, W = (-(-n // model.size_divisor) * model.size_divisor for n in rgb.shape[:2])
    import onnxruntime

    speed = {"machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU; ONNX Runtime "
                        f"{onnxruntime.__version__}, torch {torch.__version__}, {args.threads} threads",
             "frame": f"KITTI sequence frame 44, {rgb.shape[1]}x{rgb.shape[0]} (padded {W}x{H})",
             "rows": rows, "gmacs": diffusion_depth_gmacs(model, H, W),
             "load_average_before": load_before, "load_average_after": os.getloadavg(),
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = Path(args.out or args.weights)
    (out / "speed.json").write_text(json.dumps(speed, indent=1))
    print(speed_table(speed))
    g = speed["gmacs"]
    print(f"\nGMAC at {W}x{H}: condition {g['encode_condition']:.2f}, denoiser {g['denoise_step']:.2f} per step, "
          f"decoder {g['decode']:.2f}; load average before {load_before[0]:.2f}, after {speed['load_average_after'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
