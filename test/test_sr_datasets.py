"""CDSR data: the protocol's bicubic degradation, hole filling, padding, and the loaders
(NYU, Middlebury 2014 / scikit-image copy, paired folders, KITTI, Marigold) on the real frames in
../shared/data plus small files written here for the layouts that are not in it."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch.utils.data import DataLoader, RandomSampler

from depth_diffusion_ros.geometry.resample import bicubic_downsample_depth, fill_depth_holes, super_resolution_scale
from depth_diffusion_ros.inference.frames import finish_sr_output, prepare_sr_inputs
from training.datasets.common import DatasetError
from training.datasets.sr_datasets import (
    MiddleburyStereo,
    PairedFolder,
    SREvalDataset,
    SRPatchDataset,
    build_sr_patch_dataset,
    disparity_to_depth,
    kitti_frames,
    lu_dataset,
    marigold_frame,
    nyu_frames,
    read_middlebury_calib,
    read_pfm,
)


# ----------------------------------------------------------------------------- degradation / io
def test_bicubic_downsample_equals_pil_bicubic_on_dense_depth(shared_data):
    gt = np.load(shared_data / "indoor_depth_completion_marigold_dc" / "gt.npy").astype(np.float32)
    dense = np.where(gt > 0, gt, 5.0).astype(np.float32)[:480, :640]
    for s in (4, 8, 16):
        lr = bicubic_downsample_depth(dense, s)
        ref = np.asarray(PILImage.fromarray(dense, mode="F").resize((640 // s, 480 // s), PILImage.BICUBIC))
        assert lr.shape == (480 // s, 640 // s)
        np.testing.assert_allclose(lr, ref, rtol=1e-6)
    # antialiased: a 1-pixel checkerboard averages out (a point-sampling resize would alias)
    cb = (np.indices((64, 64)).sum(0) % 2).astype(np.float32) + 1.0
    np.testing.assert_allclose(bicubic_downsample_depth(cb, 8), 1.5, atol=0.02)


def test_bicubic_downsample_with_holes():
    d = np.full((32, 32), 2.0, np.float32)
    d[:, :8] = 0.0           # an invalid band: LR columns 0-1 (x4) lose their support
    d[20, 20] = np.nan       # a single NaN: its LR pixel stays valid (normalised convolution)
    lr = bicubic_downsample_depth(d, 4)
    assert (lr[:, 0] == 0).all()
    assert (lr[:, 3:] > 0).all()
    np.testing.assert_allclose(lr[lr > 0], 2.0, atol=1e-4)  # no bleeding of the 0s into valid pixels
    with pytest.raises(ValueError, match="divisible"):
        bicubic_downsample_depth(np.ones((30, 32), np.float32), 4)
    with pytest.raises(ValueError, match="integer"):
        bicubic_downsample_depth(np.ones((32, 32), np.float32), 2.5)


def test_fill_depth_holes_nearest():
    d = np.zeros((5, 7), np.float32)
    d[0, 0], d[4, 6] = 1.0, 3.0
    filled, mask = fill_depth_holes(d)
    assert filled[0, 1] == 1.0 and filled[1, 0] == 1.0 and filled[4, 5] == 3.0 and filled[3, 6] == 3.0
    assert mask.sum() == 2 and mask[0, 0] == 1 and mask[4, 6] == 1
    assert (filled > 0).all()
    with pytest.raises(ValueError, match="no valid pixel"):
        fill_depth_holes(np.full((3, 3), np.nan, np.float32))


def test_prepare_and_finish_sr_inputs_pad_and_crop():
    rgb = np.zeros((36, 52, 3), np.uint8)
    lr = np.full((9, 13), 2.0, np.float32)
    lr[0, 0] = 0.0
    inp = prepare_sr_inputs(rgb, lr, size_divisor=8)
    assert inp.scale == 4 and inp.size == (36, 52)
    assert inp.rgb.shape == (1, 3, 40, 56) and inp.depth_lr.shape == (1, 1, 10, 14)
    assert inp.depth_lr[0, 0, 0, 0] == 2.0 and inp.valid_mask_lr[0, 0, 0, 0] == 0.0
    out = finish_sr_output(np.full((1, 1, 40, 56), 3.0, np.float32), inp)
    assert out.shape == (36, 52)
    assert out[0, 0] == 0.0 and out[20, 20] == 3.0  # no LR measurement near the top-left corner
    with pytest.raises(ValueError, match="not an integer"):
        prepare_sr_inputs(rgb, np.ones((10, 13), np.float32), 8)
    with pytest.raises(ValueError, match="outside the backend's range"):
        prepare_sr_inputs(rgb, lr, 8, min_scale=8, max_scale=16)
    with pytest.raises(ValueError, match="differs between columns") as err:
        super_resolution_scale(36, 52, 9, 26)
    assert err.value.reason == "bad_scale"


# ----------------------------------------------------------------------------- loaders
def test_nyu_frames_from_shared_data(shared_data):
    src = nyu_frames(shared_data / "nyu_depth_v2_metric3d", names=["rgb_00100"])
    assert len(src) == 1 and src.sample_name(0).endswith("rgb_00100")
    f = src.load_frame(0)
    raw = cv2.imread(str(shared_data / "nyu_depth_v2_metric3d/depth/sync_depth_00100.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(f["gt_depth"], raw.astype(np.float32) / 1000.0, atol=1e-6)
    assert f["rgb"].shape == (480, 640, 3)
    with pytest.raises(DatasetError, match="no NYU frames"):
        nyu_frames(shared_data / "nyu_depth_v2_metric3d", names=["rgb_99999"])


def test_middlebury_skimage_copy_is_skimage_stereo_motorcycle(shared_data):
    from skimage.data import stereo_motorcycle

    left, _, disp = stereo_motorcycle()
    src = MiddleburyStereo(shared_data / "middlebury2014_motorcycle_skimage")
    f = src.load_frame(0)
    np.testing.assert_array_equal(f["rgb"], left)
    calib = read_middlebury_calib(shared_data / "middlebury2014_motorcycle_skimage/calib.txt")
    assert calib == pytest.approx({"f": 994.978, "cx": 311.193, "cy": 254.877, "doffs": 31.086, "baseline": 193.001})
    ok = np.isfinite(disp)
    expected = 193.001 * 994.978 / (disp[ok] + 31.086) / 1000.0
    np.testing.assert_allclose(f["gt_depth"][ok], expected, rtol=1e-5)
    assert (f["gt_depth"][~ok] == 0).all()
    assert 2.0 < f["gt_depth"][ok].min() and f["gt_depth"].max() < 5.1
    # spatial split for the demo: columns 0-60 % / 60-100 %
    a = MiddleburyStereo(shared_data / "middlebury2014_motorcycle_skimage", column_range=(0.0, 0.6)).load_frame(0)
    b = MiddleburyStereo(shared_data / "middlebury2014_motorcycle_skimage", column_range=(0.6, 1.0)).load_frame(0)
    assert a["rgb"].shape[1] + b["rgb"].shape[1] == 741
    np.testing.assert_array_equal(b["gt_depth"], f["gt_depth"][:, a["rgb"].shape[1]:])
    assert b["K"][0, 2] == pytest.approx(311.193 - a["rgb"].shape[1])


def _write_pfm(path, array):
    h, w = array.shape
    with open(path, "wb") as fh:
        fh.write(f"Pf\n{w} {h}\n-1.0\n".encode())
        fh.write(np.ascontiguousarray(array[::-1], dtype="<f4").tobytes())


def test_middlebury_2014_layout_and_pfm(tmp_path):
    scene = tmp_path / "Toy-perfect"
    scene.mkdir()
    disp = np.linspace(10, 60, 24 * 32, dtype=np.float32).reshape(24, 32)
    disp[0, 0] = np.inf
    _write_pfm(scene / "disp0.pfm", disp)
    np.testing.assert_array_equal(read_pfm(scene / "disp0.pfm")[1:], disp[1:])  # top row first
    rgb = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    cv2.imwrite(str(scene / "im0.png"), rgb[..., ::-1])
    (scene / "calib.txt").write_text(
        "cam0=[3997.684 0 1176.728; 0 3997.684 1011.728; 0 0 1]\ncam1=[3997.684 0 1307.839; 0 3997.684 1011.728; 0 0 1]\n"
        "doffs=131.111\nbaseline=193.001\nwidth=32\nheight=24\nndisp=280\n")
    src = MiddleburyStereo(tmp_path)
    assert len(src) == 1 and src.sample_name(0) == "Toy-perfect"
    f = src.load_frame(0)
    np.testing.assert_array_equal(f["rgb"], rgb)
    np.testing.assert_allclose(f["gt_depth"][1:], 193.001 * 3997.684 / (disp[1:] + 131.111) / 1000, rtol=1e-5)
    assert f["gt_depth"][0, 0] == 0.0
    assert f["K"][0, 0] == pytest.approx(3997.684) and f["K"][0, 2] == pytest.approx(1176.728)
    np.testing.assert_allclose(disparity_to_depth(np.array([-1.0, 0.0]), read_middlebury_calib(scene / "calib.txt")), 0)
    (tmp_path / "bad.pfm").write_bytes(b"P6\n1 1\n255\n")
    with pytest.raises(DatasetError, match="not a PFM"):
        read_pfm(tmp_path / "bad.pfm")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no Middlebury scene"):
        MiddleburyStereo(tmp_path / "empty")


def test_paired_folder_lu_layout(tmp_path):
    (tmp_path / "RGB").mkdir()
    (tmp_path / "Depth").mkdir()
    rgb = np.full((16, 20, 3), 100, np.uint8)
    depth8 = np.tile(np.arange(20, dtype=np.uint8) * 10 + 5, (16, 1))
    for stem in ("a", "b"):
        cv2.imwrite(str(tmp_path / "RGB" / f"{stem}.png"), rgb)
        cv2.imwrite(str(tmp_path / "Depth" / f"{stem}.png"), depth8)
    np.save(tmp_path / "Depth" / "c.npy", depth8.astype(np.float32))  # no colour image: skipped
    src = lu_dataset(tmp_path)
    assert len(src) == 2 and [src.sample_name(i) for i in range(2)] == ["a", "b"]
    np.testing.assert_array_equal(src.load_frame(0)["gt_depth"], depth8.astype(np.float32))
    scaled = PairedFolder(tmp_path, depth_scale=255.0)
    np.testing.assert_allclose(scaled.load_frame(1)["gt_depth"], depth8 / 255.0, rtol=1e-6)
    with pytest.raises(DatasetError, match="none of"):
        PairedFolder(tmp_path, rgb_dir="colour")


def test_kitti_and_marigold_frames(shared_data):
    k = kitti_frames(shared_data / "kitti_raw_depth_completion_torch_kitti", cameras=(3,))
    f = k.load_frame(0)
    assert f["rgb"].shape == (375, 1242, 3) and 0.1 < (f["gt_depth"] > 0).mean() < 0.3
    m = marigold_frame(shared_data / "indoor_depth_completion_marigold_dc").load_frame(0)
    assert m["gt_depth"].shape == (480, 640) and (m["gt_depth"] > 0).mean() > 0.9


def test_patch_dataset_one_scale_per_batch_with_shuffled_sampler(shared_data):
    ds = build_sr_patch_dataset(shared_data, crop_size=64, scales=(4, 8, 16), batch_size=3, length=18,
                                weights={"nyu": 1, "middlebury": 1, "kitti": 1, "marigold": 1})
    loader = DataLoader(ds, batch_size=3, sampler=RandomSampler(ds), drop_last=True)
    seen = []
    for b in loader:
        s = int(b["scale"][0])
        assert (b["scale"] == s).all()
        assert b["rgb"].shape == (3, 3, 64, 64) and b["gt_depth"].shape == (3, 1, 64, 64)
        assert b["depth_lr"].shape == (3, 1, 64 // s, 64 // s)
        assert (b["depth_lr"] > 0).all()  # holes filled
        assert torch.equal(b["gt_mask"], (b["gt_depth"] > 0).float())
        seen.append(s)
    assert seen == [4, 8, 16, 4, 8, 16]
    with pytest.raises(DatasetError, match="multiple of every scale"):
        SRPatchDataset(ds_sources(shared_data), crop_size=60, scales=(8,))


def ds_sources(shared_data):
    return {"nyu": nyu_frames(shared_data / "nyu_depth_v2_metric3d", names=["rgb_00000"])}


def test_eval_dataset_crops_to_multiple(shared_data):
    src = MiddleburyStereo(shared_data / "middlebury2014_motorcycle_skimage")
    ev = SREvalDataset(src, scale=8)
    rgb, gt, lr = ev.load_pair(0)
    assert rgb.shape == (480, 736, 3) and gt.shape == (480, 736) and lr.shape == (60, 92)
    sample = ev[0]
    assert sample["depth_lr"].shape == (1, 60, 92) and sample["rgb"].shape == (3, 480, 736)


def test_patch_dataset_per_scale_crop_sizes(shared_data):
    sources = ds_sources(shared_data)
    # Default (no crop_sizes): crop_size at every scale, as before.
    assert SRPatchDataset(sources, crop_size=64, scales=(4, 8)).crop_sizes == {4: 64, 8: 64}
    ds = SRPatchDataset(sources, crop_size=64, scales=(4, 16), batch_size=2, length=8, crop_sizes={16: 128})
    loader = DataLoader(ds, batch_size=2, sampler=RandomSampler(ds), drop_last=True)
    shapes = [(int(b["scale"][0]), tuple(b["rgb"].shape), tuple(b["depth_lr"].shape)) for b in loader]
    assert shapes == [(4, (2, 3, 64, 64), (2, 1, 16, 16)), (16, (2, 3, 128, 128), (2, 1, 8, 8))] * 2
    # YAML / command-line keys may be strings.
    assert SRPatchDataset(sources, crop_size=64, scales=(8,), crop_sizes={"8": 96}).crop_sizes == {8: 96}
    with pytest.raises(DatasetError, match="not one of the scales"):
        SRPatchDataset(sources, crop_size=64, scales=(4, 8), crop_sizes={16: 128})
    with pytest.raises(DatasetError, match="multiple of every scale"):
        SRPatchDataset(sources, crop_size=64, scales=(4, 16), crop_sizes={16: 120})
    with pytest.raises(DatasetError, match=">= 1"):
        SRPatchDataset(sources, crop_size=64, scales=(8,), crop_sizes={8: 0})
    with pytest.raises(DatasetError, match="integer"):
        SRPatchDataset(sources, crop_size=64, scales=(8,), crop_sizes={8: "big"})
    with pytest.raises(DatasetError, match="must map scales"):
        SRPatchDataset(sources, crop_size=64, scales=(8,), crop_sizes=[256])
    with pytest.raises(DatasetError, match="smaller than the crop size 1024"):
        SRPatchDataset(sources, crop_size=64, scales=(8,), crop_sizes={8: 1024})
