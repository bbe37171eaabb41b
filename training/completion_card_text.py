"""The prose of the default completion model's MODEL_CARD.md (numbers come from results.json)."""
from __future__ import annotations

from typing import Any, Dict


def _minutes(seconds: Any) -> str:
    return "n/a" if seconds is None else f"{float(seconds) / 60:.0f} min"


def _run_line(name: str, run: Dict[str, Any]) -> str:
    return (f"- {name}: {run.get('steps', '?')} optimiser steps, wall {_minutes(run.get('wall_s'))}, "
            f"{run.get('threads', '?')} torch thread(s), {run.get('date', '')}")


def card_text(c, results: Dict[str, Any], tables: Dict[str, str], facts: Dict[str, Any]) -> str:
    """MODEL_CARD.md for config ``c`` (a DiffusionDepthConfig), ``results`` (kitti_completion's),
    the formatted ``tables`` and ``facts`` (params_m, size_mb, machine, torch)."""
    tr = results["config"]["train"]
    runs = results.get("runs", {})
    run_lines = "\n".join(_run_line(n, r) for n, r in runs.items())
    variants = "\n".join(f"- `{k}`: {v}" for k, v in results.get("variants", {}).items())
    return f"""# DiffusionDepth KITTI — the default depth-completion model

LiDAR-guided depth completion (RGB + sparse LiDAR depth -> dense metric depth with a per-pixel
uncertainty), a DiffusionDepth (Duan, Guo, Zhu, arXiv 2303.05021) designed for a CPU at sensor
rate: the denoising runs on a stride-{c.latent_stride} depth latent and the decoder blends two
classical fills of the sparse input per pixel and adds a learned log-residual. Trained on this
machine ({facts['machine']}) from the KITTI raw sequence in `../shared/data`.

## Model
- Image encoder: timm `{c.backbone}` started from ImageNet weights converted from Google's
  TFLite release (`python -m training.pretrained`, `../shared/pretrained`); feature-pyramid neck
  at stride {c.neck_stride} ({c.neck_channels} channels).
- Sparse-depth encoder to stride {c.neck_stride} (`models.neck.SparseDepthEncoder`).
- Priors: the classical fills `{list(c.external_priors)}` of the sparse input
  (`baselines.fills`; IP-Basic with the gaussian blur, Ku et al. CRV 2018, and linear
  interpolation over the Delaunay triangulation, nearest outside the hull), computed by the
  pipeline beside the network (the ONNX graphs take them as the `priors` input).
- Depth latent d={c.latent_channels} at stride {c.latent_stride}; conditioned U-Net denoiser
  ({c.denoiser_channels} channels, levels {list(c.denoiser_channel_mult)}); DDIM with
  {c.num_train_timesteps} training timesteps, `{c.timestep_spacing}` spacing and
  `{c.prediction_type}` prediction, **{c.num_inference_steps} inference step(s)** by default,
  trained by self-diffusion through {c.num_self_diffusion_steps} step(s) (paper Sec. 3.4).
- Decoder: image skips at strides {[c.latent_stride // 2 ** (i + 1) for i in range(len(c.decoder_skip_channels))]}
  ({list(c.decoder_skip_channels)} channels), per-pixel selection between the priors, a gated
  log-residual and a monocular branch where no LiDAR return is within reach: the output is dense
  (`mask_unsupported: {str(c.mask_unsupported).lower()}`). An uncertainty head predicts the
  scale of a Laplace distribution of log depth (Kendall & Gal 2017); `depth/uncertainty` is the
  total standard deviation: that and the ensemble's spread (`inference.sampler.aggregate_depth_members`).
- {facts['params_m']:.2f} M parameters, {facts['size_mb']:.1f} MB (`model.safetensors`, fp32).

## Data and split
- Training: frames 0-39 of the shared 66-frame drive 2011_09_26 (camera 2, the official raw
  layout, `training.datasets.kitti_raw`), and KITTI object frame 000000.
- Never trained on: frames 40-43 (a gap), **44-51** (the validation block: the last frames
  while the car still moves; from about frame 52 the ego car stands behind a stopped car and the
  frames are nearly identical), **52-65** (the stopped block, reported on its own), **raw drive
  0001 frame 5 camera 2** with its KITTI depth-completion ground truth, and **object 000001**.
  On the sequence and the object frame 10 % of each scan's points are held out of the input and
  scored (`geometry.sampling.holdout_mask`, seed 0, frame number as index: the split
  `kitti-to-bag --holdout-fraction 0.1` and `replay` make).
- Supervision: LiDAR points held out of the input at random (60-95 % kept each time, the rest
  scored, never the kept ones) and, on the sequence frames, **denser targets accumulated the way
  KITTI DC's ground truth was made** (`training.datasets.accumulation`, `gt_source: accumulated`):
  the 5 neighbouring scans on each side *within the training frames* registered by KISS-ICP LiDAR
  odometry (Vizzo et al., RA-L 2023) and kept only where they agree with the frame's own scan
  (within 3 % of its depth range over the scan lines above and below) and are not occluded by a
  nearer neighbour return (10 % over a 5x5 neighbourhood): about 19-22 % of the image against the
  scan's 3.6 %. The object frame has its own scan only. Random scale, crop {_crop(results)}, flip
  and colour jitter; whole-frame LiDAR dropout with probability {c.lidar_dropout} trains the
  monocular branch. The row `ablation: heldout_targets` is the same network with the held-out
  points alone (the previous weights' recipe).

## Training
- Command: `.venv/bin/python -m training.kitti_completion` (converts the ImageNet weights,
  trains this config and the ablation variants, scores everything, writes this card).
- Batch {tr.get('batch_size')}, Adam lr {tr.get('lr')}, step decay {list(tr.get('lr_milestones', []))} x
  {list(tr.get('lr_factors', []))}, grad clip {tr.get('grad_clip')}, seed {tr.get('seed')}; losses L1
  {c.loss_weight_l1}, L2 {c.loss_weight_l2}, DDIM {c.loss_weight_ddim}, latent {c.loss_weight_latent},
  uncertainty {c.loss_weight_uncertainty}.
{run_lines}

## Accuracy on the validation frames (KITTI DC units: mm, 1/km)
Same input for every method; the classical peers run through the same CompletionPipeline.
"covered" = fraction of the image with an estimate. Target: RMSE <= 0.85x and MAE <= 1.0x the best
classical peer of each set.

{tables['accuracy']}

{tables['verdicts']}

## Ablation (RMSE / MAE [mm])
The variants are trained from scratch with one change each, for {results.get('ablation_epochs', '?')} epochs
(the 2 cores cannot train three full runs); the main schedule's learning rate is constant over
those epochs, so "{results.get('matched_row', 'main run at the ablation budget')}" (the shipped run's
own checkpoint at that step) is their like-for-like reference. The DiffusionDepth rows are the
shipped weights (the full schedule).

{variants}

{tables['ablation']}

{tables['diffusion']}

## Is the uncertainty informative? (RMSE sparsification, `evaluation.uncertainty`)
Pixels removed most-uncertain first; AUSE = area between that curve and the oracle's (the
truly worst first), AURG = area between a random order and the curve (Poggi et al., CVPR 2020),
both on curves normalised by the RMSE of all pixels.

{tables['sparsification']}

## Speed
{tables['speed']}

## Settings tried
{results.get('settings_tried', 'See the README.')}

## Limitations
- One drive and one object frame of training data: expect KITTI-like scenes (Velodyne HDL-64E,
  1242x375, f ~ 720 px). The monocular branch (pixels beyond the LiDAR's reach, e.g. the sky and
  the top of the image) is a rough guess, flagged by a large uncertainty.
- The validation block follows the training frames in the same drive; raw 0001 and object 000001
  are the independent frames.

## Not done
- The accumulated targets trade the sequence blocks for the independent frames (see the
  ablation lines): against the held-out points of frames 44-65 of the training drive, the model
  trained on the scan's own points alone scores better; against KITTI DC's ground truth (raw
  0001, itself accumulated) and the held-out points of the object frame, the accumulated targets
  score better. The weights follow the independent frames. A per-point weight for the neighbour
  returns (0.3, the `neighbour_weight` row) lands between the two recipes in RMSE and is worse in
  MAE on every set: not adopted.
- The speed budget (the whole model <= 100 ms a 1242x375 frame in ONNX Runtime on 2 CPU threads,
  <= 150 ms publish to `depth/image` through the node) is not met: see the speed table (the
  node: 162-179 ms median over 30 frames in three runs, `benchmarks/bench_nodes.py --tables 2
  --node-param backend=onnxruntime`). The three step graphs take about 95 ms (encoder 35, one step 17,
  decoder 44, most of it in full-resolution layers; since the graphs pass the condition unpacked
  instead of pixel-unshuffled into one tensor, 30 ms less) and the two classical fills, computed
  side by side, 60-65 ms (OpenCV's Delaunay triangulation, 12-20 ms since the points go in in
  strip order, and the per-row rasteriser of the linear fill, 25-30 ms; IP-Basic 15 ms beside
  them). The scores above were measured with OpenCV's triangulation in the row-major insertion
  order (it picks the other diagonal inside some cocircular pixel groups than the Qhull one the
  model was trained with: RMSE -0.1 to -1 % for both the model and the linear peer); the strip
  order picks other diagonals again in about 3 % of the hull's pixels (re-measured on all four
  sets: the linear peer's RMSE +0.1 to +0.4 %, MAE up to +0.9 %; the model's RMSE and MAE
  within 0.05 %).
- No GPU was lent to this work: no CUDA, TensorRT or GPU-training numbers.

## License
Trained on KITTI (Geiger et al., IJRR 2013; Uhrig et al., 3DV 2017), CC BY-NC-SA 3.0: these
weights are for non-commercial research use only.
"""


def _crop(results: Dict[str, Any]) -> str:
    try:
        for t in results["config"]["data"]["train"]["datasets"][0]["transforms"]:
            if t.get("type") == "random_crop":
                return f"{t['size'][0]}x{t['size'][1]}"
    except (KeyError, IndexError, TypeError):
        pass
    return "(see config)"
