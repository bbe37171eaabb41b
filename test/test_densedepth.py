"""DenseDepth baseline: the loss against values worked out by hand (and SSIM against
scikit-image), the encoder-decoder's shapes and a training step through the shared trainer API."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depth_diffusion_ros.models.densedepth import DenseDepth, DenseDepthConfig, build_densedepth
from depth_diffusion_ros.models.losses import densedepth_loss, gradient_loss, ssim

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def t(a) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float32)[None, None]


def test_gradient_loss_by_hand():
    y = t([[1.0, 2.0, 4.0], [1.0, 1.0, 1.0]])
    y_hat = t([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    # dx(y) = [[1, 2], [0, 0]], dx(y_hat) = 0 -> mean |.| over 4 positions = 3/4
    # dy(y) = [[0, -1, -3]], dy(y_hat) = [[1, 1, 1]] -> |1|,|2|,|4| -> mean 7/3
    assert math.isclose(float(gradient_loss(y_hat, y)), 3 / 4 + 7 / 3, rel_tol=1e-6)
    # with a mask that invalidates y[0, 2]: x terms keep (0,0),(1,0),(1,1) -> (1+0+0)/3;
    # y terms keep columns 0, 1 -> (1 + 2)/2
    mask = t([[1, 1, 0], [1, 1, 1]])
    assert math.isclose(float(gradient_loss(y_hat, y, mask)), 1 / 3 + 3 / 2, rel_tol=1e-6)


def test_densedepth_loss_on_constant_maps_by_hand():
    c1, c2, L = 2.0, 3.0, 10.0
    y_hat = torch.full((1, 1, 11, 11), c1)
    y = torch.full((1, 1, 11, 11), c2)
    parts = densedepth_loss(y_hat, y, depth_weight=0.1, data_range=L)
    C1 = (0.01 * L) ** 2
    # constant maps: variances and covariance 0, so SSIM = (2 c1 c2 + C1) / (c1^2 + c2^2 + C1)
    s = (2 * c1 * c2 + C1) / (c1**2 + c2**2 + C1)
    assert math.isclose(float(parts["l_depth"]), 1.0, rel_tol=1e-6)
    assert math.isclose(float(parts["l_grad"]), 0.0, abs_tol=1e-7)
    assert math.isclose(float(parts["l_ssim"]), (1 - s) / 2, rel_tol=2e-3)
    assert math.isclose(float(parts["loss"]), 0.1 * 1.0 + 0 + (1 - s) / 2, rel_tol=2e-3)


def test_densedepth_loss_tiny_ramp_by_hand():
    # 11x11 maps: y = column index, y_hat = y + 1 on the right half (col >= 6)
    y = torch.arange(11, dtype=torch.float32).repeat(11, 1)[None, None]
    y_hat = y + (torch.arange(11) >= 6).float()
    parts = densedepth_loss(y_hat, y, depth_weight=0.1, data_range=11.0)
    # L1: 5 of 11 columns differ by 1 -> 5/11. Gradients: dx differs by 1 at one of 10 column
    # pairs -> 1/10; dy identical -> 0.
    assert math.isclose(float(parts["l_depth"]), 5 / 11, rel_tol=1e-6)
    assert math.isclose(float(parts["l_grad"]), 1 / 10, rel_tol=1e-6)
    assert float(parts["l_ssim"]) > 0
    expected = 0.1 * 5 / 11 + 1 / 10 + float(parts["l_ssim"])
    assert math.isclose(float(parts["loss"]), expected, rel_tol=1e-6)


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.uniform(1, 10, (24, 30)).astype(np.float64)
    b = (a + rng.normal(0, 1.0, a.shape)).astype(np.float64)
    ref = structural_similarity(a, b, data_range=10.0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    ours = float(ssim(t(b), t(a), data_range=10.0))
    assert math.isclose(ours, ref, abs_tol=2e-3)
    assert math.isclose(float(ssim(t(a), t(a), 10.0)), 1.0, abs_tol=1e-5)
    with pytest.raises(ValueError, match="window"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), 1.0)


def test_masked_loss_ignores_invalid_pixels():
    y = torch.full((1, 1, 12, 12), 2.0)
    y_hat = y.clone()
    y_hat[..., 0, 0] = 50.0  # wrong only where GT is missing
    mask = torch.ones_like(y)
    mask[..., 0, 0] = 0
    parts = densedepth_loss(y_hat, y, mask)
    assert float(parts["l_depth"]) == 0.0 and float(parts["l_grad"]) == 0.0


def test_densedepth169_monocular_shapes_and_reciprocal_depth():
    m = DenseDepth(DenseDepthConfig(encoder="densenet169", decoder_width=0.25)).eval()
    assert m.encoder.channels == [64, 256, 512, 1280, 1664]
    rgb = torch.rand(1, 3, 64, 96)
    y = m(rgb)
    assert y.shape == (1, 1, 64, 96)
    depth = m.sample(rgb)
    assert depth.shape == (1, 1, 64, 96)
    assert float(depth.min()) >= 0.1 and float(depth.max()) <= 10.0
    d = torch.tensor([0.1, 1.0, 10.0])
    assert torch.allclose(m.depth_to_target(d), torch.tensor([100.0, 10.0, 1.0]))
    assert torch.allclose(m.target_to_depth(m.depth_to_target(d)), d)
    with pytest.raises(ValueError, match="multiples of 32"):
        m(torch.rand(1, 3, 60, 96))


def test_densedepth_sr_mode_training_step():
    m = build_densedepth({"encoder": "densenet121", "mode": "super_resolution", "decoder_width": 0.125})
    gt = 1.0 + 4.0 * torch.rand(2, 1, 64, 64)
    batch = {"rgb": torch.rand(2, 3, 64, 64), "gt_depth": gt, "gt_mask": torch.ones_like(gt),
             "depth_lr": torch.nn.functional.avg_pool2d(gt, 8)}
    m.eval()
    with torch.no_grad():
        # zero-initialised last conv: SR mode starts from the bicubic LR depth
        y_up = torch.nn.functional.interpolate(batch["depth_lr"], size=(64, 64), mode="bicubic", align_corners=False)
        assert torch.allclose(m.sample(batch["rgb"], batch["depth_lr"]), y_up.clamp(0.1, 10.0), atol=1e-4)
    m.train()
    losses = m.training_losses(batch)
    assert {"loss", "l_depth", "l_grad", "l_ssim"} <= set(losses)
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert m.conv3.weight.grad is not None and float(m.conv3.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="depth_lr"):
        m(batch["rgb"])
    with pytest.raises(ValueError, match="mode"):
        DenseDepthConfig(mode="stereo")
