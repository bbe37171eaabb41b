"""Export DiffusionDepth (Duan et al., arXiv 2303.05021) to ONNX in two forms.

* ``step`` form — three graphs driven by the pipelines' DDIM loop
  (:mod:`depth_diffusion_ros.inference.sampler`), any number of steps:
    ``encoder.onnx``  rgb (1,3,H,W), sparse_depth (1,1,H,W), valid_mask (1,1,H,W) (, priors)
                      -> cond (the denoiser's condition) and, for a DiffusionDepth, the decoder's
                      inputs unpacked: guidance (1,G,H,W), skip_0, skip_1, ...
                      (``DiffusionDepth.condition_parts``); IID-RDepth: cond only (packed)
    ``step.onnx``     latents (1,d,h,w), cond, timestep (1,) int64, prev_timestep (1,) int64
                      -> prev_latents   (denoiser + DDIM update, eta 0; Song et al. 2021, eq. 12)
    ``decoder.onnx``  latents and the encoder's other outputs (guidance, skip_<i>; IID-RDepth:
                      cond) -> depth (1,C,H,W) metres (C = 2, [depth, sigma], for a model with
                      the uncertainty head). The backends feed each graph the encoder outputs
                      it names.
* ``unrolled`` form — ``sampler_<N>steps_e<E>.onnx``: encoder, N DDIM steps with constant
  timesteps and decoder for E ensemble members in one graph:
    rgb, sparse_depth, valid_mask, noise (E,d,h,w) -> depth (E,C,H,W) (one map per member; the
  pipeline aggregates them with the one ensemble rule,
  :func:`depth_diffusion_ros.inference.sampler.aggregate_depth_members`).

An IID-RDepth checkpoint (architecture ``iid_rdepth``: the same graph parts) exports the same
way; with AV-LFE the step form also has ``encoder_aux.onnx`` (rgb, sparse_depth, valid_mask,
rgb_aux -> cond), the encoder the backends run when a frame comes with its auxiliary view.

Each file is checked against torch right after export (:func:`check_parity`, default on a real
KITTI/NYU frame chosen by the caller): a single network pass to ``atol_pass`` (1e-4), the whole
sampling loop to ``atol_loop`` (1e-3 metres, plus 1e-4 relative because depth grows to 80 m).
metadata_props (``ddr.*``): graph, model_sha256 (the checkpoint's tensor hash), export_id,
config (JSON), num_inference_steps, ensemble_size, size_divisor, latent_channels,
latent_stride, scheduler, height, width, parity errors, and canonical_focal (pixels) for a
monocular model trained at one focal length, depth_prior (the row-median prior a monocular
model's output is a ratio to).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from depth_diffusion_ros.export.onnx_export import (  # noqa: F401 - ExportedGraph, ExportReport: their old home
    DEFAULT_OPSET,
    ExportedGraph,
    ExportError,
    ExportReport,
    export_checked,
    model_sha256,
    write_export_json,
    write_metadata,
)
from depth_diffusion_ros.inference.backends.exported import (  # the names the backends look for
    AUX_ENCODER_FILE,
    unrolled_file_name,
)

FORMS = ("step", "unrolled")


def _torch_modules() -> Any:
    import torch
    from torch import nn

    class EncoderGraph(nn.Module):
        """rgb, sparse_depth, valid_mask (, priors) -> the values of :func:`condition_of`."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, rgb, sparse_depth, valid_mask, priors=None):
            parts = condition_of(self.model, rgb, sparse_depth, valid_mask, priors)
            return tuple(parts.values()) if len(parts) > 1 else parts["cond"]

    class EncoderAuxGraph(nn.Module):
        """rgb, sparse_depth, valid_mask, rgb_aux -> cond (IID-RDepth with AV-LFE)."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, rgb, sparse_depth, valid_mask, rgb_aux):
            return self.model.encode_condition(rgb, rgb_aux=rgb_aux)

    class StepGraph(nn.Module):
        """latents, cond, timestep, prev_timestep -> prev_latents (DiffusionDepth.ddim_step)."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, latents, cond, timestep, prev_timestep):
            return self.model.ddim_step(latents, timestep, prev_timestep, cond)

    class DecoderGraph(nn.Module):
        """latents and the condition parts ``names`` -> depth (DiffusionDepth.decode)."""

        def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
            super().__init__()
            self.model, self.names = model, list(names)

        def forward(self, latents, p0, p1=None, p2=None, p3=None, p4=None):
            # one parameter per part (not *parts): torch.export maps dynamic axes onto parameters
            parts = dict(zip(self.names, (p0, p1, p2, p3, p4)))
            return self.model.decode(latents, as_model_condition(self.model, parts))

    class UnrolledSampler(nn.Module):
        """The whole sampler for fixed timestep pairs: E members' depth (E,C,H,W) from noise (E,d,h,w)
        (C = 2, [depth, sigma], for a model with the uncertainty head)."""

        def __init__(self, model: nn.Module, pairs: Sequence[tuple[int, int]], ensemble_size: int) -> None:
            super().__init__()
            self.model = model
            self.pairs = [(int(t), int(p)) for t, p in pairs]
            self.ensemble_size = int(ensemble_size)

        def forward(self, rgb, sparse_depth, valid_mask, noise, priors=None):
            m = self.model
            parts = condition_of(m, rgb, sparse_depth, valid_mask, priors)
            if self.ensemble_size > 1:
                parts = {k: v.repeat_interleave(self.ensemble_size, dim=0) for k, v in parts.items()}
            cond = as_model_condition(m, parts)
            latents = noise
            for t, p in self.pairs:
                tt = torch.tensor([t], dtype=torch.long)
                tp = torch.tensor([p], dtype=torch.long)
                latents = m.ddim_step(latents, tt, tp, cond)
            return m.decode(latents, cond)

    return EncoderGraph, StepGraph, DecoderGraph, UnrolledSampler, EncoderAuxGraph


def condition_of(model: Any, rgb: Any, sparse_depth: Any = None, valid_mask: Any = None, priors: Any = None) -> dict:
    """The condition as the graphs carry it: ``model.condition_parts`` (DiffusionDepth: "cond",
    "guidance", "skip_<i>") or {"cond": model.encode_condition(...)} (IID-RDepth, packed)."""
    sparse = (sparse_depth, valid_mask, priors) if model.completion else (None, None, None)
    if hasattr(model, "condition_parts"):
        return model.condition_parts(rgb, *sparse)
    return {"cond": model.encode_condition(rgb, *sparse)}


def as_model_condition(model: Any, parts: Mapping[str, Any]) -> Any:
    """What the model's ddim_step / decode take for :func:`condition_of`'s parts."""
    return dict(parts) if hasattr(model, "condition_parts") else parts["cond"]


def decoder_inputs(parts: Mapping[str, Any]) -> list[str]:
    """The parts the decoder graph takes: all but the features, or the packed cond alone."""
    return [k for k in parts if k != "cond"] or ["cond"]


def load_diffusion_depth_family(checkpoint: Any) -> Any:
    """A checkpoint of one of :data:`~depth_diffusion_ros.models.checkpoint.DIFFUSION_DEPTH_ARCHITECTURES`
    in eval mode; CheckpointError naming it for another architecture."""
    from depth_diffusion_ros.models.checkpoint import (
        DIFFUSION_DEPTH_ARCHITECTURES,
        CheckpointError,
        architecture_of,
        load_checkpoint,
        read_checkpoint_config,
    )

    name = architecture_of(read_checkpoint_config(checkpoint))
    if name not in DIFFUSION_DEPTH_ARCHITECTURES:
        raise CheckpointError(f"{checkpoint}: a {name} checkpoint, not one of {DIFFUSION_DEPTH_ARCHITECTURES}")
    return load_checkpoint(checkpoint, architecture=name).eval()


def example_inputs(model: Any, height: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random stand-in inputs (rgb in [0,1], 5 % sparse depth in [2, 60] m) for shape tracing."""
    rng = np.random.default_rng(seed)
    rgb = rng.random((1, 3, height, width), dtype=np.float32)
    valid = (rng.random((1, 1, height, width)) < 0.05).astype(np.float32)
    sparse = (rng.uniform(2, 60, (1, 1, height, width)) * valid).astype(np.float32)
    return {"rgb": rgb, "sparse_depth": sparse, "valid_mask": valid}


@dataclass
class _Export:
    """What the step and unrolled exports of one call share."""

    model: Any
    out_dir: Path
    feed: dict                 # numpy inputs of the parity check
    tensors: dict              # the same as torch tensors
    base_meta: dict
    pairs: list
    rng: Any
    opset: int
    dynamo: bool
    dynamic: bool
    check: bool
    atol_pass: float
    atol_loop: float
    rtol_loop: float
    report: ExportReport

    def write(self, file_name: str, graph: str, module: Any, args: Sequence[Any], in_names: Sequence[str],
              out_names: Sequence[str], expected: Mapping[str, Any], axes: Optional[dict], meta: Mapping[str, Any],
              atol: float, rtol: float) -> None:
        """Export one graph (role ``graph``) to ``file_name``, check it against torch's ``expected``
        outputs, record it in the report."""
        self.report.graphs.append(export_checked(
            module, args, self.out_dir / file_name, in_names, out_names, expected, graph,
            dict(self.base_meta, **meta), check=self.check, atol=atol, rtol=rtol, dynamic_axes=axes,
            opset=self.opset, dynamo=self.dynamo))

    def axes(self, batch: Sequence[str], image: Sequence[str], latent: Sequence[str],
             other: Optional[Mapping[str, tuple[str, str]]] = None) -> Optional[dict]:
        """dynamic_axes of a graph (None for a static export); ``other``: {input or output: (height
        axis name, width axis name)} for tensors at another resolution, where in ``batch``."""
        if not self.dynamic:
            return None
        out: dict[str, dict[int, str]] = {}
        for n in batch:
            out.setdefault(n, {})[0] = "batch"
        for n in image:
            out.setdefault(n, {}).update({2: "height", 3: "width"})
        for n in latent:
            out.setdefault(n, {}).update({2: "latent_height", 3: "latent_width"})
        for n, (h, w) in (other or {}).items():
            if n in out:
                out[n].update({2: h, 3: w})
        return out


def _sparse_args(model: Any, t: Mapping[str, Any]) -> dict[str, Any]:
    """The sparse_depth / valid_mask / priors keyword arguments of encode_condition and sample."""
    if not model.completion:
        return {}
    return {"sparse_depth": t["sparse_depth"], "valid_mask": t["valid_mask"], "priors": t.get("priors")}


def _priors_input(model: Any) -> list[str]:
    """["priors"] for a model with external classical fills (an extra graph input), else []."""
    return ["priors"] if getattr(model, "external_priors", ()) else []


def with_priors(model: Any, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``feed`` plus ``priors`` (1,K,H,W), the model's classical fills of ``feed["sparse_depth"]``
    (:func:`depth_diffusion_ros.baselines.fills.prior_fills`), when the model takes them and the
    feed lacks them."""
    out = dict(feed)
    names = getattr(model, "external_priors", ())
    if names and "priors" not in out:
        from depth_diffusion_ros.baselines.fills import prior_fills

        out["priors"] = prior_fills(names, np.asarray(out["sparse_depth"])[0, 0])[None]
    return out


def _export_step_form(job: _Export) -> None:
    """encoder.onnx, step.onnx, decoder.onnx, each checked on one pass (the middle step)."""
    import torch

    EncoderGraph, StepGraph, DecoderGraph, _, EncoderAuxGraph = _torch_modules()
    m, t = job.model, job.tensors
    parts = condition_of(m, t["rgb"], **_sparse_args(m, t))
    cond = parts["cond"]
    latent_shape = tuple(job.base_meta["latent_shape"])
    latents = torch.from_numpy(job.rng.standard_normal((1,) + latent_shape, dtype=np.float32))
    ts, ps = job.pairs[len(job.pairs) // 2]
    tt, tp = torch.tensor([ts], dtype=torch.long), torch.tensor([ps], dtype=torch.long)
    prev = m.ddim_step(latents, tt, tp, cond)
    depth = m.decode(prev, as_model_condition(m, parts))
    image = ["rgb", "sparse_depth", "valid_mask"] + _priors_input(m)
    outs, dec = list(parts), decoder_inputs(parts)
    if len(dec) > 5:
        raise ExportError(f"{job.out_dir}: the decoder graph takes at most 5 condition parts, this model has {dec}")
    job.write("encoder.onnx", "encoder", EncoderGraph(m), tuple(t[k] for k in image), image, outs,
              parts, job.axes(image + outs, image, ["cond"], _part_axes(parts)), {}, job.atol_pass, 0.0)
    if getattr(m, "uses_aux", False):
        names = ["rgb", "sparse_depth", "valid_mask", "rgb_aux"]
        cond_aux = m.encode_condition(t["rgb"], rgb_aux=t["rgb_aux"])
        job.write(AUX_ENCODER_FILE, "encoder_aux", EncoderAuxGraph(m), tuple(t[k] for k in names), names, ["cond"],
                  {"cond": cond_aux}, job.axes(names + ["cond"], names, ["cond"]), {}, job.atol_pass, 0.0)
    job.write("step.onnx", "step", StepGraph(m), (latents, cond, tt, tp), ["latents", "cond", "timestep", "prev_timestep"],
              ["prev_latents"], {"prev_latents": prev},
              job.axes(["latents", "cond", "prev_latents"], [], ["latents", "cond", "prev_latents"]), {},
              job.atol_pass, 0.0)
    # depth up to 88 m: a relative part in the decoder's tolerance
    job.write("decoder.onnx", "decoder", DecoderGraph(m, dec), (prev,) + tuple(parts[k] for k in dec),
              ["latents"] + dec, ["depth"], {"depth": depth},
              job.axes(["latents"] + dec + ["depth"], ["depth"], ["latents"] + [k for k in dec if k == "cond"],
                       _part_axes(parts)), {},
              job.atol_pass, 1e-5)


def _part_axes(parts: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Names of the spatial axes of the condition parts at their own resolution (guidance at the
    image's, skip_<i> at its stride's)."""
    out = {"guidance": ("height", "width")} if "guidance" in parts else {}
    out.update({k: (f"{k}_height", f"{k}_width") for k in parts if k.startswith("skip_")})
    return out


def _export_unrolled(job: _Export, steps: int, ensemble_size: int) -> None:
    """sampler_<N>steps_e<E>.onnx, checked member by member against the torch sampler."""
    import torch

    _, _, _, UnrolledSampler, _ = _torch_modules()
    m, t, E = job.model, job.tensors, int(ensemble_size)
    noise = torch.from_numpy(job.rng.standard_normal((E,) + tuple(job.base_meta["latent_shape"]), dtype=np.float32))
    ref = torch.cat([m.sample(t["rgb"], **_sparse_args(m, t), noise=noise[k:k + 1], num_inference_steps=steps,
                              full_output=True) for k in range(E)], dim=0)
    axes = None
    names = ["rgb", "sparse_depth", "valid_mask", "noise"] + _priors_input(m)
    if job.dynamic:
        axes = {n: {2: "height", 3: "width"} for n in ("rgb", "sparse_depth", "valid_mask", "depth", *_priors_input(m))}
        axes["noise"] = {2: "latent_height", 3: "latent_width"}
    job.write(unrolled_file_name(steps, E), "sampler", UnrolledSampler(m, job.pairs, E).eval(),
              tuple(noise if k == "noise" else t[k] for k in names), names,
              ["depth"], {"depth": ref}, axes,
              {"num_inference_steps": steps, "ensemble_size": E, "timestep_pairs": [list(p) for p in job.pairs]},
              job.atol_loop, job.rtol_loop)


def export_diffusion_depth(
    model: Any,
    out_dir: str | Path,
    height: int,
    width: int,
    forms: Sequence[str] = ("step",),
    num_inference_steps: Optional[int] = None,
    ensemble_size: int = 1,
    inputs: Optional[Mapping[str, np.ndarray]] = None,
    dynamic: bool = False,
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
    check: bool = True,
    atol_pass: float = 1e-4,
    atol_loop: float = 1e-3,
    rtol_loop: float = 1e-4,
    seed: int = 0,
) -> ExportReport:
    """Export a DiffusionDepth model to ``out_dir`` and check each file against torch.

    model: DiffusionDepth (put in eval mode here). height, width: graph input size (multiples
        of model.size_divisor). forms: subset of ("step", "unrolled").
    num_inference_steps: steps of the unrolled graph and the default recorded for the step form
        (None: config.num_inference_steps). ensemble_size: E of the unrolled graph.
    inputs: {"rgb" (1,3,H,W) [0,1], "sparse_depth", "valid_mask" (1,1,H,W)} float32 for the
        parity check — pass a real frame; None uses random inputs.
    dynamic: batch/height/width axes dynamic (TensorRT then needs optimisation profiles). The
        TorchScript tracer bakes the neck's interpolation sizes into the graph, so dynamic
        exports always use the torch.export-based exporter (opset >= 18); the step form is then
        also checked at a second input size.
    Raises ExportError / ParityError naming the file on failure; ValueError for bad sizes.
    """
    import torch

    forms = tuple(forms)
    if dynamic and not dynamo:
        dynamo, opset = True, max(int(opset), 18)
    bad = sorted(set(forms) - set(FORMS))
    if bad or not forms:
        raise ValueError(f"forms={forms}: choose from {FORMS}")
    model = model.eval()
    model.check_size(height, width)
    cfg = model.config
    steps = int(num_inference_steps or cfg.num_inference_steps)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    feed = dict(inputs) if inputs is not None else example_inputs(model, height, width, seed)
    for k, shape in (("rgb", (1, 3, height, width)), ("sparse_depth", (1, 1, height, width)),
                     ("valid_mask", (1, 1, height, width))):
        if tuple(feed[k].shape) != shape:
            raise ValueError(f"inputs[{k!r}] has shape {tuple(feed[k].shape)}, expected {shape}")
        feed[k] = np.ascontiguousarray(feed[k], np.float32)
    feed = with_priors(model, feed)
    if getattr(model, "uses_aux", False) and "rgb_aux" not in feed:
        feed["rgb_aux"] = np.ascontiguousarray(np.roll(feed["rgb"], 4, axis=3))  # a stand-in second view
    sha = model_sha256(model)
    export_id = uuid.uuid4().hex
    latent_shape = tuple(model.latent_shape(height, width))
    base_meta = {
        "model_sha256": sha, "export_id": export_id, "config": cfg.to_dict(), "num_inference_steps": steps,
        "size_divisor": int(model.size_divisor), "latent_channels": int(latent_shape[0]),
        "latent_stride": int(model.latent_stride), "latent_shape": list(latent_shape),
        "scheduler": {"num_train_timesteps": int(cfg.num_train_timesteps), "timestep_spacing": cfg.timestep_spacing,
                      "steps_offset": int(cfg.steps_offset)},
        "height": int(height), "width": int(width), "dynamic": bool(dynamic),
    }
    if getattr(model, "canonical_focal", None):
        base_meta["canonical_focal"] = float(model.canonical_focal)  # the pipelines resize inputs to it
    if getattr(model, "depth_prior", None):
        base_meta["depth_prior"] = json.loads(model.depth_prior)  # the pipelines multiply the output by it
    job = _Export(model, out_dir, feed, {k: torch.from_numpy(v) for k, v in feed.items()}, base_meta,
                  model.scheduler.timestep_pairs(steps), np.random.default_rng(seed), opset, dynamo, dynamic, check,
                  atol_pass, atol_loop, rtol_loop, ExportReport(out_dir, [], sha, export_id))
    with torch.no_grad():
        if "step" in forms:
            _export_step_form(job)
        if "unrolled" in forms:
            _export_unrolled(job, steps, ensemble_size)
    if dynamic and check and "step" in forms:
        # the symbolic shapes must really generalise: run the host loop at another size
        d = int(model.size_divisor)
        other = example_inputs(model, height + d, width + 2 * d, seed + 1)
        err = check_host_loop_parity(model, out_dir, other, num_inference_steps=2, atol=atol_loop, rtol=rtol_loop)
        for g in job.report.graphs:
            write_metadata(g.path, {"parity_other_size": [height + d, width + 2 * d], "parity_other_size_error": err})
    write_export_json(job.report, height, width)
    return job.report


def check_host_loop_parity(
    model: Any,
    out_dir: str | Path,
    inputs: Mapping[str, np.ndarray],
    num_inference_steps: int,
    ensemble_size: int = 1,
    atol: float = 1e-3,
    rtol: float = 1e-4,
    seed: int = 0,
) -> float:
    """Whole-loop check of the step form: the pipelines' DDIM loop over the ONNX Runtime graphs
    against the torch model, member by member, then the ensemble mean.

    inputs: padded tensors as for :func:`export_diffusion_depth`. Returns the max absolute depth
    error (m); raises ExportError naming the directory when it exceeds ``atol + rtol * |depth|``.
    """
    import torch

    from depth_diffusion_ros.inference import frames
    from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDiffusionDepthBackend
    from depth_diffusion_ros.inference.sampler import aggregate_ensemble, sample_members

    backend = OnnxRuntimeDiffusionDepthBackend(out_dir, num_inference_steps=num_inference_steps,
                                               ensemble_size=ensemble_size, export_form="step", seed=seed)
    H, W = inputs["rgb"].shape[2:]
    feed = {k: np.ascontiguousarray(v, np.float32) for k, v in with_priors(model, inputs).items()}
    noise = frames.make_noise((ensemble_size,) + backend.latent_shape(H, W), seed)
    depth, _ = aggregate_ensemble(sample_members(backend, feed, noise, num_inference_steps)[:, :1])
    t = {k: torch.from_numpy(v) for k, v in feed.items()}
    with torch.no_grad():
        members = [model.eval().sample(t["rgb"], **_sparse_args(model, t), noise=torch.from_numpy(noise[k:k + 1]),
                                       num_inference_steps=num_inference_steps).numpy()
                   for k in range(ensemble_size)]
    ref, _ = aggregate_ensemble(np.concatenate(members, axis=0))
    err = np.abs(np.asarray(depth) - ref)
    if (err > atol + rtol * np.abs(ref)).any():
        raise ExportError(f"{out_dir}: host DDIM loop over the step graphs differs from torch "
                          f"(max depth error {err.max():.3g} m for {num_inference_steps} steps)")
    return float(err.max())
