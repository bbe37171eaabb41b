"""A torch checkpoint given to an ONNX Runtime or TensorRT backend: exported before replay.

The nodes are torch-free and refuse a torch checkpoint (``model.safetensors`` + ``config.yaml``)
as the ``model_path`` of ``backend: onnxruntime`` / ``tensorrt``. Replay, a tool that may use
torch, exports such a checkpoint into the ONNX cache of :mod:`depth_diffusion_ros.tools.onnx_cache`
(keyed by the checkpoint's tensor hash and the padded frame size the model will see), points
``model_path`` at the export and says so in one log line.
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Callable, Optional

from depth_diffusion_ros.tools.onnx_cache import (
    bag_padded_sizes,
    default_cache_dir,
    is_torch_checkpoint,
    onnx_export_for,
    padded_size,
    read_canonical_focal,
    read_size_divisor,
)
from depth_diffusion_ros.tools.replay.options import ReplayError
from depth_diffusion_ros.tools.replay.plan import RunPlan

#: Backends that run exported graphs (they cannot load a torch checkpoint themselves).
EXPORTED_BACKENDS = ("onnxruntime", "tensorrt")


def _model_sizes(run: RunPlan, checkpoint: Path) -> set[tuple[int, int]]:
    """Padded (H, W) the model sees: the bag's frames (for the estimation node at the model's
    canonical focal length, or the node's ``canonical_focal``), or the processing size when one is set."""
    main = run.main_params
    divisor = read_size_divisor(checkpoint)
    pw, ph = int(main.get("processing_width") or 0), int(main.get("processing_height") or 0)
    focal = None
    if run.mode == "estimation":
        given = float(main.get("canonical_focal", -1.0))
        focal = read_canonical_focal(checkpoint) if given < 0 else given
    sizes = bag_padded_sizes(run.bag.path, 1, focal)  # the sizes the frames are run at
    return {padded_size(ph or h, pw or w, divisor) for h, w in sizes}


def _say(line: str) -> None:
    print(line, flush=True)


def export_torch_checkpoint(run: RunPlan, log: Callable[[str], None] = _say) -> Optional[Path]:
    """Export ``model_path`` when it is a torch checkpoint for an exported-graph backend.

    Sets ``run.main_params["model_path"]`` to the export and ``run.model_export`` to what was
    done; returns the export folder, or None when nothing needed exporting. ``log`` gets the
    one line that says so (before a new export starts, which takes about 20 s on 2 CPU cores).

    Raises:
        ReplayError: torch is not installed, the completion node runs a cascade (its first stage's
            size is not the frame's), or the export fails (the message names the checkpoint).
    """
    main = run.main_params
    model_path = main.get("model_path")
    if run.mode == "super_resolution" or main.get("backend") not in EXPORTED_BACKENDS or not model_path \
            or not is_torch_checkpoint(model_path):
        return None
    checkpoint = Path(model_path)
    if importlib.util.find_spec("torch") is None:
        raise ReplayError(f"{checkpoint} is a torch checkpoint and torch is not installed here to export it: "
                          f"export it elsewhere with `depth-diffusion-ros export --checkpoint {checkpoint} "
                          "--output DIR` and give --model-path DIR")
    if int(main.get("cascade_scale") or 0):
        raise ReplayError(f"{checkpoint} is a torch checkpoint: with cascade_scale, export it for the first "
                          "stage's size yourself (`depth-diffusion-ros export --frame-size WxH ...`)")
    cache = Path(run.opts.onnx_cache) if run.opts.onnx_cache else default_cache_dir()
    t0 = time.perf_counter()
    try:
        sizes = _model_sizes(run, checkpoint)
        shown = ", ".join(f"{w}x{h}" for h, w in sorted(sizes))

        def announce(target: Path) -> None:
            log(f"replay: {checkpoint} is a torch checkpoint: exporting it to ONNX for {shown} into {target} "
                f"(one-off, about 20 s on a 2-core CPU; cached by checkpoint hash and padded frame size)")

        target, reused = onnx_export_for(checkpoint, cache, sizes, on_export=announce)
    except ReplayError:
        raise
    except Exception as exc:  # noqa: BLE001 - ExportError, CheckpointError, ConfigError, OSError, ...
        raise ReplayError(f"cannot export the torch checkpoint {checkpoint} to ONNX: {type(exc).__name__}: {exc}") \
            from exc
    if reused:
        log(f"replay: {checkpoint} is a torch checkpoint: using its cached ONNX export {target} "
            f"({shown}, same checkpoint hash)")
    main["model_path"] = str(target)
    run.model_export = {"checkpoint": str(checkpoint), "onnx": str(target), "sizes": shown, "reused": reused,
                        "seconds": round(time.perf_counter() - t0, 1)}
    return target
