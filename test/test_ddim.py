"""Our DDIM schedule/step against diffusers.DDIMScheduler (the reference implementation)."""
from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from depth_diffusion_ros.models.ddim import DDIMScheduler, ddim_step_tensor, make_betas  # noqa: E402

SETTINGS = [
    dict(beta_schedule="linear", timestep_spacing="leading", steps_offset=0, set_alpha_to_one=True),
    dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
         timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False),
    dict(beta_schedule="linear", timestep_spacing="trailing", steps_offset=0, set_alpha_to_one=True),
    dict(beta_schedule="squaredcos_cap_v2", timestep_spacing="linspace", steps_offset=0,
         set_alpha_to_one=True),
]
CLIPPED = dict(beta_schedule="linear", timestep_spacing="leading", clip_sample=True,
               clip_sample_range=0.5)


def _pair(settings, prediction_type="epsilon"):
    settings = {"clip_sample": False, **settings}
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, prediction_type=prediction_type, **settings)
    ours = DDIMScheduler(num_train_timesteps=1000, prediction_type=prediction_type, **settings)
    return ours, ref


@pytest.mark.parametrize("settings", SETTINGS)
def test_schedule_numbers_equal_diffusers(settings):
    ours, ref = _pair(settings)
    assert torch.equal(ours.betas, ref.betas)
    assert torch.equal(ours.alphas_cumprod, ref.alphas_cumprod)
    assert float(ours.final_alpha_cumprod) == float(ref.final_alpha_cumprod)
    for n in (1, 7, 20, 50, 999):
        ref.set_timesteps(n)
        ts = ours.set_timesteps(n)
        assert torch.equal(ts, ref.timesteps), (settings, n)


@pytest.mark.parametrize("settings", SETTINGS + [CLIPPED])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_step_outputs_equal_diffusers(settings, prediction_type):
    ours, ref = _pair(settings, prediction_type)
    g = torch.Generator().manual_seed(3)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    ours.set_timesteps(20)
    ref.set_timesteps(20)
    for t in ref.timesteps:
        out = torch.randn(2, 4, 8, 8, generator=g)
        a = ours.step(out, t, sample)
        b = ref.step(out, t, sample, eta=0.0)
        torch.testing.assert_close(a.prev_sample, b.prev_sample, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(a.pred_original_sample, b.pred_original_sample, rtol=1e-6, atol=1e-6)
        sample = b.prev_sample


def test_eta_step_with_given_noise_equals_diffusers():
    ours, ref = _pair(SETTINGS[0])
    ours.set_timesteps(10)
    ref.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    sample, out, z = (torch.randn(1, 2, 4, 4, generator=g) for _ in range(3))
    t = ref.timesteps[3]
    a = ours.step(out, t, sample, eta=0.5, variance_noise=z)
    b = ref.step(out, t, sample, eta=0.5, variance_noise=z)
    torch.testing.assert_close(a.prev_sample, b.prev_sample, rtol=1e-6, atol=1e-6)


def test_add_noise_equals_diffusers():
    ours, ref = _pair(SETTINGS[1])
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(3, 2, 5, 5, generator=g), torch.randn(3, 2, 5, 5, generator=g)
    t = torch.tensor([0, 500, 999])
    torch.testing.assert_close(ours.add_noise(x0, noise, t), ref.add_noise(x0, noise, t))


def test_tensor_step_batched_timesteps_match_per_sample_steps():
    ours = DDIMScheduler()
    g = torch.Generator().manual_seed(2)
    x, eps = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    t = torch.tensor([950, 0])
    prev = torch.tensor([900, -50])  # second sample: final step (abar_prev = 1)
    batched, x0 = ddim_step_tensor(ours.alphas_cumprod, ours.final_alpha_cumprod, eps, t, prev, x)
    for i in range(2):
        single = ours.step(eps[i : i + 1], int(t[i]), x[i : i + 1], prev_timestep=int(prev[i]))
        torch.testing.assert_close(batched[i : i + 1], single.prev_sample)
    # the final step returns the x0 prediction itself
    torch.testing.assert_close(batched[1], x0[1])


def test_timestep_pairs_and_bad_arguments():
    s = DDIMScheduler()
    pairs = s.timestep_pairs(20)
    assert pairs[0] == (950, 900) and pairs[-1] == (0, -50) and len(pairs) == 20
    assert s.num_inference_steps is None  # computing pairs does not change state
    with pytest.raises(ValueError, match="num_inference_steps"):
        s.set_timesteps(1001)
    with pytest.raises(ValueError, match="beta_schedule"):
        make_betas(10, "cubic")
    with pytest.raises(ValueError, match="timestep_spacing"):
        DDIMScheduler(timestep_spacing="middle")


@pytest.mark.parametrize("spacing,offset", [("leading", 0), ("leading", 1), ("trailing", 0), ("linspace", 0)])
def test_numpy_timestep_rule_equals_diffusers_and_the_scheduler(spacing, offset):
    """models/ddim_schedule.py (numpy, torch-free) is the one timestep rule; the scheduler uses it."""
    import numpy as np

    from depth_diffusion_ros.models.ddim_schedule import ddim_timestep_pairs, ddim_timesteps

    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing, steps_offset=offset)
    ours = DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
    for n in (1, 2, 3, 7, 20, 50, 999, 1000):
        ref.set_timesteps(n)
        ts = ddim_timesteps(n, 1000, spacing, offset)
        assert ts.dtype == np.int64 and ts.tolist() == ref.timesteps.tolist(), (spacing, n)
        pairs = ddim_timestep_pairs(n, 1000, spacing, offset)
        assert pairs == ours.timestep_pairs(n)
        assert [p for p, _ in pairs] == ts.tolist()
        # diffusers' DDIMScheduler.step goes from t to t - num_train_timesteps // num_inference_steps
        assert [q for _, q in pairs] == [int(t) - 1000 // n for t in ref.timesteps]


def test_numpy_timestep_rule_rejects_bad_values():
    from depth_diffusion_ros.models.ddim_schedule import ddim_timestep_pairs, ddim_timesteps

    with pytest.raises(ValueError, match="num_inference_steps=0"):
        ddim_timesteps(0)
    with pytest.raises(ValueError, match="num_inference_steps=11.*num_train_timesteps=10"):
        ddim_timestep_pairs(11, 10)
    with pytest.raises(ValueError, match="timestep_spacing='middle'"):
        ddim_timesteps(4, timestep_spacing="middle")
