"""torch model -> ONNX (named I/O, metadata, parity check) -> TensorRT engine (cached).

Modules (torch is imported only inside the functions that export):
  onnx_export      generic export_onnx / check_parity / metadata_props (read without onnx or torch)
  diffusion_depth  DiffusionDepth step form (encoder/step/decoder) and unrolled sampler
  dsr_diff         DSR-Diff super-resolution sampler, one graph per scale
  frames           real KITTI / NYU frames for parity checks and benchmarks
  tensorrt_engine  TensorRT 10 builder, engine cache keyed by ONNX hash/precision/version/GPU
  cuda_runtime     thin checked wrapper over cuda-python (device memory, streams, CUDA graphs)
"""
