"""fp16 ONNX copies (``export --fp16-onnx``, runtime/onnx_fp16.py): what TensorRT 11 builds fp16
engines from. Real graphs, real converter (onnxconverter-common), real ONNX Runtime sessions.

The shipped default DiffusionDepth completion model is exported at 96x320 with the command, and the fp16
copies are run with ONNX Runtime's CPU provider against the fp32 graphs on the real KITTI frame.
ONNX Runtime runs fp16 graphs on CPU, falling back to fp32 kernels behind casts where it has no
fp16 one, so the numbers measure the fp16 rounding of weights and of the tensors between
operators, not TensorRT's fp16 kernels. Measured on the former demo weights (2-core CI CPU, ORT 1.31,
onnxconverter-common 1.16.0), through the completion pipeline with 2 DDIM steps: step form max 4.8 mm / mean 1.4 mm,
unrolled sampler max 4.6 mm / mean 1.4 mm, on depths of 5.8-11.5 m; the tolerances below (2 cm
max, 5 mm mean) keep about 4x of margin.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxconverter_common")
from onnx import TensorProto, helper  # noqa: E402

from depth_diffusion_ros import cli  # noqa: E402
from depth_diffusion_ros.export.onnx_export import run_onnx  # noqa: E402
from depth_diffusion_ros.inference.backends.exported import STEP_FILES, find_diffusion_depth_files  # noqa: E402
from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDiffusionDepthBackend  # noqa: E402
from depth_diffusion_ros.runtime import onnx_fp16  # noqa: E402
from depth_diffusion_ros.runtime.metadata import file_sha256, read_metadata  # noqa: E402
from runtime_fixtures import complete, kitti_frame  # noqa: E402

pytestmark = pytest.mark.torch
H, W, STEPS = 96, 320, 2
GRAPHS = ("encoder.onnx", "step.onnx", "decoder.onnx", f"sampler_{STEPS}steps_e1.onnx")


@pytest.fixture(scope="module")
def shipped_export(tmp_path_factory):
    """``depth-diffusion-ros export --fp16-onnx`` of the shipped default completion model (the default checkpoint);
    ``--no-check``: the fp32 graphs' parity with torch is test_export_cli's and
    test_export_diffusion_depth's job, the fp16 copies are compared with the fp32 graphs here."""
    out = tmp_path_factory.mktemp("fp16") / "onnx"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(["export", "--output", str(out), "--height", str(H), "--width", str(W), "--form", "both",
                       "--steps", str(STEPS), "--threads", "2", "--fp16-onnx", "--no-check"])
    assert rc == 0, buf.getvalue()
    return out, buf.getvalue()


def _elem_types(model) -> dict:
    return {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}


def test_export_writes_a_valid_fp16_copy_of_every_graph(shipped_export):
    out, text = shipped_export
    assert sorted(p.name for p in out.glob("*.onnx")) == sorted(list(GRAPHS) + [g.replace(".onnx", ".fp16.onnx")
                                                                                 for g in GRAPHS])
    for g in GRAPHS:
        fp32_path, fp16_path = out / g, onnx_fp16.fp16_path(out / g)
        assert f"{fp16_path}  [fp16 copy of {g}, float32 I/O]" in text
        m32, m16 = onnx.load(str(fp32_path)), onnx.load(str(fp16_path))
        onnx.checker.check_model(m16, full_check=True)
        assert _elem_types(m16) == _elem_types(m32)  # float32 (and int64 timesteps) in and out, unchanged
        assert TensorProto.FLOAT in _elem_types(m16).values()
        floats = {i.data_type for i in m16.graph.initializer} & {TensorProto.FLOAT, TensorProto.FLOAT16}
        assert floats == {TensorProto.FLOAT16}, g  # every float weight is fp16
        meta32, meta16 = read_metadata(fp32_path), read_metadata(fp16_path)
        assert meta16[onnx_fp16.PRECISION_KEY] == "fp16" and onnx_fp16.graph_precision(fp32_path) == "fp32"
        assert meta16[onnx_fp16.SOURCE_SHA_KEY] == file_sha256(fp32_path)
        for key in ("ddr.graph", "ddr.model_sha256", "ddr.export_id", "ddr.config"):
            assert meta16[key] == meta32[key]
    # the backends' file discovery does not mistake the copies for exports of their own
    assert find_diffusion_depth_files(out, "unrolled", None, 1) == ("unrolled", out / GRAPHS[3])


def test_fp16_copies_match_the_fp32_graphs_on_a_real_frame(shipped_export, shared_data, tmp_path):
    out, _ = shipped_export
    rgb, sparse = kitti_frame(shared_data, H, W)
    fp16_dir = tmp_path / "as_fp16"  # the fp16 copies under the names the ORT backend loads
    fp16_dir.mkdir()
    for name in STEP_FILES + (GRAPHS[3],):
        shutil.copy(onnx_fp16.fp16_path(out / name), fp16_dir / name)
    for form in ("step", "unrolled"):
        ref = complete(OnnxRuntimeDiffusionDepthBackend(out, num_inference_steps=STEPS, export_form=form), rgb, sparse)
        got = complete(OnnxRuntimeDiffusionDepthBackend(fp16_dir, num_inference_steps=STEPS, export_form=form),
                       rgb, sparse)
        valid = ref.depth > 0
        assert valid.mean() > 0.9 and np.array_equal(got.depth > 0, valid)
        err = np.abs(got.depth - ref.depth)[valid]
        # fp16 keeps 11 significant bits and the graph compounds them: bound the error relative to
        # depth (the shipped weights reach 0.2 %; a broken cast is off by far more)
        rel = err / ref.depth[valid]
        assert rel.max() < 5e-3 and err.mean() < 0.005, (form, rel.max(), err.max(), err.mean())


def _cast_graph(path):
    """y = float(i) * x: an int64 -> float Cast, the node onnxconverter-common 1.16.0 mis-converts."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3], [0.5, 2.0, 1e-9])
    nodes = [helper.make_node("Cast", ["i"], ["f"], to=TensorProto.FLOAT, name="cast_i"),
             helper.make_node("Mul", ["x", "f"], ["m"], name="mul"),
             helper.make_node("Mul", ["m", "w"], ["y"], name="scale")]
    m = helper.make_model(helper.make_graph(nodes, "cast", [x, i], [y], [w]),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_cast_to_float_workaround_and_clear_errors(tmp_path, caplog, monkeypatch):
    from onnxconverter_common import float16

    src = _cast_graph(tmp_path / "c.onnx")
    # the library alone leaves Cast(to=FLOAT) with an fp16 output: invalid (its issues #320 / #331)
    plain = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    with pytest.raises(Exception, match="Inferred elem type differs"):
        onnx.checker.check_model(plain, full_check=True)
    with caplog.at_level("INFO", logger="depth_diffusion_ros.runtime.onnx_fp16"):
        dst = onnx_fp16.write_fp16_onnx(src)
    assert dst == tmp_path / "c.fp16.onnx" and onnx_fp16.is_fp16_file(dst) and not onnx_fp16.is_fp16_file(src)
    assert "clamped values of weight tensors into [1e-7, 1e4] (1 warnings)" in caplog.text  # the 1e-9 weight
    assert read_metadata(dst)["ddr.fp16_clamp_warnings"] == "1"
    feed = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.full((2, 3), 3, np.int64)}
    y = run_onnx(dst, feed)["y"]
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[:, :2], run_onnx(src, feed)["y"][:, :2], rtol=1e-3)
    np.testing.assert_allclose(y[:, 2], feed["x"][:, 2] * 3 * 1e-7, rtol=0.2)  # 1e-9 became ~1e-7 (logged)

    with pytest.raises(onnx_fp16.Fp16ConversionError, match="already an fp16 graph"):
        onnx_fp16.write_fp16_onnx(dst)
    with pytest.raises(onnx_fp16.Fp16ConversionError, match="ONNX file not found"):
        onnx_fp16.write_fp16_onnx(tmp_path / "none.onnx")
    assert onnx_fp16.cached_fp16_onnx(dst, tmp_path / "cache") == dst  # an fp16 graph is its own copy
    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)
    with pytest.raises(onnx_fp16.Fp16ConversionError, match="pip install onnx onnxconverter-common"):
        onnx_fp16.write_fp16_onnx(src, tmp_path / "other.fp16.onnx")
