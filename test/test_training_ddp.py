"""Multi-process training: two CPU processes with the gloo backend through torchrun.

The stand-in model (test/_training_standin.py) is trained by the real Trainer in
test/_training_ddp_worker.py; each rank starts from different random weights, so agreement at
the end shows DDP's broadcast and gradient all-reduce worked.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _training_standin import TinyCompletion  # noqa: E402

pytestmark = pytest.mark.torch
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_ddp_two_process_gloo_ranks_agree(tmp_path, kitti_raw_dir):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "test/_training_ddp_worker.py"), str(tmp_path), str(kitti_raw_dir)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # 8 samples / 2 ranks / batch 2 = 2 steps per epoch, 2 epochs.
    assert all(i["world"] == 2 and i["backend"] == "gloo" and i["step"] == 4 for i in info)
    # DistributedSampler: each rank trained on its own half of every epoch.
    s0, s1 = info[0]["seen"], info[1]["seen"]
    assert len(s0) == len(s1) == 8
    for e in (0, 1):
        assert not set(s0[4 * e:4 * e + 4]) & set(s1[4 * e:4 * e + 4])
    w0, w1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=1e-6)
    final = load_file(str(tmp_path / "run/final/model.safetensors"))
    for k in w0:
        torch.testing.assert_close(final[k], w0[k], rtol=0, atol=0)
    init = TinyCompletion().state_dict()
    assert any(not torch.allclose(init[k], w0[k]) for k in w0)  # it did train


