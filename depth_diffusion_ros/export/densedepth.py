"""Export DenseDepth (Alhashim & Wonka, arXiv 1812.11941), the one-shot monocular regressor, to ONNX.

One graph, :data:`~depth_diffusion_ros.inference.backends.exported.DENSEDEPTH_FILE`
(role ``densedepth``)::

    densedepth.onnx   rgb (1,3,H,W) float32 in [0,1] -> depth (1,1,H,W) float32 metres

It is :meth:`DenseDepth.sample <depth_diffusion_ros.models.densedepth.DenseDepth.sample>`: the
network predicts the reciprocal ``y = max_depth / depth`` (paper Sec. 3.2, what training's loss
sees) and the graph maps it back to metres as training's evaluation does
(``target_to_depth``: ``max_depth / max(y, 1)``, clamped to [min_depth, max_depth]), so every
runtime gets metres and none needs to know the parameterisation. ImageNet normalisation is inside
the encoder, as in torch.

Metric scale across cameras is the estimation pipeline's job, as for DiffusionDepth: the
checkpoint's ``canonical_focal`` (the focal length its training frames were brought to) is stored
as ``ddr.canonical_focal``; :class:`~depth_diffusion_ros.inference.pipelines.EstimationPipeline`
resizes each frame to it, pads to ``size_divisor`` (32), runs the graph and de-canonicalises.
The graph is static by default: export it for the padded canonical size of the camera's frames
(a 1242x375 KITTI frame at 721.54 px -> 621x188 at 360.77 px -> 640x192).

metadata_props (``ddr.*``): graph, model ("densedepth"), model_sha256 (the checkpoint's tensor
hash), export_id, config (JSON), size_divisor, height, width, dynamic, min_depth, max_depth,
canonical_focal (pixels, when the weights carry one), parity errors and tolerances.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Optional

import numpy as np

from depth_diffusion_ros.export.onnx_export import (
    DEFAULT_OPSET,
    ExportReport,
    export_checked,
    model_sha256,
    write_export_json,
)
from depth_diffusion_ros.inference.backends.exported import DENSEDEPTH_FILE, DENSEDEPTH_GRAPH

#: parity of the graph against torch: 1 mm + 1e-4 relative (depth up to max_depth, 88 m for
#: KITTI, through a reciprocal: an error in y grows with depth^2 / max_depth)
ATOL, RTOL = 1e-3, 1e-4


def load_densedepth(checkpoint: Any) -> Any:
    """A DenseDepth checkpoint in eval mode (with its ``canonical_focal``); CheckpointError naming
    the file for another architecture or a model in super-resolution mode (not monocular)."""
    from depth_diffusion_ros.models.checkpoint import CheckpointError, load_checkpoint

    model = load_checkpoint(checkpoint, architecture="densedepth").eval()
    if model.config.mode != "monocular":
        raise CheckpointError(f"{checkpoint}: a DenseDepth in {model.config.mode!r} mode; only monocular "
                              "DenseDepth is exported for the estimation node")
    return model


def export_densedepth(
    model: Any,
    out_dir: str | Path,
    height: int,
    width: int,
    rgb: Optional[np.ndarray] = None,
    dynamic: bool = False,
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
    check: bool = True,
    atol: float = ATOL,
    rtol: float = RTOL,
    seed: int = 0,
) -> ExportReport:
    """Export a monocular DenseDepth to ``out_dir/densedepth.onnx`` and check it against torch.

    model: a DenseDepth (mode "monocular"; put in eval mode here). height, width: graph input
        size, multiples of ``model.size_divisor`` (32).
    rgb: (1,3,H,W) float32 in [0,1] for the parity check (pass a real frame); None = random.
    dynamic: height/width axes dynamic (exported with the torch.export-based exporter, opset
        >= 18, as the DiffusionDepth dynamic export; checked again at a second size).
    check: run :func:`~depth_diffusion_ros.export.onnx_export.check_parity` (``atol`` metres +
        ``rtol`` relative) in a real ONNX Runtime session.
    Returns the :class:`~depth_diffusion_ros.export.onnx_export.ExportReport`; also writes
    ``export.json``. Raises ValueError for a size that is not a multiple of 32, a wrong ``rgb``
    shape or a model not in monocular mode; ExportError / ParityError naming the file.
    """
    import torch

    model = model.eval()
    cfg = model.config
    if cfg.mode != "monocular":
        raise ValueError(f"DenseDepth in {cfg.mode!r} mode: only a monocular DenseDepth exports to {DENSEDEPTH_FILE}")
    d = int(model.size_divisor)
    if height <= 0 or width <= 0 or height % d or width % d:
        raise ValueError(f"graph size {width}x{height} must be positive multiples of {d} (pad the frame first)")
    if dynamic and not dynamo:
        dynamo, opset = True, max(int(opset), 18)
    if rgb is None:
        rgb = np.random.default_rng(seed).random((1, 3, height, width), dtype=np.float32)
    if tuple(rgb.shape) != (1, 3, height, width):
        raise ValueError(f"rgb has shape {tuple(rgb.shape)}, expected {(1, 3, height, width)}")
    x = torch.from_numpy(np.ascontiguousarray(rgb, np.float32))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExportReport(out_dir, [], model_sha256(model), uuid.uuid4().hex)
    meta: dict[str, Any] = {
        "model": "densedepth", "model_sha256": report.model_sha256, "export_id": report.export_id,
        "config": cfg.to_dict(), "size_divisor": d, "height": int(height), "width": int(width),
        "dynamic": bool(dynamic), "min_depth": float(cfg.min_depth), "max_depth": float(cfg.max_depth),
    }
    if getattr(model, "canonical_focal", None):
        meta["canonical_focal"] = float(model.canonical_focal)  # the estimation pipeline resizes inputs to it
    graph = _sample_module(model)
    with torch.no_grad():
        expected = {"depth": model.sample(x)}
        axes = {"rgb": {2: "height", 3: "width"}, "depth": {2: "height", 3: "width"}} if dynamic else None
        report.graphs.append(export_checked(graph, (x,), out_dir / DENSEDEPTH_FILE, ["rgb"], ["depth"], expected,
                                            DENSEDEPTH_GRAPH, meta, check=check, atol=atol, rtol=rtol,
                                            dynamic_axes=axes, opset=opset, dynamo=dynamo))
        if dynamic and check:  # the symbolic shapes must really generalise: another size
            from depth_diffusion_ros.export.onnx_export import check_parity, write_metadata

            other = torch.from_numpy(np.random.default_rng(seed + 1).random((1, 3, height + d, width + 2 * d),
                                                                            dtype=np.float32))
            err = check_parity(out_dir / DENSEDEPTH_FILE, {"rgb": other.numpy()}, {"depth": model.sample(other).numpy()},
                               atol=atol, rtol=rtol).max_abs
            write_metadata(out_dir / DENSEDEPTH_FILE, {"parity_other_size": [height + d, width + 2 * d],
                                                       "parity_other_size_error": err})
    write_export_json(report, height, width, model="densedepth")
    return report


def _sample_module(model: Any) -> Any:
    """``rgb -> model.sample(rgb)`` (metres) as a module for the exporter."""
    from torch import nn

    class DenseDepthSample(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, rgb):
            return self.model.target_to_depth(self.model(rgb))

    return DenseDepthSample()
