"""Frame and drop counters, throttled problem logging and the ``diagnostics`` publisher.

:meth:`NodeHealth.guard` wraps a frame callback so that bad input
(:class:`~depth_diffusion_ros.ros.InputError` or the pipelines'
:class:`~depth_diffusion_ros.inference.errors.FrameError`: WARN, counter = its ``reason``),
:class:`~depth_diffusion_ros.inference.errors.BackendError` (ERROR, ``backend_error``) and any
other exception (ERROR, ``internal_error``, traceback logged) drop the frame and never stop the
node. Each problem is logged with a per-reason throttle (the first occurrence at once). The
wrapper returns True when the callback ran to its end and False when it raised, so the
synchroniser advances only on processed sets.
"""
from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from depth_diffusion_ros.inference.errors import BackendError, FrameError
from depth_diffusion_ros.ros import InputError

#: diagnostic levels as ints (DiagnosticStatus stores them as one byte: ``bytes([level])``)
OK = DiagnosticStatus.OK[0]
WARN = DiagnosticStatus.WARN[0]
ERROR = DiagnosticStatus.ERROR[0]

@dataclass
class _Problem:
    level: int = OK
    message: str = ""
    suppressed: int = 0
    last_log: float = -math.inf


class NodeHealth:
    """Frame and drop counters, throttled problem logging and the ``diagnostics`` publisher.

    Args:
        node: the node (its logger and clock are used).
        purpose: what the node does, e.g. ``"depth completion"``; the diagnostic status is
            named ``"<node name>: <purpose>"``.
        params: the node's parameter dict (``diagnostics_period``, ``log_throttle``).
        extra: constant KeyValues added to every status (e.g. ``{"backend": "ip_basic"}``).

    Counters (all in the status values): ``frames_in`` (synchronised sets or messages handed to
    the node's processing), ``frames_out`` (outputs published), ``drops_total`` and
    ``drops_<reason>`` (messages dropped by the synchroniser, or frames dropped in processing,
    per reason), ``last_latency_ms`` / ``mean_latency_ms`` (processing time per frame), and the
    event counters of :meth:`count` (``gaps_total`` and ``gaps_<input>``: messages that never
    reached the node, from the publishers' sequence numbers; ``sync_resets``: synchroniser
    resets after a backward time jump), present once they are non-zero.
    """

    def __init__(self, node: Node, purpose: str, params: Mapping[str, Any],
                 extra: Optional[Mapping[str, str]] = None) -> None:
        self.node = node
        self.params = params
        self.name = f"{node.get_name()}: {purpose}"
        self.extra = dict(extra or {})
        self.frames_in = 0
        self.frames_out = 0
        self.drops: dict[str, int] = {}
        self.counters: dict[str, int] = {}
        self.latency_last = math.nan
        self._latency_sum = 0.0
        self._problems: dict[str, _Problem] = {}
        self._level = OK
        self._message = ""
        self.publisher = node.create_publisher(DiagnosticArray, "diagnostics", 10)
        self.timer = node.create_timer(float(params.get("diagnostics_period", 1.0)), self.publish)

    @property
    def drops_total(self) -> int:
        """Sum of all drop counters."""
        return sum(self.drops.values())

    def frame_in(self) -> None:
        """Count one frame handed to processing."""
        self.frames_in += 1

    def frame_done(self, latency_s: float) -> None:
        """Count one published output and its processing latency (seconds)."""
        self.frames_out += 1
        self.latency_last = latency_s
        self._latency_sum += latency_s

    def drop(self, reason: str, message: str, level: int = WARN, count: int = 1, log: bool = True) -> None:
        """Count ``count`` dropped frames/messages for ``reason`` and report ``message``.

        The log line ``"<reason>: <message>"`` is written at once for the first occurrence of a
        reason and then at most every ``log_throttle`` seconds (with the number suppressed);
        ``log=False`` only counts (the caller logged the event itself). The next diagnostics
        status carries the worst level and the latest message.
        """
        self.drops[reason] = self.drops.get(reason, 0) + count
        text = f"{reason}: {message}"
        if level >= self._level:
            self._level, self._message = level, text
        if log:
            self._log_throttled(reason, f"dropped {count}: {text}", f"drops_{reason}={self.drops[reason]}",
                                level, count)

    def count(self, key: str, message: str, count: int = 1, level: int = WARN, log: bool = True) -> None:
        """Count ``count`` events that are not drops of this node (e.g. ``gaps_image``: messages
        lost before they reached it) and log ``message`` with the per-key throttle (``log=False``:
        the caller logged it)."""
        self.counters[key] = self.counters.get(key, 0) + count
        if key.startswith("gaps_"):
            self.counters["gaps_total"] = self.counters.get("gaps_total", 0) + count
        if level >= self._level:
            self._level, self._message = level, f"{key}: {message}"
        if log:
            self._log_throttled(key, f"{key} +{count}: {message}", f"{key}={self.counters[key]}", level,
                                count)

    def _log_throttled(self, key: str, text: str, tally: str, level: int, count: int) -> None:
        prob = self._problems.setdefault(key, _Problem())
        now = time.monotonic()
        if now - prob.last_log >= float(self.params.get("log_throttle", 5.0)):
            suffix = f" ({prob.suppressed} more since the last report)" if prob.suppressed else ""
            line = f"{text}{suffix} [{tally}]"
            # one call site per severity: rclpy refuses a severity change at one call site
            if level >= ERROR:
                self.node.get_logger().error(line)
            else:
                self.node.get_logger().warning(line)
            prob.last_log, prob.suppressed = now, 0
        else:
            prob.suppressed += count

    def guard(self, fn: Callable[..., Any]) -> Callable[..., bool]:
        """Wrap a callback: bad input and backend failures drop the frame, never the node.

        The wrapper returns True when ``fn`` returned (its own result is discarded) and False
        when it raised and the frame was dropped."""

        def wrapper(*args: Any, **kwargs: Any) -> bool:
            try:
                fn(*args, **kwargs)
                return True
            except (InputError, FrameError) as exc:
                self.drop(exc.reason, str(exc), WARN)
            except BackendError as exc:
                self.drop("backend_error", str(exc), ERROR)
            except Exception as exc:  # noqa: BLE001 - a node must survive anything a frame does
                self.drop("internal_error", f"{type(exc).__name__}: {exc}", ERROR)
                self.node.get_logger().debug(traceback.format_exc())
            return False

        wrapper.__name__ = getattr(fn, "__name__", "callback")
        wrapper.__doc__ = fn.__doc__
        return wrapper

    def status(self) -> DiagnosticStatus:
        """The current DiagnosticStatus (does not reset the level)."""
        level, message = self._level, self._message
        if level == OK:
            message = (f"running: {self.frames_in} frames in, {self.frames_out} out, "
                       f"{self.drops_total} dropped") if self.frames_in or self.drops else "waiting for input"
        values = {"frames_in": self.frames_in, "frames_out": self.frames_out, "drops_total": self.drops_total}
        values.update({f"drops_{k}": v for k, v in sorted(self.drops.items())})
        values.update(sorted(self.counters.items()))
        values["last_latency_ms"] = "nan" if math.isnan(self.latency_last) else f"{self.latency_last * 1e3:.1f}"
        values["mean_latency_ms"] = (f"{self._latency_sum / self.frames_out * 1e3:.1f}" if self.frames_out else "nan")
        values.update(self.extra)
        return DiagnosticStatus(
            level=bytes([level]), name=self.name, message=message, hardware_id=self.node.get_fully_qualified_name(),
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )

    def publish(self) -> None:
        """Publish the status and start a new reporting period (level back to OK)."""
        msg = DiagnosticArray()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.status = [self.status()]
        self.publisher.publish(msg)
        self._level, self._message = OK, ""


@dataclass
class StageTimer:
    """Wall-clock time of named processing stages of one frame (seconds), for debug logs."""

    start: float = field(default_factory=time.perf_counter)
    stages: dict[str, float] = field(default_factory=dict)
    _last: float = field(default=0.0)

    def __post_init__(self) -> None:
        self._last = self.start

    def mark(self, stage: str) -> None:
        """Close the stage that ran since the previous mark."""
        now = time.perf_counter()
        self.stages[stage] = now - self._last
        self._last = now

    @property
    def total(self) -> float:
        """Seconds since construction."""
        return time.perf_counter() - self.start

    def __str__(self) -> str:
        return ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in self.stages.items())

