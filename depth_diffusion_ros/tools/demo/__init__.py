"""``depth-diffusion-ros demo`` (``make demo``): the main job on embedded data, end to end.

1. **Middlebury 2014 "Motorcycle"** (ships inside scikit-image as
   ``skimage.data.stereo_motorcycle()``; Scharstein et al., GCPR 2014): metric ground-truth depth
   from the disparity and its calibration, ``Z_mm = baseline * f / (d + doffs)`` with f = 994.978
   px, cx = 311.193, cy = 254.877, doffs = 31.086 px, baseline = 193.001 mm (inf disparity = no
   ground truth). A LiDAR-like sparse input is sampled from it (``--scan-rows`` scan lines, every
   ``--scan-col-step``-th column, 10 % dropout, seeded; the scan phase moves from frame to frame),
   written to a bag (image, camera_info, sparse_depth 32FC1, depth_gt 32FC1) and replayed.
2. **KITTI** when the shared data folder (``$DDR_SHARED_DATA``, else ``../shared/data`` beside the
   repository) or ``$KITTI_DIR`` / ``--kitti-dir`` is there: the raw depth-completion frame
   (scored against KITTI's semi-dense ground truth) and the object frames (scored against 10 %
   of each LiDAR scan held out from the input) are converted with kitti-to-bag and replayed.
3. **Super-resolution x8** (``--no-sr`` skips it): bags from the Middlebury pair (cropped to a
   multiple of 8) and, with the shared data, the NYU Depth V2 frames of
   ``nyu_depth_v2_metric3d``, with ``depth_lr`` = the GT block-averaged over 8x8 valid pixels
   (:func:`block_average_depth`), replayed through depth_super_resolution_node
   (``replay --pipeline super_resolution``) for bicubic, guided_filter, joint_bilateral and
   onnxruntime (the shipped DSR-Diff weights, exported once per frame size into
   ``OUTPUT/onnx_cache`` by :func:`~depth_diffusion_ros.tools.onnx_cache.sr_onnx_export_for`;
   skipped with the reason when they cannot be exported or do not load), scored against the
   full-resolution GT and printed as a second table.

Every completion backend that can run here is replayed on the same bags through the real nodes
(``depth-diffusion-ros replay``): the classical ones always, learned ones when shipped
DiffusionDepth checkpoints are found in ``depth_diffusion_ros/weights/*/`` (decided from their
config.yaml; the DSR-Diff super-resolution weights are not completion models) and their runtime
is installed; the others are listed with the reason they were skipped. The learned models run
in ONNX Runtime: each checkpoint is exported once per padded frame size (step form, host DDIM
loop; :mod:`depth_diffusion_ros.export.diffusion_depth`) into ``OUTPUT/onnx_cache`` and reused
while the checkpoint's tensor hash matches; the torch backend runs as a reference row beside it
(same weights, same noise: the two rows must agree). Prints the completion table, the
super-resolution table and where the outputs went
(``OUTPUT/<dataset>/<backend>/report.json``, figures, output bags; ``OUTPUT/summary.json``), and
an RMSE table per frame for the multi-frame KITTI bags (which frames the shipped model held out).

Modules: :mod:`.data` (the bags and the shared data folders), :mod:`.backends` (backend
discovery, the ONNX export cache), :mod:`.completion` and :mod:`.super_resolution` (the two
sections) and :mod:`.cli` (options, tables, summary).
"""
from __future__ import annotations

from depth_diffusion_ros.tools.demo.backends import (
    CLASSICAL,
    SR_BACKENDS,
    WEIGHTS_DIR,
    BackendChoice,
    completion_checkpoint_problem,
    discover_backends,
    sr_backend_choices,
)
from depth_diffusion_ros.tools.demo.cli import add_arguments, run
from depth_diffusion_ros.tools.demo.completion import per_frame_table, replay_completion
from depth_diffusion_ros.tools.demo.data import (
    MOTORCYCLE,
    REPO,
    SR_SCALE,
    block_average_depth,
    kitti_sources,
    lidar_like_sparse,
    motorcycle_depth,
    nyu_frames,
    shared_data_dir,
    write_motorcycle_bag,
    write_sr_bag,
)
from depth_diffusion_ros.tools.demo.super_resolution import SR_TABLE_COLUMNS, run_super_resolution
from depth_diffusion_ros.tools.onnx_cache import bag_padded_sizes, checkpoint_sha256, onnx_export_for, read_size_divisor

__all__ = [
    "BackendChoice",
    "CLASSICAL",
    "MOTORCYCLE",
    "REPO",
    "SR_BACKENDS",
    "SR_SCALE",
    "SR_TABLE_COLUMNS",
    "WEIGHTS_DIR",
    "add_arguments",
    "bag_padded_sizes",
    "block_average_depth",
    "checkpoint_sha256",
    "completion_checkpoint_problem",
    "discover_backends",
    "kitti_sources",
    "lidar_like_sparse",
    "motorcycle_depth",
    "nyu_frames",
    "onnx_export_for",
    "per_frame_table",
    "read_size_divisor",
    "replay_completion",
    "run",
    "run_super_resolution",
    "shared_data_dir",
    "sr_backend_choices",
    "write_motorcycle_bag",
    "write_sr_bag",
]
