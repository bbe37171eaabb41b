"""Real frames for export parity checks and benchmarks (numpy + OpenCV, no torch).

* KITTI (``kitti_raw_depth_completion_torch_kitti``): raw drive 2011_09_26_0001 frame 5, left
  colour camera + the KITTI depth-completion ``velodyne_raw`` map (uint16 / 256 m).
* NYU Depth V2 (``nyu_depth_v2_metric3d``): 640x480 RGB + Kinect depth (uint16 mm); sparse
  input = a fixed random 500 of the valid pixels (the usual NYU completion protocol).

:func:`fit_frame` bottom-centre crops to the requested size (the KITTI DC convention: the sky
rows are dropped), resizing first (nearest for depth) when the frame is smaller.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

KITTI_DIR = "kitti_raw_depth_completion_torch_kitti"
NYU_DIR = "nyu_depth_v2_metric3d"


class FrameError(FileNotFoundError):
    """A data file is missing or unreadable; the message names it."""


def _read(path: Path, flags: int) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise FrameError(f"cannot read {path}")
    return img


def load_kitti_frame(data_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (375,1242,3) uint8, sparse_depth (375,1242) float32 m, 0 = missing)."""
    root = Path(data_dir) / KITTI_DIR
    rgb = cv2.cvtColor(_read(root / "raw/sync_rect/cam_02.png", cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    sparse = _read(root / "depth_completion/velodyne_raw_image_02.png", cv2.IMREAD_UNCHANGED)
    return rgb, sparse.astype(np.float32) / 256.0


def load_nyu_frame(data_dir: str | Path, index: int = 0, n_points: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (480,640,3) uint8, sparse_depth (480,640) float32 m with ``n_points`` valid pixels)."""
    root = Path(data_dir) / NYU_DIR
    rgb = cv2.cvtColor(_read(root / f"rgb/rgb_{index:05d}.jpg", cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    depth = _read(root / f"depth/sync_depth_{index:05d}.png", cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0
    valid = np.flatnonzero(depth > 0)
    keep = np.random.default_rng(seed).choice(valid, size=min(n_points, valid.size), replace=False)
    sparse = np.zeros_like(depth)
    sparse.flat[keep] = depth.flat[keep]
    return rgb, sparse


def fit_frame(rgb: np.ndarray, sparse: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Bottom-centre crop (after upscaling if needed) to (height, width)."""
    h, w = rgb.shape[:2]
    scale = max(height / h, width / w, 1.0)
    if scale > 1.0:
        size = (int(np.ceil(w * scale)), int(np.ceil(h * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
        sparse = cv2.resize(sparse, size, interpolation=cv2.INTER_NEAREST)
        h, w = rgb.shape[:2]
    y0, x0 = h - height, (w - width) // 2
    return (np.ascontiguousarray(rgb[y0:y0 + height, x0:x0 + width]),
            np.ascontiguousarray(sparse[y0:y0 + height, x0:x0 + width]))


def frame_for_size(data_dir: str | Path, height: int, width: int, dataset: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
    """A real frame of the requested size: KITTI for wide sizes, NYU otherwise (or ``dataset``)."""
    if dataset is None:
        dataset = "kitti" if width / height > 2.0 else "nyu"
    if dataset == "kitti":
        rgb, sparse = load_kitti_frame(data_dir)
    elif dataset == "nyu":
        rgb, sparse = load_nyu_frame(data_dir)
    else:
        raise ValueError(f"dataset={dataset!r}: use 'kitti' or 'nyu'")
    return fit_frame(rgb, sparse, height, width)


def tensor_inputs(rgb: np.ndarray, sparse: np.ndarray) -> dict[str, np.ndarray]:
    """NCHW float32 graph inputs (inference.frames layout): rgb in [0,1], sparse_depth (m),
    valid_mask {0,1}."""
    from depth_diffusion_ros.inference import frames

    sparse_t, valid_t = frames.sparse_to_tensor_layout(sparse)
    return {"rgb": frames.rgb_to_tensor_layout(rgb), "sparse_depth": sparse_t, "valid_mask": valid_t}
