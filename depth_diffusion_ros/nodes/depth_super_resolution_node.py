"""depth_super_resolution_node: colour image + low-resolution depth -> depth at the colour resolution.

Colour-guided depth super-resolution (CDSR): joins ``image``, ``camera_info`` and ``depth_lr``
(and ``depth_lr/camera_info`` when ``use_depth_camera_info`` is true) by approximate time, runs
the super-resolution backend chosen by ``backend`` (``bicubic``, ``guided_filter`` and
``joint_bilateral`` run anywhere; ``torch`` runs DSR-Diff, by default the shipped demo weights;
``onnxruntime`` / ``tensorrt`` run exported models where available) and publishes depth at the
image's resolution in the colour camera frame.

The scale factor is ``image width / depth_lr width`` and must be an integer, the same for rows
and columns; learned backends accept only their trained range (DSR-Diff demo: x4..x16). A frame
with another scale is dropped with a message naming both sizes (reason ``bad_scale`` or
``scale_out_of_range``).

Subscribed:
    ``image`` (sensor_msgs/Image rgb8 | bgr8 | mono8): the guidance image (H x W).
    ``camera_info`` (sensor_msgs/CameraInfo): intrinsics of ``image`` (P if rectified, else K).
    ``depth_lr`` (sensor_msgs/Image 16UC1 mm | 32FC1 m, 0/NaN = missing): h x w with H = s*h,
    W = s*w, registered to ``image`` (same optical frame).
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

Parameters: see :data:`PARAMETERS`; backend options as listed in :data:`BACKEND_OPTIONS`.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.inference.backends import (
    SUPER_RESOLUTION_BACKENDS,
    make_super_resolution_backend,
)
from depth_diffusion_ros.nodes._common import (
    COMMON_PARAMETERS,
    LEARNED_BACKEND_OPTIONS,
    LEARNED_UNSET,
    DepthOutputs,
    image_intrinsics,
    publish_backend_result,
    learned_backend_parameter_specs,
    select_backend_options,
    NodeHealth,
    ParameterError,
    ParamSpec,
    StageTimer,
    SyncedInputs,
    declare_parameters,
    resample_sparse_depth,
    run_node,
)
from depth_diffusion_ros.ros import (
    InputError,
    camera_info_to_intrinsics,
    depth_from_image,
    rgb_from_image,
)

NODE_NAME = "depth_super_resolution_node"

#: backend name -> node parameters passed to ``make_super_resolution_backend`` (same names). A
#: parameter at its "unset" value (see ``_UNSET``) is not passed: the backend's default applies.
BACKEND_OPTIONS: dict[str, tuple[str, ...]] = {
    "bicubic": (),
    "guided_filter": ("radius", "eps"),
    "joint_bilateral": ("diameter", "sigma_color", "sigma_space"),
    **LEARNED_BACKEND_OPTIONS,
}
_UNSET: dict[str, Any] = {**LEARNED_UNSET, "radius": 0, "sigma_space": 0.0}

#: Every parameter this node declares (the config/launch tests read this table).
PARAMETERS: tuple[ParamSpec, ...] = COMMON_PARAMETERS + (
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
    ParamSpec("publish_points", True, "publish depth/points (only while someone subscribes)", dynamic=True),
    ParamSpec("publish_colormap", True, "publish depth/colormap (only while someone subscribes)", dynamic=True),
    ParamSpec("colormap_min_depth", 0.0, "depth shown as the nearest colour (metres); 0 with max 0 = per frame",
              range=(0.0, 10000.0), dynamic=True),
    ParamSpec("colormap_max_depth", 0.0, "depth shown as the farthest colour (metres); 0 = per frame",
              range=(0.0, 10000.0), dynamic=True),
)


def backend_options(backend: str, params: dict[str, Any]) -> dict[str, Any]:
    """Keyword options for ``make_super_resolution_backend(backend, **options)`` from parameters."""
    return select_backend_options(BACKEND_OPTIONS, _UNSET, backend, params)


def scale_factor(width: int, height: int, width_lr: int, height_lr: int, min_scale: int, max_scale: int) -> int:
    """Integer scale image/depth_lr, or InputError (``bad_scale`` / ``scale_out_of_range``)."""
    if width_lr <= 0 or height_lr <= 0 or width % width_lr or height % height_lr:
        raise InputError(
            f"scale is not an integer: image {width}x{height} / depth_lr {width_lr}x{height_lr} = "
            f"x{width / max(width_lr, 1):.3f} (cols), x{height / max(height_lr, 1):.3f} (rows)",
            reason="bad_scale",
        )
    sx, sy = width // width_lr, height // height_lr
    if sx != sy:
        raise InputError(
            f"scale differs between columns (x{sx}) and rows (x{sy}): image {width}x{height}, "
            f"depth_lr {width_lr}x{height_lr}", reason="bad_scale",
        )
    if not min_scale <= sx <= max_scale:
        raise InputError(
            f"scale x{sx} (image {width}x{height}, depth_lr {width_lr}x{height_lr}) is outside the "
            f"backend's range x{min_scale}..x{max_scale}", reason="scale_out_of_range",
        )
    return sx


def intrinsics_differ(a: Intrinsics, b: Intrinsics, tolerance: float) -> bool:
    """True when focal lengths or principal points differ by more than ``tolerance`` pixels."""
    return max(abs(a.fx - b.fx), abs(a.fy - b.fy), abs(a.cx - b.cx), abs(a.cy - b.cy)) > tolerance


class DepthSuperResolutionNode(Node):
    """Depth at the colour resolution from image + camera_info + low-resolution depth.

    Raises:
        ParameterError: on construction, for a bad parameter or backend option (named).
        BackendError: on construction, when the backend cannot load its model (file named).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        p = self.params = declare_parameters(self, PARAMETERS)
        options = backend_options(p["backend"], p)
        try:
            self.backend = make_super_resolution_backend(p["backend"], **options)
        except (ValueError, TypeError) as exc:
            raise ParameterError(f"backend {p['backend']!r} rejected options {options}: {exc}") from exc
        self.min_scale = int(getattr(self.backend, "min_scale", 1))
        self.max_scale = int(getattr(self.backend, "max_scale", p["max_scale"]))
        self.health = NodeHealth(self, "depth super-resolution", p, extra={
            "backend": p["backend"], "scales": f"x{self.min_scale}..x{self.max_scale}"})
        self.outputs = DepthOutputs(self, p)
        topics: dict[str, type] = {"image": Image, "camera_info": CameraInfo, "depth_lr": Image}
        if p["use_depth_camera_info"]:
            topics["depth_lr/camera_info"] = CameraInfo
        self.inputs = SyncedInputs(self, topics, self.on_frame, self.health, p)
        self.get_logger().info(
            f"backend {p['backend']} {options}, scales x{self.min_scale}..x{self.max_scale}, "
            f"depth camera_info {'used' if p['use_depth_camera_info'] else 'not used'}"
        )

    def _depth_lr(self, depth_msg: Image, depth_info: Optional[CameraInfo], colour: Intrinsics) -> np.ndarray:
        depth_lr = depth_from_image(depth_msg)
        h, w = depth_lr.shape
        if depth_info is not None:
            lr_intr = camera_info_to_intrinsics(depth_info)
            if (lr_intr.width, lr_intr.height) != (w, h):
                raise InputError(
                    f"depth_lr is {w}x{h} but depth_lr/camera_info is {lr_intr.width}x{lr_intr.height}",
                    reason="size_mismatch",
                )
            target = colour.scaled(w, h)
            if intrinsics_differ(lr_intr, target, float(self.params["intrinsics_tolerance"])):
                depth_lr = resample_sparse_depth(depth_lr, lr_intr, target)
        if not np.any(depth_lr > 0):
            raise InputError("depth_lr has no valid pixel (all 0/NaN)", reason="empty_depth_lr")
        return depth_lr

    def on_frame(self, image: Image, camera_info: CameraInfo, depth_msg: Image,
                 depth_info: Optional[CameraInfo] = None) -> None:
        """Super-resolve one synchronised frame and publish the outputs."""
        self.health.frame_in()
        timer = StageTimer()
        colour = image_intrinsics(image, camera_info)
        scale_factor(image.width, image.height, depth_msg.width, depth_msg.height, self.min_scale, self.max_scale)
        rgb = rgb_from_image(image)
        depth_lr = self._depth_lr(depth_msg, depth_info, colour)
        timer.mark("inputs")
        result = self.backend.infer(rgb, depth_lr)
        publish_backend_result(self, timer, result, colour, image, camera_info, rgb)


def main(args: Optional[list[str]] = None) -> int:
    """Console script ``depth_super_resolution_node``."""
    return run_node(DepthSuperResolutionNode, args, NODE_NAME)


if __name__ == "__main__":
    sys.exit(main())
