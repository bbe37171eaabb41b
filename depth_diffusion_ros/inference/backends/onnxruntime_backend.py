"""ONNX Runtime backends (no torch): DiffusionDepth and DSR-Diff from their ONNX export.

See :mod:`~depth_diffusion_ros.inference.backends.exported` for the export forms and the checks
made before the first frame, and :mod:`~depth_diffusion_ros.runtime.onnx_session` for providers
and sessions. I/O binding keeps the latents and the condition on the device between denoising
steps when a GPU provider runs (``use_io_binding`` "auto"); on the CPU provider it made no
difference beyond run-to-run noise on the 2-core CI machine, so it is off there by default.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from depth_diffusion_ros.inference.backends.exported import (
    ExportedDiffusionBackend,
    ExportedSuperResolutionBackend,
    find_diffusion_depth_files,
    find_sr_models,
)
from depth_diffusion_ros.inference.sampler import SamplingOptions
from depth_diffusion_ros.runtime.onnx_session import OrtGraph, provider_name, resolve_providers

LOG = logging.getLogger(__name__)


class OnnxRuntimeDiffusionDepthBackend(ExportedDiffusionBackend):
    """DiffusionDepth depth completion (or monocular depth) with ONNX Runtime, torch-free.

    Args:
        model_path: export directory (``encoder.onnx``/``step.onnx``/``decoder.onnx`` and/or
            ``sampler_<N>steps_e<E>.onnx``) or one of those files.
        num_inference_steps: DDIM steps (None: the model's configured default). The unrolled
            form must have been exported for exactly this number.
        ensemble_size: diffusion samples per frame; > 1 gives ``uncertainty`` (std, metres).
        seed: the initial noise is drawn from this seed on every frame.
        providers: execution providers (see :func:`~depth_diffusion_ros.runtime.onnx_session.resolve_providers`).
        intra_op_num_threads, inter_op_num_threads: 0 = ONNX Runtime default.
        graph_optimization_level: "disable" | "basic" | "extended" | "all".
        use_io_binding: True / False / "auto" (on for GPU providers).
        export_form: "auto" (step form if present) | "step" | "unrolled".
        allow_spinning: ONNX Runtime intra-op threads spin while idle (off by default: robots
            share the CPU between nodes, and the three step-form sessions would compete).
        engine_cache_dir, precision, force_engine_update, device: accepted and ignored (TensorRT /
            torch options), so a node can pass one parameter set to any backend.
    Raises BackendError naming the file for missing/mismatched graphs or bad options.
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
        sampling = SamplingOptions(num_inference_steps, ensemble_size, seed)
        self.providers = resolve_providers(providers)
        gpu = any(provider_name(p) != "CPUExecutionProvider" for p in self.providers)
        io_binding = gpu if use_io_binding == "auto" else bool(use_io_binding)
        LOG.info("onnxruntime providers: %s (I/O binding %s)", [provider_name(p) for p in self.providers], io_binding)
        opts = dict(providers=self.providers, intra_op_num_threads=intra_op_num_threads,
                    inter_op_num_threads=inter_op_num_threads, graph_optimization_level=graph_optimization_level,
                    allow_spinning=allow_spinning)
        form, files = find_diffusion_depth_files(model_path, export_form, num_inference_steps, sampling.ensemble_size)
        if form == "step":
            roles = ("encoder", "step", "decoder")
            graphs = [OrtGraph(f, use_io_binding=io_binding and role != "decoder", expected_graph=role, **opts)
                      for f, role in zip(files, roles)]
        else:
            graphs = [OrtGraph(files, use_io_binding=False, expected_graph="sampler", **opts)]
        self._use_graphs(form, graphs, [g.meta for g in graphs], sampling)


class OnnxRuntimeDSRDiffBackend(ExportedSuperResolutionBackend):
    """DSR-Diff depth super-resolution with ONNX Runtime, torch-free.

    Args:
        model_path: directory of ``dsr_diff_x<s>_<N>steps.onnx`` files (one per scale) or one file.
        num_inference_steps: GRN DDIM steps of the graphs to use (None: the exported count).
        ensemble_size, seed, providers, intra_op_num_threads, inter_op_num_threads,
        graph_optimization_level, allow_spinning: as :class:`OnnxRuntimeDiffusionDepthBackend`.
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
        sampling = SamplingOptions(num_inference_steps, ensemble_size, seed)
        self.providers = resolve_providers(providers)
        found, steps = find_sr_models(model_path, num_inference_steps)
        graphs = {
            scale: OrtGraph(path, self.providers, intra_op_num_threads, inter_op_num_threads,
                            graph_optimization_level, expected_graph="sr_sampler", allow_spinning=allow_spinning)
            for scale, (path, _) in found.items()
        }
        self._use_graphs(graphs, next(iter(found.values()))[1], steps, sampling)
