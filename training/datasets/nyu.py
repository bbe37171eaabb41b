"""NYU-Depth-v2 loaders (Silberman et al., ECCV 2012).

Three layouts are read:

* ``NyuLabeledMat``: the official ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5, read with
  h5py). MATLAB stores arrays column-major, so h5py sees them transposed: ``images`` is
  (N, 3, W, H) uint8 and ``depths`` is (N, W, H) float metres; we transpose back to (H, W, 3)
  and (H, W).
* ``NyuFileList.from_sync_folder``: the BTS-style ``sync`` export (Lee et al., "From Big to
  Small", 2019): ``<scene>/rgb_XXXXX.jpg`` with ``<scene>/sync_depth_XXXXX.png`` (uint16 mm),
  listed by a BTS split file (``/scene/rgb_00045.jpg /scene/sync_depth_00045.png 518.8579``)
  or found by globbing.
* ``NyuFileList.from_annotations``: the Metric3D demo layout (``rgb/``, ``depth/`` and a
  ``test_annotations.json`` with ``cam_in`` = fx, fy, cx, cy and ``depth_scale``), which is the
  sample in ``../shared/data/nyu_depth_v2_metric3d``.

Depth in metres (0 = invalid). The images are 640x480 with a white undistortion border, where the
sync depth is 0 (about rows 0-41 and 472-479). For depth completion on NYU, ``num_sparse_points``
keeps that many random valid GT pixels as ``sparse_depth`` (500 in Ma & Karaman, ICRA 2018);
0 gives an empty sparse map (monocular / super-resolution use).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from depth_diffusion_ros.geometry.depth_codecs import decode_depth
from training.datasets.common import (
    DatasetError,
    DepthDataset,
    Frame,
    FrameTransform,
    intrinsics_matrix,
    read_rgb,
    read_uint16_png,
    sample_sparse_points,
)

# Colour camera intrinsics of the NYU-Depth-v2 Kinect (Silberman et al. toolbox, camera_params.m).
NYU_FX, NYU_FY, NYU_CX, NYU_CY = 518.8579, 519.46961, 325.58245, 253.73617
NYU_MAX_DEPTH = 10.0


def nyu_intrinsics() -> np.ndarray:
    """(3, 3) K of the NYU-Depth-v2 colour camera at 640x480 (pixels)."""
    return intrinsics_matrix(NYU_FX, NYU_FY, NYU_CX, NYU_CY)


class _NyuBase(DepthDataset):
    def __init__(
        self,
        num_sparse_points: int = 0,
        transform: Optional[FrameTransform] = None,
        max_depth: Optional[float] = NYU_MAX_DEPTH,
        seed: int = 0,
        cache: bool = False,
    ):
        super().__init__(transform=transform, max_depth=max_depth, cache=cache)
        if num_sparse_points < 0:
            raise DatasetError(f"num_sparse_points must be >= 0, got {num_sparse_points}")
        self.num_sparse_points = int(num_sparse_points)
        self.seed = int(seed)

    def _frame(self, index: int, rgb: np.ndarray, depth: np.ndarray, K: np.ndarray) -> Frame:
        sparse = None
        if self.num_sparse_points > 0:
            # Fixed per frame (seed, index) so evaluation inputs are reproducible.
            rng = np.random.default_rng([self.seed, index])
            sparse = sample_sparse_points(depth, self.num_sparse_points, rng)
        return {"rgb": rgb, "sparse_depth": sparse, "gt_depth": depth, "K": K}


class NyuLabeledMat(_NyuBase):
    """Frames of the official labeled ``nyu_depth_v2_labeled.mat`` (1449 frames), via h5py.

    Args:
        mat_path: path of the .mat (v7.3/HDF5) file.
        indices: frame indices to use (e.g. the 654 Eigen test indices); None = all.
        num_sparse_points, transform, max_depth, seed: see module docstring / DepthDataset.

    Raises:
        DatasetError: file missing, not HDF5, or lacking ``images``/``depths``.
    """

    def __init__(
        self,
        mat_path: str | Path,
        indices: Optional[Sequence[int]] = None,
        num_sparse_points: int = 0,
        transform: Optional[FrameTransform] = None,
        max_depth: Optional[float] = NYU_MAX_DEPTH,
        seed: int = 0,
        cache: bool = False,
    ):
        super().__init__(num_sparse_points, transform, max_depth, seed, cache)
        import h5py  # optional dependency, only for this layout

        self.mat_path = Path(mat_path)
        if not self.mat_path.is_file():
            raise DatasetError(f"NYU labeled .mat not found: {self.mat_path}")
        try:
            with h5py.File(self.mat_path, "r") as f:
                missing = [k for k in ("images", "depths") if k not in f]
                if missing:
                    raise DatasetError(f"{self.mat_path} has no dataset(s) {missing}")
                n = f["images"].shape[0]
                if f["images"].ndim != 4 or f["images"].shape[1] != 3:
                    raise DatasetError(
                        f"{self.mat_path}: images has shape {f['images'].shape}, expected (N, 3, W, H)"
                    )
        except OSError as exc:
            raise DatasetError(f"cannot open {self.mat_path} as HDF5 (MATLAB v7.3): {exc}") from exc
        self.indices = list(range(n)) if indices is None else [int(i) for i in indices]
        bad = [i for i in self.indices if not 0 <= i < n]
        if bad:
            raise DatasetError(f"{self.mat_path} has {n} frames; indices out of range: {bad[:5]}")
        self._file = None  # opened lazily per worker process (h5py handles do not fork)

    def __len__(self) -> int:
        return len(self.indices)

    def sample_name(self, index: int) -> str:
        return f"labeled_{self.indices[index]:04d}"

    def load_frame(self, index: int) -> Frame:
        import h5py

        if self._file is None:
            self._file = h5py.File(self.mat_path, "r")
        i = self.indices[index]
        rgb = np.ascontiguousarray(np.asarray(self._file["images"][i]).transpose(2, 1, 0)).astype(np.uint8)
        depth = np.ascontiguousarray(np.asarray(self._file["depths"][i], dtype=np.float32).T)
        depth[~np.isfinite(depth) | (depth < 0)] = 0.0
        return self._frame(index, rgb, depth, nyu_intrinsics())

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        return state


@dataclass(frozen=True)
class NyuEntry:
    """One RGB/depth file pair; depth_m = png_value / depth_scale."""

    rgb: Path
    depth: Path
    K: tuple  # (fx, fy, cx, cy) pixels
    depth_scale: float = 1000.0


class NyuFileList(_NyuBase):
    """NYU frames from RGB jpg/png + uint16 depth png pairs (sync export or Metric3D layout).

    Build with :meth:`from_sync_folder` or :meth:`from_annotations`, or pass entries directly.
    """

    def __init__(
        self,
        entries: Sequence[NyuEntry],
        num_sparse_points: int = 0,
        transform: Optional[FrameTransform] = None,
        max_depth: Optional[float] = NYU_MAX_DEPTH,
        seed: int = 0,
        cache: bool = False,
    ):
        super().__init__(num_sparse_points, transform, max_depth, seed, cache)
        self.entries = list(entries)
        if not self.entries:
            raise DatasetError("NyuFileList: no frames found")

    def __len__(self) -> int:
        return len(self.entries)

    def sample_name(self, index: int) -> str:
        e = self.entries[index]
        return f"{e.rgb.parent.name}/{e.rgb.stem}"

    def load_frame(self, index: int) -> Frame:
        e = self.entries[index]
        rgb = read_rgb(e.rgb)
        raw = read_uint16_png(e.depth)
        if raw.shape != rgb.shape[:2]:
            raise DatasetError(f"{e.depth} is {raw.shape[::-1]} (WxH) but {e.rgb} is {rgb.shape[1::-1]}")
        if e.depth_scale == 1000.0:
            depth = decode_depth(raw, "16UC1")
        else:
            depth = raw.astype(np.float32) / np.float32(e.depth_scale)
        return self._frame(index, rgb, depth, intrinsics_matrix(*e.K))

    @classmethod
    def from_sync_folder(
        cls, root: str | Path, split_file: str | Path | None = None, **kwargs
    ) -> "NyuFileList":
        """BTS ``sync`` layout. With ``split_file``, each line is ``rgb_rel depth_rel [focal]``
        (paths relative to ``root``, a leading '/' allowed; a third column is the focal length,
        used for fx and fy). Without it, every ``**/rgb_*.jpg`` with a
        ``sync_depth_*.png`` beside it (or in a sibling ``depth/`` folder) is used, sorted.

        Raises:
            DatasetError: root/split missing, a listed file missing, or nothing found.
        """
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"NYU sync folder not found: {root}")
        entries: list[NyuEntry] = []
        if split_file is not None:
            split_file = Path(split_file)
            if not split_file.is_file():
                raise DatasetError(f"NYU split file not found: {split_file}")
            for lineno, line in enumerate(split_file.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) < 2:
                    raise DatasetError(f"{split_file}:{lineno}: expected 'rgb depth [focal]', got {line!r}")
                rgb, depth = root / parts[0].lstrip("/"), root / parts[1].lstrip("/")
                f = float(parts[2]) if len(parts) > 2 else None
                K = (f, f, NYU_CX, NYU_CY) if f else (NYU_FX, NYU_FY, NYU_CX, NYU_CY)
                for p in (rgb, depth):
                    if not p.is_file():
                        raise DatasetError(f"{split_file}:{lineno}: file not found: {p}")
                entries.append(NyuEntry(rgb, depth, K))
        else:
            for rgb in sorted(root.rglob("rgb_*.jpg")):
                name = "sync_depth_" + Path(rgb.name[len("rgb_"):]).stem + ".png"
                # BTS keeps both in one scene folder; Metric3D splits them into rgb/ and depth/.
                for depth in (rgb.parent / name, rgb.parent.parent / "depth" / name):
                    if depth.is_file():
                        entries.append(NyuEntry(rgb, depth, (NYU_FX, NYU_FY, NYU_CX, NYU_CY)))
                        break
        if not entries:
            raise DatasetError(f"no rgb_*.jpg / sync_depth_*.png pairs under {root}")
        return cls(entries, **kwargs)

    @classmethod
    def from_annotations(
        cls, root: str | Path, annotations: str = "test_annotations.json", **kwargs
    ) -> "NyuFileList":
        """Metric3D layout: ``root/{rgb,depth}/`` and ``root/<annotations>`` whose ``files``
        entries give ``rgb``, ``depth`` (paths; only the last two components are used, relative
        to ``root``), ``cam_in`` [fx, fy, cx, cy] and ``depth_scale``.

        Raises:
            DatasetError: missing/invalid JSON or a listed file missing.
        """
        root = Path(root)
        ann = root / annotations
        if not ann.is_file():
            raise DatasetError(f"NYU annotation file not found: {ann}")
        try:
            files = json.loads(ann.read_text())["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{ann}: expected JSON with a 'files' list ({exc})") from exc
        entries = []
        for i, item in enumerate(files):
            try:
                rgb = root.joinpath(*Path(item["rgb"]).parts[-2:])
                depth = root.joinpath(*Path(item["depth"]).parts[-2:])
                cam = [float(v) for v in item.get("cam_in", (NYU_FX, NYU_FY, NYU_CX, NYU_CY))]
                scale = float(item.get("depth_scale", 1000.0))
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetError(f"{ann}: entry {i} is malformed ({exc})") from exc
            if len(cam) != 4 or scale <= 0:
                raise DatasetError(f"{ann}: entry {i} needs cam_in [fx, fy, cx, cy] and depth_scale > 0")
            for p in (rgb, depth):
                if not p.is_file():
                    raise DatasetError(f"{ann}: entry {i}: file not found: {p}")
            entries.append(NyuEntry(rgb, depth, tuple(cam), scale))
        return cls(entries, **kwargs)
