"""The shipped IID-RDepth weights (weights/iid_rdepth_kitti): complete and small, the frozen
encoder is bit-for-bit the monocular model's, the model beats the row-median reference on the
monocular validation frames, and rescoring them reproduces the results.json the README table
and the model card are made from."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "depth_diffusion_ros" / "weights" / "iid_rdepth_kitti"
MONOCULAR = REPO / "depth_diffusion_ros" / "weights" / "diffusion_depth_kitti_monocular"


def test_shipped_folder_is_complete_and_small():
    files = {p.relative_to(WEIGHTS).as_posix(): p.stat().st_size for p in WEIGHTS.rglob("*") if p.is_file()}
    for name in ("model.safetensors", "config.yaml", "MODEL_CARD.md", "results.json", "speed.json",
                 "training_config.yaml", "onnx/encoder.onnx", "onnx/encoder_aux.onnx", "onnx/step.onnx",
                 "onnx/decoder.onnx"):
        assert name in files, name
    assert sum(files.values()) <= 20 * 2**20


def test_frozen_encoder_is_the_monocular_models_and_av_lfe_is_in():
    from depth_diffusion_ros.models.checkpoint import load_checkpoint
    from depth_diffusion_ros.models.iid_rdepth import IIDRDepth

    model, mono = load_checkpoint(WEIGHTS), load_checkpoint(MONOCULAR)
    assert isinstance(model, IIDRDepth) and model.uses_aux and model.restoration
    mono_state = mono.backbone.state_dict()
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, mono_state[k]), k  # unchanged by training (weights and BN statistics)
    assert model.canonical_focal == pytest.approx(mono.canonical_focal)


def test_card_names_every_design_choice_and_the_rebuild_command():
    from training.iid_rdepth_card import TRAIN_COMMAND, design_choices

    card = (WEIGHTS / "MODEL_CARD.md").read_text()
    assert TRAIN_COMMAND in card and design_choices() in card
    assert card.count("**") >= 16  # the eight numbered, bold-titled choices


def test_paper_and_cpu_configs_parse():
    import yaml

    from depth_diffusion_ros.models.iid_rdepth_config import IIDRDepthConfig

    for name in ("iid_rdepth_kitti_cpu.yaml", "iid_rdepth_kitti_eigen_paper.yaml"):
        cfg = yaml.safe_load((REPO / "training" / "configs" / name).read_text())
        for row in cfg.get("ablation", {"paper": {}}).values():
            IIDRDepthConfig.from_dict({**cfg["model"], **row})


@pytest.fixture(scope="module")
def rescored(shared_data):
    from training.iid_rdepth import predictor, sequence_aux
    from training.monocular import kitti_sets, score_sets

    torch.set_num_threads(2)
    sets = kitti_sets(shared_data)
    sets.pop("sequence static")
    aux = {"sequence val": sequence_aux(sets["sequence val"], shared_data / "kitti_raw_2011_09_26_sequence")}
    predict, _ = predictor(WEIGHTS)
    return score_sets(predict, sets, aux_views=aux), sets


def test_shipped_model_beats_the_row_median_reference_on_the_validation_frames(rescored):
    from depth_diffusion_ros.baselines.row_median import RowMedianDepth
    from training.monocular import score_sets

    scores, sets = rescored
    reference = RowMedianDepth.load(MONOCULAR / "row_median_reference.json")
    ref = score_sets(lambda rgb, intr: reference.predict(intr), sets)
    assert scores["validation"]["n_frames"] == 10
    for key in ("abs_rel", "rmse"):
        assert scores["validation"]["mean"][key] < ref["validation"]["mean"][key], key
    assert scores["validation"]["mean"]["delta1"] > ref["validation"]["mean"]["delta1"]


def test_rescoring_reproduces_results_json(rescored):
    scores, _ = rescored
    results = json.loads((WEIGHTS / "results.json").read_text())["scores"]["iid_rdepth_av_lfe"]
    for where in ("validation", "sequence val"):
        for key in ("abs_rel", "rmse", "delta1"):
            assert scores[where]["mean"][key] == pytest.approx(results[where]["mean"][key], rel=1e-4, abs=1e-5)
