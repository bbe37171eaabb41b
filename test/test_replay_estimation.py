"""replay --pipeline estimation: depth_estimation_node on the image alone, over loopback DDS, on
real KITTI bags; scored against depth_gt where the bag has it, else every LiDAR point of the
scan (the node never sees them), under the Eigen protocol (Garg crop, 80 m cap)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from depth_diffusion_ros.baselines.row_median import RowMedianDepth
from depth_diffusion_ros.evaluation.metrics import depth_metrics, garg_crop_mask
from depth_diffusion_ros.geometry.projection import project_lidar_to_depth
from depth_diffusion_ros.nodes.depth_estimation_node import ROW_MEDIAN_REFERENCE, SHIPPED_WEIGHTS
from depth_diffusion_ros.tools import bag_io
from depth_diffusion_ros.tools.kitti_to_bag import convert, discover_kitti
from depth_diffusion_ros.tools.replay import ReplayError, ReplayOptions, replay
from depth_diffusion_ros.tools.replay.bag_plan import plan_bag
from test_replay import read_topic

pytestmark = pytest.mark.ros
REFERENCE = ROW_MEDIAN_REFERENCE


@pytest.fixture(scope="module")
def bags(tmp_path_factory, kitti_raw_dir, kitti_object_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("estimation_bags")
    convert(discover_kitti(kitti_raw_dir, start_time_s=7.0), root / "raw")
    convert(discover_kitti(kitti_object_dir), root / "object")
    return {"raw": root / "raw", "object": root / "object"}


def eigen(pred: np.ndarray, gt: np.ndarray) -> dict:
    return depth_metrics(pred, gt, (gt > 0) & garg_crop_mask(*gt.shape), max_depth=80.0)


def test_scored_against_every_lidar_point_the_node_never_sees(bags, tmp_path):
    out = tmp_path / "out"
    result = replay(ReplayOptions(bag=bags["object"], output=out, pipeline="estimation", backend="row_median",
                                  node_params={"model_path": str(REFERENCE)}, progress=False))
    report = result.report
    assert report["n_frames"] == 2 and report["skipped"] == {}
    meta = report["meta"]
    assert meta["ground_truth"] == "points" and meta["input"] == "estimation"
    assert meta["ground_truth_topic"] == "/kitti/velo/pointcloud" and meta["holdout_fraction"] is None
    # recompute frame 1 (object 000001): the published depth against the whole scan, projected
    preds = read_topic(out / "output_bag", "/depth/image")
    clouds = read_topic(bags["object"], "/kitti/velo/pointcloud")
    infos = read_topic(bags["object"], "/kitti/camera_color_left/camera_info")
    intr = bag_io.camera_info_msg_to_intrinsics(infos[1])
    pred = bag_io.depth_msg_to_array(preds[1])
    T = plan_bag(bags["object"]).frames[1].T_camera_lidar  # frame 1's /tf_static, as replay reads it
    gt = project_lidar_to_depth(bag_io.pointcloud_msg_to_array(clouds[1]), T, intr)
    expected = eigen(pred, gt)
    frame = report["frames"][1]
    assert frame["abs_rel"] == pytest.approx(expected["abs_rel"], rel=1e-6)
    assert frame["n_valid"] == expected["n_valid"] > 8000  # every point in the crop, not a 10 % hold-out
    # and it is the row-median reference's own prediction for that camera
    np.testing.assert_allclose(pred, RowMedianDepth.load(REFERENCE).predict(intr), rtol=1e-6)


def test_shipped_checkpoint_through_onnxruntime_matches_the_in_process_score(bags, tmp_path, onnx_cache):
    pytest.importorskip("torch")
    from training.monocular import kitti_sets, model_predictor, score_sets

    result = replay(ReplayOptions(bag=bags["raw"], output=tmp_path / "out", pipeline="estimation",
                                  backend="onnxruntime", node_params={"model_path": str(SHIPPED_WEIGHTS)},
                                  progress=False, onnx_cache=onnx_cache))
    report = result.report
    assert report["meta"]["ground_truth"] == "depth" and report["n_frames"] == 1
    assert report["meta"]["model_export"]["sizes"] == "640x192"  # the padded canonical size, not 1248x384
    predict, _ = model_predictor(SHIPPED_WEIGHTS)
    ours = score_sets(predict, {"raw": kitti_sets()["raw 0001/5"]})["raw"]["mean"]
    assert report["mean"]["abs_rel"] == pytest.approx(ours["abs_rel"], abs=2e-3)
    assert report["mean"]["delta1"] == pytest.approx(ours["delta1"], abs=5e-3)


def test_estimation_needs_something_to_score_against(tmp_path, shared_data):
    from depth_diffusion_ros.tools.demo.data import write_motorcycle_bag

    bag = write_motorcycle_bag(tmp_path / "mb", 1, 64, 4, 0)  # has depth_gt: scores
    replay(ReplayOptions(bag=bag, output=tmp_path / "ok", pipeline="estimation", backend="row_median",
                         node_params={"model_path": str(REFERENCE)}, progress=False))
    with pytest.raises(ReplayError, match="has no parameter 'input'"):
        replay(ReplayOptions(bag=bag, output=tmp_path / "bad", pipeline="estimation", backend="row_median",
                             node_params={"model_path": str(REFERENCE), "input": "points"}, progress=False))


def test_densedepth_export_through_onnxruntime_scores_the_bag(bags, tmp_path, shared_data):
    """A DenseDepth export (small, 0 training steps: plumbing) through backend onnxruntime: the
    node's score of the bag is the estimation pipeline's on the same frame scored in-process
    (training.monocular.score_sets, Eigen protocol); the checkpoint itself is exported by replay
    into the ONNX cache for the padded canonical size and scores the same."""
    pytest.importorskip("torch")
    from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDenseDepthBackend
    from depth_diffusion_ros.inference.pipelines import EstimationPipeline
    from runtime_fixtures import build_small_densedepth_export
    from training.monocular import kitti_sets, score_sets

    _, ckpt, onnx_dir = build_small_densedepth_export(tmp_path / "densedepth", shared_data)
    report = replay(ReplayOptions(bag=bags["raw"], output=tmp_path / "out", pipeline="estimation",
                                  backend="onnxruntime", node_params={"model_path": str(onnx_dir)},
                                  progress=False)).report
    assert report["meta"]["ground_truth"] == "depth" and report["n_frames"] == 1 and report["skipped"] == {}
    pipeline = EstimationPipeline(OnnxRuntimeDenseDepthBackend(onnx_dir), resize_back=True)
    ours = score_sets(lambda rgb, intr: pipeline(rgb, intr).depth, {"raw": kitti_sets()["raw 0001/5"]})["raw"]["mean"]
    assert report["mean"]["abs_rel"] == pytest.approx(ours["abs_rel"], abs=2e-3)
    assert report["mean"]["delta1"] == pytest.approx(ours["delta1"], abs=5e-3)
    cached = replay(ReplayOptions(bag=bags["raw"], output=tmp_path / "out_ckpt", pipeline="estimation",
                                  backend="onnxruntime", node_params={"model_path": str(ckpt)}, progress=False,
                                  onnx_cache=tmp_path / "cache")).report
    assert cached["meta"]["model_export"]["sizes"] == "640x192"  # the padded canonical size
    assert (Path(cached["meta"]["model_export"]["onnx"]) / "densedepth.onnx").is_file()
    assert cached["mean"]["abs_rel"] == pytest.approx(report["mean"]["abs_rel"], abs=1e-5)
