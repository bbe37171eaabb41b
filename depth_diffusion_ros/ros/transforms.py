"""``geometry_msgs/Transform`` -> 4x4 matrix (for transforms looked up with tf2)."""
from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import Transform

from depth_diffusion_ros.geometry.transforms import make_transform, quaternion_to_matrix
from depth_diffusion_ros.ros.errors import InputError


def transform_msg_to_matrix(transform: Transform) -> np.ndarray:
    """(4, 4) float64 ``T_target_source`` of a tf2 transform (``lookup_transform(target, source)``).

    The unit quaternion (x, y, z, w) becomes the rotation matrix of Hamilton's convention as ROS
    uses it (REP 103; :func:`~depth_diffusion_ros.geometry.transforms.quaternion_to_matrix`); the
    translation is in metres.

    Raises:
        InputError (reason ``bad_transform``): non-finite values or a quaternion whose norm is
            not close to 1 (|norm - 1| > 1e-3).
    """
    q = transform.rotation
    t = transform.translation
    values = [q.x, q.y, q.z, q.w, t.x, t.y, t.z]
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"transform has non-finite values {values}", reason="bad_transform")
    norm = math.sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w)
    if abs(norm - 1.0) > 1e-3:
        raise InputError(f"transform rotation quaternion has norm {norm:.6f}, expected 1", reason="bad_transform")
    return make_transform(quaternion_to_matrix(q.x, q.y, q.z, q.w), np.array([t.x, t.y, t.z], dtype=np.float64))
