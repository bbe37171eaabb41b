"""Backend registry: name -> "module:class", imported only when asked for.

``make_completion_backend("onnxruntime", model_path=...)`` imports only the ONNX Runtime module,
so nodes using onnxruntime or tensorrt run without torch installed. The learned backends of
depth completion and monocular estimation are the same DiffusionDepth runners (a completion
model, or a monocular one); the pipelines decide what a frame gives them. For monocular
estimation the learned backend names also run DenseDepth, a one-shot regressor: the family is
chosen by what ``model_path`` holds (:func:`~depth_diffusion_ros.inference.backends.exported.model_family`:
a DenseDepth export or checkpoint -> :data:`DENSEDEPTH_BACKENDS`).
"""
from __future__ import annotations

import importlib
from typing import Any

from depth_diffusion_ros.inference.errors import BackendError

_PKG = "depth_diffusion_ros.inference.backends"

_DIFFUSION_DEPTH: dict[str, str] = {
    "torch": f"{_PKG}.torch_backend:TorchDiffusionDepthBackend",
    "onnxruntime": f"{_PKG}.onnxruntime_backend:OnnxRuntimeDiffusionDepthBackend",
    "tensorrt": f"{_PKG}.tensorrt_backend:TensorRTDiffusionDepthBackend",
}
COMPLETION_BACKENDS: dict[str, str] = {
    "ip_basic": f"{_PKG}.classical:IPBasicBackend",
    "linear": f"{_PKG}.classical:LinearInterpolationBackend",
    "nearest": f"{_PKG}.classical:NearestFillBackend",
    **_DIFFUSION_DEPTH,
}
#: monocular depth estimation: image only (the row-median reference as the classical peer)
ESTIMATION_BACKENDS: dict[str, str] = {"row_median": f"{_PKG}.classical:RowMedianBackend", **_DIFFUSION_DEPTH}
#: the learned estimation backends for a DenseDepth ``model_path`` (same names, one-shot runners)
DENSEDEPTH_BACKENDS: dict[str, str] = {
    "torch": f"{_PKG}.torch_backend:TorchDenseDepthBackend",
    "onnxruntime": f"{_PKG}.onnxruntime_backend:OnnxRuntimeDenseDepthBackend",
    "tensorrt": f"{_PKG}.tensorrt_backend:TensorRTDenseDepthBackend",
}
SUPER_RESOLUTION_BACKENDS: dict[str, str] = {
    "bicubic": f"{_PKG}.classical:BicubicBackend",
    "guided_filter": f"{_PKG}.classical:GuidedFilterBackend",
    "joint_bilateral": f"{_PKG}.classical:JointBilateralBackend",
    "torch": f"{_PKG}.torch_backend:TorchDSRDiffBackend",
    "onnxruntime": f"{_PKG}.onnxruntime_backend:OnnxRuntimeDSRDiffBackend",
    "tensorrt": f"{_PKG}.tensorrt_backend:TensorRTDSRDiffBackend",
}
#: backends that run a model file (the others are classical methods)
LEARNED_BACKENDS = tuple(_DIFFUSION_DEPTH)


def _load(registry: dict[str, str], kind: str, name: str) -> Any:
    if name not in registry:
        raise BackendError(f"unknown {kind} backend {name!r}; choose one of {sorted(registry)}")
    module_name, attr = registry[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # e.g. torch or onnxruntime missing
        raise BackendError(f"{kind} backend {name!r} is not available here: {exc}") from exc
    return getattr(module, attr)


def make_completion_backend(name: str, **options: Any) -> Any:
    """A depth completion backend by name (see COMPLETION_BACKENDS); options go to its class."""
    return _load(COMPLETION_BACKENDS, "completion", name)(**options)


def make_estimation_backend(name: str, **options: Any) -> Any:
    """A monocular depth estimation backend by name (see ESTIMATION_BACKENDS); a learned one
    (torch, onnxruntime, tensorrt) runs the model family of ``options["model_path"]``: DenseDepth
    (:data:`DENSEDEPTH_BACKENDS`) or the DiffusionDepth family."""
    if name in DENSEDEPTH_BACKENDS:
        from depth_diffusion_ros.inference.backends.exported import model_family

        if model_family(options.get("model_path")) == "densedepth":
            return _load(DENSEDEPTH_BACKENDS, "estimation", name)(**options)
    return _load(ESTIMATION_BACKENDS, "estimation", name)(**options)


def make_super_resolution_backend(name: str, **options: Any) -> Any:
    """A colour-guided super-resolution backend by name (see SUPER_RESOLUTION_BACKENDS)."""
    return _load(SUPER_RESOLUTION_BACKENDS, "super-resolution", name)(**options)


__all__ = [
    "BackendError",
    "COMPLETION_BACKENDS",
    "DENSEDEPTH_BACKENDS",
    "ESTIMATION_BACKENDS",
    "SUPER_RESOLUTION_BACKENDS",
    "LEARNED_BACKENDS",
    "make_completion_backend",
    "make_estimation_backend",
    "make_super_resolution_backend",
]
