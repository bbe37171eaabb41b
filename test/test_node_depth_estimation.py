"""depth_estimation_node as a process with the shipped monocular weights through ONNX Runtime,
torch blocked (a ``torch`` package on PYTHONPATH that raises ImportError and leaves a marker).

The test process publishes the real KITTI raw frame 2011_09_26_drive_0001 #5 (never trained on)
and the same frame resized by 0.5 (the same scene through a camera of half the focal length)
over loopback DDS. The metric depth of the half-size frame must stay within 15 % of the
full-size frame's median (the canonical focal length at work), the full-size depth must be
metric against KITTI's ground truth, and bad input is refused by name while the node keeps
answering.
"""
from __future__ import annotations

import itertools
import os

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image

from depth_diffusion_ros.baselines.row_median import RowMedianDepth
from depth_diffusion_ros.evaluation.metrics import depth_metrics, garg_crop_mask
from depth_diffusion_ros.nodes.depth_estimation_node import MONOCULAR_WEIGHTS, ROW_MEDIAN_REFERENCE, SHIPPED_WEIGHTS
from depth_diffusion_ros.ros import array_to_image, depth_from_image

from node_harness import DepthNodeRig, KittiFrame, NodeProcess, diagnostic_values
from runtime_fixtures import write_torch_blocker

pytestmark = pytest.mark.ros

MODULE = "depth_diffusion_ros.nodes.depth_estimation_node"
_stamps = itertools.count(300)


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory):
    block, marker = write_torch_blocker(tmp_path_factory.mktemp("no_torch"))
    old = {k: os.environ.get(k) for k in ("PYTHONPATH", "DDR_TORCH_MARKER")}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(block)] + ([old["PYTHONPATH"]] if old["PYTHONPATH"] else []))
    os.environ["DDR_TORCH_MARKER"] = str(marker)
    yield marker
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class Rig(DepthNodeRig):
    def __init__(self, kitti_raw_dir, params=None) -> None:
        self.frame = KittiFrame(kitti_raw_dir)
        super().__init__(MODULE, {"backend": "onnxruntime", "reliability": "reliable", "providers": ["cpu"],
                                  **(params or {})},
                         "estimation_test_client", [(Image, "image"), (CameraInfo, "camera_info")])

    def send(self, scale: float = 1.0, timeout: float = 60.0):
        t = float(next(_stamps))
        f = self.frame
        if scale == 1.0:
            image, info = f.image(t), f.camera_info(t)
        else:
            w, h = int(round(1242 * scale)), int(round(375 * scale))
            intr = f.intrinsics.scaled(w, h)
            rgb = cv2.resize(f.rgb, (w, h), interpolation=cv2.INTER_AREA)
            image = array_to_image(rgb, "rgb8", f.image(t).header)
            P = np.array([[intr.fx, 0, intr.cx, f.calib.P_rect[0, 3] * scale], [0, intr.fy, intr.cy, 0], [0, 0, 1, 0]])
            info = f.camera_info(t, width=w, height=h, p_override=P.reshape(-1))
        self.publish(image, info)
        return t, self.wait_depth(t, timeout=timeout)

    def send_good(self, timeout: float = 30.0):
        return self.send(1.0, timeout)


def test_shipped_weights_onnxruntime_without_torch_metric_across_scales(kitti_raw_dir, no_torch):
    rig = Rig(kitti_raw_dir)
    try:
        rig.warm_up(timeout=120)
        _, full_msg = rig.send(1.0)
        _, half_msg = rig.send(0.5)
        full, half = depth_from_image(full_msg), depth_from_image(half_msg)
        assert full.shape == (375, 1242) and half.shape == (188, 621)  # depth at the input size
        assert np.isfinite(full).all() and (full > 0).all()
        ratio = np.median(half) / np.median(full)
        assert abs(ratio - 1.0) <= 0.15, f"half-size median {np.median(half):.2f} m vs full {np.median(full):.2f} m"
        # metric on this held-out frame (Eigen protocol, KITTI's semi-dense ground truth), and no
        # worse than the ground-plane reference shipped beside it
        gt = rig.frame.gt
        valid = (gt > 0) & garg_crop_mask(*gt.shape)
        m = depth_metrics(full, gt, valid, max_depth=80.0)
        ref = depth_metrics(RowMedianDepth.load(ROW_MEDIAN_REFERENCE).predict(
            rig.frame.intrinsics), gt, valid, max_depth=80.0)
        assert m["abs_rel"] < 0.35 and m["abs_rel"] <= ref["abs_rel"], (m, ref)
        info = rig.info.messages[-1]
        assert (info.width, info.height) in ((1242, 375), (621, 188))
        assert not no_torch.exists(), "the node tried to import torch"
    finally:
        rig.client.destroy()
        rig.proc.cleanup()


def test_bad_frames_are_refused_by_name_and_the_node_keeps_answering(kitti_raw_dir, no_torch):
    rig = Rig(kitti_raw_dir)
    try:
        rig.warm_up(timeout=120)
        t = float(next(_stamps))
        f = rig.frame
        rig.publish(f.image(t), f.camera_info(t, width=621, height=188))  # camera_info of another size
        rig.proc.wait_for_log(r"size_mismatch|image is 1242x375 but camera_info is 621x188", timeout=30,
                              spin=lambda: rig.client.spin_for(0.1))
        t = float(next(_stamps))
        bad = array_to_image(np.zeros((375, 1242), np.uint16), "16UC1", f.image(t).header)
        rig.publish(bad, f.camera_info(t))
        rig.proc.wait_for_log(r"bad_encoding|16UC1", timeout=30, spin=lambda: rig.client.spin_for(0.1))
        rig.send(1.0)  # still answering
        rig.client.wait_for(lambda: any(int(diagnostic_values(d).get("drops_size_mismatch", 0)) >= 1
                                        and int(diagnostic_values(d).get("drops_bad_encoding", 0)) >= 1
                                        for d in rig.diag.messages),
                            timeout=30, what="drops_size_mismatch and drops_bad_encoding in the diagnostics")
    finally:
        rig.client.destroy()
        rig.proc.cleanup()


@pytest.mark.parametrize("params, message", [
    ({"processing_width": 640}, "must both be 0 or both > 0"),
    ({"backend": "onnxruntime", "model_path": "/no/such/export"}, "model_path not found: /no/such/export"),
    ({"backend": "row_median", "model_path": "/no/such/ref.json"}, "not a row-median reference"),
    ({"canonical_focal": -0.5}, "canonical_focal"),
])
def test_bad_parameters_stop_the_node_with_the_problem_named(params, message, no_torch):
    proc = NodeProcess(MODULE, params)
    try:
        code = proc.wait_exit(timeout=60)
        log = proc.log()
        assert code != 0 and message in log and "Traceback" not in log, log[-2000:]
    finally:
        proc.cleanup()


@pytest.mark.parametrize("folder, extra", [(SHIPPED_WEIGHTS, ("onnx/encoder_aux.onnx",)),
                                           (MONOCULAR_WEIGHTS, ("row_median_reference.json",))])
def test_shipped_weights_folders_are_complete_and_small(folder, extra):
    files = {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    for name in ("model.safetensors", "config.yaml", "MODEL_CARD.md",
                 "onnx/encoder.onnx", "onnx/step.onnx", "onnx/decoder.onnx") + extra:
        assert name in files, name
    assert sum(files.values()) <= 20 * 2**20
