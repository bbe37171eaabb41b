"""Tables and the MODEL_CARD.md of the default completion model, from ``results.json``.

:func:`write_card` is called by ``python -m training.kitti_completion``; ``python -m
training.completion_card [WEIGHTS_DIR]`` rewrites the card (and prints the tables for the README)
from the ``results.json`` (scores) and ``speed.json`` (``benchmarks/bench_completion_v2.py``) there.
"""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any, Dict, List

import torch

METRICS = (("rmse_mm", "RMSE [mm]"), ("mae_mm", "MAE [mm]"), ("irmse_1_km", "iRMSE [1/km]"),
           ("imae_1_km", "iMAE [1/km]"))
PEER_PREFIXES = ("IP-Basic", "linear", "nearest")
#: Headings of the printed tables (the README's completion_model block).
TITLES = {"accuracy": "Accuracy on the validation frames (mm, 1/km; covered = fraction of pixels with an estimate)",
          "verdicts": "Against the target (RMSE <= 0.85x and MAE <= 1.0x the best classical peer)",
          "ablation": "Ablation (RMSE / MAE, mm)",
          "diffusion": "Does the diffusion earn its place?",
          "sparsification": "Is depth/uncertainty informative? (RMSE sparsification)",
          "speed": "Speed"}


def _is_peer(row: str) -> bool:
    return row.startswith(PEER_PREFIXES)


def best_peer(rows: Dict[str, Dict[str, float]], key: str) -> tuple[str, float]:
    """(name, value) of the classical peer with the lowest ``key``."""
    name = min((r for r in rows if _is_peer(r)), key=lambda r: rows[r][key])
    return name, rows[name][key]


def default_row(results: Dict[str, Any]) -> str:
    steps = int(results["config"]["model"].get("num_inference_steps", 1))
    return f"DiffusionDepth, {steps} step" + ("" if steps == 1 else "s")


def accuracy_table(results: Dict[str, Any]) -> str:
    """Per validation set: the peers and the shipped setting, with the ratio to the best peer."""
    ours = default_row(results)
    lines = ["| frames | method | " + " | ".join(h for _, h in METRICS) + " | covered | RMSE / best peer | MAE / best peer |",
             "|---|---|" + "---:|" * (len(METRICS) + 3)]
    for set_name, rows in results["scores"]["sets"].items():
        for row, m in rows.items():
            if not (_is_peer(row) or row == ours):
                continue
            ratios = " | ".join(f"{m[k] / best_peer(rows, k)[1]:.2f}" for k in ("rmse_mm", "mae_mm"))
            name = f"**{row}**" if row == ours else row
            lines.append(f"| {set_name} | {name} | " + " | ".join(f"{m[k]:.0f}" for k, _ in METRICS)
                         + f" | {m['coverage']:.0%} | {ratios} |")
    return "\n".join(lines)


def ablation_table(results: Dict[str, Any]) -> str:
    """RMSE / MAE [mm] of every model row on every validation set (the peers' best beside)."""
    sets = results["scores"]["sets"]
    names = list(sets)
    model_rows = [r for r in next(iter(sets.values())) if not _is_peer(r)]
    head = "| row | " + " | ".join(f"{s}: RMSE / MAE" for s in names) + " |"
    lines = [head, "|---|" + "---:|" * len(names)]
    for row in model_rows:
        lines.append(f"| {row} | " + " | ".join(f"{sets[s][row]['rmse_mm']:.0f} / {sets[s][row]['mae_mm']:.0f}"
                                               for s in names) + " |")
    lines.append("| best classical peer | " + " | ".join(
        f"{best_peer(sets[s], 'rmse_mm')[1]:.0f} / {best_peer(sets[s], 'mae_mm')[1]:.0f}" for s in names) + " |")
    deltas = ablation_deltas(results)
    return "\n".join(lines) + ("\n\n" + "\n".join(deltas) if deltas else "")


def ablation_deltas(results: Dict[str, Any]) -> List[str]:
    """One line per ablation variant: its RMSE and MAE against the main run at the same budget
    (the matched row), as mean relative differences over the validation sets (negative = better)."""
    sets = results["scores"]["sets"]
    matched = results.get("matched_row")
    out = []
    for name in results.get("variants", {}):
        row = f"ablation: {name}"
        if not matched or not all(row in rows and matched in rows for rows in sets.values()):
            continue
        d = {k: sum(rows[row][k] / rows[matched][k] - 1 for rows in sets.values()) / len(sets)
             for k in ("rmse_mm", "mae_mm")}
        per_set = ", ".join(f"{s} {rows[row]['rmse_mm'] / rows[matched]['rmse_mm'] - 1:+.1%}" for s, rows in sets.items())
        out.append(f"- `{name}` against the main run at the same budget: RMSE {d['rmse_mm']:+.1%}, "
                   f"MAE {d['mae_mm']:+.1%} (mean over the sets; RMSE per set: {per_set}).")
    return out


def sparsification_table(results: Dict[str, Any]) -> str:
    """AUSE / AURG (RMSE sparsification, normalised) per set and model row with an uncertainty."""
    lines = ["| frames | row | pixels | AUSE (lower is better) | AURG (> 0: better than random) | oracle area | model area |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for set_name, rows in results["scores"]["sparsification"].items():
        for row, s in rows.items():
            lines.append(f"| {set_name} | {row} | {s['n']} | {s['ause']:.3f} | {s['aurg']:.3f} | "
                         f"{s['oracle_area']:.3f} | {s['model_area']:.3f} |")
    return "\n".join(lines)


def speed_table(speed: Dict[str, Any]) -> str:
    """The rows of ``speed.json``: runtime | setting | ms per frame."""
    lines = [f"Machine: {speed.get('machine', '?')}; frame {speed.get('frame', '?')}.", "",
             "| what | setting | median ms / frame |", "|---|---|---:|"]
    for r in speed.get("rows", []):
        lines.append(f"| {r['what']} | {r['setting']} | {r['ms']:.1f} |")
    return "\n".join(lines)


def verdicts(results: Dict[str, Any]) -> List[str]:
    """One line per validation set: does the shipped setting meet RMSE <= 0.85x and MAE <= 1.0x
    the best classical peer?"""
    ours = default_row(results)
    out = []
    for set_name, rows in results["scores"]["sets"].items():
        r = rows[ours]["rmse_mm"] / best_peer(rows, "rmse_mm")[1]
        m = rows[ours]["mae_mm"] / best_peer(rows, "mae_mm")[1]
        ok = r <= 0.85 and m <= 1.0
        out.append(f"- {set_name}: RMSE {r:.2f}x, MAE {m:.2f}x the best peer: "
                   + ("**meets** the target (<= 0.85x, <= 1.0x)" if ok else "**misses** the target (<= 0.85x, <= 1.0x)"))
    return out


def diffusion_verdict(results: Dict[str, Any], noticeable: float = 0.02) -> str:
    """Does the diffusion earn its place? The spread of RMSE over the sampling settings (1/2/4
    steps, ensemble) and the regression ablation against the main run at the same budget, each
    as a mean relative RMSE difference over the validation sets; "helps" needs > ``noticeable``."""
    sets = results["scores"]["sets"]
    settings = [r for r in next(iter(sets.values())) if r.startswith("DiffusionDepth, ")]
    spread = max(max(rows[r]["rmse_mm"] for r in settings) / min(rows[r]["rmse_mm"] for r in settings) - 1
                 for rows in sets.values()) if settings else 0.0
    lines = [f"- Sampling: over {', '.join(s.removeprefix('DiffusionDepth, ') for s in settings)} the RMSE "
             f"differs by at most {spread:.1%} on any set."]
    matched, regressor = results.get("matched_row"), "ablation: regressor"
    gain = None
    if matched and all(matched in rows and regressor in rows for rows in sets.values()):
        gain = sum(rows[regressor]["rmse_mm"] / rows[matched]["rmse_mm"] - 1 for rows in sets.values()) / len(sets)
        lines.append(f"- No diffusion: the one-shot regressor's RMSE is {gain:+.1%} against the diffusion run "
                     "at the same budget (mean over the sets).")
    helps = spread > noticeable or (gain is not None and gain > noticeable)
    lines.append("- Verdict: " + ("diffusion helps measurably here." if helps else
                                  f"diffusion does not help measurably here (no difference above {noticeable:.0%}): "
                                  "the accuracy comes from the learned blend of the classical fills and the residual."))
    return "\n".join(lines)


def write_card(model, results: Dict[str, Any], out: Path) -> str:
    """Write ``out/MODEL_CARD.md`` from ``results`` (and ``out/speed.json`` when present); returns
    the tables as printed text."""
    from training.completion_card_text import card_text

    speed_path = out / "speed.json"
    speed = json.loads(speed_path.read_text()) if speed_path.is_file() else None
    tables = {"accuracy": accuracy_table(results), "verdicts": "\n".join(verdicts(results)),
              "ablation": ablation_table(results), "diffusion": diffusion_verdict(results),
              "sparsification": sparsification_table(results),
              "speed": speed_table(speed) if speed else "(run benchmarks/bench_completion_v2.py to fill this in)"}
    size_mb = sum(f.stat().st_size for f in out.glob("model.safetensors")) / 1e6
    facts = {"params_m": sum(p.numel() for p in model.parameters()) / 1e6, "size_mb": size_mb,
             "machine": f"{platform.machine()} CPU, 2 cores, no GPU", "torch": torch.__version__}
    (out / "MODEL_CARD.md").write_text(card_text(model.config, results, tables, facts))
    # printed for the README (its completion_speed block has the speed table already)
    return "\n\n".join(f"**{TITLES[k]}**\n\n{v}" for k, v in tables.items() if k != "speed")


def main(argv: List[str] | None = None) -> int:
    from depth_diffusion_ros.models.checkpoint import load_checkpoint
    from training.kitti_completion import WEIGHTS

    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else WEIGHTS
    results = json.loads((out / "results.json").read_text())
    print(write_card(load_checkpoint(out, architecture="diffusion_depth"), results, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
