""":func:`replay`: plan, wire, play and score one bag; write the report, output bag and figures."""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from depth_diffusion_ros.evaluation.report import EvaluationReport
from depth_diffusion_ros.tools.bag_io import BagError
from depth_diffusion_ros.tools.replay.bag_plan import calibration_segments
from depth_diffusion_ros.tools.replay.onnx_model import export_torch_checkpoint
from depth_diffusion_ros.tools.replay.options import ReplayError, ReplayOptions, claim_output
from depth_diffusion_ros.tools.replay.plan import RunPlan, make_run_plan
from depth_diffusion_ros.tools.replay.player import Player
from depth_diffusion_ros.tools.replay.scoring import finish_late, report_meta, segment_records, skipped_tally
from depth_diffusion_ros.tools.replay.state import RunState
from depth_diffusion_ros.tools.replay.wiring import wire_parameters


@dataclass
class ReplayResult:
    """What :func:`replay` wrote and measured."""

    report: dict[str, Any]
    report_path: Path
    output_bag: Path
    figures_dir: Optional[Path]
    wall_s: float


def resolve_domain(domain_id: Optional[int]) -> int:
    """``domain_id``, else ``$ROS_DOMAIN_ID``, else a random domain in [1, 101] (replays never meet)."""
    if domain_id is not None:
        return int(domain_id)
    env = os.environ.get("ROS_DOMAIN_ID")
    if env and env.isdigit():
        return int(env)
    return random.SystemRandom().randint(1, 101)


def _progress_bar(run: RunPlan) -> Any:
    if not run.opts.progress:
        return None
    from tqdm import tqdm

    desc = f"replay {run.opts.label or run.main_params.get('backend', '')}".strip()
    return tqdm(total=len(run.bag.frames), desc=desc, unit="frame")


def _startup_failure(opts: ReplayOptions, exc: Exception) -> None:
    """Write ``OUTPUT/report.json`` with the start-up error (no frame scored) and tag ``exc``
    with its path (``exc.report_path``), so that a failed run never leaves an old report."""
    path = Path(opts.output) / "report.json"
    report = EvaluationReport(path, {"bag": str(opts.bag), "label": opts.label, "pipeline": opts.pipeline,
                                     "backend": opts.backend or "(node default)", "started": False})
    report.add_error(f"start-up failed: {exc}")
    try:
        report.flush()
        exc.report_path = path  # type: ignore[attr-defined]
    except OSError:
        pass


def _plan(opts: ReplayOptions) -> RunPlan:
    """The checked run plan (parameters wired, a torch checkpoint exported for ONNX Runtime /
    TensorRT); a failure is recorded in ``OUTPUT/report.json`` and raised."""
    claim_output(opts)  # refuses a non-empty folder without --overwrite: nothing is written then
    try:
        run = make_run_plan(opts)
        wire_parameters(run)
        export_torch_checkpoint(run)
    except (ReplayError, BagError) as exc:
        _startup_failure(opts, exc)
        raise
    return run


def replay(opts: ReplayOptions) -> ReplayResult:
    """Replay ``opts.bag`` through the nodes and score it (see the package docstring).

    Writes ``OUTPUT/report.json`` (flushed after every frame; also when the run cannot start,
    with the error), ``OUTPUT/output_bag`` and ``OUTPUT/figures/frame_NNNNNN.png``.

    Raises:
        ReplayError / BagError: an output folder that is not empty (without ``overwrite``), a bad
            bag, topics, parameters or model, or a node that does not start (recorded in the
            report).
    """
    t_start = time.perf_counter()
    run = _plan(opts)
    output = Path(opts.output)
    report_path = output / "report.json"
    figures_dir = output / "figures" if opts.figures else None
    out_bag_path = output / "output_bag"
    segments = calibration_segments(run.bag.frames)
    report = EvaluationReport(report_path, report_meta(run, out_bag_path, figures_dir, segment_records(run, segments)))
    for err in run.bag.errors:
        report.add_error(err)
    report.flush()
    state = RunState(run.bag.frames, out_bag_path, opts.storage, opts.namespace)
    domain = resolve_domain(opts.domain_id)
    bar = _progress_bar(run)
    player = Player(run, state, report, figures_dir, domain, bar)
    try:
        player.play(segments)
    except KeyboardInterrupt:
        report.add_error("interrupted")
    except ReplayError as exc:  # a node did not start: the run stops, the report says why
        report.add_error(f"start-up failed: {exc}")
        report.meta["started"] = bool(report.frames)  # False: no segment ran
        exc.report_path = report_path  # type: ignore[attr-defined]
        raise
    finally:
        if bar:
            bar.close()
        player.close()
        state.close_writer()
        finish_late(state.frames, report, run)
        report.skipped = skipped_tally(state.frames, run.bag.unreadable_frames)
        report.meta["node_skipped"] = state.node_skips
        report.meta["wall_s"] = round(time.perf_counter() - t_start, 3)
        report.meta["domain_id"] = domain
        report.flush()
    return ReplayResult(report.to_dict(), report_path, out_bag_path, figures_dir, time.perf_counter() - t_start)
