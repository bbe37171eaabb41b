"""RGB-D recordings as users store them: colour + 16-bit depth PNG + an intrinsics file.

The common layouts of RealSense / Kinect / ZED recordings and of the TUM RGB-D, SUN3D and
7-Scenes datasets, read by one loader (:func:`rgbd_folder_frames`):

* **paired names** (3DMatch / SUN3D fragments, 7-Scenes): ``<stem>.color.png|jpg`` beside
  ``<stem>.depth.png`` in one folder;
* **colour and depth folders** (SUN3D raw, most recorder scripts): ``<root>/<colour dir>/<stem>.*``
  with ``<root>/<depth dir>/<stem>.png`` (colour dir one of ``color``, ``colour``, ``rgb``,
  ``image``; depth dir ``depth``), equal stems;
* **TUM RGB-D** (``rgb.txt`` + ``depth.txt`` timestamp lists): each colour frame with the
  depth frame nearest in time, within ``max_time_diff_s`` (TUM's ``associate.py`` rule, 0.02 s).

Depth: single-channel uint16, ``depth_m = value / depth_scale`` (1000 for millimetres: SUN3D,
7-Scenes, RealSense ``z16`` at the default depth unit; 5000 for TUM); 0 and 65535 are missing.
The depth must be registered to the colour image (same size and intrinsics).

Intrinsics: the first of ``camera-intrinsics.txt``, ``intrinsics.txt``, ``K.txt``, ``calib.txt``
found in the folder or its parents up to ``root``: a 3x3 matrix (9 numbers) or ``fx fy cx cy``
(4 numbers); or given as ``intrinsics=(fx, fy, cx, cy)`` (TUM: per camera, from its web page).

Frames come back as a :class:`RGBDFileList` (the NYU loader's file list: same sample dict and
``load_frame``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from training.datasets.common import DatasetError
from training.datasets.nyu import NyuEntry, NyuFileList

INTRINSICS_FILES = ("camera-intrinsics.txt", "intrinsics.txt", "K.txt", "calib.txt")
COLOUR_DIRS = ("color", "colour", "rgb", "image")
COLOUR_EXTS = (".png", ".jpg", ".jpeg")


class RGBDFileList(NyuFileList):
    """:class:`~training.datasets.nyu.NyuFileList` whose depth files may also mark a missing
    return with 65535 (7-Scenes, some recorders): it becomes 0 like any hole."""

    def load_frame(self, index: int) -> dict:
        frame = super().load_frame(index)
        saturated = np.float32(65535.0 / self.entries[index].depth_scale)
        depth = frame["gt_depth"]
        if np.any(depth >= saturated):
            frame = dict(frame, gt_depth=np.where(depth >= saturated, 0.0, depth).astype(np.float32))
        return frame


def read_intrinsics(path: Union[str, Path]) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) from a text file holding a 3x3 K (9 numbers) or ``fx fy cx cy``.

    Raises DatasetError naming the file."""
    try:
        values = np.loadtxt(str(path), dtype=np.float64).ravel()
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: expected a 3x3 intrinsics matrix or 'fx fy cx cy' ({exc})") from exc
    if values.size == 9:
        K = values.reshape(3, 3)
        return float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    if values.size == 4:
        return tuple(float(v) for v in values)  # type: ignore[return-value]
    raise DatasetError(f"{path}: expected 9 numbers (3x3 K) or 4 (fx fy cx cy), found {values.size}")


def find_intrinsics(folder: Path, root: Path) -> Optional[Path]:
    """The first intrinsics file (:data:`INTRINSICS_FILES`) in ``folder`` or a parent up to ``root``."""
    folder, root = folder.resolve(), root.resolve()
    for d in [folder, *folder.parents]:
        for name in INTRINSICS_FILES:
            if (d / name).is_file():
                return d / name
        if d == root:
            break
    return None


def _paired_names(folder: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for depth in sorted(folder.glob("*.depth.png")):
        stem = depth.name[: -len(".depth.png")]
        rgb = next((folder / f"{stem}.color{e}" for e in COLOUR_EXTS if (folder / f"{stem}.color{e}").is_file()), None)
        if rgb is not None:
            pairs.append((rgb, depth))
    return pairs


def _colour_depth_dirs(folder: Path) -> list[tuple[Path, Path]]:
    cdir = next((folder / d for d in COLOUR_DIRS if (folder / d).is_dir()), None)
    ddir = folder / "depth"
    if cdir is None or not ddir.is_dir():
        return []
    pairs = []
    for depth in sorted(ddir.glob("*.png")):
        rgb = next((cdir / f"{depth.stem}{e}" for e in COLOUR_EXTS if (cdir / f"{depth.stem}{e}").is_file()), None)
        if rgb is not None:
            pairs.append((rgb, depth))
    return pairs


def _timestamp_list(path: Path) -> list[tuple[float, str]]:
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and not line.lstrip().startswith("#") and len(parts) >= 2:
            out.append((float(parts[0]), parts[1]))
    return out


def _tum_associated(folder: Path, max_time_diff_s: float) -> list[tuple[Path, Path]]:
    if not ((folder / "rgb.txt").is_file() and (folder / "depth.txt").is_file()):
        return []
    depth = _timestamp_list(folder / "depth.txt")
    if not depth:
        return []
    times = np.array([t for t, _ in depth])
    pairs = []
    for t, rel in _timestamp_list(folder / "rgb.txt"):
        k = int(np.argmin(np.abs(times - t)))
        if abs(times[k] - t) <= max_time_diff_s:
            pairs.append((folder / rel, folder / depth[k][1]))
    return pairs


def find_rgbd_pairs(folder: Union[str, Path], max_time_diff_s: float = 0.02) -> list[tuple[Path, Path]]:
    """(colour, depth) file pairs of one recording folder in any layout of the module docstring
    (TUM lists first, then colour/depth folders, then paired names); [] when none matches."""
    folder = Path(folder)
    for finder in (lambda f: _tum_associated(f, max_time_diff_s), _colour_depth_dirs, _paired_names):
        pairs = finder(folder)
        if pairs:
            return pairs
    return []


def rgbd_folder_frames(root: Union[str, Path], sequences: Optional[Sequence[str]] = None, depth_scale: float = 1000.0,
                       intrinsics: Optional[Sequence[float]] = None, every: int = 1,
                       frames: Optional[slice] = None, max_time_diff_s: float = 0.02, **kwargs) -> RGBDFileList:
    """Frames of RGB-D recordings under ``root``: ``root`` itself when it is a recording, else
    each sub-folder (``sequences`` picks and orders them by name).

    every: keep every ``every``-th frame of a sequence; frames: a slice of each sequence's frame
    list (e.g. ``slice(0, 38)`` to hold the last frames back), applied before ``every``.
    kwargs go to :class:`~training.datasets.nyu.NyuFileList` (``max_depth``, ``transform``...).
    Raises DatasetError for a missing root, a sequence without frames or without intrinsics.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"RGB-D folder not found: {root}")
    if sequences is None:
        folders = [root] if find_rgbd_pairs(root, max_time_diff_s) else sorted(p for p in root.iterdir() if p.is_dir())
    else:
        folders = [root / s for s in sequences]
    entries = []
    for folder in folders:
        pairs = find_rgbd_pairs(folder, max_time_diff_s)
        if not pairs:
            if sequences is None and folder != root:
                continue  # a non-recording sub-folder
            raise DatasetError(f"{folder}: no colour/depth pairs (<stem>.color.png + <stem>.depth.png, "
                               f"color|rgb|image/ + depth/, or TUM rgb.txt + depth.txt)")
        if intrinsics is not None:
            K = tuple(float(v) for v in intrinsics)
        else:
            path = find_intrinsics(folder, root)
            if path is None:
                raise DatasetError(f"{folder}: no intrinsics file ({', '.join(INTRINSICS_FILES)}) "
                                   f"up to {root}; pass intrinsics=(fx, fy, cx, cy)")
            K = read_intrinsics(path)
        if frames is not None:
            pairs = pairs[frames]
        for rgb, depth in pairs[::max(1, int(every))]:
            entries.append(NyuEntry(rgb, depth, K, float(depth_scale)))
    if not entries:
        raise DatasetError(f"no RGB-D frames under {root}")
    return RGBDFileList(entries, **kwargs)
