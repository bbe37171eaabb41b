"""Train the shipped DSR-Diff demo weights: both stages, then write the checkpoint directory.

    .venv/bin/python -m training.sr_demo [--out depth_diffusion_ros/weights/dsr_diff_demo]
        [--stage1 training/configs/dsr_diff_demo_stage1.yaml]
        [--stage2 training/configs/dsr_diff_demo_stage2.yaml] [--set1 k=v ...] [--set2 k=v ...]

Stage 1 (DSR-Diff Sec. 3.5) trains GGN + DSRN with the shared trainer
(:mod:`training.trainer`); stage 2 starts from stage 1's final weights (``model.init_from``),
freezes GGN and DSRN and trains the GRN. The result is saved with
:func:`depth_diffusion_ros.models.checkpoint.save_checkpoint` (``model.safetensors`` with the
weights' sha256 and the training summary in its metadata, plus ``config.yaml``). Score it with
``benchmarks/bench_super_resolution.py`` (writes ``results.json`` beside the weights), then
``python -m training.sr_card`` rewrites the model card and prints the README block.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

import torch

from training.datasets import resolve_path
from training.train import build_trainer, load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "training" / "configs"


def run_stage(config_path: Path, overrides: List[str]) -> tuple:
    """Build and fit one stage; returns (model, result dict, resolved config)."""
    cfg = load_config(config_path, overrides)
    trainer = build_trainer(cfg)
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    return trainer.model, result, cfg


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.sr_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "depth_diffusion_ros" / "weights" / "dsr_diff_demo"))
    parser.add_argument("--stage1", default=str(CONFIGS / "dsr_diff_demo_stage1.yaml"))
    parser.add_argument("--stage2", default=str(CONFIGS / "dsr_diff_demo_stage2.yaml"))
    parser.add_argument("--set1", action="append", default=[], metavar="KEY=VALUE", help="stage-1 override")
    parser.add_argument("--set2", action="append", default=[], metavar="KEY=VALUE", help="stage-2 override")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from depth_diffusion_ros.models.checkpoint import save_checkpoint

    t0 = time.time()
    _, r1, cfg1 = run_stage(Path(args.stage1), args.set1)
    stage1_dir = r1["final_dir"]
    t1 = time.time()
    model, r2, cfg2 = run_stage(Path(args.stage2), args.set2 + [f"model.init_from={stage1_dir}"])
    t2 = time.time()
    model.eval()
    summary = {
        "stage1_steps": r1["step"], "stage1_wall_s": round(t1 - t0, 1), "stage1_last": r1["last"],
        "stage2_steps": r2["step"], "stage2_wall_s": round(t2 - t1, 1), "stage2_last": r2["last"],
        "torch_threads": torch.get_num_threads(),
    }
    out = save_checkpoint(model.cpu(), resolve_path(args.out), metadata={
        "training": json.dumps(summary, sort_keys=True),
        "stage1_config": Path(args.stage1).name, "stage2_config": Path(args.stage2).name,
    })
    print(json.dumps({"out": str(out), **summary}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
