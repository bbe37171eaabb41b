"""Torch-free runtime layer: compiled graphs and the machinery to run them.

Modules:
  errors          BackendError: a model or engine file cannot run here (names the file)
  metadata        ``ddr.*`` metadata of ONNX files (read without onnx/torch), file hashes, atomic writes
  onnx_session    one ONNX file in one ONNX Runtime session (providers, threads, I/O binding)
  tensorrt_engine TensorRT 10/11 builder and engine cache keyed by ONNX hash/precision/version/GPU
  tensorrt_int8   the TensorRT 10 INT8 entropy calibrator (TensorRT 11 removed implicit INT8)
  onnx_fp16       fp16 copies of ONNX graphs (onnxconverter-common) for strongly typed TensorRT 11
  tensorrt_graph  one deserialised engine on a CUDA stream, and the on-device DDIM step loop
  cuda_runtime    thin checked wrapper over cuda-python (device memory, streams, CUDA graphs)

Nothing here imports torch, ROS or the layers above (``inference``, ``export``, ...).
"""
