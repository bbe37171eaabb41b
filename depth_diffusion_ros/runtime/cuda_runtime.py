"""Thin wrapper over the CUDA runtime API (NVIDIA's ``cuda-python`` package) for TensorRT.

TensorRT's Python API works on raw device pointers; this module gives the few calls the engine
builder (INT8 calibration) and the TensorRT backend need: device memory, async copies on a
stream, stream sync, CUDA graph capture/launch and the GPU name for the engine cache key.
No torch, no pycuda. Every call checks the returned ``cudaError_t`` and raises CudaError.

``load_cuda()`` imports ``cuda.bindings.runtime`` (cuda-python >= 12.6) or the older
``cuda.cudart``. Tests pass a fake module with the same functions instead (see
``test/fake_tensorrt.py``): CUDA and TensorRT cannot run on the CPU-only CI machine.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np


class CudaError(RuntimeError):
    """A CUDA runtime call failed (the message names the call and the error)."""


def load_cuda() -> Any:
    """Import the CUDA runtime bindings; raises ImportError with an install hint."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6

        return cudart
    except ImportError:
        pass
    try:
        from cuda import cudart  # type: ignore[no-redef]  # cuda-python < 12.6

        return cudart
    except ImportError as exc:
        raise ImportError(
            "the CUDA runtime bindings are not installed: pip install cuda-python "
            "(matching the CUDA version of your TensorRT / JetPack)"
        ) from exc


class CudaRuntime:
    """Checked calls on one CUDA runtime module (real ``cuda-python`` or a test fake).

    Pointers and streams are the bindings' own handle objects (``int()`` gives the address
    TensorRT's ``set_tensor_address`` wants).
    """

    def __init__(self, cudart: Optional[Any] = None) -> None:
        self.cudart = cudart if cudart is not None else load_cuda()

    def _check(self, name: str, result: Any) -> Any:
        if isinstance(result, tuple):
            err, rest = result[0], result[1:]
        else:
            err, rest = result, ()
        if int(err) != 0:
            raise CudaError(f"{name} failed: {err!r}")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else rest

    def device_name(self, device: int = 0) -> str:
        """Name of CUDA device ``device`` (e.g. 'NVIDIA H100 80GB HBM3', 'Orin')."""
        props = self._check("cudaGetDeviceProperties", self.cudart.cudaGetDeviceProperties(device))
        name = props.name
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
        return str(name).strip()

    def malloc(self, nbytes: int) -> int:
        """Device allocation of ``nbytes`` (>= 1) bytes; returns the address."""
        return int(self._check("cudaMalloc", self.cudart.cudaMalloc(max(int(nbytes), 1))))

    def free(self, ptr: int) -> None:
        self._check("cudaFree", self.cudart.cudaFree(ptr))

    def stream_create(self) -> Any:
        return self._check("cudaStreamCreate", self.cudart.cudaStreamCreate())

    def stream_destroy(self, stream: Any) -> None:
        self._check("cudaStreamDestroy", self.cudart.cudaStreamDestroy(stream))

    def stream_synchronize(self, stream: Any) -> None:
        self._check("cudaStreamSynchronize", self.cudart.cudaStreamSynchronize(stream))

    def htod_async(self, dst_ptr: int, src: np.ndarray, stream: Any) -> None:
        """Copy a C-contiguous host array to device memory at ``dst_ptr`` (async on ``stream``)."""
        src = np.ascontiguousarray(src)
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(
            "cudaMemcpyAsync(H2D)",
            self.cudart.cudaMemcpyAsync(dst_ptr, src.ctypes.data, src.nbytes, kind, stream),
        )

    def dtoh_async(self, dst: np.ndarray, src_ptr: int, stream: Any) -> None:
        """Copy device memory into the C-contiguous host array ``dst`` (async on ``stream``)."""
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(
            "cudaMemcpyAsync(D2H)",
            self.cudart.cudaMemcpyAsync(dst.ctypes.data, src_ptr, dst.nbytes, kind, stream),
        )

    def dtod_async(self, dst_ptr: int, src_ptr: int, nbytes: int, stream: Any) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        self._check(
            "cudaMemcpyAsync(D2D)", self.cudart.cudaMemcpyAsync(dst_ptr, src_ptr, nbytes, kind, stream)
        )

    # CUDA graphs: capture one step's work once, replay it with one launch per step.
    def begin_capture(self, stream: Any) -> None:
        mode = self.cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._check("cudaStreamBeginCapture", self.cudart.cudaStreamBeginCapture(stream, mode))

    def end_capture(self, stream: Any) -> Any:
        """End capture and instantiate; returns the executable graph."""
        graph = self._check("cudaStreamEndCapture", self.cudart.cudaStreamEndCapture(stream))
        return self._check("cudaGraphInstantiate", self.cudart.cudaGraphInstantiate(graph, 0))

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        self._check("cudaGraphLaunch", self.cudart.cudaGraphLaunch(graph_exec, stream))
