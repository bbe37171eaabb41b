"""ApproximateTimeSynchronizer (message_filters ApproximateTime semantics) and QoS selection."""
from __future__ import annotations

import random

import pytest
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_diffusion_ros.ros import ApproximateTimeSynchronizer, qos_from_parameter, stamp_to_ns

TOPICS = ("image", "camera_info", "points")
TYPES = {"image": Image, "camera_info": CameraInfo, "points": PointCloud2}


def _msg(topic: str, t: float):
    m = TYPES[topic]()
    ns = int(round(t * 1e9))
    m.header.stamp.sec, m.header.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
    m.header.frame_id = topic
    return m


class Recorder:
    def __init__(self):
        self.sets, self.drops = [], []

    def __call__(self, *msgs):
        self.sets.append(tuple(stamp_to_ns(m) / 1e9 for m in msgs))
        assert [m.header.frame_id for m in msgs] == list(TOPICS)

    def on_drop(self, reason, topic, count, detail):
        self.drops.append((reason, topic, count, detail))


def _sync(slop=0.05, queue_size=10):
    rec = Recorder()
    return ApproximateTimeSynchronizer(TOPICS, slop, rec, queue_size=queue_size, on_drop=rec.on_drop), rec


def test_exact_and_approximate_sets_in_topic_order():
    sync, rec = _sync()
    assert not sync.add("points", _msg("points", 10.02))
    assert not sync.add("image", _msg("image", 10.0))
    assert sync.add("camera_info", _msg("camera_info", 10.0))
    assert rec.sets == [(10.0, 10.0, 10.02)]
    assert all(sync.pending(t) == 0 for t in TOPICS) and rec.drops == []


def test_beyond_slop_never_emits_and_is_dropped_when_a_newer_set_matches():
    sync, rec = _sync(slop=0.05)
    sync.add("image", _msg("image", 100.0))
    sync.add("camera_info", _msg("camera_info", 100.0))
    sync.add("points", _msg("points", 101.0))
    assert rec.sets == []
    for t in TOPICS:
        sync.add(t, _msg(t, 110.0))
    assert rec.sets == [(110.0, 110.0, 110.0)]
    reasons = sorted((r, t) for r, t, _, _ in rec.drops)
    assert reasons == [("unsynchronized", "camera_info"), ("unsynchronized", "image"),
                       ("unsynchronized", "points")]
    detail = [d for r, t, _, d in rec.drops if t == "image"][0]
    assert "image stamp 100.000 found no partner within sync_slop 0.050 s" in detail
    assert "nearest points at 101.000" in detail
    assert sync.dropped == {"unsynchronized": 3}


def test_smallest_spread_is_chosen():
    sync, rec = _sync(slop=0.1)
    sync.add("image", _msg("image", 5.00))
    sync.add("points", _msg("points", 4.93))
    sync.add("points", _msg("points", 5.01))
    sync.add("camera_info", _msg("camera_info", 5.00))
    assert rec.sets == [(5.0, 5.0, 5.01)]
    # the older points message can no longer be used and is reported
    assert [(r, t) for r, t, _, _ in rec.drops] == [("unsynchronized", "points")]


def test_late_messages_and_queue_overflow_are_counted():
    sync, rec = _sync(queue_size=2)
    for t in TOPICS:
        sync.add(t, _msg(t, 1.0))
    assert len(rec.sets) == 1
    sync.add("image", _msg("image", 0.5))
    assert rec.drops[-1][0] == "late" and "not newer than the last synchronised image" in rec.drops[-1][3]
    for s in (2.0, 3.0, 4.0):
        sync.add("image", _msg("image", s))
    assert rec.drops[-1][:3] == ("queue_full", "image", 1)
    assert sync.pending("image") == 2
    assert sync.dropped == {"late": 1, "queue_full": 1}


def test_discard_older_than_names_the_missing_topic():
    sync, rec = _sync()
    sync.add("image", _msg("image", 1.0), arrival=100.0)
    sync.add("points", _msg("points", 1.0), arrival=100.5)
    assert sync.discard_older_than(2.0, now=101.0) == {}
    dropped = sync.discard_older_than(2.0, now=103.0)
    assert dropped == {"missing_camera_info": 2}
    assert "no camera_info received yet while image arrives" in rec.drops[0][3]
    assert sync.pending("image") == sync.pending("points") == 0


def test_discard_older_than_unsynchronized_when_all_topics_arrive():
    sync, rec = _sync()
    sync.add("image", _msg("image", 1.0), arrival=100.0)
    sync.add("camera_info", _msg("camera_info", 1.0), arrival=100.0)
    sync.add("points", _msg("points", 3.0), arrival=102.5)
    dropped = sync.discard_older_than(2.0, now=103.0)
    assert dropped == {"unsynchronized": 2}
    assert sync.pending("points") == 1


def test_jittered_streams_all_match():
    """Camera at 10 Hz, LiDAR 20-40 ms later, arrivals shuffled: every frame is synchronised."""
    rng = random.Random(3)
    sync, rec = _sync(slop=0.05)
    events = []
    for k in range(50):
        t = 1000.0 + 0.1 * k
        events += [(t + rng.uniform(0, 0.03), "image", t), (t + rng.uniform(0, 0.03), "camera_info", t),
                   (t + rng.uniform(0.02, 0.06), "points", t + rng.uniform(0.02, 0.04))]
    for _, topic, stamp in sorted(events):
        sync.add(topic, _msg(topic, stamp))
    assert len(rec.sets) == 50 and rec.drops == []
    assert all(max(s) - min(s) <= 0.05 + 1e-9 for s in rec.sets)


def test_invalid_settings():
    with pytest.raises(ValueError, match="slop"):
        ApproximateTimeSynchronizer(TOPICS, -0.1, print)
    with pytest.raises(ValueError, match="distinct"):
        ApproximateTimeSynchronizer(["a", "a"], 0.1, print)
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimeSynchronizer(TOPICS, 0.1, print, queue_size=0)
    sync, _ = _sync()
    sync.slop = 0.2
    assert sync.slop == pytest.approx(0.2)


def test_qos_from_parameter():
    be = qos_from_parameter("best_effort", depth=3)
    assert be.reliability == ReliabilityPolicy.BEST_EFFORT and be.depth == 3
    assert be.durability == DurabilityPolicy.VOLATILE
    assert qos_from_parameter("reliable").reliability == ReliabilityPolicy.RELIABLE
    with pytest.raises(ValueError, match="'fast'.*best_effort"):
        qos_from_parameter("fast")
