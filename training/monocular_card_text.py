"""The text of the shipped monocular weights' MODEL_CARD.md, from the scores of :mod:`training.monocular`."""
from __future__ import annotations

from typing import Any, Dict, Optional

from training.monocular import KEYS

REFERENCE = "row-median reference"
KITTI_SETS = ("validation", "validation_sets", "sequence val", "raw 0001/5", "object 000001", "sequence static")


def _table(scores: Dict[str, Any], set_name: str) -> str:
    lines = ["| model | " + " | ".join(KEYS) + " |", "|---|" + "---:|" * len(KEYS)]
    for row, s in scores.items():
        if set_name in s:
            m = s[set_name]["mean"]
            lines.append(f"| {row} | " + " | ".join(f"{m[k]:.3f}" for k in KEYS) + " |")
    return "\n".join(lines)


def _costs(costs: Dict[str, Any]) -> str:
    lines = ["| model | run at | GMAC 1 step | GMAC 2 steps | GMAC 5 steps | ms 1 step | ms 2 steps | ms 5 steps | "
             "GMAC at 1248x384 (1 step) |", "|---|---|" + "---:|" * 7]
    for name, c in costs.items():
        st = c["steps"]

        def cell(n: str, key: str) -> str:
            return f"{st[n][key]:.2f}" if n in st and key == "gmac" else (f"{st[n][key]:.0f}" if n in st else "one-shot")

        lines.append(f"| {name} | {c['processing_size']} | " + " | ".join(cell(n, "gmac") for n in ("1", "2", "5"))
                     + " | " + " | ".join(cell(n, "ms") for n in ("1", "2", "5")) + f" | {c['gmac_full_size_1_step']:.2f} |")
    return "\n".join(lines)


def _beats(kitti: Dict[str, Any], shipped: str) -> str:
    out = []
    for key, what in (("validation", "over the 10 validation frames"), ("validation_sets", "over the 3 sets")):
        ref = kitti["scores"][REFERENCE][key]["mean"]["abs_rel"]
        ours = kitti["scores"][shipped][key]["mean"]["abs_rel"]
        change = 100 * (1 - ours / ref)
        out.append(f"abs_rel {what} {ours:.3f} against the row-median reference's {ref:.3f} "
                   f"({abs(change):.0f} % {'lower' if change >= 0 else 'higher'})")
    return "Shipped model: " + "; ".join(out) + "."


def _missing_and_best(scores: Dict[str, Any], labels: Dict[str, str], shipped: str) -> str:
    """Which configured rows were not trained (so not in the tables) and which row scored best."""
    out = []
    missing = [lbl for lbl in labels if lbl not in scores]
    if missing:
        out.append("Not trained for this card (no `runs/<config>/final`), so absent from the tables: "
                   + ", ".join(f"{lbl} (`{labels[lbl]}`)" for lbl in missing) + ".")
    rows = {k: v for k, v in scores.items() if k != REFERENCE and "validation" in v}
    if rows:
        best = min(rows, key=lambda k: rows[k]["validation"]["mean"]["abs_rel"])
        if best != shipped:
            out.append(f"Lowest validation abs_rel: {best} ({rows[best]['validation']['mean']['abs_rel']:.3f}); "
                       f"the shipped weights are the better DiffusionDepth run "
                       f"({rows[shipped]['validation']['mean']['abs_rel']:.3f}): `depth_estimation_node`'s backends "
                       "(torch, ONNX Runtime, TensorRT) run DiffusionDepth; DenseDepth has no node backend or "
                       "ONNX export yet.")
    return " ".join(out)


def model_card(kitti: Dict[str, Any], indoor: Optional[Dict[str, Any]], export: Dict[str, Any], machine: str,
               date: str, labels: Dict[str, str], shipped: str) -> str:
    """MODEL_CARD.md (markdown) for the shipped monocular DiffusionDepth (table row ``shipped``)."""
    scores = kitti["scores"]
    relative = "row prior" in shipped
    parts = [
        "# DiffusionDepth, monocular, KITTI (diffusion_depth_kitti_monocular)",
        "",
        "Monocular metric depth from one camera image: DiffusionDepth (Duan et al., arXiv 2303.05021) at a "
        "size this CPU trains - d = 16 latent at stride 8, self-diffusion training, DDIM (v-prediction, "
        "trailing timesteps: 1 step from t = T-1 by default), an uncertainty head, and decoder skips of the "
        "image encoder, MobileNetV3-Small "
        + ("from random initialisation (it scored better on the validation frames than the runs started "
           "from ImageNet, `../shared/pretrained`: see the tables)" if "random init" in shipped else
           "started from ImageNet (`../shared/pretrained`, converted by `training.pretrained`)")
        + ". Canonical focal length 360.77 px (half KITTI's): `depth_estimation_node` "
        "resizes every image to it, so the depth stays metric on other cameras (Metric3D's canonical camera)."
        + (" The network predicts depth relative to the row-median ground-plane prior (ours: 10 x depth / "
           "prior, the prior stored with the weights; the pipeline multiplies it back for the camera at hand)."
           if relative else ""),
        "",
        f"Table row of these weights: **{shipped}**.",
        "",
        "Files: `model.safetensors` + `config.yaml` (torch backend), `onnx/` (encoder / step / decoder, static "
        f"640x192: the padded canonical size of a 1242x375 KITTI frame; parity against torch on the real raw "
        f"frame {export['max_abs_error']:.2e}), `row_median_reference.json` (the ground-plane reference "
        "fitted on the same training frames; backend `row_median`).",
        "",
        "## Data",
        "",
        "Trained on this machine (x86-64, 2 shared cores, no GPU; 1 torch thread) on the KITTI raw sequence "
        "in `../shared/data/kitti_raw_2011_09_26_sequence` (frames 0-39 of "
        "`training.datasets.kitti_raw.SEQUENCE_SPLIT`) and KITTI object frame 000000 (repeated 4x), "
        "supervised by every projected LiDAR point of each scan (sparse ground truth), with the paper's "
        "augmentation (random crop, flip, 1 deg rotation, colour jitter) after resizing each frame to the "
        "canonical focal length. Never trained on: sequence frames 40-65, raw drive 0001 frame 5, object 000001.",
        "",
        "## Scores",
        "",
        "Eigen protocol (Garg crop, 80 m cap), every model through `EstimationPipeline` (the node's code), "
        "depth at the input size. `validation` = the mean over the 10 validation frames: sequence val "
        "(frames 44-51, all LiDAR points), raw 0001/5 (KITTI depth-completion ground truth) and object "
        "000001 (all LiDAR points), each frame weighing the same; `validation_sets` = the mean of the three "
        "set means (the two frames of other drives count as much as the 8 sequence frames). "
        + _beats(kitti, shipped),
        "",
    ]
    for set_name in KITTI_SETS:
        parts += [f"### {set_name}", "", _table(scores, set_name), ""]
    parts += [
        "The DenseNets train from random initialisation (no DenseNet ImageNet weights exist on these "
        "machines): DenseDepth's point is transfer learning, so the DenseDepth decoder on the ImageNet "
        "MobileNetV3-Small is the transfer-learning row. DenseNet-169 and DenseNet-121 share data, schedule "
        "(12 epochs) and loss (0.1 L1 + gradient + SSIM on reciprocal depth; decoder width 0.25, a CPU "
        "budget); the MobileNet row has the same data and loss over 24 epochs (the paper's decoder width), "
        "the DiffusionDepth rows 120 epochs. "
        "Configs: " + ", ".join(f"`training/configs/{c}.yaml`" for c in labels.values()) + ".",
        "",
        _missing_and_best(scores, labels, shipped),
        "",
        "Figure (`docs/figures/monocular_kitti.png`): raw 0001/5 - image, each model, the KITTI ground truth.",
        "",
        "## Cost per 1242x375 frame",
        "",
        f"GMAC counted with `torch.utils.flop_counter` (multiply-adds of convolutions and matmuls) over the "
        f"whole pipeline call; CPU time median of 3 runs, torch, 1 thread, {machine}, {date}.",
        "",
        _costs(kitti.get("costs", {})),
        "",
    ]
    if indoor:
        parts += ["## Indoors (NYU Depth V2, 3 frames, NYU Eigen crop, 10 m cap)", "",
                  "The same model trained on the 100 SUN3D frames (`training/configs/sun3d_monocular_diffusion.yaml`, "
                  "dense registered depth), scored on the NYU frames of `../shared/data/nyu_depth_v2_metric3d` "
                  "(never trained on), beside the NYU-trained FastDepth re-executed in float from "
                  "`../shared/pretrained/fastdepth_nyu_int8.tflite` (`training.fastdepth`; its int8 output "
                  "saturates at 1.42 m; it may have seen these NYU scenes in training).", "",
                  _table(indoor["scores"], "nyu"), ""]
    parts += ["## Rebuild", "", "    .venv/bin/python -m training.pretrained --model tf_mobilenetv3_small_100 "
              "--out runs/pretrained/tf_mobilenetv3_small_100.safetensors",
              "    .venv/bin/python -m training.monocular_card", "",
              "(trains every config above that has no `runs/<config>/final`, scores, exports and writes this card).", ""]
    return "\n".join(parts)
