"""DiffusionDepth: shapes through every module, eta-0 determinism, ensembles, completion vs
monocular fallback, and an overfit check on one batch (tiny configs, 64x128 inputs)."""
from __future__ import annotations

import pytest
import torch

from depth_diffusion_ros.models.config import ConfigError, DiffusionDepthConfig
from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth
from depth_diffusion_ros.models.prior import densify_sparse_depth

torch.set_num_threads(2)
H, W = 64, 128


def tiny_config(**overrides) -> DiffusionDepthConfig:
    base = dict(
        backbone="test_efficientnet",
        neck_channels=16,
        latent_channels=8,
        latent_stride=8,
        decoder_channels=16,
        denoiser_channels=16,
        denoiser_channel_mult=(1, 2),
        time_embed_dim=32,
        sparse_channels=8,
        num_inference_steps=4,
        num_self_diffusion_steps=2,
        max_depth=80.0,
    )
    base.update(overrides)
    return DiffusionDepthConfig(**base)


def make_batch(b: int = 2, seed: int = 0, density: float = 0.05, H: int = H, W: int = W):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(b, 3, H, W, generator=g)
    # a smooth "scene": depth grows towards the bottom-left, 5..45 m
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    dense = (5 + 30 * yy + 10 * (1 - xx)).expand(b, 1, H, W).clone()
    sparse_mask = torch.rand(b, 1, H, W, generator=g) < density
    sparse = dense * sparse_mask
    gt_mask = torch.rand(b, 1, H, W, generator=g) < 0.3
    return dict(rgb=rgb, sparse_depth=sparse, valid_mask=sparse_mask.float(),
                gt_depth=dense * gt_mask, gt_mask=gt_mask.float(), dense=dense)


@pytest.fixture(scope="module")
def model() -> DiffusionDepth:
    torch.manual_seed(0)
    return DiffusionDepth(tiny_config()).eval()


def test_shapes_and_dtypes_through_every_module(model):
    batch = make_batch()
    s = model.latent_stride
    cond = model.encode_condition(batch["rgb"], batch["sparse_depth"], batch["valid_mask"])
    assert cond.shape == (2, model.cond_channels, H // s, W // s) and cond.dtype == torch.float32
    assert model.cond_channels == 16 + 2 * s * s
    assert model.latent_shape(H, W) == (8, H // s, W // s)
    feats = model.backbone(batch["rgb"])
    assert [f.shape[1] for f in feats] == model.backbone.channels
    assert [H // f.shape[2] for f in feats] == model.backbone.strides == [4, 8, 16, 32]
    lat = torch.randn(2, *model.latent_shape(H, W))
    eps = model.denoise(lat, torch.tensor([10, 999]), cond)
    assert eps.shape == lat.shape and eps.dtype == torch.float32
    eps0 = model.denoise(lat, torch.tensor(10), cond)  # 0-d timestep broadcasts
    assert eps0.shape == lat.shape
    prev = model.ddim_step(lat, torch.tensor(500), torch.tensor(450), cond)
    assert prev.shape == lat.shape
    depth = model.decode(lat, cond)
    assert depth.shape == (2, 1, H, W)
    assert float(depth.detach().min()) >= 0.1 and float(depth.detach().max()) <= 80.0  # clamped
    z = model.encode_depth(batch["dense"])
    assert z.shape == lat.shape
    out = model.sample(batch["rgb"], batch["sparse_depth"], batch["valid_mask"],
                       generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, H, W) and torch.isfinite(out).all()


def test_eta0_determinism_same_noise_same_output_different_seed_differs(model):
    batch = make_batch(b=1)
    args = (batch["rgb"], batch["sparse_depth"], batch["valid_mask"])
    a = model.sample(*args, generator=torch.Generator().manual_seed(7))
    b = model.sample(*args, generator=torch.Generator().manual_seed(7))
    c = model.sample(*args, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    noise = torch.randn(1, *model.latent_shape(H, W), generator=torch.Generator().manual_seed(7))
    d = model.sample(*args, noise=noise)
    assert torch.equal(a, d)  # explicit noise == the generator's draw
    # different noise changes the depth where the decode is not pinned by the LiDAR prior
    assert float((a - c).abs().max()) > 1e-4


def test_sample_rejects_bad_inputs(model):
    with pytest.raises(ValueError, match="size_divisor"):
        model.sample(torch.rand(1, 3, 60, 128))
    with pytest.raises(ValueError, match="noise must be"):
        model.sample(torch.rand(1, 3, H, W), noise=torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match="sparse_depth"):
        model.sample(torch.rand(1, 3, H, W), sparse_depth=torch.zeros(1, 1, 32, 32))
    with pytest.raises(ConfigError, match="mode"):
        tiny_config(mode="stereo")
    with pytest.raises(ConfigError, match="latent_stride"):
        tiny_config(latent_stride=3)


def test_missing_lidar_falls_back_to_monocular(model):
    batch = make_batch(b=1)
    noise = torch.randn(1, *model.latent_shape(H, W), generator=torch.Generator().manual_seed(3))
    rgb = batch["rgb"]
    none_out = model.sample(rgb, None, None, noise=noise)
    zero_out = model.sample(rgb, torch.zeros(1, 1, H, W), torch.zeros(1, 1, H, W), noise=noise)
    torch.testing.assert_close(none_out, zero_out)  # None and all-zero LiDAR are the same input
    assert torch.isfinite(none_out).all() and float(none_out.min()) >= 0.1
    # the decode without LiDAR is exactly the monocular branch: the prior channels are zero
    cond = model.encode_condition(rgb, None, None)
    assert float(cond[:, model.feature_channels :].detach().abs().max()) == 0.0
    lat = torch.randn(1, *model.latent_shape(H, W))
    torch.testing.assert_close(model.decode(lat, cond), model.decode(lat, None))
    # with LiDAR the measured pixels pull the output towards the measurements
    lidar_out = model.sample(rgb, batch["sparse_depth"], batch["valid_mask"], noise=noise)
    m = batch["valid_mask"] > 0
    gt = batch["sparse_depth"][m]
    assert (lidar_out[m] - gt).abs().mean() < (none_out[m] - gt).abs().mean()


def test_monocular_mode_ignores_sparse_input():
    torch.manual_seed(0)
    mono = DiffusionDepth(tiny_config(mode="monocular")).eval()
    batch = make_batch(b=1)
    assert mono.cond_channels == 16
    assert not hasattr(mono, "sparse_encoder")
    noise = torch.randn(1, *mono.latent_shape(H, W))
    a = mono.sample(batch["rgb"], batch["sparse_depth"], batch["valid_mask"], noise=noise)
    b = mono.sample(batch["rgb"], None, None, noise=noise)
    assert torch.equal(a, b)


def test_prior_densification_keeps_measurements_and_fills_holes():
    batch = make_batch(b=1, density=0.03)
    sparse, mask = batch["sparse_depth"], batch["valid_mask"]
    prior, valid = densify_sparse_depth(sparse, mask, levels=5)
    m = mask > 0
    assert torch.equal(prior[m], sparse[m])
    assert float(valid.mean()) > 0.99  # 3% density fills the frame within 32-px blocks
    err = (prior - batch["dense"]).abs()[valid > 0]
    assert float(err.mean()) < 2.0  # the smooth scene is recovered to ~metres
    empty, empty_valid = densify_sparse_depth(torch.zeros_like(sparse), torch.zeros_like(mask))
    assert float(empty.abs().max()) == 0.0 and float(empty_valid.max()) == 0.0
    # nearest return wins: a close point inside a far region dominates its block
    d = torch.zeros(1, 1, 32, 32)
    d[0, 0, 4, 4] = 50.0
    d[0, 0, 5, 5] = 5.0
    p, _ = densify_sparse_depth(d, (d > 0).float(), levels=3)
    assert float(p[0, 0, 0, 0]) < 10.0


def test_training_losses_are_finite_and_backpropagate_to_all_parts():
    torch.manual_seed(0)
    model = DiffusionDepth(tiny_config()).train()
    batch = make_batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    # step 1: the residual blocks' last convs start at zero (identity blocks), so the condition
    # only reaches the noise prediction after one update; check gradients on the second pass
    for step in range(2):
        opt.zero_grad()
        losses = model.training_losses(batch, generator=torch.Generator().manual_seed(step))
        assert set(losses) == {"loss", "l1", "l2", "ddim", "latent_rec", "latent_align", "uncertainty"}
        assert all(torch.isfinite(v) for v in losses.values())
        losses["loss"].backward()
        if step == 0:
            opt.step()
    for part in ("backbone", "neck", "sparse_encoder", "denoiser", "depth_encoder", "depth_decoder"):
        grads = [p.grad for p in getattr(model, part).parameters() if p.grad is not None]
        assert grads and any(float(g.abs().sum()) > 0 for g in grads), part


def test_gt_weight_scales_the_pixel_terms():
    """batch["gt_weight"] weights the L1 / L2 means over the GT pixels: a uniform weight changes
    nothing, zero weight on half of the GT pixels gives their mean over the other half."""
    torch.manual_seed(0)
    model = DiffusionDepth(tiny_config()).train()
    batch = make_batch()

    def l1(**extra):
        out = model.training_losses(dict(batch, **extra), generator=torch.Generator().manual_seed(0))
        return float(out["l1"])

    base = l1()
    assert l1(gt_weight=torch.full_like(batch["gt_depth"], 0.5)) == pytest.approx(base, rel=1e-5)
    half = torch.zeros_like(batch["gt_depth"])
    half[..., : half.shape[-1] // 2] = 1.0
    assert l1(gt_weight=half) != pytest.approx(base, rel=1e-3)


def test_overfit_one_batch_loss_falls():
    # monocular: the depth must come from the denoised latent (completion starts at the prior)
    torch.manual_seed(0)
    model = DiffusionDepth(tiny_config(mode="monocular")).train()
    batch = make_batch(b=1, H=32, W=64)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for step in range(25):
        losses = model.training_losses(batch, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    start = history[0]["loss"]
    end = min(h["loss"] for h in history[-3:])
    assert end < 0.3 * start, (start, end)
    assert min(h["l1"] for h in history[-3:]) < 0.4 * history[0]["l1"]


def test_freeze_backbone_bn_keeps_running_statistics():
    torch.manual_seed(0)
    model = DiffusionDepth(tiny_config(freeze_backbone_bn=True)).train()
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns) and model.denoiser.training
    before = [m.running_mean.clone() for m in bns]
    model.training_losses(make_batch(b=1, H=32, W=64))
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns))
    free = DiffusionDepth(tiny_config()).train()
    assert all(m.training for m in free.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_two_priors_start_at_the_hand_rule_and_mask_unsupported_pixels():
    from training.demo_init import trust_prior
    from depth_diffusion_ros.models.prior import scanline_prior, select_scanline

    torch.manual_seed(0)
    cfg = tiny_config(prior_scanline_gap=8, prior_levels=3, mask_unsupported=True)
    model = trust_prior(DiffusionDepth(cfg)).eval()
    s = model.latent_stride
    assert model.cond_channels == 16 + 4 * s * s
    batch = make_batch(b=1, density=0.05)
    sparse, mask = batch["sparse_depth"].clone(), batch["valid_mask"].clone()
    sparse[..., :40, :] = 0  # no LiDAR in the top rows: beyond the 8-px reach of the prior
    mask[..., :40, :] = 0
    depth = model.sample(batch["rgb"], sparse, mask, generator=torch.Generator().manual_seed(0))
    pull_push, valid = densify_sparse_depth(sparse, mask, levels=3)
    rule = select_scanline(pull_push, scanline_prior(sparse, mask, levels=3, max_gap=8), 0.1)
    reach = valid > 0
    assert 0 < float(reach.float().mean()) < 1
    assert float(depth[~reach].abs().max()) == 0.0  # no estimate beyond the LiDAR's reach
    # the soft selection + gate 0.9975 start within a few % of the hard rule
    rel = ((depth - rule).abs() / rule.clamp(min=0.1))[reach]
    assert float(rel.median()) < 0.01 and float(rel.max()) < 0.2
    assert torch.equal(depth[mask > 0], sparse[mask > 0]) or float(
        ((depth - sparse).abs() / sparse.clamp(min=0.1))[mask > 0].max()) < 0.02
    # trainable selection parameters receive gradients
    model.train()
    model.training_losses(batch)["loss"].backward()
    dec = model.depth_decoder
    assert dec.select_weight.grad is not None and dec.select_bias.grad is not None


def v2_config(**overrides) -> DiffusionDepthConfig:
    """The shipped model's structure at test size: coarse neck, image skips for the decoder,
    strided sparse stem, 1x1 head, uncertainty head, dense output."""
    base = dict(backbone="tf_mobilenetv3_small_100", neck_stride=8, decoder_skip_channels=(8, 4),
                sparse_stem_stride=2, decoder_head_kernel=1, uncertainty_head=True, mask_unsupported=False,
                average_prior=True, timestep_spacing="trailing", prediction_type="v_prediction",
                num_inference_steps=1, num_self_diffusion_steps=1)
    base.update(overrides)
    return tiny_config(**base)


def test_v2_structure_carries_skips_in_cond_and_decodes_depth_with_sigma():
    torch.manual_seed(0)
    m = DiffusionDepth(v2_config()).eval()
    b = make_batch(1)
    cond = m.encode_condition(b["rgb"], b["sparse_depth"], b["valid_mask"])
    # features + 4 guidance channels packed 8x8 + skips at strides 4 (8 ch, 2x2) and 2 (4 ch, 4x4)
    assert cond.shape == (1, 16 + 4 * 64 + 8 * 4 + 4 * 16, H // 8, W // 8) == (1, m.cond_channels, H // 8, W // 8)
    features, guidance, skips = m.split_condition(cond)
    # the second prior is the averaging pull-push: the nearest-first one is never farther
    near, second = m.normalizer.log_depth(guidance[:, 0]), m.normalizer.log_depth(guidance[:, 2])
    has = guidance[:, 1] > 0
    assert has.any() and (second[has] >= near[has] - 1e-5).all() and (second[has] > near[has] + 1e-3).any()
    assert guidance.shape == (1, 4, H, W) and [s.shape[1:] for s in skips] == [(8, H // 4, W // 4), (4, H // 2, W // 2)]
    out = m.decode(torch.zeros((1,) + m.latent_shape(H, W)), cond)
    assert out.shape == (1, 2, H, W) and (out[:, 1] > 0).all()  # sigma in metres, positive everywhere
    # the image skips reach the decoder: other image features change the depth
    cond2 = m.encode_condition(torch.rand_like(b["rgb"]), b["sparse_depth"], b["valid_mask"])
    cond2[:, : m.feature_channels] = cond[:, : m.feature_channels]
    assert not torch.allclose(m.decode(torch.zeros_like(torch.zeros((1,) + m.latent_shape(H, W))), cond2), out)
    assert m.sample(b["rgb"], b["sparse_depth"]).shape == (1, 1, H, W)  # sample() gives depth only
    # no full-resolution conv before the refine layer, and the sparse encoder starts strided
    assert len(m.depth_decoder.ups) == 2 and m.sparse_encoder.net[0][0].stride == (2, 2)
    assert m.depth_decoder.head.kernel_size == (1, 1)


@pytest.mark.parametrize("mode", ["completion", "monocular"])
def test_condition_parts_are_the_packed_condition_unpacked(mode):
    """condition_parts (what the graphs and the torch backend pass) packs to encode_condition's
    tensor and unpacks back bit for bit; denoise and decode give the same values from either."""
    torch.manual_seed(0)
    m = DiffusionDepth(v2_config(mode=mode)).eval()
    b = make_batch(1)
    with torch.no_grad():
        parts = m.condition_parts(b["rgb"], b["sparse_depth"], b["valid_mask"])
        cond = m.encode_condition(b["rgb"], b["sparse_depth"], b["valid_mask"])
        want = ["cond", "guidance", "skip_0", "skip_1"] if mode == "completion" else ["cond", "skip_0", "skip_1"]
        assert list(parts) == want
        assert torch.equal(m.pack_condition(parts), cond)
        features, guidance, skips = m.split_condition(cond)
        assert torch.equal(features, parts["cond"]) and torch.equal(skips[1], parts["skip_1"])
        assert (guidance is None) == (mode != "completion")
        if guidance is not None:
            assert torch.equal(guidance, parts["guidance"])
        z = torch.randn((1,) + m.latent_shape(H, W))
        t = torch.tensor(999)
        assert torch.equal(m.denoise(z, t, parts), m.denoise(z, t, cond))
        assert torch.equal(m.decode(z, parts), m.decode(z, cond))


def test_v2_training_learns_the_uncertainty_and_regression_ignores_noise():
    torch.manual_seed(0)
    m = DiffusionDepth(v2_config()).train()
    losses = m.training_losses(make_batch(2), generator=torch.Generator().manual_seed(0))
    assert losses["uncertainty"] != 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert m.depth_decoder.head.weight.grad[-1].abs().sum() > 0  # the log-b output channel is trained
    torch.manual_seed(0)
    r = DiffusionDepth(v2_config(regression=True)).eval()
    b = make_batch(1)
    n1, n2 = (torch.randn((1,) + r.latent_shape(H, W)) for _ in range(2))
    assert torch.equal(r.sample(b["rgb"], b["sparse_depth"], noise=n1), r.sample(b["rgb"], b["sparse_depth"], noise=n2))
    r.train()
    parts = r.training_losses(make_batch(2))
    assert parts["ddim"] == 0 and parts["latent_rec"] == 0 and torch.isfinite(parts["loss"])


def test_trust_prior_starts_the_v2_model_at_its_prior_selection():
    from training.demo_init import trust_prior

    torch.manual_seed(0)
    m = trust_prior(DiffusionDepth(v2_config())).eval()
    b = make_batch(1, density=0.2)
    cond = m.encode_condition(b["rgb"], b["sparse_depth"], b["valid_mask"])
    out = m.decode(torch.zeros((1,) + m.latent_shape(H, W)), cond)
    _, rule_valid, _, rule = m.lidar_priors(b["sparse_depth"], b["valid_mask"])
    has = rule_valid > 0
    # gate 0.9975, residual 0, the selection a soft step: within a few percent of the hand rule
    assert ((out[:, :1] - rule).abs()[has] / rule[has]).median() < 0.02


def test_v2_options_are_validated():
    with pytest.raises(ConfigError, match="choose one second prior"):
        v2_config(prior_scanline_gap=4).validate()
    with pytest.raises(ConfigError, match="neck_stride=6"):
        v2_config(neck_stride=6).validate()
    with pytest.raises(ConfigError, match="decoder_skip_channels"):
        v2_config(decoder_skip_channels=(8, 4, 2)).validate()
    with pytest.raises(ConfigError, match="decoder_head_kernel=5"):
        v2_config(decoder_head_kernel=5).validate()


def test_external_priors_are_the_two_priors_the_decoder_selects_from():
    torch.manual_seed(0)
    m = DiffusionDepth(v2_config(average_prior=False, external_priors=("ip_basic_gaussian", "linear_hull"))).eval()
    b = make_batch(1, density=0.2)
    fills = torch.stack([b["dense"][:, 0] * 1.1, b["dense"][:, 0] * 0.9], dim=1)
    fills[:, 1, :4] = 0  # the second fill has no value in the top rows: the first stands in there
    first, valid, second, rule = m.lidar_priors(b["sparse_depth"], b["valid_mask"], fills)
    assert torch.equal(first, fills[:, :1]) and torch.equal(second[:, :, 4:], fills[:, 1:, 4:])
    assert torch.equal(second[:, :, :4], first[:, :, :4])
    # without fills the pull-push prior stands in for both (monocular fallback is unchanged)
    p, pv, s2, _ = m.lidar_priors(b["sparse_depth"], b["valid_mask"], None)
    assert torch.equal(p, s2) and torch.equal(pv, valid)
    out1 = m.decode(torch.zeros((1,) + m.latent_shape(H, W)), m.encode_condition(b["rgb"], b["sparse_depth"],
                                                                                 b["valid_mask"], fills))
    out2 = m.decode(torch.zeros((1,) + m.latent_shape(H, W)), m.encode_condition(b["rgb"], b["sparse_depth"],
                                                                                 b["valid_mask"], fills * 1.5))
    assert (out2[:, :1] > out1[:, :1] * 1.2)[valid.bool()].float().mean() > 0.9  # the fills drive the depth
    with pytest.raises(ConfigError, match="two fill names"):
        v2_config(average_prior=False, external_priors=("linear",)).validate()
    with pytest.raises(ConfigError, match="unknown classical fill 'cubic'"):
        v2_config(average_prior=False, external_priors=("linear", "cubic")).validate()


def test_regression_ablation_is_evaluated_with_its_external_priors():
    """training.evaluate's ModuleBackend (the regression ablation's path) gives the model the same
    classical fills its backends give (it was once scored with the in-graph prior instead)."""
    import numpy as np

    from depth_diffusion_ros.baselines.fills import prior_fills
    from training.evaluate import ModuleBackend

    torch.manual_seed(0)
    names = ("ip_basic_gaussian", "linear_hull")
    m = DiffusionDepth(v2_config(average_prior=False, external_priors=names, regression=True)).eval()
    b = make_batch(1, density=0.2)
    rgb = (b["rgb"][0].permute(1, 2, 0).numpy() * 127.5 + 127.5).clip(0, 255).astype(np.uint8)
    sparse = b["sparse_depth"][0, 0].numpy()
    got = ModuleBackend(m).complete(rgb, sparse)
    from depth_diffusion_ros.inference import frames

    s_t, v_t = (torch.from_numpy(a) for a in frames.sparse_to_tensor_layout(sparse))
    rgb_t = torch.from_numpy(frames.rgb_to_tensor_layout(rgb))
    with torch.no_grad():
        want = m.sample(rgb_t, s_t, v_t, priors=torch.from_numpy(prior_fills(names, sparse)[None]))[0, 0].numpy()
        without = m.sample(rgb_t, s_t, v_t)[0, 0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(got - without).max() > 1e-3
