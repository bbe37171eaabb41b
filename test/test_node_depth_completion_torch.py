"""depth_completion_node with a learned backend (torch, tiny untrained DiffusionDepth checkpoint)
as a separate process: backend options flow from parameters, and an ensemble publishes
``depth/uncertainty``. The model is untrained, so only shapes, frames and validity are checked.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from depth_diffusion_ros.ros import depth_from_image, image_to_array  # noqa: E402

from node_harness import KittiFrame, NodeProcess, RosClient  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.torch, pytest.mark.slow]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from depth_diffusion_ros.models.checkpoint import save_checkpoint
    from depth_diffusion_ros.models.config import DiffusionDepthConfig
    from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth

    torch.manual_seed(0)
    cfg = DiffusionDepthConfig(
        backbone="test_efficientnet", neck_channels=8, latent_channels=4, latent_stride=8,
        decoder_channels=8, denoiser_channels=8, denoiser_channel_mult=(1, 2), time_embed_dim=16,
        sparse_channels=8, num_inference_steps=3, max_depth=80.0,
    )
    path = tmp_path_factory.mktemp("ckpt") / "diffusion_depth"
    save_checkpoint(DiffusionDepth(cfg), path)
    return path


def test_torch_backend_ensemble_publishes_uncertainty(kitti_raw_dir, checkpoint):
    frame = KittiFrame(kitti_raw_dir)
    proc = NodeProcess("depth_diffusion_ros.nodes.depth_completion_node", {
        "backend": "torch", "model_path": str(checkpoint), "num_inference_steps": 2, "ensemble_size": 2,
        "device": "cpu", "seed": 3, "processing_width": 311, "processing_height": 94,
        "reliability": "reliable", "log_throttle": 0.0,
    })
    client = RosClient("torch_node_test_client")
    try:
        pubs = [client.publisher(Image, "image"), client.publisher(CameraInfo, "camera_info"),
                client.publisher(Image, "sparse_depth")]
        depth = client.subscribe(Image, "depth/image")
        unc = client.subscribe(Image, "depth/uncertainty")
        client.wait_matched(pubs, [depth, unc], timeout=90)
        proc.wait_for_log(r"backend torch \{.*'model_path'.*'num_inference_steps': 2, 'ensemble_size': 2, "
                          r"'device': 'cpu', 'seed': 3\}", timeout=60)
        answer = None
        for k in range(10):  # resend until discovery has matched both ways
            t = 4000.0 + k
            for pub, msg in zip(pubs, (frame.image(t), frame.camera_info(t), frame.sparse_image(t))):
                pub.publish(msg)
            try:
                answer = client.wait_for(lambda: unc.messages and depth.messages, timeout=15, what="outputs")
                break
            except AssertionError:
                continue
        assert answer, proc.log()
        d, u = depth.messages[0], unc.messages[0]
        assert d.header == u.header and u.header.frame_id == KittiFrame.CAMERA_FRAME
        assert u.encoding == "32FC1" and (u.width, u.height) == (311, 94)
        dm, um = depth_from_image(d), image_to_array(u)
        valid = dm > 0
        assert valid.any()
        assert np.isnan(um[~valid]).all() and np.all(um[valid & np.isfinite(um)] >= 0)
        assert np.nanmax(um) > 0  # two samples of a random model differ
    finally:
        client.destroy()
        proc.cleanup()
