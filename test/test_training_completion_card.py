"""The default completion model's card: tables, verdicts against the issue's targets, the prose."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")

from depth_diffusion_ros.models.config import DiffusionDepthConfig  # noqa: E402
from training.completion_card import (  # noqa: E402
    ablation_deltas, ablation_table, accuracy_table, best_peer, diffusion_verdict, sparsification_table, verdicts)
from training.completion_card_text import card_text  # noqa: E402


def _row(rmse, mae, coverage=1.0):
    return {"rmse_mm": rmse, "mae_mm": mae, "irmse_1_km": 3.0, "imae_1_km": 1.5, "coverage": coverage}


def _results():
    sets = {
        "moving": {"IP-Basic (bilateral)": _row(3500, 600), "linear (Delaunay)": _row(3200, 570),
                   "DiffusionDepth, 1 step": _row(2700, 560), "ablation: regressor": _row(2900, 580)},
        "stopped": {"IP-Basic (bilateral)": _row(1000, 300), "linear (Delaunay)": _row(1100, 280),
                    "DiffusionDepth, 1 step": _row(900, 290), "ablation: regressor": _row(950, 300)},
    }
    spars = {"moving": {"DiffusionDepth, 1 step": {"n": 1200, "ause": 0.12, "aurg": 0.2, "oracle_area": 0.3,
                                                   "model_area": 0.42}}}
    return {"scores": {"sets": sets, "sparsification": spars},
            "config": {"model": {"num_inference_steps": 1},
                       "train": {"batch_size": 2, "lr": 1e-3, "lr_milestones": [100], "lr_factors": [1.0]},
                       "data": {"train": {"datasets": [{"transforms": [{"type": "random_crop", "size": [256, 576]}]}]}}},
            "runs": {"main": {"steps": 3300, "wall_s": 2400.0, "threads": 1, "date": "2026-12-01"}},
            "variants": {"regressor": "no diffusion"}, "ablation_epochs": 50,
            "matched_row": "ablation: main run at the ablation budget", "settings_tried": "Four runs."}


def test_best_peer_ignores_model_rows():
    rows = _results()["scores"]["sets"]["moving"]
    assert best_peer(rows, "rmse_mm") == ("linear (Delaunay)", 3200)
    assert best_peer(rows, "mae_mm") == ("linear (Delaunay)", 570)


def test_verdicts_apply_both_targets_per_set():
    lines = verdicts(_results())
    # moving: RMSE 2700/3200 = 0.84 <= 0.85 and MAE 560/570 <= 1: meets.
    assert "moving: RMSE 0.84x, MAE 0.98x" in lines[0] and "**meets**" in lines[0]
    # stopped: RMSE 0.90 > 0.85 and MAE 290/280 > 1: misses.
    assert "stopped: RMSE 0.90x, MAE 1.04x" in lines[1] and "**misses**" in lines[1]


def test_tables_carry_peers_ratios_and_ablation_rows():
    results = _results()
    acc = accuracy_table(results)
    assert "| moving | **DiffusionDepth, 1 step** | 2700 | 560 |" in acc
    assert "| 0.84 | 0.98 |" in acc and "ablation" not in acc
    abl = ablation_table(results)
    assert "| ablation: regressor | 2900 / 580 | 950 / 300 |" in abl
    assert "`regressor` against" not in abl  # these results hold no matched row: no delta lines
    assert "| best classical peer | 3200 / 570 | 1000 / 280 |" in abl
    assert "| moving | DiffusionDepth, 1 step | 1200 | 0.120 | 0.200 |" in sparsification_table(results)


def test_ablation_deltas_compare_each_variant_with_the_matched_row():
    results = _results()
    sets = results["scores"]["sets"]
    sets["moving"]["ablation: main run at the ablation budget"] = _row(2800, 560)
    sets["stopped"]["ablation: main run at the ablation budget"] = _row(1000, 300)
    lines = ablation_deltas(results)
    # regressor vs matched: RMSE 2900/2800 - 1 = +3.6 %, 950/1000 - 1 = -5 % -> mean -0.7 %;
    # MAE 580/560 - 1 = +3.6 %, 300/300 - 1 = 0 -> +1.8 %
    assert lines == ["- `regressor` against the main run at the same budget: RMSE -0.7%, MAE +1.8% "
                     "(mean over the sets; RMSE per set: moving +3.6%, stopped -5.0%)."]
    assert lines[0] in ablation_table(results)


def test_card_text_names_the_model_split_and_what_was_tried():
    c = DiffusionDepthConfig(external_priors=("ip_basic_gaussian", "linear_hull"), uncertainty_head=True,
                             prediction_type="v_prediction", timestep_spacing="trailing", num_inference_steps=1)
    tables = {k: f"<{k}>" for k in ("accuracy", "ablation", "diffusion", "sparsification", "verdicts", "speed")}
    text = card_text(c, _results(), tables, {"params_m": 1.5, "size_mb": 6.0, "machine": "x86_64 CPU",
                                            "torch": "2"})
    for needle in ("ip_basic_gaussian", "v_prediction", "**1 inference step(s)**", "crop 256x576",
                   "for 50 epochs", "Four runs.", "<ablation>", "3300 optimiser steps, wall 40 min"):
        assert needle in text, needle


def test_diffusion_verdict_compares_settings_and_the_regressor_at_the_same_budget():
    results = _results()
    for rows, matched in zip(results["scores"]["sets"].values(), (2860, 940)):
        rows["ablation: main run at the ablation budget"] = _row(matched, 500)
        rows["DiffusionDepth, 4 steps"] = dict(rows["DiffusionDepth, 1 step"])
    text = diffusion_verdict(results)
    # regressor 2900/2860 and 950/940: +1.4 % and +1.1 %, mean +1.2 %; the step rows are equal
    assert "at most 0.0%" in text and "+1.2%" in text and "does not help measurably" in text
    results["scores"]["sets"]["moving"]["DiffusionDepth, 4 steps"]["rmse_mm"] = 2500
    assert "diffusion helps measurably" in diffusion_verdict(results)
