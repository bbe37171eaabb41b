"""The row-median reference of monocular depth: a ground-plane prior every monocular model must beat.

For a camera looking along a road, depth depends mostly on the image row: a flat ground at
height ``h`` below the camera is at depth ``f h / (v - cy)`` in row ``v``. The reference learns
that dependence from the training frames without any image content: the median ground-truth
depth of every row. Rows are indexed by their viewing angle ``(v - cy) / fy`` (bins of
``bin_width`` radians-tangent), so the prior carries over to a camera with another focal length,
principal point or image size. Rows without training ground truth (above the LiDAR's field of
view) take the nearest row's median that has one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Tuple, Union

import numpy as np

from depth_diffusion_ros.geometry.intrinsics import Intrinsics


@dataclass
class RowMedianDepth:
    """Median depth per viewing-angle bin of the image rows.

    Attributes:
        tan_min: tangent of the viewing angle (``(v - cy) / fy``, positive downwards) of bin 0's left edge.
        bin_width: bin width in the same units.
        depth: (n_bins,) float32 metres, the median ground truth of each bin (every bin filled).
    """

    tan_min: float
    bin_width: float
    depth: np.ndarray

    @classmethod
    def fit(cls, frames: Iterable[Tuple[np.ndarray, Intrinsics]], bin_width: float = 0.004,
            tan_range: Tuple[float, float] = (-1.0, 1.0)) -> "RowMedianDepth":
        """Fit on ``(gt_depth (H, W) float32 metres (0 = none), intrinsics)`` pairs.

        Raises ValueError when no frame has a valid ground-truth pixel or ``bin_width`` <= 0.
        """
        if not bin_width > 0:
            raise ValueError(f"bin_width must be > 0, got {bin_width}")
        lo, hi = float(tan_range[0]), float(tan_range[1])
        n = int(np.ceil((hi - lo) / bin_width))
        samples: list[list[np.ndarray]] = [[] for _ in range(n)]
        for gt, intr in frames:
            gt = np.asarray(gt, np.float32)
            if gt.shape != (intr.height, intr.width):
                raise ValueError(f"ground truth {gt.shape} does not match intrinsics {intr.width}x{intr.height}")
            bins = cls._bins(intr, lo, bin_width, n)
            for v in range(gt.shape[0]):
                row = gt[v]
                row = row[np.isfinite(row) & (row > 0)]
                if row.size:
                    samples[bins[v]].append(row)
        filled = np.array([bool(s) for s in samples])
        if not filled.any():
            raise ValueError("row-median reference: no valid ground-truth pixel in the training frames")
        med = np.array([float(np.median(np.concatenate(s))) if s else np.nan for s in samples], np.float32)
        idx = np.flatnonzero(filled)
        nearest = idx[np.abs(np.arange(n)[:, None] - idx[None, :]).argmin(axis=1)]
        return cls(lo, float(bin_width), med[nearest].astype(np.float32))

    @staticmethod
    def _bins(intr: Intrinsics, tan_min: float, bin_width: float, n: int) -> np.ndarray:
        tan = (np.arange(intr.height, dtype=np.float64) - intr.cy) / intr.fy
        return np.clip(np.floor((tan - tan_min) / bin_width).astype(np.int64), 0, n - 1)

    def to_json(self) -> str:
        """The reference as JSON text (``tan_min``, ``bin_width``, ``depth_m``)."""
        return json.dumps({"format": "depth_diffusion_ros.RowMedianDepth/1", "tan_min": self.tan_min,
                           "bin_width": self.bin_width, "depth_m": [round(float(d), 4) for d in self.depth]})

    @classmethod
    def from_json(cls, text: str, where: str = "row-median reference") -> "RowMedianDepth":
        """Parse :meth:`to_json`'s text; ValueError naming ``where`` when it is not one."""
        try:
            data = json.loads(text)
            ref = cls(float(data["tan_min"]), float(data["bin_width"]), np.asarray(data["depth_m"], np.float32))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{where}: not a row-median reference ({exc})") from exc
        if ref.depth.ndim != 1 or ref.depth.size == 0 or not ref.bin_width > 0 or not np.all(ref.depth > 0):
            raise ValueError(f"{where}: not a row-median reference (needs bin_width > 0 and positive depths)")
        return ref

    def save(self, path: Union[str, Path]) -> None:
        """Write :meth:`to_json` to ``path``."""
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: Union[str, Path]) -> "RowMedianDepth":
        """Read :meth:`save`'s file; ValueError naming the file when it is not one."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ValueError(f"{path}: not a row-median reference ({exc})") from exc
        return cls.from_json(text, str(path))

    def predict(self, intrinsics: Intrinsics) -> np.ndarray:
        """(H, W) float32 metres for a camera of ``intrinsics``: each row's bin median."""
        rows = self.depth[self._bins(intrinsics, self.tan_min, self.bin_width, len(self.depth))]
        return np.ascontiguousarray(np.broadcast_to(rows[:, None], (intrinsics.height, intrinsics.width)),
                                    np.float32)
