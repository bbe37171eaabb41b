"""KITTI raw drives in the official layout, frame by frame, and the split of the shared sequence.

Layout (Geiger et al., IJRR 2013; the layout users download and ``kitti-to-bag`` converts)::

    <raw_root>/<date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt (, calib_imu_to_velo.txt)
    <raw_root>/<date>/<date>_drive_<id>_sync/image_0{2,3}/data/<frame:010d>.png
    <raw_root>/<date>/<date>_drive_<id>_sync/velodyne_points/data/<frame:010d>.bin

Sparse depth is the Velodyne scan through the ONE projection (``geometry.projection``) with the
day's calibration (``P_rect_0X . R_rect_00 . Tr_velo_to_cam``, the P_rect translation kept).
Ground truth is a held-out fraction of each scan's 3-D points (``geometry.sampling.holdout_mask``
with the frame number as index: the split ``kitti-to-bag --holdout-fraction`` and ``replay``
make), or the whole scan for self-supervised training (``gt_source="lidar"``).

The shared sequence ``../shared/data/kitti_raw_2011_09_26_sequence`` (66 frames, camera 2) is
split by :data:`SEQUENCE_SPLIT`. The ego car drives up behind a stopped car and stops itself at
about frame 52; from there on the frames are nearly the same picture. A validation block taken
after frame 52 would repeat one frame, and training on frames 52-65 would show the network the
end of any block before it. So: ``train`` = frames 0-39 (moving), a 4-frame ``gap`` 40-43,
``val`` = 44-51 (the last moving frames), and ``static`` = 52-65 (stopped; never trained on,
reported on its own and used for the stability measurements of the temporal work). The car
crawls (the stopped car ahead comes about 7 cm closer per frame), so the validation frames
still look much like the last training frames: the frames of other drives held out beside them
(raw drive 0001 frame 5 camera 2 with its KITTI DC ground truth, object frame 000001) are the
independent test.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from training.datasets.kitti import KittiFileList, KittiFrameFiles, _raw_calib_for_drive, _require_files, _sized
from training.datasets.common import DatasetError

#: The split of the shared 66-frame sequence (frame numbers). See the module docstring for why.
SEQUENCE_SPLIT: dict[str, tuple[int, ...]] = {
    "train": tuple(range(0, 40)),
    "gap": tuple(range(40, 44)),
    "val": tuple(range(44, 52)),
    "static": tuple(range(52, 66)),
}


def find_drive(root: Union[str, Path], date: Optional[str] = None, drive: Optional[str] = None) -> tuple[Path, str, str]:
    """(raw_root, date, drive folder name) of one drive under ``root``.

    ``root`` may be the raw root (holding ``<date>/``), a date folder or a drive folder; date and
    drive are found when there is exactly one. Raises DatasetError naming what is missing or
    ambiguous.
    """
    root = Path(root)
    if (root / "image_02").is_dir() or (root / "velodyne_points").is_dir():  # a drive folder
        return root.parent.parent, root.parent.name, root.name
    if (root / "calib_cam_to_cam.txt").is_file():  # a date folder
        root, date = root.parent, root.name
    if date is None:
        dates = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "calib_cam_to_cam.txt").is_file()) \
            if root.is_dir() else []
        if len(dates) != 1:
            raise DatasetError(f"{root}: expected one KITTI raw date folder with calib_cam_to_cam.txt, found {dates}")
        date = dates[0]
    if drive is None:
        drives = sorted(p.name for p in (root / date).glob("*_sync") if p.is_dir())
        if len(drives) != 1:
            raise DatasetError(f"{root / date}: expected one *_sync drive folder, found {drives}; give drive=")
        drive = drives[0]
    if not (root / date / drive).is_dir():
        raise DatasetError(f"KITTI raw drive not found: {root / date / drive}")
    return root, date, drive


def sequence_frames(spec: Union[str, Sequence[int], None]) -> Optional[tuple[int, ...]]:
    """Frame numbers from a split name of :data:`SEQUENCE_SPLIT` (or ``"a+b"``), a list, or None."""
    if spec is None:
        return None
    if isinstance(spec, str):
        try:
            return tuple(f for part in spec.split("+") for f in SEQUENCE_SPLIT[part.strip()])
        except KeyError as exc:
            raise DatasetError(f"unknown sequence split {exc.args[0]!r}; use one of {sorted(SEQUENCE_SPLIT)}") from exc
    return tuple(int(f) for f in spec)


def drive_frames(root: Union[str, Path], date: Optional[str] = None, drive: Optional[str] = None,
                 camera: int = 2, frames: Union[str, Sequence[int], None] = None) -> list[KittiFrameFiles]:
    """The KittiFrameFiles of one raw drive's frames (all of them, or ``frames``: numbers or a
    split name), with the day's calibration for ``camera`` (2 or 3) and ``frame_index`` = the
    frame number. Raises DatasetError for missing files or frames."""
    if camera not in (2, 3):
        raise DatasetError(f"KITTI raw colour cameras are 2 and 3, got {camera}")
    raw_root, date, drive = find_drive(root, date, drive)
    d = raw_root / date / drive
    images = sorted((d / f"image_0{camera}" / "data").glob("*.png"))
    available = {int(p.stem): p for p in images}
    wanted = sequence_frames(frames)
    numbers = sorted(available) if wanted is None else list(wanted)
    missing = [n for n in numbers if n not in available]
    if missing or not numbers:
        raise DatasetError(f"{d}: frames {missing or numbers} not in image_0{camera}/data ({len(available)} there)")
    calibration = _raw_calib_for_drive(raw_root, date, camera)
    out = []
    for n in numbers:
        f = KittiFrameFiles(name=f"{drive}/{n:010d}/image_0{camera}", rgb=available[n], calibration=calibration,
                            lidar_bin=d / "velodyne_points" / "data" / f"{n:010d}.bin", extras={"frame_index": n})
        _require_files(f.name, [f.rgb, f.lidar_bin])
        out.append(f)
    return out


class KittiRawSequence(KittiFileList):
    """Frames of one KITTI raw drive (official layout) as depth-completion samples.

    Args:
        root: raw root, date folder or drive folder (see :func:`find_drive`).
        frames: frame numbers, a split name of :data:`SEQUENCE_SPLIT` ("train", "val",
            "static", "train+static", ...) or None for every frame.
        camera: 2 (left colour) or 3.
        gt_source: "heldout" (default: ``holdout_fraction`` of each scan's points, the rest is the
            input; the replay evaluation's split), "lidar" (the whole scan, for self-supervised
            training with :class:`training.transforms.SparseDropout`), "accumulated" (the scan
            densified by its neighbours in ``frames``, registered by LiDAR odometry and filtered
            for occlusion and moving objects, KITTI DC's recipe:
            :mod:`training.datasets.accumulation`; the input is the whole scan, so use it with
            ``SparseDropout(keep_gt=True)``) or "none".
        accumulate_window: neighbour scans on each side for gt_source="accumulated" (5: KITTI
            DC's 11 scans).
        date, drive, holdout_fraction, seed, transform, max_depth, cache: as
            :class:`~training.datasets.kitti.KittiFileList` (held-out split in 3-D points).
    Raises:
        DatasetError: layout, calibration or frame problems (named).
    """

    def __init__(self, root: Union[str, Path], frames: Union[str, Sequence[int], None] = None, camera: int = 2,
                 gt_source: str = "heldout", date: Optional[str] = None, drive: Optional[str] = None,
                 accumulate_window: int = 5, **kwargs):
        if gt_source == "heldout":
            kwargs.setdefault("holdout_space", "points")
        self.accumulated = None
        files = drive_frames(root, date, drive, camera, frames)
        if gt_source == "accumulated":
            from depth_diffusion_ros.geometry.calibration import read_velodyne_bin
            from training.datasets.accumulation import AccumulatedTargets

            by_number = {f.extras["frame_index"]: f.lidar_bin for f in files}
            self.accumulated = AccumulatedTargets(sorted(by_number), lambda n: read_velodyne_bin(by_number[n]),
                                                  window=accumulate_window)
            gt_source = "lidar"
        super().__init__(files, sparse_source="lidar", gt_source=gt_source, **kwargs)

    def load_frame(self, index: int):
        frame = super().load_frame(index)
        if self.accumulated is not None:
            f = self.frames[index]
            h, w = frame["rgb"].shape[:2]
            frame["gt_depth"], frame["sparse_depth"] = self.accumulated(
                f.extras["frame_index"], f.calibration.T_camera_lidar, _sized(f.calibration.intrinsics, w, h))
        return frame
