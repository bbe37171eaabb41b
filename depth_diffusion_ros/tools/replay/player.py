"""The player: starts the node graph of each calibration segment and publishes the bag's frames.

``--rate 0`` publishes one frame, waits for its ``depth/image`` (or ``--frame-timeout``) and its
verdict, then the next; ``--rate R`` keeps the recorded timing sped up R times and waits for the
outputs in flight at the end of each segment. A frame's messages go out ground truth first and
image last, so that its last input message is the image (latency is measured from it).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from depth_diffusion_ros.evaluation.report import EvaluationReport
from depth_diffusion_ros.geometry.sampling import holdout_mask
from depth_diffusion_ros.ros.sync import stamp_to_ns
from depth_diffusion_ros.tools.bag_io import (
    CAMERA_INFO,
    IMAGE,
    POINTCLOUD2,
    TYPESTORE,
    BagMessage,
    deserialize,
    select_points,
)
from depth_diffusion_ros.tools.replay.bag_plan import Frame, iter_frames
from depth_diffusion_ros.tools.replay.node_graph import NodeGraph
from depth_diffusion_ros.tools.replay.plan import RunPlan
from depth_diffusion_ros.tools.replay.scoring import finish_frame
from depth_diffusion_ros.tools.replay.state import RunState
from depth_diffusion_ros.tools.replay.wiring import publish_types, remaps, segment_parameters

Messages = dict[str, list[BagMessage]]


def restamped(info: BagMessage, image: BagMessage) -> BagMessage:
    """The previous camera_info with the image's header stamp (bags that record it only once)."""
    msg = info.decode()
    msg.header.stamp = deserialize(image.rawdata, IMAGE, image.topic).header.stamp
    return BagMessage(info.topic, info.msgtype, image.timestamp, bytes(TYPESTORE.serialize_cdr(msg, CAMERA_INFO)))


def unpublishable(msgs: Messages, mode: str) -> Optional[str]:
    """Why a frame cannot be published in ``mode`` (a skip reason), or None."""
    if not msgs.get("camera_info"):
        return "no_camera_info"
    if mode == "super_resolution":
        return None if msgs.get("depth_lr") else "no_depth_lr"
    if mode == "estimation":
        return None
    if mode != "sparse_depth" and not msgs.get("points"):
        return "no_lidar"
    if mode == "sparse_depth" and not msgs.get("sparse_depth"):
        return "no_sparse_depth"
    return None


class Player:
    """Plays the bag through one :class:`NodeGraph` per calibration segment, scoring as it goes."""

    def __init__(self, run: RunPlan, state: RunState, report: EvaluationReport, figures_dir: Optional[Path],
                 domain_id: int, bar: Any = None) -> None:
        self.run, self.state, self.report, self.figures_dir = run, state, report, figures_dir
        self.domain_id, self.bar = domain_id, bar
        self.graph: Optional[NodeGraph] = None
        self._publish_types = publish_types(run)
        self._remaps = remaps(run)
        self._frames = iter_frames(run.bag)
        self._last_info: Optional[BagMessage] = None  # the last camera_info seen (for frames without)

    def play(self, segments: list[list[int]]) -> None:
        """Play every segment (lists of frame indices), restarting the nodes between them."""
        for seg in segments:
            self._play_segment(seg)

    def close(self) -> None:
        """Stop the running graph, if any."""
        if self.graph is not None:
            self.graph.close()
            self.graph = None

    def _play_segment(self, seg: list[int]) -> None:
        opts = self.run.opts
        first = self.run.bag.frames[seg[0]]
        self.graph = NodeGraph(segment_parameters(self.run, first.T_camera_lidar), self._remaps, self._publish_types,
                               opts.namespace, self.domain_id, self.state.on_output)
        unmatched = self.graph.wait_connected(opts.startup_timeout)
        if unmatched:
            self.report.add_error(f"topics not connected after {opts.startup_timeout:.0f} s (QoS?): {unmatched}")
        t0_wall, t0_bag = time.perf_counter(), first.image_time
        for _ in seg:
            self._play_frame(t0_wall, t0_bag)
            if self.bar:
                self.bar.update(1)
        if opts.rate > 0:
            self.state.wait_in_flight(seg, opts.frame_timeout, opts.evaluate)
        for k in seg:
            finish_frame(self.state.frames[k], self.report, self.figures_dir, self.run)
        self.close()

    def _play_frame(self, t0_wall: float, t0_bag: int) -> None:
        """Publish the next frame (or mark why it cannot be); with ``--rate 0`` wait and score it."""
        run, opts, graph = self.run, self.run.opts, self.graph  # graph: started by _play_segment
        frame, msgs = next(self._frames)
        st = self.state.frames[frame.index]
        self._fill_camera_info(msgs)
        st.has_gt = bool(msgs.get("depth_gt")) or (run.gt_source == "points" and bool(msgs.get("points")))
        reason = unpublishable(msgs, run.mode)
        if reason:
            st.skip = reason
            return
        self.state.expect(stamp_to_ns(deserialize(msgs["image"][0].rawdata, IMAGE, run.topics.image)), st)
        if opts.rate > 0:
            delay = (frame.image_time - t0_bag) / 1e9 / opts.rate - (time.perf_counter() - t0_wall)
            if delay > 0:
                time.sleep(delay)
        before = graph.health_snapshot()
        held = self._publish_frame(frame, msgs)
        st.published_at = time.perf_counter()
        if self.figures_dir is not None and frame.index < opts.max_figures:
            st.figure = {"msgs": msgs, "held": held}
        if opts.rate == 0:
            self.state.wait_frame(st, graph, before, opts.frame_timeout, opts.evaluate)
            finish_frame(st, self.report, self.figures_dir, run)

    def _fill_camera_info(self, msgs: Messages) -> None:
        """A frame without its own camera_info reuses the previous one, re-stamped."""
        if msgs.get("camera_info"):
            self._last_info = msgs["camera_info"][-1]
        elif self._last_info is not None and msgs.get("image"):
            msgs["camera_info"] = [restamped(self._last_info, msgs["image"][0])]

    def _publish(self, topic: Optional[str], msgs: list[BagMessage]) -> None:
        for m in msgs:
            self.graph.publishers[topic].publish(m.rawdata)  # type: ignore[union-attr, index]

    def _publish_frame(self, frame: Frame, msgs: Messages) -> Optional[bytes]:
        """Publish a frame's messages (ground truth first, image last); returns the held-out cloud's CDR."""
        run, topics = self.run, self.run.topics
        held_raw: Optional[bytes] = None
        if run.opts.evaluate and run.gt_source == "depth":
            self._publish(topics.depth_gt, msgs.get("depth_gt", []))
        self._publish(topics.camera_info, msgs.get("camera_info", []))
        if run.mode == "super_resolution":
            if topics.depth_lr_camera_info in self.graph.publishers:  # type: ignore[union-attr]
                self._publish(topics.depth_lr_camera_info, msgs.get("depth_lr_camera_info", []))
            self._publish(topics.depth_lr, msgs.get("depth_lr", []))
        elif run.mode == "sparse_depth":
            self._publish(topics.sparse_depth, msgs.get("sparse_depth", []))
        elif run.mode == "estimation":  # the node sees no LiDAR; every point of the scan scores it
            if topics.image_aux:  # the auxiliary view (IID-RDepth AV-LFE), before the image
                self._publish(topics.image_aux, msgs.get("image_aux", []))
            if run.opts.evaluate and run.gt_source == "points":
                for m in msgs.get("points", []):
                    held_raw = m.rawdata
                    self.graph.publishers[run.holdout_topic].publish(m.rawdata)  # type: ignore[union-attr, index]
        else:
            for m in msgs.get("points", []):
                held_raw = self._publish_points(frame, m, msgs)
        self._publish(topics.image, msgs["image"])
        return held_raw

    def _publish_points(self, frame: Frame, m: BagMessage, msgs: Messages) -> Optional[bytes]:
        """Publish one scan (less the held-out points when replay splits it) and the held-out
        points; returns their CDR (None without held-out points)."""
        run, opts, pubs = self.run, self.run.opts, self.graph.publishers  # type: ignore[union-attr]
        held_raw: Optional[bytes] = None
        data = m.rawdata
        if run.split_points:
            cloud = m.decode()
            held = holdout_mask(int(cloud.width) * int(cloud.height), opts.holdout_fraction, opts.seed, frame.index)
            held_raw = bytes(TYPESTORE.serialize_cdr(select_points(cloud, held), POINTCLOUD2))
            data = bytes(TYPESTORE.serialize_cdr(select_points(cloud, ~held), POINTCLOUD2))
            if opts.evaluate:
                pubs[run.holdout_topic].publish(held_raw)  # type: ignore[index]
        elif opts.evaluate and run.gt_source == "points":
            for h in msgs.get("points_holdout", []):
                held_raw = h.rawdata
                pubs[run.holdout_topic].publish(h.rawdata)  # type: ignore[index]
        msgs["points_published"] = [BagMessage(m.topic, m.msgtype, m.timestamp, data)]
        pubs[run.topics.points].publish(data)  # type: ignore[index]
        return held_raw
