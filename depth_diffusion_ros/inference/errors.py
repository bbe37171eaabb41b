"""Errors of the inference layer.

* :class:`BackendError` (from :mod:`depth_diffusion_ros.runtime.errors`) — a model, engine or
  runtime cannot run: missing/mismatched file, runtime not installed, unsupported option.
* :class:`FrameError` — this frame cannot be used (wrong shapes or dtypes, no sparse depth, a
  super-resolution scale the backend does not accept); the pipeline keeps working for the next
  frame. ``reason`` is the drop-counter key a node reports.
"""
from __future__ import annotations

from depth_diffusion_ros.runtime.errors import BackendError

#: Why a completion model with ``mask_unsupported`` (no trained monocular branch) cannot run
#: without LiDAR.
MONOCULAR_REFUSAL = ("this model has no trained monocular branch (config mask_unsupported: true): it needs "
                     "sparse depth with at least one valid pixel")


class FrameError(ValueError):
    """A frame the pipeline cannot use; the message names the problem, ``reason`` is a short key
    (``bad_frame``, ``empty_sparse_depth``, ``size_mismatch``, ``bad_scale``, ...)."""

    def __init__(self, message: str, reason: str = "bad_frame") -> None:
        super().__init__(message)
        self.reason = reason


__all__ = ["BackendError", "FrameError", "MONOCULAR_REFUSAL"]
