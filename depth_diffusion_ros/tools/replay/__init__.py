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

``--pipeline estimation`` runs ``depth_estimation_node`` on ``image`` and ``camera_info`` alone
(monocular depth; backend ``torch``, ``onnxruntime`` or ``tensorrt`` with ``--model-path``) and
scores its ``depth/image`` against ``depth_gt`` where the bag has it, else against every point of
the bag's LiDAR scans projected into the camera (the node never sees them; no hold-out).

Latency is the wall time from publishing a frame's last input message to receiving its
``depth/image`` (transport + synchronisation + inference); it is meaningful with ``--rate 0``.

Modules, in the order a replay uses them: :mod:`.options` (options, node table, params files),
:mod:`.bag_plan` (topics, frames, calibration), :mod:`.plan` (node set, input mode, ground
truth), :mod:`.wiring` (parameters, remaps, published topics), :mod:`.node_graph` (the rclpy
graph), :mod:`.state` (per-run shared state, output bag), :mod:`.player` (publishing and
waiting), :mod:`.scoring` (report entries, figures, skipped tally), :mod:`.session`
(:func:`replay`) and :mod:`.cli`.
"""
from __future__ import annotations

from depth_diffusion_ros.tools.replay.bag_plan import (
    BagPlan,
    Frame,
    Topics,
    calibration_segments,
    detect_topics,
    iter_frames,
    plan_bag,
)
from depth_diffusion_ros.tools.replay.cli import add_arguments, options_from_args, print_summary, run
from depth_diffusion_ros.tools.replay.node_graph import NodeGraph
from depth_diffusion_ros.tools.replay.options import (
    EVAL_NODE,
    NODE_CLASSES,
    PIPELINE_NODES,
    PIPELINES,
    RECORDED_TOPICS,
    SR_NODE,
    ReplayError,
    ReplayOptions,
    load_params_file,
)
from depth_diffusion_ros.tools.replay.plan import RunPlan, make_run_plan
from depth_diffusion_ros.tools.replay.session import ReplayResult, replay

__all__ = [
    "BagPlan",
    "EVAL_NODE",
    "Frame",
    "NODE_CLASSES",
    "NodeGraph",
    "PIPELINES",
    "PIPELINE_NODES",
    "RECORDED_TOPICS",
    "ReplayError",
    "ReplayOptions",
    "ReplayResult",
    "RunPlan",
    "SR_NODE",
    "Topics",
    "add_arguments",
    "calibration_segments",
    "detect_topics",
    "iter_frames",
    "load_params_file",
    "make_run_plan",
    "options_from_args",
    "plan_bag",
    "print_summary",
    "replay",
    "run",
]
