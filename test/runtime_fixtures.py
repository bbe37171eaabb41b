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
