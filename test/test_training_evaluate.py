"""Evaluation protocols, held-out splits and the shipped training configs."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _training_standin import TinyCompletion  # noqa: E402
from depth_diffusion_ros.evaluation.metrics import depth_metrics, garg_crop_mask  # noqa: E402
from training.datasets.kitti import KittiFileList, KittiObject, torch_kitti_frames  # noqa: E402
from training.evaluate import (  # noqa: E402
    baseline_pipeline,
    evaluate_baseline,
    evaluate_model,
    get_protocol,
    model_pipeline,
    sample_frame,
    score_frame,
)

pytestmark = pytest.mark.torch
CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


def test_protocols_apply_crop_cap_and_units():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 100, (375, 1242)).astype(np.float32)
    pred = gt + 1.0
    dc = score_frame(pred, gt, get_protocol("kitti_dc"))
    assert dc["rmse_mm"] == pytest.approx(1000.0, rel=1e-5) and dc["n_valid"] == gt.size
    eig = score_frame(pred, gt, get_protocol("kitti_eigen"))
    ref = depth_metrics(pred, gt, valid_mask=garg_crop_mask(375, 1242), max_depth=80.0)
    assert eig["rmse"] == pytest.approx(ref["rmse"]) and eig["n_valid"] == ref["n_valid"]
    assert eig["n_valid"] < garg_crop_mask(375, 1242).sum()  # GT above 80 m dropped
    nyu = score_frame(np.full((480, 640), 2.0), np.full((480, 640), 2.0), get_protocol("nyu_eigen"))
    assert nyu["abs_rel"] == 0 and nyu["n_valid"] == (471 - 45) * (601 - 41)
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        get_protocol("kitti")


def test_model_pipeline_pads_to_divisor_and_crops_back(kitti_raw_dir):
    """Any module with the trainer's sample() API runs through the completion pipeline, padded to
    its size_divisor (edge-repeated image, zero = missing sparse depth) and cropped back."""
    from depth_diffusion_ros.inference import frames

    torch.manual_seed(0)
    model = TinyCompletion()
    model.size_divisor = 32
    rgb, sparse, _ = sample_frame(KittiFileList(torch_kitti_frames(kitti_raw_dir, cameras=[2]))[0])
    pred = model_pipeline(model)(rgb, sparse)
    assert pred.shape == (375, 1242)
    rgb_p, pads = frames.pad_to_multiple(rgb, 32)
    sparse_p, _ = frames.pad_to_multiple(sparse, 32)
    assert rgb_p.shape == (384, 1248, 3) and float(np.abs(sparse_p[375:]).sum()) == 0  # sparse padded with 0
    s_t, v_t = frames.sparse_to_tensor_layout(sparse_p)
    with torch.no_grad():
        direct = model.sample(*(torch.from_numpy(a) for a in (frames.rgb_to_tensor_layout(rgb_p), s_t, v_t)))
    np.testing.assert_array_equal(pred, direct[0, 0, :375, :1242].numpy())


def test_ip_basic_scores_on_held_out_frames(kitti_raw_dir, kitti_object_dir):
    raw = KittiFileList(torch_kitti_frames(kitti_raw_dir, cameras=[2]))
    res = evaluate_baseline(baseline_pipeline("ip_basic"), raw, "kitti_dc")
    m = res["mean"]
    assert res["n_frames"] == 1 and 88_000 < m["n_valid"] < 92_000
    assert 900 < m["rmse_mm"] < 1500 and m["mae_mm"] < m["rmse_mm"]  # IP-Basic: ~1.2 m RMSE here
    # The same split replay makes: holdout_mask over the 3-D points, frame index 1 for 000001.
    from depth_diffusion_ros.geometry.calibration import read_velodyne_bin
    from depth_diffusion_ros.geometry.sampling import holdout_mask

    obj = KittiObject(kitti_object_dir, ids=["000001"], gt_source="heldout", holdout_space="points", seed=0)
    s = obj[0]
    n = len(read_velodyne_bin(kitti_object_dir / "velodyne/000001.bin"))
    held = holdout_mask(n, 0.1, 0, 1)
    assert held.sum() == round(0.1 * n)
    full = KittiObject(kitti_object_dir, ids=["000001"])[0]
    n_gt, n_in, n_all = int(s["gt_mask"].sum()), int(s["valid_mask"].sum()), int(full["valid_mask"].sum())
    assert 0.08 * n_all < n_gt < 0.12 * n_all and n_in < n_all <= n_in + n_gt
    obj_pix = KittiObject(kitti_object_dir, ids=["000001"], gt_source="heldout", holdout_space="pixels", seed=0)
    assert not torch.equal(obj_pix[0]["gt_depth"], s["gt_depth"])


def test_evaluate_model_reports_frames_and_figure(tmp_path, kitti_raw_dir):
    torch.manual_seed(0)
    model = TinyCompletion()
    ds = KittiFileList(torch_kitti_frames(kitti_raw_dir))
    res = evaluate_model(model, ds, "kitti_dc", max_frames=1, figure_path=tmp_path / "f.png")
    assert res["n_frames"] == 1 and res["frames"][0]["name"].endswith("image_02")
    assert res["mean"]["rmse_mm"] > 0 and (tmp_path / "f.png").stat().st_size > 1000
    assert model.training  # train/eval mode restored


@pytest.mark.parametrize("name", ["kitti_eigen_swinl.yaml", "nyu_swinl.yaml", "kitti_dc_swinl.yaml",
                                  "kitti_completion_v2.yaml"])
def test_shipped_configs_are_valid(name):
    from depth_diffusion_ros.models.config import DiffusionDepthConfig
    from training.train import load_config
    from training.trainer import TrainConfig
    from training.transforms import build_transforms

    cfg = load_config(CONFIGS / name)
    model = {k: v for k, v in cfg["model"].items() if k not in ("type", "post_init", "init_from")}
    mc = DiffusionDepthConfig.from_dict(model)
    tc = TrainConfig.from_dict(cfg["train"])
    for split in ("train", "val"):
        spec = cfg["data"][split]
        for d in spec.get("datasets", [spec]):
            d = d.get("dataset", d)
            build_transforms(d.get("transforms"))
    if "swinl" in name:  # the paper's settings
        assert mc.backbone.startswith("swin_large") and mc.latent_channels == 16 and mc.latent_stride == 2
        assert (mc.num_train_timesteps, mc.num_inference_steps, mc.num_self_diffusion_steps) == (1000, 20, 20)
        assert tc.epochs == 30 and tc.batch_size == 16 and tc.lr == 1e-3
        assert list(tc.lr_milestones) == [10, 15, 20]
    assert yaml.safe_load((CONFIGS / name).read_text())["train"]["out_dir"].startswith("runs/")
