"""Train, score, export and document the shipped monocular weights in one command.

    .venv/bin/python -m training.monocular_card              # train what is missing, score, ship
    .venv/bin/python -m training.monocular_card --skip-train # score and ship the runs there are

1. trains every config of :data:`KITTI_MODELS` and :data:`INDOOR_MODELS` (``training.train``)
   whose ``runs/<config>/final`` is missing (all of them with ``--retrain``), one at a time;
2. scores them (:mod:`training.monocular`): the KITTI models and the row-median reference on the
   held-out KITTI frames (Eigen protocol), GMAC and CPU time per 1242x375 frame for 1, 2 and 5
   DDIM steps, the comparison figure; the indoor model, the reference and FastDepth on NYU;
3. ships the best of the DiffusionDepth runs (:data:`SHIPPED_CANDIDATES`: ImageNet-started, relative
   to the row prior, random initialisation; by abs_rel over the validation frames) to ``depth_diffusion_ros/weights/diffusion_depth_kitti_monocular``:
   the checkpoint, its ONNX export (``onnx/``: step form, static 640x192 = the padded canonical size
   of a 1242x375 KITTI frame; checked against torch on the real raw frame), the row-median
   reference fitted on the same training frames and ``MODEL_CARD.md`` with every number above.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "depth_diffusion_ros" / "weights" / "diffusion_depth_kitti_monocular"
#: the runs the shipped weights are chosen from (the lower validation abs_rel)
SHIPPED_CANDIDATES = ("kitti_monocular_diffusion", "kitti_monocular_diffusion_prior",
                      "kitti_monocular_diffusion_scratch")
#: table label -> training config (training/configs/<name>.yaml; run in runs/<name>)
KITTI_MODELS = {
    "DiffusionDepth, ImageNet MobileNetV3-S": "kitti_monocular_diffusion",
    "DiffusionDepth rel. row prior, ImageNet MobileNetV3-S": "kitti_monocular_diffusion_prior",
    "DiffusionDepth, random init": "kitti_monocular_diffusion_scratch",
    "DenseDepth DenseNet-169, scratch": "densedepth_kitti_169",
    "DenseDepth DenseNet-121, scratch": "densedepth_kitti_121",
    "DenseDepth decoder, ImageNet MobileNetV3-S": "densedepth_kitti_mobilenet",
}
INDOOR_MODELS = {"DiffusionDepth (SUN3D), ImageNet MobileNetV3-S": "sun3d_monocular_diffusion"}
FIGURE = REPO / "docs" / "figures" / "monocular_kitti.png"


def final_dir(config: str) -> Path:
    return REPO / "runs" / config / "final"


def train_missing(configs: List[str], retrain: bool) -> None:
    """``training.train`` for each config without a final checkpoint (or all with ``retrain``)."""
    for name in configs:
        if final_dir(name).is_dir() and not retrain:
            continue
        print(f"training {name} ...", flush=True)
        subprocess.run([sys.executable, "-m", "training.train", "--config", f"training/configs/{name}.yaml"],
                       cwd=REPO, check=True)


def score(models: Dict[str, str], out: Path, indoor: bool, reference: Optional[Path] = None) -> Dict[str, Any]:
    """:mod:`training.monocular` on the trained ``models`` (label -> config); its JSON."""
    from training import monocular

    argv = ["--out", str(out)] + [f"--model={label}={final_dir(c)}" for label, c in models.items()
                                  if final_dir(c).is_dir()]
    argv += ["--indoor"] if indoor else ["--cost", "--figure", str(FIGURE)]
    if reference is not None:
        argv += ["--save-reference", str(reference)]
    monocular.main(argv)
    return json.loads(out.read_text())


def export_onnx(checkpoint: Path, target: Path) -> Dict[str, Any]:
    """The step-form ONNX export at 640x192, checked on the real KITTI raw frame (resized to the canonical size)."""
    import cv2
    import numpy as np

    from depth_diffusion_ros.export.diffusion_depth import export_diffusion_depth
    from depth_diffusion_ros.inference import frames
    from depth_diffusion_ros.models.checkpoint import load_checkpoint
    from training.monocular import shared_data

    model = load_checkpoint(checkpoint).eval()
    rgb = cv2.imread(str(shared_data() / "kitti_raw_depth_completion_torch_kitti/raw/sync_rect/cam_02.png"))[:, :, ::-1]
    rgb_p, _ = frames.pad_to_multiple(cv2.resize(np.ascontiguousarray(rgb), (621, 188), interpolation=cv2.INTER_AREA),
                                      model.size_divisor)
    zeros = np.zeros((1, 1) + rgb_p.shape[:2], np.float32)
    report = export_diffusion_depth(model, target, rgb_p.shape[0], rgb_p.shape[1], forms=("step",),
                                    inputs={"rgb": frames.rgb_to_tensor_layout(rgb_p), "sparse_depth": zeros,
                                            "valid_mask": zeros})
    return {"graphs": [g.path.name for g in report.graphs],
            "max_abs_error": max(float(e) for g in report.graphs for e in g.max_abs_error.values())}


def shipped_run(kitti: Dict[str, Any]) -> str:
    """The candidate run (:data:`SHIPPED_CANDIDATES`) with the lowest validation abs_rel."""
    label = {c: lbl for lbl, c in KITTI_MODELS.items()}
    scored = [c for c in SHIPPED_CANDIDATES if label[c] in kitti["scores"]]
    return min(scored, key=lambda c: kitti["scores"][label[c]]["validation"]["mean"]["abs_rel"])


def ship(kitti: Dict[str, Any], indoor: Optional[Dict[str, Any]], reference: Path) -> None:
    """Copy the shipped checkpoint, export it, and write the model card."""
    from training.monocular_card_text import model_card

    run = shipped_run(kitti)
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.yaml"):
        shutil.copy2(final_dir(run) / name, WEIGHTS / name)
    shutil.copy2(reference, WEIGHTS / "row_median_reference.json")
    onnx_dir = WEIGHTS / "onnx"
    if onnx_dir.exists():
        shutil.rmtree(onnx_dir)
    export = export_onnx(WEIGHTS, onnx_dir)
    machine = f"{platform.machine()} {platform.processor() or ''}".strip()
    shipped = next(lbl for lbl, c in KITTI_MODELS.items() if c == run)
    text = model_card(kitti, indoor, export, machine=machine, date=time.strftime("%Y-%m-%d"),
                      labels=KITTI_MODELS, shipped=shipped)
    (WEIGHTS / "MODEL_CARD.md").write_text(text)
    print(f"shipped {WEIGHTS} ({sum(p.stat().st_size for p in WEIGHTS.rglob('*') if p.is_file()) / 2**20:.1f} MiB)")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.monocular_card", description=__doc__.splitlines()[0])
    p.add_argument("--skip-train", action="store_true", help="score and ship the runs there are")
    p.add_argument("--retrain", action="store_true", help="train every config again")
    args = p.parse_args(argv)
    if not args.skip_train:
        train_missing(list(KITTI_MODELS.values()) + list(INDOOR_MODELS.values()), args.retrain)
    if not any(final_dir(c).is_dir() for c in SHIPPED_CANDIDATES):
        print(f"monocular_card: error: none of {SHIPPED_CANDIDATES} is trained (runs/<config>/final)", file=sys.stderr)
        return 2
    runs = REPO / "runs"
    reference = runs / "row_median_reference.json"  # kitti_monocular_diffusion_prior trains relative to it
    kitti = score(KITTI_MODELS, runs / "monocular_scores.json", indoor=False, reference=reference)
    indoor = score(INDOOR_MODELS, runs / "monocular_scores_indoor.json", indoor=True) \
        if any(final_dir(c).is_dir() for c in INDOOR_MODELS.values()) else None
    ship(kitti, indoor, reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
