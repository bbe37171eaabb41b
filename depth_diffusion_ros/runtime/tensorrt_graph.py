"""One TensorRT engine on a CUDA stream, and the DDIM step loop kept on the GPU (torch-free).

Run time (TensorRT 10/11 name-based API): ``Runtime.deserialize_cuda_engine`` ->
``create_execution_context`` -> ``set_input_shape`` for dynamic inputs -> ``set_tensor_address``
-> ``execute_async_v3(stream)``. :class:`DeviceStepLoop` keeps the latents and the condition in
device memory between denoising steps: per step only the two int64 timesteps travel host ->
device; after a warm-up step the step's work (enqueue + latents copy-back) is captured once in a
CUDA graph and replayed per step (``use_cuda_graph``), which removes the per-step launch
overhead of small latents.

The decisions (:func:`read_tensor_specs`, :func:`resolve_input_shapes`) are plain functions
tested with a clearly labelled fake TensorRT on CPU-only CI (``test/fake_tensorrt.py``); the
engine I/O is a thin layer over :class:`depth_diffusion_ros.runtime.cuda_runtime.CudaRuntime`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from depth_diffusion_ros.runtime.errors import BackendError


@dataclass(frozen=True)
class TensorSpec:
    """One engine I/O tensor: shape (-1 = dynamic axis), numpy dtype, direction, profile range."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    is_input: bool
    profile: Optional[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = None


def read_tensor_specs(engine: Any, trt: Any) -> dict[str, TensorSpec]:
    """TensorSpec of every I/O tensor of a deserialized engine (TensorRT 10 name-based API)."""
    specs = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        profile = None
        if is_input and any(d < 0 for d in shape):
            profile = tuple(tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, 0))
        specs[name] = TensorSpec(name, shape, np.dtype(trt.nptype(engine.get_tensor_dtype(name))), is_input, profile)
    return specs


def resolve_input_shapes(
    specs: Mapping[str, TensorSpec], feed: Mapping[str, np.ndarray], path: str
) -> dict[str, tuple[int, ...]]:
    """Check a feed against the engine's inputs; returns {input name: shape to set}.

    Raises BackendError naming the engine file and the input when one is missing, has another
    dtype or rank, differs on a static axis, or lies outside the optimisation profile.
    """
    shapes = {}
    for name, spec in specs.items():
        if not spec.is_input:
            continue
        if name not in feed:
            raise BackendError(f"{path}: input {name!r} not given (engine inputs: "
                               f"{sorted(n for n, s in specs.items() if s.is_input)})")
        value = np.asarray(feed[name])
        if value.dtype != spec.dtype:
            raise BackendError(f"{path}: input {name!r} is {value.dtype}, the engine wants {spec.dtype}")
        if value.ndim != len(spec.shape) or any(s >= 0 and s != v for s, v in zip(spec.shape, value.shape)):
            raise BackendError(f"{path}: input {name!r} has shape {value.shape}, the engine wants "
                               f"{tuple('?' if s < 0 else s for s in spec.shape)}")
        if spec.profile is not None:
            lo, _, hi = spec.profile
            if not all(a <= v <= b for a, v, b in zip(lo, value.shape, hi)):
                raise BackendError(f"{path}: input {name!r} shape {value.shape} is outside the engine's "
                                   f"optimisation profile [{lo}, {hi}]; rebuild with a wider profile")
        shapes[name] = tuple(value.shape)
    return shapes


class TensorRTGraph:
    """One engine: deserialised context, device buffers, a CUDA stream; numpy in, numpy out.

    engine_path: serialized engine. trt / cuda: the tensorrt module and a CudaRuntime (tests
    pass fakes). meta: decoded ``ddr.*`` metadata of the ONNX it was built from.
    Raises BackendError naming the file if it is missing or cannot be deserialised (another
    TensorRT version or GPU: rebuild with force_engine_update).
    """

    def __init__(self, engine_path: Union[str, Path], trt: Any, cuda: Any, meta: Optional[dict] = None) -> None:
        self.path = str(engine_path)
        self.trt, self.cuda = trt, cuda
        self.meta = dict(meta or {})
        if not Path(engine_path).is_file():
            raise BackendError(f"engine file not found: {engine_path}")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BackendError(
                f"{self.path}: TensorRT {trt.__version__} cannot deserialize this engine (built by another "
                f"TensorRT version or for another GPU, or corrupt); delete it or set force_engine_update"
            )
        self.context = self.engine.create_execution_context()
        self.specs = read_tensor_specs(self.engine, trt)
        self.stream = cuda.stream_create()
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, capacity bytes)
        self.shapes: dict[str, tuple[int, ...]] = {}

    @property
    def input_names(self) -> list[str]:
        return [n for n, s in self.specs.items() if s.is_input]

    @property
    def output_names(self) -> list[str]:
        return [n for n, s in self.specs.items() if not s.is_input]

    def static_shape(self, name: str) -> tuple[Optional[int], ...]:
        return tuple(None if d < 0 else d for d in self.specs[name].shape)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, cap = self.buffers.get(name, (0, 0))
        if cap < nbytes:
            if ptr:
                self.cuda.free(ptr)
            ptr, cap = self.cuda.malloc(nbytes), nbytes
            self.buffers[name] = (ptr, cap)
        return ptr

    def prepare(self, feed_shapes_and_dtypes: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        """Set input shapes, (re)allocate buffers, bind addresses; returns output shapes."""
        shapes = resolve_input_shapes(self.specs, feed_shapes_and_dtypes, self.path)
        for name, shape in shapes.items():
            if any(d < 0 for d in self.specs[name].shape) and not self.context.set_input_shape(name, shape):
                raise BackendError(f"{self.path}: TensorRT rejected shape {shape} for input {name!r}")
        out_shapes = {n: tuple(int(d) for d in self.context.get_tensor_shape(n)) for n in self.output_names}
        for name, shape in list(shapes.items()) + list(out_shapes.items()):
            nbytes = int(np.prod(shape)) * self.specs[name].dtype.itemsize
            self.context.set_tensor_address(name, self._buffer(name, nbytes))
        self.shapes = dict(shapes, **out_shapes)
        return out_shapes

    def ptr(self, name: str) -> int:
        return self.buffers[name][0]

    def enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream):
            raise BackendError(f"{self.path}: execute_async_v3 failed")

    def run(self, feed: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Copy inputs in, execute, copy outputs out (synchronous); numpy arrays both ways."""
        feed = {k: np.ascontiguousarray(v) for k, v in feed.items() if k in self.specs and self.specs[k].is_input}
        out_shapes = self.prepare(feed)
        for name, value in feed.items():
            self.cuda.htod_async(self.ptr(name), value, self.stream)
        self.enqueue()
        outs = {n: np.empty(s, self.specs[n].dtype) for n, s in out_shapes.items()}
        for name, arr in outs.items():
            self.cuda.dtoh_async(arr, self.ptr(name), self.stream)
        self.cuda.stream_synchronize(self.stream)
        return outs

    @staticmethod
    def to_numpy(value: Any) -> np.ndarray:
        return np.asarray(value)

    def close(self) -> None:
        for ptr, _ in self.buffers.values():
            self.cuda.free(ptr)
        self.buffers.clear()


class DeviceStepLoop:
    """The DDIM loop on the GPU: latents and cond stay in device memory between steps.

    step: the ``step`` TensorRTGraph (inputs latents, cond, timestep, prev_timestep; output
    prev_latents). use_cuda_graph: capture one step (enqueue + prev_latents -> latents copy)
    after a warm-up step and replay it with cudaGraphLaunch for the remaining steps.
    """

    def __init__(self, step: TensorRTGraph, use_cuda_graph: bool = True) -> None:
        self.step, self.use_cuda_graph = step, use_cuda_graph
        self._graph: Any = None
        self._graph_shapes: Optional[dict] = None
        self.graph_launches = 0

    def __call__(self, latents: np.ndarray, cond: Any, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
        g, cuda, stream = self.step, self.step.cuda, self.step.stream
        latents = np.ascontiguousarray(latents, np.float32)
        cond = np.ascontiguousarray(np.asarray(cond))
        t0 = np.zeros(1, np.int64)
        g.prepare({"latents": latents, "cond": cond, "timestep": t0, "prev_timestep": t0})
        if self._graph_shapes != g.shapes:
            self._graph = None  # shapes/buffers changed: capture again
        cuda.htod_async(g.ptr("latents"), latents, stream)
        cuda.htod_async(g.ptr("cond"), cond, stream)
        nbytes = latents.nbytes
        keep_alive = []  # host timestep arrays must live until their async copies ran
        for i, (t, prev) in enumerate(pairs):
            ts, ps = np.array([t], np.int64), np.array([prev], np.int64)
            keep_alive += [ts, ps]
            cuda.htod_async(g.ptr("timestep"), ts, stream)
            cuda.htod_async(g.ptr("prev_timestep"), ps, stream)
            if self.use_cuda_graph and self._graph is not None:
                cuda.graph_launch(self._graph, stream)
                self.graph_launches += 1
                continue
            g.enqueue()
            cuda.dtod_async(g.ptr("latents"), g.ptr("prev_latents"), nbytes, stream)
            if self.use_cuda_graph and self._graph is None and i < len(pairs) - 1:
                # warm-up step done (TensorRT may allocate on its first enqueue): capture one step
                cuda.stream_synchronize(stream)
                cuda.begin_capture(stream)
                g.enqueue()
                cuda.dtod_async(g.ptr("latents"), g.ptr("prev_latents"), nbytes, stream)
                self._graph = cuda.end_capture(stream)
                self._graph_shapes = dict(g.shapes)
        out = np.empty_like(latents)
        cuda.dtoh_async(out, g.ptr("latents"), stream)
        cuda.stream_synchronize(stream)
        del keep_alive
        return out

