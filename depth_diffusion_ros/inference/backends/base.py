"""The backend interface shared by every pipeline and node.

A backend turns one frame into metric depth. Classical backends (IP-Basic, nearest fill,
guided filter, joint bilateral) and learned ones (torch, onnxruntime, tensorrt) offer the same
two protocols, so a node's ``backend`` parameter is the only thing that changes.
Backends are looked up by name in :mod:`depth_diffusion_ros.inference.backends` and imported
lazily: asking for ``onnxruntime`` never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, runtime_checkable

import numpy as np

from depth_diffusion_ros.geometry.intrinsics import Intrinsics


class BackendError(RuntimeError):
    """A backend cannot run: missing or mismatched model/engine file, unsupported shape.

    The message names the file (when there is one) and what differs.
    """


@dataclass
class DepthResult:
    """Output of a backend for one frame.

    depth: (H, W) float32 metres, 0 where the backend has no estimate.
    uncertainty: (H, W) float32 metres (per-pixel standard deviation over an ensemble of
        diffusion samples), or None when the backend does not estimate it.
    """

    depth: np.ndarray
    uncertainty: Optional[np.ndarray] = None


@runtime_checkable
class CompletionBackend(Protocol):
    """Depth completion (sparse LiDAR + image) or monocular depth (sparse_depth is None)."""

    name: str

    def infer(
        self, rgb: np.ndarray, sparse_depth: Optional[np.ndarray], intrinsics: Intrinsics
    ) -> DepthResult:
        """rgb: (H, W, 3) uint8; sparse_depth: (H, W) float32 m, 0 = missing, or None."""
        ...


@runtime_checkable
class SuperResolutionBackend(Protocol):
    """Colour-guided depth super-resolution: low-resolution depth + high-resolution image."""

    name: str

    def infer(self, rgb: np.ndarray, depth_lr: np.ndarray) -> DepthResult:
        """rgb: (H, W, 3) uint8; depth_lr: (h, w) float32 m, 0 = missing; returns (H, W)."""
        ...


#: Why a completion model with ``mask_unsupported`` (no trained monocular branch) refuses a frame
#: without LiDAR, instead of returning an empty depth image.
MONOCULAR_REFUSAL = ("this model has no trained monocular branch (config mask_unsupported: true): it needs "
                     "sparse depth with at least one valid pixel")
