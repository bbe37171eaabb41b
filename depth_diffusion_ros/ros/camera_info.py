"""``sensor_msgs/CameraInfo`` <-> :class:`~depth_diffusion_ros.geometry.intrinsics.Intrinsics`.

What a CameraInfo must be to be used (anything else is refused with a named reason):

* K, P and D finite (``non_finite_intrinsics``);
* ``distortion_model`` one of :data:`DISTORTION_MODELS` with as many D coefficients as that
  model has, or none (``unsupported_distortion_model``); D is not applied: the nodes expect
  rectified images (P) or an undistorted camera (K);
* focal lengths between :data:`FOCAL_RANGE` image sizes and a principal point within
  :data:`PRINCIPAL_POINT_RANGE` image sizes of the image centre (``bad_camera_info``: 1e-300 or
  1e300 px focal lengths and a principal point at 1e9 px describe no camera);
* ``binning_x/y`` and ``roi`` are applied as ``image_geometry.PinholeCameraModel`` does: the ROI
  offset shifts cx, cy, binning divides fx, fy, cx, cy, and the image size is the binned ROI
  (``roi.width / binning_x`` x ``roi.height / binning_y``; a zero ROI is the full image; binning 0
  is 1). An ROI outside the ``width`` x ``height`` sensor or a binned size of 0 is
  ``bad_camera_info``.
"""
from __future__ import annotations

import math
from typing import Optional

from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.ros.errors import InputError

#: distortion model (sensor_msgs/distortion_models.hpp, "" = none) -> accepted lengths of D
DISTORTION_MODELS: dict[str, tuple[int, ...]] = {
    "plumb_bob": (0, 5),
    "rational_polynomial": (0, 8, 12, 14),
    "equidistant": (0, 4),
    "": (0,),
}
#: focal lengths fx, fy must lie in [lo, hi] * max(width, height) (field of view ~180 deg .. ~0.001 deg)
FOCAL_RANGE = (1e-3, 1e5)
#: |cx - width / 2| and |cy - height / 2| at most this many max(width, height)
PRINCIPAL_POINT_RANGE = 1e3


def camera_info_to_intrinsics(msg: CameraInfo) -> Intrinsics:
    """Intrinsics of the published image described by a CameraInfo.

    Uses the projection matrix ``P`` (rectified images, REP 104) when ``P[0] != 0`` and ``K``
    otherwise; the size is ``width`` x ``height`` after the binning and ROI of the message (see
    the module docstring).

    Raises:
        InputError: non-finite K, P or D (reason ``non_finite_intrinsics``); an unknown
            distortion model or a D of the wrong length (``unsupported_distortion_model``); zero
            or implausible focal lengths (an uncalibrated camera), an implausible principal
            point, zero size, wrong array lengths, an ROI outside the image
            (``bad_camera_info``). The message names the frame and the problem.
    """
    frame = msg.header.frame_id
    values = list(msg.k) + list(msg.p) + list(msg.d)
    if not all(math.isfinite(float(v)) for v in values):
        raise InputError(
            f"camera_info (frame {frame!r}) has non-finite intrinsics: K={list(msg.k)} P={list(msg.p)} D={list(msg.d)}",
            reason="non_finite_intrinsics",
        )
    _check_distortion(msg, frame)
    try:
        full = Intrinsics.from_camera_info(msg.k, msg.p, msg.width, msg.height, use_p=True)
        _check_plausible(full)
        return _binned_roi(msg, full)
    except ValueError as exc:
        raise InputError(f"camera_info (frame {frame!r}) is unusable: {exc}", reason="bad_camera_info") from exc


def _check_distortion(msg: CameraInfo, frame: str) -> None:
    model, n = msg.distortion_model, len(msg.d)
    if model not in DISTORTION_MODELS:
        raise InputError(
            f"camera_info (frame {frame!r}) has distortion model {model!r}; supported: "
            f"{', '.join(repr(m) for m in DISTORTION_MODELS)}",
            reason="unsupported_distortion_model",
        )
    if n not in DISTORTION_MODELS[model]:
        raise InputError(
            f"camera_info (frame {frame!r}) distortion model {model!r} has {n} coefficients in D; expected one of "
            f"{list(DISTORTION_MODELS[model])}",
            reason="unsupported_distortion_model",
        )


def _check_plausible(intr: Intrinsics) -> None:
    size = max(intr.width, intr.height)
    lo, hi = FOCAL_RANGE[0] * size, FOCAL_RANGE[1] * size
    for name, f in (("fx", intr.fx), ("fy", intr.fy)):
        if not lo <= f <= hi:
            raise ValueError(f"focal length {name} = {f:g} px is implausible for a {intr.width}x{intr.height} "
                             f"image (expected {lo:g} to {hi:g} px)")
    limit = PRINCIPAL_POINT_RANGE * size
    if abs(intr.cx - intr.width / 2) > limit or abs(intr.cy - intr.height / 2) > limit:
        raise ValueError(f"principal point ({intr.cx:g}, {intr.cy:g}) px is implausible for a "
                         f"{intr.width}x{intr.height} image (more than {limit:g} px from its centre)")


def _binned_roi(msg: CameraInfo, full: Intrinsics) -> Intrinsics:
    """``full`` (the width x height sensor) after the message's ROI and binning (image_geometry)."""
    bx, by = max(1, int(msg.binning_x)), max(1, int(msg.binning_y))
    roi = msg.roi
    x0, y0, rw, rh = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
    if rw == 0 and rh == 0:
        if x0 or y0:
            raise ValueError(f"roi has offset ({x0}, {y0}) but no size")
        x0, y0, rw, rh = 0, 0, full.width, full.height
    elif rw == 0 or rh == 0 or x0 + rw > full.width or y0 + rh > full.height:
        raise ValueError(f"roi x_offset={x0} y_offset={y0} {rw}x{rh} does not fit the {full.width}x{full.height} image")
    if (bx, by) == (1, 1) and (x0, y0, rw, rh) == (0, 0, full.width, full.height):
        return full
    if rw // bx == 0 or rh // by == 0:
        raise ValueError(f"binning {bx}x{by} of a {rw}x{rh} roi leaves no pixel")
    return Intrinsics(fx=full.fx / bx, fy=full.fy / by, cx=(full.cx - x0) / bx, cy=(full.cy - y0) / by,
                      width=rw // bx, height=rh // by)


def intrinsics_to_camera_info(
    intrinsics: Intrinsics, header: Header, source: Optional[CameraInfo] = None
) -> CameraInfo:
    """CameraInfo for an image with these intrinsics (e.g. depth at a processing resolution).

    Without ``source`` the result is an ideal rectified pinhole camera (``K = P[:, :3]``,
    identity R, no distortion). With ``source`` (the input image's CameraInfo), its
    distortion model, D and R are kept and the P translation column (stereo baseline
    ``Tx = -fx * B``) (Tx, Ty) is rescaled with fx/fy and Tz kept, so a full-resolution result equals ``source``
    apart from the header, ROI and binning.
    """
    msg = CameraInfo()
    msg.header = header
    msg.width, msg.height = intrinsics.width, intrinsics.height
    fx, fy, cx, cy = intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    tx = ty = tz = 0.0
    if source is not None:
        msg.distortion_model = source.distortion_model
        msg.d = list(source.d)
        msg.r = list(source.r)
        p = list(source.p)
        if p[0] != 0 and p[5] != 0:
            tx = p[3] * fx / p[0]
            ty = p[7] * fy / p[5]
            tz = p[11]
    else:
        msg.distortion_model = "plumb_bob"
        msg.d = [0.0] * 5
        msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, tx, 0.0, fy, cy, ty, 0.0, 0.0, 1.0, tz]
    return msg
