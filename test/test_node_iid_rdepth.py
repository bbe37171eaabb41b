"""depth_estimation_node with the shipped IID-RDepth export through ONNX Runtime (torch blocked):
with ``use_image_aux`` it synchronises ``image_aux`` with ``image`` and ``camera_info`` and the
published depth is the estimation pipeline's with that auxiliary view (the AV-LFE path); without
it the node runs on the image alone. Real KITTI raw frame 0001 #5 over loopback DDS, its stereo
partner (camera 3) as the auxiliary view."""
from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image

from depth_diffusion_ros.ros import array_to_image, depth_from_image

from node_harness import DepthNodeRig, KittiFrame, diagnostic_values, stamp_header
from test_node_depth_estimation import no_torch as _no_torch  # noqa: F401 - the torch-blocking fixture

pytestmark = pytest.mark.ros

MODULE = "depth_diffusion_ros.nodes.depth_estimation_node"
IID_WEIGHTS = Path(__file__).resolve().parents[1] / "depth_diffusion_ros" / "weights" / "iid_rdepth_kitti"
_stamps = itertools.count(700)


class Rig(DepthNodeRig):
    def __init__(self, kitti_raw_dir, use_aux: bool) -> None:
        self.frame = KittiFrame(kitti_raw_dir)
        bgr = cv2.imread(str(Path(kitti_raw_dir) / "raw/sync_rect/cam_03.png"), cv2.IMREAD_COLOR)
        self.aux = np.ascontiguousarray(bgr[:, :, ::-1])
        inputs = [(Image, "image"), (CameraInfo, "camera_info")] + ([(Image, "image_aux")] if use_aux else [])
        super().__init__(MODULE, {"backend": "onnxruntime", "reliability": "reliable", "providers": ["cpu"],
                                  "model_path": str(IID_WEIGHTS / "onnx"), "use_image_aux": use_aux},
                         "iid_rdepth_test_client", inputs)
        self.use_aux = use_aux

    def send_good(self, timeout: float = 30.0):
        t = float(next(_stamps))
        f = self.frame
        msgs = [f.image(t), f.camera_info(t)]
        if self.use_aux:
            msgs.append(array_to_image(self.aux, "rgb8", stamp_header(f.CAMERA_FRAME, t)))
        self.publish(*msgs)
        return t, self.wait_depth(t, timeout=timeout)


def _expected(frame, aux=None):
    from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDiffusionDepthBackend
    from depth_diffusion_ros.inference.pipelines import EstimationPipeline

    pipeline = EstimationPipeline(OnnxRuntimeDiffusionDepthBackend(IID_WEIGHTS / "onnx"), resize_back=True)
    assert pipeline.uses_aux
    return pipeline(frame.rgb, frame.intrinsics, rgb_aux=aux).depth


@pytest.mark.parametrize("use_aux", [True, False])
def test_image_aux_is_synchronised_and_used(kitti_raw_dir, _no_torch, use_aux):  # noqa: F811 - the fixture
    rig = Rig(kitti_raw_dir, use_aux)
    try:
        rig.warm_up(timeout=120)
        _, msg = rig.send_good()
        depth = depth_from_image(msg)
        assert depth.shape == (375, 1242) and np.isfinite(depth).all()
        want = _expected(rig.frame, rig.aux if use_aux else None)
        np.testing.assert_allclose(depth, want, atol=1e-3, rtol=1e-4)
        other = _expected(rig.frame, None if use_aux else rig.aux)
        assert np.abs(want - other).max() > 1e-3  # with and without the auxiliary view differ
        rig.client.wait_for(lambda: any(diagnostic_values(d).get("image_aux") == ("used" if use_aux else "off")
                                        for d in rig.diag.messages), timeout=30, what="image_aux in diagnostics")
        if use_aux:  # an image without its auxiliary view is not processed
            t = float(next(_stamps))
            rig.publish(rig.frame.image(t), rig.frame.camera_info(t), None)
            rig.client.spin_for(2.0)
            assert all((m.header.stamp.sec, m.header.stamp.nanosec) != (int(t), 0) for m in rig.depth.messages)
        assert not _no_torch.exists(), "the node tried to import torch"
    finally:
        rig.client.destroy()
        rig.proc.cleanup()
