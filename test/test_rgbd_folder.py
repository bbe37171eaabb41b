"""The generic RGB-D folder loader (colour + 16-bit depth PNG + intrinsics file: SUN3D / 3DMatch,
7-Scenes, colour/depth folders, TUM lists) on the real SUN3D frames and small written layouts;
and the SUN3D split / degradations of the super-resolution training set."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from training.datasets.common import DatasetError
from training.datasets.rgbd_folder import find_rgbd_pairs, read_intrinsics, rgbd_folder_frames
from training.datasets.sr_datasets import (
    SUN3D_HELD_OUT_FRAMES,
    SUN3D_TRAIN_FRAMES,
    SRPatchDataset,
    sun3d_sr_frames,
)
from training.datasets.sun3d import sun3d_frames


def _write_pair(rgb_path, depth_path, depth_mm: np.ndarray) -> None:
    rgb_path.parent.mkdir(parents=True, exist_ok=True)
    depth_path.parent.mkdir(parents=True, exist_ok=True)
    h, w = depth_mm.shape
    cv2.imwrite(str(rgb_path), np.full((h, w, 3), 100, np.uint8))
    cv2.imwrite(str(depth_path), depth_mm.astype(np.uint16))


def test_sun3d_fragments_through_the_generic_loader(shared_data):
    root = shared_data / "sun3d_rgbd_3dmatch"
    ds = rgbd_folder_frames(root)
    assert len(ds) == 100
    f = ds.load_frame(0)
    assert f["rgb"].shape == (480, 640, 3) and f["gt_depth"].shape == (480, 640)
    raw = cv2.imread(str(root / "fragment-1-rgbd-frames/frame-000935.depth.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(f["gt_depth"], raw.astype(np.float32) / 1000.0)
    assert 0.85 < (f["gt_depth"] > 0).mean() < 0.9  # the README: 86.7-88.7 % valid
    np.testing.assert_allclose(f["K"][0, 0], 570.342205) and np.testing.assert_allclose(f["K"][:2, 2], [320, 240])
    assert ds.sample_name(0) == "fragment-1-rgbd-frames/frame-000935.color"
    # sun3d_frames is the same loader, with the per-fragment slice
    part = sun3d_frames(root, frames=slice(40, 50))
    assert len(part) == 20 and part.sample_name(0).endswith("frame-000975.color")


def test_super_resolution_split_holds_the_last_ten_frames_back_with_a_gap(shared_data):
    # the file lists sun3d_sr_frames loads (names only: decoding 96 frames takes a minute here)
    root = shared_data / "sun3d_rgbd_3dmatch"
    train = sun3d_frames(root, frames=slice(*SUN3D_TRAIN_FRAMES))
    held = sun3d_frames(root, frames=slice(*SUN3D_HELD_OUT_FRAMES))
    assert len(train) == 76 and len(held) == 20
    names = lambda fl: [fl.sample_name(i) for i in range(len(fl))]  # noqa: E731
    assert not set(names(train)) & set(names(held))
    numbers = lambda fl, frag: sorted(int(n.split("frame-")[1][:6]) for n in names(fl) if frag in n)  # noqa: E731
    assert numbers(train, "fragment-1")[-1] == 972 and numbers(held, "fragment-1")[0] == 975  # 973-974: gap
    assert numbers(held, "fragment-2") == list(range(3200, 3210))


def test_colour_depth_folders_with_a_4_number_intrinsics_file_and_65535_holes(tmp_path):
    d = np.full((8, 12), 1500, np.uint16)
    d[0, 0] = 65535  # 7-Scenes-style "no return"
    d[1, 1] = 0
    for stem in ("000001", "000002"):
        _write_pair(tmp_path / "rec" / "color" / f"{stem}.jpg", tmp_path / "rec" / "depth" / f"{stem}.png", d)
    (tmp_path / "rec" / "intrinsics.txt").write_text("500 501 6 4\n")
    ds = rgbd_folder_frames(tmp_path / "rec")
    assert len(ds) == 2
    f = ds.load_frame(1)
    assert f["gt_depth"][0, 0] == 0 and f["gt_depth"][1, 1] == 0 and f["gt_depth"][2, 2] == pytest.approx(1.5)
    np.testing.assert_allclose([f["K"][0, 0], f["K"][1, 1], f["K"][0, 2], f["K"][1, 2]], [500, 501, 6, 4])


def test_tum_lists_associate_nearest_depth_and_depth_scale(tmp_path):
    rec = tmp_path / "tum"
    d = np.full((6, 8), 5000, np.uint16)  # TUM: 5000 units per metre
    _write_pair(rec / "rgb" / "1.000.png", rec / "depth" / "1.010.png", d)
    _write_pair(rec / "rgb" / "2.000.png", rec / "depth" / "2.500.png", d)  # 0.5 s away: not associated
    (rec / "rgb.txt").write_text("# timestamp filename\n1.000 rgb/1.000.png\n2.000 rgb/2.000.png\n")
    (rec / "depth.txt").write_text("# timestamp filename\n1.010 depth/1.010.png\n2.500 depth/2.500.png\n")
    pairs = find_rgbd_pairs(rec)
    assert [(p[0].name, p[1].name) for p in pairs] == [("1.000.png", "1.010.png")]
    ds = rgbd_folder_frames(rec, depth_scale=5000.0, intrinsics=(525.0, 525.0, 3.5, 2.5))
    assert len(ds) == 1 and ds.load_frame(0)["gt_depth"][0, 0] == pytest.approx(1.0)


def test_errors_name_what_is_missing(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        rgbd_folder_frames(tmp_path / "nothing")
    rec = tmp_path / "rec"
    _write_pair(rec / "a.color.png", rec / "a.depth.png", np.full((4, 4), 1000, np.uint16))
    with pytest.raises(DatasetError, match="no intrinsics file"):
        rgbd_folder_frames(rec)
    (rec / "K.txt").write_text("1 2 3\n")
    with pytest.raises(DatasetError, match="9 numbers"):
        read_intrinsics(rec / "K.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no colour/depth pairs"):
        rgbd_folder_frames(tmp_path, sequences=["empty"])


def test_patch_dataset_draws_degraded_inputs(shared_data):
    sources = {"sun3d": sun3d_sr_frames(shared_data / "sun3d_rgbd_3dmatch", (0, 2))}
    ds = SRPatchDataset(sources, crop_size=64, scales=(8,), batch_size=4, length=40,
                        degradations={"sensor": 1.0}, edge_bias=0.5)
    holes = [float((s["valid_mask_lr"] == 0).float().mean()) for s in (ds[i] for i in range(40))]
    assert np.mean(holes) > 0.01  # the sensor preset makes holes the bicubic protocol never does
    with pytest.raises(DatasetError, match="degradations"):
        SRPatchDataset(sources, crop_size=64, scales=(8,), degradations={"blur": 1.0})
