"""``depth-diffusion-ros kitti-to-bag``: KITTI folders -> rosbag2 (MCAP by default, or sqlite3).

Layouts read (found by looking at the folder given):

* **KITTI raw drive** (``YYYY_MM_DD/YYYY_MM_DD_drive_NNNN_sync``): ``image_0X/data/*.png`` and
  ``image_0X/timestamps.txt``, ``velodyne_points/data/*.bin`` and ``velodyne_points/timestamps.txt``,
  and the date folder's ``calib_cam_to_cam.txt`` / ``calib_velo_to_cam.txt``. KITTI
  depth-completion ground truth (``proj_depth/groundtruth/image_0X/*.png``, Uhrig et al., 3DV 2017)
  is used when it is found beside the drive (inside it, or in ``train``/``val`` folders next to the
  date folder or one level above), or given with ``--gt-dir``.
* **KITTI object** (``image_2``, ``velodyne``, ``calib``; one calib file per frame).
* **torch_kitti sample** (``raw/sync_rect/cam_02.png``, ``raw/lidar_data.bin``, ``raw/calib_*.txt``,
  ``depth_completion/groundtruth_image_02.png``): one frame of KITTI raw with its DC ground truth.

Topics and frames follow kitti2bag (left colour camera shown; camera 3 uses ``camera_color_right``):

=============================================  ===============================  ===================
topic                                          type                             frame_id
=============================================  ===============================  ===================
``/kitti/camera_color_left/image_raw``         sensor_msgs/Image rgb8           camera_color_left
``/kitti/camera_color_left/camera_info``       sensor_msgs/CameraInfo           camera_color_left
``/kitti/camera_color_left/depth_gt``          sensor_msgs/Image 32FC1 (NaN)    camera_color_left
``/kitti/camera_color_left/image_aux``         Image rgb8 (``--image-aux``)     camera_color_left
``/kitti/velo/pointcloud``                     sensor_msgs/PointCloud2 xyz+i    velo_link
``/kitti/velo/pointcloud_holdout``             PointCloud2 (``--holdout-fraction``) velo_link
``/tf_static``                                 tf2_msgs/TFMessage               camera <- velo_link
=============================================  ===============================  ===================

``--image-aux previous`` also writes, with each image's stamp, the previous frame's image (the
first frame: the second's) on ``image_aux``: the auxiliary view of IID-RDepth's AV-LFE
(``depth_estimation_node`` with ``use_image_aux``), as it was trained on this sequence.

CameraInfo carries ``P = [K | 0]``: the ``P_rect`` translation (stereo baseline) is folded into the
``/tf_static`` transform (``KittiCalibration.T_camera_lidar``), so projecting the point cloud with
tf + ``P`` reproduces the devkit projection ``P_rect . R_rect_00 . Tr_velo_to_cam``.
Stamps: from ``timestamps.txt`` (read as UTC) for raw drives; layouts without timestamps get
``--start-time + i * --period``. A frame whose LiDAR scan is missing is written without one.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from depth_diffusion_ros.geometry.calibration import (
    KittiCalibration,
    read_velodyne_bin,
)
from depth_diffusion_ros.geometry.depth_codecs import read_kitti_depth_png
from depth_diffusion_ros.geometry.sampling import holdout_mask
from depth_diffusion_ros.tools.bag_io import (
    CAMERA_INFO,
    IMAGE,
    POINTCLOUD2,
    TF_MESSAGE,
    BagError,
    BagWriter,
    make_camera_info,
    make_depth_image,
    make_image,
    make_pointcloud_xyzi,
    make_tf_message,
)
from depth_diffusion_ros.tools.kitti_layouts import (  # noqa: F401 - re-exported: kitti-to-bag's API
    CAMERA_FRAMES,
    OBJECT_NO_GT,
    KittiFrame,
    KittiLayoutError,
    KittiSequence,
    discover_kitti,
    parse_kitti_timestamps,
)

LOG = logging.getLogger("depth_diffusion_ros.kitti_to_bag")

LIDAR_FRAME = "velo_link"
TOPIC_POINTS = "/kitti/velo/pointcloud"
TOPIC_POINTS_HOLDOUT = "/kitti/velo/pointcloud_holdout"
TOPIC_TF_STATIC = "/tf_static"
#: The note on KITTI object folders with --holdout-fraction (without: kitti_layouts.OBJECT_NO_GT).
OBJECT_HOLDOUT = ("KITTI object frames have no depth ground truth: {pct:g} % of each scan is held out on "
                  f"{TOPIC_POINTS_HOLDOUT} for scoring (replay and depth_evaluation_node ground_truth: points)")
#: Storage file suffixes: rosbag2 names the file inside the bag folder after the folder.
STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}


def camera_topics(camera: int = 2) -> dict[str, str]:
    """kitti2bag topic names of KITTI colour camera ``camera`` (2 = left, 3 = right)."""
    base = f"/kitti/{CAMERA_FRAMES[camera]}"
    return {
        "image": f"{base}/image_raw",
        "camera_info": f"{base}/camera_info",
        "depth_gt": f"{base}/depth_gt",
        "image_aux": f"{base}/image_aux",
        "points": TOPIC_POINTS,
        "points_holdout": TOPIC_POINTS_HOLDOUT,
        "tf_static": TOPIC_TF_STATIC,
    }


@dataclass
class ConversionSummary:
    """What ``convert`` wrote: message counts per topic, frames skipped per reason, and how many
    frames were written without a LiDAR scan (missing .bin)."""

    path: Path
    layout: str
    frames_written: int
    counts: dict[str, int]
    skipped: dict[str, int]
    notes: list[str]
    frames_without_lidar: int = 0


class _FrameSkip(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode image {path} (missing, truncated or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _load_frame(frame: KittiFrame) -> tuple[np.ndarray, KittiCalibration, Optional[np.ndarray], Optional[np.ndarray]]:
    """(rgb, calibration, LiDAR points or None, ground truth or None) of one frame.

    Raises:
        _FrameSkip / KittiLayoutError / ValueError / OSError: the frame cannot be written.
    """
    rgb = _read_rgb(frame.image_path)
    h, w = rgb.shape[:2]
    calib = frame.calibration((w, h))
    points = read_velodyne_bin(frame.lidar_path) if frame.lidar_path is not None else None
    gt = read_kitti_depth_png(frame.gt_path) if frame.gt_path is not None else None
    if gt is not None and gt.shape != (h, w):
        raise _FrameSkip("gt_size_mismatch", f"ground truth {frame.gt_path} is {gt.shape[1]}x{gt.shape[0]}, image {w}x{h}")
    return rgb, calib, points, gt


def _skip_reason(exc: Exception) -> str:
    if isinstance(exc, _FrameSkip):
        return exc.reason
    return "image_size_mismatch" if isinstance(exc, KittiLayoutError) else "unreadable_file"


def _declare_topics(bag: BagWriter, topics: dict[str, str], holdout: bool, with_gt: bool) -> None:
    bag.add_topic(topics["tf_static"], TF_MESSAGE, latched=True)
    bag.add_topic(topics["image"], IMAGE)
    bag.add_topic(topics["camera_info"], CAMERA_INFO)
    bag.add_topic(topics["points"], POINTCLOUD2)
    if holdout:
        bag.add_topic(topics["points_holdout"], POINTCLOUD2)
    if with_gt:
        bag.add_topic(topics["depth_gt"], IMAGE)


def _write_points(bag: BagWriter, topics: dict[str, str], frame: KittiFrame, points: np.ndarray,
                  holdout_fraction: float, seed: int) -> None:
    """The scan (less the held-out points) and, with a holdout fraction, the held-out points."""
    if holdout_fraction > 0:
        held = holdout_mask(len(points), holdout_fraction, seed, frame.index)
        bag.write(topics["points_holdout"], frame.lidar_stamp_ns,
                  make_pointcloud_xyzi(points[held], frame.lidar_stamp_ns, LIDAR_FRAME))
        points = points[~held]
    bag.write(topics["points"], frame.lidar_stamp_ns, make_pointcloud_xyzi(points, frame.lidar_stamp_ns, LIDAR_FRAME))


def convert(
    sequence: KittiSequence,
    output: Path | str,
    storage: str = "mcap",
    overwrite: bool = False,
    holdout_fraction: float = 0.0,
    seed: int = 0,
    max_frames: Optional[int] = None,
    progress: bool = False,
    image_aux: str = "none",
) -> ConversionSummary:
    """Write ``sequence`` to a rosbag2 at ``output`` (topics in the module docstring).

    holdout_fraction: when > 0, that fraction of each scan's points (chosen by
    :func:`~depth_diffusion_ros.geometry.sampling.holdout_mask` with ``seed`` and the frame index,
    the same split ``replay`` makes) goes to ``/kitti/velo/pointcloud_holdout`` instead of the main
    cloud, so that ``ros2 bag play`` + the evaluation node scores against it.

    Per-frame problems (unreadable image or scan, image size not matching the calibration) skip the
    frame and are counted in ``skipped``; the bag stays valid. Raises BagError when the output cannot
    be written, ValueError for a holdout fraction outside [0, 1) or an unknown ``image_aux``.

    image_aux: "none" or "previous" (module docstring).
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {holdout_fraction}")
    if image_aux not in IMAGE_AUX_CHOICES:
        raise ValueError(f"image_aux={image_aux!r}: use one of {IMAGE_AUX_CHOICES}")
    topics = camera_topics(sequence.camera)
    cam_frame = CAMERA_FRAMES[sequence.camera]
    frames = sequence.frames[: max_frames] if max_frames else sequence.frames
    skipped: dict[str, int] = {}
    written = without_lidar = 0
    last_T: Optional[np.ndarray] = None
    iterator = frames
    if progress:
        from tqdm import tqdm

        iterator = tqdm(frames, desc="kitti-to-bag", unit="frame")
    with BagWriter(output, storage=storage, overwrite=overwrite) as bag:
        _declare_topics(bag, topics, holdout_fraction > 0, any(f.gt_path is not None for f in frames))
        if image_aux == "previous":
            bag.add_topic(topics["image_aux"], IMAGE)
        for frame in iterator:
            try:
                rgb, calib, points, gt = _load_frame(frame)
            except (ValueError, OSError) as exc:
                reason = _skip_reason(exc)
                skipped[reason] = skipped.get(reason, 0) + 1
                LOG.warning("frame %s skipped: %s", frame.name, exc)
                continue
            t_img = frame.image_stamp_ns
            if last_T is None or not np.allclose(last_T, calib.T_camera_lidar):
                stamp = min(t_img, frame.lidar_stamp_ns)
                bag.write(topics["tf_static"], stamp, make_tf_message(calib.T_camera_lidar, cam_frame, LIDAR_FRAME, stamp))
                last_T = calib.T_camera_lidar
            if points is not None:
                _write_points(bag, topics, frame, points, holdout_fraction, seed)
            else:
                without_lidar += 1
            bag.write(topics["camera_info"], t_img, make_camera_info(calib.intrinsics, t_img, cam_frame))
            bag.write(topics["image"], t_img, make_image(rgb, "rgb8", t_img, cam_frame))
            if gt is not None:
                bag.write(topics["depth_gt"], t_img, make_depth_image(gt, t_img, cam_frame))
            if image_aux == "previous":
                aux = previous_image(frames, frame)
                if aux is not None and aux.shape == rgb.shape:
                    bag.write(topics["image_aux"], t_img, make_image(aux, "rgb8", t_img, cam_frame))
            written += 1
        counts = dict(bag.counts)
    return ConversionSummary(Path(output), sequence.layout, written, counts, skipped, list(sequence.notes),
                             without_lidar)


IMAGE_AUX_CHOICES = ("none", "previous")


def previous_image(frames: list[KittiFrame], frame: KittiFrame) -> Optional[np.ndarray]:
    """The image of the frame before ``frame`` in ``frames`` (the first frame: the second's), or
    None for a one-frame sequence or an unreadable image."""
    k = frames.index(frame)
    other = k - 1 if k > 0 else 1
    if other >= len(frames):
        return None
    try:
        return _read_rgb(frames[other].image_path)
    except (ValueError, OSError):
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``depth-diffusion-ros kitti-to-bag``."""
    parser.add_argument("input", type=Path, help="KITTI raw drive (*_sync), object folder or torch_kitti sample")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output bag folder (must not exist; a trailing .mcap/.db3 is dropped: a bag is a folder)")
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="rosbag2 storage (default mcap)")
    parser.add_argument("--camera", type=int, choices=[2, 3], default=2, help="KITTI colour camera (2 = left)")
    parser.add_argument("--gt-dir", type=Path, default=None, help="KITTI depth-completion groundtruth/image_0X folder")
    parser.add_argument("--max-frames", type=int, default=None, help="convert only the first N frames")
    parser.add_argument("--holdout-fraction", type=float, default=0.0,
                        help="put this fraction of each scan on /kitti/velo/pointcloud_holdout (for evaluation)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    parser.add_argument("--period", type=float, default=0.1, help="frame period (s) where the layout has no timestamps")
    parser.add_argument("--start-time", type=float, default=1.0, help="first stamp (s) where the layout has no timestamps")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    parser.add_argument("--image-aux", choices=IMAGE_AUX_CHOICES, default="none",
                        help="also write image_aux: the previous frame's image with each image's stamp (IID-RDepth AV-LFE)")


def bag_folder(output: Path, storage: str) -> tuple[Path, Optional[str]]:
    """The rosbag2 folder to write for ``-o output``, and a note when it differs.

    A bag is a folder holding ``<folder name>.<mcap|db3>`` and ``metadata.yaml``; an ``-o`` ending
    in the storage suffix (``out/kitti.mcap``) names the folder without it (``out/kitti``), so the
    file inside is not ``kitti.mcap.mcap``. Raises ValueError for the other storage's suffix.
    """
    suffix = output.suffix.lower()
    if suffix not in STORAGE_SUFFIXES:
        return output, None
    if STORAGE_SUFFIXES[suffix] != storage:
        raise ValueError(f"-o {output} ends in {suffix} but --storage is {storage}: "
                         f"give --storage {STORAGE_SUFFIXES[suffix]} or another name")
    folder = output.with_suffix("")
    return folder, (f"a rosbag2 bag is a folder: writing {folder}/ (holding {folder.name}{suffix} and "
                    f"metadata.yaml); give {folder} to replay and ros2 bag play")


def conversion_notes(seq: KittiSequence, holdout_fraction: float) -> list[str]:
    """The sequence's notes, with the object-folder note matching ``--holdout-fraction``."""
    if holdout_fraction <= 0:
        return list(seq.notes)
    return [OBJECT_HOLDOUT.format(pct=100 * holdout_fraction) if n == OBJECT_NO_GT else n for n in seq.notes]


def run(args: argparse.Namespace) -> int:
    """Convert; prints the counts. Returns 0, or 2 with a message on bad input."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        output, note = bag_folder(Path(args.output), args.storage)
        if note:
            print(f"note: {note}")
        seq = discover_kitti(args.input, args.camera, args.gt_dir, args.period, args.start_time)
        summary = convert(seq, output, args.storage, args.overwrite, args.holdout_fraction,
                          args.seed, args.max_frames, progress=True, image_aux=args.image_aux)
    except (KittiLayoutError, BagError, ValueError, OSError) as exc:
        print(f"kitti-to-bag: error: {exc}", file=sys.stderr)
        return 2
    for line in conversion_notes(seq, args.holdout_fraction):
        print(f"note: {line}")
    print(f"wrote {summary.path} ({summary.layout}, {summary.frames_written} frames, {args.storage})")
    for topic, n in sorted(summary.counts.items()):
        print(f"  {topic}: {n}")
    if summary.skipped:
        print(f"  skipped: {summary.skipped}")
    if summary.frames_without_lidar:
        print(f"  frames without LiDAR: {summary.frames_without_lidar}")
    return 0 if summary.frames_written else 2
