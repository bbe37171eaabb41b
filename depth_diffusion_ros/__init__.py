"""depth_diffusion_ros: dense metric depth from a camera plus sparse LiDAR or low-resolution depth.

Layers (imports go downwards only): tools -> nodes -> ros -> inference -> export -> models ->
baselines -> evaluation -> geometry. See ``docs/interfaces.md``.
"""
__version__ = "0.1.0"
