"""Evaluation reports: per-frame depth metrics, skipped frames per reason, mean; JSON on disk.

Written by the evaluation node (live, flushed after every frame so a crash loses nothing already
scored) and completed by ``replay`` (latency, frames that never produced output). The numbers
come from :mod:`depth_diffusion_ros.evaluation.metrics` (the one metrics implementation) and are
stored in KITTI depth-completion units (Uhrig et al., 3DV 2017): ``rmse_mm``, ``mae_mm``,
``irmse_1_km``, ``imae_1_km``, plus ``abs_rel``, ``sq_rel``, ``rmse_log``, ``log10``,
``delta1..3`` and ``n_valid`` (pixels scored).

Layout of ``report.json``::

    {"format": "depth_diffusion_ros/evaluation_report/1",
     "meta": {...},                      # backend, bag, ground-truth source, depth range ...
     "n_frames": 2,                      # frames scored
     "mean": {"rmse_mm": ..., ..., "n_valid": ..., "latency_ms": ...},
     "skipped": {"reason": count},
     "frames": [{"stamp_ns": ..., "frame_id": "...", "rmse_mm": ..., ..., "latency_ms": ...}],
     "errors": ["..."]}
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from depth_diffusion_ros.evaluation.metrics import mean_metrics, to_kitti_units

REPORT_FORMAT = "depth_diffusion_ros/evaluation_report/1"

#: Per-frame fields besides the metrics that the mean includes (when every frame has them).
MEAN_EXTRA_KEYS = ("latency_ms",)

#: Columns of the metric tables printed by replay and the demo: (key, header, format).
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("rmse_mm", "RMSE mm", "{:.1f}"),
    ("mae_mm", "MAE mm", "{:.1f}"),
    ("irmse_1_km", "iRMSE 1/km", "{:.2f}"),
    ("imae_1_km", "iMAE 1/km", "{:.2f}"),
    ("abs_rel", "AbsRel", "{:.4f}"),
    ("delta1", "d1", "{:.4f}"),
    ("delta2", "d2", "{:.4f}"),
    ("delta3", "d3", "{:.4f}"),
    ("latency_ms", "latency ms", "{:.1f}"),
)


def _clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, numpy scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


#: permissions of report.json (owner read/write, everyone read)
REPORT_FILE_MODE = 0o644


def write_json_atomic(path: Union[str, Path], data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON via a temporary file and ``os.replace``.

    A reader never sees a half-written file. The file gets mode 0644 (``mkstemp`` creates 0600),
    like every other output. Raises OSError naming the path when it cannot be written (missing
    or read-only folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, REPORT_FILE_MODE)
        with os.fdopen(fd, "w") as f:
            json.dump(_clean(data), f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


class EvaluationReport:
    """Accumulates per-frame metrics and skip counts; writes ``report.json`` incrementally.

    Args:
        path: JSON file to write, or None to keep the report in memory only.
        meta: free-form description stored under ``"meta"`` (backend, bag, settings).
        flush_every: write the file after every N scored or skipped frames (>= 1); 1 means
            nothing scored is lost if the process dies.

    Thread-safe: the evaluation node's callbacks and a diagnostics timer may call it at once.
    """

    def __init__(self, path: Optional[Union[str, Path]] = None, meta: Optional[Mapping[str, Any]] = None,
                 flush_every: int = 1) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self.path = Path(path) if path else None
        self.meta: dict[str, Any] = dict(meta or {})
        self.flush_every = int(flush_every)
        self.frames: list[dict[str, Any]] = []
        self.skipped: dict[str, int] = {}
        self.errors: list[str] = []
        self._raw: list[dict[str, float]] = []
        self._since_flush = 0
        self._lock = threading.RLock()

    # -- adding ---------------------------------------------------------------------------
    def add_frame(self, stamp_ns: int, metrics: Mapping[str, float], frame_id: str = "",
                  **extra: Any) -> dict[str, Any]:
        """Record one scored frame.

        Args:
            stamp_ns: header stamp of the prediction, integer nanoseconds.
            metrics: output of :func:`~depth_diffusion_ros.evaluation.metrics.depth_metrics`
                (metres, 1/m).
            frame_id: header frame id.
            extra: more fields stored with the frame (e.g. ``latency_ms``).

        Returns:
            the stored entry (KITTI units, see the module docstring).
        """
        entry: dict[str, Any] = {"stamp_ns": int(stamp_ns), "frame_id": frame_id}
        entry.update(to_kitti_units(metrics))
        entry.update(extra)
        with self._lock:
            self.frames.append(entry)
            self._raw.append({k: float(v) for k, v in metrics.items()})
            self._changed()
        return entry

    def add_entry(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Record a frame entry already in report form (e.g. an evaluation node's ``frame`` event).

        ``entry`` needs ``stamp_ns`` and the KITTI-unit metrics (rmse_mm, mae_mm, irmse_1_km,
        imae_1_km, ...); other fields are kept. Raises KeyError when a metric is missing.
        """
        raw = _from_kitti_units(entry)
        stored = dict(entry)
        with self._lock:
            self.frames.append(stored)
            self._raw.append(raw)
            self._changed()
        return stored

    def add_skip(self, reason: str, count: int = 1) -> None:
        """Count ``count`` frames skipped for ``reason`` (e.g. ``gt_size_mismatch``)."""
        if count <= 0:
            return
        with self._lock:
            self.skipped[reason] = self.skipped.get(reason, 0) + int(count)
            self._changed()

    def add_error(self, message: str) -> None:
        """Record a run-level error (e.g. a truncated bag); written immediately."""
        with self._lock:
            self.errors.append(str(message))
            self.flush()

    def set_frame_field(self, stamp_ns: int, key: str, value: Any) -> bool:
        """Set ``key`` on the scored frame with ``stamp_ns``; False if there is none."""
        with self._lock:
            for entry in self.frames:
                if entry["stamp_ns"] == int(stamp_ns):
                    entry[key] = value
                    return True
        return False

    # -- summaries ------------------------------------------------------------------------
    def mean(self) -> dict[str, float]:
        """Mean over scored frames in KITTI units (``n_valid`` summed); {} when none.

        ``latency_ms`` (and the other :data:`MEAN_EXTRA_KEYS`) is averaged too when every frame has it.
        """
        with self._lock:
            if not self._raw:
                return {}
            out = to_kitti_units(mean_metrics(self._raw))
            for key in MEAN_EXTRA_KEYS:
                values = [e.get(key) for e in self.frames]
                if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                    out[key] = float(sum(values) / len(values))
            return out

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (layout in the module docstring)."""
        with self._lock:
            return {
                "format": REPORT_FORMAT,
                "meta": dict(self.meta),
                "n_frames": len(self.frames),
                "mean": self.mean(),
                "skipped": dict(sorted(self.skipped.items())),
                "frames": [dict(e) for e in self.frames],
                "errors": list(self.errors),
            }

    # -- files ----------------------------------------------------------------------------
    def _changed(self) -> None:
        self._since_flush += 1
        if self._since_flush >= self.flush_every:
            self.flush()

    def flush(self) -> Optional[Path]:
        """Write the file now (when a path is set). OSError propagates."""
        with self._lock:
            self._since_flush = 0
            if self.path is None:
                return None
            return write_json_atomic(self.path, self.to_dict())

    def write(self, path: Optional[Union[str, Path]] = None) -> Path:
        """Write to ``path`` (default: the report's own path). Raises ValueError without any path."""
        target = Path(path) if path else self.path
        if target is None:
            raise ValueError("no report path given")
        with self._lock:
            return write_json_atomic(target, self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Optional[Union[str, Path]] = None) -> "EvaluationReport":
        """Rebuild a report from :meth:`to_dict` output (e.g. ``load_report``) to extend it.

        Raises ValueError for a dict that is not an evaluation report.
        """
        if data.get("format") != REPORT_FORMAT:
            raise ValueError(f"not an evaluation report (format {data.get('format')!r})")
        rep = cls(path, data.get("meta"))
        for e in data.get("frames", []):
            rep.frames.append(dict(e))
            rep._raw.append(_from_kitti_units(e))
        rep.skipped = {k: int(v) for k, v in data.get("skipped", {}).items()}
        rep.errors = list(data.get("errors", []))
        return rep


def _from_kitti_units(entry: Mapping[str, Any]) -> dict[str, float]:
    out = {"rmse": entry["rmse_mm"] / 1000.0, "mae": entry["mae_mm"] / 1000.0,
           "irmse": entry["irmse_1_km"] / 1000.0, "imae": entry["imae_1_km"] / 1000.0}
    for k in ("abs_rel", "sq_rel", "rmse_log", "log10", "delta1", "delta2", "delta3", "n_valid"):
        if k in entry:
            out[k] = entry[k]
    return out


def load_report(path: Union[str, Path]) -> dict[str, Any]:
    """Read a ``report.json``. Raises FileNotFoundError / ValueError naming the file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise ValueError(f"{p} is not an evaluation report")
    return data


def format_table(rows: Sequence[Mapping[str, Any]], label_columns: Iterable[tuple[str, str]],
                 columns: Sequence[tuple[str, str, str]] = TABLE_COLUMNS) -> str:
    """Plain-text table: label columns (key, header) then metric columns (key, header, format).

    Missing or None values print as ``-``.
    """
    label_columns = list(label_columns)
    headers = [h for _, h in label_columns] + [h for _, h, _ in columns]
    body = []
    for row in rows:
        cells = [str(row.get(k, "")) for k, _ in label_columns]
        for key, _, fmt in columns:
            v = row.get(key)
            cells.append("-" if v is None else (fmt.format(v) if isinstance(v, (int, float)) else str(v)))
        body.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    n_label = len(label_columns)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < n_label else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in body)
    return "\n".join(out)
