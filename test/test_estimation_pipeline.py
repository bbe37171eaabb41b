"""Monocular estimation: the canonical focal length keeps depth metric across cameras, the
row-median reference, the canonical_focal transform and checkpoint metadata.

The "size-reading" model below is a real stand-in for what a monocular network does: it reads a
square's apparent width in pixels and turns it into depth with the focal length it was "trained"
at (``f_c W / w_px``). With the canonical focal length the pipeline gives the true distance on a
camera of any focal length and image size; without it, a camera of half the focal length gives
twice the distance.
"""
from __future__ import annotations

import numpy as np
import pytest

from depth_diffusion_ros.baselines.row_median import RowMedianDepth
from depth_diffusion_ros.geometry.intrinsics import Intrinsics
from depth_diffusion_ros.inference.backends import make_completion_backend, make_estimation_backend
from depth_diffusion_ros.inference.errors import BackendError, FrameError
from depth_diffusion_ros.inference.pipelines import EstimationPipeline, MonocularModel
from depth_diffusion_ros.inference.pipelines.estimation import canonical_size

KITTI = Intrinsics(721.5377, 721.5377, 609.5593, 172.854, 1242, 375)
SQUARE_M, DISTANCE_M = 1.8, 12.0


def square_image(intr: Intrinsics) -> np.ndarray:
    """A white square SQUARE_M wide at DISTANCE_M in front of the camera, on black."""
    rgb = np.zeros((intr.height, intr.width, 3), np.uint8)
    half = 0.5 * intr.fx * SQUARE_M / DISTANCE_M
    u0, u1 = int(round(intr.cx - half)), int(round(intr.cx + half))
    v0, v1 = int(round(intr.cy - half)), int(round(intr.cy + half))
    rgb[max(v0, 0):v1, max(u0, 0):u1] = 255
    return rgb


def padded(size: tuple[int, int], divisor: int = 32) -> tuple[int, int]:
    return tuple(-(-v // divisor) * divisor for v in size)


class SizeReadingModel:
    """Depth = trained_focal * SQUARE_M / (the square's width in pixels), everywhere."""

    name = "size_reader"
    size_divisor = 32

    def __init__(self, trained_focal: float) -> None:
        self.canonical_focal = trained_focal
        self.seen: list[tuple[int, int]] = []

    def estimate(self, rgb, intrinsics):
        self.seen.append((rgb.shape[1], rgb.shape[0]))
        cols = np.flatnonzero(rgb[..., 0].max(axis=0) > 127)
        width_px = cols[-1] - cols[0] + 1
        return np.full(rgb.shape[:2], self.canonical_focal * SQUARE_M / width_px, np.float32)


def test_size_reading_model_is_a_monocular_model():
    assert isinstance(SizeReadingModel(360.0), MonocularModel)


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.37, 1.6])
def test_canonical_focal_keeps_depth_metric_on_resized_cameras(scale):
    model = SizeReadingModel(trained_focal=KITTI.fx / 2)
    intr = KITTI.scaled(int(round(KITTI.width * scale)), int(round(KITTI.height * scale)))
    out = EstimationPipeline(model, resize_back=True)(square_image(intr), intr)
    assert out.depth.shape == (intr.height, intr.width)
    assert np.median(out.depth) == pytest.approx(DISTANCE_M, rel=0.03)
    # every frame ran at the canonical focal length (padded to the model's size divisor)
    assert model.seen[-1] == padded(canonical_size(intr, KITTI.fx / 2))


def test_without_the_canonical_focal_a_shorter_lens_reads_as_farther():
    model = SizeReadingModel(trained_focal=KITTI.fx)
    half = KITTI.scaled(621, 188)
    off = EstimationPipeline(model, canonical_focal=0.0, resize_back=True)
    assert np.median(off(square_image(KITTI), KITTI).depth) == pytest.approx(DISTANCE_M, rel=0.03)
    assert np.median(off(square_image(half), half).depth) == pytest.approx(2 * DISTANCE_M, rel=0.05)
    on = EstimationPipeline(model, resize_back=True)
    assert np.median(on(square_image(half), half).depth) == pytest.approx(DISTANCE_M, rel=0.03)


def test_fixed_processing_size_is_de_canonicalised_by_its_focal_length():
    """Label transformation (Metric3D): depth * fx_processing / canonical_focal."""
    model = SizeReadingModel(trained_focal=KITTI.fx)
    out = EstimationPipeline(model, processing_size=(621, 188))(square_image(KITTI), KITTI)
    assert model.seen[-1] == padded((621, 188)) and out.depth.shape == (188, 621)
    assert out.intrinsics.width == 621 and out.intrinsics.fx == pytest.approx(KITTI.fx * 621 / 1242)
    # the model reads twice the distance at half the focal; the factor 1/2 brings it back
    assert np.median(out.depth) == pytest.approx(DISTANCE_M, rel=0.05)


def test_canonical_focal_needs_intrinsics_and_backends_must_be_monocular():
    with pytest.raises(FrameError, match="intrinsics") as err:
        EstimationPipeline(SizeReadingModel(360.0))(square_image(KITTI))
    assert err.value.reason == "bad_frame"
    with pytest.raises(BackendError, match="cannot estimate depth from an image alone"):
        EstimationPipeline(make_completion_backend("ip_basic"))
    with pytest.raises(ValueError, match="canonical_focal"):
        EstimationPipeline(SizeReadingModel(360.0), canonical_focal=-3.0)
    wrong = KITTI.scaled(600, 200)
    with pytest.raises(FrameError, match="intrinsics are for 600x200") as err:
        EstimationPipeline(SizeReadingModel(360.0))(square_image(KITTI), wrong)
    assert err.value.reason == "size_mismatch"


def ground_plane(intr: Intrinsics, height_m: float = 1.65) -> np.ndarray:
    """Depth of a flat ground ``height_m`` below the camera (0 above the horizon, beyond 80 m)."""
    v = np.arange(intr.height, dtype=np.float64)[:, None] - intr.cy
    with np.errstate(divide="ignore"):
        d = np.where(v > 0, intr.fy * height_m / v, 0.0)
    d = np.where(d < 80.0, d, 0.0)
    return np.broadcast_to(d, (intr.height, intr.width)).astype(np.float32)


def test_row_median_reference_carries_a_ground_plane_to_another_camera(tmp_path):
    ref = RowMedianDepth.fit([(ground_plane(KITTI), KITTI)])
    other = Intrinsics(520.0, 520.0, 330.0, 200.0, 640, 400)  # another focal, principal point and size
    pred, truth = ref.predict(other), ground_plane(other)
    near = (truth > 0) & (truth < 30.0)
    assert pred.shape == (400, 640)
    assert np.median(np.abs(pred[near] - truth[near]) / truth[near]) < 0.02
    # rows above the training GT take the nearest row that has one: finite and positive
    assert np.all(np.isfinite(pred)) and np.all(pred > 0)
    path = tmp_path / "ref.json"
    ref.save(path)
    np.testing.assert_allclose(RowMedianDepth.load(path).predict(other), pred, rtol=1e-3)
    (tmp_path / "bad.json").write_text('{"tan_min": 0}')
    with pytest.raises(ValueError, match="not a row-median reference"):
        RowMedianDepth.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="no valid ground-truth"):
        RowMedianDepth.fit([(np.zeros((375, 1242), np.float32), KITTI)])


def test_row_median_backend_runs_in_the_pipeline(tmp_path):
    RowMedianDepth.fit([(ground_plane(KITTI), KITTI)]).save(tmp_path / "ref.json")
    backend = make_estimation_backend("row_median", model_path=str(tmp_path / "ref.json"))
    half = KITTI.scaled(621, 188)
    out = EstimationPipeline(backend)(square_image(half), half)
    truth = ground_plane(half)
    near = (truth > 0) & (truth < 30.0)
    assert np.median(np.abs(out.depth[near] - truth[near]) / truth[near]) < 0.03
    with pytest.raises(FrameError, match="intrinsics"):
        EstimationPipeline(backend)(square_image(half))
    with pytest.raises(BackendError, match="not a row-median reference"):
        make_estimation_backend("row_median", model_path=str(tmp_path / "missing.json"))


def test_training_canonical_focal_transform_gives_the_pipeline_size():
    from training.transforms import CanonicalFocal

    frame = {"rgb": square_image(KITTI), "sparse_depth": None, "gt_depth": ground_plane(KITTI), "K": KITTI.K}
    out = CanonicalFocal(360.76885)(frame)
    assert out["rgb"].shape[1::-1] == canonical_size(KITTI, 360.76885) == (621, 188)
    assert out["K"][0, 0] == pytest.approx(KITTI.fx * 621 / 1242)
    with pytest.raises(ValueError, match="canonical focal"):
        CanonicalFocal(0.0)


def test_checkpoint_keeps_the_canonical_focal(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    from depth_diffusion_ros.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth
    from runtime_fixtures import small_config

    torch.manual_seed(0)
    model = DiffusionDepth(small_config("monocular"))
    assert getattr(model, "canonical_focal", None) is None
    save_checkpoint(model, tmp_path / "plain")
    assert load_checkpoint(tmp_path / "plain").canonical_focal is None
    model.canonical_focal = 360.76885
    save_checkpoint(model, tmp_path / "mono")
    assert load_checkpoint(tmp_path / "mono").canonical_focal == pytest.approx(360.76885)
    from depth_diffusion_ros.inference.backends.torch_backend import TorchDiffusionDepthBackend

    assert TorchDiffusionDepthBackend(tmp_path / "mono").canonical_focal == pytest.approx(360.76885)
    with pytest.raises(CheckpointError, match="reserved"):
        save_checkpoint(model, tmp_path / "x", metadata={"canonical_focal": "1"})
    weights = tmp_path / "mono" / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        meta = dict(f.metadata())
    save_file(load_file(str(weights)), str(weights), metadata=dict(meta, canonical_focal="-2"))
    with pytest.raises(CheckpointError, match="canonical_focal"):
        load_checkpoint(tmp_path / "mono")


class RatioModel(SizeReadingModel):
    """Outputs 1.0 everywhere: a model relative to the row prior that has learned nothing."""

    def estimate(self, rgb, intrinsics):
        self.seen.append((rgb.shape[1], rgb.shape[0]))
        return np.ones(rgb.shape[:2], np.float32)


def test_a_model_relative_to_the_row_prior_gets_the_prior_of_each_camera_back():
    prior = RowMedianDepth.fit([(ground_plane(KITTI), KITTI)])
    model = RatioModel(trained_focal=KITTI.fx / 2)
    model.depth_prior = prior
    for intr in (KITTI, KITTI.scaled(621, 188), Intrinsics(520.0, 520.0, 330.0, 200.0, 640, 400)):
        out = EstimationPipeline(model, resize_back=True)(square_image(intr), intr)
        truth = ground_plane(intr)
        near = (truth > 0) & (truth < 30.0)
        assert np.median(np.abs(out.depth[near] - truth[near]) / truth[near]) < 0.05
    with pytest.raises(FrameError, match="intrinsics"):
        EstimationPipeline(model, canonical_focal=0.0)(square_image(KITTI))


def test_checkpoint_and_onnx_metadata_keep_the_depth_prior(tmp_path, shared_data):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from depth_diffusion_ros.export.diffusion_depth import export_diffusion_depth
    from depth_diffusion_ros.inference.backends.onnxruntime_backend import OnnxRuntimeDiffusionDepthBackend
    from depth_diffusion_ros.inference.backends.torch_backend import TorchDiffusionDepthBackend
    from depth_diffusion_ros.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth
    from runtime_fixtures import small_config

    prior = RowMedianDepth.fit([(ground_plane(KITTI), KITTI)])
    model = DiffusionDepth(small_config("monocular"))
    model.canonical_focal, model.depth_prior = 100.0, prior.to_json()
    save_checkpoint(model, tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert RowMedianDepth.from_json(loaded.depth_prior).depth.tolist() == pytest.approx(prior.depth.tolist(), abs=1e-3)
    export_diffusion_depth(loaded, tmp_path / "onnx", 64, 128, check=False)
    intr = Intrinsics(100.0, 100.0, 64.0, 20.0, 128, 40)
    rgb = square_image(intr)
    torch_out = EstimationPipeline(TorchDiffusionDepthBackend(tmp_path / "ckpt"))(rgb, intr).depth
    ort = OnnxRuntimeDiffusionDepthBackend(tmp_path / "onnx")
    assert ort.canonical_focal == 100.0 and ort.depth_prior is not None
    np.testing.assert_allclose(EstimationPipeline(ort)(rgb, intr).depth, torch_out, rtol=1e-3, atol=1e-3)
    model.depth_prior = '{"tan_min": 0}'
    save_checkpoint(model, tmp_path / "bad")
    with pytest.raises(CheckpointError, match="depth_prior"):
        load_checkpoint(tmp_path / "bad")


def test_row_prior_ratio_transform_is_unit_on_the_prior_itself(tmp_path):
    from training.transforms import RowPriorRatio, crop

    RowMedianDepth.fit([(ground_plane(KITTI), KITTI)]).save(tmp_path / "ref.json")
    frame = {"rgb": square_image(KITTI), "sparse_depth": None, "gt_depth": ground_plane(KITTI), "K": KITTI.K}
    # after a crop (the principal point moves) the prior still follows the frame's camera
    out = RowPriorRatio(str(tmp_path / "ref.json"), unit=10.0)(crop(frame, 100, 120, 640, 240))
    gt = out["gt_depth"]
    near = (crop(frame, 100, 120, 640, 240)["gt_depth"] > 0) & (crop(frame, 100, 120, 640, 240)["gt_depth"] < 30)
    assert np.median(np.abs(gt[near] - 10.0)) < 0.3 and np.all(gt[~(crop(frame, 100, 120, 640, 240)["gt_depth"] > 0)] == 0)
    with pytest.raises(ValueError, match="unit"):
        RowPriorRatio(str(tmp_path / "ref.json"), unit=0.0)
