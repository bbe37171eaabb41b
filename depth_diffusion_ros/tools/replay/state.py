"""The per-run state shared by the player (main thread) and the recorder (executor threads).

One :class:`RunState` per replay holds every frame's :class:`FrameState`, the stamp -> frame
lookup, the condition variable both sides use, the evaluation node's skip counts and the output
bag writer. The recorder callback (:meth:`RunState.on_output`) writes every recorded message to
the output bag and marks the frame it belongs to; the player waits on the same condition.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from depth_diffusion_ros.ros.sync import stamp_to_ns
from depth_diffusion_ros.tools.bag_io import IMAGE, STRING, TYPESTORE, BagError, BagWriter, deserialize
from depth_diffusion_ros.tools.replay.bag_plan import Frame
from depth_diffusion_ros.tools.replay.node_graph import NodeGraph
from depth_diffusion_ros.tools.replay.options import RECORDED_TOPICS, ReplayError


@dataclass
class FrameState:
    """What happened to one frame: publish and output times (perf_counter s), output, verdict."""

    frame: Frame
    published_at: Optional[float] = None
    output_at: Optional[float] = None
    pred_raw: Optional[bytes] = None  # the depth/image CDR
    has_gt: bool = False
    event: Optional[dict[str, Any]] = None  # the evaluation node's "frame" event
    skip: Optional[str] = None  # why it was not scored
    finished: bool = False  # added to the report
    figure: Optional[dict[str, Any]] = None  # inputs kept for its figure


def absolute_topic(namespace: str, rel: str) -> str:
    """``rel`` inside ``namespace`` (``/ns/rel``, or ``/rel`` without a namespace)."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{rel}"


class RunState:
    """Frame states, their lock and the output bag of one replay (see the module docstring).

    Raises:
        ReplayError: the output bag cannot be written.
    """

    def __init__(self, frames: list[Frame], output_bag: Path, storage: str, namespace: str) -> None:
        self.frames = [FrameState(f) for f in frames]
        self.by_stamp: dict[int, FrameState] = {}
        self.lock = threading.Condition()
        self.node_skips: dict[str, int] = {}  # evaluation node skip reason -> count
        self._namespace = namespace
        self._bag_lock = threading.Lock()
        try:
            self._writer = BagWriter(output_bag, storage=storage, overwrite=True)
            self._writer.open()
        except BagError as exc:
            raise ReplayError(str(exc)) from exc
        for rel, msgtype in RECORDED_TOPICS.items():
            self._writer.add_topic(absolute_topic(namespace, rel), msgtype)

    def expect(self, stamp_ns: int, st: FrameState) -> None:
        """Outputs stamped ``stamp_ns`` belong to ``st``."""
        with self.lock:
            self.by_stamp[stamp_ns] = st

    def close_writer(self) -> None:
        """Close the output bag (its metadata is written)."""
        with self._bag_lock:
            self._writer.close()

    def on_output(self, rel: str, data: bytes, t_ns: int) -> None:
        """Recorder callback: write to the output bag; note a frame's depth/image or verdict."""
        with self._bag_lock:
            self._writer.write(absolute_topic(self._namespace, rel), t_ns, data)
        if rel == "depth/image":
            now = time.perf_counter()
            stamp = stamp_to_ns(TYPESTORE.deserialize_cdr(data, IMAGE))
            with self.lock:
                st = self.by_stamp.get(stamp)
                if st is not None and st.output_at is None:
                    st.output_at, st.pred_raw = now, data
                self.lock.notify_all()
        elif rel == "evaluation/metrics":
            self._on_metrics(json.loads(deserialize(data, STRING, rel).data))

    def _on_metrics(self, event: dict[str, Any]) -> None:
        with self.lock:
            if event.get("event") == "frame":
                st = self.by_stamp.get(int(event["stamp_ns"]))
                if st is not None:
                    st.event = event
            else:
                self.node_skips[event["reason"]] = self.node_skips.get(event["reason"], 0) + int(event.get("count", 1))
                st = self.by_stamp.get(event.get("stamp_ns") or -1)
                if st is not None:
                    st.skip = event["reason"]
            self.lock.notify_all()

    def wait_frame(self, st: FrameState, graph: NodeGraph, before: dict[str, int], timeout: float,
                   evaluate: bool) -> None:
        """Wait for the frame's depth/image (and its evaluation event), a processing drop, or the timeout."""
        end = time.perf_counter() + timeout
        with self.lock:
            while st.output_at is None and time.perf_counter() < end:
                self.lock.wait(0.05)
                after = graph.health_snapshot()
                new = {r: n - before.get(r, 0) for r, n in after.items() if n > before.get(r, 0)}
                if new and st.output_at is None:
                    self.lock.wait(0.2)  # an output racing the counter still counts
                    if st.output_at is None:
                        st.skip = "node_drop_" + max(new, key=new.get)
                        return
            if st.output_at is None or not evaluate or not st.has_gt:
                return
            end = time.perf_counter() + 10.0
            while st.event is None and st.skip is None and time.perf_counter() < end:
                self.lock.wait(0.05)

    def wait_in_flight(self, segment: list[int], timeout: float, evaluate: bool) -> None:
        """Paced play: wait for the outputs of ``segment`` still in flight, then their verdicts."""
        states = [self.frames[k] for k in segment]
        end = time.perf_counter() + timeout
        with self.lock:
            while time.perf_counter() < end and any(s.published_at and s.output_at is None for s in states):
                self.lock.wait(0.1)
            end = time.perf_counter() + 10.0  # then the evaluation node's verdicts
            while time.perf_counter() < end and evaluate and any(
                    s.output_at and s.has_gt and s.event is None and s.skip is None for s in states):
                self.lock.wait(0.05)
