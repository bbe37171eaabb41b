"""The demo's data: the Middlebury Motorcycle bag (scikit-image), the super-resolution bags
(Middlebury, NYU Depth V2) and where the shared KITTI / NYU folders are."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from depth_diffusion_ros.geometry.degradation import block_average_depth  # noqa: F401 - re-exported for the demo
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.tools.bag_io import (
    CAMERA_INFO,
    IMAGE,
    BagReader,
    BagWriter,
    make_camera_info,
    make_depth_image,
    make_image,
)

#: Calibration of the 741x500 scikit-image copy (skimage.data.stereo_motorcycle docstring).
MOTORCYCLE = {"f": 994.978, "cx": 311.193, "cy": 254.877, "doffs": 31.086, "baseline_mm": 193.001}
#: The repository root (the shared data folder is looked for beside it).
REPO = Path(__file__).resolve().parents[3]
#: Scale of the super-resolution section (depth_lr = GT block-averaged over SR_SCALE x SR_SCALE).
SR_SCALE = 8


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


def bag_size(bag: Path) -> str:
    """``WxH`` of the first camera_info of ``bag`` (the HR size of a super-resolution bag)."""
    with BagReader(bag) as reader:
        topics = sorted(t for t, (m, _n) in reader.topics.items() if m == CAMERA_INFO and "depth_lr" not in t)
        for msg in reader.messages(topics[:1]):
            info = msg.decode()
            return f"{info.width}x{info.height}"
    return ""
