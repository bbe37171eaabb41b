"""The shipped DSR-Diff weights' model card and README block come from one benchmark run
(``results.json`` beside the weights, written by benchmarks/bench_super_resolution.py), and what
that run says the weights do on the held-out frames."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from training.sr_card import LEARNED, WEIGHTS, card, readme_block

REPO = Path(__file__).resolve().parents[1]
RESULTS = json.loads((WEIGHTS / "results.json").read_text())


def test_results_are_of_the_shipped_weights_and_the_card_is_generated_from_them():
    from depth_diffusion_ros.tools.onnx_cache import checkpoint_sha256

    assert RESULTS["model_sha256"] == checkpoint_sha256(WEIGHTS)
    assert (WEIGHTS / "MODEL_CARD.md").read_text() == card(WEIGHTS, RESULTS), "run python -m training.sr_card"


def test_readme_block_is_the_cards_tables():
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- generated:super_resolution -->\n_Generated[^\n]*\n\n(.*?)\n<!-- /generated:super_resolution -->",
                      text, re.S)
    assert block and block.group(1).strip() == readme_block(RESULTS).strip()


def test_the_run_covers_every_scale_dataset_and_degradation_with_classical_rows():
    from depth_diffusion_ros.geometry.degradation import DEGRADATIONS

    res = RESULTS["results"]
    assert list(res) == list(DEGRADATIONS)
    for by_ds in res.values():
        assert set(by_ds) == {"SUN3D", "NYU", "Midd"}
        for by_s in by_ds.values():
            assert set(by_s) == {"2", "4", "8", "16"}
            for cell in by_s.values():
                assert set(cell) == {LEARNED, "guided_filter", "joint_bilateral", "bicubic"}
                assert len({c["n_valid"] for c in cell.values()}) == 1  # the same pixels for every method
    assert len(RESULTS["frames"]["SUN3D"]) == 20
    assert all(int(n.split("frame-")[1][:6]) in range(975, 985) or int(n.split("frame-")[1][:6]) in range(3200, 3210)
               for n in RESULTS["frames"]["SUN3D"])


@pytest.mark.parametrize("kind", ["bicubic", "block", "noisy", "sensor"])
def test_shipped_weights_beat_every_classical_peer_at_x8_on_every_held_out_set(kind):
    for by_s in RESULTS["results"][kind].values():
        cell = by_s["8"]
        assert all(cell[LEARNED]["rmse_cm"] < cell[c]["rmse_cm"] for c in ("guided_filter", "joint_bilateral", "bicubic"))


@pytest.mark.parametrize("kind", ["bicubic", "block", "noisy"])
def test_shipped_weights_beat_bicubic_and_guided_filter_at_x4_to_x16(kind):
    """Where the card says it still loses (x16 on Middlebury / sensor holes, x2) is in its verdict lines."""
    for by_s in RESULTS["results"][kind].values():
        for s in ("4", "8", "16"):
            cell = by_s[s]
            assert cell[LEARNED]["rmse_cm"] < min(cell["bicubic"]["rmse_cm"], cell["guided_filter"]["rmse_cm"])
