"""The synchroniser under bad stamps (issue 16, item 1) and the publication-gap counter (item 4).

One bad stamp must not stall a node: only processed sets advance the last stamps, stamps ahead
of the clock are refused by name, and a backward jump of the stamps resets the queues.
"""
from __future__ import annotations

import pytest
from sensor_msgs.msg import CameraInfo, Image

from depth_diffusion_ros.ros import ApproximateTimeSynchronizer, PublicationGaps, stamp_to_ns

TOPICS = ("image", "camera_info")


def _msg(topic: str, t: float, bad: bool = False):
    m = Image() if topic == "image" else CameraInfo()
    ns = int(round(t * 1e9))
    m.header.stamp.sec, m.header.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
    m.header.frame_id = "bad" if bad else "ok"
    return m


class Handler:
    """A frame handler that rejects sets whose image is marked bad (returns False or raises)."""

    def __init__(self, raise_on_bad: bool = False) -> None:
        self.processed, self.rejected, self.drops, self.resets = [], [], [], []
        self.raise_on_bad = raise_on_bad

    def __call__(self, image, info):
        t = stamp_to_ns(image) / 1e9
        if image.header.frame_id == "bad":
            self.rejected.append(t)
            if self.raise_on_bad:
                raise ValueError("bad encoding")
            return False
        self.processed.append(t)
        return None  # a plain handler returns nothing: processed

    def on_drop(self, reason, topic, count, detail):
        self.drops.append((reason, topic, count, detail))

    def on_reset(self, detail, flushed):
        self.resets.append((detail, flushed))


def _pair(sync, t, bad=False):
    sync.add("image", _msg("image", t, bad))
    return sync.add("camera_info", _msg("camera_info", t))


@pytest.mark.parametrize("raise_on_bad", [False, True])
def test_a_rejected_future_set_does_not_advance_the_last_stamp(raise_on_bad):
    h = Handler(raise_on_bad)
    sync = ApproximateTimeSynchronizer(TOPICS, 0.05, h, on_drop=h.on_drop)  # no clock, no jump reset
    _pair(sync, 100.0)
    if raise_on_bad:
        with pytest.raises(ValueError):
            _pair(sync, 1e6 + 100.0, bad=True)
    else:
        _pair(sync, 1e6 + 100.0, bad=True)
    for t in (101.0, 102.0, 103.0):
        assert _pair(sync, t)
    assert h.rejected == [1e6 + 100.0] and h.processed == [100.0, 101.0, 102.0, 103.0]
    assert not [d for d in h.drops if d[0] == "late"]
    assert sync.emitted == 5 and sync.rejected == 1
    # a processed set does advance it: an older message is late
    sync.add("image", _msg("image", 102.5))
    assert h.drops[-1][0] == "late" and "102.500 is not newer than" in h.drops[-1][3]


def test_stamps_ahead_of_the_clock_are_refused_before_they_queue():
    now = {"ns": 1_000 * 10**9}
    h = Handler()
    sync = ApproximateTimeSynchronizer(TOPICS, 0.05, h, on_drop=h.on_drop, max_future=10.0,
                                       now_ns=lambda: now["ns"])
    assert not _pair(sync, 1_000.0 + 1e6)
    assert [(r, t) for r, t, _, _ in h.drops] == [("future_stamp", "image"), ("future_stamp", "camera_info")]
    assert "1000000.000 s ahead of the node's clock" in h.drops[0][3]
    assert sync.pending("image") == 0 and sync.pending("camera_info") == 0
    assert _pair(sync, 1_009.0)  # 9 s ahead: within the tolerance
    # a clock that has not started (ROS time 0 before the first /clock) checks nothing
    now["ns"] = 0
    assert _pair(sync, 5e6)
    # 0 turns the check off; settable at run time
    now["ns"], sync.max_future = 1_000 * 10**9, 0.0
    assert _pair(sync, 6e6)
    with pytest.raises(ValueError, match="max_future"):
        sync.max_future = -1.0


def test_stamps_that_jump_back_reset_the_synchroniser():
    h = Handler()
    sync = ApproximateTimeSynchronizer(TOPICS, 0.05, h, on_drop=h.on_drop, jump_back=1.0, on_reset=h.on_reset)
    for t in (500.0, 500.1, 500.2):
        _pair(sync, t)
    sync.add("camera_info", _msg("camera_info", 500.3))  # queued, waiting for its image
    sync.add("image", _msg("image", 499.5))  # 0.7 s back: an ordinary late message
    assert h.drops[-1][0] == "late" and not h.resets
    # the bag loops: stamps go back by 200 s
    assert _pair(sync, 300.0)
    assert h.processed[-1] == 300.0
    assert len(h.resets) == 1
    detail, flushed = h.resets[0]
    assert "image stamps jumped back by 200.200 s" in detail and flushed == 1
    assert sync.dropped["time_jump"] == 1 and sync.resets == 1
    assert _pair(sync, 300.1) and h.processed[-1] == 300.1
    # without a threshold the same loop stalls on "late" (the old behaviour, now opt-in)
    h2 = Handler()
    old = ApproximateTimeSynchronizer(TOPICS, 0.05, h2, on_drop=h2.on_drop)
    _pair(old, 500.0)
    assert not _pair(old, 300.0) and h2.drops[-1][0] == "late"


def test_reset_by_the_owner_forgets_queues_and_stamps():
    h = Handler()
    sync = ApproximateTimeSynchronizer(TOPICS, 0.05, h, on_reset=h.on_reset)
    _pair(sync, 10.0)
    sync.add("image", _msg("image", 11.0))
    assert sync.reset("clock jumped back") == 1
    assert h.resets == [("clock jumped back", 1)] and sync.pending("image") == 0
    assert _pair(sync, 5.0)


def test_publication_gaps_per_publisher():
    gaps = PublicationGaps()

    def info(seq, gid=b"a"):
        return {"publication_sequence_number": seq, "publisher_gid": {"data": gid}}

    assert gaps.observe(info(7)) == 0  # the first message of a publisher counts nothing
    assert gaps.observe(info(8)) == 0
    assert gaps.observe(info(12)) == 3  # 9, 10, 11 never arrived
    assert gaps.observe(info(1, b"b")) == 0 and gaps.observe(info(3, b"b")) == 1
    assert gaps.observe(info(5)) == 0  # a restarted publisher with the same id: starts again
    # no sequence number from the middleware: nothing known, nothing counted
    assert gaps.observe({"publication_sequence_number": None}) == 0
    assert gaps.observe(info(2**64 - 1)) == 0 and gaps.observe(None) == 0
    assert gaps.total == 4
