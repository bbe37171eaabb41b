"""``depth-diffusion-ros replay BAG``: play a bag through the nodes over DDS, record and score.

What it does:

1. Reads the bag (rosbags; MCAP or sqlite3) and finds its topics: image, camera_info, LiDAR
   points or sparse depth, ground-truth depth, held-out points, ``/tf_static`` (defaults are the
   kitti-to-bag names; ``--*-topic`` options override). Messages are grouped into frames around
   each image by log time.
2. Starts the nodes in this process (rclpy nodes composed in one ``MultiThreadedExecutor``):
   the nodes listed in ``--params-file`` (ROS 2 parameter YAML; default: ``depth_completion_node``
   alone) plus ``depth_evaluation_node``, with their relative topics remapped onto the bag's topics
   (as a launch file would) and reliable QoS in and out (``reliability``, ``output_reliability``)
   so that no frame is lost in transport.
   A frame without its own camera_info reuses the previous one (re-stamped), as bags that record
   camera_info once need.
   ``T_camera_lidar`` comes from the bag's ``/tf_static`` (the params file's only when the bag has
   none) and overrides the nodes' parameter; when the static calibration changes
   (KITTI object frames each have their own), the nodes are restarted for the next segment.
3. Publishes the bag's messages: ``--rate 0`` (default) publishes one frame, waits for the
   pipeline's ``depth/image`` for that frame (or ``--frame-timeout``), then the next; ``--rate R``
   keeps the recorded timing sped up R times.
4. Scores with ``depth_evaluation_node`` (the one scoring implementation): against the bag's
   ground-truth depth topic when there is one, otherwise against LiDAR points held out from the
   input (``--holdout-fraction`` of each scan, chosen with ``--seed`` and the frame index, removed
   before the nodes see the scan, exactly as ``kitti-to-bag --holdout-fraction`` does).
5. Writes ``OUTPUT/report.json`` (flushed after every frame; per-frame metrics in KITTI units,
   latency in ms, the mean, ``skipped: {reason: count}``), ``OUTPUT/output_bag`` (what the nodes
   published: depth/image, depth/camera_info, depth/uncertainty, evaluation/metrics, diagnostics)
   and ``OUTPUT/figures/frame_NNNNNN.png`` (RGB | sparse input | prediction | ground truth | error).

``--pipeline super_resolution`` runs ``depth_super_resolution_node`` instead (inputs ``image``,
``camera_info``, ``depth_lr`` and, when the bag has it, ``depth_lr/camera_info``; backend via
``--backend``: bicubic, guided_filter, joint_bilateral, torch, ...); its ``depth/image`` is scored
by the same ``depth_evaluation_node`` against the bag's ``depth_gt`` topic.

Latency is the wall time from publishing a frame's last input message to receiving its
``depth/image`` (transport + synchronisation + inference); it is meaningful with ``--rate 0``.
"""
from __future__ import annotations

import argparse
import bisect
import importlib
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import yaml

from depth_diffusion_ros.evaluation.report import EvaluationReport, format_table
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from depth_diffusion_ros.tools.bag_io import (
    CAMERA_INFO,
    DIAGNOSTIC_ARRAY,
    IMAGE,
    POINTCLOUD2,
    STRING,
    TF_MESSAGE,
    TYPESTORE,
    BagError,
    BagMessage,
    BagReader,
    BagWriter,
    camera_info_msg_to_intrinsics,
    depth_msg_to_array,
    deserialize,
    holdout_mask,
    image_msg_to_rgb,
    lookup_static_transform,
    pointcloud_msg_to_array,
    select_points,
    stamp_to_ns,
    tf_message_to_transforms,
)

#: In-process node classes replay can start: node name -> (module, class).
NODE_CLASSES: dict[str, tuple[str, str]] = {
    "lidar_depth_projection_node": ("depth_diffusion_ros.nodes.lidar_depth_projection_node", "LidarDepthProjectionNode"),
    "depth_completion_node": ("depth_diffusion_ros.nodes.depth_completion_node", "DepthCompletionNode"),
    "depth_evaluation_node": ("depth_diffusion_ros.nodes.depth_evaluation_node", "DepthEvaluationNode"),
    "depth_super_resolution_node": ("depth_diffusion_ros.nodes.depth_super_resolution_node",
                                    "DepthSuperResolutionNode"),
}
EVAL_NODE = "depth_evaluation_node"
SR_NODE = "depth_super_resolution_node"
#: ``--pipeline``: completion (lidar_depth_projection_node / depth_completion_node) or
#: super_resolution (depth_super_resolution_node); both scored by depth_evaluation_node.
PIPELINES = ("completion", "super_resolution")
#: Nodes of each pipeline; the params-file entries of the other pipeline's nodes are ignored.
PIPELINE_NODES = {
    "completion": ("lidar_depth_projection_node", "depth_completion_node"),
    "super_resolution": (SR_NODE,),
}
#: Topics recorded into the output bag (relative to --namespace) and their types.
RECORDED_TOPICS: dict[str, str] = {
    "depth/image": IMAGE,
    "depth/camera_info": CAMERA_INFO,
    "depth/uncertainty": IMAGE,
    "evaluation/metrics": STRING,
    "diagnostics": DIAGNOSTIC_ARRAY,
}
_SYNC_DROP_REASONS = ("unsynchronized", "late", "queue_full")


class ReplayError(RuntimeError):
    """Replay cannot start or continue (bad bag, topics, parameters or output folder)."""


# ============================================================================================
# Bag plan: topics, frames, calibration segments
# ============================================================================================
@dataclass
class Topics:
    """Bag topics used by replay (None = absent)."""

    image: str
    camera_info: str
    points: Optional[str] = None
    sparse_depth: Optional[str] = None
    depth_gt: Optional[str] = None
    points_holdout: Optional[str] = None
    tf_static: Optional[str] = None
    depth_lr: Optional[str] = None  # super-resolution input (low-resolution depth image)
    depth_lr_camera_info: Optional[str] = None  # its CameraInfo (optional)

    def roles(self) -> dict[str, str]:
        """topic -> role for the topics present."""
        return {t: r for r, t in vars(self).items() if t}


_EXPECTED = {"image": IMAGE, "camera_info": CAMERA_INFO, "points": POINTCLOUD2, "sparse_depth": IMAGE,
             "depth_gt": IMAGE, "points_holdout": POINTCLOUD2, "tf_static": TF_MESSAGE,
             "depth_lr": IMAGE, "depth_lr_camera_info": CAMERA_INFO}


def detect_topics(available: dict[str, tuple[str, int]], overrides: Optional[dict[str, Optional[str]]] = None,
                  pipeline: str = "completion") -> Topics:
    """Choose the bag topics for each role.

    ``available``: topic -> (msgtype, count) from the bag. ``overrides``: role -> topic given by the
    user. Defaults: names containing ``image_raw``/``image_rect``/``image`` (image), ``camera_info``,
    PointCloud2 topics (points; ``*_holdout`` for held-out points), ``sparse_depth``, ``depth_gt``
    or ``groundtruth``, ``/tf_static``; for ``pipeline="super_resolution"``: ``depth_lr`` (an Image
    topic whose name contains ``depth_lr``) and ``depth_lr/camera_info`` (optional).

    Raises:
        ReplayError: a needed topic is missing or has the wrong type; the message lists the bag's
            topics.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v}
    listing = ", ".join(f"{t} ({m})" for t, (m, _) in sorted(available.items())) or "none"

    def of_type(msgtype: str) -> list[str]:
        return sorted(t for t, (m, _) in available.items() if m == msgtype)

    def pick(role: str, candidates: list[str]) -> Optional[str]:
        if role in overrides:
            topic = overrides[role]
            if topic not in available:
                raise ReplayError(f"--{role.replace('_', '-')}-topic {topic} is not in the bag (topics: {listing})")
            if available[topic][0] != _EXPECTED[role]:
                raise ReplayError(f"topic {topic} has type {available[topic][0]}, {role} needs {_EXPECTED[role]}")
            return topic
        return candidates[0] if candidates else None

    images = of_type(IMAGE)
    gt = pick("depth_gt", [t for t in images if "depth_gt" in t or "groundtruth" in t])
    sparse = pick("sparse_depth", [t for t in images if "sparse" in t or "velodyne_raw" in t])
    depth_lr = depth_lr_info = None
    if pipeline == "super_resolution":
        depth_lr = pick("depth_lr", [t for t in images if "depth_lr" in t])
        if depth_lr is None:
            raise ReplayError(f"the super-resolution pipeline needs a low-resolution depth topic (an Image topic "
                              f"named *depth_lr*, or --depth-lr-topic); topics: {listing}")
        depth_lr_info = pick("depth_lr_camera_info", [t for t in of_type(CAMERA_INFO) if t == f"{depth_lr}/camera_info"
                                                       or t == f"{depth_lr.rsplit('/', 1)[0]}/depth_lr_camera_info"])
    colour = [t for t in images if t not in (gt, sparse, depth_lr) and "depth" not in t]
    colour.sort(key=lambda t: (0 if t.endswith(("image_raw", "image_rect_color", "image_rect")) else 1, t))
    image = pick("image", colour)
    if image is None:
        raise ReplayError(f"the bag has no colour image topic (sensor_msgs/msg/Image); topics: {listing}")
    infos = [t for t in of_type(CAMERA_INFO) if t != depth_lr_info]
    same_ns = [t for t in infos if t.rsplit("/", 1)[0] == image.rsplit("/", 1)[0]]
    camera_info = pick("camera_info", same_ns or infos)
    if camera_info is None:
        raise ReplayError(f"the bag has no sensor_msgs/msg/CameraInfo topic for {image}; topics: {listing}")
    clouds = of_type(POINTCLOUD2)
    points = pick("points", [t for t in clouds if not t.endswith("_holdout")])
    holdout = pick("points_holdout", [t for t in clouds if points and t == f"{points}_holdout"])
    tf = pick("tf_static", [t for t in of_type(TF_MESSAGE) if t.endswith("tf_static")])
    if pipeline == "completion" and points is None and sparse is None:
        raise ReplayError(f"the bag has neither LiDAR points (PointCloud2) nor a sparse depth image; topics: {listing}")
    return Topics(image, camera_info, points, sparse, gt, holdout, tf, depth_lr, depth_lr_info)


@dataclass
class Frame:
    """Messages of one camera frame. ``members``: role -> message indices in bag order."""

    index: int
    image_time: int
    members: dict[str, list[int]] = field(default_factory=dict)
    T_camera_lidar: Optional[np.ndarray] = None

    @property
    def last_index(self) -> int:
        return max(i for idx in self.members.values() for i in idx)


@dataclass
class BagPlan:
    """Everything replay needs to know about the bag before publishing."""

    path: Path
    topics: Topics
    frames: list[Frame]
    n_messages: int  # readable messages (fewer than the bag says when it is truncated)
    camera_frame: str
    lidar_frame: Optional[str]
    errors: list[str] = field(default_factory=list)
    ignored_topics: dict[str, str] = field(default_factory=dict)
    unreadable_frames: int = 0  # images the metadata lists but the damaged file does not give
    calibration: Optional[str] = None  # where T_camera_lidar came from


def plan_bag(path: Path | str, overrides: Optional[dict[str, Optional[str]]] = None,
             T_camera_lidar: Optional[np.ndarray] = None, max_frames: Optional[int] = None,
             pipeline: str = "completion") -> BagPlan:
    """Read the bag once: topics, frame grouping and the camera <- LiDAR transform per frame.

    The transform comes from the bag's ``/tf_static`` (the data's own calibration, per frame);
    ``T_camera_lidar`` (a parameter from ``--params-file``) is used only when the bag has none.

    Messages of every other role are attached to the image nearest in log time. A truncated or
    corrupt bag keeps the frames read before the damage (the error is returned in ``errors``).

    Raises:
        ReplayError / BagError: missing or unreadable bag, missing topics, no image, no transform
            for LiDAR input.
    """
    with BagReader(path) as reader:
        topics = detect_topics(reader.topics, overrides, pipeline)
        if pipeline == "super_resolution":  # LiDAR is not an input of super-resolution
            topics.points = topics.points_holdout = topics.tf_static = topics.sparse_depth = None
        roles = topics.roles()
        ignored = {t: m for t, (m, _) in reader.topics.items() if t not in roles}
        declared_images = reader.topics[topics.image][1]
        errors: list[str] = []
        entries: list[tuple[str, int]] = []  # (role, timestamp) per message index
        tf_edges: list[tuple[int, list[tuple[str, str, np.ndarray]]]] = []
        camera_frame, lidar_frame = "", None
        try:
            for msg in reader.messages(roles):
                role = roles[msg.topic]
                entries.append((role, msg.timestamp))
                if role == "tf_static":
                    tf_edges.append((msg.timestamp, tf_message_to_transforms(msg.decode())))
                elif role == "camera_info" and not camera_frame:
                    camera_frame = msg.decode().header.frame_id
                elif role == "points" and lidar_frame is None:
                    lidar_frame = msg.decode().header.frame_id
        except BagError as exc:
            errors.append(str(exc))
    image_times = [t for r, t in entries if r == "image"]
    if not image_times:
        raise ReplayError(f"bag {path}: no readable message on the image topic {topics.image}"
                          + (f" ({errors[0]})" if errors else ""))
    frames = [Frame(i, t) for i, t in enumerate(image_times)]
    for idx, (role, t) in enumerate(entries):
        if role == "tf_static":
            continue
        if role == "image":
            k = bisect.bisect_left(image_times, t)
            while image_times[k] != t:
                k += 1
        else:
            k = bisect.bisect_left(image_times, t)
            if k == len(image_times) or (k > 0 and t - image_times[k - 1] <= image_times[k] - t):
                k -= 1
        frames[k].members.setdefault(role, []).append(idx)
    # the last frame may be incomplete when the bag is truncated: keep it only if it has an image
    frames = [f for f in frames if "image" in f.members]
    if max_frames:
        frames = frames[:max_frames]
    calibration = None
    if topics.points:
        for f in frames:
            latest: dict[tuple[str, str], np.ndarray] = {}  # a later /tf_static replaces an edge
            for ts, es in tf_edges:
                if ts <= f.image_time or not latest:
                    latest.update({(parent, child): T for parent, child, T in es})
            edges = [(parent, child, T) for (parent, child), T in latest.items()]
            f.T_camera_lidar = lookup_static_transform(edges, camera_frame, lidar_frame or "") if edges else None
            if f.T_camera_lidar is not None:
                calibration = "bag /tf_static"
            elif T_camera_lidar is not None:  # the bag has none: the parameter's
                f.T_camera_lidar = np.asarray(T_camera_lidar, dtype=np.float64).reshape(4, 4)
                calibration = "T_camera_lidar parameter"
            else:
                raise ReplayError(
                    f"bag {path}: no /tf_static transform {camera_frame} <- {lidar_frame}; give T_camera_lidar "
                    "for depth_completion_node in --params-file"
                )
    unreadable = max(0, declared_images - len(image_times)) if errors else 0
    return BagPlan(Path(path), topics, frames, len(entries), camera_frame, lidar_frame, errors, ignored, unreadable,
                   calibration)


def iter_frames(plan: BagPlan) -> Iterator[tuple[Frame, dict[str, list[BagMessage]]]]:
    """Yield ``(frame, role -> messages)`` in order, reading the bag a second time.

    Holds only the messages of frames not yet complete. Stops quietly at the damage of a
    truncated bag (``plan_bag`` has recorded it).
    """
    by_index: dict[int, tuple[int, str]] = {}
    for k, f in enumerate(plan.frames):
        for role, idx in f.members.items():
            for i in idx:
                by_index[i] = (k, role)
    pending: dict[int, dict[str, list[BagMessage]]] = {}
    next_frame = 0
    roles = plan.topics.roles()
    with BagReader(plan.path) as reader:
        try:
            for i, msg in enumerate(reader.messages(roles)):
                if i >= plan.n_messages:
                    break
                if i in by_index:
                    k, role = by_index[i]
                    pending.setdefault(k, {}).setdefault(role, []).append(msg)
                while next_frame < len(plan.frames) and plan.frames[next_frame].last_index <= i:
                    yield plan.frames[next_frame], pending.pop(next_frame, {})
                    next_frame += 1
                if next_frame >= len(plan.frames):
                    return
        except BagError:
            return


# ============================================================================================
# Parameters
# ============================================================================================
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


def _node_class(name: str) -> tuple[type, Any]:
    module_name, cls_name = NODE_CLASSES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ReplayError(f"node {name} is not available in this installation: {exc}") from exc
    return getattr(module, cls_name), module


def _coerce_params(name: str, module: Any, params: dict[str, Any]) -> list[Any]:
    """Parameter list for rclpy, typed after the node's PARAMETERS table; warns about unknown names."""
    from rclpy.parameter import Parameter

    specs = {s.name: s for s in getattr(module, "PARAMETERS", ())}
    out = []
    for key, value in params.items():
        spec = specs.get(key)
        if specs and spec is None:
            print(f"replay: warning: {name} has no parameter {key!r} (ignored)", file=sys.stderr)
            continue
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


# ============================================================================================
# The running pipeline (one rclpy context)
# ============================================================================================
class Pipeline:
    """Player, recorder, the pipeline nodes and the evaluation node in one rclpy context."""

    def __init__(self, node_params: dict[str, dict[str, Any]], remaps: dict[str, dict[str, str]],
                 publish_types: dict[str, str], namespace: str, domain_id: int,
                 on_output: Callable[[str, bytes, int], None]) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.nodes: dict[str, Any] = {}
        self._rclpy = rclpy
        try:
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            self.player = Node("ddr_replay_player", context=self.context, namespace=namespace,
                               use_global_arguments=False, enable_rosout=False, start_parameter_services=False)
            self.publishers = {topic: self.player.create_publisher(_rclpy_type(t), topic, qos)
                               for topic, t in publish_types.items()}
            self.recorder = Node("ddr_replay_recorder", context=self.context, namespace=namespace,
                                 use_global_arguments=False, enable_rosout=False, start_parameter_services=False)
            for rel, msgtype in RECORDED_TOPICS.items():
                self.recorder.create_subscription(
                    _rclpy_type(msgtype), rel, (lambda data, rel=rel: on_output(rel, data, time.time_ns())),
                    qos, raw=True)
            for name, params in node_params.items():
                cls, module = _node_class(name)
                cli = ["--ros-args"] + [a for src, dst in remaps.get(name, {}).items() for a in ("-r", f"{src}:={dst}")]
                try:
                    self.nodes[name] = cls(context=self.context, namespace=namespace, cli_args=cli,
                                           use_global_arguments=False,
                                           parameter_overrides=_coerce_params(name, module, params))
                except ValueError as exc:  # ParameterError / bad options: name the node
                    raise ReplayError(f"{name}: {exc}") from exc
                except RuntimeError as exc:  # BackendError: bad model file etc.
                    raise ReplayError(f"{name}: {exc}") from exc
            self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
            for node in (self.player, self.recorder, *self.nodes.values()):
                self.executor.add_node(node)
            self.thread = threading.Thread(target=self.executor.spin, name="replay-executor", daemon=True)
            self.thread.start()
        except BaseException:
            self.close()
            raise

    def wait_connected(self, timeout: float) -> list[str]:
        """Wait until every publisher in this context is matched by every local subscription of its topic.

        Returns the topics still unmatched after ``timeout`` seconds (e.g. QoS-incompatible).
        """
        all_nodes = [self.player, self.recorder, *self.nodes.values()]
        subs: dict[str, int] = {}
        for node in all_nodes:
            for s in node.subscriptions:
                subs[s.topic_name] = subs.get(s.topic_name, 0) + 1
        pubs = [p for node in all_nodes for p in node.publishers
                if p.topic_name in subs and p.topic_name not in ("/rosout", "/parameter_events")]
        end = time.monotonic() + timeout
        while True:
            missing = sorted({p.topic_name for p in pubs if p.get_subscription_count() < subs[p.topic_name]})
            if not missing or time.monotonic() > end:
                return missing
            time.sleep(0.05)

    def health_snapshot(self) -> dict[str, int]:
        """Processing drop counters (not synchroniser ones) summed over the pipeline nodes."""
        out: dict[str, int] = {}
        for name, node in self.nodes.items():
            if name == EVAL_NODE:
                continue
            health = getattr(node, "health", None)
            for reason, n in (getattr(health, "drops", None) or {}).items():
                if reason in _SYNC_DROP_REASONS or reason.startswith("missing_"):
                    continue
                out[reason] = out.get(reason, 0) + int(n)
        return out

    def close(self) -> None:
        """Stop the executor and destroy every node (the evaluation node writes its report)."""
        executor = getattr(self, "executor", None)
        if executor is not None:
            executor.shutdown(timeout_sec=5)
        for node in list(self.nodes.values()) + [getattr(self, "recorder", None), getattr(self, "player", None)]:
            if node is not None:
                try:
                    node.destroy_node()
                except Exception:  # noqa: BLE001 - best effort at shutdown
                    pass
        self._rclpy.try_shutdown(context=self.context)
        thread = getattr(self, "thread", None)
        if thread is not None:
            thread.join(timeout=5)


def _rclpy_type(msgtype: str) -> type:
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


# ============================================================================================
# Replay
# ============================================================================================
@dataclass
class ReplayOptions:
    """Options of :func:`replay` (the CLI flags of the same names)."""

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
    pipeline: str = "completion"  # or "super_resolution" (see PIPELINES)


@dataclass
class _FrameState:
    frame: Frame
    published_at: Optional[float] = None
    output_at: Optional[float] = None
    pred_raw: Optional[bytes] = None
    event: Optional[dict[str, Any]] = None
    skip: Optional[str] = None
    has_gt: bool = False
    figure: Optional[dict[str, Any]] = None
    finished: bool = False  # added to the report


@dataclass
class ReplayResult:
    """What :func:`replay` wrote and measured."""

    report: dict[str, Any]
    report_path: Path
    output_bag: Path
    figures_dir: Optional[Path]
    wall_s: float


def _check_output_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".ddr_write_probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ReplayError(f"output directory {path} is not writable: {exc.strerror or exc}") from exc


def _resolve_domain(domain_id: Optional[int]) -> int:
    if domain_id is not None:
        return int(domain_id)
    env = os.environ.get("ROS_DOMAIN_ID")
    if env and env.isdigit():
        return int(env)
    return random.SystemRandom().randint(1, 101)


def replay(opts: ReplayOptions) -> ReplayResult:
    """Replay ``opts.bag`` through the nodes and score it (see the module docstring).

    Raises:
        ReplayError / BagError: bad bag, topics, parameters or output folder (nothing is started).
    """
    t_start = time.perf_counter()
    if opts.rate < 0:
        raise ReplayError(f"--rate must be >= 0, got {opts.rate}")
    if not 0.0 <= opts.holdout_fraction < 1.0:
        raise ReplayError(f"--holdout-fraction must be in [0, 1), got {opts.holdout_fraction}")
    if opts.pipeline not in PIPELINES:
        raise ReplayError(f"--pipeline {opts.pipeline!r}: choose one of {PIPELINES}")
    sr = opts.pipeline == "super_resolution"
    output = Path(opts.output)
    _check_output_dir(output)
    params = load_params_file(opts.params_file)
    wildcard = params.pop("/**", {})
    other = PIPELINE_NODES["completion" if sr else "super_resolution"]
    for name in [n for n in params if n in other]:
        print(f"replay: note: {name} in --params-file is not part of the {opts.pipeline} pipeline (ignored)",
              file=sys.stderr)
        params.pop(name)
    unknown = [n for n in params if n not in NODE_CLASSES]
    if unknown:
        raise ReplayError(f"--params-file names nodes replay cannot start: {unknown}; known: {sorted(NODE_CLASSES)}")
    if sr:
        main_node, node_names = SR_NODE, [SR_NODE]
    else:
        main_node = "depth_completion_node"
        node_names = [n for n in NODE_CLASSES if n in params and n != EVAL_NODE] or ["depth_completion_node"]
        if "depth_completion_node" not in node_names:
            node_names.append("depth_completion_node")
    for name in node_names + [EVAL_NODE]:
        params[name] = {**wildcard, **params.get(name, {})}
    if opts.backend:
        params[main_node]["backend"] = opts.backend
    params[main_node].update(opts.node_params)
    completion = params[main_node]
    T_param = None if sr else (completion.get("T_camera_lidar")
                               or params.get("lidar_depth_projection_node", {}).get("T_camera_lidar"))

    plan = plan_bag(opts.bag, opts.topics, np.asarray(T_param, float) if T_param else None, opts.max_frames,
                    pipeline=opts.pipeline)
    topics = plan.topics
    if sr:
        mode = "super_resolution"
        if topics.depth_lr_camera_info and "use_depth_camera_info" not in completion:
            completion["use_depth_camera_info"] = True
        if completion.get("use_depth_camera_info") and not topics.depth_lr_camera_info:
            raise ReplayError("use_depth_camera_info is true but the bag has no depth_lr camera_info topic")
    else:
        # input mode of the completion node
        use_projection = "lidar_depth_projection_node" in node_names
        if topics.points and (use_projection or completion.get("input", "points") == "points" or not topics.sparse_depth):
            mode = "projection" if use_projection else "points"
        else:
            mode = "sparse_depth"
        if mode != "sparse_depth" and not topics.points:
            raise ReplayError(f"the pipeline takes LiDAR points but the bag has none (sparse depth: {topics.sparse_depth})")
        if mode == "sparse_depth" and not topics.sparse_depth:
            raise ReplayError("the pipeline takes sparse_depth but the bag has no sparse depth topic")
        if mode == "sparse_depth":
            node_names = [n for n in node_names if n != "lidar_depth_projection_node"]
    gt_source = "depth" if topics.depth_gt else ("points" if topics.points else None)
    if sr and opts.evaluate and gt_source is None:
        raise ReplayError("super-resolution is scored against a ground-truth depth topic (depth_gt); the bag has none")
    if opts.evaluate and gt_source is None:
        raise ReplayError("nothing to score against: the bag has no ground-truth depth topic and no LiDAR points")
    if gt_source == "points" and not topics.points_holdout and opts.holdout_fraction <= 0:
        raise ReplayError("the bag has no ground-truth depth: give --holdout-fraction > 0 to score against held-out LiDAR")
    split_points = gt_source == "points" and not topics.points_holdout
    holdout_topic = topics.points_holdout or (f"{topics.points}_holdout" if split_points else None)

    # topics the player publishes and how the nodes are wired to them
    publish: dict[str, str] = {topics.image: IMAGE, topics.camera_info: CAMERA_INFO}
    if mode == "super_resolution":
        publish[topics.depth_lr] = IMAGE  # type: ignore[index]
        if completion.get("use_depth_camera_info"):
            publish[topics.depth_lr_camera_info] = CAMERA_INFO  # type: ignore[index]
    elif mode != "sparse_depth":
        publish[topics.points] = POINTCLOUD2  # type: ignore[index]
    else:
        publish[topics.sparse_depth] = IMAGE  # type: ignore[index]
    if opts.evaluate:
        if gt_source == "depth":
            publish[topics.depth_gt] = IMAGE  # type: ignore[index]
        else:
            publish[holdout_topic] = POINTCLOUD2  # type: ignore[index]
    remaps: dict[str, dict[str, str]] = {
        "depth_completion_node": {"image": topics.image, "camera_info": topics.camera_info},
        "lidar_depth_projection_node": {"points": topics.points or "points", "camera_info": topics.camera_info},
        EVAL_NODE: {"camera_info": topics.camera_info, "depth_gt": topics.depth_gt or "depth_gt",
                    "points_holdout": holdout_topic or "points_holdout"},
        SR_NODE: {"image": topics.image, "camera_info": topics.camera_info, "depth_lr": topics.depth_lr or "depth_lr",
                  "depth_lr/camera_info": topics.depth_lr_camera_info or "depth_lr/camera_info"},
    }
    if mode == "super_resolution":
        pass  # the SR node has one input layout
    elif mode == "points":
        remaps["depth_completion_node"]["points"] = topics.points  # type: ignore[assignment]
        completion["input"] = "points"
    elif mode == "sparse_depth":
        remaps["depth_completion_node"]["sparse_depth"] = topics.sparse_depth  # type: ignore[assignment]
        completion["input"] = "sparse_depth"
    else:
        completion["input"] = "sparse_depth"  # from the projection node, same namespace
    for name in node_names + [EVAL_NODE]:
        params[name].update({"reliability": "reliable", "output_reliability": "reliable"})
    params[EVAL_NODE].update({"ground_truth": gt_source or "depth", "report_path": ""})
    if not opts.evaluate:
        params.pop(EVAL_NODE, None)

    # ---------------------------------------------------------------- outputs and state
    report_path = output / "report.json"
    figures_dir = output / "figures" if opts.figures else None
    out_bag_path = output / "output_bag"
    meta = {
        "bag": str(plan.path), "label": opts.label, "pipeline": opts.pipeline,
        "backend": completion.get("backend", "(node default)"),
        "nodes": node_names + ([EVAL_NODE] if opts.evaluate else []), "input": mode,
        "ground_truth": gt_source, "ground_truth_topic": topics.depth_gt if gt_source == "depth" else holdout_topic,
        "holdout_fraction": opts.holdout_fraction if split_points else None, "seed": opts.seed if split_points else None,
        "rate": opts.rate, "topics": vars(topics), "frames_in_bag": len(plan.frames),
        "parameters": {n: {k: v for k, v in p.items()} for n, p in params.items()},
        "output_bag": str(out_bag_path), "figures": str(figures_dir) if figures_dir else None,
        "ignored_topics": plan.ignored_topics, "calibration": plan.calibration,
    }
    report = EvaluationReport(report_path, meta)
    for err in plan.errors:
        report.add_error(err)
    report.flush()
    states = [_FrameState(f) for f in plan.frames]
    state_by_stamp: dict[int, _FrameState] = {}
    lock = threading.Condition()
    node_skips: dict[str, int] = {}
    bag_lock = threading.Lock()

    try:
        writer = BagWriter(out_bag_path, storage=opts.storage, overwrite=True)
        writer.open()
    except BagError as exc:
        raise ReplayError(str(exc)) from exc
    for rel, msgtype in RECORDED_TOPICS.items():
        writer.add_topic(_abs(opts.namespace, rel), msgtype)

    def on_output(rel: str, data: bytes, t_ns: int) -> None:
        with bag_lock:
            writer.write(_abs(opts.namespace, rel), t_ns, data)
        if rel == "depth/image":
            now = time.perf_counter()
            stamp = _header_stamp(data, IMAGE)
            with lock:
                st = state_by_stamp.get(stamp)
                if st is not None and st.output_at is None:
                    st.output_at, st.pred_raw = now, data
                lock.notify_all()
        elif rel == "evaluation/metrics":
            import json

            event = json.loads(deserialize(data, STRING, rel).data)
            with lock:
                if event.get("event") == "frame":
                    st = state_by_stamp.get(int(event["stamp_ns"]))
                    if st is not None:
                        st.event = event
                else:
                    node_skips[event["reason"]] = node_skips.get(event["reason"], 0) + int(event.get("count", 1))
                    st = state_by_stamp.get(event.get("stamp_ns") or -1)
                    if st is not None:
                        st.skip = event["reason"]
                lock.notify_all()

    # ---------------------------------------------------------------- segments
    domain = _resolve_domain(opts.domain_id)
    segments: list[list[int]] = []
    for k, f in enumerate(plan.frames):
        if segments and _same_T(plan.frames[segments[-1][0]].T_camera_lidar, f.T_camera_lidar):
            segments[-1].append(k)
        else:
            segments.append([k])
    report.meta["segments"] = len(segments)
    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan.frames), desc=f"replay {opts.label or completion.get('backend', '')}".strip(), unit="frame")
    pipeline: Optional[Pipeline] = None
    last_info: Optional[BagMessage] = None
    frames_iter = iter_frames(plan)
    try:
        for seg in segments:
            T = plan.frames[seg[0]].T_camera_lidar
            seg_params = {n: dict(params[n]) for n in node_names + ([EVAL_NODE] if opts.evaluate else [])}
            if T is not None:
                t_list = [float(v) for v in T.reshape(-1)]
                needs_T = {"lidar_depth_projection_node": True, "depth_completion_node": mode == "points",
                           EVAL_NODE: gt_source == "points"}
                for n in seg_params:
                    if needs_T.get(n):
                        seg_params[n]["T_camera_lidar"] = t_list
            pipeline = Pipeline(seg_params, remaps, publish, opts.namespace, domain, on_output)
            unmatched = pipeline.wait_connected(opts.startup_timeout)
            if unmatched:
                report.add_error(f"topics not connected after {opts.startup_timeout:.0f} s (QoS?): {unmatched}")
            t0_wall, t0_bag = time.perf_counter(), plan.frames[seg[0]].image_time
            for _ in seg:
                frame, msgs = next(frames_iter)
                st = states[frame.index]
                if msgs.get("camera_info"):
                    last_info = msgs["camera_info"][-1]
                elif last_info is not None and msgs.get("image"):
                    msgs["camera_info"] = [_restamped(last_info, msgs["image"][0])]
                st.has_gt = bool(msgs.get("depth_gt")) or (gt_source == "points" and bool(msgs.get("points")))
                reason = _unpublishable(frame, msgs, mode)
                if reason:
                    st.skip = reason
                    if bar:
                        bar.update(1)
                    continue
                stamp = stamp_to_ns(deserialize(msgs["image"][0].rawdata, IMAGE, topics.image).header.stamp)
                with lock:
                    state_by_stamp[stamp] = st
                if opts.rate > 0:
                    delay = (frame.image_time - t0_bag) / 1e9 / opts.rate - (time.perf_counter() - t0_wall)
                    if delay > 0:
                        time.sleep(delay)
                before = pipeline.health_snapshot()
                held_msgs = _publish_frame(pipeline, frame, msgs, topics, mode, split_points, holdout_topic,
                                           opts, gt_source)
                st.published_at = time.perf_counter()
                if figures_dir is not None and frame.index < opts.max_figures:
                    st.figure = {"msgs": msgs, "held": held_msgs}
                if opts.rate == 0:
                    _wait_frame(st, lock, pipeline, before, opts.frame_timeout, opts.evaluate)
                    _finish_frame(st, report, figures_dir, plan, mode, gt_source)
                if bar:
                    bar.update(1)
            if opts.rate > 0:  # wait for the outputs still in flight
                end = time.perf_counter() + opts.frame_timeout
                with lock:
                    while time.perf_counter() < end and any(
                            states[k].published_at and states[k].output_at is None for k in seg):
                        lock.wait(0.1)
                    end = time.perf_counter() + 10.0  # then the evaluation node's verdicts
                    while time.perf_counter() < end and opts.evaluate and any(
                            states[k].output_at and states[k].has_gt and states[k].event is None
                            and states[k].skip is None for k in seg):
                        lock.wait(0.05)
                for k in seg:
                    _finish_frame(states[k], report, figures_dir, plan, mode, gt_source)
            pipeline.close()
            pipeline = None
    except KeyboardInterrupt:
        report.add_error("interrupted")
    finally:
        if bar:
            bar.close()
        if pipeline is not None:
            pipeline.close()
        with bag_lock:
            writer.close()
        for st in states:  # verdicts that arrived after their frame's wait
            if st.event is not None and not st.finished:
                st.figure = None
                _finish_frame(st, report, None, plan, mode, gt_source)
        # per-frame outcome -> skipped (one reason per frame that was not scored)
        report.skipped = {}
        for st in states:
            if st.event is not None:
                continue
            if st.skip and st.published_at is None:
                reason = st.skip
            elif st.published_at is None:
                reason = "not_played"
            elif st.output_at is None:
                reason = st.skip if st.skip and not st.skip.startswith("no_prediction") else "no_output"
            elif st.skip:
                reason = st.skip
            elif not st.has_gt:
                reason = "no_ground_truth"
            else:
                reason = "not_scored"
            report.skipped[reason] = report.skipped.get(reason, 0) + 1
        if plan.unreadable_frames:
            report.skipped["unreadable_bag"] = plan.unreadable_frames
        report.meta["node_skipped"] = node_skips
        report.meta["wall_s"] = round(time.perf_counter() - t_start, 3)
        report.meta["domain_id"] = domain
        report.flush()
    return ReplayResult(report.to_dict(), report_path, out_bag_path, figures_dir, time.perf_counter() - t_start)


def _abs(namespace: str, rel: str) -> str:
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{rel}"


def _same_T(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.allclose(a, b, atol=1e-9))


def _header_stamp(data: bytes, msgtype: str) -> int:
    return stamp_to_ns(TYPESTORE.deserialize_cdr(data, msgtype).header.stamp)


def _restamped(info: BagMessage, image: BagMessage) -> BagMessage:
    """The previous camera_info with the image's header stamp (bags that record it only once)."""
    msg = info.decode()
    msg.header.stamp = deserialize(image.rawdata, IMAGE, image.topic).header.stamp
    return BagMessage(info.topic, info.msgtype, image.timestamp, bytes(TYPESTORE.serialize_cdr(msg, CAMERA_INFO)))


def _unpublishable(frame: Frame, msgs: dict[str, list[BagMessage]], mode: str) -> Optional[str]:
    if not msgs.get("camera_info"):
        return "no_camera_info"
    if mode == "super_resolution":
        return None if msgs.get("depth_lr") else "no_depth_lr"
    if mode != "sparse_depth" and not msgs.get("points"):
        return "no_lidar"
    if mode == "sparse_depth" and not msgs.get("sparse_depth"):
        return "no_sparse_depth"
    return None


def _publish_frame(pipeline: Pipeline, frame: Frame, msgs: dict[str, list[BagMessage]], topics: Topics,
                   mode: str, split_points: bool, holdout_topic: Optional[str], opts: ReplayOptions,
                   gt_source: Optional[str]) -> Optional[bytes]:
    """Publish a frame's messages (ground truth first, image last); returns the held-out cloud's CDR."""
    pubs = pipeline.publishers
    held_raw: Optional[bytes] = None
    if opts.evaluate and gt_source == "depth":
        for m in msgs.get("depth_gt", []):
            pubs[topics.depth_gt].publish(m.rawdata)  # type: ignore[index]
    for m in msgs.get("camera_info", []):
        pubs[topics.camera_info].publish(m.rawdata)
    if mode == "super_resolution":
        if topics.depth_lr_camera_info in pubs:
            for m in msgs.get("depth_lr_camera_info", []):
                pubs[topics.depth_lr_camera_info].publish(m.rawdata)
        for m in msgs.get("depth_lr", []):
            pubs[topics.depth_lr].publish(m.rawdata)  # type: ignore[index]
    elif mode == "sparse_depth":
        for m in msgs.get("sparse_depth", []):
            pubs[topics.sparse_depth].publish(m.rawdata)  # type: ignore[index]
    else:
        for m in msgs.get("points", []):
            data = m.rawdata
            if split_points:
                cloud = m.decode()
                held = holdout_mask(int(cloud.width) * int(cloud.height), opts.holdout_fraction, opts.seed, frame.index)
                held_raw = bytes(TYPESTORE.serialize_cdr(select_points(cloud, held), POINTCLOUD2))
                data = bytes(TYPESTORE.serialize_cdr(select_points(cloud, ~held), POINTCLOUD2))
                if opts.evaluate:
                    pubs[holdout_topic].publish(held_raw)  # type: ignore[index]
            elif opts.evaluate and gt_source == "points":
                for h in msgs.get("points_holdout", []):
                    held_raw = h.rawdata
                    pubs[holdout_topic].publish(h.rawdata)  # type: ignore[index]
            msgs["points_published"] = [BagMessage(m.topic, m.msgtype, m.timestamp, data)]
            pubs[topics.points].publish(data)  # type: ignore[index]
    for m in msgs["image"]:
        pubs[topics.image].publish(m.rawdata)
    return held_raw


def _wait_frame(st: _FrameState, lock: threading.Condition, pipeline: Pipeline, before: dict[str, int],
                timeout: float, evaluate: bool) -> None:
    """Wait for the frame's depth/image (and its evaluation event), a processing drop, or the timeout."""
    end = time.perf_counter() + timeout
    with lock:
        while st.output_at is None and time.perf_counter() < end:
            lock.wait(0.05)
            after = pipeline.health_snapshot()
            new = {r: n - before.get(r, 0) for r, n in after.items() if n > before.get(r, 0)}
            if new and st.output_at is None:
                lock.wait(0.2)  # an output racing the counter still counts
                if st.output_at is None:
                    st.skip = "node_drop_" + max(new, key=new.get)
                    return
        if st.output_at is None or not evaluate or not st.has_gt:
            return
        end = time.perf_counter() + 10.0
        while st.event is None and st.skip is None and time.perf_counter() < end:
            lock.wait(0.05)


def _finish_frame(st: _FrameState, report: EvaluationReport, figures_dir: Optional[Path], plan: BagPlan,
                  mode: str, gt_source: Optional[str]) -> None:
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
            _draw_figure(path, st, plan, mode, gt_source)
            entry["figure"] = str(path)
        except (ValueError, OSError, BagError) as exc:
            report.add_error(f"figure of frame {st.frame.index}: {exc}")
    st.figure = None
    report.add_entry(entry)


def _draw_figure(path: Path, st: _FrameState, plan: BagPlan, mode: str, gt_source: Optional[str]) -> None:
    from depth_diffusion_ros.evaluation.figures import error_figure

    msgs, held_raw = st.figure["msgs"], st.figure["held"]  # type: ignore[index]
    rgb = image_msg_to_rgb(msgs["image"][0].decode())
    intr = camera_info_msg_to_intrinsics(msgs["camera_info"][0].decode())
    pred = depth_msg_to_array(deserialize(st.pred_raw, IMAGE))  # type: ignore[arg-type]
    if (intr.height, intr.width) != pred.shape:
        intr = intr.scaled(pred.shape[1], pred.shape[0])
    T = st.frame.T_camera_lidar
    if mode == "super_resolution":  # the LR input shown at the output size (nearest neighbour)
        import cv2

        lr = depth_msg_to_array(msgs["depth_lr"][0].decode())
        sparse = cv2.resize(lr, (pred.shape[1], pred.shape[0]), interpolation=cv2.INTER_NEAREST)
    elif mode == "sparse_depth":
        sparse = depth_msg_to_array(msgs["sparse_depth"][0].decode())
    else:
        kept = deserialize(msgs["points_published"][0].rawdata, POINTCLOUD2)
        sparse = project_lidar_to_depth(pointcloud_msg_to_array(kept), T, intr)
    if gt_source == "depth":
        gt = depth_msg_to_array(msgs["depth_gt"][0].decode())
    else:
        gt = project_lidar_to_depth(pointcloud_msg_to_array(deserialize(held_raw, POINTCLOUD2)), T, intr)
    if rgb.shape[:2] != pred.shape:
        import cv2

        rgb = cv2.resize(rgb, (pred.shape[1], pred.shape[0]), interpolation=cv2.INTER_AREA)
    if sparse.shape != pred.shape:
        sparse = None
    if gt.shape != pred.shape:
        gt = None
    error_figure(rgb, sparse, pred, gt, path)


# ============================================================================================
# CLI
# ============================================================================================
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``depth-diffusion-ros replay``."""
    parser.add_argument("bag", type=Path, help="input rosbag2 directory (e.g. from kitti-to-bag)")
    parser.add_argument("-o", "--output", type=Path, default=Path("out/replay"), help="output folder (default out/replay)")
    parser.add_argument("--pipeline", choices=PIPELINES, default="completion",
                        help="completion: depth_completion_node (+ lidar_depth_projection_node) on image + LiDAR/"
                             "sparse depth; super_resolution: depth_super_resolution_node on image + depth_lr")
    parser.add_argument("--backend", default=None,
                        help="backend of the pipeline's node (completion: ip_basic, nearest, torch, onnxruntime, ...; "
                             "super_resolution: bicubic, guided_filter, joint_bilateral, torch, ...)")
    parser.add_argument("--params-file", type=Path, default=None, help="ROS 2 parameter YAML (e.g. config/kitti.yaml)")
    parser.add_argument("--model-path", default=None, help="model checkpoint/ONNX/engine for a learned backend")
    parser.add_argument("--steps", type=int, default=None, help="DDIM inference steps for a diffusion backend")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="extra parameter of the pipeline's node (YAML value), repeatable")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="0 = wait for each frame's output before the next (default); R > 0 = recorded timing x R")
    parser.add_argument("--holdout-fraction", type=float, default=0.1,
                        help="fraction of each LiDAR scan held out for scoring when the bag has no ground truth")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    parser.add_argument("--frame-timeout", type=float, default=120.0, help="seconds to wait for a frame's output")
    parser.add_argument("--max-frames", type=int, default=None, help="replay only the first N frames")
    parser.add_argument("--max-figures", type=int, default=20, help="figures for the first N frames")
    parser.add_argument("--no-figures", action="store_true", help="do not write figures")
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="output bag storage")
    parser.add_argument("--namespace", default="", help="ROS namespace of the nodes")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS domain (default $ROS_DOMAIN_ID, else a random one so that replays never hear each other)")
    for role in ("image", "camera_info", "points", "sparse_depth", "depth_gt", "points_holdout", "depth_lr",
                 "depth_lr_camera_info"):
        parser.add_argument(f"--{role.replace('_', '-')}-topic", dest=f"topic_{role}", default=None,
                            help=f"bag topic of the {role.replace('_', ' ')} (auto-detected by default)")


def options_from_args(args: argparse.Namespace) -> ReplayOptions:
    """ReplayOptions from parsed CLI arguments (``--param`` values parsed as YAML)."""
    node_params: dict[str, Any] = {}
    for item in args.param:
        if "=" not in item:
            raise ReplayError(f"--param {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        node_params[k.strip()] = yaml.safe_load(v)
    if args.model_path:
        node_params["model_path"] = args.model_path
    if args.steps is not None:
        node_params["num_inference_steps"] = args.steps
    return ReplayOptions(
        bag=args.bag, output=args.output, backend=args.backend, params_file=args.params_file,
        node_params=node_params, rate=args.rate, holdout_fraction=args.holdout_fraction, seed=args.seed,
        frame_timeout=args.frame_timeout, max_frames=args.max_frames, figures=not args.no_figures,
        max_figures=args.max_figures, storage=args.storage, namespace=args.namespace, domain_id=args.domain_id,
        topics={r: getattr(args, f"topic_{r}") for r in ("image", "camera_info", "points", "sparse_depth",
                                                         "depth_gt", "points_holdout", "depth_lr",
                                                         "depth_lr_camera_info")},
        pipeline=args.pipeline,
    )


def print_summary(result: ReplayResult) -> None:
    """Per-frame table, mean and where the outputs went."""
    rep = result.report
    rows = [{"frame": f.get("frame_index", i), **f} for i, f in enumerate(rep["frames"])]
    if rep["mean"]:
        rows.append({"frame": "mean", **rep["mean"]})
    print(format_table(rows, [("frame", "frame")]))
    print(f"frames scored: {rep['n_frames']}  skipped: {rep['skipped'] or 'none'}")
    for err in rep["errors"]:
        print(f"error: {err}")
    print(f"report:  {result.report_path}\noutputs: {result.output_bag}")
    if result.figures_dir is not None:
        print(f"figures: {result.figures_dir}")


def run(args: argparse.Namespace) -> int:
    """CLI entry: 0 when at least one frame was scored, 1 when none, 2 on bad input."""
    try:
        result = replay(options_from_args(args))
    except (ReplayError, BagError) as exc:
        print(f"replay: error: {exc}", file=sys.stderr)
        return 2
    print_summary(result)
    return 0 if result.report["n_frames"] else 1
