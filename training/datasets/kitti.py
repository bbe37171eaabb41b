"""KITTI loaders: depth completion, Eigen split, object folders, and explicit file lists.

Datasets: KITTI raw (Geiger et al., IJRR 2013), KITTI Depth Completion (Uhrig et al.,
"Sparsity Invariant CNNs", 3DV 2017), KITTI object (Geiger et al., CVPR 2012). Depth PNGs are
uint16 / 256 metres (``geometry.depth_codecs.read_kitti_depth_png``). Sparse depth from a
Velodyne scan always goes through the ONE projection ``geometry.projection.project_lidar_to_depth``
with ``geometry.calibration`` (the same code as the LiDAR node and replay).

Layouts:

* :class:`KittiDepthCompletion` (official)::

      <dc_root>/data_depth_velodyne/{train,val}/<drive>/proj_depth/velodyne_raw/image_0{2,3}/<frame>.png
      <dc_root>/data_depth_annotated/{train,val}/<drive>/proj_depth/groundtruth/image_0{2,3}/<frame>.png
      <raw_root>/<date>/<drive>/image_0{2,3}/data/<frame>.png
      <raw_root>/<date>/calib_cam_to_cam.txt          (K from P_rect_0{2,3})

* :class:`KittiValSelectionCropped` (official ``depth_selection/val_selection_cropped``:
  ``image/``, ``velodyne_raw/``, ``groundtruth_depth/``, ``intrinsics/``; 1216x352).
* :class:`KittiEigen`: split file lines ``2011_09_26/2011_09_26_drive_0002_sync 0000000069 l``
  (Eigen et al., NeurIPS 2014); GT = projected ``velodyne_points/data/<frame>.bin``.
* :class:`KittiObject`: ``image_2/``, ``velodyne/``, ``calib/`` of the object benchmark; sparse
  depth by projection, optionally with a held-out fraction of the projected points as GT.
* :class:`KittiFileList` of :class:`KittiFrameFiles`: explicit paths, for small or odd layouts
  such as ``../shared/data/kitti_raw_depth_completion_torch_kitti`` (:func:`torch_kitti_frames`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from depth_diffusion_ros.geometry.calibration import (
    KittiCalibration,
    read_kitti_object_calib,
    read_kitti_raw_calib,
    read_velodyne_bin,
)
from depth_diffusion_ros.geometry.depth_codecs import read_kitti_depth_png
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from training.datasets.common import (
    DatasetError,
    DepthDataset,
    Frame,
    FrameTransform,
    read_rgb,
)

KITTI_MAX_DEPTH_TRAIN = 88.0  # DiffusionDepth KITTI config (max depth 88 m train, 80 m test)
KITTI_MAX_DEPTH_EVAL = 80.0


def split_sparse_points(
    depth: np.ndarray, holdout_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split the valid pixels of a sparse depth map into input and held-out sets.

    Every valid pixel goes to exactly one output. Used for self-supervised training (dropped
    points supervise) and for evaluation on LiDAR frames without a GT map (held-out points are
    the GT, as in the shared data README for ``kitti_object_kuixu``).

    Args:
        depth: (H, W) float32 metres, 0 = empty.
        holdout_fraction: in [0, 1); the expected fraction of valid pixels held out.
        rng: numpy random generator.

    Returns:
        (input_depth, heldout_depth), both (H, W) float32.

    Raises:
        ValueError: holdout_fraction outside [0, 1).
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    valid = depth > 0
    held = valid & (rng.random(depth.shape) < holdout_fraction)
    return np.where(valid & ~held, depth, 0).astype(np.float32), np.where(held, depth, 0).astype(np.float32)


@dataclass
class KittiFrameFiles:
    """Paths of one KITTI frame. At least one of ``sparse_png``/``lidar_bin`` gives the sparse
    input (``sparse_source`` of the dataset picks); ``gt_png`` is optional.

    Attributes:
        name: identifier (e.g. ``2011_09_26_drive_0001_sync/0000000005/image_02``).
        rgb: colour image path.
        calibration: the camera's KittiCalibration (intrinsics of ``rgb``'s full size and
            T_camera_lidar); or ``K`` (3, 3) when there is no LiDAR scan to project.
    """

    name: str
    rgb: Path
    calibration: Optional[KittiCalibration] = None
    K: Optional[np.ndarray] = None
    sparse_png: Optional[Path] = None
    gt_png: Optional[Path] = None
    lidar_bin: Optional[Path] = None
    extras: dict = field(default_factory=dict)

    def intrinsics_matrix(self) -> np.ndarray:
        if self.calibration is not None:
            return self.calibration.intrinsics.K
        if self.K is None:
            raise DatasetError(f"{self.name}: neither calibration nor K given")
        return np.asarray(self.K, dtype=np.float64).reshape(3, 3)


def project_scan(lidar_bin: Path, calibration: KittiCalibration, width: int, height: int,
                 max_depth: float = np.inf) -> np.ndarray:
    """Project a KITTI Velodyne ``.bin`` into the (width x height) camera image of
    ``calibration`` with the shared z-buffer projection. Returns (H, W) float32 m, 0 = empty."""
    points = read_velodyne_bin(lidar_bin)
    intr = _sized(calibration.intrinsics, width, height)
    return project_lidar_to_depth(points[:, :3], calibration.T_camera_lidar, intr, max_depth=max_depth)


def _sized(intr: Intrinsics, width: int, height: int) -> Intrinsics:
    """The same pinhole with the image size of the actual file (calib files may disagree)."""
    if (intr.width, intr.height) == (width, height):
        return intr
    return Intrinsics(intr.fx, intr.fy, intr.cx, intr.cy, width, height)


class KittiFileList(DepthDataset):
    """KITTI frames from explicit file paths (:class:`KittiFrameFiles`).

    Args:
        frames: the frames.
        sparse_source: "png" (KITTI DC ``velodyne_raw`` PNG), "lidar" (project ``lidar_bin``),
            or "none" (monocular: no sparse input).
        gt_source: "png" (``gt_png``), "lidar" (projected scan), "heldout" (a held-out
            ``holdout_fraction`` of the projected/sparse points; the rest stays as input) or
            "none".
        holdout_fraction: for gt_source="heldout" (0.1 in the shared data README).
        holdout_space: "pixels" (hold out projected pixels of the sparse map) or "points" (hold
            out 3-D LiDAR points before projection with ``geometry.sampling.holdout_mask`` and the
            frame's index: exactly the split of ``kitti-to-bag --holdout-fraction`` / ``replay``,
            so scores match the replay evaluation; needs sparse_source="lidar").
        seed: seed of the held-out split (fixed per frame so evaluation is reproducible).
        transform, max_depth, cache: see :class:`DepthDataset`.

    Raises:
        DatasetError: unknown sources, no frames, or a frame lacking the files its source needs.
    """

    SPARSE_SOURCES = ("png", "lidar", "none")
    GT_SOURCES = ("png", "lidar", "heldout", "none")

    def __init__(
        self,
        frames: Sequence[KittiFrameFiles],
        sparse_source: str = "png",
        gt_source: str = "png",
        holdout_fraction: float = 0.1,
        holdout_space: str = "pixels",
        seed: int = 0,
        transform: Optional[FrameTransform] = None,
        max_depth: Optional[float] = None,
        cache: bool = False,
    ):
        super().__init__(transform=transform, max_depth=max_depth, cache=cache)
        if sparse_source not in self.SPARSE_SOURCES:
            raise DatasetError(f"sparse_source must be one of {self.SPARSE_SOURCES}, got {sparse_source!r}")
        if gt_source not in self.GT_SOURCES:
            raise DatasetError(f"gt_source must be one of {self.GT_SOURCES}, got {gt_source!r}")
        if gt_source == "heldout" and sparse_source == "none":
            raise DatasetError("gt_source='heldout' needs a sparse source to hold points out of")
        if holdout_space not in ("pixels", "points"):
            raise DatasetError(f"holdout_space must be 'pixels' or 'points', got {holdout_space!r}")
        if gt_source == "heldout" and holdout_space == "points" and sparse_source != "lidar":
            raise DatasetError("holdout_space='points' needs sparse_source='lidar' (a scan to split)")
        self.holdout_space = holdout_space
        self.frames = list(frames)
        if not self.frames:
            raise DatasetError(f"{type(self).__name__}: no frames")
        self.sparse_source, self.gt_source = sparse_source, gt_source
        self.holdout_fraction, self.seed = float(holdout_fraction), int(seed)
        for f in self.frames:
            need = []
            if sparse_source == "png" or gt_source == "png":
                need += [("sparse_png", f.sparse_png)] if sparse_source == "png" else []
                need += [("gt_png", f.gt_png)] if gt_source == "png" else []
            if "lidar" in (sparse_source, gt_source):
                need += [("lidar_bin", f.lidar_bin), ("calibration", f.calibration)]
            missing = [k for k, v in need if v is None]
            if missing:
                raise DatasetError(f"frame {f.name}: {missing} needed for sparse_source={sparse_source!r}, "
                                   f"gt_source={gt_source!r}")

    def __len__(self) -> int:
        return len(self.frames)

    def sample_name(self, index: int) -> str:
        return self.frames[index].name

    def _read_depth_png(self, path: Path, shape: tuple[int, int], what: str) -> np.ndarray:
        if not Path(path).is_file():
            raise DatasetError(f"{what} file not found: {path}")
        depth = read_kitti_depth_png(path)
        if depth.shape != shape:
            raise DatasetError(f"{what} {path} is {depth.shape[::-1]} (WxH), image is {shape[::-1]}")
        return depth

    def load_frame(self, index: int) -> Frame:
        f = self.frames[index]
        rgb = read_rgb(f.rgb)
        h, w = rgb.shape[:2]
        scan = None
        if self.gt_source == "heldout" and self.holdout_space == "points":
            from depth_diffusion_ros.geometry.sampling import holdout_mask

            points = read_velodyne_bin(f.lidar_bin)
            held = holdout_mask(len(points), self.holdout_fraction, self.seed, f.extras.get("frame_index", index))
            intr = _sized(f.calibration.intrinsics, w, h)
            sparse = project_lidar_to_depth(points[~held, :3], f.calibration.T_camera_lidar, intr)
            gt = project_lidar_to_depth(points[held, :3], f.calibration.T_camera_lidar, intr)
            return {"rgb": rgb, "sparse_depth": sparse, "gt_depth": gt, "K": f.intrinsics_matrix()}
        if "lidar" in (self.sparse_source, self.gt_source):
            scan = project_scan(f.lidar_bin, f.calibration, w, h)
        sparse = None
        if self.sparse_source == "png":
            sparse = self._read_depth_png(f.sparse_png, (h, w), "sparse depth")
        elif self.sparse_source == "lidar":
            sparse = scan
        gt = None
        if self.gt_source == "png":
            gt = self._read_depth_png(f.gt_png, (h, w), "ground truth")
        elif self.gt_source == "lidar":
            gt = scan
        elif self.gt_source == "heldout":
            rng = np.random.default_rng([self.seed, index])
            sparse, gt = split_sparse_points(sparse, self.holdout_fraction, rng)
        return {"rgb": rgb, "sparse_depth": sparse, "gt_depth": gt, "K": f.intrinsics_matrix()}


# ----------------------------------------------------------------------------- file-list builders

def torch_kitti_frames(root: str | Path, cameras: Sequence[int] = (2, 3)) -> list[KittiFrameFiles]:
    """Frames of the small ``torch_kitti`` test layout (``../shared/data/kitti_raw_depth_completion_torch_kitti``)::

        raw/sync_rect/cam_0{2,3}.png, raw/lidar_data.bin, raw/calib_{cam_to_cam,velo_to_cam}.txt
        depth_completion/velodyne_raw_image_0{2,3}.png, depth_completion/groundtruth_image_0{2,3}.png

    One frame per camera (KITTI raw 2011_09_26_drive_0001 frame 5). K comes from ``P_rect_0X``
    (fx=fy=721.5377, cx=609.5593, cy=172.854 for camera 2 at 1242x375), not from
    ``depth_completion/intrinsics.txt`` (which is for the 1216x352 crop).

    Raises:
        DatasetError: the folder or a file is missing, or a camera is not 2/3.
    """
    root = Path(root)
    raw, dc = root / "raw", root / "depth_completion"
    c2c, v2c = raw / "calib_cam_to_cam.txt", raw / "calib_velo_to_cam.txt"
    frames = []
    for cam in cameras:
        if cam not in (2, 3):
            raise DatasetError(f"torch_kitti layout has colour cameras 2 and 3, got {cam}")
        f = KittiFrameFiles(
            name=f"2011_09_26_drive_0001_sync/0000000005/image_0{cam}",
            rgb=raw / "sync_rect" / f"cam_0{cam}.png",
            calibration=_raw_calib(c2c, v2c, cam),
            sparse_png=dc / f"velodyne_raw_image_0{cam}.png",
            gt_png=dc / f"groundtruth_image_0{cam}.png",
            lidar_bin=raw / "lidar_data.bin",
        )
        _require_files(f.name, [f.rgb, f.sparse_png, f.gt_png, f.lidar_bin])
        frames.append(f)
    return frames


def _require_files(name: str, paths: Sequence[Optional[Path]]) -> None:
    missing = [str(p) for p in paths if p is not None and not Path(p).is_file()]
    if missing:
        raise DatasetError(f"{name}: file(s) not found: {missing}")


def _raw_calib(c2c: Path, v2c: Path, cam: int) -> KittiCalibration:
    try:
        return read_kitti_raw_calib(c2c, v2c, camera=cam)
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(str(exc)) from exc


_CALIB_CACHE: dict = {}


def _raw_calib_for_drive(raw_root: Path, date: str, cam: int) -> KittiCalibration:
    key = (str(raw_root), date, cam)
    if key not in _CALIB_CACHE:
        d = raw_root / date
        _CALIB_CACHE[key] = _raw_calib(d / "calib_cam_to_cam.txt", d / "calib_velo_to_cam.txt", cam)
    return _CALIB_CACHE[key]


class KittiDepthCompletion(KittiFileList):
    """Official KITTI Depth Completion layout (module docstring), one split.

    Args:
        dc_root: folder holding ``data_depth_velodyne`` and (optionally) ``data_depth_annotated``.
        raw_root: KITTI raw root (``<date>/<drive>/image_0X/data`` and ``<date>/calib_*.txt``).
        split: "train" or "val".
        cameras: colour cameras to use (2 and/or 3).
        require_gt: index only frames with an annotated GT map (the DC protocol). False indexes
            every velodyne_raw frame (self-supervised training; gt_source must not be "png").
        sparse_source / gt_source / ...: see :class:`KittiFileList`; "lidar" reads
            ``<drive>/velodyne_points/data/<frame>.bin``.

    Raises:
        DatasetError: missing folders or no frames found.
    """

    def __init__(
        self,
        dc_root: str | Path,
        raw_root: str | Path,
        split: str = "train",
        cameras: Sequence[int] = (2, 3),
        require_gt: bool = True,
        sparse_source: str = "png",
        gt_source: str = "png",
        **kwargs,
    ):
        dc_root, raw_root = Path(dc_root), Path(raw_root)
        if split not in ("train", "val"):
            raise DatasetError(f"KITTI DC split must be 'train' or 'val', got {split!r}")
        velo_dir = dc_root / "data_depth_velodyne" / split
        gt_dir = dc_root / "data_depth_annotated" / split
        if not velo_dir.is_dir():
            raise DatasetError(f"KITTI DC folder not found: {velo_dir}")
        if require_gt and not gt_dir.is_dir():
            raise DatasetError(f"KITTI DC annotated folder not found: {gt_dir} (or pass require_gt=False)")
        frames = []
        for drive_dir in sorted(p for p in velo_dir.iterdir() if p.is_dir()):
            drive = drive_dir.name
            date = drive[:10]
            for cam in cameras:
                img = f"image_0{cam}"
                for sparse_png in sorted((drive_dir / "proj_depth" / "velodyne_raw" / img).glob("*.png")):
                    frame_id = sparse_png.stem
                    gt_png = gt_dir / drive / "proj_depth" / "groundtruth" / img / f"{frame_id}.png"
                    if require_gt and not gt_png.is_file():
                        continue  # annotated GT skips the first/last 5 frames of each drive
                    rgb = raw_root / date / drive / img / "data" / f"{frame_id}.png"
                    lidar = raw_root / date / drive / "velodyne_points" / "data" / f"{frame_id}.bin"
                    frames.append(KittiFrameFiles(
                        name=f"{drive}/{frame_id}/{img}",
                        rgb=rgb,
                        calibration=_raw_calib_for_drive(raw_root, date, cam),
                        sparse_png=sparse_png,
                        gt_png=gt_png if gt_png.is_file() else None,
                        lidar_bin=lidar,
                    ))
        if not frames:
            raise DatasetError(f"no KITTI DC frames under {velo_dir} (cameras {list(cameras)})")
        super().__init__(frames, sparse_source=sparse_source, gt_source=gt_source, **kwargs)


class KittiValSelectionCropped(KittiFileList):
    """Official ``depth_selection/val_selection_cropped`` (1000 frames, 1216x352) with per-frame
    intrinsics files (9 numbers, row-major K).

    Args:
        root: the ``val_selection_cropped`` folder (holding ``image/``, ``velodyne_raw/``,
            ``groundtruth_depth/``, ``intrinsics/``).
    """

    def __init__(self, root: str | Path, **kwargs):
        root = Path(root)
        img_dir = root / "image"
        if not img_dir.is_dir():
            raise DatasetError(f"val_selection_cropped image folder not found: {img_dir}")
        frames = []
        for rgb in sorted(img_dir.glob("*.png")):
            m = re.match(r"(.+)_image_(\d+)_image_0(\d)$", rgb.stem)
            if not m:
                raise DatasetError(f"unexpected val_selection_cropped image name: {rgb.name}")
            drive, fid, cam = m.groups()
            sparse = root / "velodyne_raw" / f"{drive}_velodyne_raw_{fid}_image_0{cam}.png"
            gt = root / "groundtruth_depth" / f"{drive}_groundtruth_depth_{fid}_image_0{cam}.png"
            intr = root / "intrinsics" / f"{rgb.stem}.txt"
            _require_files(rgb.stem, [sparse, gt, intr])
            try:
                K = np.array([float(v) for v in intr.read_text().split()], dtype=np.float64)
            except ValueError as exc:
                raise DatasetError(f"{intr}: not 9 numbers ({exc})") from exc
            if K.size != 9:
                raise DatasetError(f"{intr}: expected 9 numbers (3x3 K), got {K.size}")
            frames.append(KittiFrameFiles(name=f"{drive}/{fid}/image_0{cam}", rgb=rgb, K=K.reshape(3, 3),
                                          sparse_png=sparse, gt_png=gt))
        if not frames:
            raise DatasetError(f"no images in {img_dir}")
        super().__init__(frames, sparse_source="png", gt_source="png", **kwargs)


def read_eigen_split(split_file: str | Path) -> list[tuple[str, str, int]]:
    """Parse an Eigen split file: lines ``<date>/<drive> <frame> <l|r>``.

    Returns:
        list of (date/drive, 10-digit frame id, camera 2 or 3).

    Raises:
        DatasetError: file missing or a malformed line (named by number).
    """
    split_file = Path(split_file)
    if not split_file.is_file():
        raise DatasetError(f"Eigen split file not found: {split_file}")
    out = []
    for lineno, line in enumerate(split_file.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[2] not in ("l", "r") or not parts[1].isdigit() or "/" not in parts[0]:
            raise DatasetError(f"{split_file}:{lineno}: expected '<date>/<drive> <frame> l|r', got {line!r}")
        out.append((parts[0].strip("/"), f"{int(parts[1]):010d}", 2 if parts[2] == "l" else 3))
    if not out:
        raise DatasetError(f"Eigen split file {split_file} lists no frames")
    return out


class KittiEigen(KittiFileList):
    """KITTI raw frames of an Eigen split (Eigen et al., NeurIPS 2014; 697 test frames).

    Ground truth is the Velodyne scan projected with the shared projection (``gt_source="lidar"``),
    the usual Eigen GT; the evaluation applies the Garg/Eigen crop and the 80 m cap
    (:mod:`training.evaluate`). ``sparse_source`` defaults to "none" (monocular, as in the
    paper); "lidar" gives depth completion from the same scan (then use gt_source="heldout").

    Args:
        raw_root: KITTI raw root (``<date>/<drive>/image_0X/data``, ``velodyne_points/data``,
            ``<date>/calib_*.txt``).
        split_file: Eigen split text file.

    Raises:
        DatasetError: split/calibration problems or missing files (named).
    """

    def __init__(self, raw_root: str | Path, split_file: str | Path, sparse_source: str = "none",
                 gt_source: str = "lidar", **kwargs):
        raw_root = Path(raw_root)
        frames = []
        for drive_path, fid, cam in read_eigen_split(split_file):
            date = drive_path.split("/")[0]
            d = raw_root / drive_path
            f = KittiFrameFiles(
                name=f"{drive_path}/{fid}/image_0{cam}",
                rgb=d / f"image_0{cam}" / "data" / f"{fid}.png",
                calibration=_raw_calib_for_drive(raw_root, date, cam),
                lidar_bin=d / "velodyne_points" / "data" / f"{fid}.bin",
            )
            _require_files(f.name, [f.rgb, f.lidar_bin])
            frames.append(f)
        super().__init__(frames, sparse_source=sparse_source, gt_source=gt_source, **kwargs)


class KittiObject(KittiFileList):
    """KITTI object-benchmark folders (``image_2/``, ``velodyne/``, ``calib/``): the images with
    sparse depth from projecting the full scan with ``P2 . R0_rect . Tr_velo_to_cam``.

    Args:
        root: the ``training`` (or ``testing``) folder.
        ids: frame ids like "000000"; None = every ``image_2/*.png``.
        gt_source: "lidar" (all projected points, for self-supervised training with
            :class:`training.transforms.SparseDropout`), "heldout" (``holdout_fraction`` of the
            points as GT, the rest as input: the evaluation protocol) or "none".

    Raises:
        DatasetError: missing files or calibration problems.
    """

    def __init__(self, root: str | Path, ids: Optional[Sequence[str]] = None, gt_source: str = "lidar",
                 **kwargs):
        root = Path(root)
        all_ids = sorted(p.stem for p in (root / "image_2").glob("*.png"))
        if ids is None:
            ids = all_ids
        frames = []
        for fid in ids:
            fid = str(fid)
            rgb = root / "image_2" / f"{fid}.png"
            calib = root / "calib" / f"{fid}.txt"
            lidar = root / "velodyne" / f"{fid}.bin"
            _require_files(f"object {fid}", [rgb, calib, lidar])
            try:
                calibration = read_kitti_object_calib(calib, camera=2, image_size=png_size(rgb))
            except (FileNotFoundError, ValueError) as exc:
                raise DatasetError(str(exc)) from exc
            # frame_index = position in the sorted folder, as kitti-to-bag numbers the frames
            frames.append(KittiFrameFiles(name=f"object/{fid}", rgb=rgb, calibration=calibration,
                                          lidar_bin=lidar, extras={"frame_index": all_ids.index(fid)}))
        if not frames:
            raise DatasetError(f"no KITTI object frames under {root / 'image_2'}")
        super().__init__(frames, sparse_source="lidar", gt_source=gt_source, **kwargs)


def png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a PNG file from its IHDR header, without decoding the image.

    Raises:
        DatasetError: not a PNG file.
    """
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise DatasetError(f"{path} is not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
