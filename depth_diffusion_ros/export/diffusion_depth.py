"""Export DiffusionDepth (Duan et al., arXiv 2303.05021) to ONNX in two forms.

* ``step`` form — three graphs driven by the host DDIM loop
  (:mod:`depth_diffusion_ros.inference.onnx_sampler`), any number of steps:
    ``encoder.onnx``  rgb (1,3,H,W), sparse_depth (1,1,H,W), valid_mask (1,1,H,W) -> cond
    ``step.onnx``     latents (1,d,h,w), cond, timestep (1,) int64, prev_timestep (1,) int64
                      -> prev_latents   (denoiser + DDIM update, eta 0; Song et al. 2021, eq. 12)
    ``decoder.onnx``  latents, cond -> depth (1,1,H,W) metres
* ``unrolled`` form — ``sampler_<N>steps_e<E>.onnx``: encoder, N DDIM steps with constant
  timesteps, decoder and the ensemble mean/std in one graph:
    rgb, sparse_depth, valid_mask, noise (E,d,h,w) -> depth (1,1,H,W), uncertainty (1,1,H,W)
  (uncertainty is zeros when E == 1).

Each file is checked against torch right after export (:func:`check_parity`, default on a real
KITTI/NYU frame chosen by the caller): a single network pass to ``atol_pass`` (1e-4), the whole
sampling loop to ``atol_loop`` (1e-3 metres, plus 1e-4 relative because depth grows to 80 m).
metadata_props (``ddr.*``): graph, model_sha256 (the checkpoint's tensor hash), export_id,
config (JSON), num_inference_steps, ensemble_size, size_divisor, latent_channels,
latent_stride, scheduler, height, width, parity errors.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from depth_diffusion_ros.export.onnx_export import (
    DEFAULT_OPSET,
    ExportError,
    check_parity,
    export_onnx,
    write_metadata,
)

FORMS = ("step", "unrolled")
STEP_GRAPHS = ("encoder", "step", "decoder")


def unrolled_file_name(num_inference_steps: int, ensemble_size: int = 1) -> str:
    """``sampler_<N>steps_e<E>.onnx`` (the name the backends look for)."""
    return f"sampler_{int(num_inference_steps)}steps_e{int(ensemble_size)}.onnx"


def _torch_modules() -> Any:
    import torch
    from torch import nn

    class EncoderGraph(nn.Module):
        """rgb, sparse_depth, valid_mask -> cond (DiffusionDepth.encode_condition)."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, rgb, sparse_depth, valid_mask):
            if self.model.completion:
                return self.model.encode_condition(rgb, sparse_depth, valid_mask)
            return self.model.encode_condition(rgb, None, None)

    class StepGraph(nn.Module):
        """latents, cond, timestep, prev_timestep -> prev_latents (DiffusionDepth.ddim_step)."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, latents, cond, timestep, prev_timestep):
            return self.model.ddim_step(latents, timestep, prev_timestep, cond)

    class DecoderGraph(nn.Module):
        """latents, cond -> depth (DiffusionDepth.decode)."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, latents, cond):
            return self.model.decode(latents, cond)

    class UnrolledSampler(nn.Module):
        """The whole sampler for fixed timestep pairs and ensemble size E (DiffusionDepth.sample)."""

        def __init__(self, model: nn.Module, pairs: Sequence[tuple[int, int]], ensemble_size: int) -> None:
            super().__init__()
            self.model = model
            self.pairs = [(int(t), int(p)) for t, p in pairs]
            self.ensemble_size = int(ensemble_size)

        def forward(self, rgb, sparse_depth, valid_mask, noise):
            m = self.model
            if m.completion:
                cond = m.encode_condition(rgb, sparse_depth, valid_mask)
            else:
                cond = m.encode_condition(rgb, None, None)
            E = self.ensemble_size
            if E > 1:
                cond = cond.repeat_interleave(E, dim=0)
            latents = noise
            for t, p in self.pairs:
                tt = torch.tensor([t], dtype=torch.long)
                tp = torch.tensor([p], dtype=torch.long)
                latents = m.ddim_step(latents, tt, tp, cond)
            depth = m.decode(latents, cond)
            if E == 1:
                return depth, torch.zeros_like(depth)
            mean = depth.mean(dim=0, keepdim=True)
            std = ((depth - mean) ** 2).mean(dim=0, keepdim=True).sqrt()
            return mean, std

    return EncoderGraph, StepGraph, DecoderGraph, UnrolledSampler


@dataclass
class ExportedGraph:
    """One written file: path, role, parity errors vs torch, export seconds."""

    path: Path
    graph: str
    max_abs_error: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class ExportReport:
    """Everything :func:`export_diffusion_depth` wrote."""

    out_dir: Path
    graphs: list = field(default_factory=list)
    model_sha256: str = ""
    export_id: str = ""


def model_hash(model: Any) -> str:
    """The checkpoint's tensor SHA-256 (the digest models.checkpoint stores and verifies)."""
    from depth_diffusion_ros.models.checkpoint import tensors_sha256

    return tensors_sha256(model.state_dict())


def example_inputs(model: Any, height: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random stand-in inputs (rgb in [0,1], 5 % sparse depth in [2, 60] m) for shape tracing."""
    rng = np.random.default_rng(seed)
    rgb = rng.random((1, 3, height, width), dtype=np.float32)
    valid = (rng.random((1, 1, height, width)) < 0.05).astype(np.float32)
    sparse = (rng.uniform(2, 60, (1, 1, height, width)) * valid).astype(np.float32)
    return {"rgb": rgb, "sparse_depth": sparse, "valid_mask": valid}


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
    E = int(ensemble_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    EncoderGraph, StepGraph, DecoderGraph, UnrolledSampler = _torch_modules()
    feed = dict(inputs) if inputs is not None else example_inputs(model, height, width, seed)
    for k, shape in (("rgb", (1, 3, height, width)), ("sparse_depth", (1, 1, height, width)),
                     ("valid_mask", (1, 1, height, width))):
        if tuple(feed[k].shape) != shape:
            raise ValueError(f"inputs[{k!r}] has shape {tuple(feed[k].shape)}, expected {shape}")
        feed[k] = np.ascontiguousarray(feed[k], np.float32)
    t_in = {k: torch.from_numpy(v) for k, v in feed.items()}
    sha = model_hash(model)
    export_id = uuid.uuid4().hex
    latent_shape = tuple(model.latent_shape(height, width))
    base_meta = {
        "model_sha256": sha,
        "export_id": export_id,
        "config": cfg.to_dict(),
        "num_inference_steps": steps,
        "size_divisor": int(model.size_divisor),
        "latent_channels": int(latent_shape[0]),
        "latent_stride": int(model.latent_stride),
        "latent_shape": list(latent_shape),
        "scheduler": {
            "num_train_timesteps": int(cfg.num_train_timesteps),
            "timestep_spacing": cfg.timestep_spacing,
            "steps_offset": int(cfg.steps_offset),
        },
        "height": int(height),
        "width": int(width),
        "dynamic": bool(dynamic),
    }
    report = ExportReport(out_dir, [], sha, export_id)
    rng = np.random.default_rng(seed)
    pairs = model.scheduler.timestep_pairs(steps)

    def dyn(names_batch: Sequence[str], names_img: Sequence[str], names_lat: Sequence[str]):
        if not dynamic:
            return None
        axes: dict[str, dict[int, str]] = {}
        for n in names_batch:
            axes.setdefault(n, {})[0] = "batch"
        for n in names_img:
            axes.setdefault(n, {}).update({2: "height", 3: "width"})
        for n in names_lat:
            axes.setdefault(n, {}).update({2: "latent_height", 3: "latent_width"})
        return axes

    with torch.no_grad():
        if "step" in forms:
            cond = model.encode_condition(t_in["rgb"], t_in["sparse_depth"] if model.completion else None,
                                          t_in["valid_mask"] if model.completion else None)
            latents = torch.from_numpy(rng.standard_normal((1,) + latent_shape, dtype=np.float32))
            t, p = pairs[len(pairs) // 2]
            tt, tp = torch.tensor([t], dtype=torch.long), torch.tensor([p], dtype=torch.long)
            prev = model.ddim_step(latents, tt, tp, cond)
            depth = model.decode(prev, cond)
            specs = [
                ("encoder", EncoderGraph(model), (t_in["rgb"], t_in["sparse_depth"], t_in["valid_mask"]),
                 ["rgb", "sparse_depth", "valid_mask"], ["cond"], {"cond": cond},
                 dyn(["rgb", "sparse_depth", "valid_mask", "cond"], ["rgb", "sparse_depth", "valid_mask"], ["cond"])),
                ("step", StepGraph(model), (latents, cond, tt, tp),
                 ["latents", "cond", "timestep", "prev_timestep"], ["prev_latents"], {"prev_latents": prev},
                 dyn(["latents", "cond", "prev_latents"], [], ["latents", "cond", "prev_latents"])),
                ("decoder", DecoderGraph(model), (prev, cond), ["latents", "cond"], ["depth"], {"depth": depth},
                 dyn(["latents", "cond", "depth"], ["depth"], ["latents", "cond"])),
            ]
            for graph, module, args, in_names, out_names, expected, axes in specs:
                path = out_dir / f"{graph}.onnx"
                t0 = time.perf_counter()
                export_onnx(module, args, path, in_names, out_names, dynamic_axes=axes, opset=opset,
                            dynamo=dynamo, metadata=dict(base_meta, graph=graph))
                seconds = time.perf_counter() - t0
                errors: dict = {}
                if check:
                    np_in = {n: a.numpy() for n, a in zip(in_names, args)}
                    rtol = 1e-5 if graph == "decoder" else 0.0  # depth up to 88 m: relative part
                    rep = check_parity(path, np_in, {k: v.numpy() for k, v in expected.items()},
                                       atol=atol_pass, rtol=rtol)
                    errors = rep.max_abs
                    write_metadata(path, {"parity_max_abs_error": errors, "parity_atol": atol_pass})
                report.graphs.append(ExportedGraph(path, graph, errors, seconds))

        if "unrolled" in forms:
            noise = torch.from_numpy(rng.standard_normal((E,) + latent_shape, dtype=np.float32))
            sampler = UnrolledSampler(model, pairs, E).eval()
            depth_ref, unc_ref = model.sample(
                t_in["rgb"], t_in["sparse_depth"] if model.completion else None,
                t_in["valid_mask"] if model.completion else None, noise=noise,
                num_inference_steps=steps, ensemble_size=E)
            if unc_ref is None:
                unc_ref = torch.zeros_like(depth_ref)
            path = out_dir / unrolled_file_name(steps, E)
            args = (t_in["rgb"], t_in["sparse_depth"], t_in["valid_mask"], noise)
            axes = None
            if dynamic:
                axes = {n: {2: "height", 3: "width"} for n in ("rgb", "sparse_depth", "valid_mask", "depth", "uncertainty")}
                axes["noise"] = {2: "latent_height", 3: "latent_width"}
            t0 = time.perf_counter()
            export_onnx(sampler, args, path, ["rgb", "sparse_depth", "valid_mask", "noise"],
                        ["depth", "uncertainty"], dynamic_axes=axes, opset=opset, dynamo=dynamo,
                        metadata=dict(base_meta, graph="sampler", num_inference_steps=steps,
                                      ensemble_size=E, timestep_pairs=[list(p) for p in pairs]))
            seconds = time.perf_counter() - t0
            errors = {}
            if check:
                rep = check_parity(path, dict(feed, noise=noise.numpy()),
                                   {"depth": depth_ref.numpy(), "uncertainty": unc_ref.numpy()},
                                   atol=atol_loop, rtol=rtol_loop)
                errors = rep.max_abs
                write_metadata(path, {"parity_max_abs_error": errors, "parity_atol": atol_loop,
                                      "parity_rtol": rtol_loop})
            report.graphs.append(ExportedGraph(path, "sampler", errors, seconds))
    if dynamic and check and "step" in forms:
        # the symbolic shapes must really generalise: run the host loop at another size
        d = int(model.size_divisor)
        other = example_inputs(model, height + d, width + 2 * d, seed + 1)
        err = check_host_loop_parity(model, out_dir, other, num_inference_steps=2, atol=atol_loop, rtol=rtol_loop)
        for g in report.graphs:
            write_metadata(g.path, {"parity_other_size": [height + d, width + 2 * d], "parity_other_size_error": err})
    (out_dir / "export.json").write_text(json.dumps({
        "model_sha256": sha, "export_id": export_id, "height": height, "width": width,
        "graphs": [{"file": g.path.name, "graph": g.graph, "max_abs_error": g.max_abs_error,
                    "export_seconds": round(g.seconds, 2)} for g in report.graphs],
    }, indent=2) + "\n")
    return report


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
    """Whole-loop check of the step form: ONNX Runtime host loop vs ``model.sample``.

    Returns the max absolute depth error (m); raises ExportError naming the directory when it
    exceeds ``atol + rtol * |depth|``.
    """
    import torch

    from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeCompletionBackend

    backend = OnnxRuntimeCompletionBackend(out_dir, num_inference_steps=num_inference_steps,
                                           ensemble_size=ensemble_size, export_form="step", seed=seed)
    H, W = inputs["rgb"].shape[2:]
    noise = backend.make_noise(H, W)
    depth, unc = backend.infer_tensors({k: np.ascontiguousarray(v, np.float32) for k, v in inputs.items()}, noise)
    with torch.no_grad():
        ref, ref_unc = model.eval().sample(
            torch.from_numpy(inputs["rgb"]),
            torch.from_numpy(inputs["sparse_depth"]) if model.completion else None,
            torch.from_numpy(inputs["valid_mask"]) if model.completion else None,
            noise=torch.from_numpy(noise), num_inference_steps=num_inference_steps, ensemble_size=ensemble_size)
    ref = ref.numpy()
    err = np.abs(np.asarray(depth) - ref)
    if (err > atol + rtol * np.abs(ref)).any():
        raise ExportError(f"{out_dir}: host DDIM loop over the step graphs differs from torch "
                          f"(max depth error {err.max():.3g} m for {num_inference_steps} steps)")
    return float(err.max())
