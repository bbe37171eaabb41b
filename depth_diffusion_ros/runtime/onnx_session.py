"""One ONNX file in one ONNX Runtime session (torch-free).

Execution providers come from a list of short names (``cpu``, ``cuda``, ``tensorrt``,
``openvino``, ``dnnl``, ...) or ORT's full names; providers the installed onnxruntime build does
not have are dropped with a log line and the CPU is always the last fallback. I/O binding keeps
outputs on the provider's device (OrtValues), so values can pass from one run to the next without
a host round trip (the DDIM latents between denoising steps on a GPU).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from depth_diffusion_ros.runtime.errors import BackendError
from depth_diffusion_ros.runtime.metadata import decode_metadata

LOG = logging.getLogger(__name__)

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def import_onnxruntime() -> Any:
    """``import onnxruntime`` or BackendError with the install hint."""
    try:
        import onnxruntime as ort  # noqa: PLC0415

        return ort
    except ImportError as exc:  # pragma: no cover - requirements.txt installs it
        raise BackendError("onnxruntime is not installed (pip install onnxruntime)") from exc


def provider_name(provider: Any) -> str:
    """The provider name of an entry of :func:`resolve_providers` (a name or (name, options))."""
    return provider[0] if isinstance(provider, tuple) else provider


def resolve_providers(
    requested: Union[str, Sequence[Any], None], available: Optional[Sequence[str]] = None
) -> list[Any]:
    """Execution providers to use, in order, restricted to those this onnxruntime has.

    requested: a list (or comma-separated string) of short names (see PROVIDER_ALIASES) or full
        ORT names; an entry may be ``(name, options_dict)``. None or empty -> CPU.
    available: ``onnxruntime.get_available_providers()`` (injectable for tests).
    Unknown names raise BackendError (listing the valid ones); known but unavailable ones are
    dropped with a log line; CPU is appended as the final fallback.
    """
    ort = None
    if available is None:
        ort = import_onnxruntime()
        available = ort.get_available_providers()
    all_names = set(PROVIDER_ALIASES.values())
    try:
        all_names |= set((ort or import_onnxruntime()).get_all_providers())
    except BackendError:
        pass
    if requested is None or requested == "" or requested == []:
        requested = ["cpu"]
    if isinstance(requested, str):
        requested = [p.strip() for p in requested.split(",") if p.strip()]
    out: list[Any] = []
    for entry in requested:
        name, options = (entry if isinstance(entry, (tuple, list)) else (entry, None))
        full = PROVIDER_ALIASES.get(str(name).lower(), str(name))
        if full not in all_names:
            raise BackendError(
                f"unknown execution provider {name!r}; use one of {sorted(PROVIDER_ALIASES)} "
                f"or an onnxruntime provider name"
            )
        if full not in available:
            LOG.warning("execution provider %s is not available in this onnxruntime build "
                        "(available: %s); skipping it", full, ", ".join(available))
            continue
        if any(provider_name(p) == full for p in out):
            continue
        out.append((full, dict(options)) if options else full)
    if not any(provider_name(p) == "CPUExecutionProvider" for p in out):
        out.append("CPUExecutionProvider")
    return out


def default_threads() -> int:
    """Cores available to this process (ONNX Runtime's own default is similar)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class SessionOptions:
    """How a backend opens its ONNX Runtime sessions (the ``onnxruntime`` backends' options).

    providers: execution providers (see :func:`resolve_providers`).
    intra_op_num_threads, inter_op_num_threads: 0 = ONNX Runtime's default.
    graph_optimization_level: "disable" | "basic" | "extended" | "all".
    use_io_binding: True / False / "auto" (on for GPU providers: outputs stay on the device).
    allow_spinning: intra-op threads spin while idle (off by default: robots share the CPU
        between nodes, and a backend's several sessions would compete).
    Raises BackendError from :meth:`open` for an unknown provider or optimisation level.
    """

    providers: Union[str, Sequence[Any], None] = ("cpu",)
    intra_op_num_threads: int = 0
    inter_op_num_threads: int = 0
    graph_optimization_level: str = "all"
    use_io_binding: Union[bool, str] = "auto"
    allow_spinning: bool = False

    def resolved_providers(self) -> list[Any]:
        return resolve_providers(self.providers)

    def open(self, path: Union[str, Path], expected_graph: str, providers: Sequence[Any],
             io_binding: Optional[bool] = None) -> "OrtGraph":
        """An :class:`OrtGraph` of ``path`` with these options; ``io_binding`` None = this
        option's choice ("auto": on when a GPU provider is used)."""
        if io_binding is None:
            gpu = any(provider_name(p) != "CPUExecutionProvider" for p in providers)
            io_binding = gpu if self.use_io_binding == "auto" else bool(self.use_io_binding)
        return OrtGraph(path, providers, self.intra_op_num_threads, self.inter_op_num_threads,
                        self.graph_optimization_level, io_binding, expected_graph, self.allow_spinning)


class OrtGraph:
    """One ONNX file in one ONNX Runtime session, with its metadata and I/O checks.

    path: the .onnx file. providers: from :func:`resolve_providers`. intra_op_num_threads /
    inter_op_num_threads: 0 = ONNX Runtime's default (one per physical core).
    graph_optimization_level: "disable" | "basic" | "extended" | "all".
    use_io_binding: bind inputs/outputs (outputs stay OrtValues on the provider's device).
    allow_spinning: let idle intra-op threads spin (lower latency on a dedicated CPU).
    expected_graph: the ``ddr.graph`` role this file must have ("encoder", "step", ...).
    Attributes: ``meta`` (decoded ``ddr.*`` metadata), ``inputs`` {name: (shape with None for
    dynamic axes, numpy dtype)}, ``outputs`` {name: shape}, ``providers`` (what the session uses).
    Raises BackendError naming the file when it is missing, unreadable or of another role.
    """

    def __init__(
        self,
        path: Union[str, Path],
        providers: Sequence[Any] = ("CPUExecutionProvider",),
        intra_op_num_threads: int = 0,
        inter_op_num_threads: int = 0,
        graph_optimization_level: str = "all",
        use_io_binding: bool = False,
        expected_graph: Optional[str] = None,
        allow_spinning: bool = False,
    ) -> None:
        ort = import_onnxruntime()
        self.path = str(path)
        if not Path(path).is_file():
            raise BackendError(f"model file not found: {path}")
        if graph_optimization_level not in OPTIMIZATION_LEVELS:
            raise BackendError(
                f"graph_optimization_level={graph_optimization_level!r}: use one of {OPTIMIZATION_LEVELS}"
            )
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(intra_op_num_threads)
        so.inter_op_num_threads = int(inter_op_num_threads)
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[graph_optimization_level]
        so.log_severity_level = 3
        if not allow_spinning:
            # idle intra-op threads sleep instead of spinning: with three sessions (encoder, step,
            # decoder) on a shared CPU, spinning pools steal cores from each other (measured:
            # 1.3x slower step form on the 2-core CI machine)
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(self.path, so, providers=list(providers))
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise BackendError(f"{self.path}: cannot load ONNX model ({str(exc).splitlines()[0]})") from exc
        self.meta: dict[str, Any] = decode_metadata(dict(self.session.get_modelmeta().custom_metadata_map))
        self.graph = self.meta.get("graph")
        if expected_graph is not None and self.graph != expected_graph:
            raise BackendError(
                f"{self.path}: expected a {expected_graph!r} graph from depth-diffusion-ros export, "
                f"metadata ddr.graph is {self.graph!r}"
            )
        self.inputs = {
            i.name: (tuple(d if isinstance(d, int) else None for d in i.shape), _ORT_DTYPES.get(i.type, np.float32))
            for i in self.session.get_inputs()
        }
        self.outputs = {
            o.name: tuple(d if isinstance(d, int) else None for d in o.shape) for o in self.session.get_outputs()
        }
        self.providers = self.session.get_providers()
        self.use_io_binding = bool(use_io_binding)
        self._device = "cuda" if "CUDAExecutionProvider" in self.providers else "cpu"

    def static_shape(self, name: str) -> tuple[Optional[int], ...]:
        """Shape of input ``name``, None on dynamic axes."""
        return self.inputs[name][0]

    def check_feed(self, feed: Mapping[str, Any]) -> None:
        """Raise BackendError naming the file and input if a name, rank, size or dtype differs."""
        missing = sorted(set(self.inputs) - set(feed))
        if missing:
            raise BackendError(f"{self.path}: inputs {missing} not given (graph inputs: {sorted(self.inputs)})")
        for name, (shape, dtype) in self.inputs.items():
            value = feed[name]
            if not isinstance(value, np.ndarray):
                continue  # an OrtValue this graph family produced
            if value.dtype != dtype:
                raise BackendError(f"{self.path}: input {name!r} is {value.dtype}, the graph wants {np.dtype(dtype)}")
            if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
                want = tuple("?" if s is None else s for s in shape)
                raise BackendError(f"{self.path}: input {name!r} has shape {value.shape}, the graph wants {want}")

    def run(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        """Run once on {input name: numpy array or OrtValue}; inputs the graph lacks are ignored.

        Returns {output name: numpy array}, or OrtValues when I/O binding is on."""
        feed = {k: v for k, v in feed.items() if k in self.inputs}
        self.check_feed(feed)
        if not self.use_io_binding:
            feed = {k: (v.numpy() if not isinstance(v, np.ndarray) else v) for k, v in feed.items()}
            names = list(self.outputs)
            return dict(zip(names, self.session.run(names, feed)))
        binding = self.session.io_binding()
        for name, value in feed.items():
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
            else:
                binding.bind_ortvalue_input(name, value)
        for name in self.outputs:
            binding.bind_output(name, self._device)
        self.session.run_with_iobinding(binding)
        return dict(zip(self.outputs, binding.get_outputs()))

    @staticmethod
    def to_numpy(value: Any) -> np.ndarray:
        """A value :meth:`run` returned, on the host."""
        return value if isinstance(value, np.ndarray) else value.numpy()
