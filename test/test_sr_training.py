"""The SR training configs run through the shared trainer (training.train / training.sr_demo):
DSR-Diff's two stages end in a loadable checkpoint whose stage 2 changed only the GRN, and the
DenseDepth SR baseline trains with its loss. A few steps each on the real shared-data crops."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = [pytest.mark.torch, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SMALL = ["model.channels=8", "model.dfe_blocks=1", "model.fusion_blocks=1", "model.guidance_dim=16",
         "model.ggn_channels=8", "model.grn_hidden=32", "model.grn_layers=1", "data.train.crop_size=64",
         "data.train.batch_size=2", "train.batch_size=2", "train.max_steps=3", "data.train.length=6",
         "train.log_every=1", "train.ckpt_every_steps=null", "train.warmup_steps=1",
         "data.train.sun3d=[0, 2]"]  # 2 SUN3D frames per fragment (the configs: 0-37)


def test_sr_demo_two_stages_through_the_trainer(tmp_path, shared_data):
    from depth_diffusion_ros.models.checkpoint import load_checkpoint
    from training.sr_demo import main

    sets = SMALL + [f"data.train.root={shared_data}"]
    args = ["--out", str(tmp_path / "weights")]
    for s in sets:
        args += ["--set1", s, "--set2", s]
    args += ["--set1", f"train.out_dir={tmp_path / 's1'}", "--set2", f"train.out_dir={tmp_path / 's2'}"]
    assert main(args) == 0
    stage1 = load_file(str(tmp_path / "s1" / "final" / "model.safetensors"))
    final = load_file(str(tmp_path / "weights" / "model.safetensors"))
    changed = {k for k in final if not torch.equal(final[k], stage1[k])}
    assert changed and all(k.startswith("grn.") for k in changed)  # stage 2 trains the GRN only
    model = load_checkpoint(tmp_path / "weights")
    assert model.config.scales == [2, 4, 8, 16] and model.config.channels == 8
    assert model.config.guidance_input == "pool" and model.config.upsample_mode == "bilinear"
    assert load_checkpoint(tmp_path / "s1" / "final").config.stage == 1  # the trainer writes checkpoints too
    lines = (tmp_path / "s2" / "metrics.jsonl").read_text().splitlines()
    assert any('"diff_l1"' in line and '"rec_l1"' in line for line in lines)


def test_densedepth_sr_config_trains(tmp_path, shared_data):
    from training.train import build_trainer, load_config

    cfg = load_config(REPO / "training/configs/densedepth_sr_demo_cpu.yaml", [
        f"data.train.root={shared_data}", "data.train.length=4", "data.train.batch_size=2",
        "train.batch_size=2", "train.max_steps=2", "model.decoder_width=0.125",
        f"train.out_dir={tmp_path / 'dd'}", "train.log_every=1"])
    trainer = build_trainer(cfg)
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    assert result["step"] == 2
    assert {"l_depth", "l_grad", "l_ssim"} <= set(result["last"])
    assert all(torch.isfinite(torch.tensor(result["last"][k])) for k in ("loss", "l_depth", "l_grad", "l_ssim"))
    assert (tmp_path / "dd" / "final" / "model.safetensors").is_file()
    from depth_diffusion_ros.models.checkpoint import load_checkpoint
    from depth_diffusion_ros.models.densedepth import DenseDepth

    assert isinstance(load_checkpoint(tmp_path / "dd" / "final"), DenseDepth)
