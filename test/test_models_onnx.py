"""Export-friendliness of DiffusionDepth's graph parts: each exports to ONNX opset 17 with the
TorchScript exporter and runs in a real ONNX Runtime session with the same numbers as torch,
including the final DDIM step (prev_timestep < 0) and the no-LiDAR input."""
from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from depth_diffusion_ros.models.config import DiffusionDepthConfig
from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth

torch.set_num_threads(2)


class _Part(torch.nn.Module):
    def __init__(self, model: DiffusionDepth, fn: str) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *args):
        m = self.model
        if self.fn == "encode_condition":
            return m.encode_condition(*args)
        if self.fn == "ddim_step":
            latents, cond, t, prev = args
            return m.ddim_step(latents, t, prev, cond)
        return m.decode(*args)


def _export_and_run(module, args, names, path):
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=names, output_names=["out"],
                          opset_version=17, dynamo=False)
    module.eval()  # the exporter restores the wrapper's (train) mode on exit
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("extra", [
    {},
    # the former demo weights' layout: two priors (scan-line fill: static column shifts) + masking
    {"prior_scanline_gap": 8, "prior_levels": 3, "mask_unsupported": True},
], ids=["pull_push_prior", "two_priors_masked"])
def test_graph_parts_export_to_onnx_opset17_with_parity(tmp_path, extra):
    torch.manual_seed(0)
    cfg = DiffusionDepthConfig(backbone="test_efficientnet", neck_channels=8, latent_channels=4,
                               decoder_channels=8, denoiser_channels=8, denoiser_channel_mult=(1, 2),
                               time_embed_dim=16, sparse_channels=8, **extra)
    model = DiffusionDepth(cfg).eval()
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(1, 3, 64, 128, generator=g)
    mask = (torch.rand(1, 1, 64, 128, generator=g) < 0.05).float()
    sparse = mask * (1 + 40 * torch.rand(1, 1, 64, 128, generator=g))

    enc = _export_and_run(_Part(model, "encode_condition"), (rgb, sparse, mask),
                          ["rgb", "sparse_depth", "valid_mask"], tmp_path / "enc.onnx")
    for sp, vm in ((sparse, mask), (torch.zeros_like(sparse), torch.zeros_like(mask))):
        out = enc.run(None, {"rgb": rgb.numpy(), "sparse_depth": sp.numpy(), "valid_mask": vm.numpy()})[0]
        with torch.no_grad():
            ref = model.encode_condition(rgb, sp, vm).numpy()
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        cond = model.encode_condition(rgb, sparse, mask)
    latents = torch.randn(1, *model.latent_shape(64, 128), generator=g)

    step = _export_and_run(_Part(model, "ddim_step"),
                           (latents, cond, torch.tensor([500]), torch.tensor([450])),
                           ["latents", "cond", "timestep", "prev_timestep"], tmp_path / "step.onnx")
    for t, prev in ((950, 900), (0, -50)):  # an ordinary and the final step
        feed = {"latents": latents.numpy(), "cond": cond.numpy(),
                "timestep": np.array([t], np.int64), "prev_timestep": np.array([prev], np.int64)}
        out = step.run(None, feed)[0]
        with torch.no_grad():
            ref = model.ddim_step(latents, torch.tensor([t]), torch.tensor([prev]), cond).numpy()
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)

    dec = _export_and_run(_Part(model, "decode"), (latents, cond), ["latents", "cond"], tmp_path / "dec.onnx")
    out = dec.run(None, {"latents": latents.numpy(), "cond": cond.numpy()})[0]
    with torch.no_grad():
        ref = model.decode(latents, cond).numpy()
    assert out.shape == (1, 1, 64, 128)
    np.testing.assert_allclose(out, ref, atol=1e-3, rtol=1e-4)
