"""``sensor_msgs/CameraInfo`` <-> :class:`~depth_diffusion_ros.geometry.intrinsics.Intrinsics`."""
from __future__ import annotations

import math
from typing import Optional

from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.ros.errors import InputError


def camera_info_to_intrinsics(msg: CameraInfo) -> Intrinsics:
    """Intrinsics of the published image described by a CameraInfo.

    Uses the projection matrix ``P`` (rectified images, REP 104) when ``P[0] != 0`` and ``K``
    otherwise; ``width``/``height`` come from the message.

    Raises:
        InputError: non-finite K or P (reason ``non_finite_intrinsics``); zero focal length
            (an uncalibrated camera), zero size or wrong array lengths (``bad_camera_info``).
            The message names the frame and the problem.
    """
    frame = msg.header.frame_id
    values = list(msg.k) + list(msg.p)
    if not all(math.isfinite(float(v)) for v in values):
        raise InputError(
            f"camera_info (frame {frame!r}) has non-finite intrinsics: K={list(msg.k)} P={list(msg.p)}",
            reason="non_finite_intrinsics",
        )
    try:
        return Intrinsics.from_camera_info(msg.k, msg.p, msg.width, msg.height, use_p=True)
    except ValueError as exc:
        raise InputError(f"camera_info (frame {frame!r}) is unusable: {exc}", reason="bad_camera_info") from exc


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
