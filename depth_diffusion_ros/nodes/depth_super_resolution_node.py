"""depth_super_resolution_node: colour image + low-resolution depth -> depth at the colour resolution.

Colour-guided depth super-resolution (CDSR): joins ``image``, ``camera_info`` and ``depth_lr``
(and ``depth_lr/camera_info`` when ``use_depth_camera_info`` is true) by approximate time, runs
the super-resolution backend chosen by ``backend`` (``bicubic``, ``guided_filter`` and
``joint_bilateral`` run anywhere; ``torch`` runs DSR-Diff, by default the shipped demo weights;
``onnxruntime`` / ``tensorrt`` run exported models where available) and publishes depth at the
image's resolution in the colour camera frame.

The scale factor is ``image width / depth_lr width`` and must be an integer, the same for rows
and columns; learned backends accept only their trained range (the shipped DSR-Diff weights: x2..x16). A frame
with another scale is dropped with a message naming both sizes (reason ``bad_scale`` or
``scale_out_of_range``).

Subscribed:
    ``image`` (sensor_msgs/Image rgb8 | bgr8 | mono8): the guidance image (H x W).
    ``camera_info`` (sensor_msgs/CameraInfo): intrinsics of ``image`` (P if rectified, else K;
    ``binning_x/y`` and ``roi`` applied as image_geometry does: see
    :mod:`depth_diffusion_ros.ros.camera_info` for what is refused, and why).
    ``depth_lr`` (sensor_msgs/Image 16UC1 mm | 32FC1 m, 0/NaN = missing): h x w with H = s*h,
    W = s*w, registered to ``image``: when both headers name a frame, the same ``frame_id``
    (otherwise the frame is dropped as ``frame_mismatch``).
    ``depth_lr/camera_info`` (CameraInfo), when ``use_depth_camera_info``: intrinsics of
    ``depth_lr``; its size must match ``depth_lr``, and when its intrinsics differ from the colour
    camera's (rescaled to h x w) by more than ``intrinsics_tolerance`` pixels, the LR depth is
    re-rendered into the colour camera's intrinsics at h x w first (z-buffer reprojection).

Published (header = the colour image's header; size = H x W):
    ``depth/image`` (Image 32FC1, metres, NaN = no estimate).
    ``depth/camera_info`` (CameraInfo): intrinsics of ``depth/image`` (= ``camera_info``).
    ``depth/points`` (PointCloud2, organised, x y z rgb, is_dense false), when ``publish_points``
    and someone subscribes.
    ``depth/colormap`` (Image rgb8), when ``publish_colormap`` and someone subscribes.
    ``depth/uncertainty`` (Image 32FC1, metres), when the backend returns one (``ensemble_size`` > 1).
    ``diagnostics`` (diagnostic_msgs/DiagnosticArray).

Parameters: see :data:`PARAMETERS`; backend options as listed in :data:`BACKEND_OPTIONS`. The
frame (scale check, the depth camera's intrinsics, hole filling, the ensemble) is
:class:`~depth_diffusion_ros.inference.pipelines.SuperResolutionPipeline`'s job.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

from sensor_msgs.msg import CameraInfo, Image

from depth_diffusion_ros.inference.backends import SUPER_RESOLUTION_BACKENDS, make_super_resolution_backend
from depth_diffusion_ros.inference.pipelines import SuperResolutionPipeline
from depth_diffusion_ros.nodes.health import StageTimer
from depth_diffusion_ros.nodes.inputs import check_registered, image_intrinsics
from depth_diffusion_ros.nodes.depth_node import DepthNode, depth_node_parameters
from depth_diffusion_ros.nodes.parameters import (
    LEARNED_BACKEND_OPTIONS,
    ParameterError,
    ParamSpec,
    learned_backend_parameter_specs,
    select_backend_options,
)
from depth_diffusion_ros.nodes.process import run_node
from depth_diffusion_ros.ros import camera_info_to_intrinsics, depth_from_image, rgb_from_image

NODE_NAME = "depth_super_resolution_node"

#: backend name -> node parameters passed to ``make_super_resolution_backend`` (same names). A
#: parameter at its "unset" value (see ``_UNSET``) is not passed: the backend's default applies.
BACKEND_OPTIONS: dict[str, tuple[str, ...]] = {
    "bicubic": (),
    "guided_filter": ("radius", "eps"),
    "joint_bilateral": ("diameter", "sigma_color", "sigma_space"),
    **LEARNED_BACKEND_OPTIONS,
}
#: The parameters of the classical backends whose value means "unset" (the learned backends' are
#: :data:`~depth_diffusion_ros.nodes.parameters.LEARNED_UNSET`).
_UNSET: dict[str, Any] = {"radius": 0, "sigma_space": 0.0}

#: Every parameter this node declares (the config/launch tests read this table).
PARAMETERS: tuple[ParamSpec, ...] = depth_node_parameters(
    ParamSpec("backend", "guided_filter", "super-resolution backend", read_only=True,
              choices=tuple(SUPER_RESOLUTION_BACKENDS)),
    *learned_backend_parameter_specs(
        model_path="checkpoint directory of a learned backend; '' with backend torch = the shipped DSR-Diff "
                   "demo weights",
        num_inference_steps="DDIM steps of the DSR-Diff guidance recovery; 0 = the model's default",
        ensemble_size="guidance samples per frame; > 1 also publishes depth/uncertainty",
        seed="seed of the initial guidance noise (same seed -> same depth for the same input)",
    ),
    ParamSpec("radius", 0, "guided_filter: window radius in output pixels; 0 = a quarter of the scale",
              read_only=True, range=(0, 256)),
    ParamSpec("eps", 0.01, "guided_filter: regularisation in squared [0, 1] intensity units",
              read_only=True, range=(1e-8, 10.0)),
    ParamSpec("diameter", -1, "joint_bilateral: filter diameter in pixels; -1 = from sigma_space",
              read_only=True, range=(-1, 255)),
    ParamSpec("sigma_color", 6.0, "joint_bilateral: range sigma in 8-bit intensity units",
              read_only=True, range=(1e-3, 1000.0)),
    ParamSpec("sigma_space", 0.0, "joint_bilateral: spatial sigma in output pixels; 0 = half the scale",
              read_only=True, range=(0.0, 1000.0)),
    ParamSpec("max_scale", 16, "largest accepted integer scale factor for classical backends (learned "
              "backends use their trained range)", read_only=True, range=(1, 64)),
    ParamSpec("use_depth_camera_info", False, "also subscribe to depth_lr/camera_info and use the depth "
              "camera's intrinsics (size check, reprojection when they differ)", read_only=True),
    ParamSpec("intrinsics_tolerance", 0.5, "pixels the depth camera's intrinsics may differ from the colour "
              "camera's (rescaled to the LR size) before depth_lr is re-rendered", read_only=True,
              range=(0.0, 1000.0)),
    ParamSpec("min_depth", 0.01, "nearest depth_lr value used (metres); nearer ones (and denormals) are holes",
              read_only=True, range=(0.0, 1000.0)),
    ParamSpec("max_depth", 100.0, "farthest depth_lr value used (metres); farther ones are holes",
              read_only=True, range=(0.0, 1.0e6)),
)


def backend_options(backend: str, params: dict[str, Any]) -> dict[str, Any]:
    """Keyword options for ``make_super_resolution_backend(backend, **options)`` from parameters."""
    return select_backend_options(BACKEND_OPTIONS, backend, params, _UNSET)


class DepthSuperResolutionNode(DepthNode):
    """Depth at the colour resolution from image + camera_info + low-resolution depth.

    Raises:
        ParameterError: on construction, for a bad parameter or backend option (named).
        BackendError: on construction, when the backend cannot load its model (file named).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, PARAMETERS, **kwargs)
        p = self.params
        options = backend_options(p["backend"], p)
        try:
            backend = make_super_resolution_backend(p["backend"], **options)
        except (ValueError, TypeError) as exc:
            raise ParameterError(f"backend {p['backend']!r} rejected options {options}: {exc}") from exc
        self.pipeline = SuperResolutionPipeline(backend, p["max_scale"], p["intrinsics_tolerance"],
                                                min_depth=p["min_depth"], max_depth=p["max_depth"])
        scales = f"x{self.pipeline.min_scale}..x{self.pipeline.max_scale}"
        topics: dict[str, type] = {"image": Image, "camera_info": CameraInfo, "depth_lr": Image}
        if p["use_depth_camera_info"]:
            topics["depth_lr/camera_info"] = CameraInfo
        self.start_io("depth super-resolution", topics, {"backend": p["backend"], "scales": scales},
                      f"backend {p['backend']} {options}, scales {scales}, "
                      f"depth camera_info {'used' if p['use_depth_camera_info'] else 'not used'}")

    def on_frame(self, image: Image, camera_info: CameraInfo, depth_msg: Image,
                 depth_info: Optional[CameraInfo] = None) -> None:
        """Super-resolve one synchronised frame and publish the outputs."""
        self.health.frame_in()
        timer = StageTimer()
        colour = image_intrinsics(image, camera_info)
        check_registered("depth_lr", depth_msg, image)
        self.pipeline.scale(image.width, image.height, depth_msg.width, depth_msg.height)  # before decoding
        rgb = rgb_from_image(image)
        depth_lr = depth_from_image(depth_msg)
        depth_intrinsics = camera_info_to_intrinsics(depth_info) if depth_info is not None else None
        timer.mark("inputs")
        output = self.pipeline(rgb, depth_lr, colour, depth_intrinsics)
        self.publish(timer, output, image.header, camera_info)


def main(args: Optional[list[str]] = None) -> int:
    """Console script ``depth_super_resolution_node``."""
    return run_node(DepthSuperResolutionNode, args, NODE_NAME)


if __name__ == "__main__":
    sys.exit(main())
