"""Helpers for the runtime tests: a small DiffusionDepth, its checkpoint and ONNX export.

The small config (ResNet-18 backbone, narrow neck/denoiser, latent stride 8) runs a 96x320 frame
in well under a second per step on 2 CPU cores; the export and backend code paths are the same
as for the shipped model.
"""
from __future__ import annotations

from pathlib import Path

#: The ``__init__.py`` of the stand-in torch / torchvision / timm packages of the torch-free tests:
#: importing them raises ImportError and appends to the file ``$DDR_TORCH_MARKER`` names.
BLOCKER = """
import os
marker = os.environ.get("DDR_TORCH_MARKER")
if marker:
    with open(marker, "a") as f:
        f.write("torch import attempted\\n")
raise ImportError("torch is blocked in this test (torch-free deployment)")
"""


def write_torch_blocker(root: Path) -> tuple[Path, Path]:
    """Stand-in ``torch``, ``torchvision`` and ``timm`` packages under ``root/block`` that refuse to
    import (put the folder first on PYTHONPATH); returns (that folder, the marker file path)."""
    block = Path(root) / "block"
    for name in ("torch", "torchvision", "timm"):
        (block / name).mkdir(parents=True)
        (block / name / "__init__.py").write_text(BLOCKER)
    return block, Path(root) / "torch_marker.txt"

H, W = 96, 320
STEPS = 3


def small_config(mode: str = "completion", **overrides):
    from depth_diffusion_ros.models.config import DiffusionDepthConfig

    return DiffusionDepthConfig(neck_channels=16, latent_stride=8, decoder_channels=8, denoiser_channels=16,
                                denoiser_channel_mult=(1, 2), time_embed_dim=32, sparse_channels=8,
                                mode=mode, num_inference_steps=STEPS, **overrides)


def build_small_export(root: Path, shared_data: Path, forms=("step", "unrolled"), ensemble_size: int = 1,
                       **config_overrides):
    """Save a seeded small model as a checkpoint (root/ckpt) and export it (root/onnx).
    ``config_overrides`` go to :func:`small_config`.

    Returns (model, checkpoint dir, onnx dir). The parity check runs on a real KITTI frame.
    """
    import torch

    from depth_diffusion_ros.export.diffusion_depth import export_diffusion_depth
    from depth_diffusion_ros.export.frames import frame_for_size, tensor_inputs
    from depth_diffusion_ros.models.checkpoint import save_checkpoint
    from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth

    torch.manual_seed(0)
    model = DiffusionDepth(small_config(**config_overrides)).eval()
    ckpt = save_checkpoint(model, root / "ckpt")
    inputs = tensor_inputs(*frame_for_size(shared_data, H, W, "kitti"))
    export_diffusion_depth(model, root / "onnx", H, W, forms=forms, num_inference_steps=STEPS,
                           ensemble_size=ensemble_size, inputs=inputs)
    return model, Path(ckpt), root / "onnx"


def kitti_frame(shared_data: Path, height: int, width: int):
    """(rgb uint8 (h,w,3), sparse (h,w) m) bottom-centre crop of the real KITTI frame."""
    from depth_diffusion_ros.export.frames import frame_for_size

    return frame_for_size(shared_data, height, width, "kitti")


def complete(backend, rgb, sparse):
    """One frame of depth completion through the pipeline every caller uses."""
    from depth_diffusion_ros.inference.pipelines import CompletionPipeline

    return CompletionPipeline(backend)(rgb, sparse)


def estimate(backend, rgb):
    """One frame of monocular estimation (no sparse input) through its pipeline."""
    from depth_diffusion_ros.inference.pipelines import EstimationPipeline

    return EstimationPipeline(backend)(rgb)


#: the canonical focal length of the KITTI monocular models (pixels): a 1242x375 KITTI frame at
#: 721.54 px runs at 621x188, padded to 640x192
KITTI_CANONICAL_FOCAL = 360.76885
DENSEDEPTH_H, DENSEDEPTH_W = 192, 640


def small_densedepth():
    """A seeded small monocular DenseDepth (MobileNetV3-Small 0.5 encoder, decoder width 0.25;
    351 k parameters), trained for 0 steps, with the KITTI canonical focal length. Its output
    layer is scaled (x60, bias 5) so that the reciprocal output spreads over about 7-37 m on a
    KITTI frame: left at its initialisation it is ~0 everywhere, i.e. a constant max_depth, and
    every comparison of two runtimes would be vacuous."""
    import torch

    from depth_diffusion_ros.models.densedepth import DenseDepth, DenseDepthConfig

    torch.manual_seed(0)
    model = DenseDepth(DenseDepthConfig(encoder="mobilenetv3_small_050", decoder_width=0.25, min_depth=0.5,
                                        max_depth=88.0)).eval()
    with torch.no_grad():
        model.conv3.weight.mul_(60.0)
        model.conv3.bias.fill_(5.0)
    model.canonical_focal = KITTI_CANONICAL_FOCAL  # stored with the weights by save_checkpoint
    return model


def build_small_densedepth_export(root: Path, shared_data: Path):
    """:func:`small_densedepth` saved as a checkpoint (root/ckpt) and exported for the padded
    canonical size of a KITTI frame (root/onnx, 640x192), the parity check on the real KITTI
    frame. Returns (model, checkpoint dir, onnx dir)."""
    from depth_diffusion_ros.export.densedepth import export_densedepth
    from depth_diffusion_ros.export.frames import frame_for_size, tensor_inputs
    from depth_diffusion_ros.models.checkpoint import save_checkpoint

    model = small_densedepth()
    ckpt = save_checkpoint(model, Path(root) / "ckpt")
    rgb = tensor_inputs(*frame_for_size(shared_data, DENSEDEPTH_H, DENSEDEPTH_W, "kitti"))["rgb"]
    export_densedepth(model, Path(root) / "onnx", DENSEDEPTH_H, DENSEDEPTH_W, rgb=rgb)
    return model, Path(ckpt), Path(root) / "onnx"
