"""replay with depth_completion_node's ``temporal`` on: frames go through the node one at a time in
recorded order, the filter's state starts fresh for each replayed bag, and on the static part of
the real KITTI raw sequence (frames 52-57, the car stands still) the published depth varies less
from frame to frame than without it. With ``temporal_ego_motion: lidar_odometry`` on the moving
part (frames 0-5, about 2 m/s) the node warps the previous depth by the scans' motion."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from depth_diffusion_ros.tools import bag_io
from depth_diffusion_ros.tools.kitti_to_bag import convert, discover_kitti
from depth_diffusion_ros.tools.replay import ReplayOptions, replay
from test_replay import read_topic, stamp

pytestmark = pytest.mark.ros
STATIC_FRAMES = slice(52, 58)
MOVING_FRAMES = slice(0, 6)


def sequence_bag(root: Path, frames: slice) -> Path:
    sequence = discover_kitti(root / "kitti_raw_2011_09_26_sequence" / "2011_09_26" / "2011_09_26_drive_unknown_sync")
    sequence.frames = sequence.frames[frames]
    out = root / f"bag_{frames.start}_{frames.stop}"
    convert(sequence, out)
    return out


@pytest.fixture(scope="module")
def static_bag(tmp_path_factory, shared_data) -> Path:
    root = tmp_path_factory.mktemp("temporal_bag")
    (root / "kitti_raw_2011_09_26_sequence").symlink_to(shared_data / "kitti_raw_2011_09_26_sequence")
    return sequence_bag(root, STATIC_FRAMES)


def run(bag: Path, out: Path, temporal: bool, **params) -> tuple[dict, list[np.ndarray], list[int]]:
    result = replay(ReplayOptions(bag=bag, output=out, backend="ip_basic", progress=False, figures=False,
                                  node_params={"temporal": temporal, "temporal_max_gap": 0.5, **params}))
    msgs = read_topic(out / "output_bag", "/depth/image")
    return result.report, [bag_io.depth_msg_to_array(m) for m in msgs], [stamp(m) for m in msgs]


def frame_to_frame_change(depths: list[np.ndarray]) -> float:
    """Median |depth_t - depth_{t-1}| (m) over pixels with depth in both frames, all pairs."""
    diffs = [np.abs(b - a)[(a > 0) & (b > 0)] for a, b in zip(depths, depths[1:])]
    return float(np.median(np.concatenate(diffs)))


@pytest.fixture(scope="module")
def runs(static_bag, tmp_path_factory):
    root = tmp_path_factory.mktemp("temporal_replay")
    return {name: run(static_bag, root / name, temporal)
            for name, temporal in (("single", False), ("temporal", True), ("temporal_again", True))}


def test_every_frame_in_order(runs):
    for report, depths, stamps in runs.values():
        assert report["n_frames"] == len(depths) == 6 and report["skipped"] == {}
        assert stamps == sorted(stamps) and len(set(stamps)) == 6


def test_state_starts_fresh_for_each_bag(runs):
    _, single, _ = runs["single"]
    _, temporal, _ = runs["temporal"]
    _, again, _ = runs["temporal_again"]
    # the first frame has no previous output: the single-frame result, in both temporal replays
    np.testing.assert_array_equal(temporal[0], single[0])
    # a second replay of the bag starts from an empty state, so it repeats the first one exactly
    for a, b in zip(temporal, again):
        np.testing.assert_array_equal(a, b)
    # and the filter did act on the later frames
    assert any(not np.array_equal(t, s) for t, s in zip(temporal[1:], single[1:]))


def test_static_scene_is_steadier_with_temporal(runs):
    single_report, single, _ = runs["single"]
    temporal_report, temporal, _ = runs["temporal"]
    assert frame_to_frame_change(temporal) < 0.8 * frame_to_frame_change(single)
    # steadier without being worse against the held-out LiDAR points (within 5 %)
    assert temporal_report["mean"]["rmse_mm"] <= 1.05 * single_report["mean"]["rmse_mm"]


def test_lidar_odometry_warps_on_a_moving_car(static_bag, tmp_path):
    bag = sequence_bag(static_bag.parent, MOVING_FRAMES)
    single_report, single, _ = run(bag, tmp_path / "single", False)
    static_report, static, _ = run(bag, tmp_path / "static", True)
    odo_report, odometry, _ = run(bag, tmp_path / "odometry", True, temporal_ego_motion="lidar_odometry")
    assert odo_report["n_frames"] == 6 and odo_report["skipped"] == {}
    np.testing.assert_array_equal(odometry[0], single[0])  # no previous frame yet
    # from the second frame on, the previous depth is warped by the motion: not the static result
    assert all(not np.array_equal(o, s) for o, s in zip(odometry[1:], static[1:]))
    assert odo_report["mean"]["rmse_mm"] <= 1.05 * single_report["mean"]["rmse_mm"]


def test_monocular_estimation_with_temporal_on_the_static_frames(static_bag, tmp_path):
    """depth_estimation_node (the shipped monocular model's ONNX export, ONNX Runtime) with
    ``temporal``: the image-only estimate flickers less on the static frames, no less accurate."""
    from depth_diffusion_ros.nodes.depth_estimation_node import SHIPPED_WEIGHTS

    runs = {}
    for temporal in (False, True):
        out = tmp_path / f"estimation_{temporal}"
        result = replay(ReplayOptions(bag=static_bag, output=out, pipeline="estimation", backend="onnxruntime",
                                      progress=False, figures=False,
                                      node_params={"model_path": str(SHIPPED_WEIGHTS / "onnx"), "temporal": temporal}))
        depths = [bag_io.depth_msg_to_array(m) for m in read_topic(out / "output_bag", "/depth/image")]
        runs[temporal] = (result.report, [np.nan_to_num(d) for d in depths])
    (single_report, single), (temporal_report, temporal) = runs[False], runs[True]
    assert temporal_report["n_frames"] == 6 and temporal_report["skipped"] == {}
    np.testing.assert_array_equal(temporal[0], single[0])
    assert frame_to_frame_change(temporal) < 0.8 * frame_to_frame_change(single)
    assert temporal_report["mean"]["abs_rel"] <= 1.05 * single_report["mean"]["abs_rel"]


def test_temporal_prior_feeds_the_previous_depth_into_the_shipped_model(static_bag, tmp_path):
    """depth_completion_node with the shipped DiffusionDepth export (ONNX Runtime) and
    ``temporal_prior``: from the second frame on, the filter's previous depth replaces the model's
    first classical fill, so the published depth differs from the filter alone; without the LiDAR
    veto, on the static frames it agrees better with the held-out LiDAR points
    (benchmarks/bench_temporal.py: about 10 % lower RMSE on frames 52-65), with the veto (default)
    the pixels near disagreeing returns keep the single-frame fill, so it lies in between."""
    reports, depths = {}, {}
    for name, params in (("filter", {}), ("prior", {"temporal_prior": True}),
                         ("no_veto", {"temporal_prior": True, "temporal_prior_lidar_veto": False})):
        out = tmp_path / name
        result = replay(ReplayOptions(bag=static_bag, output=out, backend="onnxruntime", progress=False, figures=False,
                                      node_params={"temporal": True, **params}))
        reports[name] = result.report
        depths[name] = [np.nan_to_num(bag_io.depth_msg_to_array(m)) for m in read_topic(out / "output_bag", "/depth/image")]
    rmse = {name: r["mean"]["rmse_mm"] for name, r in reports.items()}
    for name in ("prior", "no_veto"):
        assert reports[name]["n_frames"] == 6 and reports[name]["skipped"] == {}
        np.testing.assert_array_equal(depths[name][0], depths["filter"][0])  # no previous depth yet
        assert all(not np.array_equal(p, f) for p, f in zip(depths[name][1:], depths["filter"][1:]))
    assert all(not np.array_equal(p, f) for p, f in zip(depths["prior"][1:], depths["no_veto"][1:]))
    assert rmse["no_veto"] < rmse["prior"] <= rmse["filter"], rmse
