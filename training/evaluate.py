"""Evaluation protocols for depth models and classical baselines (metrics from
``depth_diffusion_ros.evaluation.metrics`` only: the one metrics module).

Protocols:

* ``kitti_dc``: KITTI depth completion (Uhrig et al., 3DV 2017): every GT pixel, no crop, no
  cap; RMSE/MAE in mm and iRMSE/iMAE in 1/km (``to_kitti_units``).
* ``kitti_eigen``: KITTI Eigen split with the Garg crop (Garg et al., ECCV 2016) and the 80 m cap
  (GT in (1e-3, 80] m; predictions clipped to [1e-3, 80]) as in DiffusionDepth's KITTI table.
* ``kitti_eigen_crop``: the same with the Eigen crop (Eigen et al., NeurIPS 2014).
* ``nyu_eigen``: NYU-Depth-v2 Eigen crop (rows 45:471, cols 41:601) with the 10 m cap.

CLI::

    python -m training.evaluate --checkpoint depth_diffusion_ros/weights/diffusion_depth_kitti \
        --data '{type: kitti_object, root: ../shared/data/kitti_object_kuixu, ids: ["000001"], gt_source: heldout}' \
        --protocol kitti_dc --steps 20
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from depth_diffusion_ros.evaluation import metrics


@dataclass(frozen=True)
class Protocol:
    """How to score one frame: an optional crop mask, GT/prediction range, and units."""

    name: str
    crop: Optional[Callable[[int, int], np.ndarray]] = None
    min_depth: float = 1e-3
    max_depth: Optional[float] = None
    kitti_units: bool = False


PROTOCOLS: Dict[str, Protocol] = {
    "kitti_dc": Protocol("kitti_dc", kitti_units=True),
    "kitti_eigen": Protocol("kitti_eigen", crop=metrics.garg_crop_mask, max_depth=80.0),
    "kitti_eigen_crop": Protocol("kitti_eigen_crop", crop=metrics.kitti_eigen_crop_mask, max_depth=80.0),
    "nyu_eigen": Protocol("nyu_eigen", crop=metrics.nyu_eigen_crop_mask, max_depth=10.0),
}


def get_protocol(name: str) -> Protocol:
    """Raises ValueError listing the known protocols for an unknown name."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]


def score_frame(pred: np.ndarray, gt: np.ndarray, protocol: Protocol) -> Dict[str, float]:
    """Metrics of one (H, W) prediction against (H, W) GT (metres) under ``protocol``.

    Returns the ``depth_metrics`` dict, converted to KITTI units for ``kitti_dc``.
    Raises ValueError (from depth_metrics) when no GT pixel is valid.
    """
    h, w = gt.shape
    mask = protocol.crop(h, w) if protocol.crop is not None else None
    m = metrics.depth_metrics(pred, gt, valid_mask=mask, min_depth=protocol.min_depth, max_depth=protocol.max_depth)
    return metrics.to_kitti_units(m) if protocol.kitti_units else m


def sample_frame(sample: Dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb (H,W,3) uint8, sparse_depth (H,W) m, gt (H,W) m) of a dataset sample (tensors)."""
    rgb = (sample["rgb"].numpy().transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    return rgb, sample["sparse_depth"][0].numpy(), sample["gt_depth"][0].numpy()


class ModuleBackend:
    """A completion backend over any torch module with the trainer's evaluation API
    ``sample(rgb, sparse_depth, valid_mask) -> depth`` (B,1,H,W) metres and an optional
    ``size_divisor`` (training stand-ins and the DiffusionDepth regression ablation; a diffusion
    DiffusionDepth runs through its own backend). A model with ``config.external_priors`` gets
    those classical fills of the sparse depth as ``priors=``, as its backends give them."""

    name = "torch-module"

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.size_divisor = int(getattr(model, "size_divisor", 1))

    @torch.no_grad()
    def complete(self, rgb: np.ndarray, sparse_depth: np.ndarray) -> np.ndarray:
        from depth_diffusion_ros.inference import frames

        device = next(self.model.parameters()).device
        sparse, valid = frames.sparse_to_tensor_layout(sparse_depth)
        kwargs = {}
        names = tuple(getattr(getattr(self.model, "config", None), "external_priors", ()) or ())
        if names:
            from depth_diffusion_ros.baselines.fills import prior_fills

            kwargs["priors"] = torch.from_numpy(prior_fills(names, sparse_depth)[None]).to(device)
        depth = self.model.sample(*(torch.from_numpy(a).to(device)
                                    for a in (frames.rgb_to_tensor_layout(rgb), sparse, valid)), **kwargs)
        return depth[0, 0].float().cpu().numpy()


def model_pipeline(model: torch.nn.Module, num_inference_steps: Optional[int] = None, ensemble_size: int = 1,
                   seed: int = 0, use_sparse: bool = True) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``fn(rgb, sparse) -> depth`` running an in-memory model through the package's pipelines
    (the code a node runs: padding, seeded noise, DDIM loop, ensemble). A DiffusionDepth runs in
    :class:`~depth_diffusion_ros.inference.pipelines.CompletionPipeline`, or in
    :class:`~depth_diffusion_ros.inference.pipelines.EstimationPipeline` when ``use_sparse`` is
    False or the model is monocular; any other module through :class:`ModuleBackend`."""
    from depth_diffusion_ros.inference.backends.torch_backend import TorchDiffusionDepthBackend
    from depth_diffusion_ros.inference.pipelines import CompletionPipeline, EstimationPipeline
    from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth

    if not isinstance(model, DiffusionDepth) or model.config.regression:
        pipeline = CompletionPipeline(ModuleBackend(model))
        return lambda rgb, sparse: pipeline(rgb, sparse).depth
    backend = TorchDiffusionDepthBackend(model=model, num_inference_steps=num_inference_steps,
                                         ensemble_size=ensemble_size, seed=seed)
    if use_sparse and backend.mode == "completion":
        completion = CompletionPipeline(backend)
        return lambda rgb, sparse: completion(rgb, sparse).depth
    estimation = EstimationPipeline(backend)
    return lambda rgb, sparse: estimation(rgb).depth


def evaluate_model(model: torch.nn.Module, dataset, protocol: str = "kitti_dc",
                   num_inference_steps: Optional[int] = None, ensemble_size: int = 1,
                   max_frames: Optional[int] = None, seed: int = 0, use_sparse: bool = True,
                   figure_path: Optional[str | Path] = None) -> Dict[str, Any]:
    """Score ``model`` on every frame of ``dataset`` (one frame at a time, native size).

    Args:
        model: a DiffusionDepth (run through :func:`model_pipeline`; the initial noise is drawn
            from ``seed`` for every frame, as the nodes do).
        dataset: a training dataset (samples with rgb, sparse_depth, valid_mask, gt_depth).
        protocol: a key of :data:`PROTOCOLS`.
        figure_path: when given, an RGB | sparse | prediction | GT | error PNG of frame 0.

    Returns:
        {"protocol", "n_frames", "mean": mean metrics, "frames": [{"name", metrics...}],
         "seconds_per_frame"} (+ "figure" when written).
    """
    proto = get_protocol(protocol)
    was_training = model.training
    model.eval()
    fn = model_pipeline(model, num_inference_steps, ensemble_size, seed, use_sparse)
    n = len(dataset) if max_frames is None else min(len(dataset), int(max_frames))
    frames: List[Dict[str, Any]] = []
    seconds = 0.0
    fig = None
    try:
        for i in range(n):
            rgb, sparse, gt = sample_frame(dataset[i])
            t0 = time.perf_counter()
            pred = fn(rgb, sparse)
            seconds += time.perf_counter() - t0
            name = dataset.sample_name(i) if hasattr(dataset, "sample_name") else str(i)
            frames.append({"name": name, **score_frame(pred, gt, proto)})
            if figure_path is not None and i == 0:
                from depth_diffusion_ros.evaluation.figures import error_figure

                Path(figure_path).parent.mkdir(parents=True, exist_ok=True)
                error_figure(rgb, sparse, pred, gt, str(figure_path))
                fig = str(figure_path)
    finally:
        model.train(was_training)
    mean = metrics.mean_metrics([{k: v for k, v in f.items() if k != "name"} for f in frames])
    out: Dict[str, Any] = {"protocol": protocol, "n_frames": n, "mean": mean, "frames": frames,
                           "seconds_per_frame": seconds / max(1, n)}
    if fig:
        out["figure"] = fig
    return out


def evaluate_baseline(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], dataset, protocol: str = "kitti_dc",
                      max_frames: Optional[int] = None) -> Dict[str, Any]:
    """Score a numpy completion function ``fn(rgb uint8 (H,W,3), sparse (H,W) m) -> (H,W) m``
    (e.g. a classical pipeline, :func:`baseline_pipeline`) on the same frames/protocol as a model."""
    proto = get_protocol(protocol)
    n = len(dataset) if max_frames is None else min(len(dataset), int(max_frames))
    frames = []
    for i in range(n):
        rgb, sparse, gt = sample_frame(dataset[i])
        name = dataset.sample_name(i) if hasattr(dataset, "sample_name") else str(i)
        frames.append({"name": name, **score_frame(fn(rgb, sparse), gt, proto)})
    mean = metrics.mean_metrics([{k: v for k, v in f.items() if k != "name"} for f in frames])
    return {"protocol": protocol, "n_frames": n, "mean": mean, "frames": frames}


def baseline_pipeline(name: str, **options: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``fn(rgb, sparse) -> depth`` of a classical completion backend (``ip_basic``, ``nearest``)
    run through :class:`~depth_diffusion_ros.inference.pipelines.CompletionPipeline`."""
    from depth_diffusion_ros.inference.backends import make_completion_backend
    from depth_diffusion_ros.inference.pipelines import CompletionPipeline

    pipeline = CompletionPipeline(make_completion_backend(name, **options))
    return lambda rgb, sparse: pipeline(rgb, sparse).depth


def make_evaluator(dataset, protocol: str, num_inference_steps: Optional[int] = None, max_frames: Optional[int] = None,
                   figure_dir: Optional[str | Path] = None, key_metric_prefix: str = "") -> Callable:
    """An ``evaluator(model) -> flat dict of floats`` for :class:`training.trainer.Trainer`."""
    counter = {"n": 0}

    def evaluator(model):
        counter["n"] += 1
        fig = None if figure_dir is None else Path(figure_dir) / f"eval_{counter['n']:04d}.png"
        res = evaluate_model(model, dataset, protocol, num_inference_steps, max_frames=max_frames, figure_path=fig)
        flat: Dict[str, Any] = {f"{key_metric_prefix}{k}": float(v) for k, v in res["mean"].items()}
        flat["seconds_per_frame"] = res["seconds_per_frame"]
        if "figure" in res:
            flat["figure"] = res["figure"]
        return flat

    return evaluator


def main(argv: Optional[List[str]] = None) -> int:
    import yaml

    from depth_diffusion_ros.inference.backends.exported import DEFAULT_COMPLETION_CHECKPOINT
    from training.datasets import build_dataset

    shipped = Path(os.path.relpath(DEFAULT_COMPLETION_CHECKPOINT))  # the shipped default completion model
    p = argparse.ArgumentParser(
        prog="python -m training.evaluate", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example (the held-out KITTI object frame, against 10 % of its LiDAR points):\n"
               f"  python -m training.evaluate --checkpoint {shipped} \\\n"
               "      --data '{type: kitti_object, root: ../shared/data/kitti_object_kuixu, ids: [\"000001\"], "
               "gt_source: heldout, holdout_space: points}' \\\n      --protocol kitti_dc --baselines")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (model.safetensors + config.yaml)")
    p.add_argument("--data", required=True,
                   help="dataset config as YAML/JSON text or a YAML file path: {type: <a name in "
                        "training.datasets.DATASETS>, root: ..., ...} as in the training configs' data: entries")
    p.add_argument("--protocol", default="kitti_dc", choices=sorted(PROTOCOLS))
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the checkpoint's)")
    p.add_argument("--ensemble", type=int, default=1)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--figure", default=None, help="write an error figure of frame 0 here (PNG)")
    p.add_argument("--baselines", action="store_true", help="also score IP-Basic and nearest fill")
    p.add_argument("--json", default=None, help="write the full result here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from depth_diffusion_ros.models.checkpoint import load_checkpoint

    data_cfg = yaml.safe_load(Path(args.data).read_text()) if Path(args.data).is_file() else yaml.safe_load(args.data)
    dataset = build_dataset(data_cfg)
    model = load_checkpoint(args.checkpoint, architecture="diffusion_depth")
    res = {"model": evaluate_model(model, dataset, args.protocol, args.steps, args.ensemble, args.max_frames,
                                   figure_path=args.figure)}
    if args.baselines:
        for name in ("ip_basic", "nearest"):
            res[name] = evaluate_baseline(baseline_pipeline(name), dataset, args.protocol, args.max_frames)
    keys = ["rmse_mm", "mae_mm", "irmse_1_km", "imae_1_km"] if PROTOCOLS[args.protocol].kitti_units \
        else ["abs_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3"]
    print(f"{'method':<12} " + " ".join(f"{k:>11}" for k in keys) + "   frames")
    for name, r in res.items():
        print(f"{name:<12} " + " ".join(f"{r['mean'][k]:>11.4f}" for k in keys) + f"   {r['n_frames']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
