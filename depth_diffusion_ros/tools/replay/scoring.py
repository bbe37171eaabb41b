"""Scoring and the report: a frame's entry (the evaluation node's numbers + latency), its
figure, the ``skipped`` tally and the report's meta.

The numbers come from ``depth_evaluation_node`` (the one scoring implementation); replay adds
the latency (publish of the frame's last input -> its ``depth/image``) and the figure.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from depth_diffusion_ros.evaluation.report import EvaluationReport
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from depth_diffusion_ros.tools.bag_io import (
    IMAGE,
    POINTCLOUD2,
    BagError,
    camera_info_msg_to_intrinsics,
    depth_msg_to_array,
    deserialize,
    image_msg_to_rgb,
    pointcloud_msg_to_array,
)
from depth_diffusion_ros.tools.replay.plan import RunPlan
from depth_diffusion_ros.tools.replay.state import FrameState
from depth_diffusion_ros.tools.replay.wiring import calibrated_nodes

#: What the report's ``parameters`` say of a T_camera_lidar replaced per calibration segment.
PER_SEGMENT = "per calibration segment: see meta.calibration_segments"


def segment_records(run: RunPlan, segments: list[list[int]]) -> list[dict[str, Any]]:
    """The calibration each segment of frames ran with: its frames (first, last index), the
    ``T_camera_lidar`` the nodes were given (16 row-major floats, or None without LiDAR), where
    it came from (``bag /tf_static`` or ``T_camera_lidar parameter``) and which nodes took it."""
    frames, nodes = run.bag.frames, calibrated_nodes(run)
    out = []
    for seg in segments:
        T = frames[seg[0]].T_camera_lidar
        out.append({"frames": [frames[seg[0]].index, frames[seg[-1]].index],
                    "T_camera_lidar": None if T is None else [float(v) for v in T.reshape(-1)],
                    "source": run.bag.calibration if T is not None else None,
                    "nodes": nodes if T is not None else []})
    return out


def _recorded_parameters(run: RunPlan, segments: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The nodes' parameters as started: a T_camera_lidar that each segment replaced is not shown
    as if it had been used (the params file's value is not the calibration of a /tf_static bag)."""
    replaced = {n for seg in segments for n in seg["nodes"]}
    return {n: {k: (PER_SEGMENT if k == "T_camera_lidar" and n in replaced else v) for k, v in p.items()}
            for n, p in run.params.items()}


def report_meta(run: RunPlan, output_bag: Path, figures_dir: Optional[Path],
                segments: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
    """The report's ``meta``: bag, pipeline, nodes and parameters, input, ground truth, outputs,
    the calibration of each segment (:func:`segment_records`) and a model export, if any."""
    opts, topics, plan = run.opts, run.topics, run.bag
    segments = segments or []
    return {
        "bag": str(plan.path), "label": opts.label, "pipeline": opts.pipeline, "started": True,
        "backend": run.main_params.get("backend", "(node default)"),
        "nodes": run.started_nodes, "input": run.mode,
        "ground_truth": run.gt_source,
        "ground_truth_topic": topics.depth_gt if run.gt_source == "depth" else run.holdout_topic,
        "holdout_fraction": opts.holdout_fraction if run.split_points else None,
        "seed": opts.seed if run.split_points else None,
        "rate": opts.rate, "topics": vars(topics), "frames_in_bag": len(plan.frames),
        "parameters": _recorded_parameters(run, segments),
        "output_bag": str(output_bag), "figures": str(figures_dir) if figures_dir else None,
        "ignored_topics": plan.ignored_topics, "calibration": plan.calibration,
        "segments": len(segments), "calibration_segments": segments, "model_export": run.model_export,
    }


def finish_frame(st: FrameState, report: EvaluationReport, figures_dir: Optional[Path], run: RunPlan) -> None:
    """Add a scored frame (the evaluation node's numbers + latency) to the report; draw its figure."""
    if st.event is None or st.finished:
        st.figure = None
        return
    st.finished = True
    entry = dict(st.event["frame"])
    if st.output_at is not None and st.published_at is not None:
        entry["latency_ms"] = (st.output_at - st.published_at) * 1e3
    entry["frame_index"] = st.frame.index
    if figures_dir is not None and st.figure is not None and st.pred_raw is not None:
        try:
            path = figures_dir / f"frame_{st.frame.index:06d}.png"
            _draw_figure(path, st, run)
            entry["figure"] = str(path)
        except (ValueError, OSError, BagError) as exc:
            report.add_error(f"figure of frame {st.frame.index}: {exc}")
    st.figure = None
    report.add_entry(entry)


def finish_late(states: list[FrameState], report: EvaluationReport, run: RunPlan) -> None:
    """Add the verdicts that arrived after their frame's wait (without figures)."""
    for st in states:
        if st.event is not None and not st.finished:
            st.figure = None
            finish_frame(st, report, None, run)


def _skip_reason(st: FrameState) -> str:
    if st.skip and st.published_at is None:
        return st.skip
    if st.published_at is None:
        return "not_played"
    if st.output_at is None:
        return st.skip if st.skip and not st.skip.startswith("no_prediction") else "no_output"
    if st.skip:
        return st.skip
    if not st.has_gt:
        return "no_ground_truth"
    return "not_scored"


def skipped_tally(states: list[FrameState], unreadable_frames: int) -> dict[str, int]:
    """``skipped: {reason: count}``: one reason per frame that was not scored."""
    skipped: dict[str, int] = {}
    for st in states:
        if st.event is not None:
            continue
        reason = _skip_reason(st)
        skipped[reason] = skipped.get(reason, 0) + 1
    if unreadable_frames:
        skipped["unreadable_bag"] = unreadable_frames
    return skipped


def _draw_figure(path: Path, st: FrameState, run: RunPlan) -> None:
    """RGB | sparse input | prediction | ground truth | error of one frame, at the output size."""
    import cv2

    from depth_diffusion_ros.evaluation.figures import error_figure

    msgs, held_raw = st.figure["msgs"], st.figure["held"]  # type: ignore[index]
    rgb = image_msg_to_rgb(msgs["image"][0].decode())
    intr = camera_info_msg_to_intrinsics(msgs["camera_info"][0].decode())
    pred = depth_msg_to_array(deserialize(st.pred_raw, IMAGE))  # type: ignore[arg-type]
    if (intr.height, intr.width) != pred.shape:
        intr = intr.scaled(pred.shape[1], pred.shape[0])
    T = st.frame.T_camera_lidar
    if run.mode == "super_resolution":  # the LR input shown at the output size (nearest neighbour)
        lr = depth_msg_to_array(msgs["depth_lr"][0].decode())
        sparse = cv2.resize(lr, (pred.shape[1], pred.shape[0]), interpolation=cv2.INTER_NEAREST)
    elif run.mode == "sparse_depth":
        sparse = depth_msg_to_array(msgs["sparse_depth"][0].decode())
    elif run.mode == "estimation":  # no sparse input: its panel is left grey
        sparse = None
    else:
        kept = deserialize(msgs["points_published"][0].rawdata, POINTCLOUD2)
        sparse = project_lidar_to_depth(pointcloud_msg_to_array(kept), T, intr)
    if run.gt_source == "depth":
        gt = depth_msg_to_array(msgs["depth_gt"][0].decode())
    else:
        gt = project_lidar_to_depth(pointcloud_msg_to_array(deserialize(held_raw, POINTCLOUD2)), T, intr)
    if rgb.shape[:2] != pred.shape:
        rgb = cv2.resize(rgb, (pred.shape[1], pred.shape[0]), interpolation=cv2.INTER_AREA)
    if sparse is not None and sparse.shape != pred.shape:
        sparse = None
    if gt.shape != pred.shape:
        gt = None
    error_figure(rgb, sparse, pred, gt, path)
