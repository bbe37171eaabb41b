"""Training augmentation applied consistently to image, sparse input, GT and intrinsics.

DiffusionDepth (Duan et al., arXiv 2303.05021, Sec. 4.1 "Implementation details") follows the
BTS/NeWCRFs augmentation: random crop, random horizontal flip, small random rotation (about 1 deg
KITTI, 2.5 deg NYU), random scale and colour jitter (brightness, gamma, per-channel colour).
Every transform is a callable ``(frame, rng) -> frame`` on the numpy frame dict of
:mod:`training.datasets.common` (``rgb`` uint8 (H,W,3), ``sparse_depth``/``gt_depth`` (H,W) m or
None, ``K`` (3,3)); ``rng`` is a ``numpy.random.Generator``.

Resampling rules:

* ``rgb``: bilinear (area when shrinking).
* ``sparse_depth``: *scatter*: every valid pixel is moved to its new (rounded) position and, where
  two land on one pixel, the nearest wins. No value is interpolated or duplicated, and empty
  pixels stay 0 (nearest/zero-preserving resampling of LiDAR input).
* ``gt_depth``: scatter as well when it is sparse (KITTI, density < ``dense_gt_threshold``);
  nearest-neighbour warp when it is dense (NYU).

Pixel convention (as ``geometry.intrinsics``): pixel centres at integers, so scaling by ``s``
maps ``u -> (u + 0.5) s - 0.5`` and ``cx -> (cx + 0.5) s - 0.5``; cropping at ``(x0, y0)`` gives
``cx - x0, cy - y0``; a horizontal flip maps ``u -> W - 1 - u`` and ``cx -> W - 1 - cx``; a
rotation by ``a`` about the image centre moves the principal point by the same rotation (exact
for a roll of the camera about its optical axis when fx = fy; depth values are unchanged).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import cv2
import numpy as np

Frame = dict  # the numpy frame dict of training.datasets.common

DEPTH_KEYS = ("sparse_depth", "gt_depth")


def _copy(frame: Frame) -> Frame:
    out = dict(frame)
    out["K"] = np.array(frame["K"], dtype=np.float64, copy=True)
    return out


def scatter_depth(depth: np.ndarray, A: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:  # noqa: N803
    """Move every valid pixel of a sparse depth map through the affine map ``A``.

    Args:
        depth: (H, W) float32 metres, 0 = empty.
        A: (2, 3) affine map from source pixel (u, v, 1) to destination pixel coordinates.
        out_size: (height, width) of the output.

    Returns:
        (h, w) float32; each source point lands on the pixel nearest to its mapped position
        (points outside are dropped; the smallest depth wins collisions). Values are unchanged.
    """
    h, w = out_size
    vs, us = np.nonzero(depth > 0)
    out = np.full((h, w), np.inf, dtype=np.float32)
    if len(vs):
        d = depth[vs, us].astype(np.float32)
        u2 = np.floor(A[0, 0] * us + A[0, 1] * vs + A[0, 2] + 0.5).astype(np.int64)
        v2 = np.floor(A[1, 0] * us + A[1, 1] * vs + A[1, 2] + 0.5).astype(np.int64)
        ok = (u2 >= 0) & (u2 < w) & (v2 >= 0) & (v2 < h)
        np.minimum.at(out, (v2[ok], u2[ok]), d[ok])
    out[~np.isfinite(out)] = 0.0
    return out


class _Warp:
    """Common code: apply an affine pixel map to every image of the frame."""

    def __init__(self, dense_gt_threshold: float = 0.5):
        self.dense_gt_threshold = dense_gt_threshold

    def _warp(self, frame: Frame, A: np.ndarray, out_size: tuple[int, int], shrink: bool) -> Frame:  # noqa: N803
        out = _copy(frame)
        h, w = out_size
        if _is_pure_scale(A):  # cv2.resize uses the same half-pixel map; area filter when shrinking
            interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            out["rgb"] = cv2.resize(frame["rgb"], (w, h), interpolation=interp)
        else:
            out["rgb"] = cv2.warpAffine(frame["rgb"], A, (w, h), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_REFLECT_101)
        for key in DEPTH_KEYS:
            d = frame.get(key)
            if d is None:
                continue
            dense = key == "gt_depth" and np.count_nonzero(d > 0) > self.dense_gt_threshold * d.size
            if dense:
                out[key] = cv2.warpAffine(d.astype(np.float32), A, (w, h), flags=cv2.INTER_NEAREST,
                                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            else:
                out[key] = scatter_depth(d, A, (h, w))
        return out


def _is_pure_scale(A: np.ndarray) -> bool:  # noqa: N803
    """True if A is exactly the half-pixel resize map (then cv2.resize is used for rgb)."""
    sx, sy = A[0, 0], A[1, 1]
    return (A[0, 1] == 0 and A[1, 0] == 0 and math.isclose(A[0, 2], 0.5 * sx - 0.5, abs_tol=1e-9)
            and math.isclose(A[1, 2], 0.5 * sy - 0.5, abs_tol=1e-9))


class Resize(_Warp):
    """Resize to ``size`` = (height, width); K scaled (half-pixel convention)."""

    def __init__(self, size: Sequence[int], dense_gt_threshold: float = 0.5):
        super().__init__(dense_gt_threshold)
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, frame: Frame, rng: Optional[np.random.Generator] = None) -> Frame:
        h0, w0 = frame["rgb"].shape[:2]
        return _scale(self, frame, self.size[1] / w0, self.size[0] / h0, self.size)


def _scale(warp: _Warp, frame: Frame, sx: float, sy: float, size: tuple[int, int]) -> Frame:
    A = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
    out = warp._warp(frame, A, size, shrink=sx < 1 or sy < 1)
    K = out["K"]
    K[0, 0] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return out


class CanonicalFocal(_Warp):
    """Resize the frame so its focal length ``fx`` becomes ``focal`` pixels (same factor both
    axes; depth values unchanged): the canonical camera of Metric3D (Yin et al., ICCV 2023,
    Sec. 3.2, "transforming the input image"). A monocular model trained on frames brought to
    one focal length sees every camera at that focal length when
    :class:`~depth_diffusion_ros.inference.pipelines.EstimationPipeline` resizes its input the
    same way, so its depth stays metric across cameras.

    Raises ValueError for a focal that is not > 0.
    """

    def __init__(self, focal: float, dense_gt_threshold: float = 0.5):
        super().__init__(dense_gt_threshold)
        if not float(focal) > 0:
            raise ValueError(f"canonical focal must be > 0 pixels, got {focal}")
        self.focal = float(focal)

    def __call__(self, frame: Frame, rng: Optional[np.random.Generator] = None) -> Frame:
        s = self.focal / float(frame["K"][0, 0])
        h0, w0 = frame["rgb"].shape[:2]
        h, w = max(1, int(round(h0 * s))), max(1, int(round(w0 * s)))
        return _scale(self, frame, w / w0, h / h0, (h, w))


class RowPriorRatio:
    """Ground truth as a ratio to the row-median prior (:class:`~depth_diffusion_ros.baselines.row_median.RowMedianDepth`)
    of the frame's camera: ``unit * gt / prior(row)``, for a monocular model that predicts its
    depth relative to the ground-plane prior (the estimation pipeline multiplies ``prior / unit``
    back: the model's ``depth_prior``). ``unit`` keeps the targets in the model's depth range (10:
    about 3-30, as metres on KITTI). Put it last: the prior follows the frame's final K (crops
    move the principal point).

    Args:
        reference: the prior's JSON file (``python -m training.monocular --save-reference``).
        unit: the target of a pixel exactly at its row's median.
    """

    def __init__(self, reference: str, unit: float = 10.0):
        from depth_diffusion_ros.baselines.row_median import RowMedianDepth
        from training.datasets import resolve_path

        if not unit > 0:
            raise ValueError(f"row_prior_ratio unit must be > 0, got {unit}")
        ref = RowMedianDepth.load(resolve_path(reference))
        self.prior = RowMedianDepth(ref.tan_min, ref.bin_width, ref.depth / np.float32(unit))

    def __call__(self, frame: Frame, rng: Optional[np.random.Generator] = None) -> Frame:
        from depth_diffusion_ros.geometry.intrinsics import Intrinsics

        out = _copy(frame)
        h, w = frame["rgb"].shape[:2]
        prior = self.prior.predict(Intrinsics.from_matrix(out["K"], w, h))
        for key in DEPTH_KEYS:
            d = frame.get(key)
            if d is not None:
                out[key] = np.where(d > 0, d / prior, 0.0).astype(np.float32)
        return out


class RandomScale(_Warp):
    """Scale the frame by ``s ~ U(scale_range)`` (same factor both axes); K scaled accordingly,
    depth values unchanged (metric depth stays metric; the camera model changes).

    Args:
        scale_range: (low, high), e.g. (1.0, 1.5).
        p: probability of applying.
    """

    def __init__(self, scale_range: Sequence[float] = (1.0, 1.5), p: float = 1.0, dense_gt_threshold: float = 0.5):
        super().__init__(dense_gt_threshold)
        lo, hi = float(scale_range[0]), float(scale_range[1])
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        self.scale_range, self.p = (lo, hi), float(p)

    def __call__(self, frame: Frame, rng: np.random.Generator) -> Frame:
        if rng.random() >= self.p:
            return frame
        s = rng.uniform(*self.scale_range)
        h0, w0 = frame["rgb"].shape[:2]
        h, w = max(1, int(round(h0 * s))), max(1, int(round(w0 * s)))
        return _scale(self, frame, w / w0, h / h0, (h, w))


class RandomRotation(_Warp):
    """Rotate by ``a ~ U(-max_degrees, max_degrees)`` about the image centre (same size).

    The principal point is rotated with the image; pixels rotated in from outside get rgb
    reflected border and depth 0.
    """

    def __init__(self, max_degrees: float = 1.0, p: float = 1.0, dense_gt_threshold: float = 0.5):
        super().__init__(dense_gt_threshold)
        if max_degrees < 0:
            raise ValueError(f"max_degrees must be >= 0, got {max_degrees}")
        self.max_degrees, self.p = float(max_degrees), float(p)

    def __call__(self, frame: Frame, rng: np.random.Generator) -> Frame:
        if rng.random() >= self.p or self.max_degrees == 0:
            return frame
        angle = rng.uniform(-self.max_degrees, self.max_degrees)
        return rotate(frame, angle, self.dense_gt_threshold)


def rotate(frame: Frame, angle_degrees: float, dense_gt_threshold: float = 0.5) -> Frame:
    """Deterministic rotation by ``angle_degrees`` (counter-clockwise as displayed, OpenCV
    convention) about the image centre; see :class:`RandomRotation`."""
    h, w = frame["rgb"].shape[:2]
    centre = ((w - 1) / 2.0, (h - 1) / 2.0)
    A = cv2.getRotationMatrix2D(centre, angle_degrees, 1.0)
    out = _Warp(dense_gt_threshold)._warp(frame, A, (h, w), shrink=False)
    cx, cy = out["K"][0, 2], out["K"][1, 2]
    out["K"][0, 2] = A[0, 0] * cx + A[0, 1] * cy + A[0, 2]
    out["K"][1, 2] = A[1, 0] * cx + A[1, 1] * cy + A[1, 2]
    return out


def crop(frame: Frame, x0: int, y0: int, width: int, height: int) -> Frame:
    """Crop the window [x0, x0+width) x [y0, y0+height); K: cx -= x0, cy -= y0.

    Raises:
        ValueError: the window is not inside the image.
    """
    h, w = frame["rgb"].shape[:2]
    if x0 < 0 or y0 < 0 or x0 + width > w or y0 + height > h or width <= 0 or height <= 0:
        raise ValueError(f"crop window x0={x0} y0={y0} {width}x{height} does not fit the {w}x{h} image")
    out = _copy(frame)
    out["rgb"] = np.ascontiguousarray(frame["rgb"][y0:y0 + height, x0:x0 + width])
    for key in DEPTH_KEYS:
        if frame.get(key) is not None:
            out[key] = np.ascontiguousarray(frame[key][y0:y0 + height, x0:x0 + width])
    out["K"][0, 2] -= x0
    out["K"][1, 2] -= y0
    return out


class RandomCrop:
    """Random crop of ``size`` = (height, width).

    Args:
        vertical: "random" (uniform), "bottom" (KITTI: the LiDAR covers the lower part; as the
            val_selection_cropped 1216x352 crop) or "center".
        vertical_range: for "random", the top row is drawn from [low, high] x (H - height), e.g.
            (0.5, 1.0) keeps crops in the lower, LiDAR-covered part of KITTI frames.
        horizontal: "random" or "center".

    Raises:
        ValueError (at call): the image is smaller than ``size``.
    """

    def __init__(self, size: Sequence[int], vertical: str = "random", horizontal: str = "random",
                 vertical_range: Sequence[float] = (0.0, 1.0)):
        self.size = (int(size[0]), int(size[1]))
        if vertical not in ("random", "bottom", "center") or horizontal not in ("random", "center"):
            raise ValueError(f"bad crop placement vertical={vertical!r} horizontal={horizontal!r}")
        lo, hi = float(vertical_range[0]), float(vertical_range[1])
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"vertical_range must satisfy 0 <= low <= high <= 1, got {vertical_range}")
        self.vertical, self.horizontal, self.vertical_range = vertical, horizontal, (lo, hi)

    def __call__(self, frame: Frame, rng: Optional[np.random.Generator] = None) -> Frame:
        h, w = frame["rgb"].shape[:2]
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(f"crop {cw}x{ch} is larger than the {w}x{h} image")
        if self.vertical == "random":
            lo, hi = self.vertical_range
            y0 = int(rng.integers(int(round(lo * (h - ch))), int(round(hi * (h - ch))) + 1))
        elif self.vertical == "bottom":
            y0 = h - ch
        else:
            y0 = (h - ch) // 2
        x0 = int(rng.integers(0, w - cw + 1)) if self.horizontal == "random" else (w - cw) // 2
        return crop(frame, x0, y0, cw, ch)


class BottomCenterCrop(RandomCrop):
    """Deterministic KITTI evaluation crop (bottom rows, centred columns), e.g. 352x1216."""

    def __init__(self, size: Sequence[int]):
        super().__init__(size, vertical="bottom", horizontal="center")


def hflip(frame: Frame) -> Frame:
    """Mirror left-right: u -> W-1-u for every image; cx -> W-1-cx."""
    w = frame["rgb"].shape[1]
    out = _copy(frame)
    out["rgb"] = np.ascontiguousarray(frame["rgb"][:, ::-1])
    for key in DEPTH_KEYS:
        if frame.get(key) is not None:
            out[key] = np.ascontiguousarray(frame[key][:, ::-1])
    out["K"][0, 2] = (w - 1) - out["K"][0, 2]
    return out


class RandomHorizontalFlip:
    """Horizontal flip with probability ``p`` (see :func:`hflip`)."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, frame: Frame, rng: np.random.Generator) -> Frame:
        return hflip(frame) if rng.random() < self.p else frame


class ColorJitter:
    """BTS-style colour augmentation on rgb only (Lee et al., 2019, as used by DiffusionDepth):
    gamma ``g ~ U(gamma)``, brightness ``b ~ U(brightness)``, per-channel colour ``c ~ U(color)``:
    ``rgb' = clip((rgb ** g) * b * c, 0, 1)`` on [0, 1] values, applied with probability ``p``.
    KITTI uses brightness (0.9, 1.1), NYU (0.75, 1.25).
    """

    def __init__(self, gamma: Sequence[float] = (0.9, 1.1), brightness: Sequence[float] = (0.9, 1.1),
                 color: Sequence[float] = (0.9, 1.1), p: float = 0.5):
        self.gamma, self.brightness, self.color, self.p = tuple(gamma), tuple(brightness), tuple(color), float(p)

    def __call__(self, frame: Frame, rng: np.random.Generator) -> Frame:
        if rng.random() >= self.p:
            return frame
        x = frame["rgb"].astype(np.float32) / 255.0
        x = x ** rng.uniform(*self.gamma)
        x = x * rng.uniform(*self.brightness) * rng.uniform(*self.color, size=3).astype(np.float32)
        out = dict(frame)
        out["rgb"] = (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return out


class SparseDropout:
    """Drop a random fraction of the sparse input points; the dropped points supervise.

    Self-supervised depth completion from LiDAR alone: ``keep ~ U(keep_range)`` of the valid
    ``sparse_depth`` pixels stay as input; the GT becomes the dropped points (plus the existing
    ``gt_depth`` where ``keep_gt``), never the kept ones (``exclude_kept_from_gt``), so the model
    is scored on depth it did not see.

    Args:
        keep_range: (low, high) kept fraction, e.g. (0.3, 0.9).
        keep_gt: keep an existing GT map (e.g. KITTI DC semi-dense) besides the dropped points.
        exclude_kept_from_gt: zero GT at the kept input pixels.
        gt_weight: None, or the loss weight of the kept GT map's pixels that are not dropped input
            points (e.g. accumulated neighbour returns, :mod:`training.datasets.accumulation`): the
            frame then carries ``gt_weight`` (H, W), 1 at the dropped points, this elsewhere.
    """

    def __init__(self, keep_range: Sequence[float] = (0.3, 0.9), keep_gt: bool = True,
                 exclude_kept_from_gt: bool = True, p: float = 1.0, gt_weight: Optional[float] = None):
        lo, hi = float(keep_range[0]), float(keep_range[1])
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"keep_range must satisfy 0 < low <= high <= 1, got {keep_range}")
        if gt_weight is not None and not 0 <= float(gt_weight) <= 1:
            raise ValueError(f"gt_weight must be in [0, 1], got {gt_weight}")
        self.keep_range, self.keep_gt, self.exclude_kept, self.p = (lo, hi), keep_gt, exclude_kept_from_gt, float(p)
        self.gt_weight = None if gt_weight is None else float(gt_weight)

    def __call__(self, frame: Frame, rng: np.random.Generator) -> Frame:
        sparse = frame.get("sparse_depth")
        if sparse is None or rng.random() >= self.p:
            return frame
        valid = sparse > 0
        keep = valid & (rng.random(sparse.shape) < rng.uniform(*self.keep_range))
        dropped = valid & ~keep
        gt = frame.get("gt_depth")
        if gt is None or not self.keep_gt:
            new_gt = np.zeros_like(sparse, dtype=np.float32)
        else:
            new_gt = gt.astype(np.float32, copy=True)
        fill = dropped & (new_gt <= 0)
        new_gt[fill] = sparse[fill]
        if self.exclude_kept:
            new_gt[keep] = 0.0
        out = dict(frame)
        out["sparse_depth"] = np.where(keep, sparse, 0).astype(np.float32)
        out["gt_depth"] = new_gt
        if self.gt_weight is not None:
            out["gt_weight"] = np.where(dropped, 1.0, self.gt_weight).astype(np.float32)
        return out


class Compose:
    """Apply transforms in order: ``Compose([RandomScale(...), RandomCrop(...), ...])``."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, frame: Frame, rng: np.random.Generator) -> Frame:
        for t in self.transforms:
            frame = t(frame, rng)
        return frame

    def __repr__(self) -> str:
        return f"Compose({[type(t).__name__ for t in self.transforms]})"


class ClassicalFills:
    """Add the classical fills of the frame's (final) sparse input as ``priors`` (K, H, W) metres —
    the input a DiffusionDepth with ``external_priors`` takes (:mod:`depth_diffusion_ros.baselines.fills`).
    Put it last, after every transform that changes ``sparse_depth``.

    Args:
        names: fill names of :data:`depth_diffusion_ros.baselines.fills.PRIOR_FILLS`.
    Raises:
        ValueError: an unknown name.
    """

    def __init__(self, names: Sequence[str]):
        from depth_diffusion_ros.baselines.fills import check_fill_names

        problems = check_fill_names(names)
        if problems:
            raise ValueError("; ".join(problems))
        self.names = list(names)

    def __call__(self, frame: Frame, rng: np.random.Generator) -> Frame:
        from depth_diffusion_ros.baselines.fills import prior_fills

        sparse = frame.get("sparse_depth")
        if sparse is None:
            return frame
        return dict(frame, priors=prior_fills(self.names, sparse))


TRANSFORMS = {
    "resize": Resize,
    "canonical_focal": CanonicalFocal,
    "row_prior_ratio": RowPriorRatio,
    "random_scale": RandomScale,
    "random_rotation": RandomRotation,
    "random_crop": RandomCrop,
    "bottom_center_crop": BottomCenterCrop,
    "random_hflip": RandomHorizontalFlip,
    "color_jitter": ColorJitter,
    "sparse_dropout": SparseDropout,
    "classical_fills": ClassicalFills,
}


def build_transforms(spec: Optional[Sequence[dict]]) -> Optional[Compose]:
    """Build a Compose from a config list like ``[{type: random_crop, size: [352, 706]}, ...]``.

    Raises:
        ValueError: unknown transform type (lists the known ones) or bad arguments.
    """
    if not spec:
        return None
    out = []
    for i, item in enumerate(spec):
        item = dict(item)
        name = item.pop("type", None)
        if name not in TRANSFORMS:
            raise ValueError(f"transform #{i}: unknown type {name!r}; known: {sorted(TRANSFORMS)}")
        try:
            out.append(TRANSFORMS[name](**item))
        except TypeError as exc:
            raise ValueError(f"transform #{i} ({name}): {exc}") from exc
    return Compose(out)
