"""KITTI calibration files (Geiger et al., "Vision meets Robotics: The KITTI Dataset", IJRR 2013).

The KITTI projection of a Velodyne point ``X`` into rectified camera ``i`` is
``x ~ P_rect_0i . R_rect_00 . Tr_velo_to_cam . X`` (IJRR 2013, Sec. III-A/IV, Eq. 8).
``P_rect_0i = K [I | t]`` with ``t = K^-1 P[:, 3]`` (the stereo baseline), so the same projection
is the pinhole ``K`` applied after the rigid transform

    T_camera_lidar = [I | t] . R_rect_00 (4x4) . Tr_velo_to_cam (4x4),

which is what :class:`KittiCalibration` stores, so ``project_lidar_to_depth(points,
calib.T_camera_lidar, calib.intrinsics)`` reproduces the devkit projection.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.transforms import make_transform

PathLike = Union[str, Path]


@dataclass
class KittiCalibration:
    """Calibration of one rectified KITTI camera and the Velodyne.

    Attributes:
        intrinsics: pinhole intrinsics from the left 3x3 of ``P_rect`` and ``image_size``.
        T_camera_lidar: (4, 4) float64 Velodyne -> rectified camera frame, including
            ``R_rect_00`` and the ``P_rect`` translation ``K^-1 P[:, 3]``.
        P_rect: (3, 4) float64 rectified projection matrix of the camera.
        image_size: (width, height) in pixels.
        R_rect: (3, 3) rectifying rotation ``R_rect_00`` / ``R0_rect``.
        T_cam0_lidar: (4, 4) ``Tr_velo_to_cam`` (Velodyne -> unrectified camera 0).
        T_lidar_imu: (4, 4) ``Tr_imu_to_velo`` when the file has it, else None.
    """

    intrinsics: Intrinsics
    T_camera_lidar: np.ndarray
    P_rect: np.ndarray
    image_size: tuple[int, int]
    R_rect: np.ndarray = field(default_factory=lambda: np.eye(3))
    T_cam0_lidar: np.ndarray = field(default_factory=lambda: np.eye(4))
    T_lidar_imu: Optional[np.ndarray] = None


def parse_calib_file(path: PathLike) -> dict[str, np.ndarray]:
    """Parse a KITTI ``key: v1 v2 ...`` calibration text file.

    Lines whose values are not all numbers (e.g. ``calib_time: 09-Jan-2012 13:57:47``) and blank
    lines are skipped.

    Returns:
        key -> 1-D float64 array.

    Raises:
        FileNotFoundError: the file does not exist.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"KITTI calibration file not found: {p}")
    out: dict[str, np.ndarray] = {}
    for line in p.read_text().splitlines():
        if ":" not in line:
            continue
        key, _, rest = line.partition(":")
        try:
            values = np.array([float(x) for x in rest.split()], dtype=np.float64)
        except ValueError:
            continue  # e.g. calib_time
        if values.size:
            out[key.strip()] = values
    return out


def _get(calib: dict[str, np.ndarray], key: str, size: int, path: PathLike) -> np.ndarray:
    if key not in calib:
        raise ValueError(f"{path}: missing {key!r} (keys: {sorted(calib)})")
    v = calib[key]
    if v.size != size:
        raise ValueError(f"{path}: {key!r} has {v.size} values, expected {size}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{path}: {key!r} has non-finite values")
    return v


def _compose(P_rect: np.ndarray, R_rect: np.ndarray, T_cam0_lidar: np.ndarray) -> np.ndarray:  # noqa: N803
    K = P_rect[:, :3]
    t = np.linalg.solve(K, P_rect[:, 3])
    T_p = make_transform(np.eye(3), t)
    R4 = make_transform(R_rect, np.zeros(3))
    return T_p @ R4 @ T_cam0_lidar


def _check_camera(camera: int) -> int:
    if int(camera) not in (0, 1, 2, 3):
        raise ValueError(f"KITTI camera must be 0, 1, 2 or 3, got {camera!r}")
    return int(camera)


def _calibration(P: np.ndarray, R_rect: np.ndarray, Tr: np.ndarray, T_imu: Optional[np.ndarray],  # noqa: N803
                 w: int, h: int) -> KittiCalibration:
    """The KittiCalibration of one camera from P_rect (3,4), R_rect (3,3) and Tr_velo_to_cam (4,4)."""
    return KittiCalibration(intrinsics=Intrinsics.from_matrix(P, w, h), T_camera_lidar=_compose(P, R_rect, Tr),
                            P_rect=P, image_size=(w, h), R_rect=R_rect, T_cam0_lidar=Tr, T_lidar_imu=T_imu)


def read_kitti_object_calib(
    path: PathLike, camera: int = 2, image_size: Optional[tuple[int, int]] = None
) -> KittiCalibration:
    """Read a KITTI object-benchmark calib file (``P0..P3``, ``R0_rect``, ``Tr_velo_to_cam``, ``Tr_imu_to_velo``).

    Args:
        path: ``calib/XXXXXX.txt``.
        camera: 2 = left colour (image_2), 3 = right colour, 0/1 = grayscale.
        image_size: (width, height) of the image (the object calib files do not store it; frame
            sizes vary, e.g. 1224x370 and 1242x375).

    Raises:
        FileNotFoundError: no file. ValueError: missing/ill-sized keys, bad camera, no image_size.
    """
    cam = _check_camera(camera)
    if image_size is None:
        raise ValueError("read_kitti_object_calib needs image_size=(width, height); object calib files do not store it")
    calib = parse_calib_file(path)
    P = _get(calib, f"P{cam}", 12, path).reshape(3, 4)
    R_rect = _get(calib, "R0_rect", 9, path).reshape(3, 3)
    Tr = np.vstack([_get(calib, "Tr_velo_to_cam", 12, path).reshape(3, 4), [0, 0, 0, 1]])
    T_imu = None
    if "Tr_imu_to_velo" in calib:
        T_imu = np.vstack([_get(calib, "Tr_imu_to_velo", 12, path).reshape(3, 4), [0, 0, 0, 1]])
    w, h = int(image_size[0]), int(image_size[1])
    return _calibration(P, R_rect, Tr, T_imu, w, h)


def read_kitti_raw_calib(
    calib_cam_to_cam: PathLike, calib_velo_to_cam: PathLike, camera: int = 2,
    calib_imu_to_velo: Optional[PathLike] = None,
) -> KittiCalibration:
    """Read KITTI raw ``calib_cam_to_cam.txt`` + ``calib_velo_to_cam.txt`` (+ optional imu_to_velo).

    Uses ``P_rect_0X``, ``R_rect_00``, ``S_rect_0X`` (image size) and the Velodyne ``R``, ``T``.

    Raises:
        FileNotFoundError: a file is missing. ValueError: missing/ill-sized keys or bad camera.
    """
    cam = _check_camera(camera)
    c2c = parse_calib_file(calib_cam_to_cam)
    v2c = parse_calib_file(calib_velo_to_cam)
    P = _get(c2c, f"P_rect_0{cam}", 12, calib_cam_to_cam).reshape(3, 4)
    R_rect = _get(c2c, "R_rect_00", 9, calib_cam_to_cam).reshape(3, 3)
    S = _get(c2c, f"S_rect_0{cam}", 2, calib_cam_to_cam)
    w, h = int(round(S[0])), int(round(S[1]))
    Tr = make_transform(
        _get(v2c, "R", 9, calib_velo_to_cam).reshape(3, 3), _get(v2c, "T", 3, calib_velo_to_cam)
    )
    T_imu = None
    if calib_imu_to_velo is not None:
        i2v = parse_calib_file(calib_imu_to_velo)
        T_imu = make_transform(
            _get(i2v, "R", 9, calib_imu_to_velo).reshape(3, 3), _get(i2v, "T", 3, calib_imu_to_velo)
        )
    return _calibration(P, R_rect, Tr, T_imu, w, h)


def read_velodyne_bin(path: PathLike) -> np.ndarray:
    """Read a KITTI Velodyne scan: little-endian float32 (N, 4) x, y, z (m), reflectance.

    Raises:
        FileNotFoundError: no file. ValueError: size not a multiple of 16 bytes.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Velodyne scan not found: {p}")
    raw = np.fromfile(p, dtype="<f4")
    if raw.size % 4:
        raise ValueError(f"{p}: {raw.size * 4} bytes is not a multiple of 16 (N x 4 float32)")
    return raw.reshape(-1, 4)
