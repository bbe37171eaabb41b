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

    python -m training.evaluate --checkpoint depth_diffusion_ros/weights/diffusion_depth_kitti_demo \
        --data '{type: kitti_object, root: ../shared/data/kitti_object_kuixu, ids: ["000001"], gt_source: heldout}' \
        --protocol kitti_dc --steps 20
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from depth_diffusion_ros.evaluation.metrics import (
    depth_metrics,
    garg_crop_mask,
    kitti_eigen_crop_mask,
    mean_metrics,
    nyu_eigen_crop_mask,
    to_kitti_units,
)


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
    "kitti_eigen": Protocol("kitti_eigen", crop=garg_crop_mask, max_depth=80.0),
    "kitti_eigen_crop": Protocol("kitti_eigen_crop", crop=kitti_eigen_crop_mask, max_depth=80.0),
    "nyu_eigen": Protocol("nyu_eigen", crop=nyu_eigen_crop_mask, max_depth=10.0),
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
    m = depth_metrics(pred, gt, valid_mask=mask, min_depth=protocol.min_depth, max_depth=protocol.max_depth)
    return to_kitti_units(m) if protocol.kitti_units else m


def pad_batch(batch: Dict[str, torch.Tensor], divisor: int) -> tuple[Dict[str, torch.Tensor], tuple[int, int]]:
    """Pad rgb (replicate) and sparse inputs (zeros) at the bottom/right to multiples of
    ``divisor``. Returns (padded batch, (H, W) of the original) for cropping the output back."""
    h, w = batch["rgb"].shape[-2:]
    ph, pw = (-h) % divisor, (-w) % divisor
    if ph == 0 and pw == 0:
        return batch, (h, w)
    out = dict(batch)
    out["rgb"] = F.pad(batch["rgb"], (0, pw, 0, ph), mode="replicate")
    for k in ("sparse_depth", "valid_mask"):
        if k in batch and batch[k] is not None:
            out[k] = F.pad(batch[k], (0, pw, 0, ph))
    return out, (h, w)


@torch.no_grad()
def predict(model: torch.nn.Module, batch: Dict[str, torch.Tensor], num_inference_steps: Optional[int] = None,
            ensemble_size: int = 1, seed: int = 0, use_sparse: bool = True) -> torch.Tensor:
    """Depth (B, 1, H, W) metres from ``model.sample`` for a sample batch of any size.

    The batch is padded to ``model.size_divisor`` (when the model has one) and the prediction
    cropped back. Noise comes from a generator seeded with ``seed`` (reproducible scores).
    """
    divisor = int(getattr(model, "size_divisor", 1))
    device = next(model.parameters()).device
    padded, (h, w) = pad_batch({k: v for k, v in batch.items() if torch.is_tensor(v)}, divisor)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    kwargs: Dict[str, Any] = {"num_inference_steps": num_inference_steps, "ensemble_size": ensemble_size}
    B, _, H, W = padded["rgb"].shape
    if hasattr(model, "latent_shape"):
        shape = (B * ensemble_size,) + tuple(model.latent_shape(H, W))
        kwargs["noise"] = torch.randn(shape, generator=gen).to(device)
    sparse = padded.get("sparse_depth") if use_sparse else None
    valid = padded.get("valid_mask") if use_sparse else None
    out = model.sample(padded["rgb"].to(device), None if sparse is None else sparse.to(device),
                       None if valid is None else valid.to(device), **kwargs)
    depth = out[0] if isinstance(out, (tuple, list)) else out
    return depth[..., :h, :w].float().cpu()


def evaluate_model(model: torch.nn.Module, dataset, protocol: str = "kitti_dc",
                   num_inference_steps: Optional[int] = None, ensemble_size: int = 1,
                   max_frames: Optional[int] = None, seed: int = 0, use_sparse: bool = True,
                   figure_path: Optional[str | Path] = None) -> Dict[str, Any]:
    """Score ``model`` on every frame of ``dataset`` (one frame at a time, native size).

    Args:
        model: has ``sample(rgb, sparse_depth, valid_mask, ...)`` (DiffusionDepth API).
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
    n = len(dataset) if max_frames is None else min(len(dataset), int(max_frames))
    frames: List[Dict[str, Any]] = []
    seconds = 0.0
    fig = None
    try:
        for i in range(n):
            sample = dataset[i]
            batch = {k: v[None] for k, v in sample.items() if torch.is_tensor(v)}
            t0 = time.perf_counter()
            pred = predict(model, batch, num_inference_steps, ensemble_size, seed + i, use_sparse)[0, 0].numpy()
            seconds += time.perf_counter() - t0
            gt = sample["gt_depth"][0].numpy()
            name = dataset.sample_name(i) if hasattr(dataset, "sample_name") else str(i)
            frames.append({"name": name, **score_frame(pred, gt, proto)})
            if figure_path is not None and i == 0:
                from depth_diffusion_ros.evaluation.figures import error_figure

                rgb = (sample["rgb"].numpy().transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
                Path(figure_path).parent.mkdir(parents=True, exist_ok=True)
                error_figure(rgb, sample["sparse_depth"][0].numpy(), pred, gt, str(figure_path))
                fig = str(figure_path)
    finally:
        model.train(was_training)
    mean = mean_metrics([{k: v for k, v in f.items() if k != "name"} for f in frames])
    out: Dict[str, Any] = {"protocol": protocol, "n_frames": n, "mean": mean, "frames": frames,
                           "seconds_per_frame": seconds / max(1, n)}
    if fig:
        out["figure"] = fig
    return out


def evaluate_baseline(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], dataset, protocol: str = "kitti_dc",
                      max_frames: Optional[int] = None) -> Dict[str, Any]:
    """Score a numpy completion function ``fn(rgb uint8 (H,W,3), sparse (H,W) m) -> (H,W) m``
    (e.g. ``lambda rgb, s: ip_basic_complete(s)``) on the same frames/protocol as a model."""
    proto = get_protocol(protocol)
    n = len(dataset) if max_frames is None else min(len(dataset), int(max_frames))
    frames = []
    for i in range(n):
        sample = dataset[i]
        rgb = (sample["rgb"].numpy().transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
        pred = fn(rgb, sample["sparse_depth"][0].numpy())
        name = dataset.sample_name(i) if hasattr(dataset, "sample_name") else str(i)
        frames.append({"name": name, **score_frame(pred, sample["gt_depth"][0].numpy(), proto)})
    mean = mean_metrics([{k: v for k, v in f.items() if k != "name"} for f in frames])
    return {"protocol": protocol, "n_frames": n, "mean": mean, "frames": frames}


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

    from training.datasets import build_dataset

    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (model.safetensors + config.yaml)")
    p.add_argument("--data", required=True, help="dataset config as YAML/JSON text or a YAML file path")
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
    model = load_checkpoint(args.checkpoint)
    res = {"model": evaluate_model(model, dataset, args.protocol, args.steps, args.ensemble, args.max_frames,
                                   figure_path=args.figure)}
    if args.baselines:
        from depth_diffusion_ros.baselines import ip_basic_complete, nearest_fill

        res["ip_basic"] = evaluate_baseline(lambda rgb, s: ip_basic_complete(s), dataset, args.protocol, args.max_frames)
        res["nearest"] = evaluate_baseline(lambda rgb, s: nearest_fill(s), dataset, args.protocol, args.max_frames)
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
