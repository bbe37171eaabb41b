"""PointCloud2 <-> numpy at the ROS boundary, on the real KITTI Velodyne scan."""
from __future__ import annotations

import array

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.pointcloud import unpack_rgb
from depth_diffusion_ros.geometry.pointcloud import pack_xyzrgb
from depth_diffusion_ros.geometry.projection import depth_to_points
from depth_diffusion_ros.ros import InputError, PointCloud2Builder, depth_to_pointcloud2, pointcloud2_to_xyz


@pytest.fixture(scope="module")
def scan(kitti_raw_dir) -> np.ndarray:
    pts = np.fromfile(kitti_raw_dir / "raw/lidar_data.bin", dtype="<f4").reshape(-1, 4)
    assert pts.shape[0] == 121948
    return pts


def _cloud(records: np.ndarray, fields: list[tuple[str, int, int]], height: int = 1,
           row_pad: int = 0, bigendian: bool = False) -> PointCloud2:
    """PointCloud2 from a structured array (built by hand, independent of the code under test)."""
    n = records.shape[0]
    width = n // height
    raw = records.tobytes()
    step = records.dtype.itemsize
    rows = [raw[r * width * step:(r + 1) * width * step] + b"\xee" * row_pad for r in range(height)]
    msg = PointCloud2(height=height, width=width, point_step=step, row_step=width * step + row_pad,
                      is_bigendian=bigendian, is_dense=False)
    msg.header.frame_id = "velo_link"
    msg.fields = [PointField(name=nm, offset=off, datatype=dt, count=1) for nm, off, dt in fields]
    msg.data = array.array("B", b"".join(rows))
    return msg


def test_velodyne_layout_with_intensity(scan):
    rec = np.zeros(scan.shape[0], dtype=np.dtype({"names": ["x", "y", "z", "intensity"],
                                                   "formats": ["<f4"] * 4, "offsets": [0, 4, 8, 12],
                                                   "itemsize": 16}))
    for i, nm in enumerate(["x", "y", "z", "intensity"]):
        rec[nm] = scan[:, i]
    msg = _cloud(rec, [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7)])
    msg = deserialize_message(serialize_message(msg), PointCloud2)
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg), scan[:, :3])


def test_odd_point_step_float64_bigendian_and_row_padding(scan):
    pts = scan[:1000, :3].astype(np.float64)
    pts[3] = np.nan  # a NaN return is left out
    dt = np.dtype({"names": ["ring", "z", "x", "y"], "formats": [">u2", ">f8", ">f8", ">f8"],
                   "offsets": [0, 2, 10, 18], "itemsize": 27})
    rec = np.zeros(1000, dtype=dt)
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    msg = _cloud(rec, [("ring", 0, PointField.UINT16), ("z", 2, 8), ("x", 10, 8), ("y", 18, 8)],
                 height=10, row_pad=13, bigendian=True)
    out = pointcloud2_to_xyz(msg)
    keep = np.isfinite(pts).all(axis=1)
    assert out.shape == (999, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, pts[keep].astype(np.float32))


def test_float32_xyz_after_another_field_with_nan_and_inf_rows(scan):
    """x, y, z consecutive float32 at offset 4 (after a time field); NaN / inf rows are left out."""
    pts = scan[:5000, :3].copy()
    pts[10, 0] = np.nan
    pts[20, 2] = np.inf
    pts[30, 1] = -np.inf
    dt = np.dtype({"names": ["t", "x", "y", "z", "ring"], "formats": ["<f4"] * 4 + ["<u2"],
                   "offsets": [0, 4, 8, 12, 16], "itemsize": 20})
    rec = np.zeros(5000, dtype=dt)
    rec["t"], rec["ring"] = 1.5, 7
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    msg = _cloud(rec, [("t", 0, 7), ("x", 4, 7), ("y", 8, 7), ("z", 12, 7), ("ring", 16, PointField.UINT16)],
                 height=50, row_pad=6)
    out = pointcloud2_to_xyz(msg)
    keep = np.ones(5000, bool)
    keep[[10, 20, 30]] = False
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, pts[keep])
    # finite values whose float32 sum overflows are all kept
    big = np.full((4, 3), 3e38, np.float32)
    rec = np.zeros(4, dtype=dt)
    rec["x"], rec["y"], rec["z"] = big[:, 0], big[:, 1], big[:, 2]
    np.testing.assert_array_equal(pointcloud2_to_xyz(_cloud(rec, [("x", 4, 7), ("y", 8, 7), ("z", 12, 7)])), big)


def test_empty_cloud_gives_no_points():
    msg = PointCloud2(height=1, width=0, point_step=16, row_step=0)
    msg.fields = [PointField(name=n, offset=o, datatype=7, count=1) for n, o in (("x", 0), ("y", 4), ("z", 8))]
    assert pointcloud2_to_xyz(msg).shape == (0, 3)


def _xyz_fields(step=16, types=(7, 7, 7), offsets=(0, 4, 8)):
    return [PointField(name=n, offset=o, datatype=t, count=1) for n, o, t in zip("xyz", offsets, types)]


@pytest.mark.parametrize("mutate,match", [
    (lambda m: setattr(m, "fields", m.fields[:2]), "no z field"),
    (lambda m: setattr(m, "fields", _xyz_fields(types=(7, 4, 7))), "field 'y' has datatype 4"),
    (lambda m: setattr(m, "fields", _xyz_fields(offsets=(0, 4, 14))), "offset 14 .* point_step 16"),
    (lambda m: setattr(m, "row_step", 8), "row_step 8 is smaller"),
    (lambda m: setattr(m, "data", array.array("B", bytes(100))), "100 bytes but 10x1 points"),
])
def test_malformed_clouds_are_rejected(mutate, match):
    msg = PointCloud2(height=1, width=10, point_step=16, row_step=160)
    msg.fields = _xyz_fields()
    msg.data = array.array("B", bytes(160))
    mutate(msg)
    with pytest.raises(InputError, match=match) as err:
        pointcloud2_to_xyz(msg)
    assert err.value.reason == "malformed_points"


def test_depth_to_pointcloud2_organised_with_rgb():
    intr = Intrinsics(721.5377, 721.5377, 609.5593, 172.854, 1242, 375)
    rng = np.random.default_rng(1)
    depth = rng.uniform(2.0, 80.0, (375, 1242)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.3] = 0.0
    rgb = rng.integers(0, 256, (375, 1242, 3), dtype=np.uint8)
    header = Header(frame_id="camera_color_left")
    msg = depth_to_pointcloud2(depth, intr, header, rgb=rgb)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (375, 1242, 32, 32 * 1242)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"] and not msg.is_dense
    msg = deserialize_message(serialize_message(msg), PointCloud2)
    rec = np.frombuffer(bytes(msg.data), dtype=np.dtype({"names": ["x", "y", "z", "rgb"], "formats": ["<f4"] * 4,
                                                        "offsets": [0, 4, 8, 16], "itemsize": 32}))
    rec = rec.reshape(375, 1242)
    valid = depth > 0
    np.testing.assert_array_equal(rec["z"][valid], depth[valid])
    assert np.isnan(rec["z"][~valid]).all() and np.isnan(rec["x"][~valid]).all()
    u = np.arange(1242)[None, :].repeat(375, 0)
    v = np.arange(375)[:, None].repeat(1242, 1)
    np.testing.assert_allclose(rec["x"][valid], ((u - intr.cx) * depth / intr.fx)[valid], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rec["y"][valid], ((v - intr.cy) * depth / intr.fy)[valid], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(unpack_rgb(rec["rgb"]), rgb)
    # our reader gives back exactly the valid points
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg)[:, 2], depth[valid])


def test_depth_to_pointcloud2_without_rgb_and_size_check():
    intr = Intrinsics(10.0, 10.0, 2.0, 1.5, 4, 3)
    msg = depth_to_pointcloud2(np.ones((3, 4), np.float32), intr, Header())
    assert [f.name for f in msg.fields] == ["x", "y", "z"] and msg.point_step == 32
    assert pointcloud2_to_xyz(msg).shape == (12, 3)
    with pytest.raises(ValueError, match="does not match intrinsics"):
        depth_to_pointcloud2(np.ones((4, 4), np.float32), intr, Header())


def test_builder_reuses_its_message_and_matches_depth_to_points():
    """One message and buffer per size/rgb combination; bytes equal pack_xyzrgb(depth_to_points)."""
    intr = Intrinsics(50.0, 55.0, 15.5, 11.0, 32, 24)
    rng = np.random.default_rng(3)
    builder = PointCloud2Builder()
    first = None
    for i in range(3):
        depth = rng.uniform(0.5, 30.0, (24, 32)).astype(np.float32)
        depth[rng.random(depth.shape) < 0.3] = 0.0
        depth[0, :4] = [np.nan, np.inf, -2.0, 0.0]
        rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        header = Header(frame_id=f"cam{i}")
        msg = builder.build(depth, intr, header, rgb)
        first = first or msg
        assert msg is first and msg.header.frame_id == f"cam{i}"
        assert bytes(msg.data) == pack_xyzrgb(depth_to_points(depth, intr), rgb)
        assert bytes(msg.data) == bytes(depth_to_pointcloud2(depth, intr, header, rgb).data)
    # without rgb: a new message whose rgb words are 0 and whose fields stop at z
    plain = builder.build(depth, intr, Header())
    assert plain is not first and [f.name for f in plain.fields] == ["x", "y", "z"]
    assert bytes(plain.data) == pack_xyzrgb(depth_to_points(depth, intr))
    # another size: a new message of that size
    small = builder.build(depth[:12, :16], Intrinsics(25.0, 27.5, 7.5, 5.5, 16, 12), Header())
    assert (small.height, small.width, len(small.data)) == (12, 16, 12 * 16 * 32)
    with pytest.raises(ValueError, match="rgb must be"):
        builder.build(depth, intr, Header(), rgb[:, :, :2])
    with pytest.raises(ValueError, match="does not match intrinsics"):
        builder.build(depth[:5], intr, Header())


def test_same_as_sensor_msgs_py_where_available(scan):
    """On a real ROS install, our reader/writer must agree with sensor_msgs_py (skipped here)."""
    try:
        from sensor_msgs_py import point_cloud2
    except ImportError:
        pytest.skip("sensor_msgs_py is not importable here (no ROS install); parity runs on real ROS installs")
    header = Header(frame_id="velo_link")
    fields = [PointField(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate(["x", "y", "z", "intensity"])]
    theirs = point_cloud2.create_cloud(header, fields, scan.tolist())
    ours_xyz = pointcloud2_to_xyz(theirs)
    ref = point_cloud2.read_points_numpy(theirs, field_names=("x", "y", "z"), skip_nans=True)
    np.testing.assert_array_equal(ours_xyz, ref.astype(np.float32))
    intr = Intrinsics(10.0, 10.0, 2.0, 1.5, 4, 3)
    depth = np.arange(12, dtype=np.float32).reshape(3, 4)
    ours = depth_to_pointcloud2(depth, intr, header)
    read = point_cloud2.read_points_numpy(ours, field_names=("x", "y", "z"), skip_nans=True)
    np.testing.assert_array_equal(read, pointcloud2_to_xyz(ours))
