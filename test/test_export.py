"""Export machinery on a tiny torch module: named I/O, static/dynamic shapes, metadata, parity."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from depth_diffusion_ros.export.onnx_export import (  # noqa: E402
    DEFAULT_OPSET,
    ExportError,
    ParityError,
    check_parity,
    export_onnx,
    run_onnx,
    write_metadata,
)
from depth_diffusion_ros.runtime.errors import BackendError  # noqa: E402
from depth_diffusion_ros.runtime.metadata import file_sha256, read_metadata  # noqa: E402

pytestmark = pytest.mark.torch


class Tiny(torch.nn.Module):
    """conv -> two heads, with a Python loop that the exporter unrolls."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.head = torch.nn.Conv2d(8, 1, 1)

    def forward(self, rgb, sparse_depth):
        x = torch.relu(self.conv(torch.cat([rgb, sparse_depth], 1)))
        for _ in range(3):
            x = x * 0.5 + torch.tanh(x)
        return self.head(x), x.std(1, keepdim=True)


def _inputs(h=16, w=24):
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, h, w, generator=g), torch.rand(1, 1, h, w, generator=g) * 80


def test_export_static_named_io_metadata_and_parity(tmp_path):
    model = Tiny().eval()
    rgb, sparse = _inputs()
    path = export_onnx(model, (rgb, sparse), tmp_path / "tiny.onnx", ["rgb", "sparse_depth"],
                       ["depth", "uncertainty"], metadata={"graph": "tiny", "config": {"a": 1}})
    m = onnx.load(str(path))
    assert [i.name for i in m.graph.input] == ["rgb", "sparse_depth"]
    assert [o.name for o in m.graph.output] == ["depth", "uncertainty"]
    assert {o.version for o in m.opset_import if o.domain in ("", "ai.onnx")} == {DEFAULT_OPSET}
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 16, 24]  # static by default
    meta = read_metadata(path)
    assert meta["ddr.graph"] == "tiny" and meta["ddr.config"] == '{"a": 1}'
    assert meta["ddr.opset"] == "17" and meta["ddr.exporter"] == "torchscript"
    with torch.no_grad():
        d, u = model(rgb, sparse)
    report = check_parity(path, {"rgb": rgb.numpy(), "sparse_depth": sparse.numpy()},
                          {"depth": d.numpy(), "uncertainty": u.numpy()}, atol=1e-4)
    assert report.worst_abs < 1e-4 and set(report.max_abs) == {"depth", "uncertainty"}


def test_export_dynamic_axes_run_at_other_size(tmp_path):
    model = Tiny().eval()
    rgb, sparse = _inputs()
    dyn = {n: {2: "height", 3: "width"} for n in ("rgb", "sparse_depth", "depth", "uncertainty")}
    path = export_onnx(model, (rgb, sparse), tmp_path / "dyn.onnx", ["rgb", "sparse_depth"],
                       ["depth", "uncertainty"], dynamic_axes=dyn)
    rgb2, sparse2 = _inputs(32, 40)
    out = run_onnx(path, {"rgb": rgb2.numpy(), "sparse_depth": sparse2.numpy()})
    with torch.no_grad():
        ref = model(rgb2, sparse2)[0].numpy()
    assert out["depth"].shape == (1, 1, 32, 40)
    np.testing.assert_allclose(out["depth"], ref, atol=1e-4)


def test_parity_error_names_output_and_error(tmp_path):
    model = Tiny().eval()
    rgb, sparse = _inputs()
    path = export_onnx(model, (rgb, sparse), tmp_path / "t.onnx", ["rgb", "sparse_depth"], ["depth", "uncertainty"])
    with torch.no_grad():
        d, u = model(rgb, sparse)
    wrong = d.numpy().copy()
    wrong[0, 0, 3, 4] += 0.01
    with pytest.raises(ParityError, match=r"output 'depth' differs from torch at 1 of 384 values"):
        check_parity(path, {"rgb": rgb.numpy(), "sparse_depth": sparse.numpy()},
                     {"depth": wrong, "uncertainty": u.numpy()}, atol=1e-4)
    with pytest.raises(ParityError, match="shape"):
        check_parity(path, {"rgb": rgb.numpy(), "sparse_depth": sparse.numpy()},
                     {"depth": wrong[:, :, :8]}, atol=1e-4)


def test_metadata_round_trip_and_bad_files(tmp_path):
    model = Tiny().eval()
    path = export_onnx(model, _inputs(), tmp_path / "t.onnx", ["rgb", "sparse_depth"], ["depth", "uncertainty"])
    h0 = file_sha256(path)
    write_metadata(path, {"ddr.num_inference_steps": 7, "note": "x"})
    meta = read_metadata(path)
    assert meta["ddr.num_inference_steps"] == "7" and meta["ddr.note"] == "x"
    assert file_sha256(path) != h0  # metadata is part of the file hash (engine cache key)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xfe not a model")
    with pytest.raises(BackendError, match="bad.onnx"):  # the runtime reads it, without onnx
        read_metadata(bad)
    with pytest.raises(ExportError, match="bad.onnx"):
        write_metadata(bad, {"a": 1})
    with pytest.raises(BackendError, match="not found"):
        read_metadata(tmp_path / "missing.onnx")
