"""ONNX Runtime backends (no torch): DiffusionDepth completion and DSR-Diff super-resolution.

Model files come from ``depth-diffusion-ros export`` (:mod:`depth_diffusion_ros.export`); each
carries ``ddr.*`` metadata (graph role, model hash, config, steps, shapes) that is checked
against the request before the first frame, so a wrong or stale file fails at start with a
:class:`BackendError` that names the file and what differs.

Two export forms of the diffusion sampler are accepted (``model_path`` is the export directory
or one of its files):

* ``step`` (default): ``encoder.onnx`` + ``step.onnx`` + ``decoder.onnx`` driven by the host DDIM
  loop of :mod:`depth_diffusion_ros.inference.onnx_sampler` — any ``num_inference_steps``;
* ``unrolled``: ``sampler_<N>steps_e<E>.onnx``, the whole loop for fixed N steps and E samples.

Execution providers come from a parameter (``providers``: short names ``cpu``, ``cuda``,
``tensorrt``, ``openvino``, ``dnnl`` or ORT's full names); those not available in the
installed onnxruntime build are dropped with a log line. I/O binding keeps the latents and the
condition on the device between denoising steps when a GPU provider runs (``use_io_binding``
"auto"); on the CPU provider it made no difference beyond run-to-run noise on the 2-core CI
machine, so it is off there by default.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from depth_diffusion_ros.inference.backends.base import MONOCULAR_REFUSAL, BackendError, DepthResult
from depth_diffusion_ros.inference.onnx_sampler import HostDDIMSampler, SchedulerSpec

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
STEP_FILES = ("encoder.onnx", "step.onnx", "decoder.onnx")
EXPORT_FORMS = ("auto", "step", "unrolled")

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def _import_ort() -> Any:
    try:
        import onnxruntime as ort  # noqa: PLC0415

        return ort
    except ImportError as exc:  # pragma: no cover - requirements.txt installs it
        raise BackendError("onnxruntime is not installed (pip install onnxruntime)") from exc


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
        ort = _import_ort()
        available = ort.get_available_providers()
    all_names = set(PROVIDER_ALIASES.values())
    try:
        all_names |= set((ort or _import_ort()).get_all_providers())
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
        if any((p[0] if isinstance(p, tuple) else p) == full for p in out):
            continue
        out.append((full, dict(options)) if options else full)
    if not any((p[0] if isinstance(p, tuple) else p) == "CPUExecutionProvider" for p in out):
        out.append("CPUExecutionProvider")
    return out


def _provider_name(p: Any) -> str:
    return p[0] if isinstance(p, tuple) else p


class OrtGraph:
    """One ONNX file in one ONNX Runtime session, with its metadata and I/O checks.

    path: the .onnx file. providers: from :func:`resolve_providers`. intra_op_num_threads /
    inter_op_num_threads: 0 = ONNX Runtime's default (one per physical core).
    graph_optimization_level: "disable" | "basic" | "extended" | "all".
    use_io_binding: bind inputs/outputs (outputs stay OrtValues on the provider's device).
    allow_spinning: let idle intra-op threads spin (lower latency on a dedicated CPU).
    expected_graph: the ``ddr.graph`` role this file must have ("encoder", "step", ...).
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
        ort = _import_ort()
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
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.graph = self.metadata.get("ddr.graph")
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
        self._ort = ort

    # ------------------------------------------------------------------ metadata
    def meta_json(self, key: str, default: Any = None) -> Any:
        """Decoded JSON value of metadata key ``ddr.<key>`` (default when absent)."""
        raw = self.metadata.get("ddr." + key)
        if raw is None:
            return default
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def static_shape(self, name: str) -> tuple[Optional[int], ...]:
        return self.inputs[name][0]

    # ------------------------------------------------------------------ checks
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

    # ------------------------------------------------------------------ run
    def run(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        """Run once; returns numpy arrays, or OrtValues when I/O binding is on."""
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
        return value if isinstance(value, np.ndarray) else value.numpy()


def _repeat_ortvalue(graph: OrtGraph) -> Any:
    def repeat(value: Any, n: int) -> Any:
        return np.repeat(graph.to_numpy(value), n, axis=0)

    return repeat


def _find_model_files(model_path: Union[str, Path], export_form: str, steps: Optional[int], ensemble: int) -> tuple[str, Any]:
    """("step", (enc, step, dec)) or ("unrolled", path) for a model directory or file."""
    p = Path(model_path)
    if export_form not in EXPORT_FORMS:
        raise BackendError(f"export_form={export_form!r}: use one of {EXPORT_FORMS}")
    if not p.exists():
        raise BackendError(f"model_path not found: {p}")
    if p.is_file():
        if p.name in STEP_FILES:
            p = p.parent
        else:
            if export_form == "step":
                raise BackendError(f"{p}: export_form 'step' needs the export directory with {STEP_FILES}")
            return "unrolled", p
    step_files = tuple(p / f for f in STEP_FILES)
    have_step = all(f.is_file() for f in step_files)
    if export_form in ("auto", "step") and have_step:
        return "step", step_files
    if export_form == "step":
        missing = [str(f) for f in step_files if not f.is_file()]
        raise BackendError(f"{p}: step-form graphs missing: {missing}")
    candidates = sorted(p.glob("sampler_*.onnx"))
    if steps is not None:
        wanted = p / f"sampler_{int(steps)}steps_e{int(ensemble)}.onnx"
        if wanted.is_file():
            return "unrolled", wanted
        raise BackendError(
            f"{p}: no graph for num_inference_steps={steps}, ensemble_size={ensemble} "
            f"(looked for {wanted.name}; found {[c.name for c in candidates] or 'none'}"
            f"{'' if have_step else ' and no ' + '/'.join(STEP_FILES)})"
        )
    if len(candidates) == 1:
        return "unrolled", candidates[0]
    raise BackendError(
        f"{p}: cannot choose a model: step-form files {'present' if have_step else 'missing'}, "
        f"unrolled graphs {[c.name for c in candidates] or 'none'}; set num_inference_steps"
    )


def decode_metadata(raw: Mapping[str, str]) -> dict[str, Any]:
    """``ddr.*`` metadata_props -> {key without prefix: JSON-decoded value}."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if not k.startswith("ddr."):
            continue
        try:
            out[k[4:]] = json.loads(v)
        except ValueError:
            out[k[4:]] = v
    return out


class ExportedCompletionBase:
    """Frame <-> tensor handling shared by the ONNX Runtime and TensorRT completion backends.

    Subclasses set ``head_path`` (file named in errors), ``meta`` (decoded ``ddr.*`` metadata of
    the head graph), ``input_hw`` ((H, W) of a static graph, None entries when dynamic),
    ``ensemble_size``, ``seed``, ``num_inference_steps``, ``form`` ("step" | "unrolled") and
    either ``sampler`` (step form: a host DDIM sampler) or ``sampler_graph`` (unrolled form: a
    graph whose ``run(feeds) -> {name: array}``).
    """

    name = "exported"
    head_path: str
    meta: dict
    input_hw: tuple
    ensemble_size: int = 1
    seed: int = 0
    num_inference_steps: int = 20

    @property
    def size_divisor(self) -> int:
        return int(self.meta.get("size_divisor", 1) or 1)

    @property
    def mode(self) -> str:
        return str((self.meta.get("config") or {}).get("mode", "completion"))

    @property
    def needs_lidar(self) -> bool:
        """True for completion models exported with ``mask_unsupported`` (no trained monocular branch)."""
        cfg = self.meta.get("config") or {}
        return self.mode == "completion" and bool(cfg.get("mask_unsupported", False))

    @property
    def model_sha256(self) -> Optional[str]:
        return self.meta.get("model_sha256")

    def _prepare(self, rgb: np.ndarray, sparse_depth: Optional[np.ndarray]) -> tuple[dict, tuple]:
        from depth_diffusion_ros.inference import preprocess

        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise BackendError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        if sparse_depth is None:
            sparse_depth = np.zeros((h, w), np.float32)
        sparse_depth = np.asarray(sparse_depth, np.float32)
        if sparse_depth.shape != (h, w):
            raise BackendError(f"sparse_depth shape {sparse_depth.shape} differs from rgb {(h, w)}")
        if self.needs_lidar and not np.any(sparse_depth > 0):
            raise BackendError(f"{self.head_path}: {MONOCULAR_REFUSAL}")
        rgb_p, _ = preprocess.pad_to_multiple(rgb, self.size_divisor)
        sparse_p, _ = preprocess.pad_to_multiple(sparse_depth, self.size_divisor)
        H, W = rgb_p.shape[:2]
        if any(s is not None and s != v for s, v in zip(self.input_hw, (H, W))):
            raise BackendError(
                f"{self.head_path}: exported for {self.input_hw[1]}x{self.input_hw[0]} (WxH) input, got a "
                f"{w}x{h} frame (padded to {W}x{H}); export again with --height {H} --width {W} or resize"
            )
        sparse_t, valid_t = preprocess.sparse_to_tensor_layout(sparse_p)
        feed = {"rgb": preprocess.rgb_to_tensor_layout(rgb_p), "sparse_depth": sparse_t, "valid_mask": valid_t}
        return feed, (h, w, H, W)

    def make_noise(self, H: int, W: int) -> np.ndarray:
        """Initial latents (E, C, H/s, W/s) float32 from ``seed`` (every frame), the same draw as
        the torch backend's (:func:`depth_diffusion_ros.inference.preprocess.make_noise`)."""
        from depth_diffusion_ros.inference import preprocess

        c = int(self.meta["latent_channels"])
        s = int(self.meta["latent_stride"])
        return preprocess.make_noise((self.ensemble_size, c, H // s, W // s), self.seed)

    def infer_tensors(self, feed: Mapping[str, np.ndarray], noise: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Run on tensor-layout inputs; returns (depth (1,1,H,W), uncertainty (1,1,H,W) | None)."""
        if self.form == "step":
            return self.sampler.sample(feed["rgb"], feed["sparse_depth"], feed["valid_mask"], noise,
                                       self.num_inference_steps)
        out = self.sampler_graph.run(dict(feed, noise=noise))
        return out["depth"], (out.get("uncertainty") if self.ensemble_size > 1 else None)

    def infer(self, rgb: np.ndarray, sparse_depth: Optional[np.ndarray], intrinsics: Any = None) -> DepthResult:
        """rgb (H,W,3) uint8, sparse_depth (H,W) m (0 = missing) or None -> DepthResult (H,W) m.

        intrinsics are not used by DiffusionDepth (accepted for the backend protocol).
        """
        feed, (h, w, H, W) = self._prepare(rgb, sparse_depth)
        depth, unc = self.infer_tensors(feed, self.make_noise(H, W))
        from depth_diffusion_ros.inference import preprocess

        pads = (H - h, W - w)
        depth = np.ascontiguousarray(preprocess.crop_padding(np.asarray(depth, np.float32), pads)[0, 0])
        if unc is not None:
            unc = np.ascontiguousarray(preprocess.crop_padding(np.asarray(unc, np.float32), pads)[0, 0])
        return DepthResult(depth=depth, uncertainty=unc)


def check_unrolled_request(path: str, meta: Mapping[str, Any], num_inference_steps: Optional[int], ensemble_size: int) -> int:
    """Steps of an unrolled sampler graph; BackendError naming the file if steps/ensemble differ."""
    steps = int(meta.get("num_inference_steps", -1))
    ens = int(meta.get("ensemble_size", -1))
    if num_inference_steps is not None and steps != int(num_inference_steps):
        raise BackendError(f"{path}: unrolled for num_inference_steps={steps}, requested {num_inference_steps}")
    if ens != int(ensemble_size):
        raise BackendError(f"{path}: exported for ensemble_size={ens}, requested {ensemble_size}")
    return steps


def check_family(metas: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Encoder, step and decoder must come from one export of one model (BackendError if not)."""
    ref_path, ref = metas[0]
    for path, m in metas[1:]:
        for key in ("model_sha256", "export_id"):
            if ref.get(key) != m.get(key):
                raise BackendError(
                    f"{path}: ddr.{key} {m.get(key)!r} differs from {ref_path}'s {ref.get(key)!r}; "
                    f"re-export the graphs together"
                )


class OnnxRuntimeCompletionBackend(ExportedCompletionBase):
    """DiffusionDepth depth completion (or monocular depth) with ONNX Runtime, torch-free.

    Args:
        model_path: export directory (``encoder.onnx``/``step.onnx``/``decoder.onnx`` and/or
            ``sampler_<N>steps_e<E>.onnx``) or one of those files.
        num_inference_steps: DDIM steps (None: the model's configured default). The unrolled
            form must have been exported for exactly this number.
        ensemble_size: diffusion samples per frame; > 1 gives ``uncertainty`` (std, metres).
        providers: execution providers (see :func:`resolve_providers`).
        intra_op_num_threads, inter_op_num_threads: 0 = ONNX Runtime default.
        graph_optimization_level: "disable" | "basic" | "extended" | "all".
        use_io_binding: True / False / "auto" (on for GPU providers).
        export_form: "auto" (step form if present) | "step" | "unrolled".
        seed: the initial noise is drawn from this seed on every frame, so a static scene
            gives the same depth frame after frame.
        allow_spinning: ONNX Runtime intra-op threads spin while idle (off by default: robots
            share the CPU between nodes, and the three step-form sessions would compete).
        engine_cache_dir, precision, force_engine_update, device: accepted and ignored (TensorRT /
            torch parameters), so a node can pass one parameter set to any backend.
    infer() raises BackendError if the (padded) frame size differs from a static graph's.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: Union[str, Path],
        num_inference_steps: Optional[int] = None,
        ensemble_size: int = 1,
        providers: Union[str, Sequence[Any], None] = ("cpu",),
        intra_op_num_threads: int = 0,
        inter_op_num_threads: int = 0,
        graph_optimization_level: str = "all",
        use_io_binding: Union[bool, str] = "auto",
        export_form: str = "auto",
        seed: int = 0,
        allow_spinning: bool = False,
        engine_cache_dir: Optional[str] = None,
        precision: Optional[str] = None,
        force_engine_update: bool = False,
        device: Optional[str] = None,
    ) -> None:
        del engine_cache_dir, precision, force_engine_update, device  # other backends' options
        if int(ensemble_size) < 1:
            raise BackendError(f"ensemble_size={ensemble_size}: must be >= 1")
        if num_inference_steps is not None and int(num_inference_steps) < 1:
            raise BackendError(f"num_inference_steps={num_inference_steps}: must be >= 1")
        self.ensemble_size = int(ensemble_size)
        self.seed = int(seed)
        self.providers = resolve_providers(providers)
        gpu = any(_provider_name(p) != "CPUExecutionProvider" for p in self.providers)
        io_binding = gpu if use_io_binding == "auto" else bool(use_io_binding)
        LOG.info("onnxruntime providers: %s (I/O binding %s)", [_provider_name(p) for p in self.providers], io_binding)
        opts = dict(
            providers=self.providers,
            intra_op_num_threads=intra_op_num_threads,
            inter_op_num_threads=inter_op_num_threads,
            graph_optimization_level=graph_optimization_level,
            allow_spinning=allow_spinning,
        )
        self.form, files = _find_model_files(model_path, export_form, num_inference_steps, self.ensemble_size)
        if self.form == "step":
            enc, step, dec = files
            self.encoder = OrtGraph(enc, use_io_binding=io_binding, expected_graph="encoder", **opts)
            self.step = OrtGraph(step, use_io_binding=io_binding, expected_graph="step", **opts)
            self.decoder = OrtGraph(dec, use_io_binding=False, expected_graph="decoder", **opts)
            graphs = [self.encoder, self.step, self.decoder]
            check_family([(g.path, decode_metadata(g.metadata)) for g in graphs])
            head = self.encoder
            self.meta = decode_metadata(head.metadata)
            self.num_inference_steps = int(num_inference_steps or self.meta.get("num_inference_steps", 20))
            self.sampler = HostDDIMSampler(
                self.encoder, self.step, self.decoder,
                SchedulerSpec.from_dict(decode_metadata(self.step.metadata).get("scheduler", {})),
                batch_capacity=self.step.static_shape("latents")[0],
                repeat_cond=_repeat_ortvalue(self.encoder),
            )
        else:
            self.sampler_graph = head = OrtGraph(files, use_io_binding=False, expected_graph="sampler", **opts)
            self.meta = decode_metadata(head.metadata)
            self.num_inference_steps = check_unrolled_request(
                head.path, self.meta, num_inference_steps, self.ensemble_size)
        self.head_path = head.path
        self.input_hw = tuple(head.static_shape("rgb")[2:])



def default_threads() -> int:
    """Physical cores available to this process (ONNX Runtime's own default is similar)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# ============================================================================ super-resolution
SR_GLOB = "dsr_diff_x*_*steps.onnx"


def find_sr_models(model_path: Union[str, Path], num_inference_steps: Optional[int]) -> tuple[dict, int]:
    """{scale: (path, decoded metadata)} of the DSR-Diff graphs in ``model_path`` for one step count.

    model_path: an export directory or one ``dsr_diff_x<s>_<N>steps.onnx`` file.
    num_inference_steps: None = the step count of the graphs found (must be unique).
    Returns (graphs by scale, steps). Raises BackendError naming the path when nothing fits.
    """
    from depth_diffusion_ros.export.onnx_export import ExportError, read_metadata

    p = Path(model_path)
    if not p.exists():
        raise BackendError(f"model_path not found: {p}")
    files = [p] if p.is_file() else sorted(p.glob(SR_GLOB))
    found: dict[tuple[int, int], tuple[Path, dict]] = {}
    for f in files:
        try:
            meta = decode_metadata(read_metadata(f))
        except ExportError as exc:
            raise BackendError(str(exc)) from exc
        if meta.get("graph") != "sr_sampler":
            raise BackendError(f"{f}: expected a DSR-Diff 'sr_sampler' graph, metadata ddr.graph is {meta.get('graph')!r}")
        found[(int(meta["scale"]), int(meta["num_inference_steps"]))] = (f, meta)
    if not found:
        raise BackendError(f"{p}: no DSR-Diff graph ({SR_GLOB}); export one with "
                           f"'depth-diffusion-ros export --model dsr_diff'")
    steps_available = sorted({s for _, s in found})
    if num_inference_steps is None:
        if len(steps_available) > 1:
            raise BackendError(f"{p}: graphs for several step counts {steps_available}; set num_inference_steps")
        steps = steps_available[0]
    else:
        steps = int(num_inference_steps)
    by_scale = {sc: v for (sc, st), v in found.items() if st == steps}
    if not by_scale:
        raise BackendError(f"{p}: no DSR-Diff graph for num_inference_steps={steps} (exported: {steps_available})")
    return by_scale, steps


class ExportedSuperResolutionBase:
    """DSR-Diff frame handling shared by the ONNX Runtime and TensorRT SR backends.

    Subclasses fill ``graphs`` {scale: runner with .path, .run(feed), .static_shape(name)} and
    ``meta`` (metadata of one graph), and set ensemble_size, seed, num_inference_steps.
    """

    name = "exported"
    graphs: dict
    meta: dict
    ensemble_size: int = 1
    seed: int = 0

    def infer(self, rgb: np.ndarray, depth_lr: np.ndarray) -> DepthResult:
        """rgb (H,W,3) uint8, depth_lr (h,w) float32 m (0/NaN = missing), H = s*h, W = s*w.

        Returns DepthResult(depth (H,W) m, 0 where the LR input had no measurement nearby;
        uncertainty (H,W) m or None). BackendError for a scale without a graph or a frame size
        other than the graph's (both name the file / what was exported).
        """
        from depth_diffusion_ros.inference import preprocess
        from depth_diffusion_ros.models.dsr_diff_io import finish_sr_output, prepare_sr_inputs

        try:
            inp = prepare_sr_inputs(rgb, depth_lr, int(self.meta["size_divisor"]),
                                    int(self.meta["min_scale"]), int(self.meta["max_scale"]))
        except ValueError as exc:
            raise BackendError(f"super-resolution input rejected: {exc}") from exc
        graph = self.graphs.get(inp.scale)
        if graph is None:
            raise BackendError(f"no exported DSR-Diff graph for scale x{inp.scale} "
                               f"(have {', '.join(f'x{s}: {g.path}' for s, g in sorted(self.graphs.items()))})")
        want = tuple(graph.static_shape("rgb")[2:])
        got = tuple(inp.rgb.shape[2:])
        if any(s is not None and s != v for s, v in zip(want, got)):
            raise BackendError(f"{graph.path}: exported for {want[1]}x{want[0]} (WxH) images, got "
                               f"{inp.size[1]}x{inp.size[0]} (padded {got[1]}x{got[0]})")
        noise = preprocess.make_noise((self.ensemble_size, int(self.meta["guidance_dim"])), self.seed)
        outs = []
        for k in range(self.ensemble_size):
            out = graph.run({"rgb": inp.rgb, "depth_lr": inp.depth_lr, "valid_mask_lr": inp.valid_mask_lr,
                             "noise": noise[k:k + 1]})
            outs.append(finish_sr_output(np.asarray(graph.to_numpy(out["depth"])), inp))
        if len(outs) == 1:
            return DepthResult(depth=outs[0], uncertainty=None)
        stack = np.stack(outs, 0)
        valid = (stack > 0).all(axis=0)
        mean = np.where(valid, stack.mean(0), 0.0).astype(np.float32)
        std = np.where(valid, stack.std(0), 0.0).astype(np.float32)
        return DepthResult(depth=mean, uncertainty=std)


class OnnxRuntimeSuperResolutionBackend(ExportedSuperResolutionBase):
    """DSR-Diff depth super-resolution with ONNX Runtime, torch-free.

    Args:
        model_path: directory of ``dsr_diff_x<s>_<N>steps.onnx`` files (one per scale) or one file.
        num_inference_steps: GRN DDIM steps of the graphs to use (None: the exported count).
        ensemble_size, seed, providers, intra_op_num_threads, inter_op_num_threads,
        graph_optimization_level, allow_spinning: as :class:`OnnxRuntimeCompletionBackend`.
        engine_cache_dir, precision, force_engine_update, device: accepted and ignored.
    Raises BackendError naming the file for missing/mismatched graphs.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: Union[str, Path],
        num_inference_steps: Optional[int] = None,
        ensemble_size: int = 1,
        providers: Union[str, Sequence[Any], None] = ("cpu",),
        intra_op_num_threads: int = 0,
        inter_op_num_threads: int = 0,
        graph_optimization_level: str = "all",
        seed: int = 0,
        allow_spinning: bool = False,
        engine_cache_dir: Optional[str] = None,
        precision: Optional[str] = None,
        force_engine_update: bool = False,
        device: Optional[str] = None,
    ) -> None:
        del engine_cache_dir, precision, force_engine_update, device
        if int(ensemble_size) < 1:
            raise BackendError(f"ensemble_size={ensemble_size}: must be >= 1")
        self.ensemble_size, self.seed = int(ensemble_size), int(seed)
        self.providers = resolve_providers(providers)
        found, self.num_inference_steps = find_sr_models(model_path, num_inference_steps)
        self.graphs = {
            scale: OrtGraph(path, self.providers, intra_op_num_threads, inter_op_num_threads,
                            graph_optimization_level, expected_graph="sr_sampler", allow_spinning=allow_spinning)
            for scale, (path, _) in found.items()
        }
        self.meta = next(iter(found.values()))[1]
