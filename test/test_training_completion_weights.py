"""The shipped default completion model (``weights/diffusion_depth_kitti``, built by ``python -m
training.kitti_completion``): its files, its ONNX export, and its accuracy against the peers.

Accuracy is checked on KITTI frames it was never trained on (raw drive 0001 frame 5 camera 2
with its KITTI DC ground truth, and object 000001 against 10 % of its LiDAR points held out),
twice: directly on the bottom 256x1216 band of both frames, which holds their ground truth (a
smaller input keeps the test quick; the model card reports the full frames and more sets), and
through ``make demo``'s replay of the full frames through the real nodes with the model in ONNX
Runtime. What the card measures on these two independent frames is the bar: the model beats linear
interpolation and stays within 10 % of IP-Basic's RMSE (it does not beat IP-Basic there; on the
sequence's validation blocks it beats every peer's RMSE, see the card).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from depth_diffusion_ros.inference.backends.exported import (
    DEFAULT_COMPLETION_CHECKPOINT,
    DEFAULT_COMPLETION_EXPORT,
    STEP_FILES,
)
from depth_diffusion_ros.models.checkpoint import load_checkpoint
from depth_diffusion_ros.tools.onnx_cache import checkpoint_sha256
from training.datasets.kitti import KittiFileList, KittiObject, torch_kitti_frames
from training.evaluate import baseline_pipeline, get_protocol, model_pipeline, sample_frame, score_frame

pytestmark = pytest.mark.torch
WEIGHTS = DEFAULT_COMPLETION_CHECKPOINT


def test_weights_folder_is_complete_and_small():
    names = {p.name for p in WEIGHTS.iterdir()}
    assert {"model.safetensors", "config.yaml", "MODEL_CARD.md", "results.json"} <= names, sorted(names)
    total = sum(p.stat().st_size for p in WEIGHTS.rglob("*") if p.is_file())  # the ONNX export included
    assert total <= 20 * 1024 * 1024, f"{total / 1e6:.1f} MB"
    card = (WEIGHTS / "MODEL_CARD.md").read_text()
    for needle in ("IP-Basic", "RMSE", "python -m training.kitti_completion", "000001", "CC BY-NC-SA"):
        assert needle in card, needle


def test_shipped_export_is_of_the_shipped_weights():
    """``weights/diffusion_depth_kitti/onnx`` (the onnxruntime/tensorrt default ``model_path``) holds
    the step form for KITTI frames (any number of steps and ensemble size; the unrolled form would
    take the folder past 20 MB for ~25 ms a frame), exported from exactly the weights beside it (a
    stale export after new weights are dropped in fails here)."""
    for name in STEP_FILES:
        assert (DEFAULT_COMPLETION_EXPORT / name).is_file(), name
    meta = json.loads((DEFAULT_COMPLETION_EXPORT / "export.json").read_text())
    assert meta["model_sha256"] == checkpoint_sha256(WEIGHTS), "re-export: the ONNX graphs are of other weights"
    assert (meta["width"], meta["height"]) == (1248, 384)  # KITTI's 1242x375 padded to the size divisor


def test_model_card_numbers_are_measured():
    """The card's IP-Basic row for the held-out raw frame is what the metrics module measures."""
    from training.kitti_completion import PEERS, load_frames, score_method, validation_sets

    name, row = "raw 0001 (DC GT)", "IP-Basic (bilateral)"
    backend, options = PEERS[row]
    m = score_method(baseline_pipeline(backend, **options), load_frames(validation_sets()[name]))
    results = json.loads((WEIGHTS / "results.json").read_text())
    assert results["scores"]["sets"][name][row]["rmse_mm"] == pytest.approx(m["rmse_mm"], rel=1e-6)
    card = (WEIGHTS / "MODEL_CARD.md").read_text()
    assert f"| {name} | {row} | {m['rmse_mm']:.0f} | {m['mae_mm']:.0f} |" in card


def _bottom_band(sample, rows=256, width=1216):
    h, w = sample["rgb"].shape[-2:]
    y0, x0 = h - rows, (w - width) // 2
    return {k: (v[..., y0:, x0:x0 + width] if v.ndim == 3 else v) for k, v in sample.items()}


def _held_out(kitti_raw_dir, kitti_object_dir, name):
    if name == "raw cam2":
        return KittiFileList(torch_kitti_frames(kitti_raw_dir, cameras=[2]))[0]
    return KittiObject(kitti_object_dir, ids=["000001"], gt_source="heldout", holdout_space="points", seed=0)[0]


#: The card's finding on the two independent frames: RMSE below linear interpolation's and at
#: most this factor of IP-Basic's (bilateral): below it since the accumulated targets (1.10 before).
IP_BASIC_FACTOR = 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["raw cam2", "object 000001"])
def test_shipped_model_beats_linear_and_is_near_ip_basic_on_held_out_frames(kitti_raw_dir, kitti_object_dir, name):
    torch.set_num_threads(1)
    model = load_checkpoint(WEIGHTS)
    assert model.config.mode == "completion"
    full = _held_out(kitti_raw_dir, kitti_object_dir, name)
    rgb, sparse, gt = sample_frame(_bottom_band(full))
    assert np.count_nonzero(gt) > 0.95 * np.count_nonzero(full["gt_depth"].numpy())
    pred = model_pipeline(model, seed=0)(rgb, sparse)
    proto = get_protocol("kitti_dc")
    ours = score_frame(pred, gt, proto)["rmse_mm"]
    ipb = score_frame(baseline_pipeline("ip_basic")(rgb, sparse), gt, proto)["rmse_mm"]
    lin = score_frame(baseline_pipeline("linear")(rgb, sparse), gt, proto)["rmse_mm"]
    assert ours < lin, f"{name}: shipped model RMSE {ours:.1f} mm vs linear {lin:.1f} mm"
    assert ours <= IP_BASIC_FACTOR * ipb, f"{name}: shipped model RMSE {ours:.1f} mm vs IP-Basic {ipb:.1f} mm"


@pytest.mark.slow
@pytest.mark.ros
def test_shipped_model_in_the_replay_evaluation(shared_data, tmp_path, capsys, monkeypatch):
    """The main job's evaluation, as ``make demo`` runs it: kitti-to-bag, then replay through the real
    nodes (the shipped model in ONNX Runtime, IP-Basic and linear interpolation in the classical
    backend), scored by depth_evaluation_node. Held-out frames: object 000001 (frame 1 of its bag,
    10 % of the LiDAR points held out as ground truth) and the raw frame's camera 2 (KITTI DC
    ground truth)."""
    from depth_diffusion_ros.cli import main as cli_main

    monkeypatch.setenv("DDR_SHARED_DATA", str(shared_data))
    out = tmp_path / "demo"
    rc = cli_main(["demo", "--output", str(out), "--backends", "ip_basic,linear,onnxruntime", "--frames", "1",
                   "--no-sr"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "RMSE [mm] per KITTI frame" in text
    rows = {(r["dataset"], r["backend"]): r for r in json.loads((out / "summary.json").read_text())["rows"]}
    ours = f"onnxruntime:{WEIGHTS.name}"
    problems = []
    for dataset, frame in (("kitti_object", "1"), ("kitti_dc", "0")):
        m, i, lin = (rows[(dataset, b)]["per_frame_rmse_mm"][frame] for b in (ours, "ip_basic", "linear"))
        if not m < lin:
            problems.append(f"{dataset} frame {frame}: shipped model {m:.1f} mm vs linear {lin:.1f} mm")
        if not m <= IP_BASIC_FACTOR * i:
            problems.append(f"{dataset} frame {frame}: shipped model {m:.1f} mm vs IP-Basic {i:.1f} mm")
    assert not problems, "; ".join(problems)
