"""Input side of a node: synchronised subscriptions and the checks of what arrives.

:class:`SyncedInputs` — one subscription per input (QoS from ``reliability`` and ``queue_size``),
a :class:`NodeSynchronizer` with ``sync_slop`` (changeable at run time), and a watchdog that
drops queued messages older than ``input_timeout`` seconds and reports the input that is missing
(e.g. ``missing_camera_info``) or ``unsynchronized``. Messages that never reached the node are
counted per input from the publishers' sequence numbers (``gaps_<input>``, ``gaps_total``).

:class:`NodeSynchronizer` — the synchroniser on a node's clock: stamps more than
``max_future_stamp`` seconds ahead of the node's clock are refused (``future_stamp``); a backward
jump of the node's clock (ROS time, or ``/clock`` with ``use_sim_time``) or of one input's stamps
by more than ``time_jump_threshold`` seconds resets it with one log line (``sync_resets``; the
queued messages it discards are counted as ``drops_time_jump``); only a set the frame handler
processed advances the last synchronised stamps. rcl reports jumps of ROS time only while it
follows ``/clock``; a step of the system clock shows up in the stamps (their own jump check).

Gaps are counted where they can be known: rmw gives every message its publisher's sequence
number (Fast DDS and Cyclone DDS do); a jump by more than one between two messages of the same
publisher means the messages in between were lost in transit or overwritten in the
subscription's KEEP_LAST queue (``queue_size``). Where the middleware gives none, nothing is
counted. Gaps are not drops of the node: ``drops_total`` does not include them.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

from rclpy.clock import ClockChange, JumpHandle, JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.node import Node

from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.nodes.health import WARN, NodeHealth
from depth_diffusion_ros.nodes.parameters import NodeParameters
from depth_diffusion_ros.ros import (
    ApproximateTimeSynchronizer,
    InputError,
    PublicationGaps,
    camera_info_to_intrinsics,
    qos_from_parameter,
)
from depth_diffusion_ros.ros.sync import DropCallback


class NodeSynchronizer(ApproximateTimeSynchronizer):
    """An :class:`~depth_diffusion_ros.ros.ApproximateTimeSynchronizer` wired to a node.

    Args:
        node: its clock is the reference of ``max_future_stamp`` and its jumps reset the queues.
        names: input names in callback order.
        callback: the set handler (return False or raise = rejected; see the synchroniser).
        health: resets are counted there (``sync_resets``, ``drops_time_jump``).
        params: uses ``sync_slop``, ``queue_size``, ``max_future_stamp`` and
            ``time_jump_threshold`` (all but ``queue_size`` changeable at run time).
        on_drop: the synchroniser's drop callback.
    """

    def __init__(self, node: Node, names: Sequence[str], callback: Callable[..., Any], health: NodeHealth,
                 params: NodeParameters, on_drop: Optional[DropCallback]) -> None:
        self.node, self.health = node, health
        self.clock = clock = node.get_clock()
        super().__init__(list(names), float(params["sync_slop"]), callback, queue_size=int(params["queue_size"]),
                         on_drop=on_drop, max_future=float(params["max_future_stamp"]),
                         now_ns=lambda: clock.now().nanoseconds, on_reset=self._on_reset)
        params.on_change("sync_slop", lambda v: setattr(self, "slop", float(v)))
        params.on_change("max_future_stamp", lambda v: setattr(self, "max_future", float(v)))
        params.on_change("time_jump_threshold", self.set_jump_threshold)
        self.jump_handle: Optional[JumpHandle] = None
        self.set_jump_threshold(float(params["time_jump_threshold"]))

    def set_jump_threshold(self, seconds: float) -> None:
        """Reset on backward jumps (the node's clock, one input's stamps) beyond ``seconds``; 0 = never."""
        self.jump_back = float(seconds)
        if self.jump_handle is not None:
            self.jump_handle.unregister()
            self.jump_handle = None
        if seconds > 0:
            self.jump_handle = self.clock.create_jump_callback(
                JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-max(1, int(seconds * 1e9))),
                              on_clock_change=True),
                post_callback=self._on_clock_jump)

    def _on_clock_jump(self, jump: TimeJump) -> None:
        try:
            if jump.clock_change in (ClockChange.ROS_TIME_ACTIVATED, ClockChange.ROS_TIME_DEACTIVATED):
                what = "ROS time " + ("activated (use_sim_time)" if jump.clock_change == ClockChange.ROS_TIME_ACTIVATED
                                      else "deactivated")
            else:
                what = f"the node's clock jumped back by {-jump.delta.nanoseconds / 1e9:.3f} s"
            self.reset(what)
        except Exception as exc:  # noqa: BLE001 - called from rcl: never raise into it
            self.node.get_logger().error(f"synchroniser reset failed: {type(exc).__name__}: {exc}")

    def _on_reset(self, detail: str, flushed: int) -> None:
        self.node.get_logger().warning(
            f"synchroniser reset: {detail}; {flushed} queued message(s) discarded, last stamps forgotten")
        self.health.count("sync_resets", f"synchroniser reset: {detail}", log=False)
        if flushed:
            self.health.drop("time_jump", f"{flushed} queued message(s) discarded by a synchroniser reset: {detail}",
                             WARN, flushed, log=False)


class SyncedInputs:
    """Subscriptions to ``topics`` joined by approximate time, feeding ``callback(*msgs)``.

    Args:
        node: the node.
        topics: input name (relative topic) -> message type, in callback argument order.
        callback: the frame handler; it is wrapped with :meth:`NodeHealth.guard`, so a frame it
            rejects (raises) does not advance the synchroniser.
        health: drops and problems are reported there (reasons of the synchroniser:
            ``unsynchronized``, ``late``, ``queue_full``, ``missing_<input>``, ``future_stamp``,
            ``time_jump``; counters ``gaps_<input>``, ``gaps_total``, ``sync_resets``).
        params: uses ``reliability``, ``queue_size``, ``sync_slop``, ``input_timeout``,
            ``max_future_stamp``, ``time_jump_threshold``.
    """

    def __init__(self, node: Node, topics: Mapping[str, type], callback: Callable[..., None],
                 health: NodeHealth, params: NodeParameters) -> None:
        self.node = node
        self.health = health
        self.params = params
        self.sync = NodeSynchronizer(node, list(topics), health.guard(callback), health, params, self._on_drop)
        self.gaps = {name: PublicationGaps() for name in topics}
        qos = qos_from_parameter(params["reliability"], depth=int(params["queue_size"]))
        self.subscriptions = [
            node.create_subscription(msg_type, name, self._make_cb(name), qos)
            for name, msg_type in topics.items()
        ]
        period = min(0.5, float(params["input_timeout"]) / 2)
        self.watchdog = node.create_timer(period, self._check_stale)

    def _make_cb(self, name: str) -> Callable[[Any, Any], None]:
        gaps = self.gaps[name]

        def cb(msg: Any, info: Any) -> None:  # two arguments: rclpy passes the MessageInfo
            missing = gaps.observe(info)
            if missing:
                self.health.count(f"gaps_{name}", f"{missing} {name} message(s) never reached the node (publication "
                                  f"sequence number jumped to {info['publication_sequence_number']}): lost in "
                                  "transit or overwritten in the subscription queue", missing)
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
            f"image is {image.width}x{image.height} but camera_info is {intrinsics.width}x{intrinsics.height}"
            + (" (after its binning / ROI)" if _binned_or_cropped(camera_info) else ""),
            reason="size_mismatch",
        )
    return intrinsics


def check_registered(name: str, msg: Any, image: Any) -> None:
    """InputError ``frame_mismatch`` when ``msg`` (e.g. ``sparse_depth``, ``depth_lr``) and the
    image both name a frame and the frames differ: the input must be registered to the image."""
    image_frame, frame = image.header.frame_id, msg.header.frame_id
    if image_frame and frame and image_frame != frame:
        raise InputError(
            f"{name} is in frame {frame!r} but image is in frame {image_frame!r}: {name} must be registered to "
            "the image (the same optical frame)",
            reason="frame_mismatch",
        )


def _binned_or_cropped(camera_info: Any) -> bool:
    roi = camera_info.roi
    return int(camera_info.binning_x) > 1 or int(camera_info.binning_y) > 1 or bool(roi.width or roi.height)
