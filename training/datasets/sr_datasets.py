"""Colour-guided depth super-resolution (CDSR) datasets.

Frames (numpy dicts ``rgb`` (H,W,3) uint8, ``gt_depth`` (H,W) float32 m, 0 = missing, ``K``)
come from *sources* that offer ``__len__``, ``load_frame(i)`` and ``sample_name(i)``: the NYU and
KITTI loaders of :mod:`training.datasets` (wrapped, not duplicated) and the Middlebury / Lu /
paired-folder / Marigold-DC readers below. The LR input is made from the ground truth by the
standard CDSR degradation, antialiased bicubic downsampling by the scale factor
(:func:`depth_diffusion_ros.geometry.resample.bicubic_downsample_depth`, DSR-Diff Sec. 4.1;
de Lutio et al. / Kim et al. DKN / Zhong et al. DCTNet use the same protocol: NYU-v2 first 1000
labeled frames for training, last 449 for testing, RMSE in cm).

Layouts read:

* NYU-Depth-v2: ``nyu_labeled`` .mat (CDSR split ``train`` = first 1000, ``test`` = last 449),
  BTS sync folders, the Metric3D sample in ``../shared/data/nyu_depth_v2_metric3d``.
* Middlebury 2014/2006 stereo: ``<scene>/im0.png`` + ``disp0.pfm`` (or ``disp0GT.pfm``) +
  ``calib.txt`` (``cam0=[f 0 cx; 0 f cy; 0 0 1]``, ``doffs``, ``baseline`` in mm); and the
  scikit-image copy (``motorcycle_left.png`` + ``motorcycle_disp.npz`` + a ``key: value``
  calib.txt). Depth = baseline * f / (disparity + doffs) (Scharstein et al., GCPR 2014).
* Paired folders (the CDSR Middlebury / Lu test sets as distributed with DKN/DCTNet-style code):
  ``<root>/<rgb_dir>/<stem>.png`` with ``<root>/<depth_dir>/<stem>.png|.npy``; their depth is
  usually in 8-bit disparity-like units, so RMSE is then in those units (``depth_scale``).
* Marigold-DC teaser (``image.png`` + ``gt.npy``) and KITTI (``torch_kitti`` layout, GT png).

Samples (torch) for :meth:`DSRDiff.training_losses`: ``rgb`` (3,H,W) [0,1], ``depth_lr``
(1,h,w) m with holes filled, ``valid_mask_lr`` (1,h,w), ``gt_depth`` (1,H,W) m, ``gt_mask``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from depth_diffusion_ros.geometry.resample import bicubic_downsample_depth, fill_depth_holes
from training.datasets.common import DatasetError, intrinsics_matrix, read_rgb

# ----------------------------------------------------------------------------- frame sources


class FrameList:
    """A list of already loaded frames (``rgb``, ``gt_depth``, ``K``) with names."""

    def __init__(self, frames: Sequence[dict], names: Sequence[str]):
        if len(frames) != len(names):
            raise DatasetError("FrameList: frames and names differ in length")
        self.frames, self.names = list(frames), list(names)

    def __len__(self) -> int:
        return len(self.frames)

    def load_frame(self, index: int) -> dict:
        return self.frames[index]

    def sample_name(self, index: int) -> str:
        return self.names[index]


def read_pfm(path: str | Path) -> np.ndarray:
    """Read a PFM (Portable Float Map, as used by Middlebury 2014) as (H,W) float32, top row first.

    Raises:
        DatasetError: not a PFM file or truncated.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        header = fh.readline().decode("ascii", "replace").strip()
        if header not in ("Pf", "PF"):
            raise DatasetError(f"{path}: not a PFM file (header {header!r})")
        dims = fh.readline().decode("ascii", "replace").split()
        width, height = int(dims[0]), int(dims[1])
        scale = float(fh.readline().decode("ascii", "replace").strip())
        channels = 3 if header == "PF" else 1
        data = np.fromfile(fh, dtype="<f4" if scale < 0 else ">f4")
    if data.size != width * height * channels:
        raise DatasetError(f"{path}: expected {width * height * channels} floats, found {data.size}")
    data = data.reshape(height, width, channels)[::-1, :, 0]
    return np.ascontiguousarray(data.astype(np.float32))


def read_middlebury_calib(path: str | Path) -> dict:
    """Parse a Middlebury ``calib.txt`` (2014 ``key=value`` or the ``key: value`` skimage copy).

    Returns a dict with ``f`` (px), ``cx``, ``cy``, ``doffs`` (px), ``baseline`` (mm).
    Raises:
        DatasetError: missing file or fields.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Middlebury calib not found: {path}")
    values: dict = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, val = line.partition("=") if "=" in line else line.partition(":")
        if not sep:
            continue
        values[key.strip()] = val.strip()
    try:
        if "cam0" in values:  # 2014: cam0=[f 0 cx; 0 f cy; 0 0 1]
            nums = [float(x) for x in re.findall(r"[-+0-9.eE]+", values["cam0"])]
            f, cx, cy = nums[0], nums[2], nums[5]
        else:
            f = float(values["focal_length_px"])
            cx, cy = float(values["principal_point_x_px"]), float(values["principal_point_y_px"])
        doffs = float(values.get("doffs", values.get("principal_point_dx_px", 0.0)))
        baseline = float(values.get("baseline", values.get("baseline_mm")))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read f, cx, cy, doffs, baseline ({exc})") from exc
    return {"f": f, "cx": cx, "cy": cy, "doffs": doffs, "baseline": baseline}


def disparity_to_depth(disparity: np.ndarray, calib: dict) -> np.ndarray:
    """Middlebury disparity (px) -> depth (m): ``baseline_mm * f / (d + doffs) / 1000``.

    Non-finite or non-positive disparities give 0 (missing).
    """
    d = np.asarray(disparity, dtype=np.float64)
    ok = np.isfinite(d) & (d > 0)
    depth = np.zeros(d.shape, np.float32)
    depth[ok] = (calib["baseline"] * calib["f"] / (d[ok] + calib["doffs"]) / 1000.0).astype(np.float32)
    return depth


class MiddleburyStereo(FrameList):
    """Middlebury scenes as (left image, metric depth from the left GT disparity).

    Args:
        root: a scene folder, or a folder of scene folders (2014 layout), or the skimage copy.
        column_range: (lo, hi) fractions of the width to keep (a spatial train/test split of
            one scene, e.g. (0, 0.6) to train and (0.6, 1) to test); None keeps all.

    Raises:
        DatasetError: nothing recognisable under ``root``.
    """

    def __init__(self, root: str | Path, column_range: Optional[Sequence[float]] = None):
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"Middlebury folder not found: {root}")
        scenes = [root] + sorted(p for p in root.iterdir() if p.is_dir())
        frames, names = [], []
        for scene in scenes:
            frame = self._read_scene(scene)
            if frame is not None:
                if column_range is not None:
                    w = frame["rgb"].shape[1]
                    x0, x1 = int(round(column_range[0] * w)), int(round(column_range[1] * w))
                    frame = {"rgb": frame["rgb"][:, x0:x1].copy(), "gt_depth": frame["gt_depth"][:, x0:x1].copy(),
                             "K": frame["K"] - np.array([[0, 0, x0], [0, 0, 0], [0, 0, 0]], np.float64)}
                frames.append(frame)
                names.append(scene.name)
        if not frames:
            raise DatasetError(f"no Middlebury scene (im0.png+disp0*.pfm+calib.txt or skimage copy) under {root}")
        super().__init__(frames, names)

    @staticmethod
    def _read_scene(scene: Path) -> Optional[dict]:
        calib_path = scene / "calib.txt"
        if not calib_path.is_file():
            return None
        if (scene / "im0.png").is_file():
            disp_path = next((scene / n for n in ("disp0GT.pfm", "disp0.pfm") if (scene / n).is_file()), None)
            if disp_path is None:
                return None
            rgb, disp = read_rgb(scene / "im0.png"), read_pfm(disp_path)
        else:
            lefts = sorted(scene.glob("*_left.png"))
            if not lefts:
                return None
            stem = lefts[0].name[: -len("_left.png")]
            npz = scene / f"{stem}_disp.npz"
            if not npz.is_file():
                return None
            rgb = read_rgb(lefts[0])
            with np.load(npz) as data:
                disp = np.asarray(data[data.files[0]], dtype=np.float32)
        calib = read_middlebury_calib(calib_path)
        if disp.shape != rgb.shape[:2]:
            raise DatasetError(f"{scene}: disparity {disp.shape[::-1]} and image {rgb.shape[1::-1]} differ (WxH)")
        depth = disparity_to_depth(disp, calib)
        return {"rgb": rgb, "gt_depth": depth, "K": intrinsics_matrix(calib["f"], calib["f"], calib["cx"], calib["cy"])}


class PairedFolder(FrameList):
    """CDSR test sets stored as image/depth pairs with equal stems (Middlebury CDSR, Lu et al.).

    Args:
        root: folder holding ``rgb_dir`` and ``depth_dir`` (first existing of the candidates).
        depth_scale: depth unit per file unit (PNG value / depth_scale -> depth); 1 keeps the
            file's units (the CDSR Middlebury/Lu sets are 8-bit, so RMSE is in those units).
    Raises:
        DatasetError: folders missing, no pairs, or sizes differ.
    """

    RGB_DIRS = ("rgb", "RGB", "color", "Color", "image")
    DEPTH_DIRS = ("depth", "Depth", "gt", "GT", "depth_gt")

    def __init__(self, root: str | Path, rgb_dir: Optional[str] = None, depth_dir: Optional[str] = None,
                 depth_scale: float = 1.0):
        root = Path(root)
        rd = self._pick(root, [rgb_dir] if rgb_dir else self.RGB_DIRS)
        dd = self._pick(root, [depth_dir] if depth_dir else self.DEPTH_DIRS)
        frames, names = [], []
        for depth_path in sorted(p for p in dd.iterdir() if p.suffix.lower() in (".png", ".npy")):
            rgb_path = next((rd / (depth_path.stem + ext) for ext in (".png", ".jpg", ".bmp")
                             if (rd / (depth_path.stem + ext)).is_file()), None)
            if rgb_path is None:
                continue
            rgb = read_rgb(rgb_path)
            if depth_path.suffix.lower() == ".npy":
                depth = np.load(depth_path).astype(np.float32)
            else:
                depth = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
                if depth is None:
                    raise DatasetError(f"cannot decode {depth_path}")
                depth = depth.astype(np.float32)
                if depth.ndim == 3:
                    depth = depth[..., 0]
            depth = depth / np.float32(depth_scale)
            if depth.shape != rgb.shape[:2]:
                raise DatasetError(f"{depth_path} is {depth.shape[::-1]} but {rgb_path} is {rgb.shape[1::-1]} (WxH)")
            depth[~np.isfinite(depth) | (depth <= 0)] = 0.0
            frames.append({"rgb": rgb, "gt_depth": depth, "K": np.eye(3)})
            names.append(depth_path.stem)
        if not frames:
            raise DatasetError(f"no image/depth pairs with equal stems in {rd} and {dd}")
        super().__init__(frames, names)

    @staticmethod
    def _pick(root: Path, candidates: Sequence[str]) -> Path:
        for c in candidates:
            if (root / c).is_dir():
                return root / c
        raise DatasetError(f"none of {list(candidates)} found under {root}")


def lu_dataset(root: str | Path, **kwargs) -> PairedFolder:
    """Lu et al. (CVPR 2014) RGB-D test set in the paired-folder layout (see :class:`PairedFolder`)."""
    return PairedFolder(root, **kwargs)


def middlebury_cdsr_dataset(root: str | Path, **kwargs) -> FrameList:
    """Middlebury CDSR test set: paired folders if present, else stereo scenes."""
    try:
        return PairedFolder(root, **kwargs)
    except DatasetError:
        return MiddleburyStereo(root)


def marigold_frame(root: str | Path) -> FrameList:
    """The Marigold-DC teaser frame (``image.png`` + ``gt.npy`` metres, 0 invalid); K unknown (identity)."""
    root = Path(root)
    rgb = read_rgb(root / "image.png")
    gt_path = root / "gt.npy"
    if not gt_path.is_file():
        raise DatasetError(f"ground truth not found: {gt_path}")
    gt = np.load(gt_path).astype(np.float32)
    gt[~np.isfinite(gt) | (gt <= 0)] = 0.0
    if gt.shape != rgb.shape[:2]:
        raise DatasetError(f"{gt_path} is {gt.shape[::-1]} but image is {rgb.shape[1::-1]} (WxH)")
    return FrameList([{"rgb": rgb, "gt_depth": gt, "K": np.eye(3)}], [root.name])


def nyu_frames(root: str | Path, names: Optional[Sequence[str]] = None, max_depth: Optional[float] = 10.0,
               mat_split: Optional[str] = None) -> FrameList:
    """NYU-Depth-v2 frames through :mod:`training.datasets.nyu` (no sparse points).

    ``root`` is a labeled ``.mat`` (then ``mat_split`` "train" = first 1000 frames, "test" =
    last 449, the CDSR split), a Metric3D folder (``test_annotations.json``) or a BTS sync
    folder. ``names`` keeps only frames whose name ends with one of them (e.g. ``rgb_00100``).
    """
    from training.datasets import nyu

    root = Path(root)
    if root.suffix == ".mat":
        indices = {"train": range(0, 1000), "test": range(1000, 1449), None: None}[mat_split]
        ds = nyu.NyuLabeledMat(root, indices=indices, max_depth=max_depth)
    elif (root / "test_annotations.json").is_file():
        ds = nyu.NyuFileList.from_annotations(root, max_depth=max_depth)
    else:
        ds = nyu.NyuFileList.from_sync_folder(root, max_depth=max_depth)
    frames, out_names = [], []
    for i in range(len(ds)):
        name = ds.sample_name(i)
        if names is not None and not any(name.endswith(n) for n in names):
            continue
        f = ds.load_frame(i)
        gt = np.asarray(f["gt_depth"], np.float32).copy()
        if max_depth is not None:
            gt[gt > max_depth] = 0.0
        frames.append({"rgb": f["rgb"], "gt_depth": gt, "K": f["K"]})
        out_names.append(name)
    if not frames:
        raise DatasetError(f"no NYU frames selected under {root} (names={names})")
    return FrameList(frames, out_names)


def kitti_frames(root: str | Path, cameras: Sequence[int] = (2, 3), max_depth: float = 80.0) -> FrameList:
    """KITTI frames (image + semi-dense GT png) through :mod:`training.datasets.kitti`."""
    from training.datasets import kitti

    ds = kitti.KittiFileList(kitti.torch_kitti_frames(root, cameras), sparse_source="none", gt_source="png")
    frames, names = [], []
    for i in range(len(ds)):
        f = ds.load_frame(i)
        gt = np.asarray(f["gt_depth"], np.float32).copy()
        gt[gt > max_depth] = 0.0
        frames.append({"rgb": f["rgb"], "gt_depth": gt, "K": f["K"]})
        names.append(ds.sample_name(i))
    return FrameList(frames, names)


#: SUN3D frames (per fragment, in order) of the training set; 38-39 are a gap, 40-49 held out.
SUN3D_TRAIN_FRAMES = (0, 38)
SUN3D_HELD_OUT_FRAMES = (40, 50)


def sun3d_sr_frames(root: str | Path, frame_range: Sequence[int], every: int = 1) -> FrameList:
    """SUN3D frames ``frame_range`` = (start, stop) of each fragment (see
    :data:`SUN3D_TRAIN_FRAMES`), through the RGB-D folder loader; depth > 10 m dropped."""
    from training.datasets.sun3d import sun3d_frames

    ds = sun3d_frames(root, frames=slice(int(frame_range[0]), int(frame_range[1])), every=every)
    frames, names = [], []
    for i in range(len(ds)):
        f = ds.load_frame(i)
        gt = np.asarray(f["gt_depth"], np.float32).copy()
        gt[gt > 10.0] = 0.0
        frames.append({"rgb": f["rgb"], "gt_depth": gt, "K": f["K"]})
        names.append(ds.sample_name(i))
    return FrameList(frames, names)


def shared_data_sources(shared: str | Path, nyu_names: Sequence[str] = ("rgb_00000", "rgb_00050"),
                        middlebury_columns: Sequence[float] = (0.0, 0.6), kitti: bool = True,
                        marigold: bool = True, sun3d: Optional[Sequence[int]] = None, sun3d_every: int = 1) -> dict:
    """The demo training sources from ``../shared/data`` (name -> FrameList).

    Held out by default (benchmark frames): NYU ``rgb_00100`` and Middlebury columns 60-100 %;
    ``sun3d`` = (start, stop) frames of each SUN3D fragment to add (None: no SUN3D; the
    shipped weights use :data:`SUN3D_TRAIN_FRAMES`, holding back 40-49).
    """
    shared = Path(shared)
    out = {
        "nyu": nyu_frames(shared / "nyu_depth_v2_metric3d", names=nyu_names),
        "middlebury": MiddleburyStereo(shared / "middlebury2014_motorcycle_skimage", column_range=middlebury_columns),
    }
    if sun3d is not None:
        out["sun3d"] = sun3d_sr_frames(shared / "sun3d_rgbd_3dmatch", sun3d, sun3d_every)
    if kitti:
        out["kitti"] = kitti_frames(shared / "kitti_raw_depth_completion_torch_kitti")
    if marigold:
        out["marigold"] = marigold_frame(shared / "indoor_depth_completion_marigold_dc")
    return out


# ----------------------------------------------------------------------------- samples


def make_sr_sample(rgb: np.ndarray, gt_depth: np.ndarray, scale: int, min_valid_fraction: float = 0.5,
                   depth_lr: Optional[np.ndarray] = None) -> dict:
    """One CDSR sample from an HR frame (H, W multiples of ``scale``): LR ``depth_lr`` when given
    (a degradation of :mod:`depth_diffusion_ros.geometry.degradation`), else bicubic
    downsampling of the GT; holes filled (see module docstring). Returns torch tensors."""
    lr = bicubic_downsample_depth(gt_depth, scale, min_valid_fraction) if depth_lr is None else depth_lr
    if not (lr > 0).any():
        raise DatasetError("the low-resolution depth has no valid pixel")
    filled, mask = fill_depth_holes(lr)
    gt = np.where(np.isfinite(gt_depth) & (gt_depth > 0), gt_depth, 0.0).astype(np.float32)
    return {
        "rgb": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0),
        "depth_lr": torch.from_numpy(filled)[None],
        "valid_mask_lr": torch.from_numpy(mask)[None],
        "gt_depth": torch.from_numpy(gt)[None],
        "gt_mask": torch.from_numpy((gt > 0).astype(np.float32))[None],
    }


class SRPatchDataset(Dataset):
    """Random CDSR training crops from frame sources, one scale per batch.

    Every read is a fresh random crop of ``crop_size`` (HR), or of ``crop_sizes[scale]`` for the
    scales that map lists (e.g. ``{16: 256}``: at x16 a 128 crop is an 8x8 LR input, little
    context). The scale cycles through
    ``scales`` once per ``batch_size`` reads (a per-process read counter, not the index), so
    each batch a DataLoader assembles (``batch_size`` must equal the loader's; a worker always
    fetches whole batches) has one scale and its LR tensors stack, whatever the sampler's order.
    Crops are random on every read:
    a source is drawn with ``weights``, then a position with at least ``min_gt_fraction``
    valid GT (with probability ``edge_bias`` centred on a depth discontinuity, a pixel whose
    relative depth step to a neighbour exceeds ``edge_threshold``, so the few-minute demo
    training sees the pixels that decide the RMSE more often), a horizontal flip (p 0.5) and a
    colour-channel permutation (p 0.25, as DenseDepth's augmentation).

    Args:
        sources: name -> source (``load_frame``), loaded once into memory.
        length: items per epoch.
        crop_sizes: optional {scale: HR crop size} overriding ``crop_size`` at those scales
            (None, the default: ``crop_size`` at every scale). Every scale of a batch is equal,
            so the batch's tensors still stack.
    Raises:
        DatasetError: crop larger than a frame, crop not a multiple of its scale, bad
            ``crop_sizes`` (a scale not in ``scales``, a size < 1), bad scales/weights.
    """

    def __init__(self, sources: dict, crop_size: int = 128, scales: Sequence[int] = (4, 8, 16),
                 batch_size: int = 8, length: int = 8000, weights: Optional[dict] = None,
                 min_gt_fraction: float = 0.3, hflip: bool = True, channel_swap_prob: float = 0.25,
                 edge_bias: float = 0.0, edge_threshold: float = 0.05, degradations: Optional[dict] = None,
                 strength_range: Sequence[float] = (0.5, 1.5), crop_sizes: Optional[dict] = None):
        if not sources:
            raise DatasetError("SRPatchDataset: no sources")
        self.scales = [int(s) for s in scales]
        self.crop_sizes = self._crop_sizes(int(crop_size), self.scales, crop_sizes)
        bad = {s: c for s, c in self.crop_sizes.items() if c % s}
        if bad:
            raise DatasetError(f"crop size must be a multiple of every scale it is used at, got (scale: crop) {bad}")
        largest = max(self.crop_sizes.values())
        if not 0.0 <= edge_bias <= 1.0:
            raise DatasetError(f"edge_bias must be in [0, 1], got {edge_bias}")
        self.frames, self.source_of, self.edges = [], [], []
        names = list(sources)
        for name in names:
            src = sources[name]
            for i in range(len(src)):
                f = src.load_frame(i)
                h, w = f["gt_depth"].shape
                if h < largest or w < largest:
                    raise DatasetError(f"{name}[{i}] ({w}x{h}) is smaller than the crop size {largest}")
                gt = np.asarray(f["gt_depth"], np.float32)
                self.frames.append((np.ascontiguousarray(f["rgb"]), gt))
                self.source_of.append(name)
                self.edges.append(depth_edges(gt, edge_threshold))
        w = {n: float((weights or {}).get(n, 1.0)) for n in names}
        if any(v < 0 for v in w.values()) or sum(w.values()) <= 0:
            raise DatasetError(f"weights must be >= 0 with a positive sum, got {w}")
        # Per-frame probability: a source's weight is shared by its frames.
        counts = {n: self.source_of.count(n) for n in names}
        p = np.array([w[n] / counts[n] for n in self.source_of], np.float64)
        self.frame_p = p / p.sum()
        self.crop_size, self.batch_size, self.length = int(crop_size), int(batch_size), int(length)
        self.min_gt_fraction, self.hflip, self.channel_swap_prob = min_gt_fraction, hflip, channel_swap_prob
        self.edge_bias = float(edge_bias)
        self.degradations = self._degradation_p(degradations)
        self.strength_range = (float(strength_range[0]), float(strength_range[1]))
        self._reads = 0

    @staticmethod
    def _crop_sizes(crop_size: int, scales: Sequence[int], crop_sizes: Optional[dict]) -> dict:
        """{scale: HR crop size} from ``crop_size`` and the optional per-scale overrides."""
        out = {s: crop_size for s in scales}
        if crop_sizes is None:
            return out
        if not isinstance(crop_sizes, dict):
            raise DatasetError(f"crop_sizes must map scales to crop sizes, got {crop_sizes!r}")
        for key, value in crop_sizes.items():
            try:
                s, c = int(key), int(value)
            except (TypeError, ValueError) as exc:
                raise DatasetError(f"crop_sizes must map integer scales to integer sizes, got {key!r}: {value!r}") from exc
            if s not in out:
                raise DatasetError(f"crop_sizes names scale {s}, which is not one of the scales {list(scales)}")
            if c < 1:
                raise DatasetError(f"crop_sizes[{s}] must be >= 1, got {c}")
            out[s] = c
        return out

    @staticmethod
    def _degradation_p(degradations: Optional[dict]) -> list:
        """[(kind, probability)] from {kind: weight} (None: bicubic only, the CDSR protocol)."""
        from depth_diffusion_ros.geometry.degradation import DEGRADATIONS

        weights = {"bicubic": 1.0} if not degradations else {k: float(v) for k, v in degradations.items()}
        unknown = sorted(set(weights) - set(DEGRADATIONS))
        if unknown or any(v < 0 for v in weights.values()) or sum(weights.values()) <= 0:
            raise DatasetError(f"degradations must map {list(DEGRADATIONS)} to weights >= 0 with a positive sum, "
                               f"got {degradations}")
        total = sum(weights.values())
        return [(k, v / total) for k, v in weights.items()]

    def degrade(self, rgb: np.ndarray, gt: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        """LR depth of one crop by a degradation drawn with the configured weights."""
        from depth_diffusion_ros.geometry.degradation import degrade_depth

        kinds = [k for k, _ in self.degradations]
        kind = kinds[int(rng.choice(len(kinds), p=[p for _, p in self.degradations]))]
        strength = float(rng.uniform(*self.strength_range))
        return degrade_depth(gt, rgb, scale, kind, rng, strength)

    def __len__(self) -> int:
        return self.length

    def next_scale(self) -> int:
        """Scale of the next read (advances the read counter)."""
        scale = self.scales[(self._reads // self.batch_size) % len(self.scales)]
        self._reads += 1
        return scale

    def __getitem__(self, index: int) -> dict:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        rng = np.random.default_rng(seed)
        scale = self.next_scale()
        c = self.crop_sizes[scale]
        for attempt in range(20):
            k = int(rng.choice(len(self.frames), p=self.frame_p))
            rgb, gt = self.frames[k]
            h, w = gt.shape
            edges = self.edges[k]
            if self.edge_bias > 0 and len(edges) and rng.random() < self.edge_bias:
                ey, ex = edges[int(rng.integers(0, len(edges)))]
                y0 = int(np.clip(ey - c // 2 + rng.integers(-c // 4, c // 4 + 1), 0, h - c))
                x0 = int(np.clip(ex - c // 2 + rng.integers(-c // 4, c // 4 + 1), 0, w - c))
            else:
                y0, x0 = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            g = gt[y0:y0 + c, x0:x0 + c]
            if (g > 0).mean() >= self.min_gt_fraction or attempt == 19:
                lr = bicubic_downsample_depth(g, scale)
                if (lr > 0).any():
                    break
        im = rgb[y0:y0 + c, x0:x0 + c]
        if self.hflip and rng.random() < 0.5:
            im, g = im[:, ::-1], g[:, ::-1]
        if self.channel_swap_prob > 0 and rng.random() < self.channel_swap_prob:
            im = im[..., rng.permutation(3)]
        im, g = np.ascontiguousarray(im), np.ascontiguousarray(g)
        lr = self.degrade(im, g, scale, rng)
        if not (lr > 0).any():
            lr = None  # (a crop whose degradation left nothing) the bicubic LR instead
        sample = make_sr_sample(im, g, scale, depth_lr=lr)
        sample["scale"] = torch.tensor(scale)
        return sample


def depth_edges(depth: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """(N, 2) row/col of depth discontinuities: valid pixels whose depth differs from the right
    or lower valid neighbour by more than ``threshold`` (relative)."""
    from depth_diffusion_ros.geometry.degradation import depth_discontinuities

    return np.argwhere(depth_discontinuities(depth, threshold, both_sides=False))


def build_sr_patch_dataset(root: str | Path, crop_size: int = 128, scales: Sequence[int] = (4, 8, 16),
                           batch_size: int = 8, length: int = 8000, weights: Optional[dict] = None,
                           nyu_names: Sequence[str] = ("rgb_00000", "rgb_00050"),
                           middlebury_columns: Sequence[float] = (0.0, 0.6), kitti: bool = True,
                           marigold: bool = True, min_gt_fraction: float = 0.3,
                           edge_bias: float = 0.0, sun3d: Optional[Sequence[int]] = None, sun3d_every: int = 1,
                           degradations: Optional[dict] = None,
                           strength_range: Sequence[float] = (0.5, 1.5),
                           crop_sizes: Optional[dict] = None) -> SRPatchDataset:
    """Training-config entry point (``type: training.datasets.sr_datasets:build_sr_patch_dataset``):
    :class:`SRPatchDataset` over :func:`shared_data_sources` of ``root`` (the shared data folder),
    LR inputs by ``degradations`` ({kind: weight} of :data:`~depth_diffusion_ros.geometry.degradation.DEGRADATIONS`);
    ``crop_sizes`` = optional {scale: crop size} overrides of ``crop_size`` (see :class:`SRPatchDataset`)."""
    sources = shared_data_sources(root, nyu_names, middlebury_columns, kitti, marigold, sun3d, sun3d_every)
    return SRPatchDataset(sources, crop_size, scales, batch_size, length, weights, min_gt_fraction,
                          edge_bias=edge_bias, degradations=degradations, strength_range=strength_range,
                          crop_sizes=crop_sizes)


def build_cdsr_patch_dataset(root: str | Path, dataset: str = "nyu", crop_size: int = 256,
                             scales: Sequence[int] = (8,), batch_size: int = 16, length: int = 100000,
                             mat_split: Optional[str] = "train", edge_bias: float = 0.0) -> SRPatchDataset:
    """Training-config entry point for the standard CDSR training sets
    (``type: training.datasets.sr_datasets:build_cdsr_patch_dataset``).

    ``dataset``: "nyu" (``root`` = ``nyu_depth_v2_labeled.mat``, ``mat_split`` "train" = the
    first 1000 frames), "middlebury" (stereo scenes or paired folders) or "lu" (paired folders).
    """
    if dataset == "nyu":
        sources = {"nyu": nyu_frames(root, mat_split=mat_split)}
    elif dataset == "middlebury":
        sources = {"middlebury": middlebury_cdsr_dataset(root)}
    elif dataset == "lu":
        sources = {"lu": lu_dataset(root)}
    else:
        raise DatasetError(f"dataset must be nyu, middlebury or lu, got {dataset!r}")
    return SRPatchDataset(sources, crop_size, scales, batch_size, length, edge_bias=edge_bias)


class SREvalDataset(Dataset):
    """Whole frames for CDSR evaluation at one scale: HR cropped to a multiple of
    ``scale * multiple_of`` (top-left anchored), LR by bicubic downsampling of the GT."""

    def __init__(self, source, scale: int, multiple_of: int = 4):
        self.source, self.scale, self.multiple_of = source, int(scale), int(multiple_of)

    def __len__(self) -> int:
        return len(self.source)

    def sample_name(self, index: int) -> str:
        return self.source.sample_name(index)

    def load_pair(self, index: int) -> tuple:
        """(rgb (H,W,3) uint8, gt (H,W) m, depth_lr (h,w) m) as numpy, cropped."""
        f = self.source.load_frame(index)
        m = self.scale * self.multiple_of
        h, w = f["gt_depth"].shape
        H, W = h - h % m, w - w % m
        if H == 0 or W == 0:
            raise DatasetError(f"{self.sample_name(index)} ({w}x{h}) is smaller than scale x multiple_of = {m}")
        rgb = np.ascontiguousarray(f["rgb"][:H, :W])
        gt = np.ascontiguousarray(np.asarray(f["gt_depth"], np.float32)[:H, :W])
        return rgb, gt, bicubic_downsample_depth(gt, self.scale)

    def __getitem__(self, index: int) -> dict:
        rgb, gt, _ = self.load_pair(index)
        return make_sr_sample(rgb, gt, self.scale)
