"""make demo's monocular table: the shipped monocular model (ONNX Runtime) and the row-median
reference through depth_estimation_node on the held-out KITTI frames, one row per (frames, model)."""
from __future__ import annotations

from pathlib import Path

import pytest

from depth_diffusion_ros.tools.demo.backends import discover_backends
from depth_diffusion_ros.tools.demo.estimation import monocular_models, monocular_problem, run_monocular
from depth_diffusion_ros.tools.demo.backends import WEIGHTS_DIR


def test_the_monocular_weights_are_in_the_monocular_table_not_the_completion_table():
    models = monocular_models(WEIGHTS_DIR)
    assert [m.name for m in models] == ["diffusion_depth_kitti_monocular", "iid_rdepth_kitti"]
    assert "not a monocular model" in monocular_problem(WEIGHTS_DIR / "diffusion_depth_kitti")
    labels = {c.label: c for c in discover_backends()}
    assert "torch:diffusion_depth_kitti_monocular" not in labels
    assert "monocular table" in labels["weights:diffusion_depth_kitti_monocular"].skip


@pytest.mark.slow
@pytest.mark.ros
def test_demo_monocular_rows(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("torch")  # replay exports the checkpoint to ONNX
    monkeypatch.setenv("DDR_SHARED_DATA", str(shared_data))
    rows, skipped = run_monocular(tmp_path, tmp_path / "bags", WEIGHTS_DIR)
    assert skipped == []
    by = {(r["dataset"], r["model"]): r for r in rows}
    models = ("onnxruntime:diffusion_depth_kitti_monocular", "onnxruntime:iid_rdepth_kitti")
    ref = "row_median:diffusion_depth_kitti_monocular"
    sets = ("sequence val 44-51", "raw 0001/5", "object 000001")
    for dataset, frames in zip(sets, ("8", "1", "1")):
        for label in models + (ref,):
            row = by[(dataset, label)]
            assert row["frames"] == frames and 0 < row["abs_rel"] < 1.0 and row["rmse_m"] > 0, row
    for model in models:
        mean = by[("mean of the 3 sets", model)]
        assert mean["abs_rel"] == pytest.approx(sum(by[(d, model)]["abs_rel"] for d in sets) / 3)
    # the node's default, IID-RDepth, is at least 25 % below the reference on the mean of the sets
    assert by[("mean of the 3 sets", models[1])]["abs_rel"] <= 0.75 * by[("mean of the 3 sets", ref)]["abs_rel"]
