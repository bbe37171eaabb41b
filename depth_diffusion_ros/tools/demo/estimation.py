"""The demo's monocular section: every shipped monocular model and the row-median reference,
replayed through depth_estimation_node (``replay --pipeline estimation``) on the held-out KITTI
frames, as one table of abs_rel, RMSE and delta1.

Frames (with the shared data folder): the validation block of the KITTI raw sequence (frames
44-51, scored against every LiDAR point of each scan: the node never sees them), the raw
depth-completion frame (drive 0001 frame 5, scored against KITTI's semi-dense ground truth) and
object frame 000001 (all its LiDAR points). The models run in ONNX Runtime (a torch checkpoint is
exported by replay into ``OUTPUT/onnx_cache``), the reference with the ``row_median`` backend
from the ``row_median_reference.json`` shipped beside a model. Scores: the Eigen protocol
(Garg crop, 80 m cap), the default of replay's estimation pipeline.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any, Optional

from depth_diffusion_ros.tools.demo.data import shared_data_dir

#: dataset name -> (folder under the shared data, frames of it (None = all), scored against)
KITTI_MONOCULAR: dict[str, tuple[str, Optional[slice], str]] = {
    "sequence val 44-51": ("kitti_raw_2011_09_26_sequence", slice(44, 52), "all LiDAR points"),
    "raw 0001/5": ("kitti_raw_depth_completion_torch_kitti", None, "KITTI DC ground truth"),
    "object 000001": ("kitti_object_kuixu", slice(1, 2), "all LiDAR points"),
}
REFERENCE_FILE = "row_median_reference.json"
TABLE_COLUMNS = [("abs_rel", "AbsRel", "{:.3f}"), ("rmse_m", "RMSE m", "{:.2f}"), ("delta1", "d1", "{:.3f}")]


def monocular_problem(model_dir: Path) -> Optional[str]:
    """Why ``model_dir`` is not a monocular checkpoint (``mode: monocular`` in its config.yaml, or an
    IID-RDepth one), or None."""
    import yaml

    config = model_dir / "config.yaml"
    if not config.is_file():
        return f"no config.yaml in {model_dir}"
    try:
        data = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return f"unreadable {config}: {exc}"
    if isinstance(data, dict) and data.get("architecture") == "iid_rdepth":
        return None  # monocular by construction (no mode key)
    if not isinstance(data, dict) or data.get("mode") != "monocular":
        return f"not a monocular model ({config})"
    if data.get("architecture") not in (None, "diffusion_depth", "iid_rdepth"):
        return f"a {data['architecture']} checkpoint: the demo's table runs the DiffusionDepth family"
    return None


def monocular_models(weights_dir: Path) -> list[Path]:
    """The monocular DiffusionDepth-family model folders of ``weights_dir`` (the monocular
    DiffusionDepth, IID-RDepth)."""
    folders = sorted(d for d in weights_dir.glob("*") if d.is_dir()) if weights_dir.is_dir() else []
    return [d for d in folders if monocular_problem(d) is None]


def monocular_bags(bags: Path) -> list[tuple[str, Path, str]]:
    """(dataset, bag, scored against) of :data:`KITTI_MONOCULAR` found in the shared data, converted under ``bags``."""
    from depth_diffusion_ros.tools.kitti_to_bag import convert, discover_kitti

    data = shared_data_dir()
    out = []
    for name, (sub, frames, scoring) in KITTI_MONOCULAR.items():
        folder = data / sub if data is not None else None
        if folder is None or not folder.is_dir():
            continue
        if sub.endswith("_sequence"):
            folder = next(folder.glob("*/*_sync"))
        seq = discover_kitti(folder)
        if frames is not None:
            seq = dataclasses.replace(seq, frames=seq.frames[frames])
        bag = bags / f"monocular_{name.split()[0]}_{name.split()[-1].replace('/', '_')}"
        convert(seq, bag, overwrite=True)
        out.append((name, bag, scoring))
    return out


def _replay_row(out: Path, dataset: str, bag: Path, label: str, backend: str, model_path: str,
                frame_timeout: float) -> dict[str, Any]:
    from depth_diffusion_ros.tools.replay import ReplayOptions, replay

    row: dict[str, Any] = {"dataset": dataset, "model": label}
    try:
        result = replay(ReplayOptions(bag=bag, output=out / "monocular" / dataset.replace(" ", "_").replace("/", "_")
                                      / label.replace(":", "_"), backend=backend,
                                      node_params={"model_path": model_path}, pipeline="estimation",
                                      frame_timeout=frame_timeout, progress=False, max_figures=3, overwrite=True,
                                      onnx_cache=out / "onnx_cache", label=f"{dataset} {label}"))
    except Exception as exc:  # noqa: BLE001 - one failed row must not lose the others
        print(f"monocular {dataset} / {label}: failed: {type(exc).__name__}: {exc}")
        return dict(row, frames="failed")
    mean = result.report["mean"]
    return dict(row, frames=str(result.report["n_frames"]), abs_rel=mean.get("abs_rel"),
                rmse_m=None if mean.get("rmse_mm") is None else mean["rmse_mm"] / 1000.0, delta1=mean.get("delta1"))


def run_monocular(out: Path, bags: Path, weights_dir: Path, frame_timeout: float = 300.0) -> tuple[list[dict], list[str]]:
    """Replay every monocular model (ONNX Runtime) and the row-median reference on the monocular bags.

    Returns (rows: one per (dataset, model) plus a "mean of the N sets" row per model, each set
    weighing the same as in the model card's ``validation_sets``; skip reasons).
    """
    models = monocular_models(weights_dir)
    if not models:
        return [], [f"no monocular model in {weights_dir}"]
    if importlib.util.find_spec("onnxruntime") is None:
        return [], ["onnxruntime is not installed here"]
    datasets = monocular_bags(bags)
    if not datasets:
        return [], ["no KITTI data found (set DDR_SHARED_DATA)"]
    with_reference = [m for m in models if (m / REFERENCE_FILE).is_file()] or models
    runs = [(f"row_median:{with_reference[0].name}", "row_median", str(with_reference[0] / REFERENCE_FILE))]
    runs += [(f"onnxruntime:{m.name}", "onnxruntime", str(m)) for m in models]
    rows = [_replay_row(out, d, bag, label, backend, path, frame_timeout)
            for label, backend, path in runs for d, bag, _ in datasets]
    for label, _, _ in runs:
        done = [r for r in rows if r["model"] == label and r.get("abs_rel") is not None]
        if len(done) == len(datasets):
            rows.append({"dataset": f"mean of the {len(done)} sets", "model": label, "frames": str(sum(int(r["frames"]) for r in done)),
                         **{k: sum(r[k] for r in done) / len(done) for k, _, _ in TABLE_COLUMNS}})
    return rows, []
