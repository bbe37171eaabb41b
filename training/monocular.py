"""Score monocular depth models on the held-out KITTI frames, against the row-median reference.

    .venv/bin/python -m training.monocular --model "DiffusionDepth=runs/kitti_monocular_diffusion/final" \\
        --model "DenseNet-169=runs/densedepth_kitti_169/final" --out runs/monocular_scores.json

Every model runs through :class:`~depth_diffusion_ros.inference.pipelines.EstimationPipeline`
(the code the ``depth_estimation_node`` runs: the canonical focal length stored with the
weights, padding, seeded DDIM noise), output at the input size, scored under the Eigen protocol
(Garg crop, 80 m cap; :data:`training.evaluate.PROTOCOLS` ``kitti_eigen``) against:

* ``sequence val``: frames 44-51 of the shared KITTI raw sequence (never trained on;
  :data:`training.datasets.kitti_raw.SEQUENCE_SPLIT`), every projected LiDAR point as ground truth;
* ``raw 0001/5``: KITTI raw drive 0001 frame 5 camera 2 with its KITTI depth-completion ground truth;
* ``object 000001``: KITTI object frame 000001, every projected LiDAR point as ground truth;
* ``sequence static``: frames 52-65 (the ego car stopped; never trained on), reported on its own.

``validation`` is the mean over every frame of the first three sets (10 frames, each weighing
the same: the usual per-image average), ``validation_sets`` the mean of their three set means
(each set weighing the same: the two frames of other drives count as much as the 8 sequence
frames, a harder test of generalisation). The
row-median reference (:class:`~depth_diffusion_ros.baselines.row_median.RowMedianDepth`) is fitted
on the training frames (sequence 0-39 and object 000000, all LiDAR points).

``--indoor``: the three NYU Depth V2 frames of ``../shared/data/nyu_depth_v2_metric3d`` (never
trained on) under the NYU Eigen crop with a 10 m cap, the reference fitted on the SUN3D training
frames (``sun3d_rgbd_3dmatch``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from depth_diffusion_ros.baselines.row_median import RowMedianDepth
from depth_diffusion_ros.evaluation import metrics
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from training.evaluate import get_protocol, score_frame

REPO = Path(__file__).resolve().parents[1]
VALIDATION_SETS = ("sequence val", "raw 0001/5", "object 000001", "nyu")
KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")
Predict = Callable[[np.ndarray, Intrinsics], np.ndarray]


def shared_data() -> Path:
    """``$DDR_SHARED_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("DDR_SHARED_DATA", REPO.parent / "shared" / "data"))


def kitti_sets(shared: Optional[Path] = None) -> Dict[str, Any]:
    """{set name: dataset} of the scored KITTI frames (module docstring), GT at native size."""
    from training.datasets.kitti import KittiFileList, KittiObject, torch_kitti_frames
    from training.datasets.kitti_raw import KittiRawSequence

    shared = shared or shared_data()
    seq = shared / "kitti_raw_2011_09_26_sequence"
    return {
        "sequence val": KittiRawSequence(seq, frames="val", gt_source="lidar"),
        "raw 0001/5": KittiFileList(torch_kitti_frames(shared / "kitti_raw_depth_completion_torch_kitti", cameras=[2])),
        "object 000001": KittiObject(shared / "kitti_object_kuixu", ids=["000001"], gt_source="lidar"),
        "sequence static": KittiRawSequence(seq, frames="static", gt_source="lidar"),
    }


def kitti_training_frames(shared: Optional[Path] = None) -> List[Any]:
    """The monocular models' training frames (sequence 0-39, object 000000), all LiDAR points as GT."""
    from training.datasets.kitti import KittiObject
    from training.datasets.kitti_raw import KittiRawSequence

    shared = shared or shared_data()
    return [KittiRawSequence(shared / "kitti_raw_2011_09_26_sequence", frames="train", gt_source="lidar"),
            KittiObject(shared / "kitti_object_kuixu", ids=["000000"], gt_source="lidar")]


def indoor_sets(shared: Optional[Path] = None) -> Dict[str, Any]:
    """{"nyu": the 3 NYU Depth V2 frames (Metric3D's annotations: their intrinsics)}."""
    from training.datasets.nyu import NyuFileList

    return {"nyu": NyuFileList.from_annotations((shared or shared_data()) / "nyu_depth_v2_metric3d")}


def indoor_training_frames(shared: Optional[Path] = None) -> List[Any]:
    """The indoor model's training frames: the 100 SUN3D frames."""
    from training.datasets.sun3d import sun3d_frames

    return [sun3d_frames((shared or shared_data()) / "sun3d_rgbd_3dmatch")]


def frame_intrinsics(frame: Dict[str, Any]) -> Intrinsics:
    """Intrinsics of a dataset frame (its K at the rgb's size)."""
    h, w = frame["rgb"].shape[:2]
    return Intrinsics.from_matrix(np.asarray(frame["K"]), w, h)


def fit_row_median(datasets: List[Any]) -> RowMedianDepth:
    """The row-median reference of the frames of ``datasets`` (their ``gt_depth``)."""
    pairs = []
    for ds in datasets:
        for i in range(len(ds)):
            f = ds.load_frame(i)
            pairs.append((f["gt_depth"], frame_intrinsics(f)))
    return RowMedianDepth.fit(pairs)


def model_predictor(checkpoint: Path, num_inference_steps: Optional[int] = None, ensemble_size: int = 1,
                    canonical_focal: Optional[float] = None) -> tuple[Predict, Any]:
    """(``predict(rgb, intrinsics) -> depth`` at the input size, the pipeline) of a checkpoint:
    the node's backends (a DiffusionDepth-family one, or for DenseDepth the one-shot
    :class:`~depth_diffusion_ros.inference.backends.torch_backend.TorchDenseDepthBackend`)."""
    from depth_diffusion_ros.inference.backends.torch_backend import TorchDenseDepthBackend, TorchDiffusionDepthBackend
    from depth_diffusion_ros.inference.pipelines import EstimationPipeline
    from depth_diffusion_ros.models.checkpoint import DIFFUSION_DEPTH_ARCHITECTURES, architecture_of, load_checkpoint

    model = load_checkpoint(checkpoint)
    if architecture_of(model) in DIFFUSION_DEPTH_ARCHITECTURES:  # DiffusionDepth, IID-RDepth: the seeded sampler
        backend: Any = TorchDiffusionDepthBackend(model=model, num_inference_steps=num_inference_steps,
                                                  ensemble_size=ensemble_size)
    else:  # DenseDepth: one pass, no steps or ensemble
        backend = TorchDenseDepthBackend(model=model.eval())
    pipeline = EstimationPipeline(backend, resize_back=True, canonical_focal=canonical_focal)
    return (lambda rgb, intr: pipeline(rgb, intr).depth), pipeline


def score_sets(predict: Predict, sets: Dict[str, Any], protocol: str = "kitti_eigen",
               keep: Optional[Dict[str, np.ndarray]] = None,
               aux_views: Optional[Dict[str, Callable[[int], Optional[np.ndarray]]]] = None) -> Dict[str, Any]:
    """{set: {"mean": metrics, "n_frames"}, "validation": the mean over every frame of the
    VALIDATION_SETS, "validation_sets": the mean of their set means} of ``predict``.
    ``keep``: filled with {set name: the prediction of its first frame} (for figures).
    ``aux_views``: {set name: frame index -> auxiliary view or None}; for those sets ``predict``
    is called as ``predict(rgb, intrinsics, aux)`` (IID-RDepth's AV-LFE)."""
    proto = get_protocol(protocol)
    out: Dict[str, Any] = {}
    every: List[Dict[str, float]] = []
    for name, ds in sets.items():
        frames = []
        for i in range(len(ds)):
            f = ds.load_frame(i)
            if aux_views and name in aux_views:
                pred = predict(f["rgb"], frame_intrinsics(f), aux_views[name](i))  # type: ignore[call-arg]
            else:
                pred = predict(f["rgb"], frame_intrinsics(f))
            if keep is not None and i == 0:
                keep[name] = pred
            frames.append(score_frame(pred, f["gt_depth"], proto))
        out[name] = {"mean": metrics.mean_metrics(frames), "n_frames": len(frames)}
        if name in VALIDATION_SETS:
            every += frames
    present = [n for n in VALIDATION_SETS if n in out]
    if present:
        out["validation"] = {"mean": metrics.mean_metrics(every), "n_frames": len(every), "sets": present}
        out["validation_sets"] = {"mean": {k: float(np.mean([out[n]["mean"][k] for n in present])) for k in KEYS},
                                  "sets": present}
    return out


def time_frame(predict: Predict, rgb: np.ndarray, intrinsics: Intrinsics, repeats: int = 3) -> float:
    """Median wall time (ms) of ``predict`` on one frame, after one warm-up call."""
    predict(rgb, intrinsics)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(rgb, intrinsics)
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(statistics.median(times))


def cost(checkpoint: Path, rgb: np.ndarray, intrinsics: Intrinsics, steps: tuple[int, ...] = (1, 2, 5)) -> Dict[str, Any]:
    """GMAC and CPU time per frame of a model on one ``rgb`` frame: through the pipeline (at the
    canonical size) for each of ``steps`` DDIM steps (one-shot models: one entry), and the
    network at the frame's own size (canonical focal off)."""
    from depth_diffusion_ros.inference.pipelines.estimation import canonical_size
    from depth_diffusion_ros.models.flops import count_gmacs

    out: Dict[str, Any] = {"frame": f"{rgb.shape[1]}x{rgb.shape[0]}", "steps": {}}
    predict, pipeline = model_predictor(checkpoint)
    one_shot = not hasattr(pipeline.backend, "num_inference_steps")
    for n in ((1,) if one_shot else steps):
        predict, pipeline = model_predictor(checkpoint, num_inference_steps=None if one_shot else n)
        out["steps"][str(n)] = {"gmac": round(count_gmacs(predict, rgb, intrinsics), 2),
                                "ms": round(time_frame(predict, rgb, intrinsics), 1)}
    full, _ = model_predictor(checkpoint, num_inference_steps=None if one_shot else 1, canonical_focal=0.0)
    out["gmac_full_size_1_step"] = round(count_gmacs(full, rgb, intrinsics), 2)
    w, h = canonical_size(intrinsics, pipeline.canonical_focal) if pipeline.canonical_focal else \
        (rgb.shape[1], rgb.shape[0])
    out["processing_size"] = f"{w}x{h}"
    return out


def markdown_table(scores: Dict[str, Dict[str, Any]], set_name: str = "validation") -> str:
    """A markdown table of ``scores`` ({row: score_sets output}) on one set."""
    lines = ["| model | " + " | ".join(KEYS) + " |", "|---|" + "---:|" * len(KEYS)]
    for row, s in scores.items():
        m = s[set_name]["mean"]
        lines.append(f"| {row} | " + " | ".join(f"{m[k]:.3f}" for k in KEYS) + " |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.monocular", description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT",
                   help="a monocular checkpoint to score (repeatable)")
    p.add_argument("--out", required=True, help="JSON file for the scores (and costs)")
    p.add_argument("--cost", action="store_true", help="also GMAC and CPU time per 1242x375 frame (1, 2, 5 steps)")
    p.add_argument("--figure", default=None, help="PNG: image | each model | ground truth on the first 'raw 0001/5' "
                                                  "(indoor: NYU) frame")
    p.add_argument("--save-reference", default=None,
                   help="write the fitted row-median reference here (JSON for the row_median backend)")
    p.add_argument("--indoor", action="store_true", help="NYU frames (nyu_eigen), reference fitted on SUN3D")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sets = indoor_sets() if args.indoor else kitti_sets()
    protocol = "nyu_eigen" if args.indoor else "kitti_eigen"
    figure_set = next(iter(sets)) if args.indoor else "raw 0001/5"
    reference = fit_row_median(indoor_training_frames() if args.indoor else kitti_training_frames())
    if args.save_reference:
        reference.save(args.save_reference)
    scores: Dict[str, Any] = {"row-median reference": score_sets(lambda rgb, intr: reference.predict(intr), sets,
                                                                 protocol)}
    if args.indoor:  # the outside reference: NYU-trained FastDepth (it may have seen these NYU scenes)
        from training.fastdepth import FastDepthReference

        scores["FastDepth (NYU-trained, outside reference)"] = score_sets(FastDepthReference(), sets, protocol)
    kept: Dict[str, Dict[str, np.ndarray]] = {}
    costs: Dict[str, Any] = {}
    for item in args.model:
        name, _, path = item.partition("=")
        predict, _ = model_predictor(Path(path))
        kept[name] = {}
        scores[name] = score_sets(predict, sets, protocol, keep=kept[name])
        if args.cost:
            f = sets[figure_set].load_frame(0)
            costs[name] = cost(Path(path), f["rgb"], frame_intrinsics(f))
        print(f"{name}: validation abs_rel {scores[name]['validation']['mean']['abs_rel']:.3f}", flush=True)
    if args.figure:
        from depth_diffusion_ros.evaluation.figures import comparison_figure

        f = sets[figure_set].load_frame(0)
        comparison_figure(f["rgb"], [(n, k.get(figure_set)) for n, k in kept.items()] + [("ground truth", f["gt_depth"])],
                          args.figure)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"protocol": protocol, "scores": scores, "costs": costs,
                                          "torch_threads": args.threads}, indent=2) + "\n")
    for set_name in ("validation", "validation_sets") + tuple(sets):
        print(f"\n{set_name}\n" + markdown_table(scores, set_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
