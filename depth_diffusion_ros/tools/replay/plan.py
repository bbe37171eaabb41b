"""The run plan: which nodes start with which parameters, the input mode and the ground truth.

Everything here is decided before any node starts, so bad options, parameters or bags fail
early with a :class:`~depth_diffusion_ros.tools.replay.options.ReplayError`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from depth_diffusion_ros.tools.replay.bag_plan import BagPlan, Topics, plan_bag
from depth_diffusion_ros.tools.replay.options import (
    COMPLETION_NODE,
    ESTIMATION_NODE,
    EVAL_NODE,
    NODE_CLASSES,
    PIPELINE_NODES,
    PROJECTION_NODE,
    SR_NODE,
    ReplayError,
    ReplayOptions,
    check_options,
    load_params_file,
)

#: Input modes: the completion node fed by the projection node ("projection"), by LiDAR points
#: ("points") or by a sparse depth image ("sparse_depth"); the super-resolution node; the
#: estimation node (the image alone: "estimation").
MODES = ("projection", "points", "sparse_depth", "super_resolution", "estimation")


@dataclass
class RunPlan:
    """What one replay runs: the bag plan, the nodes and their parameters, the input and scoring."""

    opts: ReplayOptions
    bag: BagPlan
    params: dict[str, dict[str, Any]]  # node name -> parameters (the evaluation node's too)
    node_names: list[str]  # pipeline nodes started (the evaluation node not included)
    main_node: str  # the node --backend / --param configure
    mode: str  # one of MODES
    gt_source: Optional[str]  # "depth" (a ground-truth topic), "points" (held-out LiDAR) or None
    split_points: bool  # replay holds out --holdout-fraction of each scan itself
    holdout_topic: Optional[str]  # topic of the held-out points
    #: node -> parameter names that came only from the params file's ``/**`` entry (applied to a
    #: node only where it declares them, as ROS does); every other name must be declared
    wildcard_only: dict[str, set[str]] = field(default_factory=dict)
    #: the torch checkpoint exported for an ONNX Runtime / TensorRT backend (see .onnx_model)
    model_export: Optional[dict[str, Any]] = None

    @property
    def topics(self) -> Topics:
        return self.bag.topics

    @property
    def main_params(self) -> dict[str, Any]:
        return self.params[self.main_node]

    @property
    def started_nodes(self) -> list[str]:
        """Every node started, the evaluation node last (when scoring)."""
        return self.node_names + ([EVAL_NODE] if self.opts.evaluate else [])


def _node_parameters(opts: ReplayOptions) -> tuple[dict[str, dict[str, Any]], str, list[str], dict[str, set[str]]]:
    """(node -> parameters, main node, pipeline nodes, node -> wildcard-only names) from
    --params-file, --backend and --param."""
    params = load_params_file(opts.params_file)
    wildcard = params.pop("/**", {})
    other = {n for p, nodes in PIPELINE_NODES.items() if p != opts.pipeline for n in nodes}
    for name in [n for n in params if n in other]:
        print(f"replay: note: {name} in --params-file is not part of the {opts.pipeline} pipeline (ignored)",
              file=sys.stderr)
        params.pop(name)
    unknown = [n for n in params if n not in NODE_CLASSES]
    if unknown:
        raise ReplayError(f"--params-file names nodes replay cannot start: {unknown}; known: {sorted(NODE_CLASSES)}")
    if opts.pipeline != "completion":
        main_node = SR_NODE if opts.pipeline == "super_resolution" else ESTIMATION_NODE
        node_names = [main_node]
    else:
        main_node = COMPLETION_NODE
        node_names = [n for n in NODE_CLASSES if n in params and n != EVAL_NODE] or [COMPLETION_NODE]
        if COMPLETION_NODE not in node_names:
            node_names.append(COMPLETION_NODE)
    wildcard_only: dict[str, set[str]] = {}
    for name in node_names + [EVAL_NODE]:
        own = params.get(name, {})
        wildcard_only[name] = set(wildcard) - set(own)
        params[name] = {**wildcard, **own}
    if opts.backend:
        params[main_node]["backend"] = opts.backend
    params[main_node].update(opts.node_params)
    wildcard_only[main_node] -= set(opts.node_params) | ({"backend"} if opts.backend else set())
    return params, main_node, node_names, wildcard_only


def _calibration_parameter(opts: ReplayOptions, params: dict[str, dict[str, Any]],
                           main_node: str) -> Optional[np.ndarray]:
    """T_camera_lidar of the parameters (used only when the bag has no /tf_static)."""
    if opts.pipeline != "completion":
        return None
    T = params[main_node].get("T_camera_lidar") or params.get(PROJECTION_NODE, {}).get("T_camera_lidar")
    return np.asarray(T, float) if T else None


def _super_resolution_inputs(topics: Topics, main: dict[str, Any]) -> None:
    """Use the bag's depth_lr camera_info when it has one (unless the parameter says otherwise)."""
    if topics.depth_lr_camera_info and "use_depth_camera_info" not in main:
        main["use_depth_camera_info"] = True
    if main.get("use_depth_camera_info") and not topics.depth_lr_camera_info:
        raise ReplayError("use_depth_camera_info is true but the bag has no depth_lr camera_info topic")


def _completion_mode(topics: Topics, main: dict[str, Any], node_names: list[str]) -> tuple[str, list[str]]:
    """Input mode of the completion node and the pipeline nodes it needs."""
    use_projection = PROJECTION_NODE in node_names
    if topics.points and (use_projection or main.get("input", "points") == "points" or not topics.sparse_depth):
        mode = "projection" if use_projection else "points"
    else:
        mode = "sparse_depth"
    if mode != "sparse_depth" and not topics.points:
        raise ReplayError(f"the pipeline takes LiDAR points but the bag has none (sparse depth: {topics.sparse_depth})")
    if mode == "sparse_depth" and not topics.sparse_depth:
        raise ReplayError("the pipeline takes sparse_depth but the bag has no sparse depth topic")
    if mode == "sparse_depth":
        node_names = [n for n in node_names if n != PROJECTION_NODE]
    return mode, node_names


def _ground_truth(opts: ReplayOptions, topics: Topics) -> tuple[Optional[str], bool, Optional[str]]:
    """(ground-truth source, split the scans here, held-out points topic). Estimation (the node
    never sees LiDAR) is scored against every point of the bag's scans when it has no depth_gt."""
    gt_source = "depth" if topics.depth_gt else ("points" if topics.points else None)
    if opts.pipeline == "estimation":
        if opts.evaluate and gt_source is None:
            raise ReplayError("nothing to score monocular depth against: the bag has no ground-truth depth "
                              "topic and no LiDAR points")
        return gt_source, False, topics.points if gt_source == "points" else None
    if opts.pipeline == "super_resolution" and opts.evaluate and gt_source is None:
        raise ReplayError("super-resolution is scored against a ground-truth depth topic (depth_gt); the bag has none")
    if opts.evaluate and gt_source is None:
        raise ReplayError("nothing to score against: the bag has no ground-truth depth topic and no LiDAR points")
    if gt_source == "points" and not topics.points_holdout and opts.holdout_fraction <= 0:
        raise ReplayError("the bag has no ground-truth depth: give --holdout-fraction > 0 to score against held-out LiDAR")
    split_points = gt_source == "points" and not topics.points_holdout
    holdout_topic = topics.points_holdout or (f"{topics.points}_holdout" if split_points else None)
    return gt_source, split_points, holdout_topic


def make_run_plan(opts: ReplayOptions) -> RunPlan:
    """Check the options, read the parameters and the bag, choose the input mode and ground truth.

    Raises:
        ReplayError / BagError: bad options, parameters, output folder or bag (nothing started).
    """
    check_options(opts)
    params, main_node, node_names, wildcard_only = _node_parameters(opts)
    bag = plan_bag(opts.bag, opts.topics, _calibration_parameter(opts, params, main_node), opts.max_frames,
                   pipeline=opts.pipeline)
    if opts.pipeline == "super_resolution":
        mode = "super_resolution"
        _super_resolution_inputs(bag.topics, params[main_node])
    elif opts.pipeline == "estimation":
        mode = "estimation"
    else:
        mode, node_names = _completion_mode(bag.topics, params[main_node], node_names)
    gt_source, split_points, holdout_topic = _ground_truth(opts, bag.topics)
    return RunPlan(opts, bag, params, node_names, main_node, mode, gt_source, split_points, holdout_topic,
                   wildcard_only)
