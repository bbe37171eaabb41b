"""How depth cameras degrade depth: low-resolution inputs for super-resolution training and scoring.

The standard CDSR protocol makes the low-resolution (LR) input by bicubic downsampling of the
ground truth. A real RGB-D camera (Kinect, RealSense, ZED, ToF) gives something else: coarse
pixels that average or pick returns, holes where no return came back (at depth discontinuities,
on dark or shiny surfaces, in random blobs), depth-dependent noise and quantised values. This
module makes those, numpy + OpenCV only, every random function seeded by a
``numpy.random.Generator``. Depth is float32 metres, 0 = missing (hole pixels are 0; the
super-resolution pipeline fills them).

Functions (each one step; :func:`degrade_depth` chains them by a named preset):

* :func:`block_average_depth` - LR pixel = mean of the valid HR pixels of its block (sensor
  binning); :func:`~depth_diffusion_ros.geometry.resample.bicubic_downsample_depth` is the other
  downsampling.
* :func:`quantise_depth` - to a fixed step (16-bit millimetre PNG: 1 mm) or in disparity (a
  structured-light / stereo camera resolves disparity in sub-pixel steps, so the depth step
  grows with z^2: ``dz = z^2 * step / (f * b)``).
* :func:`add_depth_noise` - Gaussian noise with ``sigma(z) = sigma0 + k * (z - z0)^2``: the
  Kinect axial noise model of Nguyen, Izadi, Lovell, "Modeling Kinect Sensor Noise for Improved
  3D Reconstruction and Tracking", 3DIMPVT 2012 (sigma0 = 1.2 mm, k = 1.9 mm/m^2, z0 = 0.4 m);
  ``k = 0`` is plain Gaussian augmentation.
* :func:`edge_holes`, :func:`blob_holes`, :func:`dark_surface_holes` - missing returns at depth
  discontinuities (mixed pixels / shadowing), random blobs, and on dark (absorbing) or saturated
  (specular) colour.

Presets (:data:`DEGRADATIONS`, the rows of the benchmark's tables):

* ``bicubic``: antialiased bicubic downsampling (the CDSR protocol).
* ``block``: block average (binning).
* ``noisy``: bicubic + Gaussian noise with twice the Kinect model's sigma (``2 * sigma(z)``:
  4.8 mm at 1 m, 53 mm at 4 m), quantised to 1 mm.
* ``sensor``: block average, then everything a depth camera does at its own resolution: Kinect
  noise, disparity quantisation, holes at edges, blobs and on dark / shiny surfaces.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from depth_diffusion_ros.geometry.resample import bicubic_downsample_depth

#: The named LR degradations, in table order.
DEGRADATIONS = ("bicubic", "block", "noisy", "sensor")

#: Nguyen et al. (3DIMPVT 2012) Kinect v1 axial noise: sigma(z) = 0.0012 + 0.0019 (z - 0.4)^2 m.
KINECT_SIGMA0_M, KINECT_K_PER_M, KINECT_Z0_M = 0.0012, 0.0019, 0.4


def _valid(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


def block_average_depth(depth: np.ndarray, scale: int) -> np.ndarray:
    """Low-resolution depth: the mean of the valid (> 0, finite) pixels of each ``scale`` x ``scale``
    block; 0 where a block has none.

    depth: (H, W) metres with H, W multiples of ``scale``. Returns (H/scale, W/scale) float32.
    The LR pixel (i, j) covers HR pixels [i*s, (i+1)*s), so its intrinsics are
    ``Intrinsics.scaled(W/s, H/s)`` (pixel-centre convention). Raises ValueError otherwise.
    """
    depth = np.asarray(depth)
    h, w = depth.shape
    if scale < 1 or h % scale or w % scale:
        raise ValueError(f"depth {w}x{h} is not a multiple of the scale {scale}")
    valid = _valid(depth)
    blocks = np.where(valid, depth, 0.0).astype(np.float64).reshape(h // scale, scale, w // scale, scale)
    count = valid.reshape(h // scale, scale, w // scale, scale).sum(axis=(1, 3))
    total = blocks.sum(axis=(1, 3))
    return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)


def quantise_depth(depth: np.ndarray, step_m: float = 0.001, disparity_step: Optional[float] = None) -> np.ndarray:
    """Quantise depth; 0 stays 0.

    step_m: fixed step in metres (0.001 = a 16-bit millimetre PNG); used when
        ``disparity_step`` is None.
    disparity_step: quantise ``1/z`` in steps of this many 1/m instead (``= step_px / (f * b)``:
        e.g. 1/8 px over f*b = 580 px * 0.075 m gives 0.00287 1/m, the Kinect v1; the depth step
        is then ~ z^2 * disparity_step: 2.9 mm at 1 m, 46 mm at 4 m).
    """
    d = np.asarray(depth, np.float32)
    valid = _valid(d)
    out = np.zeros_like(d)
    if disparity_step is not None:
        if disparity_step <= 0:
            raise ValueError(f"disparity_step must be > 0, got {disparity_step}")
        inv = np.round((1.0 / d[valid]) / disparity_step) * disparity_step
        out[valid] = np.where(inv > 0, 1.0 / np.maximum(inv, 1e-12), 0.0)
    else:
        if step_m <= 0:
            raise ValueError(f"step_m must be > 0, got {step_m}")
        out[valid] = np.round(d[valid] / step_m) * step_m
    return out.astype(np.float32)


def depth_noise_sigma(depth: np.ndarray, sigma0_m: float = KINECT_SIGMA0_M, k_per_m: float = KINECT_K_PER_M,
                      z0_m: float = KINECT_Z0_M) -> np.ndarray:
    """Axial noise std (m) per pixel: ``sigma0 + k * (z - z0)^2`` (Nguyen et al. 2012 for the defaults)."""
    z = np.asarray(depth, np.float32)
    return (sigma0_m + k_per_m * (z - z0_m) ** 2).astype(np.float32)


def add_depth_noise(depth: np.ndarray, rng: np.random.Generator, sigma0_m: float = KINECT_SIGMA0_M,
                    k_per_m: float = KINECT_K_PER_M, z0_m: float = KINECT_Z0_M, scale: float = 1.0) -> np.ndarray:
    """Depth-dependent Gaussian noise: ``z + scale * sigma(z) * N(0, 1)`` on valid pixels
    (:func:`depth_noise_sigma`); holes stay 0 and no pixel becomes <= 0 (a noisy value is kept
    at ``>= 0.5 z``)."""
    d = np.asarray(depth, np.float32)
    valid = _valid(d)
    sigma = scale * depth_noise_sigma(d, sigma0_m, k_per_m, z0_m)
    noisy = d + sigma * rng.standard_normal(d.shape).astype(np.float32)
    return np.where(valid, np.maximum(noisy, 0.5 * d), 0.0).astype(np.float32)


def depth_discontinuities(depth: np.ndarray, threshold: float = 0.05, both_sides: bool = True) -> np.ndarray:
    """(H, W) bool: valid pixels whose depth differs by more than ``threshold`` (relative) from a
    valid 4-neighbour, on both sides of the step (``both_sides=False``: only the pixel left of /
    above the step)."""
    d = np.asarray(depth, np.float32)
    v = _valid(d)
    edge = np.zeros(d.shape, bool)
    for axis in (0, 1):
        a = d[:-1] if axis == 0 else d[:, :-1]
        b = d[1:] if axis == 0 else d[:, 1:]
        both = (v[:-1] & v[1:]) if axis == 0 else (v[:, :-1] & v[:, 1:])
        jump = both & (np.abs(a - b) > threshold * np.maximum(np.minimum(a, b), 1e-6))
        if axis == 0:
            edge[:-1] |= jump
            if both_sides:
                edge[1:] |= jump
        else:
            edge[:, :-1] |= jump
            if both_sides:
                edge[:, 1:] |= jump
    return edge


def edge_holes(depth: np.ndarray, rng: np.random.Generator, probability: float = 0.6, width_px: int = 1,
               threshold: float = 0.05) -> np.ndarray:
    """Missing returns at depth discontinuities: each pixel within ``width_px`` of a discontinuity
    (:func:`depth_discontinuities`) becomes a hole with ``probability``. Returns a new map."""
    d = np.asarray(depth, np.float32).copy()
    edge = depth_discontinuities(d, threshold)
    if width_px > 1:
        kernel = np.ones((2 * width_px - 1, 2 * width_px - 1), np.uint8)
        edge = cv2.dilate(edge.astype(np.uint8), kernel) > 0
    d[edge & (rng.random(d.shape) < probability)] = 0.0
    return d


def blob_holes(depth: np.ndarray, rng: np.random.Generator, count: int = 3, max_radius_frac: float = 0.06) -> np.ndarray:
    """``count`` random elliptical holes (radii up to ``max_radius_frac`` of the shorter side):
    no-return patches (glass, out-of-range, sunlight). Returns a new map."""
    d = np.asarray(depth, np.float32).copy()
    h, w = d.shape
    mask = np.zeros((h, w), np.uint8)
    rmax = max(1.0, max_radius_frac * min(h, w))
    for _ in range(int(count)):
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        ax = (max(1, int(rng.uniform(0.3, 1.0) * rmax)), max(1, int(rng.uniform(0.3, 1.0) * rmax)))
        cv2.ellipse(mask, (cx, cy), ax, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    d[mask > 0] = 0.0
    return d


def dark_surface_holes(depth: np.ndarray, rgb: np.ndarray, rng: np.random.Generator, dark_level: float = 0.12,
                       bright_level: float = 0.97, probability: float = 0.7) -> np.ndarray:
    """Missing returns on dark (absorbing: grey value < ``dark_level``) and saturated (specular:
    > ``bright_level``) colour, each such pixel dropped with ``probability``.

    rgb: (H, W, 3) uint8 at the size of ``depth`` (resize it first). Returns a new map.
    """
    d = np.asarray(depth, np.float32).copy()
    if rgb.shape[:2] != d.shape:
        raise ValueError(f"rgb {rgb.shape[1::-1]} and depth {d.shape[::-1]} differ (WxH); resize the colour first")
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    bad = (grey < dark_level) | (grey > bright_level)
    d[bad & (rng.random(d.shape) < probability)] = 0.0
    return d


def degrade_depth(depth_hr: np.ndarray, rgb_hr: np.ndarray, scale: int, kind: str,
                  rng: Optional[np.random.Generator] = None, strength: float = 1.0) -> np.ndarray:
    """LR depth (H/scale, W/scale) float32 m, 0 = hole, from the HR ground truth by preset ``kind``
    (:data:`DEGRADATIONS`; see the module docstring). ``strength`` scales the noise and the hole
    probabilities (training draws it at random; the benchmark uses 1). Seeded by ``rng``
    (default ``default_rng(0)``).

    Raises ValueError for an unknown kind or sizes not divisible by ``scale``.
    """
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(DEGRADATIONS)}")
    rng = np.random.default_rng(0) if rng is None else rng
    if kind == "bicubic":
        return bicubic_downsample_depth(depth_hr, scale)
    if kind == "block":
        return block_average_depth(depth_hr, scale)
    if kind == "noisy":
        lr = bicubic_downsample_depth(depth_hr, scale)
        return quantise_depth(add_depth_noise(lr, rng, scale=2.0 * strength), 0.001)
    lr = block_average_depth(depth_hr, scale)
    h, w = lr.shape
    rgb_lr = cv2.resize(np.ascontiguousarray(rgb_hr), (w, h), interpolation=cv2.INTER_AREA)
    lr = add_depth_noise(lr, rng, scale=strength)
    lr = quantise_depth(lr, disparity_step=0.00287)
    lr = edge_holes(lr, rng, probability=min(1.0, 0.6 * strength))
    lr = dark_surface_holes(lr, rgb_lr, rng, probability=min(1.0, 0.7 * strength))
    lr = blob_holes(lr, rng, count=int(rng.integers(0, 4)))
    if not _valid(lr).any():  # never hand back an empty map: keep the noisy block average
        lr = block_average_depth(depth_hr, scale)
    return lr
