"""depth_completion_node: RGB image + CameraInfo + sparse LiDAR depth -> dense metric depth.

Joins ``image``, ``camera_info`` and either ``sparse_depth`` (an image from
``lidar_depth_projection_node`` or a depth sensor) or ``points`` (a LiDAR PointCloud2, projected
here with ``T_camera_lidar``) by approximate time, runs the completion backend chosen by the
``backend`` parameter (``ip_basic`` and ``nearest`` run anywhere; ``torch``, ``onnxruntime``,
``tensorrt`` run DiffusionDepth models) and publishes dense depth in the RGB camera frame.

Subscribed:
    ``image`` (sensor_msgs/Image rgb8 | bgr8 | mono8): the guidance image.
    ``camera_info`` (sensor_msgs/CameraInfo): intrinsics of ``image`` (P if rectified, else K;
    ``binning_x/y`` and ``roi`` applied as image_geometry does: see
    :mod:`depth_diffusion_ros.ros.camera_info` for what is refused, and why).
    ``sparse_depth`` (sensor_msgs/Image 16UC1 mm | 32FC1 m), when ``input`` is ``sparse_depth``:
    registered to ``image``: of the same size and, when both headers name a frame, the same
    ``frame_id`` (otherwise the frame is dropped as ``frame_mismatch``).
    ``points`` (sensor_msgs/PointCloud2), when ``input`` is ``points``.

Published (header = the RGB image's header; size = the processing size):
    ``depth/image`` (Image 32FC1, metres, NaN = no estimate).
    ``depth/camera_info`` (CameraInfo): intrinsics of ``depth/image`` (rescaled when
    ``processing_width/height`` differ from the input).
    ``depth/points`` (PointCloud2, organised, x y z rgb, is_dense false), when ``publish_points``
    and someone subscribes.
    ``depth/colormap`` (Image rgb8, near = red), when ``publish_colormap`` and someone subscribes.
    ``depth/uncertainty`` (Image 32FC1, metres, std over the diffusion ensemble), when the backend
    returns one (``ensemble_size`` > 1) and someone subscribes.
    ``diagnostics`` (diagnostic_msgs/DiagnosticArray).

Parameters: see :data:`PARAMETERS`; the backend options are passed as listed in
:data:`BACKEND_OPTIONS`. The frame itself (processing size, padding, the sampler, the ensemble)
is :class:`~depth_diffusion_ros.inference.pipelines.CompletionPipeline`'s job, or with
``cascade_scale`` > 0 :class:`~depth_diffusion_ros.inference.pipelines.CascadePipeline`'s
(completion at 1/cascade_scale, then super-resolution by ``cascade_backend``).

Temporal filter (``temporal`` true): the output of each frame goes through
:class:`~depth_diffusion_ros.inference.temporal.TemporalFilter`, with its state kept per camera
frame id (the CameraInfo's ``frame_id``, else the image's). The previous filtered depth is
blended in where it agrees with the current single-frame depth and LiDAR; elsewhere the
single-frame depth is kept and ``depth/uncertainty`` (then published for every backend) is
raised. A gap longer than ``temporal_max_gap`` seconds, a backward time jump, or another image
size or intrinsics resets the state, with an info log line naming the reason (also at the first
frame of each frame id). Ego-motion (``temporal_ego_motion``): ``static`` (default) assumes a
static camera — the previous depth is used in place (``T_prev_to_curr`` = identity); on a moving
camera the filter then falls back to single-frame depth wherever the scene moved by more than the
agreement band. ``tf`` looks the camera frame's motion between the two stamps up in tf2,
relative to ``temporal_fixed_frame`` (odom; :class:`~depth_diffusion_ros.nodes.extrinsics.TfEgoMotion`;
needs tf2_ros; a failed lookup is counted and that frame assumes a static camera).
``lidar_odometry`` (``input: points`` only) estimates the motion between consecutive scans with
KISS-ICP (:class:`~depth_diffusion_ros.geometry.odometry.LidarOdometry`, one map per LiDAR frame
id, started afresh whenever the filter's state resets) and warps the previous depth by it into
the current camera.
Temporal prior (``temporal_prior`` true, with ``temporal``; DiffusionDepth backends): before the
model runs, the filter's previous depth, warped the same way
(:meth:`~depth_diffusion_ros.inference.temporal.TemporalFilter.previous`), replaces the model's
first classical fill of the sparse depth wherever it lands (the pipeline's ``prior_depth``), so
the model refines the depth of the previous frames with this scan; disoccluded pixels, the first
frame after a reset and, with ``temporal_prior_lidar_veto`` (default), the pixels near a current
return the previous depth misses (moving objects) keep the single-frame fill.

A plain ``rclpy.node.Node``; see :mod:`depth_diffusion_ros.nodes.process` for why not lifecycle.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_diffusion_ros.geometry.odometry import LidarOdometry, lidar_motion_in_camera
from depth_diffusion_ros.inference.backends import (
    COMPLETION_BACKENDS,
    LEARNED_BACKENDS,
    SUPER_RESOLUTION_BACKENDS,
    make_completion_backend,
    make_super_resolution_backend,
)
from depth_diffusion_ros.inference.pipelines import CascadePipeline, CompletionPipeline
from depth_diffusion_ros.nodes.extrinsics import LidarExtrinsics, transform_parameter_specs
from depth_diffusion_ros.nodes.health import StageTimer
from depth_diffusion_ros.nodes.inputs import check_registered, image_intrinsics
from depth_diffusion_ros.nodes.depth_node import TEMPORAL_PARAMETERS, DepthNode, depth_node_parameters
from depth_diffusion_ros.nodes.parameters import (
    LEARNED_BACKEND_OPTIONS,
    ParameterError,
    ParamSpec,
    learned_backend_parameter_specs,
    select_backend_options,
)
from depth_diffusion_ros.nodes.process import run_node
from depth_diffusion_ros.ros import InputError, depth_from_image, pointcloud2_to_xyz, rgb_from_image

NODE_NAME = "depth_completion_node"
INPUT_CHOICES = ("sparse_depth", "points")

#: backend name -> the parameters passed to ``make_completion_backend`` as keyword options
#: (same names). A parameter left at its "unset" value ('' / [] / 0 steps) is not passed, so the
#: backend's own default applies. A new backend only needs a line here.
BACKEND_OPTIONS: dict[str, tuple[str, ...]] = {
    "ip_basic": ("max_depth", "extrapolate", "blur_type"),
    "linear": (),
    "nearest": (),
    **LEARNED_BACKEND_OPTIONS,
}

#: Every parameter this node declares (the config/launch tests read this table).
PARAMETERS: tuple[ParamSpec, ...] = depth_node_parameters(
    *transform_parameter_specs(),
    ParamSpec("input", "sparse_depth", "sparse input: sparse_depth (an Image) or points (a PointCloud2 "
              "projected with T_camera_lidar)", read_only=True, choices=INPUT_CHOICES),
    ParamSpec("backend", "ip_basic", "completion backend", read_only=True,
              choices=tuple(COMPLETION_BACKENDS)),
    *learned_backend_parameter_specs(
        model_path="model directory or file of a learned backend (ONNX export, torch checkpoint or TensorRT "
                   "engine source)",
        num_inference_steps="DDIM steps of a diffusion backend; 0 = the model's default",
        ensemble_size="diffusion samples per frame; > 1 also publishes depth/uncertainty",
        seed="seed of the initial diffusion noise (same seed -> same depth for the same input)",
    ),
    ParamSpec("extrapolate", True, "ip_basic: extend the top depth of each column to the top of the image",
              read_only=True),
    ParamSpec("blur_type", "bilateral", "ip_basic: final smoothing", read_only=True,
              choices=("bilateral", "gaussian", "none")),
    ParamSpec("min_depth", 0.1, "nearest sparse depth used (metres): LiDAR returns and sparse_depth pixels "
              "nearer than this are ignored", read_only=True, range=(1e-3, 1000.0)),
    ParamSpec("max_depth", 100.0, "farthest sparse depth used (metres): LiDAR returns and sparse_depth pixels "
              "beyond it are ignored; ip_basic's inversion constant", read_only=True, range=(1e-3, 10000.0)),
    ParamSpec("processing_width", 0, "width the backend runs at (pixels); 0 = the input width",
              read_only=True, range=(0, 16384)),
    ParamSpec("processing_height", 0, "height the backend runs at (pixels); 0 = the input height",
              read_only=True, range=(0, 16384)),
    ParamSpec("cascade_scale", 0, "0 = off; s >= 1: complete at 1/s of the input size, then super-resolve to the "
              "input size with cascade_backend (RGB-D-Fusion's cascade)", read_only=True, range=(0, 16)),
    ParamSpec("cascade_backend", "guided_filter", "cascade: the super-resolution backend of the second stage",
              read_only=True, choices=tuple(SUPER_RESOLUTION_BACKENDS)),
    ParamSpec("cascade_model_path", "", "cascade: model of a learned second stage; '' with torch = the shipped "
              "DSR-Diff demo weights", read_only=True),
    *TEMPORAL_PARAMETERS,
    ParamSpec("temporal_prior", False, "temporal: the previous output, moved as for the blend, also replaces the "
              "model's first classical fill of the sparse depth where it lands (DiffusionDepth backends)",
              read_only=True),
    ParamSpec("temporal_prior_lidar_veto", True, "temporal_prior: not within 2 px of a current LiDAR return the "
              "previous depth misses by more than 5 % (moving objects fall back to the single-frame fill)",
              read_only=True),
)


def backend_options(backend: str, params: dict[str, Any]) -> dict[str, Any]:
    """Keyword options for ``make_completion_backend(backend, **options)`` from node parameters.

    Only the parameters listed for ``backend`` in :data:`BACKEND_OPTIONS` and not at their unset
    value are included.
    """
    return select_backend_options(BACKEND_OPTIONS, backend, params)


def make_pipeline(p: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The node's pipeline from its parameters, and the backend options used.

    Raises ParameterError for inconsistent parameters or options a backend rejects; BackendError
    when a model cannot load.
    """
    if (p["processing_width"] == 0) != (p["processing_height"] == 0):
        raise ParameterError(
            "parameters 'processing_width' and 'processing_height' must both be 0 (input size) or both > 0, "
            f"got {p['processing_width']}x{p['processing_height']}"
        )
    if p["cascade_scale"] and p["processing_width"]:
        raise ParameterError("parameter 'cascade_scale' > 0 runs at its own sizes: leave processing_width/height 0")
    options = backend_options(p["backend"], p)
    try:
        backend = make_completion_backend(p["backend"], **options)
        if p["cascade_scale"] == 0:
            size = (p["processing_width"], p["processing_height"]) if p["processing_width"] else None
            return CompletionPipeline(backend, size, min_depth=p["min_depth"], max_depth=p["max_depth"]), options
        sr_options = {"model_path": p["cascade_model_path"]} if (
            p["cascade_backend"] in LEARNED_BACKENDS and p["cascade_model_path"]) else {}
        second = make_super_resolution_backend(p["cascade_backend"], **sr_options)
    except (ValueError, TypeError) as exc:
        raise ParameterError(f"backend {p['backend']!r} rejected options {options}: {exc}") from exc
    return CascadePipeline(backend, second, p["cascade_scale"], p["min_depth"], p["max_depth"]), options


class DepthCompletionNode(DepthNode):
    """Dense depth from image + camera_info + sparse depth (or LiDAR points).

    Raises:
        ParameterError: on construction, for a bad parameter or backend option (named).
        BackendError: on construction, when the backend cannot load its model (file named).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, PARAMETERS, **kwargs)
        p = self.params
        self.extrinsics: Optional[LidarExtrinsics] = None
        if p["input"] == "points":
            self.extrinsics = LidarExtrinsics(self, p["T_camera_lidar"], p["use_tf"])
        self.pipeline, options = make_pipeline(p)
        if p["temporal_ego_motion"] == "lidar_odometry" and p["input"] != "points":
            raise ParameterError("parameter 'temporal_ego_motion' lidar_odometry needs input 'points' (the LiDAR "
                                 f"scans it registers), got input {p['input']!r}")
        #: LiDAR frame id -> its odometry (temporal with lidar_odometry only)
        self.odometry: Optional[dict[str, LidarOdometry]] = {} if (
            p["temporal"] and p["temporal_ego_motion"] == "lidar_odometry") else None
        temporal = self.start_temporal("static camera" if self.odometry is None else "ego-motion from LiDAR odometry")
        if p["temporal_prior"]:
            self._check_temporal_prior(p)
            temporal += ", temporal prior into the model"
        sparse_type = PointCloud2 if p["input"] == "points" else Image
        self.start_io(
            "depth completion", {"image": Image, "camera_info": CameraInfo, p["input"]: sparse_type},
            {"backend": p["backend"], "input": p["input"]},
            f"backend {p['backend']} {options}, input {p['input']}, processing size "
            + (f"{p['processing_width']}x{p['processing_height']}" if p["processing_width"] else "= input")
            + (f", cascade x{p['cascade_scale']} -> {p['cascade_backend']}" if p["cascade_scale"] else "")
            + temporal,
        )

    def on_frame(self, image: Image, camera_info: CameraInfo, sparse_msg: Any) -> None:
        """Complete one synchronised frame and publish the outputs."""
        self.health.frame_in()
        timer = StageTimer()
        intrinsics = image_intrinsics(image, camera_info)
        rgb = rgb_from_image(image)
        motion = None  # lidar_odometry: previous camera -> current camera
        xyz, T = None, None  # noqa: N806
        if self.params["input"] == "points":
            xyz = pointcloud2_to_xyz(sparse_msg)
            if xyz.shape[0] == 0:
                raise InputError(
                    f"PointCloud2 has no finite points ({sparse_msg.width}x{sparse_msg.height} points)",
                    reason="empty_points",
                )
            T = self.extrinsics.lookup(camera_info.header.frame_id, sparse_msg.header.frame_id,  # noqa: N806
                                       sparse_msg.header.stamp)
            if self.odometry is not None:
                lidar_motion = self._lidar_motion(sparse_msg.header.frame_id, xyz)
                motion = None if lidar_motion is None else lidar_motion_in_camera(lidar_motion, T)
            sparse = None
        else:
            check_registered("sparse_depth", sparse_msg, image)
            sparse = depth_from_image(sparse_msg)
        frame = None if self.temporal is None else self.temporal_frame(image, camera_info, motion)
        prior = {} if frame is None or not self.params["temporal_prior"] else {
            "prior_depth": self._temporal_prior(frame, *self.pipeline.output_geometry(rgb, intrinsics))}
        timer.mark("inputs")
        output = self.pipeline(rgb, sparse, intrinsics, points=xyz, T_camera_points=T, **prior)
        if frame is not None:
            output, reset = self.apply_temporal(output, frame)
            if reset is not None and self.odometry is not None:
                self._restart_odometry(sparse_msg.header.frame_id, xyz)
        self.publish(timer, output, image.header, camera_info)

    def _temporal_prior(self, frame: tuple[str, float, Any], shape: tuple[int, int], intrinsics: Any) -> Any:
        """The pipeline's ``prior_depth``: a function of the frame's sparse depth (processing
        size) giving the filter's warped previous depth, vetoed near disagreeing returns with
        ``temporal_prior_lidar_veto``."""
        veto = self.params["temporal_prior_lidar_veto"]
        return lambda sparse: self.temporal.previous(frame[0], frame[1], shape, intrinsics, frame[2],
                                                     sparse if veto else None)

    def _check_temporal_prior(self, p: dict[str, Any]) -> None:
        """temporal_prior needs temporal and a pipeline whose model takes a prior depth."""
        if not p["temporal"]:
            raise ParameterError("parameter 'temporal_prior' needs 'temporal' true (the prior is the filter's "
                                 "previous depth)")
        if not getattr(self.pipeline, "takes_prior_depth", False):
            what = "a cascade" if p["cascade_scale"] else f"backend {p['backend']!r} with this model"
            raise ParameterError(f"parameter 'temporal_prior' needs a DiffusionDepth completion model with classical "
                                 f"fills as inputs, not {what}")

    def _lidar_motion(self, lidar_frame_id: str, xyz: Any) -> Optional[Any]:
        """The scan's motion since the previous one of ``lidar_frame_id`` (LiDAR frame), or None
        for a LiDAR's first scan (lidar_odometry only). The ICP runs on every scan, so its map
        follows the frames the temporal filter then resets on too."""
        odometry = self.odometry.get(lidar_frame_id)
        if odometry is None:
            odometry = self.odometry[lidar_frame_id] = LidarOdometry(max_range=self.params["max_depth"])
        try:
            return odometry.update(xyz)
        except ValueError as exc:  # too few points to register: this frame assumes a static camera
            odometry.reset()
            self.health.count("odometry_failures", f"LiDAR odometry on {lidar_frame_id!r}: {exc}; static camera "
                              "assumed for this frame, odometry restarted")
            return None

    def _restart_odometry(self, lidar_frame_id: str, xyz: Any) -> None:
        """After a reset of the temporal state, that LiDAR's map starts again from this scan (the
        motion across a gap or a time jump is not to be trusted); a fresh map is left as it is."""
        odometry = self.odometry[lidar_frame_id]
        if odometry.frames > 1:
            odometry.reset()
            odometry.update(xyz)


def main(args: Optional[list[str]] = None) -> int:
    """Console script ``depth_completion_node`` (``ros2 run depth_diffusion_ros depth_completion_node``)."""
    return run_node(DepthCompletionNode, args, NODE_NAME)


if __name__ == "__main__":
    sys.exit(main())
