"""QoS profiles chosen by a ``reliability`` parameter."""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY_CHOICES = ("best_effort", "reliable")


def qos_from_parameter(reliability: str = "best_effort", depth: int = 5) -> QoSProfile:
    """QoS profile for sensor streams.

    ``"best_effort"`` is the sensor-data profile of ``rclpy.qos.qos_profile_sensor_data``
    (best effort, volatile, keep last) with the given queue ``depth``; it receives from both
    best-effort and reliable publishers. ``"reliable"`` is reliable, volatile, keep last: use it to
    match publishers/subscribers that insist on reliable delivery (e.g. ``rosbag2 play`` defaults
    or RViz displays).

    Args:
        reliability: ``"best_effort"`` or ``"reliable"``.
        depth: history depth (>= 1).

    Raises:
        ValueError: unknown reliability (the message names it and the choices) or depth < 1.
    """
    if depth < 1:
        raise ValueError(f"QoS depth must be >= 1, got {depth}")
    if reliability == "best_effort":
        policy = ReliabilityPolicy.BEST_EFFORT
    elif reliability == "reliable":
        policy = ReliabilityPolicy.RELIABLE
    else:
        raise ValueError(
            f"unknown reliability {reliability!r}; choose one of {list(RELIABILITY_CHOICES)}"
        )
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=policy,
        durability=DurabilityPolicy.VOLATILE,
    )
