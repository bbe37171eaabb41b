"""torch model -> ONNX (named I/O, metadata, parity check); used by ``tools/`` only.

Modules (torch is imported only inside the functions that export):
  onnx_export      generic export_onnx / check_parity / write_metadata
  diffusion_depth  DiffusionDepth step form (encoder/step/decoder) and unrolled sampler
  dsr_diff         DSR-Diff super-resolution sampler, one graph per scale
  frames           real KITTI / NYU frames for parity checks and benchmarks

Building TensorRT engines from the exported files and running them is the runtime layer's
job (:mod:`depth_diffusion_ros.runtime`), which never imports this package.
"""
