"""DiffusionDepth checkpoints: safetensors + config.yaml round trip and strict, named errors."""
from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from depth_diffusion_ros.models.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from depth_diffusion_ros.models.config import DiffusionDepthConfig
from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth

torch.set_num_threads(2)

TINY = dict(backbone="test_efficientnet", neck_channels=8, latent_channels=4, latent_stride=8,
            decoder_channels=8, denoiser_channels=8, denoiser_channel_mult=(1, 2),
            time_embed_dim=16, sparse_channels=8, num_inference_steps=3)


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = DiffusionDepth(DiffusionDepthConfig(**TINY)).eval()
    save_checkpoint(model, tmp_path / "ckpt")
    return model, tmp_path / "ckpt"


def test_round_trip_gives_identical_weights_and_samples(saved):
    model, ckpt = saved
    assert (ckpt / WEIGHTS_NAME).is_file() and (ckpt / CONFIG_NAME).is_file()
    loaded = load_checkpoint(ckpt)
    assert not loaded.training
    assert loaded.config.to_dict() == model.config.to_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    rgb = torch.rand(1, 3, 64, 64)
    sparse = torch.where(torch.rand(1, 1, 64, 64) < 0.05, torch.full((1, 1, 64, 64), 12.0), torch.zeros(1, 1, 64, 64))
    a, _ = model.sample(rgb, sparse, generator=torch.Generator().manual_seed(0))
    b, _ = loaded.sample(rgb, sparse, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    # also loadable through the weights file path
    assert isinstance(load_checkpoint(ckpt / WEIGHTS_NAME), DiffusionDepth)


def test_runtime_fields_of_config_yaml_may_change(saved):
    _, ckpt = saved
    data = yaml.safe_load((ckpt / CONFIG_NAME).read_text())
    data["num_inference_steps"] = 7
    data["pretrained_path"] = "/does/not/exist.safetensors"  # not read when loading a checkpoint
    (ckpt / CONFIG_NAME).write_text(yaml.safe_dump(data))
    assert load_checkpoint(ckpt).config.num_inference_steps == 7


def test_missing_files_are_named(saved, tmp_path):
    _, ckpt = saved
    with pytest.raises(CheckpointError, match="nowhere.*model.safetensors"):
        load_checkpoint(tmp_path / "nowhere")
    (ckpt / CONFIG_NAME).unlink()
    with pytest.raises(CheckpointError, match="config.yaml"):
        load_checkpoint(ckpt)


def test_truncated_and_corrupt_weights_are_named(saved):
    _, ckpt = saved
    path = ckpt / WEIGHTS_NAME
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors.*corrupt or truncated"):
        load_checkpoint(ckpt)
    flipped = bytearray(raw)
    flipped[-5] ^= 0xFF  # inside the last tensor's data: still parses, hash differs
    path.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="model.safetensors.*SHA-256"):
        load_checkpoint(ckpt)


def test_keys_mismatch_is_named(saved):
    _, ckpt = saved
    path = ckpt / WEIGHTS_NAME
    state = load_file(str(path))
    dropped = sorted(state)[0]
    del state[dropped]
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(path))  # no metadata: only the strict key check can catch it
    with pytest.raises(CheckpointError, match="missing keys.*" + dropped.split(".")[0]):
        load_checkpoint(ckpt)


def test_config_mismatch_is_named(saved):
    _, ckpt = saved
    data = yaml.safe_load((ckpt / CONFIG_NAME).read_text())
    data["latent_channels"] = 8
    (ckpt / CONFIG_NAME).write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match="config.yaml does not match.*latent_channels"):
        load_checkpoint(ckpt)
    data["latent_channels"] = 4
    data["mode"] = "bogus"
    (ckpt / CONFIG_NAME).write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match="config.yaml.*mode"):
        load_checkpoint(ckpt)


def test_yaml_round_trip_and_unknown_keys(tmp_path):
    cfg = DiffusionDepthConfig(**TINY)
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    assert DiffusionDepthConfig.from_yaml(path) == cfg
    assert DiffusionDepthConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown DiffusionDepthConfig keys.*colour"):
        DiffusionDepthConfig.from_dict({**cfg.to_dict(), "colour": 1})
    with pytest.raises(ValueError, match="missing.yaml: config file not found"):
        DiffusionDepthConfig.from_yaml(tmp_path / "missing.yaml")
    assert DiffusionDepthConfig.from_yaml(cfg.to_yaml()) == cfg  # YAML text works too
