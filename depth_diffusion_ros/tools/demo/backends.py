"""The demo's backends: which completion and super-resolution backends can run here (and why
the others cannot). The ONNX export of a checkpoint is :mod:`depth_diffusion_ros.tools.onnx_cache`'s."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

#: The shipped model folders (``depth_diffusion_ros/weights``).
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
#: the classical completion peers of every demo table: label -> (backend, options); IP-Basic in both
#: of its blur variants (Ku et al., CRV 2018), linear interpolation and nearest fill
CLASSICAL: dict[str, tuple[str, dict]] = {
    "ip_basic": ("ip_basic", {}),
    "ip_basic:gaussian": ("ip_basic", {"blur_type": "gaussian"}),
    "linear": ("linear", {}),
    "nearest": ("nearest", {}),
}
SR_BACKENDS = ("bicubic", "guided_filter", "joint_bilateral")


def select_choices(choices: list["BackendChoice"], only: Optional[list[str]]) -> list["BackendChoice"]:
    """The choices ``only`` names: by label, or by backend name where no choice has that label
    (``ip_basic`` is the bilateral row alone; ``onnxruntime`` every ONNX Runtime model)."""
    if not only:
        return choices
    labels = {c.label for c in choices}
    return [c for c in choices if c.label in only or (c.backend in only and c.backend not in labels)]


@dataclass
class BackendChoice:
    """A backend to replay (``options`` become depth_completion_node parameters) or a skip reason."""

    label: str
    backend: str
    options: dict[str, Any]
    skip: Optional[str] = None
    export_from: Optional[Path] = None  # checkpoint to export to ONNX (per frame size) before replay


SR_LEARNED = "onnxruntime:dsr_diff_demo"


def sr_backend_choices(weights_dir: Path = WEIGHTS_DIR, only: Optional[list[str]] = None) -> list[BackendChoice]:
    """Super-resolution backends of the demo: the classical ones, and the shipped DSR-Diff
    weights (``weights_dir/dsr_diff_demo``) through ONNX Runtime (``export_from``: exported once
    per frame size into the demo's ONNX cache, which needs torch) when torch and the weights are there."""
    choices = [BackendChoice(b, b, {}) for b in SR_BACKENDS]
    model = weights_dir / "dsr_diff_demo"
    if importlib.util.find_spec("torch") is None:
        choices.append(BackendChoice(SR_LEARNED, "onnxruntime", {}, skip="torch (to export the weights) is not installed here"))
    elif not (model / "model.safetensors").is_file():
        choices.append(BackendChoice(SR_LEARNED, "onnxruntime", {}, skip=f"no DSR-Diff weights in {model}"))
    else:
        choices.append(BackendChoice(SR_LEARNED, "onnxruntime", {}, export_from=model))
    return select_choices(choices, only)


def completion_checkpoint_problem(model_dir: Path) -> Optional[str]:
    """Why ``model_dir`` is not a DiffusionDepth checkpoint usable by a completion backend, or None.

    Decided from its ``config.yaml``: it must parse as a
    :class:`~depth_diffusion_ros.models.config.DiffusionDepthConfig` (the config
    :func:`~depth_diffusion_ros.models.checkpoint.load_checkpoint` builds the model from). A
    DSR-Diff super-resolution checkpoint (``architecture: dsr_diff``) or any other model fails
    that and is reported as such instead of being run through depth_completion_node. A
    monocular checkpoint (``mode: monocular``, or IID-RDepth) is not a completion model either: the demo's
    monocular table (:mod:`.estimation`) runs it through depth_estimation_node.
    """
    import yaml

    from depth_diffusion_ros.models.config import ConfigError, DiffusionDepthConfig

    config = model_dir / "config.yaml"
    if not config.is_file():
        if any(model_dir.glob("*.onnx")) or any(model_dir.glob("*/*.onnx")):
            return None  # an export folder: the onnxruntime backend checks its ddr.* metadata
        return f"no config.yaml in {model_dir}"
    try:
        data = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return f"unreadable {config}: {exc}"
    monocular = isinstance(data, dict) and (data.get("mode") == "monocular" or data.get("architecture") == "iid_rdepth")
    if isinstance(data, dict) and not monocular and data.get("architecture") not in (None, "diffusion_depth"):
        return (f"a {data['architecture']} checkpoint (config {config}), not DiffusionDepth: "
                "not a depth completion model")
    if monocular:
        return f"a monocular model ({config}): in the monocular table (depth_estimation_node)"
    try:
        DiffusionDepthConfig.from_dict(data)
    except (ConfigError, TypeError, ValueError) as exc:
        return f"not a DiffusionDepth checkpoint ({config}: {exc})"
    return None


def discover_backends(weights_dir: Path = WEIGHTS_DIR, only: Optional[list[str]] = None,
                      steps: Optional[int] = None) -> list[BackendChoice]:
    """Completion backends of the registry that can run here, and why the others cannot.

    Classical backends always run. For learned ones each folder of ``weights_dir`` that holds a
    DiffusionDepth checkpoint (:func:`completion_checkpoint_problem`; other folders, e.g. the
    DSR-Diff super-resolution weights, are listed as skipped with the reason) is a model:
    ``model.safetensors`` + ``config.yaml`` -> onnxruntime (exported by :func:`onnx_export_for`
    before the replay: ``export_from``) and torch; a folder of ``*.onnx`` files only (an export
    directory, the model folder or a subfolder) -> onnxruntime on those files;
    tensorrt needs the ``tensorrt`` module and a GPU. ``only`` keeps the labels/backends named.
    """
    from depth_diffusion_ros.inference.backends import COMPLETION_BACKENDS, LEARNED_BACKENDS

    choices = [BackendChoice(label, backend, dict(options)) for label, (backend, options) in CLASSICAL.items()]
    folders = sorted(d for d in weights_dir.glob("*") if d.is_dir()) if weights_dir.is_dir() else []
    models = []
    for folder in folders:
        problem = completion_checkpoint_problem(folder)
        if problem is None:
            models.append(folder)
        else:
            choices.append(BackendChoice(f"weights:{folder.name}", "", {}, skip=problem))
    learned = [n for n in COMPLETION_BACKENDS if n in LEARNED_BACKENDS]
    extra: dict[str, Any] = {"num_inference_steps": steps} if steps else {}
    for name in learned:
        runtime = {"torch": "torch", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}.get(name, name)
        if importlib.util.find_spec(runtime) is None:
            choices.append(BackendChoice(name, name, {}, skip=f"{runtime} is not installed here"))
            continue
        if name == "tensorrt":
            choices.append(BackendChoice(name, name, {}, skip="needs an NVIDIA GPU and a TensorRT engine (none here)"))
            continue
        found = False
        for model in models:
            if name == "torch" and (model / "model.safetensors").is_file() and (model / "config.yaml").is_file():
                choices.append(BackendChoice(f"torch:{model.name}", name, {"model_path": str(model), **extra}))
                found = True
            elif name == "onnxruntime":
                if (model / "model.safetensors").is_file() and (model / "config.yaml").is_file():
                    # exported by the demo (step form, host DDIM loop) for each frame size it needs
                    choices.append(BackendChoice(f"onnxruntime:{model.name}", name, dict(extra), export_from=model))
                    found = True
                    continue
                # else a shipped export directory (encoder/step/decoder or an unrolled sampler
                # graph): the model folder itself or a subfolder of it that holds .onnx files
                exports = sorted({f.parent for f in list(model.glob("*.onnx")) + list(model.glob("*/*.onnx"))})
                if exports:
                    choices.append(BackendChoice(f"onnxruntime:{model.name}", name,
                                                 {"model_path": str(exports[0]), **extra}))
                    found = True
        if not found:
            where = weights_dir if weights_dir.is_dir() else f"{weights_dir} (missing)"
            choices.append(BackendChoice(name, name, {}, skip=f"no shipped {name} weights in {where}"))
    return select_choices(choices, only)
