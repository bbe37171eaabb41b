"""ONNX -> TensorRT engine: builder, engine cache and the decisions around them.

The TensorRT-touching code is kept thin (:func:`build_serialized_engine`, ~40 lines of the
TensorRT 10 Python API); the logic lives in plain functions that are tested everywhere:

* :class:`EngineKey` — what an engine depends on: the ONNX file's SHA-256, the precision,
  the TensorRT version, the GPU name (and DLA core). It is encoded in the engine file name and
  in a JSON sidecar next to it (``<engine>.json``).
* :func:`rebuild_reason` — why a cached engine must be rebuilt (None when it can be used):
  missing engine or sidecar, unreadable sidecar, any key field that differs, or
  ``force_engine_update``.
* :func:`optimization_profiles` — the (min, opt, max) shapes for each dynamic input; static
  inputs need none; a dynamic input without a range is an error naming it.
* :func:`get_or_build_engine` — cache lookup + build + atomic write of engine and sidecar.

TensorRT itself cannot be installed on the CPU-only CI machine; the tests inject a clearly
labelled fake ``tensorrt`` module (``test/fake_tensorrt.py``) and a real-engine test marked
``tensorrt`` runs only where ``import tensorrt`` works.

API used (TensorRT 10): trt.Builder, Builder.create_network(0) (explicit batch is the only mode),
trt.OnnxParser, IBuilderConfig.set_flag(BuilderFlag.FP16 / INT8 / GPU_FALLBACK),
set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes), optimisation profiles,
default_device_type = DeviceType.DLA + DLA_core for Jetson DLA, build_serialized_network.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from depth_diffusion_ros.runtime.metadata import file_sha256, read_metadata

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_WORKSPACE_BYTES = 1 << 30  # 1 GiB; lower it on 8 GB shared-memory Jetsons
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
#: where engines are cached unless a backend or ``build-engine`` is given another directory
DEFAULT_ENGINE_CACHE_DIR = os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")),
    "depth_diffusion_ros", "engines",
)


class EngineBuildError(RuntimeError):
    """The ONNX file cannot be parsed or the engine cannot be built; names the file."""


def load_tensorrt() -> Any:
    """``import tensorrt`` with a clear error (TensorRT ships with JetPack / NVIDIA's wheels)."""
    try:
        import tensorrt as trt  # noqa: PLC0415

        return trt
    except ImportError as exc:
        raise ImportError(
            "TensorRT is not installed (Jetson: part of JetPack; x86: pip install tensorrt)"
        ) from exc


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "unknown"


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on (an engine is valid only for all of these).

    onnx_sha256: hex SHA-256 of the ONNX file; precision: "fp32" | "fp16" | "int8";
    tensorrt_version: trt.__version__; gpu_name: CUDA device name; dla_core: -1 for the GPU;
    profile: the optimisation-profile ranges asked for ("auto" = derived from the export).
    """

    onnx_sha256: str
    precision: str
    tensorrt_version: str
    gpu_name: str
    dla_core: int = -1
    profile: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def file_name(self, stem: str) -> str:
        """``<stem>.<sha[:16]>.<precision>.trt<version>.<gpu>[.dla<N>].engine``."""
        parts = [
            _slug(stem),
            self.onnx_sha256[:16],
            self.precision,
            "trt" + _slug(self.tensorrt_version),
            _slug(self.gpu_name),
        ]
        if self.dla_core >= 0:
            parts.append(f"dla{self.dla_core}")
        return ".".join(parts) + ENGINE_SUFFIX

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def engine_paths(cache_dir: str | Path, onnx_path: str | Path, key: EngineKey) -> tuple[Path, Path]:
    """(engine path, JSON sidecar path) of ``key`` in ``cache_dir``."""
    engine = Path(cache_dir) / key.file_name(Path(onnx_path).stem)
    return engine, engine.with_suffix(engine.suffix + SIDECAR_SUFFIX)


def rebuild_reason(
    engine_path: str | Path, sidecar_path: str | Path, key: EngineKey, force: bool = False
) -> Optional[str]:
    """Why the cached engine cannot be used (a sentence for the log), or None if it can."""
    engine_path, sidecar_path = Path(engine_path), Path(sidecar_path)
    if force:
        return "force_engine_update is set"
    if not engine_path.is_file() or engine_path.stat().st_size == 0:
        return f"no engine file {engine_path}"
    if not sidecar_path.is_file():
        return f"no sidecar {sidecar_path}"
    try:
        cached = json.loads(sidecar_path.read_text())
    except (OSError, ValueError) as exc:
        return f"sidecar {sidecar_path} unreadable ({exc})"
    for field_name, now in key.to_dict().items():
        before = cached.get(field_name)
        if before != now:
            return f"{field_name} differs: cached {before!r}, now {now!r}"
    return None


@dataclass(frozen=True)
class ProfileShape:
    """Optimisation-profile range of one input: min <= opt <= max per axis."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def optimization_profiles(
    input_shapes: Mapping[str, Sequence[int]],
    ranges: Optional[Mapping[str, ProfileShape | Sequence[Sequence[int]]]] = None,
) -> dict[str, ProfileShape]:
    """Profile shapes for the dynamic inputs (any axis < 0) of a network.

    input_shapes: {input name: shape with -1 for dynamic axes} as TensorRT parses them.
    ranges: {input name: ProfileShape or (min, opt, max)}. Returns {name: ProfileShape} for the
    dynamic inputs only (static ones need no profile). Raises EngineBuildError if a dynamic
    input has no range, a range has the wrong rank, contradicts a static axis, or is not
    min <= opt <= max.
    """
    ranges = dict(ranges or {})
    out: dict[str, ProfileShape] = {}
    for name, shape in input_shapes.items():
        shape = tuple(int(d) for d in shape)
        if all(d >= 0 for d in shape):
            continue
        if name not in ranges:
            raise EngineBuildError(
                f"input {name!r} has dynamic shape {shape}; give its (min, opt, max) shapes"
            )
        r = ranges[name]
        prof = r if isinstance(r, ProfileShape) else ProfileShape(*(tuple(int(x) for x in s) for s in r))
        for label, dims in (("min", prof.min), ("opt", prof.opt), ("max", prof.max)):
            if len(dims) != len(shape):
                raise EngineBuildError(f"input {name!r}: {label} shape {dims} has rank {len(dims)}, network {len(shape)}")
            for axis, (d, s) in enumerate(zip(dims, shape)):
                if s >= 0 and d != s:
                    raise EngineBuildError(f"input {name!r}: {label} shape {dims} axis {axis} is {d}, network fixes it to {s}")
        if not all(a <= b <= c for a, b, c in zip(prof.min, prof.opt, prof.max)):
            raise EngineBuildError(f"input {name!r}: need min <= opt <= max, got {prof}")
        out[name] = prof
    return out


def auto_profile_ranges(
    network_shapes: Mapping[str, Sequence[int]],
    example_shapes: Mapping[str, Sequence[int]],
    factor: int = 2,
    max_batch: int = 8,
) -> dict[str, ProfileShape]:
    """Profile ranges for a dynamic export from the shapes it was traced with (``ddr.inputs``).

    Dynamic batch axes get [1, max(example, max_batch)], other dynamic axes
    [example // factor, example * factor] with the example as opt; static axes stay fixed.
    Raises EngineBuildError naming an input whose example shape is unknown.
    """
    out: dict[str, ProfileShape] = {}
    for name, shape in network_shapes.items():
        shape = tuple(int(d) for d in shape)
        if all(d >= 0 for d in shape):
            continue
        ex = example_shapes.get(name)
        if ex is None or len(ex) != len(shape):
            raise EngineBuildError(f"input {name!r} has dynamic shape {shape} and the ONNX metadata records no "
                                   f"example shape for it; give its (min, opt, max) shapes")
        mn, opt, mx = [], [], []
        for axis, (d, e) in enumerate(zip(shape, ex)):
            e = int(e)
            if d >= 0:
                mn.append(d), opt.append(d), mx.append(d)
            elif axis == 0:
                mn.append(1), opt.append(e), mx.append(max(e, max_batch))
            else:
                mn.append(max(1, e // factor)), opt.append(e), mx.append(e * factor)
        out[name] = ProfileShape(tuple(mn), tuple(opt), tuple(mx))
    return out


def make_int8_calibrator(
    trt: Any,
    batches: Iterable[Mapping[str, np.ndarray]],
    cache_file: str | Path,
    cuda: Any,
) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding ``batches`` ({input name: array}) to the builder.

    The INT8 hook: calibration data are real frames preprocessed like the backend's inputs.
    The calibration table is cached in ``cache_file`` and reused when present.
    cuda: a :class:`depth_diffusion_ros.runtime.cuda_runtime.CudaRuntime`.
    """
    cache_file = Path(cache_file)
    iterator = iter(batches)

    class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._device: dict[str, tuple[int, int]] = {}
            self._stream = cuda.stream_create()

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> Optional[list[int]]:
            try:
                batch = next(iterator)
            except StopIteration:
                return None
            ptrs = []
            for name in names:
                arr = np.ascontiguousarray(batch[name])
                ptr, size = self._device.get(name, (0, 0))
                if size < arr.nbytes:
                    if ptr:
                        cuda.free(ptr)
                    ptr, size = cuda.malloc(arr.nbytes), arr.nbytes
                    self._device[name] = (ptr, size)
                cuda.htod_async(ptr, arr, self._stream)
                ptrs.append(int(ptr))
            cuda.stream_synchronize(self._stream)
            return ptrs

        def read_calibration_cache(self) -> Optional[bytes]:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_bytes(bytes(cache))

    return _Calibrator()


def parse_onnx_network(trt: Any, onnx_path: str | Path, logger: Any) -> tuple[Any, Any, Any]:
    """(builder, network, parser) for the ONNX file; EngineBuildError lists parser errors."""
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(onnx_path))
    if not ok:
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors or 'no detail'}")
    return builder, network, parser


def build_serialized_engine(
    trt: Any,
    onnx_path: str | Path,
    precision: str = "fp16",
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    profile_ranges: Optional[Mapping[str, Any]] = None,
    dla_core: int = -1,
    int8_calibrator: Any = None,
) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine (bytes) with the TensorRT 10 API.

    precision: "fp32" | "fp16" | "int8" (int8 also enables fp16 for layers without scales;
        needs ``int8_calibrator`` unless the ONNX carries Q/DQ nodes).
    workspace_bytes: MemoryPoolType.WORKSPACE limit. dla_core >= 0 builds for that DLA core
        with GPU fallback for layers DLA cannot run (Jetson AGX/NX).
    Raises EngineBuildError naming the file (parser errors, failed build).
    """
    if precision not in PRECISIONS:
        raise EngineBuildError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder, network, _parser = parse_onnx_network(trt, onnx_path, logger)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if precision in ("fp16", "int8"):
        if not builder.platform_has_fast_fp16:
            LOG.warning("%s: this GPU has no fast fp16; building anyway", onnx_path)
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if int8_calibrator is not None:
            config.int8_calibrator = int8_calibrator
    if dla_core >= 0:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    inputs = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        inputs[tensor.name] = tuple(tensor.shape)
    if profile_ranges is None and any(d < 0 for s in inputs.values() for d in s):
        examples = json.loads(read_metadata(onnx_path).get("ddr.inputs", "{}"))
        profile_ranges = auto_profile_ranges(inputs, examples)
    profiles = optimization_profiles(inputs, profile_ranges)
    if profiles:
        profile = builder.create_optimization_profile()
        for name, p in profiles.items():
            profile.set_shape(name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT failed to build a {precision} engine (see the log above)")
    return bytes(serialized)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@dataclass
class EngineCacheResult:
    """Where the engine is, whether it was (re)built now, and why."""

    engine_path: Path
    sidecar_path: Path
    built: bool
    reason: Optional[str]
    key: EngineKey


def get_or_build_engine(
    onnx_path: str | Path,
    cache_dir: str | Path,
    precision: str = "fp16",
    force_engine_update: bool = False,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    profile_ranges: Optional[Mapping[str, Any]] = None,
    dla_core: int = -1,
    int8_calibrator: Any = None,
    trt: Any = None,
    gpu_name: Optional[str] = None,
    cuda: Any = None,
) -> EngineCacheResult:
    """Return a usable engine for ``onnx_path`` from ``cache_dir``, building it if needed.

    The engine is rebuilt when :func:`rebuild_reason` gives a reason (logged). Engine and
    sidecar are written atomically, so a crash mid-write never leaves a truncated engine.
    trt / cuda: modules to use (tests pass the fake); gpu_name: override the detected name.
    Raises FileNotFoundError-like EngineBuildError naming a missing ONNX file.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise EngineBuildError(f"{onnx_path}: ONNX file not found")
    trt = trt if trt is not None else load_tensorrt()
    if gpu_name is None:
        from depth_diffusion_ros.runtime.cuda_runtime import CudaRuntime

        gpu_name = (cuda if cuda is not None else CudaRuntime()).device_name(0)
    profile = "auto" if not profile_ranges else json.dumps(
        {k: [list(x) for x in (v.min, v.opt, v.max)] if isinstance(v, ProfileShape) else [list(x) for x in v]
         for k, v in sorted(profile_ranges.items())})
    key = EngineKey(file_sha256(onnx_path), precision, str(trt.__version__), gpu_name, int(dla_core), profile)
    engine_path, sidecar_path = engine_paths(cache_dir, onnx_path, key)
    reason = rebuild_reason(engine_path, sidecar_path, key, force_engine_update)
    if reason is None:
        LOG.info("using cached TensorRT engine %s", engine_path)
        return EngineCacheResult(engine_path, sidecar_path, False, None, key)
    LOG.info("building TensorRT engine %s from %s: %s", engine_path.name, onnx_path, reason)
    data = build_serialized_engine(
        trt, onnx_path, precision, workspace_bytes, profile_ranges, dla_core, int8_calibrator
    )
    _atomic_write(engine_path, data)
    sidecar = dict(key.to_dict(), onnx_path=str(onnx_path.resolve()), workspace_bytes=int(workspace_bytes))
    _atomic_write(sidecar_path, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    return EngineCacheResult(engine_path, sidecar_path, True, reason, key)
