"""Checkpoints of every model here (DiffusionDepth, DSR-Diff, DenseDepth): one format, one hash.

A checkpoint is a directory with ``model.safetensors`` and ``config.yaml``; no pickle.

* ``config.yaml``: the model config (:meth:`~depth_diffusion_ros.models.config_base.ModelConfig.to_yaml`)
  with ``architecture:`` first (:data:`ARCHITECTURES`). A config.yaml without it is a
  DiffusionDepth config (checkpoints written before the key existed).
* ``model.safetensors`` metadata: ``format`` ("depth_diffusion_ros.<Model>/1"), ``architecture``,
  ``config`` (the config the weights were trained with, as JSON), ``sha256``
  (:func:`tensors_sha256`: SHA-256 over the sorted tensor names, dtypes, shapes and raw bytes),
  plus any extra string entries given to :func:`save_checkpoint` (e.g. a training summary), and
  ``canonical_focal`` for a monocular model trained on frames brought to one focal length (the
  model's ``canonical_focal`` attribute, pixels; Metric3D's canonical camera): the estimation
  pipeline resizes every input to it; ``depth_prior`` (JSON of a
  :class:`~depth_diffusion_ros.baselines.row_median.RowMedianDepth`) for a monocular model that
  predicts depth as a ratio to that ground-plane prior (the ``depth_prior`` attribute).

:func:`load_checkpoint` loads strictly: the hash is verified, every key and shape must match the
model built from config.yaml, and config.yaml may differ from the stored config only in the
config class's ``RUNTIME_FIELDS`` (e.g. ``num_inference_steps``); fields added to a config class
since the checkpoint was written count with their defaults. Every error is a
:class:`CheckpointError` naming the file.

torch is imported only by the functions that need it, so :func:`read_checkpoint_config` of a
DiffusionDepth or DSR-Diff checkpoint runs without torch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple, Union

from depth_diffusion_ros.models.config_base import ModelConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.yaml"
DEFAULT_ARCHITECTURE = "diffusion_depth"  # a config.yaml without ``architecture:``

# architecture -> (config class, model class) as "module:name", imported on use.
ARCHITECTURES: Dict[str, Tuple[str, str]] = {
    "diffusion_depth": ("depth_diffusion_ros.models.config:DiffusionDepthConfig",
                        "depth_diffusion_ros.models.diffusion_depth:DiffusionDepth"),
    "dsr_diff": ("depth_diffusion_ros.models.dsr_diff_config:DSRDiffConfig",
                 "depth_diffusion_ros.models.dsr_diff:DSRDiff"),
    "densedepth": ("depth_diffusion_ros.models.densedepth:DenseDepthConfig",
                   "depth_diffusion_ros.models.densedepth:DenseDepth"),
    "iid_rdepth": ("depth_diffusion_ros.models.iid_rdepth_config:IIDRDepthConfig",
                   "depth_diffusion_ros.models.iid_rdepth:IIDRDepth"),
}
#: Architectures with the DiffusionDepth graph parts (encode_condition, ddim_step, decode): the
#: DiffusionDepth backends, the step-form export and the ONNX cache run them.
DIFFUSION_DEPTH_ARCHITECTURES = ("diffusion_depth", "iid_rdepth")
_RESERVED_METADATA = ("format", "architecture", "config", "sha256", "canonical_focal", "depth_prior")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match; the message names the file."""


def _import(spec: str) -> Any:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def _architecture(name: str, where: Union[str, Path]) -> Tuple[type, str]:
    """(config class, "module:ModelClass") of a registered architecture, else CheckpointError."""
    if name not in ARCHITECTURES:
        raise CheckpointError(f"{where}: unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    config_spec, model_spec = ARCHITECTURES[name]
    return _import(config_spec), model_spec


def checkpoint_format(architecture: str) -> str:
    """The ``format`` metadata of an architecture's weights ("depth_diffusion_ros.<Model>/1")."""
    return f"depth_diffusion_ros.{ARCHITECTURES[architecture][1].split(':')[1]}/1"


def architecture_of(model: Any) -> Optional[str]:
    """The architecture name of a model (or config) whose config can be checkpointed, else None."""
    config = model if isinstance(model, ModelConfig) else getattr(model, "config", None)
    name = getattr(type(config), "architecture", None)
    return name if isinstance(config, ModelConfig) and name in ARCHITECTURES else None


def tensors_sha256(state: Mapping[str, "torch.Tensor"]) -> str:
    """SHA-256 hex digest over sorted (name, dtype, shape, raw bytes) of a state dict: the one
    weight hash (checkpoint metadata, ONNX ``model_sha256``, TensorRT engine cache keys)."""
    import torch

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(model: "torch.nn.Module", directory: Union[str, Path],
                    metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model.safetensors`` (+ metadata, see module docstring) and ``config.yaml``.

    model: a DiffusionDepth, DSRDiff or DenseDepth (anything whose ``.config`` is a config of
    :data:`ARCHITECTURES`). metadata: extra entries for the safetensors header (values are
    stored as strings). Returns the directory.
    Raises CheckpointError if the model's config is not checkpointable or ``metadata`` uses a
    reserved key (format, architecture, config, sha256).
    """
    from safetensors.torch import save_file

    name = architecture_of(model)
    if name is None:
        raise CheckpointError(
            f"save_checkpoint needs a model whose .config is one of {sorted(ARCHITECTURES)}'s configs, "
            f"got {type(getattr(model, 'config', None)).__name__}"
        )
    reserved = sorted(set(metadata or {}) & set(_RESERVED_METADATA))
    if reserved:
        raise CheckpointError(f"save_checkpoint: metadata keys {reserved} are reserved")
    config = model.config
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {k: str(v) for k, v in (metadata or {}).items()}
    header.update({
        "format": checkpoint_format(name),
        "architecture": name,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "sha256": tensors_sha256(state),
    })
    focal = getattr(model, "canonical_focal", None)
    if focal:
        header["canonical_focal"] = repr(float(focal))
    if getattr(model, "depth_prior", None):
        header["depth_prior"] = str(model.depth_prior)
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata=header)
    tmp.replace(out / WEIGHTS_NAME)
    config.to_yaml(out / CONFIG_NAME)
    return out


def _resolve(path: Union[str, Path]) -> Tuple[Path, Path]:
    p = Path(path)
    if p.is_file() or p.suffix == ".safetensors":
        return p, p.parent / CONFIG_NAME
    return p / WEIGHTS_NAME, p / CONFIG_NAME


def read_checkpoint_config(path: Union[str, Path], architecture: Optional[str] = None) -> ModelConfig:
    """The config in a checkpoint directory's config.yaml (or beside a .safetensors file), of the
    class its ``architecture:`` names (DiffusionDepthConfig when absent).

    architecture: if given, the checkpoint must be of this architecture (e.g. "dsr_diff").
    Raises CheckpointError naming config.yaml when it is missing, invalid, names an unknown
    architecture or not the one asked for.
    """
    import yaml

    _, config_path = _resolve(path)
    if not config_path.is_file():
        raise CheckpointError(f"checkpoint config not found: {config_path}")
    try:
        data = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CheckpointError(f"invalid checkpoint config {config_path}: {exc}") from exc
    name = data.get("architecture", DEFAULT_ARCHITECTURE) if isinstance(data, dict) else DEFAULT_ARCHITECTURE
    config_class, _ = _architecture(name, config_path)
    _expect(name, architecture, config_path)
    try:
        return config_class.from_yaml(config_path)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid checkpoint config {config_path}: {exc}") from exc


def _expect(name: str, architecture: Optional[str], config_path: Path) -> None:
    if architecture is not None and name != architecture:
        raise CheckpointError(f"{config_path}: a {name} checkpoint, not {architecture}")


def _read_weights(weights_path: Path) -> Tuple[Dict[str, "torch.Tensor"], Dict[str, str]]:
    from safetensors import safe_open

    try:
        state = {}
        with safe_open(str(weights_path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            for key in f.keys():
                state[key] = f.get_tensor(key)
    except Exception as exc:  # truncated, not safetensors, header corrupt
        raise CheckpointError(f"cannot read checkpoint {weights_path} (corrupt or truncated?): {exc}") from exc
    return state, metadata


def _check_metadata(metadata: Mapping[str, str], state: Mapping[str, "torch.Tensor"], config: ModelConfig,
                    name: str, weights_path: Path, config_path: Path, verify_hash: bool) -> None:
    """Format, architecture, tensor hash and stored config of the weights against ``config``."""
    fmt = checkpoint_format(name)
    if metadata.get("format") not in (None, fmt):
        raise CheckpointError(f"{weights_path}: format {metadata.get('format')!r} is not {fmt!r} ({config_path})")
    if metadata.get("architecture") not in (None, name):
        raise CheckpointError(
            f"{weights_path}: weights of architecture {metadata['architecture']!r}, {config_path} is {name!r}"
        )
    if verify_hash and "sha256" in metadata and tensors_sha256(state) != metadata["sha256"]:
        hint = "" if "format" in metadata else " (or written before this format: save it again with save_checkpoint)"
        raise CheckpointError(f"{weights_path}: SHA-256 of the tensors does not match its metadata (corrupt){hint}")
    if "config" not in metadata:
        return
    try:
        stored = {**type(config).default_dict(), **json.loads(metadata["config"])}
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{weights_path}: stored config metadata is not JSON") from exc
    given = config.to_dict()
    differs = sorted(
        k for k in set(stored) | set(given)
        if k not in type(config).RUNTIME_FIELDS and _norm(stored.get(k)) != _norm(given.get(k))
    )
    if differs:
        details = ", ".join(f"{k}: weights {stored.get(k)!r} vs config {given.get(k)!r}" for k in differs[:6])
        raise CheckpointError(f"{config_path} does not match the config stored in {weights_path}: {details}")


def _check_keys(model: "torch.nn.Module", state: Mapping[str, "torch.Tensor"], weights_path: Path,
                config_path: Path) -> None:
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


def load_checkpoint(
    directory: Union[str, Path],
    map_location: Union[str, "torch.device"] = "cpu",
    config: Optional[ModelConfig] = None,
    verify_hash: bool = True,
    architecture: Optional[str] = None,
) -> "torch.nn.Module":
    """Build the model of ``config.yaml``'s architecture and load ``model.safetensors`` strictly.

    directory: checkpoint directory, or the path of its model.safetensors.
    config: use this config instead of config.yaml (still checked against the stored one).
    architecture: if given, refuse a checkpoint of another architecture (a caller that runs
    only DSR-Diff passes "dsr_diff"); None loads any of :data:`ARCHITECTURES`.
    Returns the model (DiffusionDepth, DSRDiff or DenseDepth) in eval mode on ``map_location``,
    with ``.config`` the loaded config. A ``pretrained_path`` is not read (the checkpoint
    already holds the backbone weights).
    Raises CheckpointError naming the file when: weights or config missing; not the
    ``architecture`` asked for; the file is
    truncated/corrupt (not safetensors, or SHA-256 mismatch); format or architecture of the
    weights differ from the config's; keys or shapes differ from the model; config.yaml differs
    from the stored config in a field outside the config's ``RUNTIME_FIELDS``.
    """
    weights_path, config_path = _resolve(directory)
    missing = [str(p) for p, needed in ((weights_path, True), (config_path, config is None))
               if needed and not p.is_file()]
    if missing:
        raise CheckpointError(f"checkpoint file(s) not found: {', '.join(missing)}")
    if config is None:
        config = read_checkpoint_config(weights_path, architecture)
    name = architecture_of(config)
    if name is None:
        raise CheckpointError(f"load_checkpoint: config of type {type(config).__name__} has no checkpoint architecture")
    _expect(name, architecture, config_path)
    _, model_spec = _architecture(name, config_path)
    state, metadata = _read_weights(weights_path)
    _check_metadata(metadata, state, config, name, weights_path, config_path, verify_hash)
    build_config = config
    if getattr(config, "pretrained_path", None) is not None:
        build_config = dataclasses.replace(config, pretrained_path=None)
    try:
        model = _import(model_spec)(build_config)
    except Exception as exc:
        raise CheckpointError(f"cannot build the model of {config_path}: {exc}") from exc
    model.config = config
    _check_keys(model, state, weights_path, config_path)
    model.load_state_dict(state, strict=True)
    model.canonical_focal = _canonical_focal(metadata, weights_path)
    model.depth_prior = _depth_prior(metadata, weights_path)
    return model.to(map_location).eval()


def _depth_prior(metadata: Mapping[str, str], weights_path: Path) -> Optional[str]:
    """The ``depth_prior`` metadata (checked JSON text) or None; CheckpointError when it is not a row-median prior."""
    if "depth_prior" not in metadata:
        return None
    from depth_diffusion_ros.baselines.row_median import RowMedianDepth

    try:
        RowMedianDepth.from_json(metadata["depth_prior"], f"{weights_path}: depth_prior metadata")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    return metadata["depth_prior"]


def _canonical_focal(metadata: Mapping[str, str], weights_path: Path) -> Optional[float]:
    """The ``canonical_focal`` metadata (pixels) or None; CheckpointError when it is not a positive number."""
    if "canonical_focal" not in metadata:
        return None
    try:
        focal = float(metadata["canonical_focal"])
    except ValueError:
        focal = float("nan")
    if not focal > 0:
        raise CheckpointError(f"{weights_path}: canonical_focal metadata {metadata['canonical_focal']!r} is not > 0 pixels")
    return focal


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
