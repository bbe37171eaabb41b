"""geometry_msgs/Transform -> 4x4 matrix (used with tf2 lookups)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from geometry_msgs.msg import Quaternion, Transform, Vector3

from depth_diffusion_ros.ros import InputError, transform_msg_to_matrix


def _tf(q, t):
    return Transform(translation=Vector3(x=t[0], y=t[1], z=t[2]), rotation=Quaternion(x=q[0], y=q[1], z=q[2], w=q[3]))


def test_velodyne_to_optical_frame_rotation():
    # the standard "x forward, y left, z up" -> optical "x right, y down, z forward" rotation
    # (T_camera_lidar rotation) has w = sqrt(1 + trace) / 2 = 0.5 and q = (0.5, -0.5, 0.5, 0.5)
    T = transform_msg_to_matrix(_tf((0.5, -0.5, 0.5, 0.5), (0.1, -0.2, 0.3)))
    expected_R = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=float)
    np.testing.assert_allclose(T[:3, :3], expected_R, atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], [0.1, -0.2, 0.3])
    np.testing.assert_allclose(T[3], [0, 0, 0, 1])
    # a point 10 m ahead of the LiDAR is 10 m along the camera's optical axis (plus offset)
    np.testing.assert_allclose(T @ [10, 0, 0, 1], [0.1, -0.2, 10.3, 1])


def test_yaw_rotation_matches_rodrigues():
    a = 0.7
    T = transform_msg_to_matrix(_tf((0, 0, math.sin(a / 2), math.cos(a / 2)), (0, 0, 0)))
    np.testing.assert_allclose(T[:2, :2], [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], atol=1e-12)


@pytest.mark.parametrize("q,t,match", [((0, 0, 0, 2.0), (0, 0, 0), "norm 2.000000"),
                                      ((0, 0, 0, 1.0), (math.nan, 0, 0), "non-finite")])
def test_bad_transforms(q, t, match):
    with pytest.raises(InputError, match=match) as err:
        transform_msg_to_matrix(_tf(q, t))
    assert err.value.reason == "bad_transform"
