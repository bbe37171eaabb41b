"""IID-RDepth: the invertible decoder transform inverts and keeps its Lipschitz bound, the frozen
encoder stays frozen in training, AV-LFE is the identity without an auxiliary view, checkpoints
round-trip, and the estimation pipeline feeds ``rgb_aux`` to the model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from depth_diffusion_ros.models.iid_rdepth import IIDRDepth
from depth_diffusion_ros.models.iid_rdepth_blocks import (
    AuxViewEnhancement,
    InvertibleResidualBlock,
    InvertibleTransform,
    LipschitzConv2d,
    window_gather,
)
from depth_diffusion_ros.models.iid_rdepth_config import IIDRDepthConfig
from depth_diffusion_ros.models.config_base import ConfigError

REPO = Path(__file__).resolve().parents[1]
MONOCULAR = REPO / "depth_diffusion_ros" / "weights" / "diffusion_depth_kitti_monocular"


def _spiky(module: torch.nn.Module, scale: float = 20.0) -> torch.nn.Module:
    """Blow the raw weights up, so that the Lipschitz scaling is active (not a no-op)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, LipschitzConv2d):
                m.weight.mul_(scale)
    return module


def test_lipschitz_conv_bound_holds_on_random_inputs():
    torch.manual_seed(0)
    for kernel in (1, 3):
        conv = _spiky(LipschitzConv2d(6, 5, kernel, bound=0.7))
        assert float(conv.norm_bound().detach()) > 0.7  # the raw weight exceeds it: scaling is active
        for _ in range(20):
            x, y = torch.randn(2, 6, 9, 11), torch.randn(2, 6, 9, 11)
            ratio = ((conv(x) - conv(y)).norm() / (x - y).norm()).detach()
            assert float(ratio) <= 0.7 + 1e-6


def test_lipschitz_conv_bound_holds_against_worst_case_power_iteration():
    """Power iteration on the (linear part of the) convolution finds its operator norm: <= bound."""
    torch.manual_seed(1)
    conv = _spiky(LipschitzConv2d(4, 4, 3, bound=0.9))
    w = conv.scaled_weight().detach()
    x = torch.randn(1, 4, 16, 16)
    for _ in range(200):
        y = torch.nn.functional.conv2d(x, w, padding=1)
        x = torch.nn.functional.conv_transpose2d(y, w, padding=1)
        x = x / x.norm()
    sigma = torch.nn.functional.conv2d(x, w, padding=1).norm()
    assert 0.3 < float(sigma) <= 0.9 + 1e-5


def test_invertible_block_branch_is_a_contraction_and_block_is_bi_lipschitz():
    torch.manual_seed(2)
    block = _spiky(InvertibleResidualBlock(8, 16, coeff=0.9))
    with torch.no_grad():
        for _ in range(20):
            x, y = torch.randn(3, 8, 7, 10), torch.randn(3, 8, 7, 10) * 0.1
            y = x + y
            d_in = float((x - y).norm())
            assert float((block.branch(x) - block.branch(y)).norm()) <= 0.9 * d_in + 1e-5
            d_out = float((block(x) - block(y)).norm())
            assert (1 - 0.9) * d_in - 1e-5 <= d_out <= (1 + 0.9) * d_in + 1e-5


def test_invertible_transform_inverse_reconstructs():
    torch.manual_seed(3)
    transform = _spiky(InvertibleTransform(12, 16, blocks=3, coeff=0.9)).eval()
    x = torch.randn(2, 12, 6, 9)
    with torch.no_grad():
        y = transform(x)
        x_rec = transform.inverse(y, iterations=200)
    assert float((x_rec - x).abs().max()) < 1e-4
    assert float((y - x).norm()) > 0.1 * float(x.norm())  # not trivially the identity
    fwd, inv = transform.lipschitz_bounds()
    assert fwd == pytest.approx(1.9 ** 3) and inv == pytest.approx(10.0 ** 3)
    with torch.no_grad():  # the bi-Lipschitz bounds on random pairs
        for _ in range(10):
            a, b = torch.randn(1, 12, 6, 9), torch.randn(1, 12, 6, 9)
            ratio = float((transform(a) - transform(b)).norm() / (a - b).norm())
            assert 1.0 / inv - 1e-6 <= ratio <= fwd + 1e-6


def test_lipschitz_eval_cache_follows_the_weights():
    conv = _spiky(LipschitzConv2d(3, 4, 3, bound=0.5))
    x = torch.randn(1, 3, 8, 8)
    before = conv(x)  # training mode: computed
    conv.eval()
    assert torch.allclose(conv(x), before, atol=1e-6)
    with torch.no_grad():
        conv.weight.mul_(0.01)  # now inside the bound: used unscaled
    assert torch.allclose(conv(x), torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-6)


def test_window_gather_offsets():
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    g = window_gather(x, 3)  # (1,1,9,5,5); offset index 4 is the centre
    assert torch.equal(g[0, 0, 4], x[0, 0])
    assert float(g[0, 0, 0, 2, 2]) == float(x[0, 0, 1, 1])  # up-left neighbour
    assert float(g[0, 0, 0, 0, 0]) == 0.0  # zero padding


def test_av_lfe_identity_without_aux_and_starts_as_identity():
    torch.manual_seed(4)
    m = AuxViewEnhancement(6, 4, 5)
    f, a = torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8)
    assert torch.allclose(m(f, a, torch.ones(2, 1, 1, 1)), f)  # zero-initialised projection
    torch.nn.init.normal_(m.proj.weight)
    w = torch.tensor([0.0, 1.0]).reshape(2, 1, 1, 1)
    out = m(f, a, w)
    assert torch.equal(out[0], f[0])  # no auxiliary view: exactly the identity
    assert not torch.allclose(out[1], f[1])


def _config(**kw) -> IIDRDepthConfig:
    return IIDRDepthConfig(**{"pretrained_path": None, "num_inference_steps": 2, **kw})


def test_config_validation_names_fields():
    with pytest.raises(ConfigError, match="lipschitz_coeff"):
        _config(lipschitz_coeff=1.0)
    with pytest.raises(ConfigError, match="av_lfe_strides"):
        _config(av_lfe_strides=[8])
    with pytest.raises(ConfigError, match="variant"):
        _config(variant="nope")


@pytest.mark.parametrize("variant,av", [("baseline", False), ("iid_rdepth", False), ("iid_rdepth", True)])
def test_model_shapes_and_training_step(variant, av):
    torch.manual_seed(5)
    model = IIDRDepth(_config(variant=variant, av_lfe=av)).train()
    rgb, aux = torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96)
    gt = torch.rand(2, 1, 64, 96) * 40 * (torch.rand(2, 1, 64, 96) > 0.8)
    out = model.training_loss(rgb, gt, aux if av else None)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    model.eval()
    with torch.no_grad():
        depth = model.sample(rgb, aux if av else None)
    assert depth.shape == (2, 1, 64, 96)
    assert float(depth.min()) >= 0.5 and float(depth.max()) <= 88.0
    assert model.latent_shape(64, 96) == (96, 8, 12)
    with pytest.raises(ValueError, match="size_divisor"):
        model.latent_shape(60, 96)


def test_frozen_encoder_from_the_monocular_checkpoint_does_not_change_in_training():
    from depth_diffusion_ros.models.checkpoint import load_checkpoint

    torch.manual_seed(6)
    model = IIDRDepth(_config(av_lfe=True, pretrained_path=str(MONOCULAR)))
    source = load_checkpoint(MONOCULAR)
    assert model.canonical_focal == pytest.approx(source.canonical_focal)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    for k, v in source.backbone.state_dict().items():
        assert torch.equal(before[k], v)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    model.train()
    assert not model.encoder.training  # BatchNorm statistics frozen too
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    assert all(not any(p is q for q in model.encoder.parameters()) for p in model.trainable_parameters())
    for _ in range(2):
        rgb = torch.rand(2, 3, 64, 96)
        gt = torch.rand(2, 1, 64, 96) * 40 * (torch.rand(2, 1, 64, 96) > 0.8)
        loss = model.training_loss(rgb, gt, torch.rand(2, 3, 64, 96))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN buffers
    assert any(not torch.equal(a, b) for a, b in zip(
        IIDRDepth(_config(av_lfe=True)).head.parameters(), model.head.parameters()))


def test_checkpoint_round_trip_and_torch_backend(tmp_path):
    from depth_diffusion_ros.inference.backends.torch_backend import TorchDiffusionDepthBackend
    from depth_diffusion_ros.inference.pipelines import EstimationPipeline
    from depth_diffusion_ros.models.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(7)
    model = IIDRDepth(_config(av_lfe=True)).eval()
    for m in model.av_lfe.values():
        torch.nn.init.normal_(m.proj.weight, std=0.5)
    path = save_checkpoint(model, tmp_path / "ckpt")
    loaded = load_checkpoint(path)
    assert isinstance(loaded, IIDRDepth) and loaded.uses_aux
    rgb = torch.rand(1, 3, 64, 96)
    noise = torch.randn(1, *model.latent_shape(64, 96))
    with torch.no_grad():
        assert torch.allclose(model.sample(rgb, noise=noise), loaded.sample(rgb, noise=noise))
    backend = TorchDiffusionDepthBackend(model_path=path)
    assert backend.uses_aux and backend.mode == "monocular"
    pipeline = EstimationPipeline(backend)
    assert pipeline.uses_aux
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)
    aux = rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)
    alone = pipeline(image).depth
    assert alone.shape == (60, 90)
    assert np.array_equal(pipeline(image).depth, alone)  # seeded noise: deterministic
    with_aux = pipeline(image, rgb_aux=aux).depth
    assert not np.allclose(with_aux, alone)  # the AV-LFE path is used
    from depth_diffusion_ros.inference.errors import FrameError

    with pytest.raises(FrameError, match="image_aux"):
        pipeline(image, rgb_aux=aux[:30])


def test_pipeline_ignores_aux_for_a_model_without_av_lfe(tmp_path):
    from depth_diffusion_ros.inference.backends.torch_backend import TorchDiffusionDepthBackend
    from depth_diffusion_ros.inference.pipelines import EstimationPipeline

    torch.manual_seed(8)
    pipeline = EstimationPipeline(TorchDiffusionDepthBackend(model=IIDRDepth(_config()).eval()))
    assert not pipeline.uses_aux
    image = np.random.default_rng(1).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    assert np.array_equal(pipeline(image).depth, pipeline(image, rgb_aux=image[::-1].copy()).depth)
