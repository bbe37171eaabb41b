"""The export / build-engine / benchmark commands (CLI dispatcher -> tools modules)."""
from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

import fake_tensorrt  # noqa: E402
from depth_diffusion_ros import cli  # noqa: E402
from depth_diffusion_ros.runtime.metadata import read_metadata  # noqa: E402
from depth_diffusion_ros.tools import benchmark  # noqa: E402
from runtime_fixtures import small_config  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from depth_diffusion_ros.models.checkpoint import save_checkpoint
    from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth

    torch.manual_seed(1)
    return save_checkpoint(DiffusionDepth(small_config()), tmp_path_factory.mktemp("cli") / "ckpt")


def test_export_command_both_forms_with_parity_on_real_frame(checkpoint, tmp_path, capsys, shared_data):
    out = tmp_path / "onnx"
    rc = cli.main(["export", "--checkpoint", str(checkpoint), "--output", str(out), "--height", "96",
                   "--width", "320", "--form", "both", "--steps", "2", "--threads", "1",
                   "--data-dir", str(shared_data)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert {p.name for p in out.glob("*.onnx")} == {"encoder.onnx", "step.onnx", "decoder.onnx", "sampler_2steps_e1.onnx"}
    assert "host DDIM loop over the step graphs, 2 steps: max |onnx - torch| depth" in text
    meta = read_metadata(out / "sampler_2steps_e1.onnx")
    assert meta["ddr.num_inference_steps"] == "2"
    from depth_diffusion_ros.models.checkpoint import load_checkpoint
    from depth_diffusion_ros.export.onnx_export import model_sha256

    assert meta["ddr.model_sha256"] == model_sha256(load_checkpoint(checkpoint))
    errors = json.loads(meta["ddr.parity_max_abs_error"])
    assert errors["depth"] < 1e-3


def test_export_defaults_to_the_padded_frame_the_model_sees(checkpoint, tmp_path, capsys, shared_data):
    """--frame-size WxH (default the KITTI 1242x375) is padded at the bottom/right to the config's
    size_divisor; the graphs then accept a frame of that size through the pipeline."""
    import argparse

    import numpy as np

    from depth_diffusion_ros.inference.backends import make_completion_backend
    from depth_diffusion_ros.inference.pipelines import CompletionPipeline
    from depth_diffusion_ros.models.checkpoint import load_checkpoint
    from depth_diffusion_ros.tools import export

    kitti = argparse.Namespace(model="diffusion_depth", frame_size=None, height=None, width=None, scale=4)
    assert export.graph_size(kitti, 32)[:2] == (384, 1248)  # KITTI 1242x375 -> 1248x384
    assert export.graph_size(argparse.Namespace(**{**vars(kitti), "height": 352}), 32)[:2] == (352, 1248)
    nyu_sr = argparse.Namespace(model="dsr_diff", frame_size=None, height=None, width=None, scale=8)
    assert export.graph_size(nyu_sr, 16)[:2] == (480, 640)
    assert export.sr_padded_size(488, 648, 8, 16) == (496, 656)  # LR 61x81 edge-padded to 62x82
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        export.graph_size(argparse.Namespace(**{**vars(kitti), "frame_size": "1242*375"}), 32)

    divisor = int(load_checkpoint(checkpoint).config.size_divisor)
    out = tmp_path / "onnx"
    rc = cli.main(["export", "--checkpoint", str(checkpoint), "--output", str(out), "--frame-size", "300x90",
                   "--no-check", "--threads", "1"])
    text = capsys.readouterr().out
    assert rc == 0, text
    h, w = -(-90 // divisor) * divisor, -(-300 // divisor) * divisor
    assert f"for {w}x{h} (frame 300x90 padded at the bottom/right to a multiple of {divisor})" in text
    assert "about 20 s" in text  # said before the export starts
    meta = json.loads((out / "export.json").read_text())
    assert (meta["height"], meta["width"]) == (h, w)
    pipeline = CompletionPipeline(make_completion_backend("onnxruntime", model_path=str(out), num_inference_steps=1))
    rng = np.random.default_rng(0)
    sparse = np.where(rng.random((90, 300)) < 0.05, rng.uniform(2, 20, (90, 300)), 0).astype(np.float32)
    result = pipeline(rng.integers(0, 255, (90, 300, 3), dtype=np.uint8), sparse)
    assert result.depth.shape == (90, 300)


def test_export_leaves_the_model_in_eval_mode(checkpoint, tmp_path):
    """torch.onnx.export restores a wrapper's training flag recursively: wrappers built in training
    mode put the model (BatchNorm, dropout) in training mode, and the unrolled form's torch
    reference of `export --form both` then differed from its graph by metres."""
    from depth_diffusion_ros.export.diffusion_depth import export_diffusion_depth
    from depth_diffusion_ros.models.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint).eval()
    export_diffusion_depth(model, tmp_path / "onnx", 96, 320, forms=("step",), check=False)
    assert not any(m.training for m in model.modules())


def test_export_command_errors_name_the_file(tmp_path, capsys):
    rc = cli.main(["export", "--checkpoint", str(tmp_path / "nope"), "--output", str(tmp_path / "o")])
    assert rc == 1 and "nope" in capsys.readouterr().err


def test_build_engine_command_with_fake_tensorrt(checkpoint, tmp_path, capsys, monkeypatch):
    """FAKE TensorRT (test/fake_tensorrt.py): checks the command's cache behaviour only."""
    out = tmp_path / "onnx"
    assert cli.main(["export", "--checkpoint", str(checkpoint), "--output", str(out), "--height", "64",
                     "--width", "128", "--no-check"]) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    args = ["build-engine", "--onnx", str(out), "--cache-dir", str(tmp_path / "eng"), "--gpu-name", "Orin"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert first.count("[built (no engine file") == 3
    assert cli.main(args) == 0
    assert capsys.readouterr().out.count("[cached]") == 3
    assert cli.main(args + ["--precision", "fp32", "--dla-core", "0"]) == 0
    assert ".fp32.trt10-99-0-fake.orin.dla0.engine" in capsys.readouterr().out
    assert cli.main(args + ["--profile", "rgb:1x3"]) == 1
    assert "expected NAME:MIN:OPT:MAX" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert cli.main(args) == 1
    assert "TensorRT is not installed" in capsys.readouterr().err


def test_build_engine_on_tensorrt_11_from_the_exported_fp16_copies(checkpoint, tmp_path, capsys, monkeypatch):
    """FAKE TensorRT 11 (test/fake_tensorrt.py): fp16 from `export --fp16-onnx`'s copies, int8 refused."""
    out = tmp_path / "onnx"
    assert cli.main(["export", "--checkpoint", str(checkpoint), "--output", str(out), "--height", "64",
                     "--width", "128", "--no-check", "--fp16-onnx"]) == 0
    assert capsys.readouterr().out.count(", float32 I/O]") == 3
    assert sorted(p.name for p in out.glob("*.fp16.onnx")) == ["decoder.fp16.onnx", "encoder.fp16.onnx",
                                                                "step.fp16.onnx"]
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.make_fake_tensorrt(11))
    args = ["build-engine", "--onnx", str(out), "--cache-dir", str(tmp_path / "eng"), "--gpu-name", "Orin"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert text.count("[built (no engine file") == 3  # the fp16 copies are not built as graphs of their own
    for g in ("encoder", "step", "decoder"):
        assert f"{out / g}.onnx (from {g}.fp16.onnx) -> " in text
    assert ".fp16.trt11-99-0-fake.orin.engine" in text
    assert cli.main(args + ["--precision", "int8"]) == 1
    assert capsys.readouterr().err.count("precision 'int8' needs TensorRT 10") == 3


def test_benchmark_table_and_cpu_peak():
    peak, assumption = benchmark.cpu_peak_gflops()
    assert peak > 0 and "GFLOP/s" in assumption and "FLOP/cycle" in assumption
    rows = [
        {"resolution": "1216x352", "runtime": "torch", "steps": 5, "ms": 4000.0, "gmac": 45.0, "gflops": 22.5,
         "peak_pct": 13.5, "rss_mb": 900.0, "torch_imported": True},
        {"resolution": "1216x352", "runtime": "ort-step", "steps": 5, "ms": 1600.0, "gmac": 45.0, "gflops": 56.3,
         "peak_pct": 33.9, "rss_mb": 300.0, "torch_imported": False},
    ]
    table = benchmark.format_table(rows, assumption)
    assert "| 1216x352 | ort-step | 5 | 1600 | 2.50x | 45.0 |" in table
    assert table.splitlines()[0].startswith("| resolution | runtime | steps | ms/frame | vs torch")
