"""Approximate-time synchronisation of several topics (message_filters ApproximateTime semantics).

``message_filters`` is not available everywhere the nodes run, so this is a small, pure-Python
policy with the same contract: messages are kept in per-topic queues; a *set* (one message per
topic) is emitted when every topic has a message and the spread of their header stamps
(newest - oldest) is at most ``slop`` seconds. Among the candidate sets that contain the message
that just arrived, the one with the smallest spread is emitted. After a set is emitted, every
queued message that is not newer than the emitted message of its topic is dropped (it can never
be part of a later set), and a message arriving with a stamp not newer than the last
*processed* one of its topic is dropped as late. Every dropped message is reported through
``on_drop``.

Robustness (one bad stamp must not stall a node):

* only a set the callback processed (it returned anything but ``False`` and raised nothing)
  advances the last processed stamps, so a rejected set stamped in the future blocks nothing;
* with ``max_future`` > 0 and a clock (``now_ns``), a message stamped more than ``max_future``
  seconds ahead of the clock is refused before it enters the queues (reason ``future_stamp``);
* with ``jump_back`` > 0, a message whose stamp is more than ``jump_back`` seconds older than the
  newest queued or processed stamp of its topic (a bag that loops, a restarted driver)
  resets the synchroniser (:meth:`reset`) and is then accepted; the owner can also call :meth:`reset`
  (e.g. on a backward jump of the node's clock).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

DropCallback = Callable[[str, str, int, str], None]
ResetCallback = Callable[[str, int], None]


def stamp_to_ns(msg: Any) -> int:
    """``msg.header.stamp`` as integer nanoseconds."""
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


@dataclass
class _Entry:
    stamp_ns: int
    arrival: float  # time.monotonic() when added
    msg: Any


def _seconds_to_ns(value: float, what: str) -> int:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {value}")
    return int(round(float(value) * 1e9))


class ApproximateTimeSynchronizer:
    """Group messages of ``topics`` whose stamps lie within ``slop`` seconds.

    Args:
        topics: names of the inputs, e.g. ``("image", "camera_info", "sparse_depth")``; the
            callback receives the messages in this order.
        slop: largest allowed stamp spread of a set, seconds (>= 0). Settable at run time.
        callback: called as ``callback(*msgs)`` for every emitted set; returning ``False``
            means the set was rejected (it does not advance the last processed stamps).
        queue_size: messages kept per topic (>= 1); the oldest is dropped when one more arrives.
        on_drop: called as ``on_drop(reason, topic, count, detail)`` for every dropped message,
            with reason ``"queue_full"``, ``"unsynchronized"`` (never matched within the slop),
            ``"late"`` (not newer than the last processed set), ``"future_stamp"`` (ahead of the
            clock by more than ``max_future``) or the reason given to :meth:`discard_older_than`;
            ``detail`` is a sentence naming the stamps.
        max_future: seconds a stamp may be ahead of ``now_ns()``; 0 = no check. Settable at run time.
        now_ns: the clock stamps are compared with (integer nanoseconds, e.g. the node's ROS
            clock); a reading of 0 (ROS time not started yet) skips the check.
        jump_back: seconds a topic's stamp may go back before the synchroniser resets; 0 = never.
            Settable at run time.
        on_reset: called as ``on_reset(detail, flushed)`` after every :meth:`reset`, with the
            number of queued messages that were discarded.

    Not thread-safe: call :meth:`add` from one thread (a single-threaded executor does that).

    Raises:
        ValueError: no topics, duplicated topics, slop / max_future / jump_back < 0 or
            non-finite, queue_size < 1.
    """

    def __init__(
        self,
        topics: Sequence[str],
        slop: float,
        callback: Callable[..., Any],
        queue_size: int = 10,
        on_drop: Optional[DropCallback] = None,
        max_future: float = 0.0,
        now_ns: Optional[Callable[[], int]] = None,
        jump_back: float = 0.0,
        on_reset: Optional[ResetCallback] = None,
    ) -> None:
        topics = list(topics)
        if not topics or len(set(topics)) != len(topics):
            raise ValueError(f"topics must be non-empty and distinct, got {topics}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.topics = topics
        self.slop = slop
        self.callback = callback
        self.queue_size = int(queue_size)
        self.on_drop = on_drop
        self.max_future = max_future
        self.now_ns = now_ns
        self.jump_back = jump_back
        self.on_reset = on_reset
        self._queues: dict[str, list[_Entry]] = {t: [] for t in topics}
        self._last_emitted: dict[str, Optional[int]] = {t: None for t in topics}
        self._newest: dict[str, Optional[int]] = {t: None for t in topics}
        self._last_arrival: dict[str, Optional[float]] = {t: None for t in topics}
        self.emitted = 0
        self.rejected = 0
        self.resets = 0
        self.dropped: dict[str, int] = {}

    @property
    def slop(self) -> float:
        """Largest allowed stamp spread of a set, seconds."""
        return self._slop_ns / 1e9

    @slop.setter
    def slop(self, value: float) -> None:
        if not value >= 0:
            raise ValueError(f"sync slop must be >= 0 seconds, got {value}")
        self._slop_ns = int(round(float(value) * 1e9))

    @property
    def max_future(self) -> float:
        """Seconds a stamp may be ahead of the clock (0 = not checked)."""
        return self._max_future_ns / 1e9

    @max_future.setter
    def max_future(self, value: float) -> None:
        self._max_future_ns = _seconds_to_ns(value, "max_future")

    @property
    def jump_back(self) -> float:
        """Seconds one topic's stamps may go back before the synchroniser resets (0 = never)."""
        return self._jump_back_ns / 1e9

    @jump_back.setter
    def jump_back(self, value: float) -> None:
        self._jump_back_ns = _seconds_to_ns(value, "jump_back")

    def pending(self, topic: str) -> int:
        """Number of queued messages of ``topic``."""
        return len(self._queues[topic])

    def last_arrival(self, topic: str) -> Optional[float]:
        """``time.monotonic()`` of the last message added on ``topic`` (None if none yet)."""
        return self._last_arrival[topic]

    def oldest_pending_arrival(self) -> Optional[float]:
        """Arrival time of the longest-waiting queued message of any topic (None if empty)."""
        arrivals = [e.arrival for q in self._queues.values() for e in q]
        return min(arrivals) if arrivals else None

    def _drop(self, reason: str, topic: str, count: int, detail: str) -> None:
        if count <= 0:
            return
        self.dropped[reason] = self.dropped.get(reason, 0) + count
        if self.on_drop is not None:
            self.on_drop(reason, topic, count, detail)

    def reset(self, detail: str) -> int:
        """Forget every queued message and every processed stamp (time went backwards).

        ``detail`` says why; it is passed to ``on_reset`` with the number of queued messages
        discarded (also counted in :attr:`dropped` as ``time_jump``). Returns that number.
        """
        flushed = sum(len(q) for q in self._queues.values())
        for t in self.topics:
            self._queues[t] = []
            self._last_emitted[t] = None
            self._newest[t] = None
        if flushed:
            self.dropped["time_jump"] = self.dropped.get("time_jump", 0) + flushed
        self.resets += 1
        if self.on_reset is not None:
            self.on_reset(detail, flushed)
        return flushed

    def _refuse_future(self, topic: str, stamp: int) -> bool:
        if not self._max_future_ns or self.now_ns is None:
            return False
        now = int(self.now_ns())
        if now <= 0 or stamp - now <= self._max_future_ns:
            return False
        self._drop("future_stamp", topic, 1,
                   f"{topic} stamp {stamp / 1e9:.3f} is {(stamp - now) / 1e9:.3f} s ahead of the node's clock "
                   f"({now / 1e9:.3f}; max_future_stamp {self.max_future:g} s): check the sender's clock")
        return True

    def _check_jump(self, topic: str, stamp: int) -> None:
        newest = self._newest[topic]
        if self._jump_back_ns and newest is not None and newest - stamp > self._jump_back_ns:
            self.reset(f"{topic} stamps jumped back by {(newest - stamp) / 1e9:.3f} s "
                       f"(from {newest / 1e9:.3f} to {stamp / 1e9:.3f}: a looping bag or a restarted sender)")

    def add(self, topic: str, msg: Any, arrival: Optional[float] = None) -> bool:
        """Queue ``msg`` (with a ``header.stamp``) of ``topic``; emit a set if one is complete.

        Returns:
            True if a set was emitted (the callback ran) during this call.

        Raises:
            KeyError: unknown topic. Exceptions from the callback propagate (the set is
            already removed from the queues and counts as rejected).
        """
        now = time.monotonic() if arrival is None else arrival
        self._last_arrival[topic] = now
        stamp = stamp_to_ns(msg)
        if self._refuse_future(topic, stamp):
            return False
        self._check_jump(topic, stamp)  # may reset every queue
        queue = self._queues[topic]
        last = self._last_emitted[topic]
        if last is not None and stamp <= last:
            self._drop("late", topic, 1,
                       f"{topic} stamp {stamp / 1e9:.3f} is not newer than the last synchronised "
                       f"{topic} ({last / 1e9:.3f})")
            return False
        queue.append(_Entry(stamp, now, msg))
        queue.sort(key=lambda e: e.stamp_ns)
        newest = self._newest[topic]
        self._newest[topic] = stamp if newest is None else max(newest, stamp)
        if len(queue) > self.queue_size:
            old = queue.pop(0)
            self._drop("queue_full", topic, 1,
                       f"{topic} queue full ({self.queue_size}): dropped stamp {old.stamp_ns / 1e9:.3f} "
                       f"that found no partner within sync_slop {self.slop:.3f} s")
        return self._try_emit(topic, stamp)

    def _try_emit(self, topic: str, stamp: int) -> bool:
        if any(not q for q in self._queues.values()):
            return False
        candidates = []
        for t in self.topics:
            if t == topic:
                candidates.append([e for e in self._queues[t] if e.stamp_ns == stamp][:1])
            else:
                candidates.append([e for e in self._queues[t] if abs(e.stamp_ns - stamp) <= self._slop_ns])
            if not candidates[-1]:
                return False
        best, best_spread = None, None
        for combo in itertools.product(*candidates):
            stamps = [e.stamp_ns for e in combo]
            spread = max(stamps) - min(stamps)
            if spread <= self._slop_ns and (best_spread is None or spread < best_spread):
                best, best_spread = combo, spread
        if best is None:
            return False
        for t, entry in zip(self.topics, best):
            q = self._queues[t]
            older = [e for e in q if e.stamp_ns < entry.stamp_ns]
            for e in older:
                self._drop("unsynchronized", t, 1, self._describe_unmatched(t, e, best))
            self._queues[t] = [e for e in q if e.stamp_ns > entry.stamp_ns]
        self.emitted += 1
        accepted = False
        try:
            accepted = self.callback(*(e.msg for e in best)) is not False
        finally:
            if accepted:
                for t, entry in zip(self.topics, best):
                    self._last_emitted[t] = entry.stamp_ns
            else:
                self.rejected += 1
        return True

    def _describe_unmatched(self, topic: str, entry: _Entry, emitted: Sequence[_Entry]) -> str:
        others = []
        for t in self.topics:
            if t == topic:
                continue
            q = self._queues[t]
            pool = [e.stamp_ns for e in q] + [e.stamp_ns for tt, e in zip(self.topics, emitted) if tt == t]
            if pool:
                nearest = min(pool, key=lambda s: abs(s - entry.stamp_ns))
                others.append(f"nearest {t} at {nearest / 1e9:.3f}")
            else:
                others.append(f"no {t} queued")
        return (f"{topic} stamp {entry.stamp_ns / 1e9:.3f} found no partner within sync_slop "
                f"{self.slop:.3f} s ({', '.join(others)})")

    def discard_older_than(self, max_age: float, now: Optional[float] = None) -> dict[str, int]:
        """Drop queued messages that have waited longer than ``max_age`` seconds.

        The drop reason is ``"missing_<topic>"`` when some topic has received nothing for
        ``max_age`` seconds (or ever), else ``"unsynchronized"``. Nodes call this from a timer to
        report inputs that stopped (e.g. no camera_info) or never match.

        Returns:
            reason -> number of messages dropped by this call.
        """
        now = time.monotonic() if now is None else now
        silent = [t for t in self.topics
                  if self._last_arrival[t] is None or now - self._last_arrival[t] > max_age]
        empty = {t for t in self.topics if not self._queues[t]}
        result: dict[str, int] = {}
        for t in self.topics:
            stale = [e for e in self._queues[t] if now - e.arrival > max_age]
            if not stale:
                continue
            self._queues[t] = [e for e in self._queues[t] if now - e.arrival <= max_age]
            missing = [s for s in silent if s in empty]
            for e in stale:
                if missing:
                    reason = f"missing_{missing[0]}"
                    since = self._last_arrival[missing[0]]
                    detail = (f"no {missing[0]} received "
                              + ("yet" if since is None else f"for {now - since:.1f} s")
                              + f" while {t} arrives: dropped {t} stamp {e.stamp_ns / 1e9:.3f}")
                else:
                    reason = "unsynchronized"
                    detail = self._describe_unmatched(t, e, [])
                result[reason] = result.get(reason, 0) + 1
                self._drop(reason, t, 1, detail)
        return result
