"""Input side of a node: synchronised subscriptions and the checks of what arrives.

:class:`SyncedInputs` — one subscription per input (QoS from ``reliability`` and ``queue_size``),
an :class:`~depth_diffusion_ros.ros.ApproximateTimeSynchronizer` with ``sync_slop`` (changeable
at run time), and a watchdog that drops queued messages older than ``input_timeout`` seconds and
reports the input that is missing (e.g. ``missing_camera_info``) or ``unsynchronized``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from rclpy.node import Node

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.nodes.health import WARN, NodeHealth
from depth_diffusion_ros.nodes.parameters import NodeParameters
from depth_diffusion_ros.ros import ApproximateTimeSynchronizer, InputError, camera_info_to_intrinsics, qos_from_parameter


class SyncedInputs:
    """Subscriptions to ``topics`` joined by approximate time, feeding ``callback(*msgs)``.

    Args:
        node: the node.
        topics: input name (relative topic) -> message type, in callback argument order.
        callback: the frame handler; it is wrapped with :meth:`NodeHealth.guard`.
        health: drops and problems are reported there (reasons of the synchroniser:
            ``unsynchronized``, ``late``, ``queue_full``, ``missing_<input>``).
        params: uses ``reliability``, ``queue_size``, ``sync_slop``, ``input_timeout``.
    """

    def __init__(self, node: Node, topics: Mapping[str, type], callback: Callable[..., None],
                 health: NodeHealth, params: NodeParameters) -> None:
        self.node = node
        self.health = health
        self.params = params
        self.sync = ApproximateTimeSynchronizer(
            list(topics), float(params["sync_slop"]), health.guard(callback),
            queue_size=int(params["queue_size"]), on_drop=self._on_drop,
        )
        qos = qos_from_parameter(params["reliability"], depth=int(params["queue_size"]))
        self.subscriptions = [
            node.create_subscription(msg_type, name, self._make_cb(name), qos)
            for name, msg_type in topics.items()
        ]
        params.on_change("sync_slop", lambda v: setattr(self.sync, "slop", float(v)))
        period = min(0.5, float(params["input_timeout"]) / 2)
        self.watchdog = node.create_timer(period, self._check_stale)

    def _make_cb(self, name: str) -> Callable[[Any], None]:
        def cb(msg: Any) -> None:
            self.sync.add(name, msg)

        return cb

    def _on_drop(self, reason: str, topic: str, count: int, detail: str) -> None:
        self.health.drop(reason, detail, WARN, count)

    def _check_stale(self) -> None:
        self.sync.discard_older_than(float(self.params["input_timeout"]))


def image_intrinsics(image: Any, camera_info: Any) -> Intrinsics:
    """Intrinsics of ``image`` from its CameraInfo; InputError ``size_mismatch`` when sizes differ."""
    intrinsics = camera_info_to_intrinsics(camera_info)
    if (image.width, image.height) != (intrinsics.width, intrinsics.height):
        raise InputError(
            f"image is {image.width}x{image.height} but camera_info is {intrinsics.width}x{intrinsics.height}",
            reason="size_mismatch",
        )
    return intrinsics


