"""ROS-free inference pipelines: each owns the whole frame over a backend.

* :class:`CompletionPipeline` — image + sparse depth / LiDAR points -> dense depth.
* :class:`EstimationPipeline` — image only (monocular) -> metric depth, through a canonical focal
  length (any camera) when the model has one.
* :class:`SuperResolutionPipeline` — image + low-resolution depth -> depth at the image size.
* :class:`CascadePipeline` — completion at low resolution, then super-resolution.

Every call returns a :class:`DepthOutput` (depth, uncertainty, intrinsics, rgb). Nodes, replay,
the demo, the benchmarks and ``training.evaluate`` run inference only through these.
"""
from depth_diffusion_ros.inference.pipelines.cascade import CascadePipeline
from depth_diffusion_ros.inference.pipelines.common import DepthOutput
from depth_diffusion_ros.inference.pipelines.completion import CompletionPipeline
from depth_diffusion_ros.inference.pipelines.estimation import EstimationPipeline, MonocularModel
from depth_diffusion_ros.inference.pipelines.super_resolution import SuperResolutionPipeline

__all__ = ["CascadePipeline", "CompletionPipeline", "DepthOutput", "EstimationPipeline", "MonocularModel",
           "SuperResolutionPipeline"]
