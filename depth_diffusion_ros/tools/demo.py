"""``depth-diffusion-ros demo`` (``make demo``): the main job on embedded data, end to end.

1. **Middlebury 2014 "Motorcycle"** (ships inside scikit-image as
   ``skimage.data.stereo_motorcycle()``; Scharstein et al., GCPR 2014): metric ground-truth depth
   from the disparity and its calibration, ``Z_mm = baseline * f / (d + doffs)`` with f = 994.978
   px, cx = 311.193, cy = 254.877, doffs = 31.086 px, baseline = 193.001 mm (inf disparity = no
   ground truth). A LiDAR-like sparse input is sampled from it (``--scan-rows`` scan lines, every
   ``--scan-col-step``-th column, 10 % dropout, seeded; the scan phase moves from frame to frame),
   written to a bag (image, camera_info, sparse_depth 32FC1, depth_gt 32FC1) and replayed.
2. **KITTI** when the shared data folder (``$DDR_SHARED_DATA``, else ``../shared/data`` beside the
   repository) or ``$KITTI_DIR`` / ``--kitti-dir`` is there: the raw depth-completion frame
   (scored against KITTI's semi-dense ground truth) and the object frames (scored against 10 %
   of each LiDAR scan held out from the input) are converted with kitti-to-bag and replayed.
3. **Super-resolution x8** (``--no-sr`` skips it): bags from the Middlebury pair (cropped to a
   multiple of 8) and, with the shared data, the NYU Depth V2 frames of
   ``nyu_depth_v2_metric3d``, with ``depth_lr`` = the GT block-averaged over 8x8 valid pixels
   (:func:`block_average_depth`), replayed through depth_super_resolution_node
   (``replay --pipeline super_resolution``) for bicubic, guided_filter, joint_bilateral and torch
   (the shipped DSR-Diff demo weights; skipped with the reason when they do not load), scored
   against the full-resolution GT and printed as a second table.

Every completion backend that can run here is replayed on the same bags through the real nodes
(``depth-diffusion-ros replay``): the classical ones always, learned ones when shipped
DiffusionDepth checkpoints are found in ``depth_diffusion_ros/weights/*/`` (decided from their
config.yaml; the DSR-Diff super-resolution weights are not completion models) and their runtime
is installed; the others are listed with the reason they were skipped. The learned models run
in ONNX Runtime: each checkpoint is exported once per padded frame size (step form, host DDIM
loop; :mod:`depth_diffusion_ros.export.diffusion_depth`) into ``OUTPUT/onnx_cache`` and reused
while the checkpoint's tensor hash matches; the torch backend runs as a reference row beside it
(same weights, same noise: the two rows must agree). Prints the completion table, the
super-resolution table and where the outputs went
(``OUTPUT/<dataset>/<backend>/report.json``, figures, output bags; ``OUTPUT/summary.json``), and
an RMSE table per frame for the multi-frame KITTI bags (which frames the demo weights held out).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from depth_diffusion_ros.evaluation.report import format_table, write_json_atomic
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.tools.bag_io import (
    CAMERA_INFO,
    IMAGE,
    BagError,
    BagWriter,
    make_camera_info,
    make_depth_image,
    make_image,
)

#: Calibration of the 741x500 scikit-image copy (skimage.data.stereo_motorcycle docstring).
MOTORCYCLE = {"f": 994.978, "cx": 311.193, "cy": 254.877, "doffs": 31.086, "baseline_mm": 193.001}
REPO = Path(__file__).resolve().parents[2]
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
CLASSICAL = ("ip_basic", "nearest")


def motorcycle_depth() -> tuple[np.ndarray, np.ndarray, Intrinsics]:
    """The Middlebury Motorcycle left image, metric depth and intrinsics.

    Returns:
        rgb (500, 741, 3) uint8; depth (500, 741) float32 metres, 0 where the disparity is inf
        (no ground truth); Intrinsics (fx = fy = 994.978, cx = 311.193, cy = 254.877).
    Depth: ``Z = baseline * f / (d + doffs)`` (Middlebury 2014 calibration convention).
    """
    from skimage.data import stereo_motorcycle

    left, _right, disparity = stereo_motorcycle()
    disparity = np.asarray(disparity, dtype=np.float64)
    valid = np.isfinite(disparity)
    depth = np.zeros(disparity.shape, dtype=np.float32)
    m = MOTORCYCLE
    depth[valid] = (m["baseline_mm"] * m["f"] / (disparity[valid] + m["doffs"]) / 1000.0).astype(np.float32)
    h, w = depth.shape
    return np.ascontiguousarray(left), depth, Intrinsics(m["f"], m["f"], m["cx"], m["cy"], w, h)


def lidar_like_sparse(depth: np.ndarray, n_rows: int = 64, col_step: int = 4, dropout: float = 0.1,
                      seed: int = 0, phase: int = 0) -> np.ndarray:
    """Sample a sparse depth map from ``depth`` in a LiDAR-like pattern.

    ``n_rows`` scan lines evenly spaced over the image height (each moved by a seeded jitter of
    up to one pixel and shifted by ``phase`` rows, as a spinning LiDAR's lines move between
    frames), every ``col_step``-th column on each line (offset by the line index), and a random
    ``dropout`` fraction of returns removed. Pixels without ground truth stay empty.

    Returns (H, W) float32 metres, 0 = no return. Raises ValueError for bad arguments.
    """
    if n_rows < 1 or col_step < 1 or not 0 <= dropout < 1:
        raise ValueError(f"need n_rows >= 1, col_step >= 1, 0 <= dropout < 1; got {n_rows}, {col_step}, {dropout}")
    h, w = depth.shape
    rng = np.random.default_rng([seed, phase])
    rows = np.linspace(0, h - 1, n_rows) + (phase % max(1, h // n_rows)) + rng.integers(-1, 2, n_rows)
    rows = np.clip(np.round(rows).astype(int), 0, h - 1)
    sparse = np.zeros_like(depth, dtype=np.float32)
    for i, r in enumerate(rows):
        cols = np.arange((i + phase) % col_step, w, col_step)
        cols = cols[rng.random(cols.size) >= dropout]
        sparse[r, cols] = depth[r, cols]
    return sparse


def write_motorcycle_bag(path: Path, n_frames: int = 3, n_rows: int = 64, col_step: int = 4, seed: int = 0) -> Path:
    """Write the Middlebury demo bag (MCAP): ``/middlebury/camera/{image_raw, camera_info,
    sparse_depth, depth_gt}`` at 10 Hz, frame id ``middlebury_left``; ``n_frames`` sparse patterns."""
    rgb, depth, intrinsics = motorcycle_depth()
    base = "/middlebury/camera"
    frame_id = "middlebury_left"
    with BagWriter(path, overwrite=True) as bag:
        for name, msgtype in (("camera_info", CAMERA_INFO), ("image_raw", IMAGE), ("sparse_depth", IMAGE),
                              ("depth_gt", IMAGE)):
            bag.add_topic(f"{base}/{name}", msgtype)
        for k in range(n_frames):
            t = 1_000_000_000 + k * 100_000_000
            sparse = lidar_like_sparse(depth, n_rows, col_step, 0.1, seed, phase=k)
            bag.write(f"{base}/camera_info", t, make_camera_info(intrinsics, t, frame_id))
            bag.write(f"{base}/depth_gt", t, make_depth_image(depth, t, frame_id))
            bag.write(f"{base}/sparse_depth", t, make_depth_image(sparse, t, frame_id))
            bag.write(f"{base}/image_raw", t, make_image(rgb, "rgb8", t, frame_id))
    return path


SR_SCALE = 8
SR_BACKENDS = ("bicubic", "guided_filter", "joint_bilateral", "torch")


def block_average_depth(depth: np.ndarray, scale: int) -> np.ndarray:
    """Low-resolution depth: the mean of the valid (> 0, finite) pixels of each ``scale`` x ``scale``
    block; 0 where a block has none.

    depth: (H, W) metres with H, W multiples of ``scale``. Returns (H/scale, W/scale) float32.
    The LR pixel (i, j) covers HR pixels [i*s, (i+1)*s), so its intrinsics are
    ``Intrinsics.scaled(W/s, H/s)`` (pixel-centre convention). Raises ValueError otherwise.
    """
    h, w = depth.shape
    if scale < 1 or h % scale or w % scale:
        raise ValueError(f"depth {w}x{h} is not a multiple of the scale {scale}")
    valid = np.isfinite(depth) & (depth > 0)
    blocks = np.where(valid, depth, 0.0).astype(np.float64).reshape(h // scale, scale, w // scale, scale)
    count = valid.reshape(h // scale, scale, w // scale, scale).sum(axis=(1, 3))
    total = blocks.sum(axis=(1, 3))
    return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)


def nyu_frames(folder: Path) -> list[tuple[np.ndarray, np.ndarray, Intrinsics]]:
    """The NYU Depth V2 frames of ``nyu_depth_v2_metric3d`` (Silberman et al., ECCV 2012): rgb
    (480, 640, 3) uint8, depth (480, 640) float32 metres (uint16 mm / depth_scale; 0 = invalid)
    and the intrinsics of ``test_annotations.json`` (cam_in = fx, fy, cx, cy)."""
    import json

    import cv2

    ann = json.loads((folder / "test_annotations.json").read_text())
    out = []
    for entry in ann["files"]:
        bgr = cv2.imread(str(folder / "rgb" / Path(entry["rgb"]).name), cv2.IMREAD_COLOR)
        raw = cv2.imread(str(folder / "depth" / Path(entry["depth"]).name), cv2.IMREAD_UNCHANGED)
        if bgr is None or raw is None:
            raise OSError(f"cannot read NYU frame {entry['rgb']} / {entry['depth']} in {folder}")
        depth = (raw.astype(np.float32) / float(entry.get("depth_scale", 1000.0))).astype(np.float32)
        fx, fy, cx, cy = (float(v) for v in entry["cam_in"])
        h, w = depth.shape
        out.append((np.ascontiguousarray(bgr[..., ::-1]), depth, Intrinsics(fx, fy, cx, cy, w, h)))
    return out


def write_sr_bag(path: Path, frames: list[tuple[np.ndarray, np.ndarray, Intrinsics]], scale: int = SR_SCALE,
                 name: str = "sr") -> Path:
    """A super-resolution bag (MCAP) at 10 Hz, frame id ``<name>_camera``:
    ``/<name>/camera/{image_raw, camera_info, depth_gt, depth_lr, depth_lr/camera_info}``.

    Each frame is cropped at the bottom/right to a multiple of ``scale`` (intrinsics unchanged);
    ``depth_lr`` = :func:`block_average_depth` of the GT (32FC1, 0 -> NaN), its camera_info the
    colour intrinsics scaled to the LR size.
    """
    base = f"/{name}/camera"
    frame_id = f"{name}_camera"
    with BagWriter(path, overwrite=True) as bag:
        for topic, msgtype in (("camera_info", CAMERA_INFO), ("depth_lr/camera_info", CAMERA_INFO),
                               ("image_raw", IMAGE), ("depth_lr", IMAGE), ("depth_gt", IMAGE)):
            bag.add_topic(f"{base}/{topic}", msgtype)
        for k, (rgb, depth, intr) in enumerate(frames):
            h, w = (depth.shape[0] // scale) * scale, (depth.shape[1] // scale) * scale
            rgb, depth = np.ascontiguousarray(rgb[:h, :w]), np.ascontiguousarray(depth[:h, :w])
            intr = Intrinsics(intr.fx, intr.fy, intr.cx, intr.cy, w, h)
            lr = block_average_depth(depth, scale)
            t = 1_000_000_000 + k * 100_000_000
            bag.write(f"{base}/camera_info", t, make_camera_info(intr, t, frame_id))
            bag.write(f"{base}/depth_lr/camera_info", t, make_camera_info(intr.scaled(w // scale, h // scale), t, frame_id))
            bag.write(f"{base}/depth_gt", t, make_depth_image(depth, t, frame_id))
            bag.write(f"{base}/depth_lr", t, make_depth_image(lr, t, frame_id))
            bag.write(f"{base}/image_raw", t, make_image(rgb, "rgb8", t, frame_id))
    return path


def sr_backend_choices(weights_dir: Path = WEIGHTS_DIR, only: Optional[list[str]] = None) -> list[BackendChoice]:
    """Super-resolution backends of the demo: the classical ones, and ``torch`` with the shipped
    DSR-Diff weights (``weights_dir/dsr_diff_demo``) when torch and the weights are there."""
    choices = [BackendChoice(b, b, {}) for b in SR_BACKENDS if b != "torch"]
    model = weights_dir / "dsr_diff_demo"
    if importlib.util.find_spec("torch") is None:
        choices.append(BackendChoice("torch:dsr_diff_demo", "torch", {}, skip="torch is not installed here"))
    elif not (model / "model.safetensors").is_file():
        choices.append(BackendChoice("torch:dsr_diff_demo", "torch", {}, skip=f"no DSR-Diff weights in {model}"))
    else:
        choices.append(BackendChoice("torch:dsr_diff_demo", "torch", {"model_path": str(model)}))
    if only:
        choices = [c for c in choices if c.label in only or c.backend in only]
    return choices


@dataclass
class BackendChoice:
    """A backend to replay (``options`` become depth_completion_node parameters) or a skip reason."""

    label: str
    backend: str
    options: dict[str, Any]
    skip: Optional[str] = None
    export_from: Optional[Path] = None  # checkpoint to export to ONNX (per frame size) before replay


def completion_checkpoint_problem(model_dir: Path) -> Optional[str]:
    """Why ``model_dir`` is not a DiffusionDepth checkpoint usable by a completion backend, or None.

    Decided from its ``config.yaml``: it must parse as a
    :class:`~depth_diffusion_ros.models.config.DiffusionDepthConfig` (the config
    :func:`~depth_diffusion_ros.models.checkpoint.load_checkpoint` builds the model from). A
    DSR-Diff super-resolution checkpoint (``architecture: dsr_diff``) or any other model fails
    that and is reported as such instead of being run through depth_completion_node. A
    monocular DiffusionDepth checkpoint is accepted (the completion node runs it, sparse input
    unused).
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
    if isinstance(data, dict) and data.get("architecture") not in (None, "diffusion_depth"):
        return (f"a {data['architecture']} checkpoint (config {config}), not DiffusionDepth: "
                "not a depth completion model")
    try:
        DiffusionDepthConfig.from_dict(data)
    except (ConfigError, TypeError, ValueError) as exc:
        return f"not a DiffusionDepth checkpoint ({config}: {exc})"
    return None  # completion or monocular: both run in depth_completion_node


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
    from depth_diffusion_ros.inference.backends import COMPLETION_BACKENDS

    choices: list[BackendChoice] = []
    for name in COMPLETION_BACKENDS:
        if name in CLASSICAL:
            choices.append(BackendChoice(name, name, {}))
    folders = sorted(d for d in weights_dir.glob("*") if d.is_dir()) if weights_dir.is_dir() else []
    models = []
    for folder in folders:
        problem = completion_checkpoint_problem(folder)
        if problem is None:
            models.append(folder)
        else:
            choices.append(BackendChoice(f"weights:{folder.name}", "", {}, skip=problem))
    learned = [n for n in COMPLETION_BACKENDS if n not in CLASSICAL]
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
    if only:
        choices = [c for c in choices if c.label in only or c.backend in only]
    return choices


def read_size_divisor(checkpoint: Path) -> int:
    """``size_divisor`` of a DiffusionDepth checkpoint's config.yaml (frames are padded to it)."""
    from depth_diffusion_ros.models.config import DiffusionDepthConfig

    return int(DiffusionDepthConfig.from_yaml(checkpoint / "config.yaml").size_divisor)


def bag_padded_sizes(bag: Path, size_divisor: int) -> set[tuple[int, int]]:
    """The (H, W) of every camera image of ``bag`` padded up to ``size_divisor`` (the input size
    an exported DiffusionDepth graph must have; read from the camera_info messages)."""
    from depth_diffusion_ros.tools.bag_io import BagReader

    sizes: set[tuple[int, int]] = set()
    with BagReader(bag) as reader:
        topics = [t for t, (msgtype, _n) in reader.topics.items() if msgtype == CAMERA_INFO]
        for msg in reader.messages(topics):
            info = msg.decode()
            d = int(size_divisor)
            sizes.add((-(-int(info.height) // d) * d, -(-int(info.width) // d) * d))
    return sizes


def checkpoint_sha256(checkpoint: Path) -> str:
    """The tensor SHA-256 stored in ``model.safetensors`` (models.checkpoint writes and verifies it)."""
    from safetensors import safe_open

    with safe_open(str(checkpoint / "model.safetensors"), "numpy") as f:
        sha = (f.metadata() or {}).get("sha256")
    if not sha:
        raise ValueError(f"{checkpoint / 'model.safetensors'} has no sha256 metadata")
    return sha


def onnx_export_for(checkpoint: Path, cache_dir: Path, sizes: set[tuple[int, int]]) -> tuple[Path, bool]:
    """The ONNX export (step form: encoder/step/decoder for the host DDIM loop) of a DiffusionDepth
    checkpoint for frames padded to ``sizes``, made once and cached.

    One size -> a static export for it (``<cache_dir>/<model>/<W>x<H>``); several -> a dynamic
    one (``.../dynamic``). Reused while ``export.json``'s ``model_sha256`` equals the
    checkpoint's tensor hash and the three graphs are there; otherwise exported again with
    :func:`depth_diffusion_ros.export.diffusion_depth.export_diffusion_depth` (checked against
    torch on random inputs). Returns (export directory, reused). Raises ExportError, ValueError,
    CheckpointError.
    """
    import json

    sha = checkpoint_sha256(checkpoint)
    if len(sizes) == 1:
        (h, w), dynamic = next(iter(sizes)), False
        target = cache_dir / checkpoint.name / f"{w}x{h}"
    else:
        (h, w), dynamic = min(sizes), True
        target = cache_dir / checkpoint.name / "dynamic"
    meta = target / "export.json"
    if meta.is_file() and all((target / f).is_file() for f in ("encoder.onnx", "step.onnx", "decoder.onnx")):
        try:
            if json.loads(meta.read_text()).get("model_sha256") == sha:
                return target, True
        except (OSError, ValueError):
            pass
    import torch

    from depth_diffusion_ros.export.diffusion_depth import export_diffusion_depth
    from depth_diffusion_ros.models.checkpoint import load_checkpoint

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    model = load_checkpoint(checkpoint).eval()
    if target.exists():
        for f in target.glob("*"):
            if f.is_file():
                f.unlink()
    export_diffusion_depth(model, target, h, w, forms=("step",), dynamic=dynamic, check=True)
    return target, False


def per_frame_table(rows: list[dict]) -> str:
    """Plain-text RMSE [mm] table per frame of the KITTI datasets with more than one frame
    (rows: the completion rows with ``per_frame_rmse_mm``); "" when there is none."""
    multi = [r for r in rows if r.get("dataset", "").startswith("kitti") and len(r.get("per_frame_rmse_mm") or {}) > 1]
    if not multi:
        return ""
    frames = sorted({i for r in multi for i in r["per_frame_rmse_mm"]})
    table_rows = [{"dataset": r["dataset"], "backend": r["backend"],
                   **{f"f{i}": r["per_frame_rmse_mm"].get(i) for i in frames}} for r in multi]
    return format_table(table_rows, [("dataset", "dataset"), ("backend", "backend")],
                        [(f"f{i}", f"frame {i}", "{:.1f}") for i in frames])


def shared_data_dir() -> Optional[Path]:
    """``$DDR_SHARED_DATA``, else ``../shared/data`` beside the repository, when it exists."""
    env = os.environ.get("DDR_SHARED_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


def kitti_sources(kitti_dir: Optional[Path]) -> list[tuple[str, Path, str]]:
    """(dataset name, KITTI folder, scoring) for the KITTI data found here."""
    out = []
    data = shared_data_dir()
    if data is not None:
        for name, sub, scoring in (("kitti_dc", "kitti_raw_depth_completion_torch_kitti", "KITTI DC ground truth"),
                                   ("kitti_object", "kitti_object_kuixu", "10 % held-out LiDAR")):
            if (data / sub).is_dir():
                out.append((name, data / sub, scoring))
    if kitti_dir is not None:
        out.append(("kitti_dir", kitti_dir, "ground truth or held-out LiDAR"))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``depth-diffusion-ros demo``."""
    parser.add_argument("-o", "--output", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--backends", default=None, help="comma-separated backends/labels to run (default: all available)")
    parser.add_argument("--frames", type=int, default=3, help="Middlebury frames (sparse patterns)")
    parser.add_argument("--scan-rows", type=int, default=64, help="scan lines of the simulated LiDAR")
    parser.add_argument("--scan-col-step", type=int, default=4, help="column step of the simulated LiDAR")
    parser.add_argument("--kitti-dir", type=Path, default=Path(os.environ["KITTI_DIR"]) if os.environ.get("KITTI_DIR") else None,
                        help="a KITTI raw drive / object / torch_kitti folder (default $KITTI_DIR)")
    parser.add_argument("--max-frames", type=int, default=5, help="frames per KITTI bag")
    parser.add_argument("--no-kitti", action="store_true", help="only the embedded Middlebury data")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps for diffusion backends")
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR,
                        help="folder of model folders for the learned backends (default: the shipped weights)")
    parser.add_argument("--frame-timeout", type=float, default=300.0, help="seconds to wait for one frame")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sparse sampling and the held-out split")
    parser.add_argument("--sr-backends", default=None,
                        help="comma-separated super-resolution backends/labels (default: all available)")
    parser.add_argument("--no-sr", action="store_true", help="skip the super-resolution section")
    parser.add_argument("--sr-frames", type=int, default=3, help="NYU frames in the super-resolution section")


def run(args: argparse.Namespace) -> int:
    """Run the demo; prints the metrics table. 0 when every dataset scored with some backend."""
    from depth_diffusion_ros.tools.kitti_to_bag import KittiLayoutError, convert, discover_kitti
    from depth_diffusion_ros.tools.replay import ReplayError, ReplayOptions, replay

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    t0 = time.perf_counter()
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"demo: error: cannot create {out}: {exc}", file=sys.stderr)
        return 2
    only = [b.strip() for b in args.backends.split(",")] if args.backends else None
    choices = discover_backends(Path(args.weights_dir), only=only, steps=args.steps)
    runnable = [c for c in choices if c.skip is None]
    for c in choices:
        if c.skip:
            print(f"skipping backend {c.label}: {c.skip}")
    if not runnable:
        print("demo: error: no backend to run", file=sys.stderr)
        return 2

    datasets: list[tuple[str, Path, str]] = []
    bags = out / "bags"
    try:
        print("building the Middlebury Motorcycle bag (scikit-image data) ...")
        datasets.append(("middlebury", write_motorcycle_bag(bags / "middlebury", args.frames, args.scan_rows,
                                                             args.scan_col_step, args.seed), "stereo GT"))
    except (BagError, ImportError, OSError) as exc:
        print(f"demo: error: cannot build the Middlebury bag: {exc}", file=sys.stderr)
        return 2
    if not args.no_kitti:
        found = kitti_sources(args.kitti_dir)
        if not found:
            print("no KITTI data found (set DDR_SHARED_DATA or KITTI_DIR): Middlebury only")
        for name, folder, scoring in found:
            try:
                seq = discover_kitti(folder)
                convert(seq, bags / name, overwrite=True, max_frames=args.max_frames)
                datasets.append((name, bags / name, scoring))
                print(f"converted {folder} -> {bags / name} ({seq.layout}, {min(len(seq.frames), args.max_frames)} frames)")
            except (KittiLayoutError, BagError, ValueError, OSError) as exc:
                print(f"skipping KITTI data {folder}: {exc}")

    rows: list[dict[str, Any]] = []
    failures = 0
    for dataset, bag, scoring in datasets:
        for choice in runnable:
            target = out / dataset / choice.label.replace(":", "_")
            options = dict(choice.options)
            if choice.export_from is not None:
                try:
                    t_exp = time.perf_counter()
                    sizes = bag_padded_sizes(bag, read_size_divisor(choice.export_from))
                    export_dir, reused = onnx_export_for(choice.export_from, out / "onnx_cache", sizes)
                    options["model_path"] = str(export_dir)
                    print(f"{dataset} / {choice.label}: ONNX export {export_dir} "
                          + ("(cached, same checkpoint hash)" if reused else f"(exported in {time.perf_counter() - t_exp:.1f} s)"))
                except Exception as exc:  # noqa: BLE001 - export failures are reported per row
                    print(f"{dataset} / {choice.label}: failed: cannot export {choice.export_from} to ONNX: {exc}")
                    rows.append({"dataset": dataset, "backend": choice.label, "gt": scoring, "frames": "failed"})
                    failures += 1
                    continue
            try:
                result = replay(ReplayOptions(
                    bag=bag, output=target, backend=choice.backend, node_params=options,
                    holdout_fraction=0.1, seed=args.seed, frame_timeout=args.frame_timeout,
                    max_frames=args.max_frames if dataset != "middlebury" else None, progress=True,
                    label=f"{dataset} {choice.label}", max_figures=10,
                ))
            except (ReplayError, BagError) as exc:
                print(f"{dataset} / {choice.label}: failed: {exc}")
                rows.append({"dataset": dataset, "backend": choice.label, "gt": scoring, "frames": "failed"})
                failures += 1
                continue
            except Exception as exc:  # noqa: BLE001 - a broken node must not lose the other rows
                print(f"{dataset} / {choice.label}: failed: {type(exc).__name__}: {exc}")
                rows.append({"dataset": dataset, "backend": choice.label, "gt": scoring, "frames": "failed"})
                failures += 1
                continue
            rep = result.report
            skipped = sum(rep["skipped"].values())
            rows.append({"dataset": dataset, "backend": choice.label, "gt": scoring,
                         "frames": f"{rep['n_frames']}" + (f" (+{skipped} skipped)" if skipped else ""),
                         **rep["mean"], "report": str(result.report_path),
                         "per_frame_rmse_mm": {int(f.get("frame_index", i)): f.get("rmse_mm")
                                               for i, f in enumerate(rep["frames"])}})
    sr_rows, sr_skipped = ([], []) if args.no_sr else run_super_resolution(args, out, bags)
    sr_failures = sum(1 for r in sr_rows if r.get("rmse_mm") is None)
    wall = time.perf_counter() - t0
    print()
    print("Depth completion on the same frames (KITTI units: mm, 1/km; latency = publish -> depth/image, "
          "2-core CPU)" if os.cpu_count() == 2 else "Depth completion on the same frames (KITTI units: mm, 1/km)")
    print(format_table(rows, [("dataset", "dataset"), ("backend", "backend"), ("gt", "scored against"),
                              ("frames", "frames")]))
    per_frame = per_frame_table(rows)
    if per_frame:
        print()
        print("RMSE [mm] per KITTI frame (frame = position in the bag; KITTI object: 0 = 000000, 1 = 000001). "
              "The shipped DiffusionDepth demo weights were trained on object 000000 and raw camera 3; "
              "object 000001 and the kitti_dc frame (camera 2) are held out (see its MODEL_CARD.md)")
        print(per_frame)
    skipped_backends = [f"{c.label} ({c.skip})" for c in choices if c.skip]
    if skipped_backends:
        print("skipped backends: " + "; ".join(skipped_backends))
    if sr_rows:
        print()
        print(f"Depth super-resolution x{SR_SCALE} (depth_lr = {SR_SCALE}x{SR_SCALE} block average of the valid GT; "
              "depth_super_resolution_node, scored against the full-resolution GT; latency = publish -> depth/image)")
        print(format_table(sr_rows, [("dataset", "dataset"), ("backend", "backend"), ("size", "HR size"),
                                     ("frames", "frames")], SR_TABLE_COLUMNS))
    if sr_skipped:
        print("skipped super-resolution backends: " + "; ".join(sr_skipped))
    write_json_atomic(out / "summary.json", {"rows": rows, "skipped_backends": skipped_backends,
                                             "super_resolution_rows": sr_rows,
                                             "skipped_super_resolution_backends": sr_skipped, "wall_s": wall})
    print(f"\noutputs: {out}/<dataset>/<backend>/ (report.json, figures/, output_bag/); bags: {bags}; "
          f"ONNX exports: {out / 'onnx_cache'}; "
          f"summary: {out / 'summary.json'}")
    print(f"demo wall time: {wall:.1f} s")
    return 0 if not failures and not sr_failures and all(r.get("rmse_mm") is not None for r in rows) else 1


SR_TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("rmse_mm", "RMSE mm", "{:.1f}"),
    ("mae_mm", "MAE mm", "{:.1f}"),
    ("rmse_cm", "RMSE cm", "{:.2f}"),
    ("mae_cm", "MAE cm", "{:.2f}"),
    ("abs_rel", "AbsRel", "{:.4f}"),
    ("delta1", "d1", "{:.4f}"),
    ("latency_ms", "latency ms", "{:.1f}"),
)


def run_super_resolution(args: argparse.Namespace, out: Path, bags: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The super-resolution section: bags from the Middlebury pair (and the NYU frames when the
    shared data is there) with ``depth_lr`` = the GT block-averaged by :data:`SR_SCALE`, replayed
    through depth_super_resolution_node for each backend of :func:`sr_backend_choices`.

    Returns (table rows, skipped backends with reasons). A backend that fails to start (e.g. the
    torch backend cannot load the weights) is reported as skipped with the node's reason.
    """
    from depth_diffusion_ros.tools.replay import ReplayError, ReplayOptions, replay

    only = [b.strip() for b in args.sr_backends.split(",")] if args.sr_backends else None
    choices = sr_backend_choices(Path(args.weights_dir), only)
    skipped = [f"{c.label} ({c.skip})" for c in choices if c.skip]
    for c in choices:
        if c.skip:
            print(f"skipping super-resolution backend {c.label}: {c.skip}")
    datasets: list[tuple[str, Path, str]] = []
    try:
        rgb, depth, intr = motorcycle_depth()
        datasets.append(("sr_middlebury", write_sr_bag(bags / "sr_middlebury", [(rgb, depth, intr)], SR_SCALE,
                                                        "middlebury_sr"), ""))
    except (BagError, ImportError, OSError, ValueError) as exc:
        print(f"skipping the Middlebury super-resolution bag: {exc}")
    data = shared_data_dir()
    nyu = data / "nyu_depth_v2_metric3d" if data is not None else None
    if nyu is not None and nyu.is_dir():
        try:
            frames = nyu_frames(nyu)[: max(1, args.sr_frames)]
            datasets.append(("sr_nyu", write_sr_bag(bags / "sr_nyu", frames, SR_SCALE, "nyu"), ""))
        except (BagError, OSError, ValueError, KeyError) as exc:
            print(f"skipping the NYU super-resolution bag: {exc}")
    rows: list[dict[str, Any]] = []
    for dataset, bag, _ in datasets:
        for choice in [c for c in choices if c.skip is None]:
            if any(s.startswith(choice.label + " ") for s in skipped):
                continue  # did not start on an earlier dataset
            target = out / dataset / choice.label.replace(":", "_")
            try:
                result = replay(ReplayOptions(
                    bag=bag, output=target, backend=choice.backend, node_params=dict(choice.options),
                    pipeline="super_resolution", frame_timeout=args.frame_timeout, progress=True,
                    label=f"{dataset} {choice.label}", max_figures=10,
                ))
            except (ReplayError, BagError) as exc:
                if choice.backend == "torch":  # the learned backend could not start: say why, go on
                    print(f"skipping super-resolution backend {choice.label}: {exc}")
                    skipped.append(f"{choice.label} ({exc})")
                    continue
                print(f"{dataset} / {choice.label}: failed: {exc}")
                rows.append({"dataset": dataset, "backend": choice.label, "frames": "failed"})
                continue
            except Exception as exc:  # noqa: BLE001 - a broken node must not lose the other rows
                print(f"{dataset} / {choice.label}: failed: {type(exc).__name__}: {exc}")
                rows.append({"dataset": dataset, "backend": choice.label, "frames": "failed"})
                continue
            rep = result.report
            mean = dict(rep["mean"])
            for key in ("rmse", "mae"):
                if mean.get(f"{key}_mm") is not None:
                    mean[f"{key}_cm"] = mean[f"{key}_mm"] / 10.0
            n_skipped = sum(rep["skipped"].values())
            size = ""
            if rep["frames"]:
                f0 = rep["frames"][0]
                size = f"{f0.get('width', '')}x{f0.get('height', '')}" if f0.get("width") else ""
            rows.append({"dataset": dataset, "backend": choice.label, "size": size or _bag_size(bag),
                         "frames": f"{rep['n_frames']}" + (f" (+{n_skipped} skipped)" if n_skipped else ""),
                         **mean, "report": str(result.report_path)})
    return rows, skipped


def _bag_size(bag: Path) -> str:
    """``WxH`` of the first camera_info of ``bag`` (the HR size of a super-resolution bag)."""
    from depth_diffusion_ros.tools.bag_io import BagReader

    with BagReader(bag) as reader:
        topics = sorted(t for t, (m, _n) in reader.topics.items() if m == CAMERA_INFO and "depth_lr" not in t)
        for msg in reader.messages(topics[:1]):
            info = msg.decode()
            return f"{info.width}x{info.height}"
    return ""
