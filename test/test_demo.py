"""The demo: Middlebury (scikit-image data) + KITTI through the real nodes, one metrics table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from depth_diffusion_ros.cli import main as cli_main
from depth_diffusion_ros.evaluation.metrics import depth_metrics, to_kitti_units
from depth_diffusion_ros.tools import bag_io
from depth_diffusion_ros.tools.demo import (
    completion_checkpoint_problem,
    discover_backends,
    lidar_like_sparse,
    motorcycle_depth,
)

TS = get_typestore(Stores.ROS2_HUMBLE)


def read_topic(bag: Path, topic: str) -> list:
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [TS.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]


def test_motorcycle_depth_and_lidar_like_sampling() -> None:
    rgb, depth, intr = motorcycle_depth()
    assert rgb.shape == (500, 741, 3) and depth.shape == (500, 741)
    valid = depth > 0
    assert 0.90 < valid.mean() < 0.95  # 7.3 % of the disparity is inf (no ground truth)
    assert depth[valid].min() == pytest.approx(2.11, abs=0.01) and depth[valid].max() == pytest.approx(5.02, abs=0.01)
    assert (intr.fx, intr.cx, intr.cy, intr.width, intr.height) == (994.978, 311.193, 254.877, 741, 500)
    sparse = lidar_like_sparse(depth, n_rows=64, col_step=4, dropout=0.1, seed=0, phase=0)
    rows = np.flatnonzero((sparse > 0).any(axis=1))
    assert 55 <= rows.size <= 64  # scan lines (a few may coincide after jitter)
    np.testing.assert_array_equal(sparse[sparse > 0], depth[sparse > 0])
    density = (sparse > 0).mean()
    assert 0.02 < density < 0.04  # about KITTI's 4 %
    np.testing.assert_array_equal(sparse, lidar_like_sparse(depth, 64, 4, 0.1, 0, 0))  # seeded
    assert not np.array_equal(sparse, lidar_like_sparse(depth, 64, 4, 0.1, 0, 1))  # the scan moves


def test_backend_discovery_from_weights_folder(tmp_path: Path) -> None:
    none = {c.label: c for c in discover_backends(tmp_path / "missing")}
    assert none["ip_basic"].skip is None and none["nearest"].skip is None
    assert "no shipped torch weights" in none["torch"].skip
    assert none["tensorrt"].skip  # no TensorRT / GPU here
    model = tmp_path / "dd_small"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"")
    (model / "config.yaml").write_text("backbone: resnet18\n")
    exported = tmp_path / "dd_exported"  # an export folder only (no checkpoint)
    (exported / "onnx").mkdir(parents=True)
    (exported / "onnx" / "step.onnx").write_bytes(b"")
    found = {c.label: c for c in discover_backends(tmp_path, steps=4)}
    assert found["torch:dd_small"].options == {"model_path": str(model), "num_inference_steps": 4}
    # a checkpoint is exported to ONNX by the demo itself (per frame size), then run by onnxruntime
    assert found["onnxruntime:dd_small"].export_from == model
    assert found["onnxruntime:dd_small"].options == {"num_inference_steps": 4}
    assert found["onnxruntime:dd_exported"].options["model_path"] == str(exported / "onnx")
    assert "torch:dd_exported" not in found
    assert [c.label for c in discover_backends(tmp_path, only=["nearest"])] == ["nearest"]


def test_only_diffusion_depth_checkpoints_become_completion_backends(tmp_path: Path) -> None:
    """A DSR-Diff super-resolution checkpoint (or any non-DiffusionDepth config) in the weights
    folder is listed as skipped with the reason, never replayed through depth_completion_node."""
    for name, config in (("dd", "backbone: mobilenetv3_small_100\nmode: completion\n"),
                         ("dd_mono", "mode: monocular\n"),
                         ("sr", "architecture: dsr_diff\nchannels: 32\nscales: [4, 8, 16]\n"),
                         ("other", "channels: 32\nnum_heads: 2\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"")
        (tmp_path / name / "config.yaml").write_text(config)
    (tmp_path / "empty").mkdir()
    assert completion_checkpoint_problem(tmp_path / "dd") is None
    assert "monocular model" in completion_checkpoint_problem(tmp_path / "dd_mono")
    assert "dsr_diff checkpoint" in completion_checkpoint_problem(tmp_path / "sr")
    assert "unknown DiffusionDepthConfig keys" in completion_checkpoint_problem(tmp_path / "other")
    assert "no config.yaml" in completion_checkpoint_problem(tmp_path / "empty")
    choices = discover_backends(tmp_path)
    runnable = {c.label: c for c in choices if c.skip is None}
    assert "torch:dd" in runnable and "torch:dd_mono" not in runnable  # the monocular table runs it
    assert not any(label.endswith((":sr", ":other", ":empty")) for label in runnable)
    skipped = {c.label: c.skip for c in choices if c.skip}
    assert "dsr_diff" in skipped["weights:sr"] and "not a depth completion model" in skipped["weights:sr"]
    assert set(skipped) >= {"weights:sr", "weights:other", "weights:empty", "weights:dd_mono"}
    assert "monocular table" in skipped["weights:dd_mono"]
    # the shipped weights folder: the super-resolution weights are never a completion backend
    shipped = discover_backends()
    assert not any("dsr_diff" in c.label for c in shipped if c.skip is None)


def test_demo_prints_table_and_scores_match_output_bags(shared_data: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DDR_SHARED_DATA", str(shared_data))
    out = tmp_path / "demo"
    rc = cli_main(["demo", "--output", str(out), "--backends", "ip_basic", "--frames", "2", "--max-frames", "2",
                      "--no-sr", "--no-monocular"])
    text = capsys.readouterr().out
    assert rc == 0, text
    main_text, per_frame_text = text.split("RMSE [mm] per KITTI frame")
    table = [line for line in main_text.splitlines() if line.startswith(("middlebury", "kitti_dc", "kitti_object"))]
    assert [line.split()[0] for line in table] == ["middlebury", "kitti_dc", "kitti_object"]
    # the per-frame table: the two-frame object bag, one RMSE per frame from its report
    object_report = json.loads((out / "kitti_object/ip_basic/report.json").read_text())
    per_frame = next(line for line in per_frame_text.splitlines() if line.startswith("kitti_object")).split()
    assert per_frame[2:] == [f"{f['rmse_mm']:.1f}" for f in object_report["frames"]]
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["dataset"]: r for r in summary["rows"]}
    assert rows["middlebury"]["frames"] == "2" and rows["kitti_object"]["frames"] == "2"
    for dataset, row in rows.items():
        assert f"{row['rmse_mm']:.1f}" in next(line for line in table if line.startswith(dataset))
    # Middlebury: the report's numbers are the metrics of the recorded output against the stereo GT
    report = json.loads((out / "middlebury/ip_basic/report.json").read_text())
    preds = read_topic(out / "middlebury/ip_basic/output_bag", "/depth/image")
    gts = read_topic(out / "bags/middlebury", "/middlebury/camera/depth_gt")
    assert len(preds) == len(gts) == 2
    for frame, pred, gt in zip(report["frames"], preds, gts):
        expected = to_kitti_units(depth_metrics(bag_io.depth_msg_to_array(pred), bag_io.depth_msg_to_array(gt)))
        assert frame["rmse_mm"] == pytest.approx(expected["rmse_mm"], rel=1e-6)
        assert frame["delta1"] == pytest.approx(expected["delta1"], rel=1e-9)
        assert frame["n_valid"] == expected["n_valid"]
    # a dense completion from ~3 % samples of a 2-5 m scene: errors of centimetres, not metres
    assert 20 < rows["middlebury"]["rmse_mm"] < 500 and rows["middlebury"]["delta1"] > 0.95


def test_demo_runs_shipped_diffusion_depth_through_onnxruntime_with_cached_export(tmp_path: Path, capsys) -> None:
    """Default learned backend = ONNX Runtime on a step-form export of the shipped checkpoint, made
    once under OUTPUT/onnx_cache and reused while the checkpoint hash matches."""
    from depth_diffusion_ros.tools.demo import WEIGHTS_DIR, checkpoint_sha256

    from depth_diffusion_ros.inference.backends.exported import DEFAULT_COMPLETION_CHECKPOINT

    ckpt = DEFAULT_COMPLETION_CHECKPOINT
    assert ckpt.parent == WEIGHTS_DIR
    if not (ckpt / "model.safetensors").is_file():
        pytest.skip("no shipped DiffusionDepth weights")
    label = f"onnxruntime:{ckpt.name}"
    default = {c.label: c for c in discover_backends()}
    ort = default[label]
    assert ort.skip is None and ort.export_from == ckpt
    out = tmp_path / "demo"
    argv = ["demo", "--output", str(out), "--backends", "onnxruntime", "--frames", "1", "--no-kitti", "--no-sr"]
    assert cli_main(argv) == 0
    text = capsys.readouterr().out
    # keyed by the checkpoint's tensor hash and the padded frame size (741x500 padded to 32)
    export_dir = out / "onnx_cache" / checkpoint_sha256(ckpt)[:16] / "768x512"
    assert "exporting" in text and "about 20 s" in text  # said before the silent export starts
    assert f"ONNX export {export_dir} (exported in" in text
    meta = json.loads((export_dir / "export.json").read_text())
    assert meta["model_sha256"] == checkpoint_sha256(ckpt) and (meta["height"], meta["width"]) == (512, 768)
    row = next(line for line in text.splitlines() if line.startswith("middlebury"))
    assert label in row
    report = json.loads((out / f"middlebury/onnxruntime_{ckpt.name}/report.json").read_text())
    preds = read_topic(out / f"middlebury/onnxruntime_{ckpt.name}/output_bag", "/depth/image")
    gts = read_topic(out / "bags/middlebury", "/middlebury/camera/depth_gt")
    expected = to_kitti_units(depth_metrics(bag_io.depth_msg_to_array(preds[0]), bag_io.depth_msg_to_array(gts[0])))
    assert report["frames"][0]["rmse_mm"] == pytest.approx(expected["rmse_mm"], rel=1e-6)
    assert expected["delta1"] > 0.95  # the learned model completes the 2-5 m scene
    # second run: the export is reused (same checkpoint hash), not written again
    mtime = (export_dir / "step.onnx").stat().st_mtime_ns
    assert cli_main(argv) == 0
    assert f"ONNX export {export_dir} (cached, same checkpoint hash)" in capsys.readouterr().out
    assert (export_dir / "step.onnx").stat().st_mtime_ns == mtime
    # a stale export (other checkpoint hash) is replaced
    (export_dir / "export.json").write_text(json.dumps(dict(meta, model_sha256="0" * 64)))
    assert cli_main(argv) == 0
    assert "(exported in" in capsys.readouterr().out
    assert json.loads((export_dir / "export.json").read_text())["model_sha256"] == meta["model_sha256"]


def test_demo_super_resolution_table(shared_data: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """Second table: Middlebury + NYU bags with depth_lr = GT block-averaged by 8, replayed through
    depth_super_resolution_node; the shipped DSR-Diff weights run through ONNX Runtime (exported
    into the demo's cache first) and beat bicubic on both bags."""
    monkeypatch.setenv("DDR_SHARED_DATA", str(shared_data))
    out = tmp_path / "demo"
    rc = cli_main(["demo", "--output", str(out), "--backends", "nearest", "--no-kitti", "--frames", "1",
                   "--sr-frames", "1", "--sr-backends", "bicubic,onnxruntime"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "Depth super-resolution x8" in text
    summary = json.loads((out / "summary.json").read_text())
    rows = {(r["dataset"], r["backend"]): r for r in summary["super_resolution_rows"]}
    assert rows[("sr_middlebury", "bicubic")]["size"] == "736x496"  # 741x500 cropped to a multiple of 8
    assert rows[("sr_nyu", "bicubic")]["size"] == "640x480"
    assert ("sr_nyu", "onnxruntime:dsr_diff_demo") in rows, summary["skipped_super_resolution_backends"]
    assert "ONNX export" in text and any((out / "onnx_cache").glob("*/sr_640x480/dsr_diff_x8_*steps.onnx"))
    for dataset in ("sr_middlebury", "sr_nyu"):
        assert rows[(dataset, "onnxruntime:dsr_diff_demo")]["rmse_mm"] < rows[(dataset, "bicubic")]["rmse_mm"]
    for (dataset, backend), row in rows.items():
        line = next(x for x in text.splitlines() if x.startswith(dataset) and backend in x and " / " not in x)
        assert f"{row['rmse_mm']:.1f}" in line and f"{row['rmse_mm'] / 10:.2f}" in line
        report = json.loads((out / dataset / backend.replace(":", "_") / "report.json").read_text())
        assert report["meta"]["pipeline"] == "super_resolution" and report["n_frames"] == 1
        preds = read_topic(out / dataset / backend.replace(":", "_") / "output_bag", "/depth/image")
        gt_topic = "/middlebury_sr/camera/depth_gt" if dataset == "sr_middlebury" else "/nyu/camera/depth_gt"
        gt = read_topic(out / "bags" / dataset, gt_topic)[0]
        expected = to_kitti_units(depth_metrics(bag_io.depth_msg_to_array(preds[0]), bag_io.depth_msg_to_array(gt)))
        assert row["rmse_mm"] == pytest.approx(expected["rmse_mm"], rel=1e-6)
        assert 30 < row["rmse_mm"] < 300


def test_demo_says_each_skipped_backend_once(tmp_path: Path, capsys) -> None:
    from depth_diffusion_ros.tools.demo import WEIGHTS_DIR

    if not (WEIGHTS_DIR / "dsr_diff_demo" / "config.yaml").is_file():
        pytest.skip("no shipped DSR-Diff weights")
    rc = cli_main(["demo", "--output", str(tmp_path / "demo"), "--backends", "ip_basic,weights:dsr_diff_demo",
                   "--frames", "1", "--no-kitti", "--no-sr"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert text.count("not a depth completion model") == 1, text  # once, under the table
    assert text.index("completion backends: ip_basic (1 skipped") < text.index("Depth completion on the same frames")
