"""replay as a user drives it: output folders, start-up failures in report.json, ``-p`` spellings,
the calibration each segment used, and a torch checkpoint given to the ONNX Runtime backend.

Real bags from ../shared/data, real nodes over loopback DDS, a real ONNX export and ONNX Runtime
session (the export is shared with the README command test through ``onnx_cache``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from depth_diffusion_ros.cli import main as cli_main
from depth_diffusion_ros.evaluation.report import load_report
from depth_diffusion_ros.inference.backends.exported import DEFAULT_COMPLETION_CHECKPOINT
from depth_diffusion_ros.tools import bag_io
from depth_diffusion_ros.tools.kitti_to_bag import convert, discover_kitti
from depth_diffusion_ros.tools.onnx_cache import checkpoint_sha256
from depth_diffusion_ros.tools.replay import ReplayError, ReplayOptions, replay
from depth_diffusion_ros.tools.replay.cli import parse_param
from depth_diffusion_ros.tools.replay.scoring import PER_SEGMENT

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = DEFAULT_COMPLETION_CHECKPOINT  # the shipped default completion model (a torch checkpoint folder)


@pytest.fixture(scope="module")
def raw_bag(kitti_raw_dir: Path, tmp_path_factory) -> Path:
    bag = tmp_path_factory.mktemp("raw") / "kitti_raw"
    convert(discover_kitti(kitti_raw_dir), bag)
    return bag


@pytest.fixture(scope="module")
def object_bag(kitti_object_dir: Path, tmp_path_factory) -> Path:
    bag = tmp_path_factory.mktemp("object") / "kitti_object"
    convert(discover_kitti(kitti_object_dir), bag, holdout_fraction=0.1)
    return bag


def test_a_non_empty_output_is_refused_without_overwrite_and_cleared_with_it(raw_bag: Path, tmp_path: Path,
                                                                            capsys) -> None:
    out = tmp_path / "out"
    assert cli_main(["replay", str(raw_bag), "--backend", "nearest", "-o", str(out)]) == 0
    report = out / "report.json"
    first = report.read_bytes()
    (out / "figures" / "frame_000099.png").write_bytes(b"stale")  # as if left by an earlier, longer run
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    # a second run (here: one that cannot start) must not touch the earlier outputs
    assert cli_main(["replay", str(raw_bag), "--backend", "onnxruntime", "--model-path", str(tmp_path / "nope"),
                     "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--overwrite" in err
    assert report.read_bytes() == first and (out / "figures" / "frame_000099.png").exists()
    # with --overwrite the old outputs go; the start-up failure is what report.json now says
    assert cli_main(["replay", str(raw_bag), "--backend", "onnxruntime", "--model-path", str(tmp_path / "nope"),
                     "-o", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"recorded in {report}" in err
    failed = load_report(report)
    assert failed["n_frames"] == 0 and failed["meta"]["started"] is False
    (error,) = failed["errors"]
    assert error.startswith("start-up failed: depth_completion_node:") and "nope" in error
    assert not (out / "figures").exists()  # the old figures are gone
    assert _messages(out / "output_bag", "/depth/image") == []  # this run's bag: nothing was published
    assert (out / "notes.txt").read_text() == "mine"  # not replay's: left alone
    # a good run after it replaces the failure report
    assert cli_main(["replay", str(raw_bag), "--backend", "nearest", "-o", str(out), "--overwrite"]) == 0
    assert load_report(report)["n_frames"] == 1 and sorted(p.name for p in (out / "figures").iterdir()) == [
        "frame_000000.png"]


def test_param_spellings_and_unknown_names(raw_bag: Path, tmp_path: Path, capfd, monkeypatch) -> None:
    assert parse_param("blur_type:=gaussian") == ("blur_type", "gaussian")
    assert parse_param("max_depth=80") == ("max_depth", 80)
    assert parse_param("providers:=[cuda, cpu]") == ("providers", ["cuda", "cpu"])
    for bad in ("blur_type", ":=3", "a b=1"):
        with pytest.raises(ReplayError, match="--param"):
            parse_param(bad)
    out = tmp_path / "ros_spelling"
    argv = ["replay", str(raw_bag), "--backend", "ip_basic", "-p", "blur_type:=gaussian", "-o", str(out), "--no-figures"]
    monkeypatch.setattr(sys, "argv", ["depth-diffusion-ros", *argv])  # as the console script sees it
    assert cli_main(argv) == 0
    captured = capfd.readouterr()
    assert "remap rule" not in captured.out + captured.err  # replay's argv never reaches rcl
    assert "has no parameter" not in captured.err
    report = load_report(out / "report.json")
    assert report["meta"]["parameters"]["depth_completion_node"]["blur_type"] == "gaussian"
    assert report["n_frames"] == 1
    # a typo fails before any node starts and lists what the node has
    out = tmp_path / "typo"
    with pytest.raises(ReplayError, match=r"depth_completion_node has no parameter 'blur_typ'.*blur_type"):
        replay(ReplayOptions(bag=raw_bag, output=out, backend="ip_basic", node_params={"blur_typ": "gaussian"},
                             progress=False))
    assert "blur_typ" in load_report(out / "report.json")["errors"][0]


def test_report_records_the_calibration_each_segment_used(object_bag: Path, tmp_path: Path) -> None:
    """With config/kitti.yaml (the 2011_09_26 raw calibration) on an object bag, the nodes ran with
    each frame's /tf_static: the report says so instead of listing the YAML's matrix."""
    out = tmp_path / "out"
    result = replay(ReplayOptions(bag=object_bag, output=out, params_file=REPO / "config" / "kitti.yaml",
                                  backend="ip_basic", figures=False, progress=False))
    meta = result.report["meta"]
    assert result.report["n_frames"] == 2
    tfs = [bag_io.tf_message_to_transforms(m.decode())[0][2] for m in _messages(object_bag, "/tf_static")]
    segments = meta["calibration_segments"]
    assert len(segments) == 2 and [s["frames"] for s in segments] == [[0, 0], [1, 1]]
    for seg, T in zip(segments, tfs):
        np.testing.assert_allclose(np.reshape(seg["T_camera_lidar"], (4, 4)), T, atol=1e-12)
        assert seg["source"] == "bag /tf_static"
        assert seg["nodes"] == ["lidar_depth_projection_node", "depth_evaluation_node"]
    yaml_T = json.loads(json.dumps(meta["parameters"]["depth_completion_node"]["T_camera_lidar"]))
    assert not np.allclose(np.reshape(yaml_T, (4, 4)), tfs[0])  # the YAML's is not what ran
    for node in segments[0]["nodes"]:
        assert meta["parameters"][node]["T_camera_lidar"] == PER_SEGMENT


def _messages(bag: Path, topic: str) -> list:
    with bag_io.BagReader(bag) as reader:
        return list(reader.messages([topic]))


def test_onnx_backends_refuse_a_torch_checkpoint_with_the_export_command() -> None:
    from depth_diffusion_ros.inference.backends import make_completion_backend
    from depth_diffusion_ros.inference.errors import BackendError

    if not (WEIGHTS / "model.safetensors").is_file():
        pytest.skip("no shipped DiffusionDepth weights")
    with pytest.raises(BackendError) as info:
        make_completion_backend("onnxruntime", model_path=str(WEIGHTS))
    message = str(info.value)
    assert "this is a torch checkpoint (model.safetensors + config.yaml)" in message
    assert f"depth-diffusion-ros export --checkpoint {WEIGHTS} --output" in message
    assert "replay/demo, which export it for you" in message


@pytest.mark.slow
def test_replay_exports_a_torch_checkpoint_for_onnxruntime(object_bag: Path, tmp_path: Path, onnx_cache: Path,
                                                          capsys) -> None:
    if not (WEIGHTS / "model.safetensors").is_file():
        pytest.skip("no shipped DiffusionDepth weights")
    out = tmp_path / "out"
    args = ["replay", str(object_bag), "--backend", "onnxruntime", "--model-path", str(WEIGHTS), "--max-frames", "1",
            "--no-figures", "-o", str(out)]
    assert cli_main(args) == 0
    text = capsys.readouterr().out
    target = onnx_cache / checkpoint_sha256(WEIGHTS)[:16] / "1248x384"  # object frame 0 is 1224x370 -> 1248x384
    lines = [line for line in text.splitlines() if line.startswith(f"replay: {WEIGHTS} is a torch checkpoint")]
    assert len(lines) == 1 and str(target) in lines[0], text  # one log line, naming the export
    report = load_report(out / "report.json")
    assert report["n_frames"] == 1 and report["meta"]["model_export"]["onnx"] == str(target)
    assert report["meta"]["parameters"]["depth_completion_node"]["model_path"] == str(target)
    # a second run reuses the export (same checkpoint hash and padded size) and says so
    mtime = (target / "step.onnx").stat().st_mtime_ns
    assert cli_main(args + ["--overwrite"]) == 0
    text = capsys.readouterr().out
    assert f"using its cached ONNX export {target}" in text
    assert (target / "step.onnx").stat().st_mtime_ns == mtime
