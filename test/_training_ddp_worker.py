"""Worker run by torchrun (2 processes, gloo, CPU) in test_training_trainer.py: trains the stand-in
model with the real Trainer, then every rank writes its final weights and the sample indices it saw."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _training_standin import TinyCompletion  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402
from training.datasets import build_dataset  # noqa: E402
from training.trainer import Trainer, TrainConfig  # noqa: E402


class Recording(Dataset):
    def __init__(self, base):
        self.base, self.seen = base, []

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.seen.append(int(i))
        return self.base[i]


def main() -> None:
    out = Path(sys.argv[1])
    kitti_raw = sys.argv[2]
    torch.set_num_threads(1)
    data = Recording(build_dataset({
        "type": "repeat", "times": 8,
        "dataset": {"type": "torch_kitti", "root": kitti_raw, "cameras": [3], "cache": True,
                    "transforms": [{"type": "random_crop", "size": [64, 128], "vertical": "bottom"},
                                   {"type": "random_hflip"}]},
    }))
    cfg = TrainConfig(epochs=2, batch_size=2, num_workers=0, lr=5e-3, warmup_epochs=0, schedule="constant",
                      out_dir=str(out / "run"), ckpt_every_epochs=None, progress=False, tensorboard=False, log_every=2)
    torch.manual_seed(1000 + int(os.environ["RANK"]))  # different initial weights per rank: DDP must sync them
    model = TinyCompletion()
    trainer = Trainer(model, data, cfg)
    result = trainer.fit()
    rank = trainer.rank
    save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
    (out / f"rank{rank}.json").write_text(json.dumps({"seen": data.seen, "step": result["step"],
                                                     "world": trainer.world_size,
                                                     "backend": torch.distributed.get_backend()}))
    trainer.close()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
