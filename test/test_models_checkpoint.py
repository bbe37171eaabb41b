"""Checkpoints of every architecture (DiffusionDepth, DSR-Diff, DenseDepth): safetensors +
config.yaml round trip, the one tensor hash, strict loading and named errors; a checkpoint
written before ``architecture:`` and ``prediction_type`` existed still loads; the shipped default
completion model loads with its hash verified."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from depth_diffusion_ros.inference.backends.exported import DEFAULT_COMPLETION_CHECKPOINT
from depth_diffusion_ros.models.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
    tensors_sha256,
)
from depth_diffusion_ros.models.config import DiffusionDepthConfig
from depth_diffusion_ros.models.densedepth import DenseDepth, DenseDepthConfig
from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth
from depth_diffusion_ros.models.dsr_diff import DSRDiff
from depth_diffusion_ros.models.dsr_diff_config import DSRDiffConfig

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
    a = model.sample(rgb, sparse, generator=torch.Generator().manual_seed(0))
    b = loaded.sample(rgb, sparse, generator=torch.Generator().manual_seed(0))
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
    with pytest.raises(CheckpointError, match="nowhere.*model.safetensors.*config.yaml"):
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


SHIPPED = DEFAULT_COMPLETION_CHECKPOINT  # the shipped default completion model
DSR_TINY = dict(channels=8, num_heads=2, dfe_blocks=1, cfe_blocks=1, fusion_blocks=1, guidance_dim=16,
                ggn_channels=8, ggn_downsamples=1, grn_hidden=32, grn_layers=2, feature_stride=4,
                scales=[2, 4], num_inference_steps=2)


def _other_models():
    torch.manual_seed(0)
    return [DSRDiff(DSRDiffConfig(**DSR_TINY)).eval(),
            DenseDepth(DenseDepthConfig(encoder="test_efficientnet", decoder_width=0.5)).eval()]


@pytest.mark.parametrize("index", [0, 1], ids=["dsr_diff", "densedepth"])
def test_every_architecture_round_trips_with_the_one_hash(tmp_path, index):
    model = _other_models()[index]
    save_checkpoint(model, tmp_path / "ck", metadata={"note": "x"})
    assert yaml.safe_load((tmp_path / "ck" / CONFIG_NAME).read_text())["architecture"] == model.config.architecture
    assert type(read_checkpoint_config(tmp_path / "ck")) is type(model.config)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ck" / WEIGHTS_NAME), "pt") as f:
        meta = f.metadata()
    assert meta["sha256"] == tensors_sha256(model.state_dict()) and meta["note"] == "x"
    assert meta["architecture"] == model.config.architecture and meta["format"].endswith(type(model).__name__ + "/1")
    loaded = load_checkpoint(tmp_path / "ck", architecture=model.config.architecture)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.config.to_dict() == model.config.to_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    # the hash is verified for every architecture
    path = tmp_path / "ck" / WEIGHTS_NAME
    flipped = bytearray(path.read_bytes())
    flipped[-5] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="model.safetensors.*SHA-256"):
        load_checkpoint(tmp_path / "ck")


def test_weights_and_config_of_different_architectures_are_refused(tmp_path, saved):
    _, ckpt = saved
    DSRDiffConfig(**DSR_TINY).to_yaml(ckpt / CONFIG_NAME)  # DiffusionDepth weights, DSR-Diff config
    with pytest.raises(CheckpointError, match="model.safetensors: format .*DiffusionDepth/1.*config.yaml"):
        load_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="config.yaml: a dsr_diff checkpoint, not diffusion_depth"):
        load_checkpoint(ckpt, architecture="diffusion_depth")
    (ckpt / CONFIG_NAME).write_text("architecture: transformer\n")
    with pytest.raises(CheckpointError, match="config.yaml: unknown architecture 'transformer'"):
        load_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="save_checkpoint needs a model"):
        save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "linear")
    with pytest.raises(CheckpointError, match="reserved"):
        save_checkpoint(_other_models()[0], tmp_path / "x", metadata={"sha256": "0"})


def test_stored_config_tolerates_fields_added_since(saved):
    """A checkpoint whose stored config lacks a field added later compares with its default."""
    from safetensors.torch import load_file as load_tensors

    model, ckpt = saved
    path = ckpt / WEIGHTS_NAME
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    stored = json.loads(meta["config"])
    del stored["prediction_type"]  # not in configs written before the DDIM fields were shared
    save_file(load_tensors(str(path)), str(path), metadata={**meta, "config": json.dumps(stored)})
    data = yaml.safe_load((ckpt / CONFIG_NAME).read_text())
    del data["prediction_type"], data["architecture"]
    (ckpt / CONFIG_NAME).write_text(yaml.safe_dump(data))
    assert load_checkpoint(ckpt).config == model.config


def test_shipped_default_completion_model_loads_unchanged():
    """The shipped default completion model loads as DiffusionDepth in completion mode, with its
    stored hash verified and its config.yaml the config stored in the weights file."""
    data = yaml.safe_load((SHIPPED / CONFIG_NAME).read_text())
    assert data["architecture"] == "diffusion_depth"
    from safetensors import safe_open

    with safe_open(str(SHIPPED / WEIGHTS_NAME), "pt") as f:
        meta = f.metadata()
    model = load_checkpoint(SHIPPED)
    assert isinstance(model, DiffusionDepth) and model.config.mode == "completion"
    assert model.config.external_priors  # the pipeline computes its priors input
    assert tensors_sha256(model.state_dict()) == meta["sha256"]
    stored = json.loads(meta["config"])
    assert {k: stored[k] for k in stored if k in data} == {k: data[k] for k in stored if k in data}
