"""FAKE ``tensorrt`` and CUDA runtime modules — test doubles, NOT TensorRT.

TensorRT and CUDA cannot be installed or run on the CPU-only CI machine (the ``tensorrt-cu12``
wheels on PyPI are stubs that download the libraries from NVIDIA's host), so the tests of the
TensorRT builder, engine cache and TensorRT backend inject this fake through ``sys.modules`` /
the ``trt=`` and ``cuda=`` arguments. It mirrors the small part of the TensorRT Python API and
of cuda-python's ``cudart`` that the package uses, with the same call shapes and failure modes
(a build returns None, deserialising an engine from another TensorRT version returns None, a
parser reports errors), and it really computes:

* a "serialized engine" is a magic header + JSON (version, flags, typing) + the ONNX bytes;
* "device memory" is host memory owned by the fake (addresses are real host pointers), so
  cudaMemcpyAsync is ``ctypes.memmove`` and copy bugs corrupt results like on a GPU;
* ``execute_async_v3`` reads the input tensors from the bound addresses, runs the embedded ONNX
  graph with ONNX Runtime (CPU) and writes the outputs to the bound addresses;
* CUDA graph capture records the stream's work and a graph launch replays it.

Two API generations, written from NVIDIA's TensorRT documentation:

* this module itself (and ``make_fake_tensorrt(10)``) plays TensorRT 10 (``__version__``
  "10.99.0-fake"): ``BuilderFlag.FP16`` / ``INT8`` / ``GPU_FALLBACK``,
  ``IBuilderConfig.int8_calibrator``, ``Builder.platform_has_fast_fp16``, weakly typed networks
  unless ``create_network`` gets the STRONGLY_TYPED bit; ``NetworkDefinitionCreationFlag``
  members in the order of the TensorRT 10 Python API page "Builder" (EXPLICIT_BATCH = 0,
  deprecated, STRONGLY_TYPED = 1);
* ``make_fake_tensorrt(11)`` plays TensorRT 11 ("11.99.0-fake"), following "Migrating from
  TensorRT 10.x to 11.x" and its "Removed Python APIs and Replacements" list: no
  ``BuilderFlag.FP16`` / ``INT8`` (using them is an AttributeError, as on the real module), no
  ``IBuilderConfig.int8_calibrator``, no ``Builder.platform_has_fast_fp16``; every network is
  strongly typed and ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` (its only member we model,
  value 0 as in the 11.0.0 Python API page "Builder") is accepted and ignored. Precision then is
  whatever the ONNX tensor types say: the engine header records the float types of the graph's
  weights (``onnx_float_types``) and the engine runs that very graph.

Nothing here measures TensorRT's speed or numerics; the real-engine test is marked
``@pytest.mark.tensorrt`` and runs only where ``import tensorrt`` works.
"""
from __future__ import annotations

import ctypes
import enum
import json
import types
from pathlib import Path
from typing import Any, Optional

import numpy as np

FAKE_VERSION = "10.99.0-fake"
FAKE_VERSION_11 = "11.99.0-fake"
_MAGIC = b"FAKE-TRT-ENGINE\n"

__version__ = FAKE_VERSION
BUILD_COUNT = 0  # number of successful build_serialized_network calls (cache tests read it)


class Logger:
    """Fake trt.Logger."""

    VERBOSE, INFO, WARNING, ERROR, INTERNAL_ERROR = range(5)

    def __init__(self, severity: int = 2) -> None:
        self.severity = severity


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1


class BuilderFlag(enum.Enum):
    """TensorRT 10's flags that the package uses."""

    FP16 = 0
    INT8 = 1
    GPU_FALLBACK = 2


class BuilderFlag11(enum.Enum):
    """TensorRT 11: the precision flags are gone (exposed as ``BuilderFlag`` by make_fake_tensorrt(11))."""

    GPU_FALLBACK = 2


class NetworkDefinitionCreationFlag(enum.IntEnum):
    """TensorRT 10 (documentation order)."""

    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class NetworkDefinitionCreationFlag11(enum.IntEnum):
    """TensorRT 11: EXPLICIT_BATCH removed; STRONGLY_TYPED deprecated and ignored."""

    STRONGLY_TYPED = 0


class DeviceType(enum.Enum):
    GPU = 0
    DLA = 1


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT32 = 3
    INT64 = 7
    BOOL = 4


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT32: np.int32,
       DataType.INT64: np.int64, DataType.BOOL: np.bool_}
_FROM_ONNX = {1: DataType.FLOAT, 10: DataType.HALF, 6: DataType.INT32, 7: DataType.INT64, 9: DataType.BOOL}


def nptype(dtype: DataType) -> type:
    """Fake trt.nptype."""
    return _NP[dtype]


class IInt8EntropyCalibrator2:
    """Fake calibrator base class (the builder calls get_batch until it returns None)."""

    def __init__(self) -> None:
        pass


class _Tensor:
    def __init__(self, name: str, shape: tuple, dtype: DataType) -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


class _Network:
    def __init__(self, flags: int, strongly_typed: bool) -> None:
        self.flags, self.strongly_typed = int(flags), bool(strongly_typed)
        self.inputs: list[_Tensor] = []
        self.outputs: list[_Tensor] = []
        self.onnx_bytes: Optional[bytes] = None
        self.float_types: list[str] = []  # float element types of the weights, e.g. ["HALF"]

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, i: int) -> _Tensor:
        return self.inputs[i]

    def get_output(self, i: int) -> _Tensor:
        return self.outputs[i]


def _value_info(vi: Any) -> _Tensor:
    tt = vi.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
    return _Tensor(vi.name, shape, _FROM_ONNX.get(tt.elem_type, DataType.FLOAT))


class OnnxParser:
    """Fake trt.OnnxParser: reads the file with ``onnx``; errors are kept like TensorRT's."""

    def __init__(self, network: _Network, logger: Logger) -> None:
        self.network, self.errors = network, []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, i: int) -> str:
        return self.errors[i]

    def parse_from_file(self, path: str) -> bool:
        import onnx

        try:
            data = Path(path).read_bytes()
            model = onnx.load_from_string(data)
            onnx.checker.check_model(model)
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"In node -1 (parseGraph): INVALID_GRAPH: {exc}")
            return False
        inits = {i.name for i in model.graph.initializer}
        self.network.inputs = [_value_info(v) for v in model.graph.input if v.name not in inits]
        self.network.outputs = [_value_info(v) for v in model.graph.output]
        self.network.onnx_bytes = data
        self.network.float_types = sorted({_FROM_ONNX[i.data_type].name for i in model.graph.initializer
                                           if i.data_type in (1, 10)})
        return True


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, mn: Any, opt: Any, mx: Any) -> None:
        self.shapes[name] = (tuple(mn), tuple(opt), tuple(mx))


class _Config:
    """Fake IBuilderConfig of TensorRT 11 (no int8_calibrator: setting it is an AttributeError)."""

    _attributes = ("flags", "pool_limits", "profiles", "default_device_type", "DLA_core")

    def __init__(self) -> None:
        self.flags: set = set()
        self.pool_limits: dict = {}
        self.profiles: list[_Profile] = []
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._attributes:  # pybind11 objects refuse unknown attributes
            raise AttributeError(f"'tensorrt.IBuilderConfig' object has no attribute {name!r}")
        object.__setattr__(self, name, value)

    def set_flag(self, flag: enum.Enum) -> None:
        self.flags.add(flag)

    def get_flag(self, flag: enum.Enum) -> bool:
        return flag in self.flags

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self.pool_limits[pool] = int(size)

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1


class _Config10(_Config):
    """Fake IBuilderConfig of TensorRT 10: has ``int8_calibrator``."""

    _attributes = _Config._attributes + ("int8_calibrator",)

    def __init__(self) -> None:
        super().__init__()
        self.int8_calibrator: Any = None


class _BuilderBase:
    """What both fake Builders share: ``build_serialized_network`` packs the ONNX bytes + settings."""

    version = FAKE_VERSION_11
    config_type: type = _Config

    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def _strongly_typed(self, flags: int) -> bool:
        return True  # TensorRT 11: always

    def create_network(self, flags: int = 0) -> _Network:
        return _Network(flags, self._strongly_typed(int(flags)))

    def create_builder_config(self) -> _Config:
        return self.config_type()

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _Config) -> Optional[bytes]:
        global BUILD_COUNT
        profile = config.profiles[0].shapes if config.profiles else {}
        for t in network.inputs:
            if any(d < 0 for d in t.shape) and t.name not in profile:
                return None  # TensorRT: "Network has dynamic inputs, but no optimization profile"
        cal = getattr(config, "int8_calibrator", None)
        if cal is not None and "INT8" in {f.name for f in config.flags}:
            names = [t.name for t in network.inputs]
            if cal.read_calibration_cache() is None:
                while cal.get_batch(names) is not None:
                    pass
                cal.write_calibration_cache(b"fake-calibration-table")
        header = {
            "version": self.version,
            "flags": sorted(f.name for f in config.flags),
            "network_flags": network.flags,
            "strongly_typed": network.strongly_typed,
            "onnx_float_types": network.float_types,
            "workspace": config.pool_limits.get(MemoryPoolType.WORKSPACE),
            "device": config.default_device_type.name,
            "dla_core": config.DLA_core,
            "profile": {k: [list(s) for s in v] for k, v in profile.items()},
            "inputs": [[t.name, list(t.shape), t.dtype.name] for t in network.inputs],
            "outputs": [[t.name, list(t.shape), t.dtype.name] for t in network.outputs],
        }
        BUILD_COUNT += 1
        blob = json.dumps(header).encode()
        return _MAGIC + len(blob).to_bytes(8, "little") + blob + network.onnx_bytes


class Builder(_BuilderBase):
    """Fake trt.Builder of TensorRT 10 (weakly typed unless the STRONGLY_TYPED bit is given)."""

    version = FAKE_VERSION
    config_type = _Config10
    platform_has_fast_fp16 = True

    def _strongly_typed(self, flags: int) -> bool:
        return bool(flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))


class Builder11(_BuilderBase):
    """Fake trt.Builder of TensorRT 11 (no platform_has_fast_fp16; every network strongly typed)."""


class Runtime:
    """Fake trt.Runtime (deserialises only engines of its own version)."""

    version = FAKE_VERSION

    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes) -> Optional["_Engine"]:
        data = bytes(data)
        if not data.startswith(_MAGIC):
            return None  # like TensorRT: an error is logged and None returned
        n = int.from_bytes(data[len(_MAGIC):len(_MAGIC) + 8], "little")
        header = json.loads(data[len(_MAGIC) + 8:len(_MAGIC) + 8 + n])
        if header["version"] != self.version:
            return None  # engine from another TensorRT version
        return _Engine(header, data[len(_MAGIC) + 8 + n:])


class Runtime11(Runtime):
    version = FAKE_VERSION_11


class _Engine:
    def __init__(self, header: dict, onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        self.header = header
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self._io: list[tuple[str, TensorIOMode, tuple, DataType]] = [
            (n, TensorIOMode.INPUT, tuple(s), DataType[d]) for n, s, d in header["inputs"]
        ] + [(n, TensorIOMode.OUTPUT, tuple(s), DataType[d]) for n, s, d in header["outputs"]]

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    def get_tensor_name(self, i: int) -> str:
        return self._io[i][0]

    def _find(self, name: str) -> tuple:
        for io in self._io:
            if io[0] == name:
                return io
        raise KeyError(name)

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._find(name)[1]

    def get_tensor_shape(self, name: str) -> tuple:
        return self._find(name)[2]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._find(name)[3]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list:
        return [tuple(s) for s in self.header["profile"][name]]

    def create_execution_context(self) -> "_Context":
        return _Context(self)


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.input_shapes = {n: s for n, m, s, _ in engine._io if m is TensorIOMode.INPUT}
        self.addresses: dict[str, int] = {}
        self.executions = 0

    def set_input_shape(self, name: str, shape: Any) -> bool:
        shape = tuple(int(d) for d in shape)
        prof = self.engine.header["profile"].get(name)
        if prof is not None:
            mn, _, mx = prof
            if not all(a <= d <= b for a, d, b in zip(mn, shape, mx)):
                return False
        self.input_shapes[name] = shape
        return True

    def _output_shapes(self) -> dict[str, tuple]:
        if all(all(d >= 0 for d in s) for n, m, s, _ in self.engine._io if m is TensorIOMode.OUTPUT):
            return {n: s for n, m, s, _ in self.engine._io if m is TensorIOMode.OUTPUT}
        feed = {n: np.zeros(s, _NP[self.engine.get_tensor_dtype(n)]) for n, s in self.input_shapes.items()}
        outs = self.engine.session.run(None, feed)
        return {o.name: tuple(v.shape) for o, v in zip(self.engine.session.get_outputs(), outs)}

    def get_tensor_shape(self, name: str) -> tuple:
        if name in self.input_shapes:
            return self.input_shapes[name]
        return self._output_shapes()[name]

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.engine._find(name)
        self.addresses[name] = int(ptr)
        return True

    def _run_now(self) -> None:
        feed = {}
        for name, shape in self.input_shapes.items():
            dtype = np.dtype(_NP[self.engine.get_tensor_dtype(name)])
            n = int(np.prod(shape)) * dtype.itemsize
            buf = (ctypes.c_char * n).from_address(self.addresses[name])
            feed[name] = np.frombuffer(bytes(buf), dtype).reshape(shape)
        outs = self.engine.session.run(None, feed)
        for o, value in zip(self.engine.session.get_outputs(), outs):
            value = np.ascontiguousarray(value, _NP[self.engine.get_tensor_dtype(o.name)])
            ctypes.memmove(self.addresses[o.name], value.ctypes.data, value.nbytes)
        self.executions += 1

    def execute_async_v3(self, stream_handle: int) -> bool:
        missing = [n for n, *_ in self.engine._io if n not in self.addresses]
        if missing:
            return False
        _STREAMS[int(stream_handle)].submit(self._run_now)
        return True


# ----------------------------------------------------------------------------- fake cudart
class _Stream:
    def __init__(self) -> None:
        self.capture: Optional[list] = None

    def submit(self, fn: Any) -> None:
        if self.capture is not None:
            self.capture.append(fn)
        else:
            fn()


_STREAMS: dict[int, _Stream] = {}
_ALLOCATIONS: dict[int, np.ndarray] = {}


class cudaError_t(enum.IntEnum):  # noqa: N801 - cudart's name
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2


class _MemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class _CaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1


class _Props:
    def __init__(self, name: bytes) -> None:
        self.name = name


def make_fake_cudart(device_name: str = "Fake GPU (test double)") -> types.SimpleNamespace:
    """A FAKE cuda-python ``cudart`` namespace (host memory stands in for device memory)."""
    stats = {"malloc": 0, "free": 0, "graph_launch": 0, "captures": 0, "memcpy": 0}

    def cudaMalloc(n: int):  # noqa: N802
        buf = np.zeros(int(n), np.uint8)
        _ALLOCATIONS[buf.ctypes.data] = buf
        stats["malloc"] += 1
        return cudaError_t.cudaSuccess, buf.ctypes.data

    def cudaFree(ptr: int):  # noqa: N802
        if _ALLOCATIONS.pop(int(ptr), None) is None:
            return (cudaError_t.cudaErrorInvalidValue,)
        stats["free"] += 1
        return (cudaError_t.cudaSuccess,)

    def cudaMemcpyAsync(dst: int, src: int, n: int, kind: int, stream: int):  # noqa: N802
        stats["memcpy"] += 1
        _STREAMS[int(stream)].submit(lambda: ctypes.memmove(int(dst), int(src), int(n)))
        return (cudaError_t.cudaSuccess,)

    def cudaStreamCreate():  # noqa: N802
        s = _Stream()
        _STREAMS[id(s)] = s
        return cudaError_t.cudaSuccess, id(s)

    def cudaStreamDestroy(stream: int):  # noqa: N802
        _STREAMS.pop(int(stream), None)
        return (cudaError_t.cudaSuccess,)

    def cudaStreamSynchronize(stream: int):  # noqa: N802
        return (cudaError_t.cudaSuccess,)

    def cudaStreamBeginCapture(stream: int, mode: int):  # noqa: N802
        _STREAMS[int(stream)].capture = []
        stats["captures"] += 1
        return (cudaError_t.cudaSuccess,)

    def cudaStreamEndCapture(stream: int):  # noqa: N802
        s = _STREAMS[int(stream)]
        ops, s.capture = s.capture, None
        return cudaError_t.cudaSuccess, ops

    def cudaGraphInstantiate(graph: list, flags: int):  # noqa: N802
        return cudaError_t.cudaSuccess, list(graph)

    def cudaGraphLaunch(graph_exec: list, stream: int):  # noqa: N802
        stats["graph_launch"] += 1
        for op in graph_exec:
            _STREAMS[int(stream)].submit(op)
        return (cudaError_t.cudaSuccess,)

    def cudaGetDeviceProperties(device: int):  # noqa: N802
        return cudaError_t.cudaSuccess, _Props(device_name.encode() + b"\0\0")

    return types.SimpleNamespace(
        cudaMalloc=cudaMalloc, cudaFree=cudaFree, cudaMemcpyAsync=cudaMemcpyAsync,
        cudaStreamCreate=cudaStreamCreate, cudaStreamDestroy=cudaStreamDestroy,
        cudaStreamSynchronize=cudaStreamSynchronize, cudaStreamBeginCapture=cudaStreamBeginCapture,
        cudaStreamEndCapture=cudaStreamEndCapture, cudaGraphInstantiate=cudaGraphInstantiate,
        cudaGraphLaunch=cudaGraphLaunch, cudaGetDeviceProperties=cudaGetDeviceProperties,
        cudaMemcpyKind=_MemcpyKind, cudaStreamCaptureMode=_CaptureMode, stats=stats,
        FAKE=True,
    )


_SHARED = ("Logger", "MemoryPoolType", "DeviceType", "TensorIOMode", "DataType", "nptype", "OnnxParser")


def make_fake_tensorrt(generation: int = 10) -> Any:
    """A FAKE ``tensorrt`` of API generation 10 (this module) or 11 (a namespace without the
    weak-typing API; see the module docstring). Test only."""
    import sys

    if generation == 10:
        return sys.modules[__name__]
    if generation != 11:
        raise ValueError(f"the fake plays TensorRT 10 or 11, not {generation}")
    mod = sys.modules[__name__]
    return types.SimpleNamespace(
        __version__=FAKE_VERSION_11, BuilderFlag=BuilderFlag11,
        NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag11, Builder=Builder11, Runtime=Runtime11,
        **{name: getattr(mod, name) for name in _SHARED},
    )


def as_module() -> types.ModuleType:
    """This fake as a module object to put in ``sys.modules['tensorrt']`` (test only)."""
    import sys

    return sys.modules[__name__]
