"""depth_estimation_node: RGB image + CameraInfo -> dense metric depth (monocular, no LiDAR).

Joins ``image`` and ``camera_info`` (and ``image_aux``) by approximate time, runs a monocular
DiffusionDepth, IID-RDepth or DenseDepth model
with the backend chosen by ``backend`` (``torch``, ``onnxruntime``, ``tensorrt``; ``row_median``
runs the row-median reference, a ground-plane prior every model must beat) and publishes
metric depth in the camera frame: for a robot with only a camera. The default model
(``model_path`` '') is the best shipped monocular one, IID-RDepth + AV-LFE
(``weights/iid_rdepth_kitti``, built on the monocular DiffusionDepth's frozen encoder);
``weights/diffusion_depth_kitti_monocular`` is the monocular DiffusionDepth alone (faster, less
accurate: see the README's monocular table).

The learned backends run the model family ``model_path`` holds
(:func:`~depth_diffusion_ros.inference.backends.make_estimation_backend`): a DenseDepth export
(``densedepth.onnx``, from ``depth-diffusion-ros export`` of a DenseDepth checkpoint) or
checkpoint runs as a one-shot regressor (one network pass a frame,
:class:`~depth_diffusion_ros.inference.backends.base.OneShotBackend`): ``num_inference_steps``
is ignored with a logged warning (there are no DDIM steps), ``ensemble_size`` other than 1 stops
the node with an error saying why (every member would be the same map), ``seed`` is unused, and
``depth/uncertainty`` stays silent (advertised, nothing published: the model has no spread to
report; with ``temporal`` the filter's own estimate is published as for every model).

Metric scale across cameras: a monocular model reads depth from how large things look, which the
focal length sets. Models trained on frames brought to one focal length (their
``canonical_focal``, stored with the weights) get every input resized to it first (Metric3D's
canonical camera, :mod:`depth_diffusion_ros.inference.pipelines.estimation`), so the depth stays
metric on a camera with another focal length or image size. ``canonical_focal`` overrides it
(pixels; 0 = off).

Subscribed:
    ``image`` (sensor_msgs/Image rgb8 | bgr8 | mono8): the camera image.
    ``camera_info`` (sensor_msgs/CameraInfo): intrinsics of ``image`` (P if rectified, else K;
    ``binning_x/y`` and ``roi`` applied as image_geometry does: see
    :mod:`depth_diffusion_ros.ros.camera_info` for what is refused, and why).
    ``image_aux`` (sensor_msgs/Image, same size and encodings as ``image``), only with
    ``use_image_aux``: a second view of the scene (the previous frame, a stereo partner), joined
    with the other two by approximate time; an IID-RDepth model with AV-LFE enhances its
    low-level features with it, any other model ignores it. Without ``use_image_aux`` the model
    runs on the image alone.

Published (header = the image's header; size = the input size, or the processing size with
``resize_back`` false):
    ``depth/image`` (Image 32FC1, metres, NaN = no estimate).
    ``depth/camera_info`` (CameraInfo): intrinsics of ``depth/image``.
    ``depth/points`` (PointCloud2, organised, x y z rgb, is_dense false), when ``publish_points``
    and someone subscribes.
    ``depth/colormap`` (Image rgb8, near = red), when ``publish_colormap`` and someone subscribes.
    ``depth/uncertainty`` (Image 32FC1, metres): the standard deviation over the diffusion
    ensemble (``ensemble_size`` > 1), combined with the model's own predicted one when it has an
    uncertainty head, when someone subscribes; never for a DenseDepth model (above).
    ``diagnostics`` (diagnostic_msgs/DiagnosticArray).

Parameters: see :data:`PARAMETERS`; backend options as listed in :data:`BACKEND_OPTIONS`. The
frame (canonical size, padding, the sampler, the ensemble) is
:class:`~depth_diffusion_ros.inference.pipelines.EstimationPipeline`'s job.

Temporal filter (``temporal`` true): as in depth_completion_node
(:class:`~depth_diffusion_ros.inference.temporal.TemporalFilter`, state per camera frame id,
resets on a gap, a backward jump or another size/intrinsics), without the LiDAR check (there is
no LiDAR): the previous depth, moved by ``temporal_ego_motion`` (static, or tf: the camera
frame's motion relative to ``temporal_fixed_frame``), is blended in where it agrees with the
current estimate.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

from sensor_msgs.msg import CameraInfo, Image

from depth_diffusion_ros.inference.backends import ESTIMATION_BACKENDS, make_estimation_backend
from depth_diffusion_ros.inference.pipelines import EstimationPipeline
from depth_diffusion_ros.nodes.depth_node import TEMPORAL_PARAMETERS, DepthNode, depth_node_parameters
from depth_diffusion_ros.nodes.health import StageTimer
from depth_diffusion_ros.nodes.inputs import image_intrinsics
from depth_diffusion_ros.nodes.parameters import (
    LEARNED_BACKEND_OPTIONS,
    ParameterError,
    ParamSpec,
    learned_backend_parameter_specs,
    select_backend_options,
)
from depth_diffusion_ros.nodes.process import run_node
from depth_diffusion_ros.ros import rgb_from_image

NODE_NAME = "depth_estimation_node"
_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
#: The default learned model: the best shipped monocular weights (IID-RDepth + AV-LFE on the
#: frozen encoder of the monocular DiffusionDepth; validation abs_rel 0.188, mean of the three
#: validation sets 0.249 against 0.222 / 0.305 for the monocular DiffusionDepth alone): the
#: checkpoint (torch) and its ONNX export in ``onnx/`` (onnxruntime, tensorrt).
SHIPPED_WEIGHTS = _WEIGHTS / "iid_rdepth_kitti"
#: The monocular DiffusionDepth (``model_path`` of this folder, or its ``onnx/``, runs it), with
#: the row-median reference fitted on its training frames (the row_median backend's default).
MONOCULAR_WEIGHTS = _WEIGHTS / "diffusion_depth_kitti_monocular"
ROW_MEDIAN_REFERENCE = MONOCULAR_WEIGHTS / "row_median_reference.json"
_SHIPPED_FILES = {"torch": SHIPPED_WEIGHTS, "onnxruntime": SHIPPED_WEIGHTS / "onnx",
                  "tensorrt": SHIPPED_WEIGHTS / "onnx", "row_median": ROW_MEDIAN_REFERENCE}

#: backend name -> node parameters passed to ``make_estimation_backend`` (same names); a parameter
#: at its unset value is not passed (the backend's default applies).
BACKEND_OPTIONS: dict[str, tuple[str, ...]] = {"row_median": ("model_path",), **LEARNED_BACKEND_OPTIONS}

#: Every parameter this node declares (the config/launch tests and the README tables read it).
PARAMETERS: tuple[ParamSpec, ...] = depth_node_parameters(
    ParamSpec("backend", "onnxruntime", "estimation backend: a monocular DiffusionDepth or DenseDepth model (torch, "
              "onnxruntime, tensorrt; the family model_path holds) or the row-median reference (row_median)",
              read_only=True, choices=tuple(ESTIMATION_BACKENDS)),
    *learned_backend_parameter_specs(
        model_path="monocular model: ONNX export directory (onnxruntime, tensorrt), torch checkpoint (torch) or "
                   "row_median_reference.json (row_median); a DenseDepth export (densedepth.onnx) or checkpoint "
                   "runs as a one-shot regressor; '' = the best shipped KITTI weights "
                   "(weights/iid_rdepth_kitti: IID-RDepth + AV-LFE; weights/diffusion_depth_kitti_monocular = the "
                   "monocular DiffusionDepth; its row_median_reference.json for row_median)",
        num_inference_steps="DDIM steps; 0 = the model's default; ignored (logged) by a DenseDepth model, which has none",
        ensemble_size="diffusion samples per frame; > 1 also publishes their spread on depth/uncertainty; a DenseDepth "
                      "model needs 1 (refused otherwise: one deterministic pass, no spread)",
        seed="seed of the initial diffusion noise (same seed -> same depth for the same image); unused by DenseDepth",
    ),
    ParamSpec("canonical_focal", -1.0, "focal length (pixels) every image is resized to before the model runs: "
              "-1 = the model's own (stored with its weights), 0 = none (run at the input's focal length)",
              read_only=True, range=(-1.0, 100000.0)),
    ParamSpec("processing_width", 0, "width the backend runs at (pixels); 0 = from canonical_focal (or the input)",
              read_only=True, range=(0, 16384)),
    ParamSpec("processing_height", 0, "height the backend runs at (pixels); 0 = from canonical_focal (or the "
              "input)", read_only=True, range=(0, 16384)),
    ParamSpec("resize_back", True, "publish depth at the input size (nearest neighbour) instead of the "
              "processing size", read_only=True),
    ParamSpec("use_image_aux", False, "subscribe image_aux (a second view: previous frame or stereo partner, the "
              "image's size) and synchronise it with image and camera_info; used by IID-RDepth's AV-LFE",
              read_only=True),
    *TEMPORAL_PARAMETERS,
)


def backend_options(backend: str, params: dict[str, Any]) -> dict[str, Any]:
    """Keyword options for ``make_estimation_backend(backend, **options)`` from node parameters
    (``model_path`` '' = the shipped weights' file for ``backend``)."""
    options = select_backend_options(BACKEND_OPTIONS, backend, params)
    if not options.get("model_path") and backend in _SHIPPED_FILES:
        options["model_path"] = str(_SHIPPED_FILES[backend])
    return options


def make_pipeline(p: dict[str, Any]) -> tuple[EstimationPipeline, dict[str, Any]]:
    """The node's pipeline from its parameters, and the backend options used.

    Raises ParameterError for inconsistent parameters or options a backend rejects; BackendError
    when a model cannot load or cannot run without LiDAR.
    """
    if (p["processing_width"] == 0) != (p["processing_height"] == 0):
        raise ParameterError(
            "parameters 'processing_width' and 'processing_height' must both be 0 or both > 0, "
            f"got {p['processing_width']}x{p['processing_height']}"
        )
    if -1.0 < p["canonical_focal"] < 0.0:
        raise ParameterError(f"parameter 'canonical_focal' = {p['canonical_focal']}: use -1 (the model's), 0 (none) "
                             "or a focal length > 0 in pixels")
    options = backend_options(p["backend"], p)
    try:
        backend = make_estimation_backend(p["backend"], **options)
        size = (p["processing_width"], p["processing_height"]) if p["processing_width"] else None
        focal = None if p["canonical_focal"] < 0 else p["canonical_focal"]
        return EstimationPipeline(backend, size, resize_back=p["resize_back"], canonical_focal=focal), options
    except (ValueError, TypeError) as exc:
        raise ParameterError(f"backend {p['backend']!r} rejected options {options}: {exc}") from exc


class DepthEstimationNode(DepthNode):
    """Monocular metric depth from image + camera_info.

    Raises:
        ParameterError: on construction, for a bad parameter or backend option (named).
        BackendError: on construction, when the backend cannot load its model (file named) or
            the model needs LiDAR.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, PARAMETERS, **kwargs)
        p = self.params
        self.pipeline, options = make_pipeline(p)
        focal = self.pipeline.canonical_focal
        size = f"{p['processing_width']}x{p['processing_height']}" if p["processing_width"] else (
            f"canonical focal {focal:g} px" if focal else "= input")
        topics: dict[str, type] = {"image": Image, "camera_info": CameraInfo}
        if p["use_image_aux"]:
            topics["image_aux"] = Image
            if not self.pipeline.uses_aux:
                self.get_logger().warning("use_image_aux is set but the model has no auxiliary-view module (AV-LFE): "
                                          "image_aux is synchronised and ignored")
        if p["temporal_ego_motion"] == "lidar_odometry":
            raise ParameterError("parameter 'temporal_ego_motion' lidar_odometry needs LiDAR scans: "
                                 "depth_estimation_node has none (use static or tf)")
        temporal = self.start_temporal()
        aux = "used" if p["use_image_aux"] and self.pipeline.uses_aux else (
            "ignored" if p["use_image_aux"] else "off")
        self.start_io("monocular depth estimation", topics,
                      {"backend": p["backend"], "canonical_focal": f"{focal:g} px" if focal else "none",
                       "image_aux": aux},
                      f"backend {p['backend']} {options}, processing size {size}, image_aux {aux}{temporal}")

    def on_frame(self, image: Image, camera_info: CameraInfo, image_aux: Optional[Image] = None) -> None:
        """Estimate depth for one synchronised image (and auxiliary view) and publish the outputs."""
        self.health.frame_in()
        timer = StageTimer()
        intrinsics = image_intrinsics(image, camera_info)
        rgb = rgb_from_image(image)
        rgb_aux = rgb_from_image(image_aux) if image_aux is not None and self.pipeline.uses_aux else None
        timer.mark("inputs")
        output = self.pipeline(rgb, intrinsics, rgb_aux=rgb_aux)
        if self.temporal is not None:
            output, _ = self.apply_temporal(output, self.temporal_frame(image, camera_info))
        self.publish(timer, output, image.header, camera_info)


def main(args: Optional[list[str]] = None) -> int:
    """Console script ``depth_estimation_node``."""
    return run_node(DepthEstimationNode, args, NODE_NAME)


if __name__ == "__main__":
    sys.exit(main())
