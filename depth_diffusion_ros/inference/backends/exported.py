"""What the ONNX Runtime and TensorRT backends share: finding the exported files, checking
their ``ddr.*`` metadata against the request, and the exported-graph forms of the models.

Model files come from ``depth-diffusion-ros export``. Every file carries metadata (graph role,
model hash, export id, config, steps, shapes) that is checked before the first frame, so a wrong
or stale file fails at start with a BackendError naming the file and what differs.

DiffusionDepth has two export forms (``model_path`` is the export directory or one of its files):

* ``step`` (default): ``encoder.onnx`` + ``step.onnx`` + ``decoder.onnx`` driven by the pipeline's
  DDIM loop — any ``num_inference_steps``;
* ``unrolled``: ``sampler_<N>steps_e<E>.onnx``, the whole loop for fixed N steps and E members.

An IID-RDepth export with AV-LFE adds :data:`AUX_ENCODER_FILE` to the step form (same export id):
the backend then has ``uses_aux`` and runs it for a frame whose feed has ``rgb_aux``.

DSR-Diff is exported as one ``dsr_diff_x<s>_<N>steps.onnx`` per scale.

DenseDepth (a one-shot monocular regressor) is exported as one :data:`DENSEDEPTH_FILE`
(role :data:`DENSEDEPTH_GRAPH`): rgb -> metric depth; :func:`model_family` tells the
estimation backends' factory which family a ``model_path`` holds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from depth_diffusion_ros.baselines.row_median import RowMedianDepth
from depth_diffusion_ros.inference.backends.base import DiffusionBackend, GuidedSuperResolutionBackend, OneShotBackend
from depth_diffusion_ros.inference.errors import BackendError
from depth_diffusion_ros.inference.frames import SRInputs
from depth_diffusion_ros.inference.sampler import SamplingOptions, SchedulerSpec
from depth_diffusion_ros.runtime.metadata import read_ddr_metadata
from depth_diffusion_ros.runtime.onnx_fp16 import is_fp16_file

#: The shipped default completion model: its torch checkpoint folder and, inside it, its ONNX
#: export (the ``model_path`` the learned completion backends use when none is given).
DEFAULT_COMPLETION_CHECKPOINT = Path(__file__).resolve().parents[2] / "weights" / "diffusion_depth_kitti"
DEFAULT_COMPLETION_EXPORT = DEFAULT_COMPLETION_CHECKPOINT / "onnx"

STEP_FILES = ("encoder.onnx", "step.onnx", "decoder.onnx")
#: The step form's second encoder of an IID-RDepth export with AV-LFE (rgb, ..., rgb_aux -> cond).
AUX_ENCODER_FILE = "encoder_aux.onnx"
STEP_GRAPHS = ("encoder", "step", "decoder")
EXPORT_FORMS = ("auto", "step", "unrolled")
SR_GLOB = "dsr_diff_x*_*steps.onnx"
#: The one graph of a DenseDepth export (rgb (1,3,H,W) [0,1] -> depth (1,1,H,W) metres) and its role.
DENSEDEPTH_FILE = "densedepth.onnx"
DENSEDEPTH_GRAPH = "densedepth"


def unrolled_file_name(num_inference_steps: int, ensemble_size: int = 1) -> str:
    """``sampler_<N>steps_e<E>.onnx``: the file of a DiffusionDepth sampler unrolled for N steps, E members."""
    return f"sampler_{int(num_inference_steps)}steps_e{int(ensemble_size)}.onnx"


def sr_file_name(scale: int, num_inference_steps: int) -> str:
    """``dsr_diff_x<scale>_<N>steps.onnx``: the file of a DSR-Diff sampler for one scale (matches SR_GLOB)."""
    return f"dsr_diff_x{int(scale)}_{int(num_inference_steps)}steps.onnx"


def refuse_torch_checkpoint(path: Path) -> None:
    """BackendError when ``path`` is a torch checkpoint folder (``model.safetensors`` +
    ``config.yaml``): the ONNX Runtime and TensorRT backends run exported graphs only (and never
    import torch); the message gives the export command."""
    if path.is_dir() and (path / "model.safetensors").is_file() and (path / "config.yaml").is_file():
        raise BackendError(
            f"{path}: this is a torch checkpoint (model.safetensors + config.yaml): export it with "
            f"`depth-diffusion-ros export --checkpoint {path} --output DIR2` and give DIR2 as model_path "
            "(or run replay/demo, which export it for you)"
        )


def checkpoint_architecture(path: Path) -> Optional[str]:
    """``architecture:`` of a torch checkpoint folder's config.yaml (YAML only: no torch, no
    config class), or None when ``path`` is not a checkpoint folder or the file does not say."""
    config = path / "config.yaml"
    if not (path.is_dir() and config.is_file() and (path / "model.safetensors").is_file()):
        return None
    import yaml

    try:
        data = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError):
        return None  # the loader names the file and the problem
    return data.get("architecture") if isinstance(data, dict) else None


def model_family(model_path: Union[str, Path, None]) -> str:
    """"densedepth" when ``model_path`` is a DenseDepth export (a folder with
    :data:`DENSEDEPTH_FILE`, or that file) or a DenseDepth torch checkpoint (config.yaml
    ``architecture: densedepth``), else "diffusion_depth" (the DiffusionDepth family, also for
    '' / None = the shipped weights and for a path that does not exist: its backend names it).
    Reads file names and YAML only (torch-free)."""
    if not model_path:
        return "diffusion_depth"
    p = Path(model_path)
    if p.name == DENSEDEPTH_FILE or (p.is_dir() and (p / DENSEDEPTH_FILE).is_file()) \
            or checkpoint_architecture(p) == "densedepth":
        return "densedepth"
    return "diffusion_depth"


def find_densedepth_file(model_path: Union[str, Path, None]) -> Path:
    """The :data:`DENSEDEPTH_FILE` of a DenseDepth export folder (or that file itself).

    Raises BackendError naming the path when it is missing, a torch checkpoint (with the export
    command), or holds no DenseDepth graph."""
    if not model_path:
        raise BackendError("a DenseDepth backend needs model_path (there are no shipped DenseDepth weights)")
    p = Path(model_path)
    if not p.exists():
        raise BackendError(f"model_path not found: {p}")
    refuse_torch_checkpoint(p)
    path = p / DENSEDEPTH_FILE if p.is_dir() else p
    if not path.is_file():
        raise BackendError(f"{p}: no DenseDepth graph ({DENSEDEPTH_FILE}); export the checkpoint with "
                           "`depth-diffusion-ros export --checkpoint CKPT --output DIR`")
    return path


def find_diffusion_depth_files(model_path: Union[str, Path, None], export_form: str, steps: Optional[int],
                               ensemble: int) -> tuple[str, Any]:
    """("step", (encoder, step, decoder) paths) or ("unrolled", path) for a model directory or file
    (None / "": the shipped model's export, :data:`DEFAULT_COMPLETION_EXPORT`).

    Raises BackendError naming the path when nothing fits the request.
    """
    p = Path(model_path) if model_path else DEFAULT_COMPLETION_EXPORT
    if export_form not in EXPORT_FORMS:
        raise BackendError(f"export_form={export_form!r}: use one of {EXPORT_FORMS}")
    if not p.exists():
        raise BackendError(f"model_path not found: {p}")
    refuse_torch_checkpoint(p)
    if p.is_file():
        if p.name in STEP_FILES:
            p = p.parent
        else:
            if export_form == "step":
                raise BackendError(f"{p}: export_form 'step' needs the export directory with {STEP_FILES}")
            return "unrolled", p
    if (p / DENSEDEPTH_FILE).is_file():
        raise BackendError(f"{p}: a DenseDepth export ({DENSEDEPTH_FILE}: a monocular one-shot regressor), not "
                           "DiffusionDepth: run it with depth_estimation_node (EstimationPipeline)")
    step_files = tuple(p / f for f in STEP_FILES)
    have_step = all(f.is_file() for f in step_files)
    if export_form in ("auto", "step") and have_step:
        return "step", step_files
    if export_form == "step":
        missing = [str(f) for f in step_files if not f.is_file()]
        raise BackendError(f"{p}: step-form graphs missing: {missing}")
    candidates = sorted(c for c in p.glob("sampler_*.onnx") if not is_fp16_file(c))  # not the TensorRT 11 copies
    if steps is not None:
        wanted = p / unrolled_file_name(steps, ensemble)
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


def find_aux_encoder(step_files: Sequence[Path]) -> Optional[Path]:
    """:data:`AUX_ENCODER_FILE` beside a step form's encoder, or None."""
    path = Path(step_files[0]).parent / AUX_ENCODER_FILE
    return path if path.is_file() else None


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


def check_roles(graphs: Sequence[tuple[str, Mapping[str, Any]]], roles: Sequence[str]) -> None:
    """Each (path, meta) must carry the ``ddr.graph`` role at its position (BackendError if not)."""
    for (path, meta), want in zip(graphs, roles):
        if meta.get("graph") != want:
            raise BackendError(f"{path}: built from a {meta.get('graph')!r} graph, expected {want!r}")


def check_unrolled_request(path: str, meta: Mapping[str, Any], num_inference_steps: Optional[int],
                           ensemble_size: int) -> int:
    """Steps of an unrolled sampler graph; BackendError naming the file if steps/ensemble differ."""
    steps = int(meta.get("num_inference_steps", -1))
    ens = int(meta.get("ensemble_size", -1))
    if num_inference_steps is not None and steps != int(num_inference_steps):
        raise BackendError(f"{path}: unrolled for num_inference_steps={steps}, requested {num_inference_steps}")
    if ens != int(ensemble_size):
        raise BackendError(f"{path}: exported for ensemble_size={ens}, requested {ensemble_size}")
    return steps


class ExportedDiffusionBackend(DiffusionBackend):
    """DiffusionDepth over exported graphs (ONNX Runtime sessions or TensorRT engines).

    A subclass builds its graph runners (``run(feed) -> {name: value}``, ``to_numpy(value)``,
    ``static_shape(name)``, ``path``) and calls :meth:`_use_graphs`.
    """

    name = "exported"

    def _use_graphs(self, form: str, graphs: Sequence[Any], metas: Sequence[Mapping[str, Any]],
                    sampling: SamplingOptions) -> None:
        """Adopt the graphs of one export: step form (encoder, step, decoder) or one unrolled
        sampler; reads the model's settings from the head graph's metadata."""
        self.form, self.sampling = form, sampling
        paths = [g.path for g in graphs]
        if form == "step":
            check_roles(list(zip(paths, metas)), STEP_GRAPHS)
            check_family(list(zip(paths, metas)))
            self.encoder, self.step_graph, self.decoder = graphs
            meta = metas[0]
            self.scheduler = SchedulerSpec.from_dict(metas[1].get("scheduler", {}))
            self.num_inference_steps = int(sampling.num_inference_steps or meta.get("num_inference_steps", 20))
            self.batch_capacity = self.step_graph.static_shape("latents")[0]
        else:
            check_roles(list(zip(paths, metas)), ("sampler",))
            (self.sampler_graph,) = graphs
            meta = metas[0]
            self.num_inference_steps = check_unrolled_request(
                paths[0], meta, sampling.num_inference_steps, sampling.ensemble_size)
            self.batch_capacity = int(meta.get("ensemble_size", 1))
        head = graphs[0]
        self.meta = dict(meta)
        self.model_file = head.path
        self.input_hw = tuple(head.static_shape("rgb")[2:])
        config = meta.get("config") or {}
        self.size_divisor = int(meta.get("size_divisor", 1) or 1)
        self.mode = str(config.get("mode", "completion"))
        self.mask_unsupported = bool(config.get("mask_unsupported", False))
        self.canonical_focal = meta_canonical_focal(meta)
        self.depth_prior = None
        if meta.get("depth_prior"):
            try:
                self.depth_prior = RowMedianDepth.from_json(json.dumps(meta["depth_prior"]), f"{head.path}: ddr.depth_prior")
            except ValueError as exc:
                raise BackendError(str(exc)) from exc
        self.external_priors = tuple(config.get("external_priors") or ()) if self.mode == "completion" else ()
        self.latent_channels = int(meta["latent_channels"])
        self.latent_stride = int(meta["latent_stride"])

    @property
    def model_sha256(self) -> Optional[str]:
        return self.meta.get("model_sha256")

    def _use_aux_encoder(self, graph: Any, meta: Mapping[str, Any]) -> None:
        """Adopt the step form's auxiliary-view encoder (role ``encoder_aux``, same export)."""
        check_roles([(graph.path, meta)], ("encoder_aux",))
        check_family([(self.model_file, self.meta), (graph.path, meta)])
        self.encoder_aux = graph

    @property
    def uses_aux(self) -> bool:
        """True with an auxiliary-view encoder (IID-RDepth AV-LFE export)."""
        return getattr(self, "encoder_aux", None) is not None

    def encode(self, feed: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Every output of the encoder graph by name: "cond" (the step graph's condition) and,
        in a DiffusionDepth export, the decoder's guidance and skips (the decoder takes the ones
        it names; older exports and IID-RDepth: "cond" alone, for both)."""
        if "rgb_aux" in feed and self.uses_aux:
            return self.encoder_aux.run(feed)
        return self.encoder.run({k: v for k, v in feed.items() if k != "rgb_aux"})

    def step(self, latents: Any, cond: Mapping[str, Any], timestep: int, prev_timestep: int) -> Any:
        feed = {"latents": latents, "cond": cond["cond"], "timestep": np.array([timestep], np.int64),
                "prev_timestep": np.array([prev_timestep], np.int64)}
        return self.step_graph.run(feed)["prev_latents"]

    def decode(self, latents: Any, cond: Mapping[str, Any]) -> np.ndarray:
        return self.decoder.to_numpy(self.decoder.run(dict(cond, latents=latents))["depth"])

    def repeat(self, cond: Mapping[str, Any], n: int) -> dict[str, Any]:
        return {k: np.repeat(self.to_numpy(v), n, axis=0) for k, v in cond.items()}

    def to_numpy(self, value: Any) -> np.ndarray:
        return self.encoder.to_numpy(value)

    def sample_unrolled(self, feed: Mapping[str, np.ndarray], noise: np.ndarray) -> np.ndarray:
        out = self.sampler_graph.run(dict(feed, noise=np.ascontiguousarray(noise, np.float32)))
        return self.sampler_graph.to_numpy(out["depth"])


def meta_canonical_focal(meta: Mapping[str, Any]) -> Optional[float]:
    """The ``ddr.canonical_focal`` of an exported graph (pixels), or None."""
    focal = meta.get("canonical_focal")
    return float(focal) if focal else None


class ExportedDenseDepthBackend(OneShotBackend):
    """DenseDepth over its one exported graph (an ONNX Runtime session or a TensorRT engine).

    A subclass builds the graph runner (``run(feed) -> {name: value}``, ``to_numpy(value)``,
    ``static_shape(name)``, ``path``) and calls :meth:`_use_graph`.
    """

    name = "exported"

    def _use_graph(self, graph: Any, meta: Mapping[str, Any]) -> None:
        """Adopt the graph (its ``ddr.graph`` must be :data:`DENSEDEPTH_GRAPH`, BackendError
        otherwise); size divisor, static size and canonical focal from its metadata."""
        check_roles([(graph.path, meta)], (DENSEDEPTH_GRAPH,))
        self.graph, self.meta = graph, dict(meta)
        self.model_file = graph.path
        self.input_hw = tuple(graph.static_shape("rgb")[2:])
        self.size_divisor = int(meta.get("size_divisor", 32) or 32)
        self.canonical_focal = meta_canonical_focal(meta)

    @property
    def model_sha256(self) -> Optional[str]:
        return self.meta.get("model_sha256")

    def _run(self, rgb: np.ndarray) -> np.ndarray:
        return self.graph.to_numpy(self.graph.run({"rgb": rgb})["depth"])


def find_sr_models(model_path: Union[str, Path, None], num_inference_steps: Optional[int]) -> tuple[dict, int]:
    """{scale: (path, decoded metadata)} of the DSR-Diff graphs in ``model_path`` for one step count.

    model_path: an export directory or one ``dsr_diff_x<s>_<N>steps.onnx`` file (None / "": refused
    with the command that makes one: the graphs are per scale and frame size, none ships).
    num_inference_steps: None = the step count of the graphs found (must be unique).
    Returns (graphs by scale, steps). Raises BackendError naming the path when nothing fits.
    """
    if not model_path:
        raise BackendError(
            "model_path is required: the directory of a DSR-Diff ONNX export, one graph per scale and frame "
            "size (e.g. `depth-diffusion-ros export --model dsr_diff --frame-size 640x480 --scale 8 --output DIR`); "
            "backend torch runs the shipped weights without one")
    p = Path(model_path)
    if not p.exists():
        raise BackendError(f"model_path not found: {p}")
    refuse_torch_checkpoint(p)
    files = [p] if p.is_file() else sorted(p.glob(SR_GLOB))
    found: dict[tuple[int, int], tuple[Path, dict]] = {}
    for f in files:
        meta = read_ddr_metadata(f)
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


class ExportedSuperResolutionBackend(GuidedSuperResolutionBackend):
    """DSR-Diff over one exported graph per scale (ONNX Runtime sessions or TensorRT engines).

    A subclass fills ``graphs`` {scale: runner} and calls :meth:`_use_graphs`.
    """

    name = "exported"
    graphs: dict

    def _use_graphs(self, graphs: dict, meta: Mapping[str, Any], steps: int, sampling: SamplingOptions) -> None:
        self.graphs, self.meta, self.sampling = graphs, dict(meta), sampling
        self.num_inference_steps = int(steps)
        self.size_divisor = int(meta["size_divisor"])
        self.min_scale, self.max_scale = int(meta["min_scale"]), int(meta["max_scale"])
        self.guidance_dim = int(meta["guidance_dim"])
        self.model_file = ", ".join(f"x{s}: {g.path}" for s, g in sorted(graphs.items()))

    def sample(self, inputs: SRInputs, noise: np.ndarray) -> np.ndarray:
        """Depth (1,1,Hp,Wp) metres; BackendError for a scale without a graph or another size."""
        graph = self.graphs.get(inputs.scale)
        if graph is None:
            raise BackendError(f"no exported DSR-Diff graph for scale x{inputs.scale} (have {self.model_file})")
        want = tuple(graph.static_shape("rgb")[2:])
        got = tuple(inputs.rgb.shape[2:])
        if any(s is not None and s != v for s, v in zip(want, got)):
            raise BackendError(f"{graph.path}: exported for {want[1]}x{want[0]} (WxH) images, got "
                               f"{inputs.size[1]}x{inputs.size[0]} (padded {got[1]}x{got[0]})")
        out = graph.run(dict(inputs.feed(), noise=np.ascontiguousarray(noise, np.float32)))
        return np.asarray(graph.to_numpy(out["depth"]), np.float32)
