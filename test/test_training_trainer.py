"""The model-agnostic trainer: loss falls, exact resume, LR schedule, CLI, freezing (DDP: test_training_ddp.py).

The model here is a tiny stand-in (test/_training_standin.py): the trainer only needs
``training_losses`` and ``sample``; training DiffusionDepth itself is too slow for a unit test on
this 2-core CPU (the shipped completion model was trained with the same trainer, see its model card).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _training_standin import TinyCompletion  # noqa: E402
from training.datasets import build_dataset  # noqa: E402
from training.trainer import Trainer, TrainConfig, TrainingError, lr_factor  # noqa: E402

pytestmark = pytest.mark.torch
REPO = Path(__file__).resolve().parents[1]


def _data(kitti_raw_dir, times=8, size=(64, 128)):
    return build_dataset({
        "type": "repeat", "times": times,
        "dataset": {"type": "torch_kitti", "root": str(kitti_raw_dir), "cameras": [3], "cache": True,
                    "transforms": [{"type": "random_crop", "size": list(size), "vertical": "bottom"},
                                   {"type": "random_hflip"}]},
    })


def _cfg(tmp_path, **kw):
    base = dict(epochs=1, batch_size=2, num_workers=0, lr=5e-3, warmup_epochs=0, schedule="constant",
                out_dir=str(tmp_path / "run"), ckpt_every_epochs=None, progress=False, tensorboard=False,
                log_every=1, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_falls_on_real_kitti_crops(tmp_path, kitti_raw_dir):
    torch.manual_seed(0)
    trainer = Trainer(TinyCompletion(), _data(kitti_raw_dir, times=40), _cfg(tmp_path, epochs=2, grad_clip=5.0))
    out = trainer.fit()
    trainer.close()
    losses = [h["loss"] for h in trainer.history if h["kind"] == "train"]
    assert out["step"] == 40 == len(losses)
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.5 * first, (first, last)
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert lines[0]["kind"] == "train" and lines[-1]["kind"] == "summary"
    assert (tmp_path / "run/final/model.safetensors").is_file()


def test_resume_continues_from_saved_step_exactly(tmp_path, kitti_raw_dir):
    data = _data(kitti_raw_dir, times=6)
    torch.manual_seed(0)
    a = Trainer(TinyCompletion(), data, _cfg(tmp_path / "a", epochs=2, ckpt_every_steps=4, keep_last=5,
                                              schedule="step", lr_milestones=[1], lr_factors=[1.0], warmup_epochs=0.5))
    a.fit()
    a.close()
    assert a.step == 6 and (tmp_path / "a/run/checkpoints/step_00000004/trainer_state.safetensors").is_file()
    assert (tmp_path / "a/run/checkpoints/latest.txt").read_text().strip() == "step_00000004"

    torch.manual_seed(123)  # a different init: resume must replace it
    b = Trainer(TinyCompletion(), data, _cfg(tmp_path / "a", epochs=2, resume="auto", schedule="step",
                                              lr_milestones=[1], lr_factors=[1.0], warmup_epochs=0.5))
    assert b.step == 4
    assert len(b.optimizer.state) > 0  # Adam moments restored from safetensors
    b.history.clear()
    b.fit()
    b.close()
    assert [h["step"] for h in b.history if h["kind"] == "train"] == [5, 6]
    wa, wb = a.model.state_dict(), b.model.state_dict()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(TrainingError, match="not found"):
        Trainer(TinyCompletion(), data, _cfg(tmp_path / "c", resume=str(tmp_path / "nope")))


def test_lr_schedule_warmup_and_step_decay():
    cfg = TrainConfig(lr_milestones=[10, 15, 20], lr_factors=[1.0, 0.2, 0.04], warmup_epochs=1.0)
    spe = 100
    assert lr_factor(0.0, cfg, spe) == pytest.approx(1 / spe)
    assert lr_factor(0.5, cfg, spe) == pytest.approx(0.5)
    assert lr_factor(1.0, cfg, spe) == 1.0 and lr_factor(9.99, cfg, spe) == 1.0
    assert lr_factor(10.0, cfg, spe) == pytest.approx(0.2)
    assert lr_factor(15.5, cfg, spe) == pytest.approx(0.04)
    assert lr_factor(29.0, cfg, spe) == pytest.approx(0.04)
    with pytest.raises(TrainingError, match="same length"):
        TrainConfig(lr_milestones=[10, 15], lr_factors=[1.0])
    with pytest.raises(TrainingError, match="unknown train config keys"):
        TrainConfig.from_dict({"epoch": 3})
    # YAML 1.1 reads 3e-3 (no dot) as a string: numbers are coerced, garbage is named.
    assert TrainConfig.from_dict({"lr": "3e-3", "max_steps": "7"}).lr == pytest.approx(0.003)
    with pytest.raises(TrainingError, match="train.lr"):
        TrainConfig.from_dict({"lr": "fast"})


def test_bad_setups_are_named(tmp_path, kitti_raw_dir):
    data = _data(kitti_raw_dir, times=1)
    with pytest.raises(TrainingError, match="fewer than"):
        Trainer(TinyCompletion(), data, _cfg(tmp_path, batch_size=4))
    with pytest.raises(TrainingError, match="training_losses"):
        Trainer(torch.nn.Linear(2, 2), data, _cfg(tmp_path))
    with pytest.raises(TrainingError, match="fp16"):
        Trainer(TinyCompletion(), _data(kitti_raw_dir, 2), _cfg(tmp_path, amp="fp16", device="cpu"))


def test_cli_trains_evaluates_and_bf16_autocast(tmp_path, kitti_raw_dir, monkeypatch):
    from training import train

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    cfg = {
        "model": {"type": "_training_standin:build", "width": 4},
        "data": {
            "train": {"type": "repeat", "times": 4, "dataset": {
                "type": "torch_kitti", "root": str(kitti_raw_dir), "cameras": [3],
                "transforms": [{"type": "random_crop", "size": [64, 128]}]}},
            "val": {"type": "torch_kitti", "root": str(kitti_raw_dir), "cameras": [2]},
        },
        "eval": {"protocol": "kitti_dc"},
        "train": {"epochs": 1, "batch_size": 2, "num_workers": 0, "progress": False, "amp": "bf16",
                  "out_dir": str(tmp_path / "cli"), "ckpt_every_epochs": 1},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert train.main(["--config", str(path), "--set", "train.lr=0.002", "--set", "train.threads=1"]) == 0
    out = tmp_path / "cli"
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    ev = [r for r in records if r["kind"] == "eval"]
    assert ev and ev[-1]["rmse_mm"] > 0 and ev[-1]["n_valid"] > 80_000  # full-frame kitti_dc GT of cam_02
    assert (out / "figures/eval_0001.png").is_file()
    assert (out / "checkpoints/step_00000002/model.safetensors").is_file()
    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert resolved["train"]["lr"] == 0.002
    with pytest.raises(TrainingError, match="unknown sections"):
        train.load_config(_write(tmp_path / "bad.yaml", {"modle": {}}))


def _write(path, obj):
    path.write_text(yaml.safe_dump(obj))
    return path


def test_freeze_keeps_prefixed_parameters_fixed(tmp_path, kitti_raw_dir):
    torch.manual_seed(0)
    model = TinyCompletion()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, _data(kitti_raw_dir, times=4), _cfg(tmp_path, freeze=["net.0."]))
    trainer.fit()
    trainer.close()
    after = model.state_dict()
    assert torch.equal(after["net.0.weight"], before["net.0.weight"])
    assert not torch.equal(after["net.2.weight"], before["net.2.weight"])
    with pytest.raises(TrainingError, match="matches no parameter"):
        Trainer(TinyCompletion(), _data(kitti_raw_dir, times=4), _cfg(tmp_path, freeze=["backbone."]))
