"""ONNX Runtime backends (no torch): DiffusionDepth, DSR-Diff and DenseDepth from their ONNX export.

See :mod:`~depth_diffusion_ros.inference.backends.exported` for the export forms and the checks
made before the first frame, and :mod:`~depth_diffusion_ros.runtime.onnx_session` for providers
and sessions. I/O binding keeps the latents and the condition on the device between denoising
steps when a GPU provider runs (``use_io_binding`` "auto"); on the CPU provider it made no
difference beyond run-to-run noise on the 2-core CI machine, so it is off there by default.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Union

from depth_diffusion_ros.inference.backends.exported import (
    DENSEDEPTH_GRAPH,
    ExportedDenseDepthBackend,
    ExportedDiffusionBackend,
    ExportedSuperResolutionBackend,
    find_aux_encoder,
    find_densedepth_file,
    find_diffusion_depth_files,
    find_sr_models,
)
from depth_diffusion_ros.inference.sampler import SamplingOptions
from depth_diffusion_ros.runtime.onnx_session import SessionOptions, provider_name

LOG = logging.getLogger(__name__)


class OnnxRuntimeDiffusionDepthBackend(ExportedDiffusionBackend):
    """DiffusionDepth depth completion (or monocular depth) with ONNX Runtime, torch-free.

    Args:
        model_path: export directory (``encoder.onnx``/``step.onnx``/``decoder.onnx`` and/or
            ``sampler_<N>steps_e<E>.onnx``) or one of those files; None = the shipped completion
            model's export (``weights/diffusion_depth_kitti/onnx``).
        num_inference_steps: DDIM steps (None: the model's configured default). The unrolled
            form must have been exported for exactly this number.
        ensemble_size: diffusion samples per frame; > 1 gives ``uncertainty`` (std, metres).
        seed: the initial noise is drawn from this seed on every frame.
        export_form: "auto" (step form if present) | "step" | "unrolled".
        **session_options: :class:`~depth_diffusion_ros.runtime.onnx_session.SessionOptions`
            (providers, intra_op_num_threads, inter_op_num_threads, graph_optimization_level,
            use_io_binding, allow_spinning); another name is a TypeError.
    Raises BackendError naming the file for missing/mismatched graphs or bad options.
    """

    name = "onnxruntime"

    def __init__(self, model_path: Union[str, Path, None] = None, num_inference_steps: Optional[int] = None,
                 ensemble_size: int = 1, seed: int = 0, export_form: str = "auto", **session_options: Any) -> None:
        sampling = SamplingOptions(num_inference_steps, ensemble_size, seed)
        options = SessionOptions(**session_options)
        self.providers = options.resolved_providers()
        LOG.info("onnxruntime providers: %s", [provider_name(p) for p in self.providers])
        form, files = find_diffusion_depth_files(model_path, export_form, num_inference_steps, sampling.ensemble_size)
        if form == "step":
            graphs = [options.open(f, role, self.providers, io_binding=False if role == "decoder" else None)
                      for f, role in zip(files, ("encoder", "step", "decoder"))]
        else:
            graphs = [options.open(files, "sampler", self.providers, io_binding=False)]
        self._use_graphs(form, graphs, [g.meta for g in graphs], sampling)
        aux = find_aux_encoder(files) if form == "step" else None
        if aux is not None:  # IID-RDepth with AV-LFE: the encoder for frames with image_aux
            graph = options.open(aux, "encoder_aux", self.providers, io_binding=None)
            self._use_aux_encoder(graph, graph.meta)


class OnnxRuntimeDSRDiffBackend(ExportedSuperResolutionBackend):
    """DSR-Diff depth super-resolution with ONNX Runtime, torch-free.

    Args:
        model_path: directory of ``dsr_diff_x<s>_<N>steps.onnx`` files (one per scale) or one file.
        num_inference_steps: GRN DDIM steps of the graphs to use (None: the exported count).
        ensemble_size, seed, **session_options: as :class:`OnnxRuntimeDiffusionDepthBackend`.
    Raises BackendError naming the file for missing/mismatched graphs.
    """

    name = "onnxruntime"

    def __init__(self, model_path: Union[str, Path, None] = None, num_inference_steps: Optional[int] = None, ensemble_size: int = 1,
                 seed: int = 0, **session_options: Any) -> None:
        sampling = SamplingOptions(num_inference_steps, ensemble_size, seed)
        options = SessionOptions(**session_options)
        self.providers = options.resolved_providers()
        found, steps = find_sr_models(model_path, num_inference_steps)
        graphs = {scale: options.open(path, "sr_sampler", self.providers, io_binding=False)
                  for scale, (path, _) in found.items()}
        self._use_graphs(graphs, next(iter(found.values()))[1], steps, sampling)


class OnnxRuntimeDenseDepthBackend(ExportedDenseDepthBackend):
    """DenseDepth monocular depth with ONNX Runtime, torch-free: one run of ``densedepth.onnx``
    per frame (``depth-diffusion-ros export`` of a DenseDepth checkpoint).

    Args:
        model_path: the export directory (with ``densedepth.onnx``) or that file.
        num_inference_steps: ignored with a logged warning (a one-shot regressor has no DDIM steps).
        ensemble_size: must be 1 (BackendError otherwise). seed: unused.
        **session_options: as :class:`OnnxRuntimeDiffusionDepthBackend`.
    Raises BackendError naming the file for a missing graph, a torch checkpoint (with the export
    command), a graph of another role, or ensemble_size != 1.
    """

    name = "onnxruntime"

    def __init__(self, model_path: Union[str, Path, None] = None, num_inference_steps: Optional[int] = None,
                 ensemble_size: int = 1, seed: int = 0, **session_options: Any) -> None:
        self._check_request(model_path, num_inference_steps, ensemble_size)
        options = SessionOptions(**session_options)
        self.providers = options.resolved_providers()
        graph = options.open(find_densedepth_file(model_path), DENSEDEPTH_GRAPH, self.providers, io_binding=False)
        self._use_graph(graph, graph.meta)
        LOG.info("onnxruntime DenseDepth backend: %s (%s, one-shot)", self.model_file,
                 [provider_name(p) for p in self.providers])
