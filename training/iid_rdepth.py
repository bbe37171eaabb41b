"""IID-RDepth ablation: train the three rows (plain decoder on the frozen features, IID-RDepth,
IID-RDepth + AV-LFE) on the same frames with the same schedule, score them, time them, ship one.

    .venv/bin/python -m training.iid_rdepth --config training/configs/iid_rdepth_kitti_cpu.yaml \\
        --out runs/iid_rdepth --ship depth_diffusion_ros/weights/iid_rdepth_kitti
    .venv/bin/python -m training.iid_rdepth --config training/configs/iid_rdepth_kitti_cpu.yaml \\
        --out runs/iid_rdepth --skip-training --ship depth_diffusion_ros/weights/iid_rdepth_kitti  # rescore, ship
    .venv/bin/python -m training.iid_rdepth --config training/configs/iid_rdepth_kitti_cpu.yaml \\
        --out runs/iid_rdepth --timing-only --speed-out depth_diffusion_ros/weights/iid_rdepth_kitti/speed.json

Scoring is :func:`training.monocular.score_sets` (Eigen protocol, the monocular issue's
validation frames, the row-median reference) through the
:class:`~depth_diffusion_ros.inference.pipelines.EstimationPipeline` and the torch backend (the
code the node runs). The auxiliary view of a sequence frame is the previous frame (frame 0:
frame 1); the other validation frames (raw 0001/5, object 000001) have none, so there the AV-LFE
model runs on one image. The AV-LFE row is also scored with no auxiliary view at all.

Timing (``--timing-only`` reruns only it): median wall time per 1242x375 frame through the
pipeline (canonical size 621x188, padded to 640x192), 1 torch thread, written to JSON with the
machine's load average, so a number measured under load says so.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
import yaml

from depth_diffusion_ros.models.checkpoint import load_checkpoint, save_checkpoint
from depth_diffusion_ros.models.iid_rdepth import IIDRDepth
from depth_diffusion_ros.models.iid_rdepth_config import IIDRDepthConfig
from training.monocular import fit_row_median, frame_intrinsics, kitti_sets, kitti_training_frames, score_sets
from training.transforms import CanonicalFocal, RandomCrop, hflip

REPO = Path(__file__).resolve().parents[1]
ROWS = ("baseline", "iid_rdepth", "iid_rdepth_av_lfe")
#: DDIM step counts the IID-RDepth row is also scored at (its config's 3 is the main row).
STEP_ABLATION = (1, 5)


# ----------------------------------------------------------------------------- data
def previous_frame_paths(sequence_root: Path) -> Dict[int, Path]:
    """{frame number: image path of its auxiliary view} for the shared sequence: the previous
    frame (frame 0: frame 1)."""
    from training.datasets.kitti_raw import drive_frames

    paths = {f.extras["frame_index"]: Path(f.rgb) for f in drive_frames(sequence_root)}
    first = min(paths)
    return {n: paths[n - 1] if n - 1 in paths else paths[first + 1] for n in paths}


def sequence_aux(dataset: Any, sequence_root: Path) -> Callable[[int], Optional[np.ndarray]]:
    """frame index in ``dataset`` (a KittiRawSequence) -> its auxiliary view (H, W, 3) uint8."""
    from training.datasets.common import read_rgb

    aux = previous_frame_paths(sequence_root)
    return lambda i: read_rgb(aux[dataset.frames[i].extras["frame_index"]])


def training_frames(data: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The training frames at the canonical focal: {"rgb6": main | aux (H, W, 6) uint8,
    "gt_depth", "K", "aux": bool}; the object frame repeated ``object_repeat`` times."""
    from training.datasets.kitti import KittiObject
    from training.datasets.kitti_raw import KittiRawSequence

    seq_root = REPO / data["sequence_root"]
    seq = KittiRawSequence(seq_root, frames=data["sequence_frames"], gt_source="lidar", max_depth=88.0)
    obj = KittiObject(REPO / data["object_root"], ids=list(data["object_ids"]), gt_source="lidar", max_depth=88.0)
    aux = sequence_aux(seq, seq_root)
    canon = CanonicalFocal(float(data["canonical_focal"]))
    out = []
    for ds, has_aux, repeat in ((seq, True, 1), (obj, False, int(data["object_repeat"]))):
        for i in range(len(ds)):
            f = ds.load_frame(i)
            second = aux(i) if has_aux else f["rgb"]
            frame = canon({"rgb": f["rgb"], "gt_depth": f["gt_depth"], "sparse_depth": None, "K": f["K"]})
            second = canon({"rgb": second, "gt_depth": None, "sparse_depth": None, "K": f["K"]})["rgb"]
            rgb6 = np.concatenate([frame["rgb"], second], axis=2)  # crops and flips slice both views at once
            out += [{"rgb6": rgb6, "gt_depth": frame["gt_depth"], "K": frame["K"], "aux": has_aux}] * repeat
    return out


def batch(frames: List[Dict[str, Any]], data: Dict[str, Any], size: int, rng: np.random.Generator) -> Dict[str, Any]:
    """A random batch: crop (same window for both views) and horizontal flip (both views)."""
    crop = RandomCrop(data["crop"], vertical="random", vertical_range=(0.5, 1.0))
    rgbs, gts, auxs = [], [], []
    for k in rng.integers(0, len(frames), size):
        f = frames[int(k)]
        g = crop({"rgb": f["rgb6"], "gt_depth": f["gt_depth"], "sparse_depth": None, "K": f["K"]}, rng)
        if rng.random() < float(data["hflip"]):
            g = hflip(g)
        rgbs.append(g["rgb"])
        gts.append(g["gt_depth"])
        auxs.append(f["aux"])
    x = torch.from_numpy(np.stack(rgbs).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    return {"rgb": x[:, :3].contiguous(), "rgb_aux": x[:, 3:].contiguous(),
            "gt": torch.from_numpy(np.stack(gts)[:, None].astype(np.float32)),
            "aux_available": torch.tensor(auxs)}


# ----------------------------------------------------------------------------- training
def row_config(cfg: Dict[str, Any], row: str) -> IIDRDepthConfig:
    return IIDRDepthConfig.from_dict({**cfg["model"], **cfg["ablation"][row]})


def train_row(cfg: Dict[str, Any], row: str, frames: List[Dict[str, Any]], out: Path) -> Path:
    """Train one row; returns its checkpoint directory (``out/<row>/final``)."""
    tr, data = cfg["train"], cfg["data"]
    torch.manual_seed(int(tr["seed"]))
    rng = np.random.default_rng(int(tr["seed"]))
    gen = torch.Generator().manual_seed(int(tr["seed"]))
    model = IIDRDepth(row_config(cfg, row)).train()
    opt = torch.optim.Adam(model.trainable_parameters(), lr=float(tr["lr"]))
    steps = int(tr["steps"])
    milestones = [int(m * steps) for m in tr["lr_milestones"]]
    t0 = time.time()
    log = []
    for step in range(steps):
        factor = ([1.0] + [f for m, f in zip(milestones, tr["lr_factors"]) if step >= m])[-1]
        for group in opt.param_groups:
            group["lr"] = float(tr["lr"]) * factor
        b = batch(frames, data, int(tr["batch_size"]), rng)
        losses = model.training_loss(b["rgb"], b["gt"], b["rgb_aux"], b["aux_available"], generator=gen)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), float(tr["grad_clip"]))
        opt.step()
        if step % int(tr["log_every"]) == 0 or step == steps - 1:
            entry = {"step": step, "loss": round(float(losses["loss"]), 4), "silog": round(float(losses["silog"]), 4),
                     "lr": float(tr["lr"]) * factor, "minutes": round((time.time() - t0) / 60.0, 2)}
            log.append(entry)
            print(f"[{row}] {json.dumps(entry)}", flush=True)
    minutes = (time.time() - t0) / 60.0
    ckpt = save_checkpoint(model.eval(), out / row / "final", metadata={
        "training": json.dumps({"steps": steps, "minutes": round(minutes, 1), "batch_size": tr["batch_size"],
                                "seed": tr["seed"], "torch_threads": torch.get_num_threads()})})
    (out / row / "log.json").write_text(json.dumps(log, indent=1) + "\n")
    return ckpt


# ----------------------------------------------------------------------------- scoring and timing
def predictor(checkpoint: Path, num_inference_steps: Optional[int] = None) -> tuple[Callable[..., np.ndarray], Any]:
    """(predict(rgb, intrinsics, aux=None) -> depth at the input size, the pipeline) of a checkpoint."""
    from depth_diffusion_ros.inference.backends.torch_backend import TorchDiffusionDepthBackend
    from depth_diffusion_ros.inference.pipelines import EstimationPipeline

    backend = TorchDiffusionDepthBackend(model_path=checkpoint, num_inference_steps=num_inference_steps)
    pipeline = EstimationPipeline(backend, resize_back=True)
    return (lambda rgb, intr, aux=None: pipeline(rgb, intr, rgb_aux=aux).depth), pipeline


def score_rows(checkpoints: Dict[str, Path], data: Dict[str, Any]) -> Dict[str, Any]:
    """{row: score_sets output} for the reference, every row (with the auxiliary views of the
    sequence sets), the AV-LFE row without any auxiliary view and the IID-RDepth row at the
    :data:`STEP_ABLATION` step counts."""
    sets = kitti_sets()
    seq_root = REPO / data["sequence_root"]
    aux = {name: sequence_aux(sets[name], seq_root) for name in ("sequence val", "sequence static")}
    reference = fit_row_median(kitti_training_frames())
    scores = {"row-median reference": score_sets(lambda rgb, intr: reference.predict(intr), sets)}
    for row, path in checkpoints.items():
        predict, pipeline = predictor(path)
        scores[row] = score_sets(predict, sets, aux_views=aux)
        if pipeline.uses_aux:
            scores[row + " (no image_aux)"] = score_sets(predict, sets)
        if row == "iid_rdepth":
            for n in STEP_ABLATION:
                scores[f"{row} ({n} steps)"] = score_sets(predictor(path, n)[0], sets, aux_views=aux)
        print(f"{row}: validation abs_rel {scores[row]['validation']['mean']['abs_rel']:.3f}", flush=True)
    return scores


def time_rows(checkpoints: Dict[str, Path], data: Dict[str, Any], repeats: int = 5) -> Dict[str, Any]:
    """{row: {"ms", "ms_no_aux"?, "parameters"}} on sequence frame 44 (1242x375) and its
    previous frame; median of ``repeats`` after one warm-up."""
    from training.datasets.kitti_raw import KittiRawSequence

    seq_root = REPO / data["sequence_root"]
    ds = KittiRawSequence(seq_root, frames=[44], gt_source="none")
    f = ds.load_frame(0)
    rgb, intr, aux = f["rgb"], frame_intrinsics(f), sequence_aux(ds, seq_root)(0)
    out: Dict[str, Any] = {"frame": f"{rgb.shape[1]}x{rgb.shape[0]}", "torch_threads": torch.get_num_threads(),
                           "load_average_1min": os.getloadavg()[0], "cpu_count": os.cpu_count(),
                           "machine": platform.processor() or platform.machine(),
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": {}}
    for row, path in checkpoints.items():
        predict, pipeline = predictor(path)
        entry: Dict[str, Any] = {"parameters": load_checkpoint(path).parameter_counts()}
        for key, a in (("ms", aux), ("ms_no_aux", None)) if pipeline.uses_aux else (("ms", None),):
            predict(rgb, intr, a)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                predict(rgb, intr, a)
                times.append((time.perf_counter() - t0) * 1000.0)
            entry[key] = round(float(np.median(times)), 1)
        out["rows"][row] = entry
    out["load_average_1min_after"] = os.getloadavg()[0]
    return out


def ship(checkpoint: Path, dest: Path, results: Dict[str, Any], config_path: Path) -> None:
    """Copy the chosen checkpoint to ``dest`` with results.json, the training config and its
    step-form ONNX export at 640x192 (``onnx/``, parity-checked on the real KITTI raw frame by
    :func:`training.monocular_card.export_onnx`)."""
    from training.monocular_card import export_onnx

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.yaml"):
        shutil.copy2(checkpoint / name, dest / name)
    (dest / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    shutil.copy2(config_path, dest / "training_config.yaml")
    if (dest / "onnx").exists():
        shutil.rmtree(dest / "onnx")
    print(f"ONNX export: {export_onnx(dest, dest / 'onnx')}", flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.iid_rdepth", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True, help="run folder: <row>/final checkpoints, results.json")
    p.add_argument("--rows", nargs="*", default=list(ROWS), help=f"subset of {ROWS}")
    p.add_argument("--skip-training", action="store_true", help="score the checkpoints already in --out")
    p.add_argument("--timing-only", action="store_true", help="only the timing (--speed-out)")
    p.add_argument("--speed-out", default=None, help="timing JSON (default <out>/speed.json)")
    p.add_argument("--ship", default=None, help="copy the config's `ship` row here with results.json")
    args = p.parse_args(argv)
    cfg = yaml.safe_load(Path(args.config).read_text())
    torch.set_num_threads(int(cfg["train"]["threads"]))
    out = Path(args.out)
    checkpoints = {row: out / row / "final" for row in args.rows}
    speed_out = Path(args.speed_out) if args.speed_out else out / "speed.json"
    if not args.timing_only:
        if not args.skip_training:
            frames = training_frames(cfg["data"])
            for row in args.rows:
                train_row(cfg, row, frames, out)
        results = {"config": copy.deepcopy(cfg), "protocol": "kitti_eigen", "aux_view": "previous sequence frame",
                   "scores": score_rows(checkpoints, cfg["data"]),
                   "training": {row: json.loads(load_checkpoint_meta(path)) for row, path in checkpoints.items()}}
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        if args.ship:
            ship(checkpoints[cfg["ship"]], Path(args.ship), results, Path(args.config))
    speed = time_rows(checkpoints, cfg["data"])
    speed_out.parent.mkdir(parents=True, exist_ok=True)
    speed_out.write_text(json.dumps(speed, indent=2) + "\n")
    if args.ship and not args.timing_only:
        from training.iid_rdepth_card import write_card

        shutil.copy2(speed_out, Path(args.ship) / "speed.json")
        print(write_card(Path(args.ship)))
    print(json.dumps(speed, indent=1))
    return 0


def load_checkpoint_meta(path: Path) -> str:
    """The ``training`` metadata entry of a checkpoint (JSON text)."""
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        return (f.metadata() or {}).get("training", "{}")


if __name__ == "__main__":
    sys.exit(main())
