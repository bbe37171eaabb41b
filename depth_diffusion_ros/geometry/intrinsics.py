"""Pinhole camera intrinsics.

A point (x, y, z) in the camera optical frame (REP 103: x right, y down, z forward, metres)
projects to pixel ``(u, v) = (fx * x / z + cx, fy * y / z + cy)``; pixel centres are at integer
coordinates (the ROS ``sensor_msgs/CameraInfo`` / OpenCV convention).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def _check_size(width: int, height: int) -> tuple[int, int]:
    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"image size must be integers, got width={width!r}, height={height!r}") from exc
    if w <= 0 or h <= 0:
        raise ValueError(f"image size must be positive, got width={w}, height={h}")
    return w, h


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of one image resolution.

    Attributes:
        fx, fy: focal lengths in pixels (> 0).
        cx, cy: principal point in pixels.
        width, height: image size in pixels (> 0).

    Raises:
        ValueError: on construction if any value is non-finite, a focal length is <= 0 or the
            size is <= 0. The message names the offending field.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            try:
                fvalue = float(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"intrinsics {name} must be a number, got {value!r}") from exc
            if not math.isfinite(fvalue):
                raise ValueError(f"intrinsics {name} is not finite ({fvalue})")
            object.__setattr__(self, name, fvalue)
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(
                f"intrinsics focal lengths must be > 0, got fx={self.fx}, fy={self.fy} "
                "(an all-zero CameraInfo means the camera is uncalibrated)"
            )
        w, h = _check_size(self.width, self.height)
        object.__setattr__(self, "width", w)
        object.__setattr__(self, "height", h)

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the field's standard name
        """(3, 3) float64 camera matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``."""
        return np.array(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64
        )

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    @classmethod
    def from_matrix(cls, M: np.ndarray, width: int, height: int) -> "Intrinsics":  # noqa: N803
        """Build from a (3, 3) K or (3, 4) P matrix (its left 3x3 part is used).

        The skew term M[0, 1] is ignored. A P translation column (stereo baseline) is not part of
        the intrinsics; see :mod:`depth_diffusion_ros.geometry.calibration` for folding it into the
        extrinsics.

        Raises:
            ValueError: wrong shape, non-finite values, fx/fy <= 0 or size <= 0.
        """
        M = np.asarray(M, dtype=np.float64)
        if M.shape not in ((3, 3), (3, 4)):
            raise ValueError(f"camera matrix must be (3,3) K or (3,4) P, got shape {M.shape}")
        if not np.all(np.isfinite(M)):
            raise ValueError("camera matrix contains non-finite values")
        return cls(
            fx=float(M[0, 0]), fy=float(M[1, 1]), cx=float(M[0, 2]), cy=float(M[1, 2]),
            width=width, height=height,
        )

    @classmethod
    def from_camera_info(
        cls,
        k: Sequence[float],
        p: Sequence[float],
        width: int,
        height: int,
        use_p: bool = True,
    ) -> "Intrinsics":
        """Build from the ``k`` (9) and ``p`` (12) arrays of a ``sensor_msgs/CameraInfo``.

        For rectified images (REP 104) the projection matrix P describes the image that is
        published, so it is used when ``use_p`` is true and ``P[0] != 0``; otherwise K is used.

        Raises:
            ValueError: wrong lengths, non-finite values, fx/fy <= 0 (e.g. an all-zero
                uncalibrated CameraInfo) or size <= 0.
        """
        k_arr = np.asarray(k, dtype=np.float64).reshape(-1)
        p_arr = np.asarray(p, dtype=np.float64).reshape(-1)
        if use_p and p_arr.size == 12 and p_arr[0] != 0:
            return cls.from_matrix(p_arr.reshape(3, 4), width, height)
        if k_arr.size != 9:
            raise ValueError(f"CameraInfo k must have 9 values, got {k_arr.size}")
        return cls.from_matrix(k_arr.reshape(3, 3), width, height)

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """Intrinsics of the same camera after resizing the image to ``(width, height)``.

        Uses the pixel-centre convention of ``cv2.resize``: ``u' = (u + 0.5) * sx - 0.5``.

        Raises:
            ValueError: size <= 0.
        """
        w, h = _check_size(width, height)
        sx = w / self.width
        sy = h / self.height
        return Intrinsics(
            fx=self.fx * sx, fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5, cy=(self.cy + 0.5) * sy - 0.5,
            width=w, height=h,
        )

    def cropped(self, x0: int, y0: int, width: int, height: int) -> "Intrinsics":
        """Intrinsics of the crop ``image[y0:y0+height, x0:x0+width]`` (principal point shifts).

        Raises:
            ValueError: size <= 0 or the crop leaves the image.
        """
        w, h = _check_size(width, height)
        x0, y0 = int(x0), int(y0)
        if x0 < 0 or y0 < 0 or x0 + w > self.width or y0 + h > self.height:
            raise ValueError(
                f"crop x0={x0} y0={y0} {w}x{h} leaves the {self.width}x{self.height} image"
            )
        return Intrinsics(
            fx=self.fx, fy=self.fy, cx=self.cx - x0, cy=self.cy - y0, width=w, height=h
        )

    def max_difference(self, other: "Intrinsics") -> float:
        """Largest difference in pixels between the focal lengths or principal points of two
        intrinsics (e.g. a depth camera's against the colour camera's rescaled to its size)."""
        return max(abs(self.fx - other.fx), abs(self.fy - other.fy), abs(self.cx - other.cx),
                   abs(self.cy - other.cy))
