"""How the nodes are wired to the bag: their parameters, remaps and the topics the player publishes.

Remaps map each node's relative input topics onto the bag's topics, as a launch file would; every
node gets reliable QoS in and out (``reliability``, ``output_reliability``) so that no frame is
lost in transport.
"""
from __future__ import annotations

import importlib
from typing import Any, Optional

import numpy as np

from depth_diffusion_ros.tools.bag_io import CAMERA_INFO, IMAGE, POINTCLOUD2
from depth_diffusion_ros.tools.replay.options import (
    COMPLETION_NODE,
    ESTIMATION_NODE,
    EVAL_NODE,
    NODE_CLASSES,
    PROJECTION_NODE,
    SR_NODE,
    ReplayError,
)
from depth_diffusion_ros.tools.replay.plan import RunPlan


def publish_types(run: RunPlan) -> dict[str, str]:
    """Bag topic -> message type of every topic the player publishes."""
    topics = run.topics
    publish: dict[str, str] = {topics.image: IMAGE, topics.camera_info: CAMERA_INFO}
    if run.mode == "super_resolution":
        publish[topics.depth_lr] = IMAGE  # type: ignore[index]
        if run.main_params.get("use_depth_camera_info"):
            publish[topics.depth_lr_camera_info] = CAMERA_INFO  # type: ignore[index]
    elif run.mode == "sparse_depth":
        publish[topics.sparse_depth] = IMAGE  # type: ignore[index]
    elif run.mode == "estimation":
        if topics.image_aux:
            publish[topics.image_aux] = IMAGE
    else:
        publish[topics.points] = POINTCLOUD2  # type: ignore[index]
    if run.opts.evaluate:
        if run.gt_source == "depth":
            publish[topics.depth_gt] = IMAGE  # type: ignore[index]
        else:
            publish[run.holdout_topic] = POINTCLOUD2  # type: ignore[index]
    return publish


def remaps(run: RunPlan) -> dict[str, dict[str, str]]:
    """Node name -> {relative input topic: bag topic}."""
    topics = run.topics
    out: dict[str, dict[str, str]] = {
        COMPLETION_NODE: {"image": topics.image, "camera_info": topics.camera_info},
        ESTIMATION_NODE: {"image": topics.image, "camera_info": topics.camera_info},
        PROJECTION_NODE: {"points": topics.points or "points", "camera_info": topics.camera_info},
        EVAL_NODE: {"camera_info": topics.camera_info, "depth_gt": topics.depth_gt or "depth_gt",
                    "points_holdout": run.holdout_topic or "points_holdout"},
        SR_NODE: {"image": topics.image, "camera_info": topics.camera_info, "depth_lr": topics.depth_lr or "depth_lr",
                  "depth_lr/camera_info": topics.depth_lr_camera_info or "depth_lr/camera_info"},
    }
    if run.mode == "points":
        out[COMPLETION_NODE]["points"] = topics.points  # type: ignore[assignment]
    elif run.mode == "sparse_depth":
        out[COMPLETION_NODE]["sparse_depth"] = topics.sparse_depth  # type: ignore[assignment]
    elif run.mode == "estimation" and topics.image_aux:
        out[ESTIMATION_NODE]["image_aux"] = topics.image_aux
    return out


def wire_parameters(run: RunPlan) -> None:
    """Complete ``run.params``: the completion node's ``input``, reliable QoS, the evaluation setup
    (for the estimation pipeline: the Eigen protocol, Garg crop and 80 m cap, where the
    evaluation node's parameters do not say otherwise).

    The evaluation node's entry is dropped when the run does not score.
    """
    if run.mode == "points":
        run.main_params["input"] = "points"
    elif run.mode in ("sparse_depth", "projection"):  # projection: from the projection node, same namespace
        run.main_params["input"] = "sparse_depth"
    for name in run.node_names + [EVAL_NODE]:
        run.params[name].update({"reliability": "reliable", "output_reliability": "reliable"})
    run.params[EVAL_NODE].update({"ground_truth": run.gt_source or "depth", "report_path": ""})
    if run.mode == "estimation" and run.topics.image_aux:  # the bag has an auxiliary view: subscribe it
        run.main_params.setdefault("use_image_aux", True)
    if run.mode == "estimation":  # monocular depth: the Eigen protocol (Garg crop, 80 m cap) unless set
        run.params[EVAL_NODE].setdefault("crop", "garg")
        run.params[EVAL_NODE].setdefault("max_depth", 80.0)
    if not run.opts.evaluate:
        run.params.pop(EVAL_NODE, None)
    check_parameter_names(run)


#: Parameters every rclpy node declares itself (not in the nodes' PARAMETERS tables).
RCLPY_PARAMETERS = ("use_sim_time",)


def declared_parameters(name: str) -> set[str]:
    """Names of the parameters node ``name`` declares (its PARAMETERS table and rclpy's own)."""
    _cls, module = node_class(name)
    return {s.name for s in getattr(module, "PARAMETERS", ())} | set(RCLPY_PARAMETERS)


def check_parameter_names(run: RunPlan) -> None:
    """Every parameter given to a node must be one it declares (a typo must not silently run
    the defaults); names that came only from the params file's ``/**`` entry are dropped where
    the node does not declare them, as ROS applies ``/**``.

    Raises:
        ReplayError: naming the node, the unknown names and the node's parameters.
    """
    for name in run.started_nodes:
        declared = declared_parameters(name)
        params = run.params[name]
        for key in [k for k in params if k not in declared and k in run.wildcard_only.get(name, ())]:
            params.pop(key)
        unknown = sorted(k for k in params if k not in declared)
        if unknown:
            raise ReplayError(f"{name} has no parameter {', '.join(map(repr, unknown))} (from --param / "
                              f"--params-file); its parameters: {', '.join(sorted(declared))}")


def calibrated_nodes(run: RunPlan) -> list[str]:
    """The started nodes that take ``T_camera_lidar``: the projection node, the completion node
    projecting points itself, the evaluation node scoring held-out points."""
    needs_T = {PROJECTION_NODE: True, COMPLETION_NODE: run.mode == "points", EVAL_NODE: run.gt_source == "points"}
    return [n for n in run.started_nodes if needs_T.get(n)]


def segment_parameters(run: RunPlan, T_camera_lidar: Optional[np.ndarray]) -> dict[str, dict[str, Any]]:
    """Parameters of the nodes started for one calibration segment (its ``T_camera_lidar``)."""
    seg_params = {n: dict(run.params[n]) for n in run.started_nodes}
    if T_camera_lidar is not None:
        t_list = [float(v) for v in T_camera_lidar.reshape(-1)]
        for n in calibrated_nodes(run):
            seg_params[n]["T_camera_lidar"] = t_list
    return seg_params


def node_class(name: str) -> tuple[type, Any]:
    """(node class, its module) of a node of :data:`NODE_CLASSES`; ReplayError when not installed."""
    module_name, cls_name = NODE_CLASSES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ReplayError(f"node {name} is not available in this installation: {exc}") from exc
    return getattr(module, cls_name), module


def coerce_params(name: str, module: Any, params: dict[str, Any]) -> list[Any]:
    """Parameter list for rclpy, typed after the node's PARAMETERS table.

    Raises:
        ReplayError: a name the node does not declare, or a value its parameter table refuses
            (the message names it).
    """
    from rclpy.parameter import Parameter

    specs = {s.name: s for s in getattr(module, "PARAMETERS", ())}
    out = []
    for key, value in params.items():
        spec = specs.get(key)
        if specs and spec is None and key not in RCLPY_PARAMETERS:
            raise ReplayError(f"{name} has no parameter {key!r}; its parameters: {', '.join(sorted(specs))}")
        if spec is not None:
            try:
                value = spec.coerce(value)
            except ValueError as exc:
                raise ReplayError(str(exc)) from exc
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value) \
                and any(isinstance(v, float) for v in value):
            value = [float(v) for v in value]
        out.append(Parameter(key, value=value))
    return out
