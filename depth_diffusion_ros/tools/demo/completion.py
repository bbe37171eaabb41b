"""The demo's depth-completion section: the bags (Middlebury, KITTI when found) and one replay
per (bag, backend) through the real nodes, as table rows."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional

from depth_diffusion_ros.evaluation.report import format_table
from depth_diffusion_ros.tools.bag_io import BagError
from depth_diffusion_ros.tools.demo.backends import BackendChoice
from depth_diffusion_ros.tools.demo.data import kitti_sources, write_motorcycle_bag
from depth_diffusion_ros.tools.onnx_cache import bag_padded_sizes, onnx_export_for, read_size_divisor

#: (dataset name, bag, what it is scored against)
Dataset = tuple[str, Path, str]


def completion_datasets(args: argparse.Namespace, bags: Path) -> Optional[list[Dataset]]:
    """The Middlebury bag and the KITTI bags converted under ``bags``; None (after printing the
    error) when the Middlebury bag cannot be built. KITTI folders that do not convert are skipped."""
    from depth_diffusion_ros.tools.kitti_to_bag import KittiLayoutError, convert, discover_kitti

    datasets: list[Dataset] = []
    try:
        print("building the Middlebury Motorcycle bag (scikit-image data) ...")
        datasets.append(("middlebury", write_motorcycle_bag(bags / "middlebury", args.frames, args.scan_rows,
                                                             args.scan_col_step, args.seed), "stereo GT"))
    except (BagError, ImportError, OSError) as exc:
        print(f"demo: error: cannot build the Middlebury bag: {exc}", file=sys.stderr)
        return None
    if args.no_kitti:
        return datasets
    found = kitti_sources(args.kitti_dir)
    if not found:
        print("no KITTI data found (set DDR_SHARED_DATA or KITTI_DIR): Middlebury only")
    for name, folder, scoring in found:
        try:
            seq = discover_kitti(folder)
            convert(seq, bags / name, overwrite=True, max_frames=args.max_frames)
            datasets.append((name, bags / name, scoring))
            print(f"converted {folder} -> {bags / name} ({seq.layout}, {min(len(seq.frames), args.max_frames)} frames)")
        except (KittiLayoutError, BagError, ValueError, OSError) as exc:
            print(f"skipping KITTI data {folder}: {exc}")
    return datasets


def _onnx_model_path(choice: BackendChoice, dataset: str, bag: Path, out: Path) -> str:
    """The ONNX export of ``choice.export_from`` for the frame sizes of ``bag`` (made or reused)."""
    t_exp = time.perf_counter()
    sizes = bag_padded_sizes(bag, read_size_divisor(choice.export_from))  # type: ignore[arg-type]

    def announce(target: Path) -> None:
        shown = ", ".join(f"{w}x{h}" for h, w in sorted(sizes))
        print(f"{dataset} / {choice.label}: exporting {choice.export_from} to ONNX for {shown} -> {target} "
              "(one-off, about 20 s on a 2-core CPU) ...", flush=True)

    export_dir, reused = onnx_export_for(choice.export_from, out / "onnx_cache", sizes,  # type: ignore[arg-type]
                                         on_export=announce)
    print(f"{dataset} / {choice.label}: ONNX export {export_dir} "
          + ("(cached, same checkpoint hash)" if reused else f"(exported in {time.perf_counter() - t_exp:.1f} s)"))
    return str(export_dir)


def replay_completion(args: argparse.Namespace, out: Path, data: Dataset,
                      choice: BackendChoice) -> tuple[dict[str, Any], bool]:
    """Replay one bag with one backend into ``out/<dataset>/<backend>``: (table row, failed).

    Every failure (export, bad input, a broken node) becomes a ``failed`` row, printed with its
    reason, so that the other rows are kept.
    """
    from depth_diffusion_ros.tools.replay import ReplayError, ReplayOptions, replay

    dataset, bag, scoring = data
    failed = {"dataset": dataset, "backend": choice.label, "gt": scoring, "frames": "failed"}
    target = out / dataset / choice.label.replace(":", "_")
    options = dict(choice.options)
    if choice.export_from is not None:
        try:
            options["model_path"] = _onnx_model_path(choice, dataset, bag, out)
        except Exception as exc:  # noqa: BLE001 - export failures are reported per row
            print(f"{dataset} / {choice.label}: failed: cannot export {choice.export_from} to ONNX: {exc}")
            return failed, True
    try:
        result = replay(ReplayOptions(
            bag=bag, output=target, backend=choice.backend, node_params=options,
            holdout_fraction=0.1, seed=args.seed, frame_timeout=args.frame_timeout,
            max_frames=args.max_frames if dataset != "middlebury" else None, progress=True,
            label=f"{dataset} {choice.label}", max_figures=10, overwrite=True,
        ))
    except (ReplayError, BagError) as exc:
        print(f"{dataset} / {choice.label}: failed: {exc}")
        return failed, True
    except Exception as exc:  # noqa: BLE001 - a broken node must not lose the other rows
        print(f"{dataset} / {choice.label}: failed: {type(exc).__name__}: {exc}")
        return failed, True
    rep = result.report
    skipped = sum(rep["skipped"].values())
    return {"dataset": dataset, "backend": choice.label, "gt": scoring,
            "frames": f"{rep['n_frames']}" + (f" (+{skipped} skipped)" if skipped else ""),
            **rep["mean"], "report": str(result.report_path),
            "per_frame_rmse_mm": {int(f.get("frame_index", i)): f.get("rmse_mm")
                                  for i, f in enumerate(rep["frames"])}}, False


def per_frame_table(rows: list[dict]) -> str:
    """Plain-text RMSE [mm] table per frame of the KITTI datasets with more than one frame
    (rows: the completion rows with ``per_frame_rmse_mm``); "" when there is none."""
    multi = [r for r in rows if r.get("dataset", "").startswith("kitti") and len(r.get("per_frame_rmse_mm") or {}) > 1]
    if not multi:
        return ""
    frames = sorted({i for r in multi for i in r["per_frame_rmse_mm"]})
    table_rows = [{"dataset": r["dataset"], "backend": r["backend"],
                   **{f"f{i}": r["per_frame_rmse_mm"].get(i) for i in frames}} for r in multi]
    return format_table(table_rows, [("dataset", "dataset"), ("backend", "backend")],
                        [(f"f{i}", f"frame {i}", "{:.1f}") for i in frames])
