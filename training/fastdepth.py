"""FastDepth (Wofk et al., ICRA 2019), NYU-trained, as an outside indoor reference: the shared
int8 TFLite file re-executed in float with its weights dequantised.

``../shared/pretrained/fastdepth_nyu_int8.tflite`` must not be run as is: its output tensor is
quantised so that it saturates at 1.42 m (see ``../shared/pretrained/README.md``). Here every
constant is dequantised (``real = (q - zero_point) * scale``, per channel where the file has one
scale per channel) and the graph's nine operator types run in float with torch, activations
unclamped except the fused ReLU / ReLU6 of the ops themselves.

Pre/post-processing as fast-depth's NYU evaluation: the 480x640 frame resized by 250/480, the
centre 228x304 cropped and resized to 224x224 (the network's NCHW [0, 1] input); the 224x224
output (metres) is resized back onto that crop, and the frame outside it (about 20 rows and 28
columns at each border) takes the nearest covered value. The model was trained on NYU Depth V2
and may have seen the NYU frames it is scored on here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from training.pretrained import PRETRAINED_DIR

FASTDEPTH_FILE = PRETRAINED_DIR / "fastdepth_nyu_int8.tflite"
_ACTIVATIONS = {0: lambda x: x, 1: F.relu, 3: lambda x: x.clamp(0.0, 6.0)}


class FloatTflite:
    """A TFLite graph of CONV_2D, DEPTHWISE_CONV_2D, ADD, PAD, TRANSPOSE, RESIZE_NEAREST_NEIGHBOR,
    RESHAPE, QUANTIZE and DEQUANTIZE executed in float (NHWC tensors as TFLite lays them out).
    Raises ValueError naming an operator it does not implement."""

    def __init__(self, path: Path = FASTDEPTH_FILE) -> None:
        import tflite

        self._tfl = tflite
        buf = Path(path).read_bytes()
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        self.graph = self.model.Subgraphs(0)
        self.op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        self.constants: Dict[int, torch.Tensor] = {}
        for i in range(self.graph.TensorsLength()):
            data = self._constant(i)
            if data is not None:
                self.constants[i] = data

    def _constant(self, index: int) -> Any:
        t = self.graph.Tensors(index)
        raw = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(raw, int) or raw is None or len(raw) == 0:
            return None
        dtype = {0: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}[t.Type()]
        arr = np.frombuffer(raw.tobytes(), dtype=dtype).reshape(t.ShapeAsNumpy())
        q = t.Quantization()
        if q is not None and q.ScaleLength() > 0 and t.Type() in (2, 3, 9):  # int32 biases, (u)int8 weights
            scale, zero = q.ScaleAsNumpy().astype(np.float64), q.ZeroPointAsNumpy().astype(np.float64)
            shape = [1] * arr.ndim
            if scale.size > 1:
                shape[q.QuantizedDimension()] = scale.size
            arr = ((arr.astype(np.float64) - zero.reshape(shape)) * scale.reshape(shape)).astype(np.float32)
        return torch.from_numpy(np.array(arr))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        g = self.graph
        values: Dict[int, torch.Tensor] = {int(g.InputsAsNumpy()[0]): x}
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            name = self.op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
            ins = [values.get(int(j), self.constants.get(int(j))) for j in op.InputsAsNumpy() if j >= 0]
            values[int(op.OutputsAsNumpy()[0])] = self._run(name, op, ins)
        return values[int(g.OutputsAsNumpy()[0])]

    def _options(self, op: Any, cls: Any) -> Any:
        opts = cls()
        table = op.BuiltinOptions()
        opts.Init(table.Bytes, table.Pos)
        return opts

    def _run(self, name: str, op: Any, ins: List[torch.Tensor]) -> torch.Tensor:
        tfl = self._tfl
        if name in ("QUANTIZE", "DEQUANTIZE"):
            return ins[0].float()
        if name == "TRANSPOSE":
            return ins[0].permute(*[int(v) for v in ins[1]])
        if name == "RESHAPE":
            return ins[0].reshape([int(v) for v in ins[1]])
        if name == "PAD":
            pads = [int(v) for pair in reversed(ins[1].tolist()) for v in pair]
            return F.pad(ins[0], pads)
        if name == "ADD":
            o = self._options(op, tfl.AddOptions)
            return _ACTIVATIONS[o.FusedActivationFunction()](ins[0] + ins[1])
        if name == "RESIZE_NEAREST_NEIGHBOR":
            h, w = (int(v) for v in ins[1])
            x = ins[0].permute(0, 3, 1, 2)
            return F.interpolate(x, size=(h, w), mode="nearest").permute(0, 2, 3, 1)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return self._conv(name, op, ins)
        raise ValueError(f"FloatTflite: operator {name} is not implemented")

    def _conv(self, name: str, op: Any, ins: List[torch.Tensor]) -> torch.Tensor:
        tfl = self._tfl
        depthwise = name == "DEPTHWISE_CONV_2D"
        o = self._options(op, tfl.DepthwiseConv2DOptions if depthwise else tfl.Conv2DOptions)
        x = ins[0].permute(0, 3, 1, 2)
        w = ins[1].permute(3, 0, 1, 2) if depthwise else ins[1].permute(0, 3, 1, 2)  # -> [O, I/groups, kh, kw]
        stride = (o.StrideH(), o.StrideW())
        if o.Padding() == tfl.Padding.SAME:
            kh, kw = w.shape[2], w.shape[3]
            ph = max((-(-x.shape[2] // stride[0]) - 1) * stride[0] + kh - x.shape[2], 0)
            pw = max((-(-x.shape[3] // stride[1]) - 1) * stride[1] + kw - x.shape[3], 0)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        y = F.conv2d(x, w, ins[2] if len(ins) > 2 else None, stride=stride,
                     groups=x.shape[1] if depthwise else 1)
        return _ACTIVATIONS[o.FusedActivationFunction()](y).permute(0, 2, 3, 1)


class FastDepthReference:
    """``predict(rgb (480, 640, 3) uint8, intrinsics) -> (480, 640) metres`` (module docstring)."""

    def __init__(self, path: Path = FASTDEPTH_FILE) -> None:
        self.graph = FloatTflite(path)

    def __call__(self, rgb: np.ndarray, intrinsics: Any = None) -> np.ndarray:
        h, w = rgb.shape[:2]
        s = 250.0 / h
        small = cv2.resize(rgb, (int(round(w * s)), 250), interpolation=cv2.INTER_LINEAR)
        y0, x0 = (small.shape[0] - 228) // 2, (small.shape[1] - 304) // 2
        crop = cv2.resize(small[y0:y0 + 228, x0:x0 + 304], (224, 224), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)[None], np.float32) / 255.0)
        with torch.no_grad():
            out = self.graph(x).reshape(224, 224).numpy()
        # back onto the crop in frame pixels, then the uncovered border from the nearest covered pixel
        top, left = int(round(y0 / s)), int(round(x0 / s))
        ch, cw = int(round(228 / s)), int(round(304 / s))
        depth = cv2.resize(out, (cw, ch), interpolation=cv2.INTER_LINEAR)
        return np.pad(depth, ((top, max(0, h - top - ch)), (left, max(0, w - left - cw))), mode="edge")[:h, :w]
