"""ImageNet weights for the timm image encoders, converted from the quantised TFLite releases.

These machines cannot download pretrained weights; ``../shared/pretrained/`` holds Google's
TF-slim MobileNetV3-Small 1.0 and MobileNetV2 1.0 as quantised TFLite files (BatchNorm folded).
:func:`convert_tflite` reads one with the ``tflite`` flatbuffer parser (PyPI), dequantises every
weight (``real = (q - zero_point) * scale``, per tensor or per channel), lays it out for torch
(``[O, H, W, I]`` -> ``[O, I, H, W]``; depthwise ``[1, H, W, C]`` -> ``[C, 1, H, W]``) and loads
it into the matching timm model: the TFLite graph's weight tensors, in operator order, are the
timm model's Conv2d / Linear weights in module order, shape for shape (checked). BatchNorm was
folded into the convolutions, so each timm BatchNorm becomes the identity plus the folded bias
(weight 1, running mean 0, running variance 1 - eps). The 1001-class logits lose row 0
(background) for timm's 1000 classes. The result is written as safetensors beside nothing of
the project (weights converted from shared/ are data: keep them out of the repository).

    python -m training.pretrained --model tf_mobilenetv3_small_100 --out runs/pretrained/mnv3s.safetensors

Models: :data:`TFLITE_MODELS` (timm name -> file in ``../shared/pretrained`` and the timm
keyword arguments that give TF's padding).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
PRETRAINED_DIR = REPO.parent / "shared" / "pretrained"

#: timm model -> (TFLite file in ../shared/pretrained, timm kwargs for TF-style "same" padding)
TFLITE_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "tf_mobilenetv3_small_100": ("mobilenet_v3_small_224_1.0_uint8.tflite", {}),
    "mobilenetv2_100": ("mobilenet_v2_1.0_224_quant.tflite", {"pad_type": "same"}),
}
_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


class ConversionError(ValueError):
    """The TFLite file cannot be read or does not match the timm model; the message names both."""


@dataclass
class TfliteWeight:
    """One weight-carrying operator: its type, the weight in torch layout and the bias (float32)."""

    op: str
    weight: np.ndarray
    bias: Optional[np.ndarray]


def _dequantise(tensor: Any, model: Any) -> np.ndarray:
    import tflite

    dtypes = {tflite.TensorType.UINT8: np.uint8, tflite.TensorType.INT8: np.int8,
              tflite.TensorType.INT32: np.int32, tflite.TensorType.FLOAT32: np.float32}
    if tensor.Type() not in dtypes:
        raise ConversionError(f"tensor {tensor.Name().decode()}: unsupported type {tensor.Type()}")
    raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
    data = np.frombuffer(raw.tobytes(), dtype=dtypes[tensor.Type()]).reshape(tensor.ShapeAsNumpy())
    q = tensor.Quantization()
    if tensor.Type() == tflite.TensorType.FLOAT32 or q is None or q.ScaleLength() == 0:
        return data.astype(np.float32)
    scale, zero = q.ScaleAsNumpy().astype(np.float64), q.ZeroPointAsNumpy().astype(np.float64)
    if scale.size > 1:  # per channel along QuantizedDimension
        shape = [1] * data.ndim
        shape[q.QuantizedDimension()] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((data.astype(np.float64) - zero) * scale).astype(np.float32)


def read_tflite_weights(path: str | Path) -> list[TfliteWeight]:
    """The conv / depthwise / fully-connected weights of a TFLite model in operator order,
    dequantised, in torch layout ((O, I, kH, kW), depthwise (C, 1, kH, kW), linear (O, I)).

    Raises ConversionError naming the file when it is not a TFLite flatbuffer.
    """
    import tflite

    data = Path(path).read_bytes()
    if data[4:8] != b"TFL3":
        raise ConversionError(f"{path} is not a TFLite model (no TFL3 magic)")
    model = tflite.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        if name not in _WEIGHT_OPS:
            continue
        w = _dequantise(graph.Tensors(op.Inputs(1)), model)
        bias = _dequantise(graph.Tensors(op.Inputs(2)), model) if op.InputsLength() > 2 and op.Inputs(2) >= 0 else None
        if name == "DEPTHWISE_CONV_2D":
            w = w.transpose(3, 0, 1, 2)  # (1, H, W, C) -> (C, 1, H, W)
        elif name == "CONV_2D":
            w = w.transpose(0, 3, 1, 2)  # (O, H, W, I) -> (O, I, H, W)
        out.append(TfliteWeight(name, np.ascontiguousarray(w), bias))
    return out


def _weight_modules(model: nn.Module) -> list[tuple[str, nn.Module, Optional[nn.BatchNorm2d]]]:
    """(name, Conv2d/Linear, the BatchNorm right after it or None) in module order."""
    modules = list(model.named_modules())
    out = []
    for i, (name, module) in enumerate(modules):
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        bn = None
        for _, nxt in modules[i + 1:]:
            if isinstance(nxt, (nn.Conv2d, nn.Linear)):
                break
            if isinstance(nxt, nn.BatchNorm2d) and nxt.num_features == module.weight.shape[0]:
                bn = nxt
                break
        out.append((name, module, bn))
    return out


def load_tflite_into(model: nn.Module, weights: list[TfliteWeight], source: str = "tflite") -> int:
    """Copy dequantised TFLite weights into a timm model, BatchNorms as identity + folded bias.

    Returns the number of weight tensors loaded. Raises ConversionError naming the first module
    whose shape differs, or a count mismatch.
    """
    targets = _weight_modules(model)
    if len(targets) != len(weights):
        raise ConversionError(f"{source} has {len(weights)} weight tensors, the model {len(targets)} conv/linear layers")
    with torch.no_grad():
        for (name, module, bn), w in zip(targets, weights):
            weight, bias = w.weight, w.bias
            if isinstance(module, nn.Linear):  # the logits are a 1x1 conv in TFLite
                weight = weight.reshape(weight.shape[0], -1)
            if weight.shape[0] == module.weight.shape[0] + 1:  # 1001 classes -> drop index 0 (background)
                weight, bias = weight[1:], (bias[1:] if bias is not None else None)
            if tuple(weight.shape) != tuple(module.weight.shape):
                raise ConversionError(f"{source}: {w.op} weight {weight.shape} does not fit {name} {tuple(module.weight.shape)}")
            module.weight.copy_(torch.from_numpy(weight))
            folded = torch.from_numpy(bias) if bias is not None else torch.zeros(weight.shape[0])
            if bn is not None:
                bn.weight.fill_(1.0)
                bn.bias.copy_(folded)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
            elif module.bias is not None:
                module.bias.copy_(folded)
            elif bias is not None and np.abs(bias).max() > 0:
                raise ConversionError(f"{source}: {name} has no bias and no BatchNorm for the folded bias")
    return len(weights)


def convert_tflite(model_name: str, out_path: str | Path, tflite_path: Optional[str | Path] = None) -> Path:
    """Convert the shared TFLite release of ``model_name`` (:data:`TFLITE_MODELS`) into a timm
    state dict written as safetensors at ``out_path`` (loadable as ``pretrained_path`` of a
    DiffusionDepth backbone). Raises ConversionError / FileNotFoundError naming the file."""
    import timm
    from safetensors.torch import save_file

    if model_name not in TFLITE_MODELS:
        raise ConversionError(f"no TFLite release for {model_name!r}; known: {sorted(TFLITE_MODELS)}")
    file_name, kwargs = TFLITE_MODELS[model_name]
    src = Path(tflite_path) if tflite_path else PRETRAINED_DIR / file_name
    if not src.is_file():
        raise FileNotFoundError(f"pretrained TFLite file not found: {src}")
    model = timm.create_model(model_name, pretrained=False, **kwargs)
    load_tflite_into(model, read_tflite_weights(src), str(src))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out),
              metadata={"source": src.name, "timm_model": model_name})
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.pretrained", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tf_mobilenetv3_small_100", choices=sorted(TFLITE_MODELS))
    p.add_argument("--out", required=True, help="safetensors file to write")
    p.add_argument("--tflite", default=None, help="the TFLite file (default: ../shared/pretrained/<release>)")
    args = p.parse_args(argv)
    try:
        print(convert_tflite(args.model, args.out, args.tflite))
    except (ConversionError, FileNotFoundError) as exc:
        print(f"pretrained: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
