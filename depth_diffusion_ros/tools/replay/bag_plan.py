"""What replay reads from the bag before publishing: topics per role, frames, calibration.

:func:`plan_bag` reads the bag once (topics, the frame each message belongs to, the camera <-
LiDAR transform of each frame); :func:`iter_frames` reads it again frame by frame while
publishing; :func:`calibration_segments` groups consecutive frames that share a transform.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from depth_diffusion_ros.geometry.transforms import lookup_static_transform
from depth_diffusion_ros.tools.bag_io import (
    CAMERA_INFO,
    IMAGE,
    POINTCLOUD2,
    TF_MESSAGE,
    BagError,
    BagMessage,
    BagReader,
    tf_message_to_transforms,
)
from depth_diffusion_ros.tools.replay.options import ReplayError

#: (parent, child, T_parent_child (4, 4)) edges of one /tf_static message.
TfEdges = list[tuple[str, str, np.ndarray]]


@dataclass
class Topics:
    """Bag topics used by replay (None = absent)."""

    image: str
    camera_info: str
    points: Optional[str] = None
    sparse_depth: Optional[str] = None
    depth_gt: Optional[str] = None
    points_holdout: Optional[str] = None
    tf_static: Optional[str] = None
    depth_lr: Optional[str] = None  # super-resolution input (low-resolution depth image)
    depth_lr_camera_info: Optional[str] = None  # its CameraInfo (optional)
    image_aux: Optional[str] = None  # estimation: the auxiliary view (IID-RDepth AV-LFE; optional)

    def roles(self) -> dict[str, str]:
        """topic -> role for the topics present."""
        return {t: r for r, t in vars(self).items() if t}


_EXPECTED = {"image": IMAGE, "camera_info": CAMERA_INFO, "points": POINTCLOUD2, "sparse_depth": IMAGE,
             "depth_gt": IMAGE, "points_holdout": POINTCLOUD2, "tf_static": TF_MESSAGE,
             "depth_lr": IMAGE, "depth_lr_camera_info": CAMERA_INFO, "image_aux": IMAGE}


def detect_topics(available: dict[str, tuple[str, int]], overrides: Optional[dict[str, Optional[str]]] = None,
                  pipeline: str = "completion") -> Topics:
    """Choose the bag topics for each role.

    ``available``: topic -> (msgtype, count) from the bag. ``overrides``: role -> topic given by the
    user. Defaults: names containing ``image_raw``/``image_rect``/``image`` (image), ``camera_info``,
    PointCloud2 topics (points; ``*_holdout`` for held-out points), ``sparse_depth``, ``depth_gt``
    or ``groundtruth``, ``/tf_static``; for ``pipeline="super_resolution"``: ``depth_lr`` (an Image
    topic whose name contains ``depth_lr``) and ``depth_lr/camera_info`` (optional); for
    ``pipeline="estimation"``: ``image_aux`` (optional; an Image topic whose name contains it).

    Raises:
        ReplayError: a needed topic is missing or has the wrong type; the message lists the bag's
            topics.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v}
    listing = ", ".join(f"{t} ({m})" for t, (m, _) in sorted(available.items())) or "none"

    def of_type(msgtype: str) -> list[str]:
        return sorted(t for t, (m, _) in available.items() if m == msgtype)

    def pick(role: str, candidates: list[str]) -> Optional[str]:
        if role in overrides:
            topic = overrides[role]
            if topic not in available:
                raise ReplayError(f"--{role.replace('_', '-')}-topic {topic} is not in the bag (topics: {listing})")
            if available[topic][0] != _EXPECTED[role]:
                raise ReplayError(f"topic {topic} has type {available[topic][0]}, {role} needs {_EXPECTED[role]}")
            return topic
        return candidates[0] if candidates else None

    images = of_type(IMAGE)
    gt = pick("depth_gt", [t for t in images if "depth_gt" in t or "groundtruth" in t])
    sparse = pick("sparse_depth", [t for t in images if "sparse" in t or "velodyne_raw" in t])
    depth_lr = depth_lr_info = None
    if pipeline == "super_resolution":
        depth_lr = pick("depth_lr", [t for t in images if "depth_lr" in t])
        if depth_lr is None:
            raise ReplayError(f"the super-resolution pipeline needs a low-resolution depth topic (an Image topic "
                              f"named *depth_lr*, or --depth-lr-topic); topics: {listing}")
        depth_lr_info = pick("depth_lr_camera_info", [t for t in of_type(CAMERA_INFO) if t == f"{depth_lr}/camera_info"
                                                       or t == f"{depth_lr.rsplit('/', 1)[0]}/depth_lr_camera_info"])
    aux_candidates = [t for t in images if "image_aux" in t]
    image_aux = pick("image_aux", aux_candidates) if pipeline == "estimation" else None
    colour = [t for t in images if t not in (gt, sparse, depth_lr) and "depth" not in t and t not in aux_candidates]
    colour.sort(key=lambda t: (0 if t.endswith(("image_raw", "image_rect_color", "image_rect")) else 1, t))
    image = pick("image", colour)
    if image is None:
        raise ReplayError(f"the bag has no colour image topic (sensor_msgs/msg/Image); topics: {listing}")
    infos = [t for t in of_type(CAMERA_INFO) if t != depth_lr_info]
    same_ns = [t for t in infos if t.rsplit("/", 1)[0] == image.rsplit("/", 1)[0]]
    camera_info = pick("camera_info", same_ns or infos)
    if camera_info is None:
        raise ReplayError(f"the bag has no sensor_msgs/msg/CameraInfo topic for {image}; topics: {listing}")
    clouds = of_type(POINTCLOUD2)
    points = pick("points", [t for t in clouds if not t.endswith("_holdout")])
    holdout = pick("points_holdout", [t for t in clouds if points and t == f"{points}_holdout"])
    tf = pick("tf_static", [t for t in of_type(TF_MESSAGE) if t.endswith("tf_static")])
    if pipeline == "completion" and points is None and sparse is None:
        raise ReplayError(f"the bag has neither LiDAR points (PointCloud2) nor a sparse depth image; topics: {listing}")
    return Topics(image, camera_info, points, sparse, gt, holdout, tf, depth_lr, depth_lr_info, image_aux)


@dataclass
class Frame:
    """Messages of one camera frame. ``members``: role -> message indices in bag order."""

    index: int
    image_time: int
    members: dict[str, list[int]] = field(default_factory=dict)
    T_camera_lidar: Optional[np.ndarray] = None

    @property
    def last_index(self) -> int:
        return max(i for idx in self.members.values() for i in idx)


@dataclass
class BagPlan:
    """Everything replay needs to know about the bag before publishing."""

    path: Path
    topics: Topics
    frames: list[Frame]
    n_messages: int  # readable messages (fewer than the bag says when it is truncated)
    camera_frame: str
    lidar_frame: Optional[str]
    errors: list[str] = field(default_factory=list)
    ignored_topics: dict[str, str] = field(default_factory=dict)
    unreadable_frames: int = 0  # images the metadata lists but the damaged file does not give
    calibration: Optional[str] = None  # where T_camera_lidar came from


@dataclass
class _BagScan:
    """One pass over the bag: (role, log time) per message index, /tf_static edges, frame ids."""

    entries: list[tuple[str, int]] = field(default_factory=list)
    tf_edges: list[tuple[int, TfEdges]] = field(default_factory=list)
    camera_frame: str = ""
    lidar_frame: Optional[str] = None
    errors: list[str] = field(default_factory=list)


def _scan_messages(reader: BagReader, roles: dict[str, str]) -> _BagScan:
    """Read every message of ``roles``; a truncated or corrupt file ends the scan (error kept)."""
    scan = _BagScan()
    try:
        for msg in reader.messages(roles):
            role = roles[msg.topic]
            scan.entries.append((role, msg.timestamp))
            if role == "tf_static":
                scan.tf_edges.append((msg.timestamp, tf_message_to_transforms(msg.decode())))
            elif role == "camera_info" and not scan.camera_frame:
                scan.camera_frame = msg.decode().header.frame_id
            elif role == "points" and scan.lidar_frame is None:
                scan.lidar_frame = msg.decode().header.frame_id
    except BagError as exc:
        scan.errors.append(str(exc))
    return scan


def _group_frames(entries: list[tuple[str, int]], image_times: list[int]) -> list[Frame]:
    """One frame per image; every other message goes to the image nearest in log time."""
    frames = [Frame(i, t) for i, t in enumerate(image_times)]
    for idx, (role, t) in enumerate(entries):
        if role == "tf_static":
            continue
        if role == "image":
            k = bisect.bisect_left(image_times, t)
            while image_times[k] != t:
                k += 1
        else:
            k = bisect.bisect_left(image_times, t)
            if k == len(image_times) or (k > 0 and t - image_times[k - 1] <= image_times[k] - t):
                k -= 1
        frames[k].members.setdefault(role, []).append(idx)
    # the last frame may be incomplete when the bag is truncated: keep it only if it has an image
    return [f for f in frames if "image" in f.members]


def _attach_calibration(path: Path | str, frames: list[Frame], scan: _BagScan,
                        T_camera_lidar: Optional[np.ndarray]) -> Optional[str]:
    """Set each frame's T_camera_lidar (the /tf_static in force at its image, else the parameter).

    Returns where the transform came from. Raises ReplayError when a frame has neither.
    """
    calibration = None
    for f in frames:
        latest: dict[tuple[str, str], np.ndarray] = {}  # a later /tf_static replaces an edge
        for ts, es in scan.tf_edges:
            if ts <= f.image_time or not latest:
                latest.update({(parent, child): T for parent, child, T in es})
        edges = [(parent, child, T) for (parent, child), T in latest.items()]
        f.T_camera_lidar = (lookup_static_transform(edges, scan.camera_frame, scan.lidar_frame or "")
                            if edges else None)
        if f.T_camera_lidar is not None:
            calibration = "bag /tf_static"
        elif T_camera_lidar is not None:  # the bag has none: the parameter's
            f.T_camera_lidar = np.asarray(T_camera_lidar, dtype=np.float64).reshape(4, 4)
            calibration = "T_camera_lidar parameter"
        else:
            raise ReplayError(
                f"bag {path}: no /tf_static transform {scan.camera_frame} <- {scan.lidar_frame}; give "
                "T_camera_lidar for depth_completion_node in --params-file"
            )
    return calibration


def _count_lost(path: Path | str, scan: _BagScan, readable: int, declared: Optional[int]) -> int:
    """Frames a damaged bag lost (0 when intact or unknown); says so in ``scan.errors``."""
    if not scan.errors:
        return 0
    if declared is None:
        scan.errors.append(f"bag {path}: {readable} frame(s) readable before the damage; how many were lost is "
                           "unknown (no metadata.yaml or MCAP summary gives the count)")
        return 0
    lost = max(0, declared - readable)
    scan.errors.append(f"bag {path}: {readable} of {declared} frame(s) readable, {lost} lost to the damage")
    return lost


def plan_bag(path: Path | str, overrides: Optional[dict[str, Optional[str]]] = None,
             T_camera_lidar: Optional[np.ndarray] = None, max_frames: Optional[int] = None,
             pipeline: str = "completion") -> BagPlan:
    """Read the bag once: topics, frame grouping and the camera <- LiDAR transform per frame.

    The transform comes from the bag's ``/tf_static`` (the data's own calibration, per frame);
    ``T_camera_lidar`` (a parameter from ``--params-file``) is used only when the bag has none.

    Messages of every other role are attached to the image nearest in log time. A truncated or
    corrupt bag keeps the frames read before the damage (an MCAP file rosbags cannot open is read
    with the mcap stream reader; see :mod:`~depth_diffusion_ros.tools.bag_reader`): ``errors``
    says what was damaged and how many frames were lost (``unreadable_frames``). ``path`` may
    also be a single ``.mcap`` file.

    Raises:
        ReplayError / BagError: missing or unreadable bag, missing topics, no image, no transform
            for LiDAR input.
    """
    with BagReader(path) as reader:
        topics = detect_topics(reader.topics, overrides, pipeline)
        if pipeline == "super_resolution":  # LiDAR is not an input of super-resolution
            topics.points = topics.points_holdout = topics.tf_static = topics.sparse_depth = None
        elif pipeline == "estimation":  # the image alone is the input; the LiDAR only scores it
            topics.points_holdout = topics.sparse_depth = None
            if topics.depth_gt:
                topics.points = topics.tf_static = None
        roles = topics.roles()
        ignored = {t: m for t, (m, _) in reader.topics.items() if t not in roles}
        declared_images = reader.topics[topics.image][1] if reader.counts_known else None
        scan = _scan_messages(reader, roles)
        if reader.salvaged:
            scan.errors.insert(0, f"bag {path}: rosbags cannot open it ({reader.salvaged}); read with the mcap "
                                  "stream reader up to the damage")
    image_times = sorted(t for r, t in scan.entries if r == "image")
    if not image_times:
        raise ReplayError(f"bag {path}: no readable message on the image topic {topics.image}"
                          + (f" ({scan.errors[-1]})" if scan.errors else ""))
    frames = _group_frames(scan.entries, image_times)
    if max_frames:
        frames = frames[:max_frames]
    calibration = _attach_calibration(path, frames, scan, T_camera_lidar) if topics.points else None
    unreadable = _count_lost(path, scan, len(image_times), declared_images)
    return BagPlan(Path(path), topics, frames, len(scan.entries), scan.camera_frame, scan.lidar_frame, scan.errors,
                   ignored, unreadable, calibration)


def iter_frames(plan: BagPlan) -> Iterator[tuple[Frame, dict[str, list[BagMessage]]]]:
    """Yield ``(frame, role -> messages)`` in order, reading the bag a second time.

    Holds only the messages of frames not yet complete. Stops quietly at the damage of a
    truncated bag (``plan_bag`` has recorded it).
    """
    by_index: dict[int, tuple[int, str]] = {}
    for k, f in enumerate(plan.frames):
        for role, idx in f.members.items():
            for i in idx:
                by_index[i] = (k, role)
    pending: dict[int, dict[str, list[BagMessage]]] = {}
    next_frame = 0
    roles = plan.topics.roles()
    with BagReader(plan.path) as reader:
        try:
            for i, msg in enumerate(reader.messages(roles)):
                if i >= plan.n_messages:
                    break
                if i in by_index:
                    k, role = by_index[i]
                    pending.setdefault(k, {}).setdefault(role, []).append(msg)
                while next_frame < len(plan.frames) and plan.frames[next_frame].last_index <= i:
                    yield plan.frames[next_frame], pending.pop(next_frame, {})
                    next_frame += 1
                if next_frame >= len(plan.frames):
                    return
        except BagError:
            return


def _same_T(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> bool:  # noqa: N802
    if a is None or b is None:
        return a is None and b is None
    return bool(np.allclose(a, b, atol=1e-9))


def calibration_segments(frames: list[Frame]) -> list[list[int]]:
    """Indices of consecutive frames with the same T_camera_lidar (the nodes restart between them)."""
    segments: list[list[int]] = []
    for k, f in enumerate(frames):
        if segments and _same_T(frames[segments[-1][0]].T_camera_lidar, f.T_camera_lidar):
            segments[-1].append(k)
        else:
            segments.append([k])
    return segments
