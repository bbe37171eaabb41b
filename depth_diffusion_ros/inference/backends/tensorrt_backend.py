"""TensorRT backends (no torch): engines built (and cached) from the ONNX export, run on a stream.

Start-up: for each ONNX graph of the export (``encoder``/``step``/``decoder``, an unrolled
``sampler``, the DSR-Diff ``sr_sampler`` per scale or the one ``densedepth`` graph)
:func:`~depth_diffusion_ros.runtime.tensorrt_engine.get_or_build_engine` returns a cached engine
keyed by ONNX hash, precision, TensorRT version and GPU name (rebuilt when any differs or
``force_engine_update`` is set). TensorRT 10 and 11 both work: on 11 (strongly typed, no
``BuilderFlag.FP16``) an fp16 engine is built from the graph's fp16 copy (``<stem>.fp16.onnx``
from ``export --fp16-onnx``, else made once in the engine cache), whose inputs and outputs stay
float32, so the feeds and outputs here are the same on both. The DDIM steps run in
:class:`~depth_diffusion_ros.runtime.tensorrt_graph.DeviceStepLoop` (latents on the GPU, one CUDA
graph replayed per step).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from depth_diffusion_ros.inference.backends.exported import (
    ExportedDenseDepthBackend,
    ExportedDiffusionBackend,
    ExportedSuperResolutionBackend,
    find_aux_encoder,
    find_densedepth_file,
    find_diffusion_depth_files,
    find_sr_models,
)
from depth_diffusion_ros.inference.errors import BackendError
from depth_diffusion_ros.inference.sampler import SamplingOptions
from depth_diffusion_ros.runtime import tensorrt_engine as te
from depth_diffusion_ros.runtime.cuda_runtime import CudaRuntime
from depth_diffusion_ros.runtime.metadata import read_ddr_metadata
from depth_diffusion_ros.runtime.tensorrt_graph import DeviceStepLoop, TensorRTGraph


class EngineSet:
    """TensorRT, the CUDA runtime and the engine cache of one backend (the ``tensorrt``
    backends' options).

    engine_cache_dir: where engines + JSON sidecars live (default ~/.cache/depth_diffusion_ros/engines).
    precision: "fp16" (default) | "fp32" | "int8" (TensorRT 10 only; on 11 a BackendError says
        to use a Q/DQ-quantized ONNX). force_engine_update: rebuild even if cached.
    workspace_mb: builder workspace pool limit (MiB). dla_core: -1 GPU, else the DLA core (Jetson).
    trt / cuda: modules to use instead of ``tensorrt`` / cuda-python (tests: the labelled fake).
    Raises BackendError when TensorRT or cuda-python are not installed.
    """

    def __init__(self, engine_cache_dir: Optional[Union[str, Path]] = None, precision: str = "fp16",
                 force_engine_update: bool = False, workspace_mb: int = 1024, dla_core: int = -1,
                 trt: Any = None, cuda: Any = None) -> None:
        try:
            self.trt = trt if trt is not None else te.load_tensorrt()
            self.cuda = cuda if isinstance(cuda, CudaRuntime) else CudaRuntime(cuda)
        except ImportError as exc:
            raise BackendError(f"tensorrt backend is not available here: {exc}") from exc
        self.cache = Path(engine_cache_dir or te.DEFAULT_ENGINE_CACHE_DIR)
        self.options = dict(precision=precision, force_engine_update=force_engine_update,
                            workspace_bytes=int(workspace_mb) << 20, dla_core=int(dla_core))
        self.gpu_name = self.cuda.device_name(0)
        self.results: list[te.EngineCacheResult] = []

    def graph(self, onnx_path: Union[str, Path], meta: dict) -> TensorRTGraph:
        """The engine of one ONNX file (built or taken from the cache), ready to run."""
        try:
            res = te.get_or_build_engine(onnx_path, self.cache, trt=self.trt, gpu_name=self.gpu_name, **self.options)
        except te.EngineBuildError as exc:
            raise BackendError(str(exc)) from exc
        self.results.append(res)
        return TensorRTGraph(res.engine_path, self.trt, self.cuda, meta)


class _Engines:
    """What the TensorRT backends share: their :class:`EngineSet` (``self.engines``)."""

    engines: EngineSet

    @property
    def engine_results(self) -> list:
        """The engine cache results (path, built or cached, why) of this backend's graphs."""
        return self.engines.results


class TensorRTDiffusionDepthBackend(_Engines, ExportedDiffusionBackend):
    """DiffusionDepth completion with TensorRT engines built (and cached) from the ONNX export.

    Args:
        model_path: ONNX export directory or file (as for the onnxruntime backend; None = the
            shipped completion model's export).
        num_inference_steps, ensemble_size, seed, export_form: as OnnxRuntimeDiffusionDepthBackend.
        use_cuda_graph: replay the denoising step as a CUDA graph.
        **engine_options: :class:`EngineSet` (engine_cache_dir, precision, force_engine_update,
            workspace_mb, dla_core, trt, cuda); another name is a TypeError.
    Raises BackendError naming the file on a missing/mismatched ONNX or engine, or when
    TensorRT / cuda-python are not installed.
    """

    name = "tensorrt"

    def __init__(self, model_path: Union[str, Path, None] = None, num_inference_steps: Optional[int] = None,
                 ensemble_size: int = 1, seed: int = 0, export_form: str = "auto", use_cuda_graph: bool = True,
                 **engine_options: Any) -> None:
        sampling = SamplingOptions(num_inference_steps, ensemble_size, seed)
        self.engines = EngineSet(**engine_options)
        form, files = find_diffusion_depth_files(model_path, export_form, num_inference_steps, sampling.ensemble_size)
        onnx_files = list(files) if form == "step" else [files]
        metas = [read_ddr_metadata(f) for f in onnx_files]
        graphs = [self.engines.graph(f, meta) for f, meta in zip(onnx_files, metas)]
        self._use_graphs(form, graphs, metas, sampling)
        aux = find_aux_encoder(onnx_files) if form == "step" else None
        if aux is not None:  # IID-RDepth with AV-LFE: the encoder for frames with image_aux
            meta = read_ddr_metadata(aux)
            self._use_aux_encoder(self.engines.graph(aux, meta), meta)
        self.loop = DeviceStepLoop(self.step_graph, use_cuda_graph=use_cuda_graph) if form == "step" else None

    def run_steps(self, latents: np.ndarray, cond: Any, pairs: Sequence[tuple[int, int]]) -> Any:
        """All DDIM steps on the GPU (latents stay in device memory; see DeviceStepLoop)."""
        return self.loop(latents, cond["cond"], pairs)  # the step graph's input (encode's dict)


class TensorRTDSRDiffBackend(_Engines, ExportedSuperResolutionBackend):
    """DSR-Diff super-resolution with TensorRT engines built (and cached) from the ONNX export;
    one engine per exported scale.

    Args: model_path, num_inference_steps, ensemble_size, seed as
    :class:`~depth_diffusion_ros.inference.backends.onnxruntime_backend.OnnxRuntimeDSRDiffBackend`;
    **engine_options as :class:`TensorRTDiffusionDepthBackend`.
    Raises BackendError naming the file for missing/mismatched graphs or engines.
    """

    name = "tensorrt"

    def __init__(self, model_path: Union[str, Path, None] = None, num_inference_steps: Optional[int] = None, ensemble_size: int = 1,
                 seed: int = 0, **engine_options: Any) -> None:
        sampling = SamplingOptions(num_inference_steps, ensemble_size, seed)
        self.engines = EngineSet(**engine_options)
        found, steps = find_sr_models(model_path, num_inference_steps)
        graphs = {scale: self.engines.graph(path, meta) for scale, (path, meta) in found.items()}
        self._use_graphs(graphs, next(iter(found.values()))[1], steps, sampling)


class TensorRTDenseDepthBackend(_Engines, ExportedDenseDepthBackend):
    """DenseDepth monocular depth with one TensorRT engine built (and cached) from ``densedepth.onnx``.

    Args:
        model_path: the DenseDepth export directory or its ``densedepth.onnx``.
        num_inference_steps, ensemble_size, seed: as
            :class:`~depth_diffusion_ros.inference.backends.onnxruntime_backend.OnnxRuntimeDenseDepthBackend`
            (steps ignored with a warning, ensemble_size must be 1, seed unused).
        **engine_options: :class:`EngineSet` (engine_cache_dir, precision, force_engine_update,
            workspace_mb, dla_core, trt, cuda).
    Raises BackendError naming the file for a missing/mismatched ONNX or engine, ensemble_size
    != 1, or when TensorRT / cuda-python are not installed.
    """

    name = "tensorrt"

    def __init__(self, model_path: Union[str, Path, None] = None, num_inference_steps: Optional[int] = None,
                 ensemble_size: int = 1, seed: int = 0, **engine_options: Any) -> None:
        self._check_request(model_path, num_inference_steps, ensemble_size)
        path = find_densedepth_file(model_path)
        self.engines = EngineSet(**engine_options)
        meta = read_ddr_metadata(path)
        self._use_graph(self.engines.graph(path, meta), meta)
