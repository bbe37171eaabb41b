"""The temporal filter of depth completion: the previous output, warped into the current camera,
blended with the current single-frame output where they agree (ROS-free).

Per camera frame id the filter keeps the last filtered depth, a per-pixel weight (how many
consecutive frames agreed there, capped) and the frame's stamp, size and intrinsics. For a new
frame it

1. checks the reset rules (:meth:`TemporalFilter.reset_reason`): the first frame of a frame id,
   a backward time jump, a gap longer than ``max_gap`` seconds, another image size or other
   intrinsics. A reset starts the state from the current frame, whose single-frame output is
   returned unchanged (with the fallback uncertainty below);
2. forward-warps the previous filtered depth (and its weights) into the current camera by the
   ego-motion ``T_prev_to_curr`` (:func:`~depth_diffusion_ros.geometry.warp.forward_warp_indices`,
   z-buffered, one-pixel cracks filled; None = identity, a static camera);
3. blends where the warped depth agrees with the current single-frame depth (relative difference
   at most ``agreement``) and, where the current sparse depth (LiDAR) has a return, with that
   return too (at most ``lidar_agreement``; a disagreeing return vetoes the pixels within
   ``lidar_radius`` of it — a moving object). The blend is a running weighted mean
   ``d = d_prev + (d_cur - d_prev) / w`` with ``w = min(w_prev + 1, max_weight)``, so a static
   scene converges to the mean of the last ``max_weight`` frames (an exponential average once
   the cap is reached) and stops flickering;
4. elsewhere (disocclusions and cracks of the warp, moving objects, large disagreement) keeps the
   single-frame depth, restarts the weight at 1 and raises ``uncertainty`` there.

``uncertainty`` (metres) of the result: at blended pixels ``max(u / sqrt(w), |d_cur - d|)`` with
``u`` the single-frame uncertainty (0 when the backend has none); at single-frame pixels
``max(u, agreement * d_cur, |d_prev - d_cur|, |d_prev - lidar|)`` (the disagreement terms where
there is a warped previous depth / a LiDAR return). So a pixel that fell back is never reported
as more certain than the agreement band.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Optional

import cv2
import numpy as np

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.geometry.warp import forward_warp_indices, warp_values
from depth_diffusion_ros.inference.errors import FrameError
from depth_diffusion_ros.inference.pipelines.common import DepthOutput


@dataclass
class _CameraState:
    stamp: float
    shape: tuple[int, int]
    intrinsics: Optional[Intrinsics]
    depth: np.ndarray  # (H, W) float32 m, the filtered depth of the last frame
    weight: np.ndarray  # (H, W) float32, frames averaged at each pixel (1 .. max_weight)


@dataclass
class TemporalResult:
    """One frame through the temporal filter.

    output: the filtered DepthOutput (depth, uncertainty always set, intrinsics, rgb, sparse).
    reset: why the state was (re)started at this frame (a sentence for the log), or None when
        the previous frame's state was used.
    blended: (H, W) bool, the pixels where the previous depth entered the result.
    """

    output: DepthOutput
    reset: Optional[str]
    blended: np.ndarray


class TemporalFilter:
    """Temporal filter of depth completion output, with state per camera frame id.

    Args:
        max_gap: seconds; a longer gap between two frames of one frame id resets its state.
        agreement: relative difference |d_prev - d_cur| / d_cur up to which the warped previous
            depth is blended with the current single-frame depth.
        lidar_agreement: relative difference to a current sparse-depth return above which the
            warped previous depth is not used near that return.
        lidar_radius: pixels around a disagreeing return that fall back (a dilation), >= 0.
        max_weight: cap of the running weight (>= 1; 1 = no filtering).
        max_cameras: frame ids kept; the least recently seen one is forgotten beyond this.
    Raises:
        ValueError: a parameter out of range (named).
    """

    def __init__(self, max_gap: float = 0.5, agreement: float = 0.05, lidar_agreement: float = 0.05,
                 lidar_radius: int = 2, max_weight: float = 8.0, max_cameras: int = 8) -> None:
        checks = {"max_gap": max_gap > 0, "agreement": agreement > 0, "lidar_agreement": lidar_agreement > 0,
                  "lidar_radius": lidar_radius >= 0, "max_weight": max_weight >= 1, "max_cameras": max_cameras >= 1}
        for name, ok in checks.items():
            value = locals()[name]
            if not ok or not math.isfinite(value):
                raise ValueError(f"temporal filter {name} out of range: {value}")
        self.max_gap, self.agreement, self.lidar_agreement = float(max_gap), float(agreement), float(lidar_agreement)
        self.lidar_radius, self.max_weight, self.max_cameras = int(lidar_radius), float(max_weight), int(max_cameras)
        self._states: OrderedDict[str, _CameraState] = OrderedDict()
        self._last_warp: Optional[tuple] = None  # (key, (depth, weight)) of the last warp (see previous)

    def reset(self, frame_id: Optional[str] = None) -> None:
        """Forget the state of ``frame_id`` (every frame id when None), e.g. between bags."""
        self._last_warp = None
        if frame_id is None:
            self._states.clear()
        else:
            self._states.pop(frame_id, None)

    def reset_reason(self, frame_id: str, stamp: float, shape: tuple[int, int],
                     intrinsics: Optional[Intrinsics]) -> Optional[str]:
        """Why a frame (``stamp`` seconds, depth ``shape`` (H, W), ``intrinsics``) of ``frame_id``
        cannot use the stored state, or None when it can. Does not change the state."""
        state = self._states.get(frame_id)
        if state is None:
            return f"first frame of camera frame {frame_id!r}"
        dt = stamp - state.stamp
        if dt < 0:
            return f"time jumped back {-dt:.3f} s (stamp {stamp:.3f} after {state.stamp:.3f})"
        if dt > self.max_gap:
            return f"gap of {dt:.3f} s > temporal_max_gap {self.max_gap:g} s"
        if shape != state.shape:
            return f"image size changed from {state.shape[1]}x{state.shape[0]} to {shape[1]}x{shape[0]}"
        if intrinsics != state.intrinsics:
            return f"intrinsics changed from {state.intrinsics} to {intrinsics}"
        return None

    def __call__(self, output: DepthOutput, frame_id: str, stamp: float,
                 T_prev_to_curr: Optional[np.ndarray] = None) -> TemporalResult:  # noqa: N803
        """Filter one frame's single-frame ``output`` (its ``sparse_depth``, when set, is the
        current LiDAR the warped depth is checked against) of camera ``frame_id`` at ``stamp``
        (seconds).

        T_prev_to_curr: (4, 4) rigid motion taking points from the previous frame's camera to
            this frame's (metres), or None = identity (static camera).
        Raises:
            FrameError: a non-finite stamp, depth not (H, W), or a non-identity motion without
                intrinsics (``bad_frame``).
            ValueError: ``T_prev_to_curr`` not a finite rigid 4x4.
        """
        if not math.isfinite(stamp):
            raise FrameError(f"temporal filter: stamp {stamp} is not finite", "bad_frame")
        cur = np.asarray(output.depth, np.float32)
        if cur.ndim != 2:
            raise FrameError(f"temporal filter: depth must be (H, W), got shape {cur.shape}", "bad_frame")
        if T_prev_to_curr is not None and output.intrinsics is None:
            raise FrameError("temporal filter: warping by T_prev_to_curr needs the intrinsics", "bad_frame")
        base = np.zeros_like(cur) if output.uncertainty is None else np.asarray(output.uncertainty, np.float32)
        reason = self.reset_reason(frame_id, stamp, cur.shape, output.intrinsics)
        if reason is not None:
            unc = np.maximum(base, np.float32(self.agreement) * cur)
            self._store(frame_id, stamp, cur, output.intrinsics, cur.copy(), np.ones_like(cur))
            return TemporalResult(replace(output, uncertainty=unc), reason, np.zeros(cur.shape, bool))

        state = self._states[frame_id]
        prev, w_prev = self._warped(frame_id, stamp, state, output.intrinsics, T_prev_to_curr)
        have_prev = (prev > 0) & (cur > 0)
        diff = np.abs(prev - cur)
        with np.errstate(divide="ignore", invalid="ignore"):
            agree = have_prev & (diff <= self.agreement * cur)
        veto, lidar_diff = self._lidar_veto(prev, output.sparse_depth, have_prev)
        agree &= ~veto

        weight = np.where(agree, np.minimum(w_prev + 1.0, self.max_weight), 1.0).astype(np.float32)
        depth = np.where(agree, prev + (cur - prev) / weight, cur).astype(np.float32)
        fallback_unc = np.maximum(np.maximum(base, np.float32(self.agreement) * cur),
                                  np.maximum(np.where(have_prev, diff, 0.0), lidar_diff))
        blended_unc = np.maximum(base / np.sqrt(weight), np.abs(cur - depth))
        unc = np.where(agree, blended_unc, fallback_unc).astype(np.float32)
        self._store(frame_id, stamp, cur, output.intrinsics, depth, weight)
        return TemporalResult(replace(output, depth=depth, uncertainty=unc), None, agree)

    def previous(self, frame_id: str, stamp: float, shape: tuple[int, int], intrinsics: Optional[Intrinsics],
                 T_prev_to_curr: Optional[np.ndarray] = None,  # noqa: N803
                 sparse_depth: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """The previous filtered depth of ``frame_id`` warped into the coming frame (``stamp`` s, depth
        ``shape`` (H, W) at ``intrinsics``) by ``T_prev_to_curr`` (as in :meth:`__call__`; None =
        identity): (H, W) float32 metres, 0 where no previous pixel lands (disocclusions, outside
        the previous view). None when that frame will reset the state (:meth:`reset_reason`).
        sparse_depth: (H, W) m, the coming frame's sparse input (0 = none), or None: where given,
        the warped depth is also 0 within ``lidar_radius`` of a return it misses by more than
        ``lidar_agreement`` (moving objects fall back, as in the blend).

        The temporal prior of depth completion (issue 17: the previous output enters the model as
        a condition, :class:`~depth_diffusion_ros.inference.pipelines.CompletionPipeline`'s
        ``prior_depth``). Does not change the state; the warp is kept for the :meth:`__call__` of
        the same frame (same frame id, stamp and motion), so it runs once.
        Raises FrameError: a non-identity motion without intrinsics (``bad_frame``).
        """
        if not math.isfinite(stamp) or self.reset_reason(frame_id, stamp, tuple(shape), intrinsics) is not None:
            return None
        if T_prev_to_curr is not None and intrinsics is None:
            raise FrameError("temporal filter: warping by T_prev_to_curr needs the intrinsics", "bad_frame")
        prev, _ = self._warped(frame_id, stamp, self._states[frame_id], intrinsics, T_prev_to_curr)
        if sparse_depth is None:
            return prev.copy()
        veto, _ = self._lidar_veto(prev, sparse_depth, prev > 0)
        return np.where(veto, np.float32(0.0), prev).astype(np.float32)

    def _lidar_veto(self, prev: np.ndarray, sparse: Optional[np.ndarray],
                    have_prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(veto (H, W) bool: within ``lidar_radius`` of a current return that ``prev`` misses by
        more than ``lidar_agreement`` (relative) — a moving object; |prev - return| (H, W) m at the
        returns, 0 elsewhere). No sparse depth (or another size): nothing vetoed."""
        lidar_diff = np.zeros(prev.shape, np.float32)
        if sparse is None or np.shape(sparse) != prev.shape:
            return np.zeros(prev.shape, bool), lidar_diff
        s = np.asarray(sparse, np.float32)
        hit = have_prev & (s > 0)
        lidar_diff[hit] = np.abs(prev[hit] - s[hit])
        veto = (hit & (lidar_diff > self.lidar_agreement * s)).astype(np.uint8)
        if self.lidar_radius and veto.any():
            k = 2 * self.lidar_radius + 1
            veto = cv2.dilate(veto, np.ones((k, k), np.uint8))
        return veto > 0, lidar_diff

    def _warped(self, frame_id: str, stamp: float, state: _CameraState, intrinsics: Optional[Intrinsics],
                T: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
        """(depth, weight) of ``state`` warped by T (None: as stored), the last warp reused when
        it was for the same frame id, stamp and motion (a new state forgets it)."""
        if T is None:
            return state.depth, state.weight
        key = (frame_id, float(stamp), intrinsics, np.asarray(T, np.float64).tobytes())
        if self._last_warp is not None and self._last_warp[0] == key:
            return self._last_warp[1]
        index, prev = forward_warp_indices(state.depth, T, state.intrinsics, intrinsics, fill_cracks=True)
        warped = (prev, warp_values(state.weight, index))
        self._last_warp = (key, warped)
        return warped

    def _store(self, frame_id: str, stamp: float, cur: np.ndarray, intrinsics: Optional[Intrinsics],
               depth: np.ndarray, weight: np.ndarray) -> None:
        self._last_warp = None
        self._states[frame_id] = _CameraState(float(stamp), cur.shape, intrinsics, depth, weight)
        self._states.move_to_end(frame_id)
        while len(self._states) > self.max_cameras:
            self._states.popitem(last=False)
