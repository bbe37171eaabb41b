"""Replay's options and their checks, the nodes it can start and the ``--params-file`` reader."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from depth_diffusion_ros.tools.bag_io import CAMERA_INFO, DIAGNOSTIC_ARRAY, IMAGE, STRING, probe_writable

#: In-process node classes replay can start: node name -> (module, class).
NODE_CLASSES: dict[str, tuple[str, str]] = {
    "lidar_depth_projection_node": ("depth_diffusion_ros.nodes.lidar_depth_projection_node", "LidarDepthProjectionNode"),
    "depth_completion_node": ("depth_diffusion_ros.nodes.depth_completion_node", "DepthCompletionNode"),
    "depth_evaluation_node": ("depth_diffusion_ros.nodes.depth_evaluation_node", "DepthEvaluationNode"),
    "depth_super_resolution_node": ("depth_diffusion_ros.nodes.depth_super_resolution_node",
                                    "DepthSuperResolutionNode"),
    "depth_estimation_node": ("depth_diffusion_ros.nodes.depth_estimation_node", "DepthEstimationNode"),
}
EVAL_NODE = "depth_evaluation_node"
SR_NODE = "depth_super_resolution_node"
COMPLETION_NODE = "depth_completion_node"
PROJECTION_NODE = "lidar_depth_projection_node"
ESTIMATION_NODE = "depth_estimation_node"
#: ``--pipeline``: completion (lidar_depth_projection_node / depth_completion_node),
#: super_resolution (depth_super_resolution_node) or estimation (depth_estimation_node: the
#: image alone); all scored by depth_evaluation_node.
PIPELINES = ("completion", "super_resolution", "estimation")
#: Nodes of each pipeline; the params-file entries of the other pipelines' nodes are ignored.
PIPELINE_NODES = {
    "completion": (PROJECTION_NODE, COMPLETION_NODE),
    "super_resolution": (SR_NODE,),
    "estimation": (ESTIMATION_NODE,),
}
#: Topics recorded into the output bag (relative to --namespace) and their types.
RECORDED_TOPICS: dict[str, str] = {
    "depth/image": IMAGE,
    "depth/camera_info": CAMERA_INFO,
    "depth/uncertainty": IMAGE,
    "evaluation/metrics": STRING,
    "diagnostics": DIAGNOSTIC_ARRAY,
}
#: Bag roles that have a ``--ROLE-topic`` option.
TOPIC_ROLES = ("image", "camera_info", "points", "sparse_depth", "depth_gt", "points_holdout", "depth_lr",
               "depth_lr_camera_info", "image_aux")


#: What replay writes into its output folder (``--overwrite`` removes these, nothing else).
OUTPUTS = ("report.json", "figures", "output_bag")


class ReplayError(RuntimeError):
    """Replay cannot start or continue (bad bag, topics, parameters or output folder)."""


@dataclass
class ReplayOptions:
    """Options of :func:`~depth_diffusion_ros.tools.replay.replay` (the CLI flags of the same names).

    Units: ``rate`` is a factor on the recorded timing (0 = one frame at a time),
    ``frame_timeout`` / ``startup_timeout`` are seconds, ``holdout_fraction`` is the share of each
    LiDAR scan held out for scoring, in [0, 1). ``topics`` maps a role (:data:`TOPIC_ROLES`) to
    a bag topic chosen instead of the detected one; ``node_params`` are extra parameters of the
    pipeline's main node; ``evaluate=False`` runs without the evaluation node. ``overwrite``
    lets replay replace its outputs (:data:`OUTPUTS`) in an output folder that is not empty;
    ``onnx_cache`` is where a torch checkpoint given to an ONNX Runtime / TensorRT backend is
    exported (default :func:`~depth_diffusion_ros.tools.onnx_cache.default_cache_dir`).
    """

    bag: Path
    output: Path
    backend: Optional[str] = None
    params_file: Optional[Path] = None
    node_params: dict[str, Any] = field(default_factory=dict)  # extra parameters of the pipeline's main node
    rate: float = 0.0
    holdout_fraction: float = 0.1
    seed: int = 0
    frame_timeout: float = 120.0
    startup_timeout: float = 30.0
    max_frames: Optional[int] = None
    figures: bool = True
    max_figures: int = 20
    topics: dict[str, Optional[str]] = field(default_factory=dict)
    namespace: str = ""
    domain_id: Optional[int] = None
    storage: str = "mcap"
    progress: bool = True
    evaluate: bool = True
    label: str = ""
    pipeline: str = "completion"  # or "super_resolution", "estimation" (see PIPELINES)
    overwrite: bool = False  # replace replay's outputs in a non-empty output folder
    onnx_cache: Optional[Path] = None  # where torch checkpoints are exported for onnxruntime/tensorrt


def check_options(opts: ReplayOptions) -> None:
    """Check the numeric options, the pipeline name and that the output folder is writable.

    Raises:
        ReplayError: ``rate < 0``, ``holdout_fraction`` outside [0, 1), an unknown pipeline or an
            output folder that cannot be created or written (the message names the option).
    """
    if opts.rate < 0:
        raise ReplayError(f"--rate must be >= 0, got {opts.rate}")
    if not 0.0 <= opts.holdout_fraction < 1.0:
        raise ReplayError(f"--holdout-fraction must be in [0, 1), got {opts.holdout_fraction}")
    if opts.pipeline not in PIPELINES:
        raise ReplayError(f"--pipeline {opts.pipeline!r}: choose one of {PIPELINES}")
    _check_output_dir(Path(opts.output))


def claim_output(opts: ReplayOptions) -> None:
    """Make the output folder replay's: refuse one that is not empty unless ``opts.overwrite``,
    in which case replay's previous outputs (:data:`OUTPUTS`) are removed (so that no old report
    or figure is left beside the new ones); other files are left alone.

    Raises:
        ReplayError: the folder is not empty and ``overwrite`` is false, or it cannot be written.
    """
    import shutil

    out = Path(opts.output)
    if out.exists() and not out.is_dir():
        raise ReplayError(f"output {out} exists and is not a folder")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and not opts.overwrite:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise ReplayError(f"output folder {out} is not empty ({shown}): give --overwrite to replace "
                          "replay's outputs there, or choose another -o/--output")
    for name in OUTPUTS:
        target = out / name
        try:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
        except OSError as exc:
            raise ReplayError(f"--overwrite: cannot remove {target}: {exc.strerror or exc}") from exc
    _check_output_dir(out)


def _check_output_dir(path: Path) -> None:
    try:
        probe_writable(path)
    except OSError as exc:
        raise ReplayError(f"output directory {path} is not writable: {exc.strerror or exc}") from exc


def load_params_file(path: Optional[Path | str]) -> dict[str, dict[str, Any]]:
    """ROS 2 parameter YAML -> node name -> parameters.

    Accepts ``node_name:``, ``/ns/node_name:`` and ``/**:`` (applies to every node) keys with
    ``ros__parameters``. Raises ReplayError naming the file for unreadable YAML or a bad layout.
    """
    if not path:
        return {}
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ReplayError(f"cannot read --params-file {p}: {exc}") from exc
    if not isinstance(data, dict):
        raise ReplayError(f"--params-file {p}: expected a mapping of node names to ros__parameters")
    out: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if not isinstance(value, dict) or "ros__parameters" not in value:
            raise ReplayError(f"--params-file {p}: entry {key!r} has no ros__parameters")
        name = str(key).strip("/").rsplit("/", 1)[-1] if key != "/**" else "/**"
        out.setdefault(name, {}).update(value["ros__parameters"] or {})
    return out
