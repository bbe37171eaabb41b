"""The in-process rclpy graph of one replay segment: player, recorder, the nodes, one executor.

rclpy nodes composed in one ``MultiThreadedExecutor`` in their own ``Context`` (domain id given),
as a launch file would start them, with the player publishing serialized bag messages and the
recorder receiving the nodes' outputs as serialized messages.
"""
from __future__ import annotations

import importlib
import threading
import time
from typing import Any, Callable

from depth_diffusion_ros.tools.replay.options import EVAL_NODE, RECORDED_TOPICS, ReplayError
from depth_diffusion_ros.tools.replay.wiring import coerce_params, node_class

#: Drop reasons of the synchronisers (not processing drops; see :meth:`NodeGraph.health_snapshot`).
_SYNC_DROP_REASONS = ("unsynchronized", "late", "queue_full")

#: ``on_output(relative topic, CDR bytes, receive time ns)``, called from the executor threads.
OutputCallback = Callable[[str, bytes, int], None]


def rclpy_type(msgtype: str) -> type:
    """The rclpy message class of a ``pkg/msg/Name`` type name."""
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


class NodeGraph:
    """Player, recorder, the pipeline nodes and the evaluation node in one rclpy context.

    Args:
        node_params: node name -> parameters (the nodes started, in this order).
        remaps: node name -> {relative topic: bag topic}.
        publish_types: topic -> message type of the player's publishers (``publishers``).
        namespace: ROS namespace of every node.
        domain_id: ROS domain of the context.
        on_output: called for every message of :data:`RECORDED_TOPICS`.

    Raises:
        ReplayError: a node refuses its parameters or cannot load its backend (names the node).
    """

    def __init__(self, node_params: dict[str, dict[str, Any]], remaps: dict[str, dict[str, str]],
                 publish_types: dict[str, str], namespace: str, domain_id: int, on_output: OutputCallback) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.context = Context()
        # args=[]: not sys.argv, whose replay options (e.g. ``-p name:=value``) rcl would read
        # as ROS arguments (a deprecated remap rule) -- the nodes get theirs from cli_args
        rclpy.init(args=[], context=self.context, domain_id=domain_id)
        self.nodes: dict[str, Any] = {}
        self._rclpy = rclpy
        try:
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            self.player = self._plain_node("ddr_replay_player", namespace)
            self.publishers = {topic: self.player.create_publisher(rclpy_type(t), topic, qos)
                               for topic, t in publish_types.items()}
            self.recorder = self._plain_node("ddr_replay_recorder", namespace)
            for rel, msgtype in RECORDED_TOPICS.items():
                self.recorder.create_subscription(
                    rclpy_type(msgtype), rel, (lambda data, rel=rel: on_output(rel, data, time.time_ns())),
                    qos, raw=True)
            for name, params in node_params.items():
                self.nodes[name] = self._start_node(name, params, remaps.get(name, {}), namespace)
            self._spin()
        except BaseException:
            self.close()
            raise

    def _plain_node(self, name: str, namespace: str) -> Any:
        from rclpy.node import Node

        return Node(name, context=self.context, namespace=namespace, use_global_arguments=False,
                    enable_rosout=False, start_parameter_services=False)

    def _start_node(self, name: str, params: dict[str, Any], remaps: dict[str, str], namespace: str) -> Any:
        cls, module = node_class(name)
        cli = ["--ros-args"] + [a for src, dst in remaps.items() for a in ("-r", f"{src}:={dst}")]
        try:
            return cls(context=self.context, namespace=namespace, cli_args=cli, use_global_arguments=False,
                       parameter_overrides=coerce_params(name, module, params))
        except ValueError as exc:  # ParameterError / bad options: name the node
            raise ReplayError(f"{name}: {exc}") from exc
        except RuntimeError as exc:  # BackendError: bad model file etc.
            raise ReplayError(f"{name}: {exc}") from exc

    def _spin(self) -> None:
        from rclpy.executors import MultiThreadedExecutor

        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        for node in (self.player, self.recorder, *self.nodes.values()):
            self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin, name="replay-executor", daemon=True)
        self.thread.start()

    def wait_connected(self, timeout: float) -> list[str]:
        """Wait until every publisher in this context is matched by every local subscription of its topic.

        Returns the topics still unmatched after ``timeout`` seconds (e.g. QoS-incompatible).
        """
        all_nodes = [self.player, self.recorder, *self.nodes.values()]
        subs: dict[str, int] = {}
        for node in all_nodes:
            for s in node.subscriptions:
                subs[s.topic_name] = subs.get(s.topic_name, 0) + 1
        pubs = [p for node in all_nodes for p in node.publishers
                if p.topic_name in subs and p.topic_name not in ("/rosout", "/parameter_events")]
        end = time.monotonic() + timeout
        while True:
            missing = sorted({p.topic_name for p in pubs if p.get_subscription_count() < subs[p.topic_name]})
            if not missing or time.monotonic() > end:
                return missing
            time.sleep(0.05)

    def health_snapshot(self) -> dict[str, int]:
        """Processing drop counters (not synchroniser ones) summed over the pipeline nodes."""
        out: dict[str, int] = {}
        for name, node in self.nodes.items():
            if name == EVAL_NODE:
                continue
            health = getattr(node, "health", None)
            for reason, n in (getattr(health, "drops", None) or {}).items():
                if reason in _SYNC_DROP_REASONS or reason.startswith("missing_"):
                    continue
                out[reason] = out.get(reason, 0) + int(n)
        return out

    def close(self) -> None:
        """Stop the executor and destroy every node (the evaluation node writes its report)."""
        executor = getattr(self, "executor", None)
        if executor is not None:
            executor.shutdown(timeout_sec=5)
        for node in list(self.nodes.values()) + [getattr(self, "recorder", None), getattr(self, "player", None)]:
            if node is not None:
                try:
                    node.destroy_node()
                except Exception:  # noqa: BLE001 - best effort at shutdown
                    pass
        self._rclpy.try_shutdown(context=self.context)
        thread = getattr(self, "thread", None)
        if thread is not None:
            thread.join(timeout=5)
