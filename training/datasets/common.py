"""Shared parts of the training datasets: frame dicts, image reading, sample tensors.

A dataset first loads a *frame* (numpy, native resolution), optionally passes it through a
transform from :mod:`training.transforms`, and finally turns it into a *sample* (torch).

Frame (numpy), the unit the transforms work on::

    rgb           (H, W, 3) uint8 RGB
    sparse_depth  (H, W) float32 metres, 0 = no measurement, or None (monocular)
    gt_depth      (H, W) float32 metres, 0 = no ground truth, or None
    K             (3, 3) float64 pinhole intrinsics of ``rgb`` (pixels)

Sample (torch), what the models' ``training_losses`` and ``sample`` read (see
``docs/interfaces.md``)::

    rgb           (3, H, W) float32 in [0, 1]
    sparse_depth  (1, H, W) float32 metres, 0 = missing
    valid_mask    (1, H, W) float32 {0, 1}: sparse_depth > 0
    gt_depth      (1, H, W) float32 metres, 0 = missing
    gt_mask       (1, H, W) float32 {0, 1}: gt_depth > 0
    K             (3, 3) float32
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

Frame = dict  # keys: rgb, sparse_depth, gt_depth, K (see module docstring)
FrameTransform = Callable[[Frame, np.random.Generator], Frame]

SAMPLE_KEYS = ("rgb", "sparse_depth", "valid_mask", "gt_depth", "gt_mask", "K")


class DatasetError(ValueError):
    """A dataset cannot be built or a file cannot be read; the message names the path."""


def _imread(path: str | Path, flags: int, what: str) -> np.ndarray:
    """``cv2.imread(path, flags)``; DatasetError naming the ``what`` file when it is missing or not decodable."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what} file not found: {path}")
    arr = cv2.imread(str(path), flags)
    if arr is None:
        raise DatasetError(f"cannot decode {what} file: {path}")
    return arr


def read_rgb(path: str | Path) -> np.ndarray:
    """Read a colour image file as (H, W, 3) uint8 RGB.

    Raises:
        DatasetError: the file is missing or not a decodable image.
    """
    return cv2.cvtColor(_imread(path, cv2.IMREAD_COLOR, "image"), cv2.COLOR_BGR2RGB)


def read_uint16_png(path: str | Path) -> np.ndarray:
    """Read a single-channel 16-bit PNG unchanged as (H, W) uint16.

    Raises:
        DatasetError: missing file, not decodable, or not single-channel uint16.
    """
    path = Path(path)
    arr = _imread(path, cv2.IMREAD_UNCHANGED, "depth")
    if arr.dtype != np.uint16 or arr.ndim != 2:
        raise DatasetError(
            f"depth file {path} is {arr.dtype} with shape {arr.shape}; expected a single-channel uint16 PNG"
        )
    return arr


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """(3, 3) float64 pinhole matrix K from focal lengths and principal point (pixels)."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def check_frame(frame: Frame, source: str = "frame") -> None:
    """Validate shapes/dtypes of a frame dict.

    Raises:
        DatasetError: naming ``source`` and the key that is wrong.
    """
    rgb = frame.get("rgb")
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise DatasetError(f"{source}: rgb must be (H, W, 3) uint8, got {getattr(rgb, 'shape', None)}")
    h, w = rgb.shape[:2]
    for key in ("sparse_depth", "gt_depth"):
        d = frame.get(key)
        if d is None:
            continue
        if not isinstance(d, np.ndarray) or d.shape != (h, w):
            raise DatasetError(
                f"{source}: {key} has shape {getattr(d, 'shape', None)}, rgb is {(h, w)}"
            )
    K = frame.get("K")
    if not isinstance(K, np.ndarray) or K.shape != (3, 3):
        raise DatasetError(f"{source}: K must be a (3, 3) array, got {getattr(K, 'shape', None)}")


def _clean_depth(depth: Optional[np.ndarray], shape: tuple[int, int], max_depth: Optional[float]) -> np.ndarray:
    if depth is None:
        return np.zeros(shape, np.float32)
    d = np.asarray(depth, dtype=np.float32).copy()
    d[~np.isfinite(d) | (d <= 0)] = 0.0
    if max_depth is not None:
        d[d > max_depth] = 0.0
    return d


def frame_to_sample(frame: Frame, max_depth: Optional[float] = None) -> dict[str, torch.Tensor]:
    """Convert a numpy frame to the sample dict of float32 tensors (module docstring).

    Args:
        frame: rgb/sparse_depth/gt_depth/K frame dict.
        max_depth: metres; depth above it (sparse and GT) is marked missing (e.g. 88 m for
            KITTI training as in DiffusionDepth's configuration). None keeps all.
    """
    check_frame(frame)
    rgb = frame["rgb"]
    h, w = rgb.shape[:2]
    sparse = _clean_depth(frame.get("sparse_depth"), (h, w), max_depth)
    gt = _clean_depth(frame.get("gt_depth"), (h, w), max_depth)
    extra = {}
    if frame.get("priors") is not None:  # classical fills (training.transforms.ClassicalFills)
        extra["priors"] = torch.from_numpy(np.ascontiguousarray(frame["priors"], np.float32))
    if frame.get("gt_weight") is not None:  # per-pixel loss weights (training.transforms.SparseDropout)
        extra["gt_weight"] = torch.from_numpy(np.where(gt > 0, frame["gt_weight"], 0).astype(np.float32))[None]
    return {
        "rgb": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0),
        "sparse_depth": torch.from_numpy(sparse)[None],
        "valid_mask": torch.from_numpy((sparse > 0).astype(np.float32))[None],
        "gt_depth": torch.from_numpy(gt)[None],
        "gt_mask": torch.from_numpy((gt > 0).astype(np.float32))[None],
        "K": torch.from_numpy(np.asarray(frame["K"], dtype=np.float32).copy()),
        **extra,
    }


class DepthDataset(Dataset):
    """Base class: subclasses implement ``__len__``, ``load_frame(i)`` and ``sample_name(i)``.

    ``__getitem__`` = ``frame_to_sample(transform(load_frame(i), rng), max_depth)``. The random
    generator of the transform is seeded from torch's RNG, which DataLoader seeds per worker and
    the trainer per rank, so augmentations differ across workers/ranks and are reproducible.
    ``cache=True`` keeps decoded frames in memory (small datasets read every step, e.g. the demo).
    """

    def __init__(self, transform: Optional[FrameTransform] = None, max_depth: Optional[float] = None,
                 cache: bool = False):
        self.transform = transform
        self.max_depth = max_depth
        self.cache = bool(cache)
        self._frames: dict = {}

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_frame(self, index: int) -> Frame:  # pragma: no cover - abstract
        """Raw frame at native resolution (numpy; see module docstring)."""
        raise NotImplementedError

    def sample_name(self, index: int) -> str:
        """A readable identifier of frame ``index`` (file stem, drive/frame...)."""
        return str(index)

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {n} frames")
        return index % n

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        if self.cache and index in self._frames:
            frame = dict(self._frames[index])  # transforms never write into the arrays they get
        else:
            frame = self.load_frame(index)
            check_frame(frame, f"{type(self).__name__}[{self.sample_name(index)}]")
            if self.cache:
                self._frames[index] = dict(frame)
        if self.transform is not None:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
            frame = self.transform(frame, np.random.default_rng(seed))
        return frame_to_sample(frame, self.max_depth)


def sample_sparse_points(
    depth: np.ndarray, num_points: int, rng: np.random.Generator
) -> np.ndarray:
    """Keep ``num_points`` random valid pixels of ``depth`` (the NYU completion protocol with
    500 points, Ma & Karaman, ICRA 2018, Sec. IV). Returns (H, W) float32, 0 elsewhere."""
    out = np.zeros_like(depth, dtype=np.float32)
    ys, xs = np.nonzero(depth > 0)
    if len(ys) == 0 or num_points <= 0:
        return out
    pick = rng.choice(len(ys), size=min(num_points, len(ys)), replace=False)
    out[ys[pick], xs[pick]] = depth[ys[pick], xs[pick]]
    return out
