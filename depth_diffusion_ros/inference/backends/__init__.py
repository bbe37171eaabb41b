"""Backend registry: name -> "module:factory", imported only when asked for.

``make_completion_backend("onnxruntime", model_path=...)`` imports only the onnxruntime
module, so nodes using onnxruntime or tensorrt run without torch installed.
"""
from __future__ import annotations

import importlib
from typing import Any

from depth_diffusion_ros.inference.backends.base import (
    BackendError,
    CompletionBackend,
    DepthResult,
    SuperResolutionBackend,
)

_PKG = "depth_diffusion_ros.inference.backends"

COMPLETION_BACKENDS: dict[str, str] = {
    "ip_basic": f"{_PKG}.classical:IPBasicBackend",
    "nearest": f"{_PKG}.classical:NearestFillBackend",
    "torch": f"{_PKG}.torch_backend:TorchCompletionBackend",
    "onnxruntime": f"{_PKG}.onnxruntime_backend:OnnxRuntimeCompletionBackend",
    "tensorrt": f"{_PKG}.tensorrt_backend:TensorRTCompletionBackend",
}

SUPER_RESOLUTION_BACKENDS: dict[str, str] = {
    "bicubic": f"{_PKG}.classical:BicubicBackend",
    "guided_filter": f"{_PKG}.classical:GuidedFilterBackend",
    "joint_bilateral": f"{_PKG}.classical:JointBilateralBackend",
    "torch": f"{_PKG}.torch_sr_backend:TorchSuperResolutionBackend",
    "onnxruntime": f"{_PKG}.onnxruntime_backend:OnnxRuntimeSuperResolutionBackend",
    "tensorrt": f"{_PKG}.tensorrt_backend:TensorRTSuperResolutionBackend",
}


def _load(registry: dict[str, str], kind: str, name: str) -> Any:
    if name not in registry:
        raise BackendError(f"unknown {kind} backend {name!r}; choose one of {sorted(registry)}")
    module_name, attr = registry[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # e.g. torch or onnxruntime missing
        raise BackendError(f"{kind} backend {name!r} is not available here: {exc}") from exc
    return getattr(module, attr)


def make_completion_backend(name: str, **options: Any) -> CompletionBackend:
    """Create a depth completion / monocular backend by name (see COMPLETION_BACKENDS)."""
    return _load(COMPLETION_BACKENDS, "completion", name)(**options)


def make_super_resolution_backend(name: str, **options: Any) -> SuperResolutionBackend:
    """Create a colour-guided super-resolution backend by name (see SUPER_RESOLUTION_BACKENDS)."""
    return _load(SUPER_RESOLUTION_BACKENDS, "super-resolution", name)(**options)


__all__ = [
    "BackendError",
    "CompletionBackend",
    "DepthResult",
    "SuperResolutionBackend",
    "COMPLETION_BACKENDS",
    "SUPER_RESOLUTION_BACKENDS",
    "make_completion_backend",
    "make_super_resolution_backend",
]
