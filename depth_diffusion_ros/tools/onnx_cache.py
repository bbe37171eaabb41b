"""The ONNX export cache: a DiffusionDepth (or DenseDepth) torch checkpoint exported once per padded frame size.

``replay`` and ``demo`` run a torch checkpoint (``model.safetensors`` + ``config.yaml``) through
the ONNX Runtime or TensorRT backend by exporting it here first (the nodes themselves stay
torch-free and refuse a torch checkpoint with the ``depth-diffusion-ros export`` command to run).

Cache layout: ``<cache_dir>/<first 16 hex digits of the checkpoint's tensor SHA-256>/<W>x<H>``
(one static step-form export per padded frame size; ``.../dynamic`` when several sizes are
needed at once). An entry is reused while its ``export.json`` records the same ``model_sha256``
and its graphs are there (encoder, step, decoder; a DenseDepth checkpoint's one ``densedepth.onnx``);
otherwise it is exported again.

Padding rule (the pipelines' :func:`~depth_diffusion_ros.inference.frames.pad_to_multiple`):
a frame is padded at the bottom and right up to the next multiple of the model config's
``size_divisor``: the image by repeating its edge pixels, the sparse depth with 0 (= no
return); the output is cropped back. A 1242x375 KITTI frame with ``size_divisor: 32`` is fed
to the graphs as 1248x384.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable, Optional

#: (height, width) in pixels.
Size = tuple[int, int]

STEP_FILES = ("encoder.onnx", "step.onnx", "decoder.onnx")


def is_torch_checkpoint(path: Path | str) -> bool:
    """True when ``path`` is a torch checkpoint folder (``model.safetensors`` + ``config.yaml``)."""
    p = Path(path)
    return p.is_dir() and (p / "model.safetensors").is_file() and (p / "config.yaml").is_file()


def default_cache_dir() -> Path:
    """``$DDR_ONNX_CACHE``, else ``$XDG_CACHE_HOME/depth_diffusion_ros/onnx`` (``~/.cache/...``)."""
    if os.environ.get("DDR_ONNX_CACHE"):
        return Path(os.environ["DDR_ONNX_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "depth_diffusion_ros" / "onnx"


def read_size_divisor(checkpoint: Path | str) -> int:
    """``size_divisor`` of a DiffusionDepth (or IID-RDepth) checkpoint's config.yaml, or of a
    DenseDepth's model class (32; imports torch) (frames are padded to it).

    Raises CheckpointError for a missing or invalid config.
    """
    from depth_diffusion_ros.inference.backends.exported import checkpoint_architecture
    from depth_diffusion_ros.models.checkpoint import read_checkpoint_config

    if checkpoint_architecture(Path(checkpoint)) == "densedepth":
        from depth_diffusion_ros.models.densedepth import DenseDepth

        return int(DenseDepth.size_divisor)
    return int(read_checkpoint_config(Path(checkpoint)).size_divisor)


def padded_size(height: int, width: int, size_divisor: int) -> Size:
    """(H, W) padded up to multiples of ``size_divisor`` (bottom/right; see the module docstring)."""
    d = int(size_divisor)
    return -(-int(height) // d) * d, -(-int(width) // d) * d


def parse_frame_size(text: str) -> tuple[int, int]:
    """``"1242x375"`` -> (width, height). Raises ValueError naming the text when malformed."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"frame size {text!r}: expected WIDTHxHEIGHT, e.g. 1242x375") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"frame size {text!r}: width and height must be positive")
    return w, h


def checkpoint_sha256(checkpoint: Path | str) -> str:
    """The tensor SHA-256 stored in ``model.safetensors`` (models.checkpoint writes and verifies it).

    Raises ValueError when the file carries none.
    """
    from safetensors import safe_open

    path = Path(checkpoint) / "model.safetensors"
    with safe_open(str(path), "numpy") as f:
        sha = (f.metadata() or {}).get("sha256")
    if not sha:
        raise ValueError(f"{path} has no sha256 metadata")
    return sha


def read_canonical_focal(checkpoint: Path | str) -> Optional[float]:
    """The ``canonical_focal`` (pixels) stored with a monocular checkpoint's weights, or None."""
    from safetensors import safe_open

    with safe_open(str(Path(checkpoint) / "model.safetensors"), "numpy") as f:
        value = (f.metadata() or {}).get("canonical_focal")
    return float(value) if value else None


def bag_padded_sizes(bag: Path | str, size_divisor: int, canonical_focal: Optional[float] = None) -> set[Size]:
    """The (H, W) of every camera image of ``bag``, padded up to ``size_divisor`` (read from its
    CameraInfo messages): the input sizes an exported graph must accept for that bag. With a
    ``canonical_focal`` (pixels), the size each image is resized to first (the estimation
    pipeline's canonical camera)."""
    from depth_diffusion_ros.inference.pipelines.estimation import canonical_size
    from depth_diffusion_ros.tools.bag_io import CAMERA_INFO, BagReader, camera_info_msg_to_intrinsics

    sizes: set[Size] = set()
    with BagReader(bag) as reader:
        topics = [t for t, (msgtype, _n) in reader.topics.items() if msgtype == CAMERA_INFO]
        for msg in reader.messages(topics):
            info = msg.decode()
            h, w = info.height, info.width
            if canonical_focal:
                w, h = canonical_size(camera_info_msg_to_intrinsics(info), canonical_focal)
            sizes.add(padded_size(h, w, size_divisor))
    return sizes


def cache_entry(checkpoint: Path | str, cache_dir: Path | str, sizes: Iterable[Size]) -> tuple[Path, Size, bool]:
    """(export folder, size exported at, dynamic) of ``checkpoint`` for ``sizes`` in ``cache_dir``."""
    sizes = sorted(set(sizes))
    if not sizes:
        raise ValueError("no frame size to export for")
    root = Path(cache_dir) / checkpoint_sha256(checkpoint)[:16]
    if len(sizes) == 1:
        h, w = sizes[0]
        return root / f"{w}x{h}", (h, w), False
    return root / "dynamic", min(sizes), True


def _reusable(target: Path, sha: str, files: Iterable[str] = STEP_FILES) -> bool:
    meta = target / "export.json"
    if not (meta.is_file() and all((target / f).is_file() for f in files)):
        return False
    try:
        return json.loads(meta.read_text()).get("model_sha256") == sha
    except (OSError, ValueError):
        return False


def onnx_export_for(checkpoint: Path | str, cache_dir: Path | str, sizes: Iterable[Size],
                    on_export: Optional[Callable[[Path], None]] = None) -> tuple[Path, bool]:
    """The step-form ONNX export (encoder / step / decoder for the host DDIM loop) of a
    DiffusionDepth checkpoint, or the ``densedepth.onnx`` of a DenseDepth one
    (:func:`depth_diffusion_ros.export.densedepth.export_densedepth`), for frames padded to
    ``sizes``, made once and cached.

    One size -> a static export for it; several -> a dynamic one (see the module docstring).
    ``on_export(target)`` is called just before a new export starts (for a progress line: it
    takes about 20 s on a 2-core CPU). The export is checked against torch on random inputs by
    :func:`depth_diffusion_ros.export.diffusion_depth.export_diffusion_depth`.

    Returns (export directory, reused). Raises ExportError, ValueError, CheckpointError.
    """
    from depth_diffusion_ros.inference.backends.exported import DENSEDEPTH_FILE, checkpoint_architecture

    checkpoint = Path(checkpoint)
    target, (h, w), dynamic = cache_entry(checkpoint, cache_dir, sizes)
    sha = checkpoint_sha256(checkpoint)
    densedepth = checkpoint_architecture(checkpoint) == "densedepth"
    if _reusable(target, sha, (DENSEDEPTH_FILE,) if densedepth else STEP_FILES):
        return target, True
    if on_export is not None:
        on_export(target)
    import torch

    from depth_diffusion_ros.export.diffusion_depth import export_diffusion_depth, load_diffusion_depth_family

    from depth_diffusion_ros.export.densedepth import export_densedepth, load_densedepth

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    model = load_densedepth(checkpoint) if densedepth else load_diffusion_depth_family(checkpoint)
    if target.exists():
        for f in target.glob("*"):
            if f.is_file():
                f.unlink()
    if densedepth:
        export_densedepth(model, target, h, w, dynamic=dynamic, check=True)
    else:
        export_diffusion_depth(model, target, h, w, forms=("step",), dynamic=dynamic, check=True)
    return target, False


def sr_padded_size(height: int, width: int, scale: int, size_divisor: int) -> Size:
    """(H, W) a DSR-Diff graph sees for an HR frame of (height, width) at ``scale``: the LR map
    padded until the HR size is a multiple of ``size_divisor`` (as
    :func:`~depth_diffusion_ros.inference.frames.prepare_sr_inputs` pads it)."""
    def pad(n_lr: int) -> int:
        p = 0
        while ((n_lr + p) * scale) % size_divisor:
            p += 1
        return (n_lr + p) * scale

    return pad(int(height) // scale), pad(int(width) // scale)


def sr_onnx_export_for(checkpoint: Path | str, cache_dir: Path | str, height: int, width: int,
                       scales: Iterable[int], on_export: Optional[Callable[[Path], None]] = None) -> tuple[Path, bool]:
    """The ONNX export of a DSR-Diff checkpoint for HR frames of (height, width): one
    ``dsr_diff_x<s>_<N>steps.onnx`` per scale (the folder the ``onnxruntime`` super-resolution
    backend takes as ``model_path``), made once and cached in
    ``<cache_dir>/<sha16>/sr_<W>x<H>``; reused while its ``export.json`` records the same
    ``model_sha256`` and the graphs of all ``scales`` are there. Each graph is checked against
    torch (:func:`depth_diffusion_ros.export.dsr_diff.export_dsr_diff`, random inputs).

    Returns (export directory, reused). Raises ValueError for a scale outside the checkpoint's
    trained range, ExportError, CheckpointError.
    """
    from depth_diffusion_ros.models.checkpoint import read_checkpoint_config

    checkpoint = Path(checkpoint)
    cfg = read_checkpoint_config(checkpoint, architecture="dsr_diff")
    scales = sorted({int(s) for s in scales})
    bad = [s for s in scales if not cfg.min_scale <= s <= cfg.max_scale]
    if bad:
        raise ValueError(f"{checkpoint}: scales {bad} are outside the trained range x{cfg.min_scale}..x{cfg.max_scale}")
    sha = checkpoint_sha256(checkpoint)
    target = Path(cache_dir) / sha[:16] / f"sr_{int(width)}x{int(height)}"
    from depth_diffusion_ros.inference.backends.exported import sr_file_name

    names = [sr_file_name(s, cfg.num_inference_steps) for s in scales]
    meta = target / "export.json"
    try:
        ok = json.loads(meta.read_text()).get("model_sha256") == sha if meta.is_file() else False
    except (OSError, ValueError):
        ok = False
    if ok and all((target / n).is_file() for n in names):
        return target, True
    if on_export is not None:
        on_export(target)
    import torch

    from depth_diffusion_ros.export.dsr_diff import export_dsr_diff
    from depth_diffusion_ros.models.checkpoint import load_checkpoint

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    model = load_checkpoint(checkpoint, architecture="dsr_diff").eval()
    target.mkdir(parents=True, exist_ok=True)
    for s in scales:
        h, w = sr_padded_size(height, width, s, model.size_divisor)
        export_dsr_diff(model, target, h, w, s, check=True)
    meta.write_text(json.dumps({"model_sha256": sha, "scales": scales, "height": int(height), "width": int(width)}))
    return target, False
