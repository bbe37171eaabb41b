"""Training loaders read the real samples in ../shared/data and official layouts built from them."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depth_diffusion_ros.geometry.calibration import read_kitti_raw_calib, read_velodyne_bin
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from training.datasets import build_dataset
from training.datasets.common import DatasetError, SAMPLE_KEYS
from training.datasets.kitti import (
    KittiDepthCompletion,
    KittiEigen,
    KittiFileList,
    KittiObject,
    KittiValSelectionCropped,
    read_eigen_split,
    torch_kitti_frames,
)
from training.datasets.nyu import NyuFileList, NyuLabeledMat

pytestmark = pytest.mark.torch


def _check_sample(s: dict, h: int, w: int) -> None:
    assert set(SAMPLE_KEYS) <= set(s)
    assert s["rgb"].shape == (3, h, w) and s["rgb"].dtype == torch.float32
    assert 0.0 <= float(s["rgb"].min()) and float(s["rgb"].max()) <= 1.0
    for k in ("sparse_depth", "valid_mask", "gt_depth", "gt_mask"):
        assert s[k].shape == (1, h, w) and s[k].dtype == torch.float32, k
    assert torch.equal(s["valid_mask"], (s["sparse_depth"] > 0).float())
    assert torch.equal(s["gt_mask"], (s["gt_depth"] > 0).float())
    assert s["K"].shape == (3, 3)


# ------------------------------------------------------------------------------------ KITTI raw DC

def test_torch_kitti_frame_values_in_metres(kitti_raw_dir):
    ds = KittiFileList(torch_kitti_frames(kitti_raw_dir))
    assert len(ds) == 2
    s = ds[0]
    _check_sample(s, 375, 1242)
    raw_sparse = cv2.imread(str(kitti_raw_dir / "depth_completion/velodyne_raw_image_02.png"), cv2.IMREAD_UNCHANGED)
    raw_gt = cv2.imread(str(kitti_raw_dir / "depth_completion/groundtruth_image_02.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(s["sparse_depth"][0].numpy(), raw_sparse / 256.0, rtol=0, atol=1e-5)
    np.testing.assert_allclose(s["gt_depth"][0].numpy(), raw_gt / 256.0, rtol=0, atol=1e-5)
    # README: about 19.2k valid sparse px (4.1 %), 90.8k GT px (19.5 %) for image_02.
    n_sparse, n_gt = int(s["valid_mask"].sum()), int(s["gt_mask"].sum())
    assert 18_500 < n_sparse < 20_000 and abs(n_sparse / (375 * 1242) - 0.041) < 0.002
    assert 89_000 < n_gt < 92_000 and abs(n_gt / (375 * 1242) - 0.195) < 0.003
    # K from P_rect_02 at full size (not the 1216x352 intrinsics.txt).
    np.testing.assert_allclose(s["K"].numpy(), [[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]], atol=1e-3)
    # RGB equals the file (BGR -> RGB).
    bgr = cv2.imread(str(kitti_raw_dir / "raw/sync_rect/cam_02.png"))
    np.testing.assert_allclose(s["rgb"].numpy().transpose(1, 2, 0) * 255.0, bgr[..., ::-1], atol=1e-3)
    # Camera 3 has its own GT count (README: about 86.0k).
    assert 84_000 < int(ds[1]["gt_mask"].sum()) < 88_000


def test_torch_kitti_lidar_mode_uses_shared_projection(kitti_raw_dir):
    ds = KittiFileList(torch_kitti_frames(kitti_raw_dir, cameras=[2]), sparse_source="lidar", gt_source="png")
    sparse = ds[0]["sparse_depth"][0].numpy()
    calib = read_kitti_raw_calib(kitti_raw_dir / "raw/calib_cam_to_cam.txt", kitti_raw_dir / "raw/calib_velo_to_cam.txt", 2)
    expected = project_lidar_to_depth(read_velodyne_bin(kitti_raw_dir / "raw/lidar_data.bin")[:, :3],
                                      calib.T_camera_lidar, calib.intrinsics)
    np.testing.assert_array_equal(sparse, expected)
    assert 18_500 < np.count_nonzero(sparse) < 20_000  # README: about 19.1k px


def test_max_depth_marks_far_points_missing(kitti_raw_dir):
    ds = KittiFileList(torch_kitti_frames(kitti_raw_dir, cameras=[2]), max_depth=20.0)
    s = ds[0]
    assert float(s["sparse_depth"].max()) <= 20.0 and float(s["gt_depth"].max()) <= 20.0
    full = KittiFileList(torch_kitti_frames(kitti_raw_dir, cameras=[2]))[0]
    assert int(s["valid_mask"].sum()) == int(((full["sparse_depth"] > 0) & (full["sparse_depth"] <= 20)).sum())


# ------------------------------------------------------------------------------------ KITTI object

def test_kitti_object_projection_and_holdout(kitti_object_dir):
    ds = KittiObject(kitti_object_dir)
    assert [ds.sample_name(i) for i in range(len(ds))] == ["object/000000", "object/000001"]
    sizes = [(370, 1224), (375, 1242)]
    for i in range(2):
        s = ds[i]
        _check_sample(s, *sizes[i])
        n = int(s["valid_mask"].sum())
        assert 18_000 < n < 21_000  # README: about 18.6k-20.3k points project inside
        d = s["sparse_depth"][s["valid_mask"] > 0]
        assert 4.0 < float(d.min()) and float(d.max()) < 80.0
        assert torch.equal(s["gt_depth"], s["sparse_depth"])  # gt_source="lidar": all points
    assert abs(float(ds[0]["K"][0, 0]) - 707.0493) < 1e-3 and abs(float(ds[1]["K"][0, 0]) - 721.5377) < 1e-3

    held = KittiObject(kitti_object_dir, ids=["000001"], gt_source="heldout", holdout_fraction=0.1, seed=3)
    a, b = held[0], held[0]
    assert torch.equal(a["gt_depth"], b["gt_depth"])  # reproducible split
    full = ds[1]["sparse_depth"]
    assert float((a["valid_mask"] * a["gt_mask"]).sum()) == 0  # disjoint
    torch.testing.assert_close(a["sparse_depth"] + a["gt_depth"], full)  # union = all points
    frac = float(a["gt_mask"].sum() / (full > 0).sum())
    assert 0.08 < frac < 0.12


def test_missing_files_raise_clear_errors(tmp_path, kitti_raw_dir):
    with pytest.raises(DatasetError, match="not found"):
        torch_kitti_frames(tmp_path)
    with pytest.raises(DatasetError, match="sparse_source"):
        KittiFileList(torch_kitti_frames(kitti_raw_dir), sparse_source="radar")
    bad = tmp_path / "eigen.txt"
    bad.write_text("2011_09_26/2011_09_26_drive_0001_sync 5 x\n")
    with pytest.raises(DatasetError, match="eigen.txt:1"):
        read_eigen_split(bad)
    with pytest.raises(DatasetError, match="unknown|type"):
        build_dataset({"type": "no_such_dataset", "root": "x"})


# ------------------------------------------------------------------------------------ NYU

def test_nyu_metric3d_sample_in_metres(shared_data):
    root = shared_data / "nyu_depth_v2_metric3d"
    ds = NyuFileList.from_annotations(root)
    assert len(ds) == 3
    for i in range(3):
        s = ds[i]
        _check_sample(s, 480, 640)
        raw = cv2.imread(str(ds.entries[i].depth), cv2.IMREAD_UNCHANGED)
        np.testing.assert_allclose(s["gt_depth"][0].numpy(), raw / 1000.0, atol=1e-6)
        frac = float(s["gt_mask"].mean())
        assert 0.66 < frac < 0.76  # README: 67-75 % valid
        d = s["gt_depth"][s["gt_mask"] > 0]
        assert 0.7 <= float(d.min()) and float(d.max()) <= 8.35
        assert float(s["valid_mask"].sum()) == 0  # no sparse input by default
    np.testing.assert_allclose(ds[0]["K"].numpy(), [[518.8579, 0, 325.58245], [0, 519.46961, 253.73617], [0, 0, 1]], atol=1e-3)
    # The same folder through the glob mode of the sync reader.
    sync = NyuFileList.from_sync_folder(root)
    assert len(sync) == 3 and torch.equal(sync[1]["gt_depth"], ds[1]["gt_depth"])


def test_nyu_sparse_points_sampled_from_gt(shared_data):
    ds = NyuFileList.from_annotations(shared_data / "nyu_depth_v2_metric3d", num_sparse_points=500, seed=1)
    s = ds[0]
    assert int(s["valid_mask"].sum()) == 500
    m = s["valid_mask"] > 0
    torch.testing.assert_close(s["sparse_depth"][m], s["gt_depth"][m])
    assert torch.equal(ds[0]["sparse_depth"], s["sparse_depth"])  # fixed per frame


# ------------------------------------------------------------------------------------ fake official layouts

def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


@pytest.fixture()
def fake_kitti(tmp_path, kitti_raw_dir):
    """Official KITTI raw + DC layout in tmp_path, pointing at the shared torch_kitti files."""
    drive, date, fid = "2011_09_26_drive_0001_sync", "2011_09_26", "0000000005"
    raw = tmp_path / "raw"
    dc = tmp_path / "dc"
    for cam in (2, 3):
        _link(kitti_raw_dir / f"raw/sync_rect/cam_0{cam}.png", raw / date / drive / f"image_0{cam}/data/{fid}.png")
        _link(kitti_raw_dir / f"depth_completion/velodyne_raw_image_0{cam}.png",
              dc / f"data_depth_velodyne/val/{drive}/proj_depth/velodyne_raw/image_0{cam}/{fid}.png")
        _link(kitti_raw_dir / f"depth_completion/groundtruth_image_0{cam}.png",
              dc / f"data_depth_annotated/val/{drive}/proj_depth/groundtruth/image_0{cam}/{fid}.png")
    # A velodyne_raw frame without annotated GT (the first frames of a drive have none).
    _link(kitti_raw_dir / "depth_completion/velodyne_raw_image_02.png",
          dc / f"data_depth_velodyne/val/{drive}/proj_depth/velodyne_raw/image_02/0000000000.png")
    _link(kitti_raw_dir / "raw/sync_rect/cam_02.png", raw / date / drive / "image_02/data/0000000000.png")
    _link(kitti_raw_dir / "raw/lidar_data.bin", raw / date / drive / f"velodyne_points/data/{fid}.bin")
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt"):
        _link(kitti_raw_dir / "raw" / name, raw / date / name)
    return tmp_path, raw, dc


def test_official_dc_layout(fake_kitti, kitti_raw_dir):
    _, raw, dc = fake_kitti
    ds = KittiDepthCompletion(dc, raw, split="val")
    assert len(ds) == 2  # frame 0 has no GT and is skipped
    assert ds.sample_name(0) == "2011_09_26_drive_0001_sync/0000000005/image_02"
    ref = KittiFileList(torch_kitti_frames(kitti_raw_dir))
    for i in range(2):
        a, b = ds[i], ref[i]
        for k in SAMPLE_KEYS:
            assert torch.equal(a[k], b[k]), k
    selfsup = KittiDepthCompletion(dc, raw, split="val", cameras=[2], require_gt=False, gt_source="none")
    assert len(selfsup) == 2 and float(selfsup[0]["gt_mask"].sum()) == 0
    with pytest.raises(DatasetError, match="split"):
        KittiDepthCompletion(dc, raw, split="test")
    with pytest.raises(DatasetError, match="not found"):
        KittiDepthCompletion(dc, raw, split="train")


def test_official_eigen_split_gt_from_projection(fake_kitti, kitti_raw_dir):
    root, raw, _ = fake_kitti
    split = root / "eigen_test_files.txt"
    split.write_text("2011_09_26/2011_09_26_drive_0001_sync 0000000005 l\n2011_09_26/2011_09_26_drive_0001_sync 5 r\n")
    ds = KittiEigen(raw, split)
    assert len(ds) == 2
    s = ds[0]
    assert float(s["valid_mask"].sum()) == 0  # monocular by default
    lidar = KittiFileList(torch_kitti_frames(kitti_raw_dir, cameras=[2]), sparse_source="lidar")[0]
    assert torch.equal(s["gt_depth"], lidar["sparse_depth"])  # GT = the same projection as the nodes
    assert ds.sample_name(1).endswith("image_03")


def test_official_val_selection_cropped(tmp_path, kitti_raw_dir):
    from depth_diffusion_ros.geometry.depth_codecs import read_kitti_depth_png, write_kitti_depth_png

    root = tmp_path / "depth_selection/val_selection_cropped"
    stem = "2011_09_26_drive_0001_sync"
    x0, y0 = (1242 - 1216) // 2, 375 - 352  # the official bottom-centre 1216x352 crop
    rgb = cv2.imread(str(kitti_raw_dir / "raw/sync_rect/cam_02.png"))
    (root / "image").mkdir(parents=True)
    cv2.imwrite(str(root / f"image/{stem}_image_0000000005_image_02.png"), rgb[y0:, x0:x0 + 1216])
    for sub, src, name in (("velodyne_raw", "velodyne_raw_image_02.png", "velodyne_raw"),
                           ("groundtruth_depth", "groundtruth_image_02.png", "groundtruth_depth")):
        d = read_kitti_depth_png(kitti_raw_dir / "depth_completion" / src)
        (root / sub).mkdir()
        write_kitti_depth_png(root / sub / f"{stem}_{name}_0000000005_image_02.png", d[y0:, x0:x0 + 1216])
    (root / "intrinsics").mkdir()
    (root / f"intrinsics/{stem}_image_0000000005_image_02.txt").write_text(
        (kitti_raw_dir / "depth_completion/intrinsics.txt").read_text())
    ds = KittiValSelectionCropped(root)
    s = ds[0]
    _check_sample(s, 352, 1216)
    full = KittiFileList(torch_kitti_frames(kitti_raw_dir, cameras=[2]))[0]
    assert torch.equal(s["gt_depth"], full["gt_depth"][:, y0:, x0:x0 + 1216])
    # The shipped crop intrinsics equal the full-size K shifted by the crop offset.
    np.testing.assert_allclose(s["K"].numpy()[:2, 2], full["K"].numpy()[:2, 2] - [x0, y0], atol=1e-3)


def test_official_nyu_labeled_mat_and_bts_split(tmp_path, shared_data):
    h5py = pytest.importorskip("h5py")
    src = NyuFileList.from_annotations(shared_data / "nyu_depth_v2_metric3d")
    frames = [src.load_frame(i) for i in range(2)]
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(mat, "w") as f:  # MATLAB v7.3 stores column-major: h5py sees (N, 3, W, H), (N, W, H)
        f["images"] = np.stack([fr["rgb"].transpose(2, 1, 0) for fr in frames])
        f["depths"] = np.stack([fr["gt_depth"].T.astype(np.float32) for fr in frames])
    ds = NyuLabeledMat(mat, indices=[1])
    assert len(ds) == 1 and ds.sample_name(0) == "labeled_0001"
    s = ds[0]
    _check_sample(s, 480, 640)
    np.testing.assert_array_equal((s["rgb"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8), frames[1]["rgb"])
    np.testing.assert_allclose(s["gt_depth"][0].numpy(), frames[1]["gt_depth"], atol=1e-6)
    with pytest.raises(DatasetError, match="out of range"):
        NyuLabeledMat(mat, indices=[5])

    # BTS sync layout with a split file.
    scene = tmp_path / "sync/basement_0001a"
    for i, e in enumerate(src.entries[:2]):
        _link(e.rgb, scene / f"rgb_{i:05d}.jpg")
        _link(e.depth, scene / f"sync_depth_{i:05d}.png")
    split = tmp_path / "nyudepthv2_train_files_with_gt.txt"
    split.write_text("/basement_0001a/rgb_00001.jpg /basement_0001a/sync_depth_00001.png 518.8579\n")
    bts = NyuFileList.from_sync_folder(tmp_path / "sync", split)
    assert len(bts) == 1
    torch.testing.assert_close(bts[0]["gt_depth"][0], torch.from_numpy(frames[1]["gt_depth"]))
    assert float(bts[0]["K"][1, 1]) == pytest.approx(518.8579, abs=1e-3)


def test_build_dataset_from_config_with_transforms(kitti_object_dir):
    ds = build_dataset({
        "type": "repeat", "times": 4,
        "dataset": {"type": "kitti_object", "root": str(kitti_object_dir), "ids": ["000000"], "max_depth": 88.0,
                    "transforms": [{"type": "random_crop", "size": [128, 256], "vertical": "bottom"},
                                   {"type": "sparse_dropout", "keep_range": [0.5, 0.5]}]},
    })
    assert len(ds) == 4
    s = ds[2]
    _check_sample(s, 128, 256)
    assert float((s["valid_mask"] * s["gt_mask"]).sum()) == 0  # dropped points supervise, kept do not
    assert float(s["gt_mask"].sum()) > 0
