"""DiffusionDepth checkpoints: ``model.safetensors`` + ``config.yaml`` in one directory.

No pickle. The safetensors metadata holds
  * ``format``: "depth_diffusion_ros.DiffusionDepth/1",
  * ``config``: the model config as JSON (what the weights were trained with),
  * ``sha256``: SHA-256 over the tensors (sorted names, shapes, dtypes and raw bytes),
which :func:`load_checkpoint` verifies. Loading is strict: every key and shape must match. The
``config.yaml`` beside the weights may differ from the stored config only in run-time fields
(:data:`RUNTIME_FIELDS`, e.g. ``num_inference_steps``); any architectural difference is an error
naming the file and the fields.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, Optional, Union

import torch

from depth_diffusion_ros.models.config import ConfigError, DiffusionDepthConfig

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.yaml"
FORMAT = "depth_diffusion_ros.DiffusionDepth/1"

# Fields of config.yaml that may be edited after training without changing the weights.
RUNTIME_FIELDS = frozenset(
    {
        "pretrained_path",
        "num_inference_steps",
        "timestep_spacing",
        "steps_offset",
        "lidar_dropout",
        "loss_weight_l1",
        "loss_weight_l2",
        "loss_weight_ddim",
        "loss_weight_latent",
        "num_self_diffusion_steps",
        "backbone_kwargs",
        "freeze_backbone_bn",
        "clip_sample",
        "clip_sample_range",
    }
)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match; the message names the file."""


def tensors_sha256(state: Dict[str, torch.Tensor]) -> str:
    """SHA-256 hex digest over sorted (name, dtype, shape, bytes) of a state dict."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(model: torch.nn.Module, directory: Union[str, Path]) -> Path:
    """Write ``model.safetensors`` (+ metadata, see module docstring) and ``config.yaml``.

    model: a DiffusionDepth (anything with ``.config`` of type DiffusionDepthConfig).
    Returns the directory. Raises CheckpointError if the model has no DiffusionDepthConfig.
    """
    from safetensors.torch import save_file

    config = getattr(model, "config", None)
    if not isinstance(config, DiffusionDepthConfig):
        raise CheckpointError("save_checkpoint needs a model with a DiffusionDepthConfig at .config")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "sha256": tensors_sha256(state),
    }
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(out / WEIGHTS_NAME)
    config.to_yaml(out / CONFIG_NAME)
    return out


def _resolve(path: Union[str, Path]) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_file() or p.suffix == ".safetensors":
        return p, p.parent / CONFIG_NAME
    return p / WEIGHTS_NAME, p / CONFIG_NAME


def read_checkpoint_config(path: Union[str, Path]) -> DiffusionDepthConfig:
    """The config.yaml of a checkpoint directory (or of the directory of a .safetensors file).

    Raises CheckpointError naming config.yaml when it is missing or invalid."""
    _, config_path = _resolve(path)
    if not config_path.is_file():
        raise CheckpointError(f"checkpoint config not found: {config_path}")
    try:
        return DiffusionDepthConfig.from_yaml(config_path)
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid checkpoint config {config_path}: {exc}") from exc


def load_checkpoint(
    directory: Union[str, Path],
    map_location: Union[str, torch.device] = "cpu",
    config: Optional[DiffusionDepthConfig] = None,
    verify_hash: bool = True,
) -> torch.nn.Module:
    """Build a DiffusionDepth from ``config.yaml`` and load ``model.safetensors`` strictly.

    directory: checkpoint directory, or the path of its model.safetensors.
    config: use this config instead of config.yaml (still checked against the stored one).
    Returns the model in eval mode on ``map_location``. The backbone's ``pretrained_path`` is
    not read (the checkpoint already holds the backbone weights).
    Raises CheckpointError naming the file when: weights or config missing; the file is
    truncated/corrupt (not safetensors, or SHA-256 mismatch); keys or shapes differ from the
    model; config.yaml differs from the stored config in an architectural field.
    """
    from safetensors import safe_open

    from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth

    weights_path, config_path = _resolve(directory)
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint weights not found: {weights_path}")
    if config is None:
        config = read_checkpoint_config(weights_path)
    try:
        state: Dict[str, torch.Tensor] = {}
        with safe_open(str(weights_path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            for key in f.keys():
                state[key] = f.get_tensor(key)
    except Exception as exc:  # truncated, not safetensors, header corrupt
        raise CheckpointError(f"cannot read checkpoint {weights_path} (corrupt or truncated?): {exc}") from exc
    if metadata.get("format") not in (None, FORMAT):
        raise CheckpointError(f"{weights_path}: format {metadata.get('format')!r} is not {FORMAT!r}")
    if verify_hash and "sha256" in metadata and tensors_sha256(state) != metadata["sha256"]:
        raise CheckpointError(f"{weights_path}: SHA-256 of the tensors does not match its metadata (corrupt)")
    if "config" in metadata:
        try:
            stored = json.loads(metadata["config"])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{weights_path}: stored config metadata is not JSON") from exc
        given = config.to_dict()
        differs = sorted(
            k for k in set(stored) | set(given)
            if k not in RUNTIME_FIELDS and _norm(stored.get(k)) != _norm(given.get(k))
        )
        if differs:
            details = ", ".join(f"{k}: weights {stored.get(k)!r} vs config {given.get(k)!r}" for k in differs[:6])
            raise CheckpointError(
                f"{config_path} does not match the config stored in {weights_path}: {details}"
            )
    build_config = DiffusionDepthConfig.from_dict({**config.to_dict(), "pretrained_path": None})
    try:
        model = DiffusionDepth(build_config)
    except Exception as exc:
        raise CheckpointError(f"cannot build the model of {config_path}: {exc}") from exc
    model.config = config
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{weights_path} does not match the model of {config_path}: missing keys {missing[:5]} "
            f"({len(missing)}), unexpected keys {unexpected[:5]} ({len(unexpected)}), "
            f"shape mismatches {shapes[:5]} ({len(shapes)})"
        )
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()


def _norm(value):
    if isinstance(value, tuple):
        return list(value)
    return value
