"""depth_estimation_node with a DenseDepth export through ONNX Runtime, torch blocked in the node
process (the stand-in ``torch`` package of test_node_depth_estimation): the same backend name
runs the one-shot regressor because ``model_path`` holds one. The test process builds a small
DenseDepth export (0 training steps: plumbing, not accuracy), publishes the real KITTI raw frame
2011_09_26_drive_0001 #5 and the same frame resized by 0.5 over loopback DDS, and compares the
published depth with the estimation pipeline run in-process; ``num_inference_steps`` is ignored
with a logged note, ``depth/uncertainty`` stays silent, and ``ensemble_size`` 2 stops the node
with the reason."""
from __future__ import annotations

import numpy as np
import pytest

from depth_diffusion_ros.ros import depth_from_image

from node_harness import NodeProcess
from test_node_depth_estimation import Rig  # the estimation node's rig: backend onnxruntime, full/half frames
from test_node_depth_estimation import no_torch as _no_torch  # noqa: F401 - the torch-blocking fixture

pytestmark = pytest.mark.ros

MODULE = "depth_diffusion_ros.nodes.depth_estimation_node"


@pytest.fixture(scope="module")
def densedepth_export(tmp_path_factory, shared_data):
    pytest.importorskip("torch")
    import torch

    from runtime_fixtures import build_small_densedepth_export

    torch.set_num_threads(1)
    return build_small_densedepth_export(tmp_path_factory.mktemp("densedepth_node"), shared_data)[2]


def test_densedepth_export_onnxruntime_without_torch(kitti_raw_dir, densedepth_export, _no_torch):  # noqa: F811
    from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDenseDepthBackend
    from depth_diffusion_ros.inference.pipelines import EstimationPipeline

    rig = Rig(kitti_raw_dir, {"model_path": str(densedepth_export), "num_inference_steps": 4})
    try:
        rig.client.wait_matched(subscriptions=[rig.uncertainty], timeout=60)
        rig.warm_up(timeout=120)
        rig.proc.wait_for_log(r"num_inference_steps=4 ignored: DenseDepth is a one-shot regressor", timeout=10)
        _, full_msg = rig.send(1.0)
        _, half_msg = rig.send(0.5)
        full, half = depth_from_image(full_msg), depth_from_image(half_msg)
        assert full.shape == (375, 1242) and half.shape == (188, 621)
        pipeline = EstimationPipeline(OnnxRuntimeDenseDepthBackend(densedepth_export), resize_back=True)
        np.testing.assert_allclose(full, pipeline(rig.frame.rgb, rig.frame.intrinsics).depth, atol=1e-4, rtol=1e-5)
        assert np.isfinite(full).all() and 7.0 < float(np.median(full)) < 40.0
        # the half-size frame (half the focal length) is brought to the same canonical camera
        assert abs(np.median(half) / np.median(full) - 1.0) < 0.03
        rig.client.spin_for(1.0)
        assert rig.uncertainty.messages == [], "a one-shot regressor has no uncertainty to publish"
        assert not _no_torch.exists(), "the node tried to import torch"
    finally:
        rig.client.destroy()
        rig.proc.cleanup()


def test_ensemble_of_a_one_shot_model_stops_the_node_with_the_reason(densedepth_export, _no_torch):  # noqa: F811
    proc = NodeProcess(MODULE, {"backend": "onnxruntime", "model_path": str(densedepth_export), "ensemble_size": 2})
    try:
        code = proc.wait_exit(timeout=60)
        log = proc.log()
        assert code != 0 and "Traceback" not in log, log[-2000:]
        assert "ensemble_size=2 is not possible: DenseDepth is a one-shot regressor" in log, log[-2000:]
    finally:
        proc.cleanup()
