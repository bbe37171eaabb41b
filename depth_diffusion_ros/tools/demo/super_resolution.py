"""The demo's super-resolution section: bags with ``depth_lr`` = the GT block-averaged by
:data:`~depth_diffusion_ros.tools.demo.data.SR_SCALE`, replayed through
depth_super_resolution_node for each backend, as table rows. The shipped DSR-Diff weights run
through ONNX Runtime: exported once per frame size into ``OUTPUT/onnx_cache`` (as the completion
model), reused while the checkpoint hash is the same."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Optional

from depth_diffusion_ros.evaluation.report import TABLE_COLUMNS
from depth_diffusion_ros.tools.bag_io import BagError
from depth_diffusion_ros.tools.demo.backends import BackendChoice, sr_backend_choices
from depth_diffusion_ros.tools.onnx_cache import sr_onnx_export_for
from depth_diffusion_ros.tools.demo.data import (
    SR_SCALE,
    bag_size,
    motorcycle_depth,
    nyu_frames,
    shared_data_dir,
    write_sr_bag,
)

_COLUMN = {c[0]: c for c in TABLE_COLUMNS}
#: Columns of the super-resolution table: the completion table's, with RMSE/MAE also in cm.
SR_TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    _COLUMN["rmse_mm"],
    _COLUMN["mae_mm"],
    ("rmse_cm", "RMSE cm", "{:.2f}"),
    ("mae_cm", "MAE cm", "{:.2f}"),
    _COLUMN["abs_rel"],
    _COLUMN["delta1"],
    _COLUMN["latency_ms"],
)


def _sr_datasets(args: argparse.Namespace, bags: Path) -> list[tuple[str, Path]]:
    """(dataset, bag): the Middlebury pair and, with the shared data, the NYU frames."""
    datasets: list[tuple[str, Path]] = []
    try:
        rgb, depth, intr = motorcycle_depth()
        datasets.append(("sr_middlebury", write_sr_bag(bags / "sr_middlebury", [(rgb, depth, intr)], SR_SCALE,
                                                        "middlebury_sr")))
    except (BagError, ImportError, OSError, ValueError) as exc:
        print(f"skipping the Middlebury super-resolution bag: {exc}")
    data = shared_data_dir()
    nyu = data / "nyu_depth_v2_metric3d" if data is not None else None
    if nyu is not None and nyu.is_dir():
        try:
            frames = nyu_frames(nyu)[: max(1, args.sr_frames)]
            datasets.append(("sr_nyu", write_sr_bag(bags / "sr_nyu", frames, SR_SCALE, "nyu")))
        except (BagError, OSError, ValueError, KeyError) as exc:
            print(f"skipping the NYU super-resolution bag: {exc}")
    return datasets


def _sr_onnx_model_path(choice: BackendChoice, dataset: str, bag: Path, out: Path) -> str:
    """The ONNX export of ``choice.export_from`` for the HR size of ``bag`` at :data:`SR_SCALE`,
    made once into ``out/onnx_cache`` (:func:`~depth_diffusion_ros.tools.onnx_cache.sr_onnx_export_for`)."""
    t0 = time.perf_counter()
    w, h = (int(v) for v in bag_size(bag).split("x"))

    def announce(target: Path) -> None:
        print(f"{dataset} / {choice.label}: exporting {choice.export_from} to ONNX for {w}x{h} x{SR_SCALE} -> "
              f"{target} (one-off, a few seconds) ...", flush=True)

    folder, reused = sr_onnx_export_for(choice.export_from, out / "onnx_cache", h, w, [SR_SCALE],  # type: ignore[arg-type]
                                        on_export=announce)
    print(f"{dataset} / {choice.label}: ONNX export {folder} "
          + ("(cached, same checkpoint hash)" if reused else f"(exported in {time.perf_counter() - t0:.1f} s)"))
    return str(folder)


def _sr_row(dataset: str, choice: BackendChoice, bag: Path, result: Any) -> dict[str, Any]:
    """Table row of a finished replay: the mean (RMSE/MAE also in cm), the HR size, frames."""
    rep = result.report
    mean = dict(rep["mean"])
    for key in ("rmse", "mae"):
        if mean.get(f"{key}_mm") is not None:
            mean[f"{key}_cm"] = mean[f"{key}_mm"] / 10.0
    n_skipped = sum(rep["skipped"].values())
    size = ""
    if rep["frames"]:
        f0 = rep["frames"][0]
        size = f"{f0.get('width', '')}x{f0.get('height', '')}" if f0.get("width") else ""
    return {"dataset": dataset, "backend": choice.label, "size": size or bag_size(bag),
            "frames": f"{rep['n_frames']}" + (f" (+{n_skipped} skipped)" if n_skipped else ""),
            **mean, "report": str(result.report_path)}


def _replay_sr(args: argparse.Namespace, out: Path, dataset: str, bag: Path, choice: BackendChoice,
               skipped: list[str]) -> Optional[dict[str, Any]]:
    """The row of one replay, or None when the learned backend did not start (added to ``skipped``)."""
    from depth_diffusion_ros.tools.replay import ReplayError, ReplayOptions, replay

    target = out / dataset / choice.label.replace(":", "_")
    options = dict(choice.options)
    if choice.export_from is not None:
        try:
            options["model_path"] = _sr_onnx_model_path(choice, dataset, bag, out)
        except Exception as exc:  # noqa: BLE001 - an export failure skips the learned row, with its reason
            print(f"skipping super-resolution backend {choice.label}: cannot export {choice.export_from}: {exc}")
            skipped.append(f"{choice.label} (cannot export {choice.export_from}: {exc})")
            return None
    try:
        result = replay(ReplayOptions(
            bag=bag, output=target, backend=choice.backend, node_params=options,
            pipeline="super_resolution", frame_timeout=args.frame_timeout, progress=True,
            label=f"{dataset} {choice.label}", max_figures=10, overwrite=True,
        ))
    except (ReplayError, BagError) as exc:
        if choice.export_from is not None or choice.backend == "torch":  # the learned backend could not start
            print(f"skipping super-resolution backend {choice.label}: {exc}")
            skipped.append(f"{choice.label} ({exc})")
            return None
        print(f"{dataset} / {choice.label}: failed: {exc}")
        return {"dataset": dataset, "backend": choice.label, "frames": "failed"}
    except Exception as exc:  # noqa: BLE001 - a broken node must not lose the other rows
        print(f"{dataset} / {choice.label}: failed: {type(exc).__name__}: {exc}")
        return {"dataset": dataset, "backend": choice.label, "frames": "failed"}
    return _sr_row(dataset, choice, bag, result)


def run_super_resolution(args: argparse.Namespace, out: Path, bags: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The super-resolution section: bags from the Middlebury pair (and the NYU frames when the
    shared data is there) with ``depth_lr`` = the GT block-averaged by :data:`SR_SCALE`, replayed
    through depth_super_resolution_node for each backend of :func:`sr_backend_choices`.

    Returns (table rows, skipped backends with reasons). A backend that fails to start (e.g. the
    torch backend cannot load the weights) is reported as skipped with the node's reason.
    """
    only = [b.strip() for b in args.sr_backends.split(",")] if args.sr_backends else None
    choices = sr_backend_choices(Path(args.weights_dir), only)
    skipped = [f"{c.label} ({c.skip})" for c in choices if c.skip]  # listed once, under the table
    rows: list[dict[str, Any]] = []
    for dataset, bag in _sr_datasets(args, bags):
        for choice in [c for c in choices if c.skip is None]:
            if any(s.startswith(choice.label + " ") for s in skipped):
                continue  # did not start on an earlier dataset
            row = _replay_sr(args, out, dataset, bag, choice, skipped)
            if row is not None:
                rows.append(row)
    return rows, skipped
