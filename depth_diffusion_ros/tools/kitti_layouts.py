"""The KITTI folder layouts ``kitti-to-bag`` reads (raw drive, object folder, torch_kitti sample):
finding them and listing their frames with stamps and calibration. The layouts, topics and
stamps are described in :mod:`depth_diffusion_ros.tools.kitti_to_bag`.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from depth_diffusion_ros.geometry.calibration import (
    KittiCalibration,
    read_kitti_object_calib,
    read_kitti_raw_calib,
)

CAMERA_FRAMES = {2: "camera_color_left", 3: "camera_color_right"}
#: The note on KITTI object folders without --holdout-fraction.
OBJECT_NO_GT = "KITTI object frames have no depth ground truth: give --holdout-fraction to score against held-out LiDAR"


class KittiLayoutError(ValueError):
    """The folder is not one of the KITTI layouts this tool reads; the message says what is missing."""


@dataclass
class KittiFrame:
    """One camera frame of a KITTI sequence.

    image_stamp_ns / lidar_stamp_ns: integer nanoseconds. ``calibration(image_size)`` returns the
    :class:`KittiCalibration` for an image of (width, height) pixels.
    """

    index: int
    name: str
    image_path: Path
    lidar_path: Optional[Path]
    gt_path: Optional[Path]
    image_stamp_ns: int
    lidar_stamp_ns: int
    calibration: Callable[[tuple[int, int]], KittiCalibration]


@dataclass
class KittiSequence:
    """Frames found in a KITTI folder. ``layout`` is ``raw_drive``, ``object`` or ``torch_kitti``."""

    layout: str
    root: Path
    camera: int
    frames: list[KittiFrame]
    notes: list[str] = field(default_factory=list)


def parse_kitti_timestamps(path: Path) -> list[int]:
    """Read a KITTI ``timestamps.txt`` (``2011-09-26 13:02:25.964389445`` per line) as UTC ns.

    Raises KittiLayoutError naming the file and line for a malformed entry.
    """
    stamps = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            date_part, _, frac = line.partition(".")
            base = _dt.datetime.strptime(date_part, "%Y-%m-%d %H:%M:%S").replace(tzinfo=_dt.timezone.utc)
            frac_ns = int((frac + "000000000")[:9]) if frac else 0
        except ValueError as exc:
            raise KittiLayoutError(f"{path}:{lineno}: bad timestamp {line!r} ({exc})") from exc
        stamps.append(int(base.timestamp()) * 1_000_000_000 + frac_ns)
    return stamps


def _find_gt_dir(drive: Path, camera: int) -> Optional[Path]:
    sub = Path("proj_depth") / "groundtruth" / f"image_0{camera}"
    candidates = [drive / sub]
    for anc in (drive.parent, drive.parent.parent):
        for split in ("train", "val"):
            candidates.append(anc / split / drive.name / sub)
            candidates.extend(sorted(anc.glob(f"*/{split}/{drive.name}/{sub}")))
    for c in candidates:
        if c.is_dir():
            return c
    return None


def _raw_drive(path: Path, camera: int, gt_dir: Optional[Path], period_ns: int, start_ns: int) -> KittiSequence:
    image_dir = path / f"image_0{camera}" / "data"
    velo_dir = path / "velodyne_points" / "data"
    notes: list[str] = []
    calib_dir = next((d for d in (path.parent, path) if (d / "calib_cam_to_cam.txt").is_file()), None)
    if calib_dir is None or not (calib_dir / "calib_velo_to_cam.txt").is_file():
        raise KittiLayoutError(
            f"KITTI raw drive {path}: calib_cam_to_cam.txt and calib_velo_to_cam.txt not found in "
            f"{path.parent} (the date folder)"
        )
    calib = read_kitti_raw_calib(calib_dir / "calib_cam_to_cam.txt", calib_dir / "calib_velo_to_cam.txt", camera)
    images = sorted(image_dir.glob("*.png"))
    if not images:
        raise KittiLayoutError(f"KITTI raw drive {path}: no png images in {image_dir}")

    def stamps_for(sensor_dir: Path, n_files: int, what: str) -> Optional[list[int]]:
        ts_path = sensor_dir / "timestamps.txt"
        if not ts_path.is_file():
            notes.append(f"{ts_path} missing: {what} stamps are synthesised")
            return None
        stamps = parse_kitti_timestamps(ts_path)
        if len(stamps) < n_files:
            raise KittiLayoutError(f"{ts_path} has {len(stamps)} lines for {n_files} {what} frames")
        return stamps

    cam_stamps = stamps_for(path / f"image_0{camera}", int(images[-1].stem) + 1 if images[-1].stem.isdigit() else len(images), "image")
    velo_stamps = None
    if (path / "velodyne_points").is_dir():
        bins = sorted(velo_dir.glob("*.bin"))
        n_velo = int(bins[-1].stem) + 1 if bins and bins[-1].stem.isdigit() else len(bins)
        velo_stamps = stamps_for(path / "velodyne_points", n_velo, "LiDAR") if bins else None
    else:
        notes.append(f"{path}/velodyne_points missing: no LiDAR in the bag")
    gt = gt_dir if gt_dir is not None else _find_gt_dir(path, camera)
    if gt is not None:
        notes.append(f"ground truth from {gt}")
    frames = []
    for i, img in enumerate(images):
        idx = int(img.stem) if img.stem.isdigit() else i
        synth = start_ns + idx * period_ns
        cam_ns = cam_stamps[idx] if cam_stamps is not None else synth
        lidar = velo_dir / f"{img.stem}.bin"
        velo_ns = velo_stamps[idx] if velo_stamps is not None and idx < len(velo_stamps) else cam_ns
        gt_png = gt / img.name if gt is not None else None
        frames.append(KittiFrame(
            index=i, name=img.stem, image_path=img, lidar_path=lidar if lidar.is_file() else None,
            gt_path=gt_png if gt_png is not None and gt_png.is_file() else None,
            image_stamp_ns=cam_ns, lidar_stamp_ns=velo_ns, calibration=lambda size, c=calib: _checked(c, size),
        ))
    return KittiSequence("raw_drive", path, camera, frames, notes)


def _checked(calib: KittiCalibration, size: tuple[int, int]) -> KittiCalibration:
    if tuple(size) != tuple(calib.image_size):
        raise KittiLayoutError(
            f"image is {size[0]}x{size[1]} but the calibration says {calib.image_size[0]}x{calib.image_size[1]}"
        )
    return calib


def _object(path: Path, camera: int, period_ns: int, start_ns: int) -> KittiSequence:
    image_dir, velo_dir, calib_dir = path / f"image_{camera}", path / "velodyne", path / "calib"
    images = sorted(image_dir.glob("*.png"))
    if not images:
        raise KittiLayoutError(f"KITTI object folder {path}: no png images in {image_dir}")
    frames = []
    for i, img in enumerate(images):
        calib_path = calib_dir / f"{img.stem}.txt"
        lidar = velo_dir / f"{img.stem}.bin"
        stamp = start_ns + i * period_ns
        frames.append(KittiFrame(
            index=i, name=img.stem, image_path=img, lidar_path=lidar if lidar.is_file() else None,
            gt_path=None, image_stamp_ns=stamp, lidar_stamp_ns=stamp,
            calibration=lambda size, p=calib_path: read_kitti_object_calib(p, camera, size),
        ))
    return KittiSequence("object", path, camera, frames, [OBJECT_NO_GT])


def _torch_kitti(path: Path, camera: int, start_ns: int) -> KittiSequence:
    raw = path / "raw"
    img = raw / "sync_rect" / f"cam_0{camera}.png"
    if not img.is_file():
        raise KittiLayoutError(f"torch_kitti sample {path}: {img} not found")
    calib = read_kitti_raw_calib(raw / "calib_cam_to_cam.txt", raw / "calib_velo_to_cam.txt", camera)
    lidar = raw / "lidar_data.bin"
    gt = path / "depth_completion" / f"groundtruth_image_0{camera}.png"
    frame = KittiFrame(
        index=0, name=img.stem, image_path=img, lidar_path=lidar if lidar.is_file() else None,
        gt_path=gt if gt.is_file() else None, image_stamp_ns=start_ns, lidar_stamp_ns=start_ns,
        calibration=lambda size: _checked(calib, size),
    )
    return KittiSequence("torch_kitti", path, camera, [frame])


def discover_kitti(
    path: Path | str,
    camera: int = 2,
    gt_dir: Optional[Path | str] = None,
    period_s: float = 0.1,
    start_time_s: float = 1.0,
) -> KittiSequence:
    """Find the KITTI layout of ``path`` and list its frames (see the module docstring).

    Args:
        path: a raw drive folder (``*_sync``), an object folder (or its parent holding
            ``training``), or a torch_kitti sample folder.
        camera: 2 (left colour) or 3 (right colour).
        gt_dir: folder of KITTI depth-completion ground-truth pngs for a raw drive.
        period_s, start_time_s: synthetic stamps for frames without timestamps (seconds).

    Raises:
        KittiLayoutError: the folder matches no layout, or a layout's calib/images are missing.
        ValueError: malformed calibration (from the geometry parsers).
    """
    path = Path(path)
    if camera not in CAMERA_FRAMES:
        raise KittiLayoutError(f"camera must be 2 or 3 (the colour cameras), got {camera}")
    if not path.is_dir():
        raise KittiLayoutError(f"KITTI folder not found: {path}")
    if period_s <= 0:
        raise KittiLayoutError(f"--period must be > 0 s, got {period_s}")
    period_ns, start_ns = int(round(period_s * 1e9)), int(round(start_time_s * 1e9))
    if (path / f"image_0{camera}" / "data").is_dir():
        return _raw_drive(path, camera, Path(gt_dir) if gt_dir else None, period_ns, start_ns)
    if (path / "training" / f"image_{camera}").is_dir() and not (path / f"image_{camera}").is_dir():
        path = path / "training"
    if (path / f"image_{camera}").is_dir():
        if not (path / "calib").is_dir():
            raise KittiLayoutError(f"KITTI object folder {path} has no calib/ folder")
        return _object(path, camera, period_ns, start_ns)
    if (path / "raw" / "sync_rect").is_dir():
        return _torch_kitti(path, camera, start_ns)
    raise KittiLayoutError(
        f"{path} is not a KITTI folder this tool reads: expected a raw drive (image_0{camera}/data, "
        f"velodyne_points/data), an object folder (image_{camera}, velodyne, calib) or a torch_kitti "
        f"sample (raw/sync_rect, raw/lidar_data.bin)"
    )
