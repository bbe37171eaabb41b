"""replay --pipeline estimation --backend onnxruntime --model-path <IID-RDepth checkpoint> on a
KITTI bag of the shared sequence: with ``image_aux`` in the bag (``kitti-to-bag --image-aux
previous``) the node subscribes it and the AV-LFE path is used (the published depth is the
pipeline's with the previous frame as auxiliary view); without it the model runs on one image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from depth_diffusion_ros.tools import bag_io
from depth_diffusion_ros.tools.kitti_to_bag import convert, discover_kitti
from depth_diffusion_ros.tools.replay import ReplayOptions, replay
from test_replay import read_topic

pytestmark = pytest.mark.ros
IID_WEIGHTS = Path(__file__).resolve().parents[1] / "depth_diffusion_ros" / "weights" / "iid_rdepth_kitti"
AUX_TOPIC = "/kitti/camera_color_left/image_aux"


@pytest.fixture(scope="module")
def bags(tmp_path_factory, shared_data) -> dict[str, Path]:
    drive = shared_data / "kitti_raw_2011_09_26_sequence" / "2011_09_26" / "2011_09_26_drive_unknown_sync"
    root = tmp_path_factory.mktemp("iid_bags")
    seq = discover_kitti(drive)
    convert(seq, root / "aux", max_frames=2, image_aux="previous")
    convert(seq, root / "plain", max_frames=2)
    return {"aux": root / "aux", "plain": root / "plain"}


def test_kitti_to_bag_writes_the_previous_frame_as_image_aux(bags):
    images = read_topic(bags["aux"], "/kitti/camera_color_left/image_raw")
    aux = read_topic(bags["aux"], AUX_TOPIC)
    assert len(images) == len(aux) == 2
    assert [m.header.stamp for m in aux] == [m.header.stamp for m in images]
    np.testing.assert_array_equal(bag_io.image_msg_to_rgb(aux[1]), bag_io.image_msg_to_rgb(images[0]))
    np.testing.assert_array_equal(bag_io.image_msg_to_rgb(aux[0]), bag_io.image_msg_to_rgb(images[1]))
    with Reader(bags["plain"]) as reader:
        assert AUX_TOPIC not in {c.topic for c in reader.connections}


def _pipeline_depth(images, aux, infos, k):
    from depth_diffusion_ros.inference.backends.torch_backend import TorchDiffusionDepthBackend
    from depth_diffusion_ros.inference.pipelines import EstimationPipeline

    pipeline = EstimationPipeline(TorchDiffusionDepthBackend(model_path=IID_WEIGHTS), resize_back=True)
    intr = bag_io.camera_info_msg_to_intrinsics(infos[k])
    rgb_aux = None if aux is None else bag_io.image_msg_to_rgb(aux[k])
    return pipeline(bag_io.image_msg_to_rgb(images[k]), intr, rgb_aux=rgb_aux).depth


@pytest.mark.parametrize("which", ["aux", "plain"])
def test_replay_onnxruntime_uses_image_aux_when_the_bag_has_it(bags, tmp_path, onnx_cache, which):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    result = replay(ReplayOptions(bag=bags[which], output=out, pipeline="estimation", backend="onnxruntime",
                                  node_params={"model_path": str(IID_WEIGHTS)}, progress=False,
                                  onnx_cache=onnx_cache))
    report = result.report
    assert report["n_frames"] == 2 and report["skipped"] == {}
    assert report["meta"]["topics"]["image_aux"] == (AUX_TOPIC if which == "aux" else None)
    assert report["meta"]["model_export"]["sizes"] == "640x192"
    assert (Path(report["meta"]["model_export"]["onnx"]) / "encoder_aux.onnx").is_file()
    assert report["meta"]["parameters"]["depth_estimation_node"].get("use_image_aux", False) == (which == "aux")
    images = read_topic(bags[which], "/kitti/camera_color_left/image_raw")
    infos = read_topic(bags[which], "/kitti/camera_color_left/camera_info")
    aux = read_topic(bags[which], AUX_TOPIC) if which == "aux" else None
    pred = bag_io.depth_msg_to_array(read_topic(out / "output_bag", "/depth/image")[1])
    want = _pipeline_depth(images, aux, infos, 1)
    np.testing.assert_allclose(pred, want, atol=2e-3, rtol=1e-4)
    other = _pipeline_depth(images, None if which == "aux" else read_topic(bags["aux"], AUX_TOPIC), infos, 1)
    assert np.abs(want - other).max() > 1e-3  # the two paths differ: the comparison above tells them apart
