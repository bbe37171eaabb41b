"""ImageNet weights converted from the shared quantised TFLite releases into timm models agree
with Google's own interpreter (LiteRT) on real photos from ../shared/data."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytest.importorskip("tflite")

from training.pretrained import PRETRAINED_DIR, TFLITE_MODELS, ConversionError, convert_tflite  # noqa: E402
from training.pretrained import load_tflite_into, read_tflite_weights  # noqa: E402

pytestmark = pytest.mark.torch
PHOTOS = ("nyu_depth_v2_metric3d/rgb/rgb_00000.jpg", "kitti_object_kuixu/image_2/000001.png",
          "sun3d_rgbd_3dmatch/fragment-1-rgbd-frames/frame-000935.color.png",
          "middlebury2014_motorcycle_skimage/motorcycle_left.png")


def _centre_224(path: Path) -> np.ndarray:
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    c = min(h, w)
    rgb = rgb[(h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]
    return cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 127.5 - 1.0


def _interpreter_probabilities(tflite_file: Path, real: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tflite_file))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zero = inp["quantization"]
    it.set_tensor(inp["index"], np.clip(np.round(real / scale + zero), 0, 255).astype(np.uint8)[None])
    it.invoke()
    out_scale, out_zero = out["quantization"]
    return ((it.get_tensor(out["index"])[0].astype(np.float32) - out_zero) * out_scale)[1:]  # drop background


@pytest.mark.parametrize("model_name", sorted(TFLITE_MODELS))
def test_converted_weights_classify_like_the_tflite_interpreter(model_name, shared_data, tmp_path):
    pytest.importorskip("ai_edge_litert")
    file_name, kwargs = TFLITE_MODELS[model_name]
    if not (PRETRAINED_DIR / file_name).is_file():
        pytest.skip(f"{PRETRAINED_DIR / file_name} not found")
    from safetensors.torch import load_file

    out = convert_tflite(model_name, tmp_path / "w.safetensors")
    model = timm.create_model(model_name, pretrained=False, **kwargs).eval()
    model.load_state_dict(load_file(str(out)))
    random_init = timm.create_model(model_name, pretrained=False, **kwargs).eval()
    agree = random_agree = 0
    for photo in PHOTOS:
        real = _centre_224(shared_data / photo)
        reference = _interpreter_probabilities(PRETRAINED_DIR / file_name, real)
        x = torch.from_numpy(real.transpose(2, 0, 1)[None].copy())
        with torch.no_grad():
            ours, rand = model(x)[0].numpy(), random_init(x)[0].numpy()
        agree += int(ours.argmax() == reference.argmax())
        random_agree += int(rand.argmax() == reference.argmax())
        assert len(set(np.argsort(-ours)[:5]) & set(np.argsort(-reference)[:5])) >= 3, photo
    assert agree == len(PHOTOS) and random_agree == 0


def test_mismatched_model_and_bad_file_are_refused(tmp_path):
    src = PRETRAINED_DIR / TFLITE_MODELS["mobilenetv2_100"][0]
    if not src.is_file():
        pytest.skip(f"{src} not found")
    v3 = timm.create_model("tf_mobilenetv3_small_100", pretrained=False)
    with pytest.raises(ConversionError, match="53 weight tensors, the model 54"):
        load_tflite_into(v3, read_tflite_weights(src), str(src))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(ConversionError, match="not a TFLite model"):
        read_tflite_weights(bad)
    with pytest.raises(ConversionError, match="no TFLite release"):
        convert_tflite("resnet18", tmp_path / "x.safetensors")
