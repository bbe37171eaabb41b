"""What the ROS boundary used to accept without a drop (issue 16, item 2): each input now gets a
named drop reason or a documented handling, checked here on the conversion functions (the nodes
turn the InputError into ``drops_<reason>``; test_node_robustness.py checks that path)."""
from __future__ import annotations

import array

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.inference.backends import make_completion_backend
from depth_diffusion_ros.inference.errors import FrameError
from depth_diffusion_ros.inference.pipelines import CascadePipeline, CompletionPipeline
from depth_diffusion_ros.inference.backends import make_super_resolution_backend
from depth_diffusion_ros.ros import InputError, array_to_image, camera_info_to_intrinsics, image_to_array, pointcloud2_to_xyz, rgb_from_image

KITTI = Intrinsics(721.5377, 721.5377, 609.5593, 172.854, 1242, 375)


def _info(**kw) -> CameraInfo:
    ci = CameraInfo(width=KITTI.width, height=KITTI.height, distortion_model="plumb_bob", d=[0.0] * 5)
    fx, fy, cx, cy = KITTI.fx, KITTI.fy, KITTI.cx, KITTI.cy
    ci.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    ci.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    ci.header.frame_id = "camera"
    for k, v in kw.items():
        setattr(ci, k, v)
    return ci


# ------------------------------------------------------------------------------------------ Image
def test_image_data_longer_than_height_times_step_is_malformed():
    msg = array_to_image(np.zeros((4, 4, 3), np.uint8), "rgb8")
    msg.data = array.array("B", bytes(4 * 12 + 1))
    with pytest.raises(InputError, match=r"49 bytes but 4x4 rgb8 with step 12 needs 48 \(height \* step, exactly\)") as err:
        image_to_array(msg)
    assert err.value.reason == "malformed_image"


def test_is_bigendian_is_ignored_for_byte_encodings_and_honoured_for_wider_ones():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = array_to_image(rgb, "rgb8")
    msg.is_bigendian = 1  # one byte per channel has no byte order (cv_bridge ignores it too)
    np.testing.assert_array_equal(rgb_from_image(msg), rgb)
    mm = np.array([[1, 258]], np.uint16)
    msg = Image(height=1, width=2, encoding="16UC1", is_bigendian=1, step=4)
    msg.data = array.array("B", mm.astype(">u2").tobytes())
    np.testing.assert_array_equal(image_to_array(msg), mm)


# ------------------------------------------------------------------------------------- CameraInfo
@pytest.mark.parametrize("change,reason,match", [
    ({"k": [1e-300, 0, 609.6, 0, 1e-300, 172.9, 0, 0, 1], "p": [0.0] * 12}, "bad_camera_info",
     "focal length fx = 1e-300 px is implausible for a 1242x375 image"),
    ({"p": [1e300, 0, 609.6, 0, 0, 1e300, 172.9, 0, 0, 0, 1, 0]}, "bad_camera_info", "fx = 1e\\+300 px is implausible"),
    ({"p": [721.5, 0, 1e9, 0, 0, 721.5, 172.9, 0, 0, 0, 1, 0]}, "bad_camera_info", "principal point \\(1e\\+09, 172.9\\)"),
    ({"d": [0.0, float("nan"), 0.0, 0.0, 0.0]}, "non_finite_intrinsics", "non-finite intrinsics.*D=\\[0.0, nan"),
    ({"distortion_model": "fisheye62"}, "unsupported_distortion_model", "distortion model 'fisheye62'; supported"),
    ({"d": [0.1, 0.0, 0.0]}, "unsupported_distortion_model", "'plumb_bob' has 3 coefficients"),
])
def test_implausible_camera_info_is_refused_by_name(change, reason, match):
    with pytest.raises(InputError, match=match) as err:
        camera_info_to_intrinsics(_info(**change))
    assert err.value.reason == reason
    assert "frame 'camera'" in str(err.value)


def test_distortion_models_and_coefficient_counts_that_are_accepted():
    assert camera_info_to_intrinsics(_info()) == KITTI
    for model, d in (("plumb_bob", []), ("rational_polynomial", [0.01] * 8), ("equidistant", [0.0] * 4), ("", [])):
        assert camera_info_to_intrinsics(_info(distortion_model=model, d=d)) == KITTI


def test_binning_and_roi_are_applied_as_image_geometry_does():
    ci = _info(binning_x=2, binning_y=2)
    assert camera_info_to_intrinsics(ci) == Intrinsics(KITTI.fx / 2, KITTI.fy / 2, KITTI.cx / 2, KITTI.cy / 2, 621, 187)
    ci = _info()
    ci.roi.x_offset, ci.roi.y_offset, ci.roi.width, ci.roi.height = 100, 50, 600, 300
    assert camera_info_to_intrinsics(ci) == Intrinsics(KITTI.fx, KITTI.fy, KITTI.cx - 100, KITTI.cy - 50, 600, 300)
    ci.binning_x, ci.binning_y = 4, 3  # ROI first (full-image pixels), then binning
    assert camera_info_to_intrinsics(ci) == Intrinsics(KITTI.fx / 4, KITTI.fy / 3, (KITTI.cx - 100) / 4,
                                                       (KITTI.cy - 50) / 3, 150, 100)
    # binning 0 means 1; a zero ROI is the full image
    assert camera_info_to_intrinsics(_info(binning_x=0, binning_y=1)) == KITTI


@pytest.mark.parametrize("roi,binning,match", [
    ((1000, 0, 600, 300), (1, 1), "does not fit the 1242x375 image"),
    ((0, 0, 600, 0), (1, 1), "does not fit"),
    ((5, 5, 0, 0), (1, 1), "offset \\(5, 5\\) but no size"),
    ((0, 0, 3, 3), (4, 4), "leaves no pixel"),
])
def test_bad_roi_or_binning_is_refused(roi, binning, match):
    ci = _info(binning_x=binning[0], binning_y=binning[1])
    ci.roi.x_offset, ci.roi.y_offset, ci.roi.width, ci.roi.height = roi
    with pytest.raises(InputError, match=match) as err:
        camera_info_to_intrinsics(ci)
    assert err.value.reason == "bad_camera_info"


# ------------------------------------------------------------------------------------ PointCloud2
def _cloud(fields, point_step, n=4, extra=0):
    msg = PointCloud2(height=1, width=n, point_step=point_step, row_step=n * point_step)
    msg.fields = [PointField(name=nm, offset=off, datatype=dt, count=c) for nm, off, dt, c in fields]
    msg.data = array.array("B", bytes(n * point_step + extra))
    return msg


XYZ = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)]


@pytest.mark.parametrize("fields,step,extra,match", [
    (XYZ + [("intensity", 12, 7, 1)], 14, 0, "field 'intensity' at offset 12 \\(4 bytes\\) does not fit in point_step 14"),
    (XYZ + [("rings", 12, 4, 4)], 16, 0, "field 'rings' at offset 12 \\(8 bytes\\)"),
    ([("x", 0, 7, 1), ("y", 2, 7, 1), ("z", 8, 7, 1)], 16, 0, "fields 'x' \\(bytes 0..4\\) and 'y' \\(bytes 2..6\\) overlap"),
    ([("x", 0, 8, 1), ("y", 4, 7, 1), ("z", 12, 7, 1)], 16, 0, "fields 'x' .* and 'y' .* overlap"),
    ([("x", 0, 7, 3), ("y", 12, 7, 1), ("z", 16, 7, 1)], 20, 0, "field 'x' has count 3"),
    (XYZ, 12, 5, "53 bytes but 4x1 points with row_step 48 need 48"),
])
def test_inconsistent_cloud_layouts_are_malformed(fields, step, extra, match):
    with pytest.raises(InputError, match=match) as err:
        pointcloud2_to_xyz(_cloud(fields, step, extra=extra))
    assert err.value.reason == "malformed_points"


def test_fields_of_unknown_datatype_are_not_read_and_not_checked():
    msg = _cloud(XYZ + [("mystery", 12, 42, 1)], 12)
    assert pointcloud2_to_xyz(msg).shape == (4, 3)


# ------------------------------------------------------------------- sparse depth outside range
@pytest.mark.parametrize("bad", [1e30, 1e-7, 1e-40, np.finfo(np.float32).tiny / 4])
def test_sparse_depth_outside_min_max_depth_is_missing(bad):
    rgb = np.full((40, 60, 3), 128, np.uint8)
    sparse = np.zeros((40, 60), np.float32)
    sparse[10, 10] = 5.0
    sparse[20, 30] = np.float32(bad)
    pipe = CompletionPipeline(make_completion_backend("nearest"), min_depth=0.1, max_depth=100.0)
    depth = pipe(rgb, sparse).depth
    np.testing.assert_array_equal(depth[depth > 0], 5.0)  # the bad value never reached the backend
    assert sparse[20, 30] == np.float32(bad)  # the caller's array is not changed
    only_bad = np.where(sparse == np.float32(bad), sparse, 0).astype(np.float32)
    with pytest.raises(FrameError, match="outside min_depth..max_depth 0.1..100 m") as err:
        pipe(rgb, only_bad)
    assert err.value.reason == "empty_sparse_depth"
    cascade = CascadePipeline(make_completion_backend("nearest"), make_super_resolution_backend("bicubic"), 2,
                              min_depth=0.1, max_depth=100.0)
    depth = cascade(rgb, sparse).depth
    assert np.nanmax(depth) <= 5.0 + 1e-4
