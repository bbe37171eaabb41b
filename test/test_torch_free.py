"""The onnxruntime backend and the completion node run where ``import torch`` fails.

The model is exported here (with torch); then a subprocess whose PYTHONPATH starts with a
directory holding a ``torch`` package that raises ImportError (and leaves a marker file if
anything tries) runs the backend on a real KITTI frame, and a real depth_completion_node process
started the same way answers a KITTI frame over loopback DDS with a depth image.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from runtime_fixtures import build_small_export, kitti_frame, write_torch_blocker  # noqa: E402



@pytest.fixture(scope="module")
def export(tmp_path_factory, shared_data):
    import torch

    torch.set_num_threads(1)
    return build_small_export(tmp_path_factory.mktemp("torchfree"), shared_data, forms=("step",))


@pytest.fixture
def no_torch_env(tmp_path):
    block, marker = write_torch_blocker(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(block)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
               DDR_TORCH_MARKER=str(marker))
    return env, marker


def test_blocker_really_blocks_torch(no_torch_env):
    env, marker = no_torch_env
    r = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "torch is blocked" in r.stderr and marker.exists()


def test_onnxruntime_backend_runs_without_torch(export, shared_data, no_torch_env, tmp_path):
    _, _, onnx_dir = export
    env, marker = no_torch_env
    rgb, sparse = kitti_frame(shared_data, 96, 320)
    np.save(tmp_path / "rgb.npy", rgb)
    np.save(tmp_path / "sparse.npy", sparse)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from depth_diffusion_ros.inference.backends import make_completion_backend
        from depth_diffusion_ros.inference.pipelines import CompletionPipeline
        b = make_completion_backend("onnxruntime", model_path={str(onnx_dir)!r}, num_inference_steps=2,
                                    ensemble_size=2, providers=["cpu"], seed=0)
        r = CompletionPipeline(b)(np.load({str(tmp_path / 'rgb.npy')!r}), np.load({str(tmp_path / 'sparse.npy')!r}))
        np.save({str(tmp_path / 'depth.npy')!r}, r.depth)
        print(json.dumps({{"torch_loaded": "torch" in sys.modules and hasattr(sys.modules["torch"], "Tensor"),
                          "unc": float(r.uncertainty.mean())}}))
    """)
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["torch_loaded"] is False and out["unc"] > 0
    assert not marker.exists(), "something tried to import torch"
    from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDiffusionDepthBackend
    from depth_diffusion_ros.inference.pipelines import CompletionPipeline

    ref = CompletionPipeline(OnnxRuntimeDiffusionDepthBackend(onnx_dir, num_inference_steps=2, ensemble_size=2))(rgb, sparse)
    np.testing.assert_allclose(np.load(tmp_path / "depth.npy"), ref.depth, atol=1e-5)


@pytest.mark.ros
def test_completion_node_without_torch_answers_with_depth(export, kitti_raw_dir, no_torch_env, monkeypatch):
    from sensor_msgs.msg import CameraInfo, Image

    from depth_diffusion_ros.ros import depth_from_image
    from node_harness import KittiFrame, NodeProcess, RosClient

    _, _, onnx_dir = export
    env, marker = no_torch_env
    for k in ("PYTHONPATH", "DDR_TORCH_MARKER"):
        monkeypatch.setenv(k, env[k])
    frame = KittiFrame(kitti_raw_dir)
    proc = NodeProcess("depth_diffusion_ros.nodes.depth_completion_node", {
        "backend": "onnxruntime", "model_path": str(onnx_dir), "num_inference_steps": 2,
        "providers": ["CPUExecutionProvider"], "input": "sparse_depth", "reliability": "reliable",
        "processing_width": 320, "processing_height": 96, "sync_slop": 0.05,
    })
    client = RosClient("torch_free_client")
    try:
        pub_image = client.publisher(Image, "image")
        pub_info = client.publisher(CameraInfo, "camera_info")
        pub_sparse = client.publisher(Image, "sparse_depth")
        depth = client.subscribe(Image, "depth/image")
        client.wait_matched([pub_image, pub_info, pub_sparse], [depth], timeout=60)
        for i in range(20):  # repeat until discovery has settled both ways and a frame is answered
            t = 100.0 + i
            pub_image.publish(frame.image(t))
            pub_info.publish(frame.camera_info(t))
            pub_sparse.publish(frame.sparse_image(t))
            try:
                client.wait_for(lambda: depth.messages, timeout=6.0, what="depth/image")
                break
            except AssertionError:
                continue
        assert depth.messages, f"no depth/image; node log:\n{proc.log()[-3000:]}"
        d = depth_from_image(depth.messages[0])
        assert d.shape == (96, 320) and np.isfinite(d).all() and (d > 0).mean() > 0.99
        assert not marker.exists(), "the node tried to import torch"
    finally:
        client.destroy()
        proc.cleanup()
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])


@pytest.mark.ros
def test_completion_node_without_torch_runs_the_shipped_export_on_a_native_kitti_frame(kitti_raw_dir, no_torch_env,
                                                                                     monkeypatch):
    """``backend: onnxruntime`` with ``model_path: ""``: the node, torch blocked, runs the shipped
    default model's export (``weights/diffusion_depth_kitti/onnx``) on the real KITTI frame at its
    native 1242x375, publishes a dense finite depth image, and it is what the in-process pipeline
    over the same default backend gives for the same frame."""
    from sensor_msgs.msg import CameraInfo, Image

    from depth_diffusion_ros.inference.backends.exported import DEFAULT_COMPLETION_EXPORT
    from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDiffusionDepthBackend
    from depth_diffusion_ros.inference.pipelines import CompletionPipeline
    from depth_diffusion_ros.ros import depth_from_image
    from node_harness import KittiFrame, NodeProcess, RosClient

    assert (DEFAULT_COMPLETION_EXPORT / "export.json").is_file(), f"no shipped export in {DEFAULT_COMPLETION_EXPORT}"
    env, marker = no_torch_env
    for k in ("PYTHONPATH", "DDR_TORCH_MARKER"):
        monkeypatch.setenv(k, env[k])
    frame = KittiFrame(kitti_raw_dir)
    assert frame.rgb.shape == (375, 1242, 3)
    proc = NodeProcess("depth_diffusion_ros.nodes.depth_completion_node", {
        "backend": "onnxruntime", "model_path": "", "providers": ["CPUExecutionProvider"],
        "input": "sparse_depth", "reliability": "reliable", "sync_slop": 0.05,
    })
    client = RosClient("torch_free_shipped_client")
    try:
        pub_image = client.publisher(Image, "image")
        pub_info = client.publisher(CameraInfo, "camera_info")
        pub_sparse = client.publisher(Image, "sparse_depth")
        depth = client.subscribe(Image, "depth/image")
        client.wait_matched([pub_image, pub_info, pub_sparse], [depth], timeout=120)
        sparse_msg = None
        for i in range(8):  # repeat until discovery has settled both ways and a frame is answered
            t = 100.0 + i
            sparse_msg = frame.sparse_image(t)
            pub_image.publish(frame.image(t))
            pub_info.publish(frame.camera_info(t))
            pub_sparse.publish(sparse_msg)
            try:
                client.wait_for(lambda: depth.messages, timeout=40.0, what="depth/image")
                break
            except AssertionError:
                continue
        assert depth.messages, f"no depth/image; node log:\n{proc.log()[-3000:]}"
        d = depth_from_image(depth.messages[0])
        assert not marker.exists(), "the node tried to import torch"
        assert "model_path not found" not in proc.log()
    finally:
        client.destroy()
        proc.cleanup()
    assert d.shape == (375, 1242) and np.isfinite(d).all() and (d > 0).all(), "not a dense finite depth image"
    monkeypatch.delenv("DDR_TORCH_MARKER")
    sparse = depth_from_image(sparse_msg)  # what the node decoded (NaN / 0 = no return)
    ref = CompletionPipeline(OnnxRuntimeDiffusionDepthBackend())(frame.rgb, np.nan_to_num(sparse, nan=0.0))
    np.testing.assert_allclose(d, ref.depth, atol=1e-4)


@pytest.mark.ros
def test_node_with_missing_model_fails_once_with_the_file_named(tmp_path, no_torch_env, monkeypatch):
    from node_harness import NodeProcess

    env, _ = no_torch_env
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])
    missing = tmp_path / "no_such_export"
    proc = NodeProcess("depth_diffusion_ros.nodes.depth_completion_node", {
        "backend": "onnxruntime", "model_path": str(missing), "input": "sparse_depth"})
    try:
        code = proc.wait_exit(timeout=60)
        log = proc.log()
        assert code == 2 and f"model_path not found: {missing}" in log and "Traceback" not in log
    finally:
        proc.cleanup()
