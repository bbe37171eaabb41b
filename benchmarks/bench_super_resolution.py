"""Colour-guided depth super-resolution: the shipped DSR-Diff weights (through ONNX Runtime) vs
guided filter, joint bilateral and bicubic upsampling, per scale, dataset and degradation, on
frames the weights were NOT trained on; and the latency at 640x480 x8.

Frames (../shared/data): SUN3D frames 40-49 of both fragments (20 frames; training used 0-37,
38-39 are a gap), NYU-Depth-v2 ``rgb_00100`` (training used rgb_00000 and rgb_00050), Middlebury
2014 Motorcycle (scikit-image's 4x downsampled copy) columns 60-100 % (training used 0-60 %),
cropped to a multiple of 64. Degradations (:mod:`depth_diffusion_ros.geometry.degradation`,
seeded per frame, scale and kind): ``bicubic`` (the CDSR protocol), ``block`` (binning),
``noisy`` (bicubic + 2x Kinect z^2 noise, mm steps), ``sensor`` (block + Kinect noise +
disparity steps + holes at edges / dark and shiny colour / blobs). Every method gets the same LR
map (0 = hole). RMSE in centimetres (:func:`depth_diffusion_ros.evaluation.metrics.depth_metrics`)
over the same pixels for every method: valid GT, an LR measurement nearby (bilinear LR validity
>= 0.5) and a prediction from every method; for SUN3D the mean of the 20 per-frame RMSEs.

Latency: median wall time of :class:`SuperResolutionPipeline` per frame (hole filling, padding,
the model, cropping) on the NYU frame at x8 (640x480 out): DSR-Diff through ONNX Runtime with
``--threads`` intra-op threads and through PyTorch with the same thread count; the classical
methods. The 1-minute load average is recorded: numbers taken while other jobs run are slower.

Run (writes the JSON the README block and the model card are generated from):
    .venv/bin/python benchmarks/bench_super_resolution.py [--threads 2] [--runs 10]
        [--model-path depth_diffusion_ros/weights/dsr_diff_demo] [--json PATH]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from depth_diffusion_ros.evaluation.metrics import depth_metrics  # noqa: E402
from depth_diffusion_ros.geometry.degradation import DEGRADATIONS, degrade_depth  # noqa: E402
from depth_diffusion_ros.inference.backends import make_super_resolution_backend  # noqa: E402
from depth_diffusion_ros.inference.pipelines import SuperResolutionPipeline  # noqa: E402

from timing import median_ms  # noqa: E402 - benchmarks/timing.py, beside this script

WEIGHTS = REPO / "depth_diffusion_ros" / "weights" / "dsr_diff_demo"
SCALES = (2, 4, 8, 16)
#: scales the acceptance verdicts are taken at (the issue's x4, x8, x16)
VERDICT_SCALES = (4, 8, 16)
LEARNED = "dsr_diff"
CLASSICAL = ("guided_filter", "joint_bilateral", "bicubic")


def held_out_frames(data: Path) -> dict:
    """dataset -> [(name, rgb (H,W,3) uint8, gt (H,W) m)], H and W multiples of 64 (Middlebury cropped)."""
    from training.datasets.sr_datasets import SUN3D_HELD_OUT_FRAMES, MiddleburyStereo, nyu_frames, sun3d_sr_frames

    sun = sun3d_sr_frames(data / "sun3d_rgbd_3dmatch", SUN3D_HELD_OUT_FRAMES)
    out = {"SUN3D": [(sun.sample_name(i), sun.load_frame(i)["rgb"], sun.load_frame(i)["gt_depth"])
                     for i in range(len(sun))]}
    f = nyu_frames(data / "nyu_depth_v2_metric3d", names=["rgb_00100"]).load_frame(0)
    out["NYU"] = [("rgb_00100", f["rgb"], f["gt_depth"])]
    m = MiddleburyStereo(data / "middlebury2014_motorcycle_skimage", column_range=(0.6, 1.0)).load_frame(0)
    h, w = m["gt_depth"].shape
    H, W = h - h % 64, w - w % 64
    out["Midd"] = [("motorcycle_right40", np.ascontiguousarray(m["rgb"][:H, :W]),
                    np.ascontiguousarray(m["gt_depth"][:H, :W]))]
    return out


def support_mask(lr: np.ndarray, shape: tuple) -> np.ndarray:
    """HR pixels with an LR measurement nearby (bilinear LR validity >= 0.5)."""
    up = cv2.resize((lr > 0).astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return up >= 0.5


def learned_pipelines(model_path: Path, sizes: set, threads: int, cache: Path) -> dict:
    """(H, W) -> SuperResolutionPipeline over the ONNX export of ``model_path`` for that size
    (all :data:`SCALES`), exported once into ``cache`` (:func:`tools.onnx_cache.sr_onnx_export_for`)."""
    from depth_diffusion_ros.tools.onnx_cache import sr_onnx_export_for

    out = {}
    for h, w in sorted(sizes):
        folder, reused = sr_onnx_export_for(model_path, cache, h, w, SCALES,
                                            on_export=lambda t: print(f"exporting to {t} ...", flush=True))
        backend = make_super_resolution_backend("onnxruntime", model_path=str(folder), intra_op_num_threads=threads)
        out[(h, w)] = SuperResolutionPipeline(backend)
    return out


def score(model_path: Path, frames: dict, threads: int, cache: Path) -> dict:
    """results[degradation][dataset][scale][method] = {"rmse_cm", "mae_cm", "delta1", "n_valid"}."""
    classical = {n: SuperResolutionPipeline(make_super_resolution_backend(n)) for n in CLASSICAL}
    sizes = {gt.shape for items in frames.values() for _, _, gt in items}
    learned = learned_pipelines(model_path, sizes, threads, cache)
    results: dict = {}
    for ki, kind in enumerate(DEGRADATIONS):
        for dataset, items in frames.items():
            for s in SCALES:
                per: dict = {m: [] for m in (LEARNED, *CLASSICAL)}
                for fi, (_, rgb, gt) in enumerate(items):
                    lr = degrade_depth(gt, rgb, s, kind, np.random.default_rng([fi, s, ki]))
                    preds = {LEARNED: learned[gt.shape](rgb, lr).depth}
                    preds.update({n: p(rgb, lr).depth for n, p in classical.items()})
                    mask = (gt > 0) & support_mask(lr, gt.shape)
                    for pred in preds.values():
                        mask &= np.isfinite(pred) & (pred > 0)
                    for name, pred in preds.items():
                        per[name].append(depth_metrics(pred, gt, mask))
                cell = results.setdefault(kind, {}).setdefault(dataset, {}).setdefault(str(s), {})
                for name, ms in per.items():
                    cell[name] = {"rmse_cm": float(np.mean([m["rmse"] for m in ms]) * 100.0),
                                  "mae_cm": float(np.mean([m["mae"] for m in ms]) * 100.0),
                                  "delta1": float(np.mean([m["delta1"] for m in ms])),
                                  "n_valid": int(sum(m["n_valid"] for m in ms))}
            print(f"scored {kind} / {dataset}", flush=True)
    return results


def verdicts(results: dict) -> dict:
    """The acceptance checks: DSR-Diff RMSE below every classical method at every verdict scale,
    dataset and degradation; and <= 0.8x joint bilateral at x8."""
    beats, ratio = [], []
    for kind, by_ds in results.items():
        for dataset, by_s in by_ds.items():
            for s in VERDICT_SCALES:
                cell = by_s[str(s)]
                ok = all(cell[LEARNED]["rmse_cm"] < cell[c]["rmse_cm"] for c in CLASSICAL)
                beats.append({"degradation": kind, "dataset": dataset, "scale": s, "beats_all": ok})
                if s == 8:
                    r = cell[LEARNED]["rmse_cm"] / cell["joint_bilateral"]["rmse_cm"]
                    ratio.append({"degradation": kind, "dataset": dataset, "ratio_to_jbu": r})
    return {"beats_all_classical": beats, "x8_ratio_to_joint_bilateral": ratio,
            "all_beat": all(b["beats_all"] for b in beats), "all_x8_within_0.8": all(r["ratio_to_jbu"] <= 0.8 for r in ratio)}


def timing(model_path: Path, frames: dict, threads: int, runs: int, cache: Path) -> dict:
    """ms per 640x480 x8 frame (median of ``runs`` after a warm-up) per method and runtime."""
    import torch

    _, rgb, gt = frames["NYU"][0]
    lr = degrade_depth(gt, rgb, 8, "bicubic")
    out = {"load_average_1min_before": os.getloadavg()[0]}
    ort_pipe = learned_pipelines(model_path, {gt.shape}, threads, cache)[gt.shape]
    out[f"{LEARNED} onnxruntime ({threads} threads)"] = median_ms(lambda: ort_pipe(rgb, lr), runs)
    torch.set_num_threads(threads)
    torch_pipe = SuperResolutionPipeline(make_super_resolution_backend("torch", model_path=str(model_path)))
    out[f"{LEARNED} torch ({threads} threads)"] = median_ms(lambda: torch_pipe(rgb, lr), runs)
    for name in CLASSICAL:
        p = SuperResolutionPipeline(make_super_resolution_backend(name))
        out[name] = median_ms(lambda p=p: p(rgb, lr), runs)
    out["load_average_1min_after"] = os.getloadavg()[0]
    return out


def print_tables(report: dict) -> None:
    results = report["results"]
    for kind, by_ds in results.items():
        print(f"\n# {kind}: RMSE (cm), held-out frames")
        cols = [(d, s) for d in by_ds for s in SCALES]
        print("| method | " + " | ".join(f"{d} x{s}" for d, s in cols) + " |")
        print("|" + "---|" * (len(cols) + 1))
        for m in (LEARNED, *CLASSICAL):
            print(f"| {m} | " + " | ".join(f"{by_ds[d][str(s)][m]['rmse_cm']:.2f}" for d, s in cols) + " |")
    print("\n# ms per frame, 640x480 x8 (NYU rgb_00100)")
    for k, v in report["timing"].items():
        print(f"{k}: {v:.1f}" if isinstance(v, float) else f"{k}: {v}")
    v = report["verdicts"]
    print(f"\nbeats guided filter, joint bilateral and bicubic everywhere (x4, x8, x16): {v['all_beat']}")
    for b in v["beats_all_classical"]:
        if not b["beats_all"]:
            print(f"  not at {b['degradation']} / {b['dataset']} x{b['scale']}")
    print(f"x8 RMSE <= 0.8 x joint bilateral everywhere: {v['all_x8_within_0.8']}")
    for r in v["x8_ratio_to_joint_bilateral"]:
        print(f"  {r['degradation']} / {r['dataset']}: {r['ratio_to_jbu']:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--model-path", default=str(WEIGHTS), help="DSR-Diff checkpoint (default: the shipped weights)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per method (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op / torch threads")
    parser.add_argument("--cache", default=None, help="ONNX export cache (default: tools.onnx_cache.default_cache_dir())")
    parser.add_argument("--json", default=str(WEIGHTS / "results.json"), help="where the results go")
    parser.add_argument("--timing-only", action="store_true", help="rerun the latency and keep the JSON's accuracy")
    args = parser.parse_args()

    from depth_diffusion_ros.tools.onnx_cache import checkpoint_sha256, default_cache_dir

    model_path, cache = Path(args.model_path), Path(args.cache) if args.cache else default_cache_dir()
    frames = held_out_frames(Path(args.data))
    t0 = time.time()
    if args.timing_only:
        report = json.loads(Path(args.json).read_text())
    else:
        results = score(model_path, frames, args.threads, cache)
        report = {"results": results, "verdicts": verdicts(results), "scales": list(SCALES),
                  "degradations": list(DEGRADATIONS),
                  "frames": {d: [n for n, _, _ in items] for d, items in frames.items()},
                  "pixels": {d: f"{items[0][2].shape[1]}x{items[0][2].shape[0]}" for d, items in frames.items()},
                  "score_wall_s": round(time.time() - t0, 1)}
    report["timing"] = timing(model_path, frames, args.threads, args.runs, cache)
    report["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                         "date": dt.date.today().isoformat(), "threads": args.threads}
    report["model_sha256"] = checkpoint_sha256(model_path)
    print_tables(report)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
