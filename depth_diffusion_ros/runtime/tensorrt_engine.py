"""ONNX -> TensorRT engine: builder, engine cache and the decisions around them.

The TensorRT-touching code is kept thin (:func:`build_serialized_engine`, ~50 lines of the
TensorRT Python API); the logic lives in plain functions that are tested everywhere:

* :func:`api_generation` — which TensorRT API this is (10: weak typing, 11: strong typing only);
  :func:`network_creation_flags` / :func:`precision_builder_flags` — what follows from it.
* :class:`EngineKey` — what an engine depends on: the SHA-256 of the ONNX file the network is
  parsed from (the fp16 copy for fp16 on TensorRT 11), the precision, the TensorRT version, the
  GPU name (and DLA core). It is encoded in the engine file name and in a JSON sidecar next to
  it (``<engine>.json``).
* :func:`rebuild_reason` — why a cached engine must be rebuilt (None when it can be used):
  missing engine or sidecar, unreadable sidecar, any key field that differs, or
  ``force_engine_update``.
* :func:`optimization_profiles` — the (min, opt, max) shapes for each dynamic input; static
  inputs need none; a dynamic input without a range is an error naming it.
* :func:`get_or_build_engine` — cache lookup + build + atomic write of engine and sidecar.
  (The TensorRT 10 INT8 calibrator is in :mod:`depth_diffusion_ros.runtime.tensorrt_int8`.)

TensorRT API generations (NVIDIA's TensorRT documentation):

* **TensorRT 10** — weakly typed networks: ``Builder.create_network(0)`` (explicit batch is the
  only mode since 10.0), precision from ``IBuilderConfig.set_flag(BuilderFlag.FP16 / INT8)``
  (+ an ``IInt8EntropyCalibrator2`` or Q/DQ nodes for INT8). Deprecated during 10.x but working
  throughout it, so this path is unchanged: the INT8 calibrators in 10.1 and
  ``platform_has_fast_fp16`` in 10.5 (C++ API "Deprecated List"), all weak-typing APIs in 10.12
  (TensorRT 10.12.0 release notes: "Weak typing APIs deprecated").
* **TensorRT 11** — strongly typed only ("Migrating from TensorRT 10.x to 11.x: Strongly Typed
  Networks Are Now Required"; "Removed Python APIs and Replacements"): ``BuilderFlag.FP16`` and
  ``BF16`` are gone (replacement: strong typing, e.g. ModelOpt AutoCast), ``BuilderFlag.INT8`` /
  ``FP8`` / ``INT4`` and ``IBuilderConfig.int8_calibrator`` are gone (replacement: explicit
  quantization with Q/DQ nodes), ``Builder.platform_has_fast_fp16`` is gone.
  ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is kept, deprecated and ignored (TensorRT
  11.0.0 Python API, Builder); we still pass ``1 << int(STRONGLY_TYPED)`` so the request is
  explicit and its bit is TensorRT's own. Precision comes from the ONNX tensor types:
  "fp32" builds the exported graph as it is; "fp16" builds its fp16 copy
  (:mod:`depth_diffusion_ros.runtime.onnx_fp16`, onnxconverter-common: ModelOpt is published
  on NVIDIA's own package index only), made once; "int8" is refused with an EngineBuildError
  that says what to do instead (a Q/DQ-quantized ONNX, built with precision "fp32").

TensorRT itself cannot be installed on the CPU-only CI machine; the tests inject a clearly
labelled fake ``tensorrt`` module that plays either generation (``test/fake_tensorrt.py``) and a
real-engine test marked ``tensorrt`` runs only where ``import tensorrt`` works.

Other API used (both generations): trt.OnnxParser, set_memory_pool_limit(MemoryPoolType.WORKSPACE,
bytes), optimisation profiles, default_device_type = DeviceType.DLA + DLA_core with
BuilderFlag.GPU_FALLBACK for Jetson DLA, build_serialized_network.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from depth_diffusion_ros.runtime.metadata import atomic_write, file_sha256, read_metadata
from depth_diffusion_ros.runtime.onnx_fp16 import Fp16ConversionError, cached_fp16_onnx, graph_precision

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


#: the first TensorRT major version without weak typing (BuilderFlag.FP16 / INT8 removed)
STRONGLY_TYPED_MAJOR = 11


def api_generation(trt: Any) -> int:
    """10 (weakly typed networks, precision builder flags) or 11 (strongly typed only).

    Decided from ``trt.__version__``'s major number and from the API itself: a TensorRT whose
    ``BuilderFlag`` has no ``FP16`` is treated as 11 whatever its version says. Raises
    EngineBuildError for TensorRT older than 10 (implicit batch, other APIs: not supported).
    """
    try:
        major = int(str(trt.__version__).split(".")[0])
    except ValueError:
        major = 10  # an unparsable version: the API below decides
    if major < 10:
        raise EngineBuildError(f"TensorRT {trt.__version__} is not supported: use TensorRT 10 or 11")
    if major >= STRONGLY_TYPED_MAJOR or not hasattr(trt.BuilderFlag, "FP16"):
        return STRONGLY_TYPED_MAJOR
    return 10


def network_creation_flags(trt: Any, generation: int) -> int:
    """``Builder.create_network`` flags: 0 (weakly typed) on 10, the STRONGLY_TYPED bit on 11
    (0 once a TensorRT drops the deprecated, ignored flag: strong typing is implied there)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if generation >= STRONGLY_TYPED_MAJOR and flag is not None:
        return 1 << int(flag)
    return 0


def precision_builder_flags(trt: Any, generation: int, precision: str) -> list:
    """The ``BuilderFlag`` members that select ``precision`` on this API generation.

    10: fp16 -> [FP16], int8 -> [FP16, INT8] (fp16 for layers without int8 scales), fp32 -> [].
    11: always [] (the ONNX tensor types decide); int8 raises EngineBuildError saying what to do.
    """
    if precision not in PRECISIONS:
        raise EngineBuildError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if generation < STRONGLY_TYPED_MAJOR:
        return {"fp32": [], "fp16": [trt.BuilderFlag.FP16],
                "int8": [trt.BuilderFlag.FP16, trt.BuilderFlag.INT8]}[precision]
    if precision == "int8":
        raise EngineBuildError(
            f"precision 'int8' needs TensorRT 10: TensorRT {trt.__version__} removed BuilderFlag.INT8 and the "
            f"INT8 calibrators; quantize the ONNX with Q/DQ nodes (explicit quantization, e.g. NVIDIA ModelOpt) "
            f"and build that file with precision 'fp32' (its Q/DQ nodes select int8)")
    return []


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


def parse_onnx_network(trt: Any, onnx_path: str | Path, logger: Any, flags: int = 0) -> tuple[Any, Any, Any]:
    """(builder, network, parser) for the ONNX file, the network created with ``flags``
    (:func:`network_creation_flags`); EngineBuildError lists parser errors."""
    builder = trt.Builder(logger)
    network = builder.create_network(int(flags))
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
    """Parse ``onnx_path`` and build a serialized engine (bytes) with the TensorRT 10 or 11 API.

    precision: "fp32" | "fp16" | "int8". TensorRT 10: weakly typed network + builder flags (int8
        also enables fp16 for layers without scales; needs ``int8_calibrator`` unless the ONNX
        carries Q/DQ nodes). TensorRT 11: strongly typed network, no precision flags: "fp16"
        needs ``onnx_path`` to be an fp16 graph (``onnx_fp16.cached_fp16_onnx``;
        :func:`get_or_build_engine` picks it), "int8" is refused.
    workspace_bytes: MemoryPoolType.WORKSPACE limit. dla_core >= 0 builds for that DLA core
        with GPU fallback for layers DLA cannot run (Jetson AGX/NX).
    Raises EngineBuildError naming the file (parser errors, failed build, a precision this
    TensorRT cannot build from this file).
    """
    generation = api_generation(trt)
    flags = precision_builder_flags(trt, generation, precision)
    if generation >= STRONGLY_TYPED_MAJOR and precision == "fp16" and graph_precision(onnx_path) != "fp16":
        raise EngineBuildError(f"{onnx_path}: TensorRT {trt.__version__} builds fp16 from an fp16 graph (strong "
                               f"typing); this one is fp32 — pass its .fp16.onnx copy (export --fp16-onnx)")
    logger = trt.Logger(trt.Logger.WARNING)
    builder, network, _parser = parse_onnx_network(trt, onnx_path, logger, network_creation_flags(trt, generation))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if flags and not builder.platform_has_fast_fp16:  # TensorRT 10 only (removed in 11)
        LOG.warning("%s: this GPU has no fast fp16; building anyway", onnx_path)
    for flag in flags:
        config.set_flag(flag)
    if precision == "int8" and int8_calibrator is not None:
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


@dataclass
class EngineCacheResult:
    """Where the engine is, whether it was (re)built now, and why; ``onnx_path`` is the file
    the engine is (or would be) built from — the fp16 copy for fp16 on TensorRT 11."""

    engine_path: Path
    sidecar_path: Path
    built: bool
    reason: Optional[str]
    key: EngineKey
    onnx_path: Optional[Path] = None


def build_onnx_path(onnx_path: str | Path, precision: str, trt: Any, cache_dir: str | Path) -> Path:
    """The ONNX file an engine of ``precision`` is parsed (and keyed) from: ``onnx_path``, or
    on TensorRT 11 for "fp16" its fp16 copy (``onnx_fp16.cached_fp16_onnx``: the export's
    ``.fp16.onnx`` beside it, else one made once in ``cache_dir``). Raises EngineBuildError for
    a precision this TensorRT cannot build or a graph that cannot be converted.
    """
    generation = api_generation(trt)
    precision_builder_flags(trt, generation, precision)  # refuses int8 on 11 before any work
    if generation < STRONGLY_TYPED_MAJOR or precision != "fp16":
        return Path(onnx_path)
    try:
        return cached_fp16_onnx(onnx_path, cache_dir)
    except Fp16ConversionError as exc:
        raise EngineBuildError(f"fp16 on TensorRT {trt.__version__} needs an fp16 graph: {exc}") from exc


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

    The network is parsed from :func:`build_onnx_path` (the fp16 copy for fp16 on TensorRT 11)
    and the key hashes that file. The engine is rebuilt when :func:`rebuild_reason` gives a
    reason (logged); it is named after ``onnx_path``'s stem. Engine and sidecar are written
    atomically, so a crash mid-write never leaves a truncated engine.
    trt / cuda: modules to use (tests pass the fake); gpu_name: override the detected name.
    Raises EngineBuildError naming a missing ONNX file, a precision this TensorRT cannot build
    or a failed build.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise EngineBuildError(f"{onnx_path}: ONNX file not found")
    trt = trt if trt is not None else load_tensorrt()
    source = build_onnx_path(onnx_path, precision, trt, cache_dir)
    if gpu_name is None:
        from depth_diffusion_ros.runtime.cuda_runtime import CudaRuntime

        gpu_name = (cuda if cuda is not None else CudaRuntime()).device_name(0)
    profile = "auto" if not profile_ranges else json.dumps(
        {k: [list(x) for x in (v.min, v.opt, v.max)] if isinstance(v, ProfileShape) else [list(x) for x in v]
         for k, v in sorted(profile_ranges.items())})
    key = EngineKey(file_sha256(source), precision, str(trt.__version__), gpu_name, int(dla_core), profile)
    engine_path, sidecar_path = engine_paths(cache_dir, onnx_path, key)
    reason = rebuild_reason(engine_path, sidecar_path, key, force_engine_update)
    if reason is None:
        LOG.info("using cached TensorRT engine %s", engine_path)
        return EngineCacheResult(engine_path, sidecar_path, False, None, key, source)
    LOG.info("building TensorRT engine %s from %s: %s", engine_path.name, source, reason)
    data = build_serialized_engine(
        trt, source, precision, workspace_bytes, profile_ranges, dla_core, int8_calibrator
    )
    atomic_write(engine_path, data)
    sidecar = dict(key.to_dict(), onnx_path=str(source.resolve()), workspace_bytes=int(workspace_bytes))
    atomic_write(sidecar_path, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    return EngineCacheResult(engine_path, sidecar_path, True, reason, key, source)
