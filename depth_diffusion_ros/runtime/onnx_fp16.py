"""fp16 copies of exported ONNX graphs, for strongly typed TensorRT builds (TensorRT 11).

TensorRT 11 removed ``BuilderFlag.FP16``: a strongly typed network takes every layer's precision
from the tensor types of the ONNX graph, so an fp16 engine is built from an fp16 graph (see
:mod:`depth_diffusion_ros.runtime.tensorrt_engine`). The graph is converted with
onnxconverter-common's ``float16.convert_float_to_float16`` (``keep_io_types=True``): weights and
activations become float16, the graph's inputs and outputs stay float32 behind Cast nodes, so the
backends' feeds and outputs do not change.

* :func:`fp16_path` — ``<stem>.fp16.onnx`` beside the fp32 graph (what ``depth-diffusion-ros
  export --fp16-onnx`` writes); :func:`is_fp16_file` tells such files apart when a folder is
  globbed.
* :func:`write_fp16_onnx` — convert one file; the copy records ``ddr.precision = fp16``,
  ``ddr.fp32_onnx_sha256`` (the SHA-256 of the file it was made from) and
  ``ddr.fp16_clamp_warnings`` (how often the converter moved a weight tensor's smallest or
  largest values into fp16's range) in its metadata.
* :func:`cached_fp16_onnx` — the fp16 graph the engine builder uses: the one beside the ONNX file
  when it was made from these exact bytes, else one made once in the engine cache directory and
  named by the source's SHA-256 (model folders stay untouched at run time and may be read-only).

A workaround for onnxconverter-common 1.16.0: it leaves ``Cast(to=FLOAT)`` nodes as they are but
marks their outputs float16, an invalid graph (microsoft/onnxconverter-common issues #320 and
#331, fix proposed in PR #328). Those Cast nodes are passed in ``node_block_list``, so the library
keeps them in fp32 and casts their outputs to fp16 itself; ``onnx.checker`` with
``full_check=True`` (type inference) then checks the result. Measured on the former shipped
DiffusionDepth demo weights at 96x320 (ONNX Runtime CPU, real KITTI frame, completion pipeline,
2 DDIM steps): the fp16 graphs differ from the fp32 graphs by at most 4.8 mm of depth (mean
1.4 mm; depths 5.8-11.5 m) — ``test/test_export_fp16.py`` checks it.

Needs ``onnx`` and ``onnxconverter-common`` (requirements-torch.txt; imported here only when a
graph is converted). No torch.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from depth_diffusion_ros.runtime.metadata import atomic_write, file_sha256, read_metadata, set_metadata_props

LOG = logging.getLogger(__name__)

FP16_SUFFIX = ".fp16.onnx"
#: metadata key of a graph's float precision ("fp16" on converted copies; absent = fp32)
PRECISION_KEY = "ddr.precision"
#: metadata key of a converted copy: SHA-256 of the fp32 file it was made from
SOURCE_SHA_KEY = "ddr.fp32_onnx_sha256"


class Fp16ConversionError(RuntimeError):
    """An ONNX graph cannot be converted to fp16 (library missing, invalid result); names the file."""


def fp16_path(onnx_path: str | Path) -> Path:
    """``<dir>/<stem>.fp16.onnx`` for ``<dir>/<stem>.onnx``."""
    p = Path(onnx_path)
    return p.with_name(p.name.removesuffix(".onnx") + FP16_SUFFIX)


def is_fp16_file(path: str | Path) -> bool:
    """True for a ``*.fp16.onnx`` file name (a converted copy, not an export of its own)."""
    return Path(path).name.endswith(FP16_SUFFIX)


def graph_precision(onnx_path: str | Path) -> str:
    """"fp16" for a graph this module converted (``ddr.precision``), "fp32" otherwise."""
    return read_metadata(onnx_path).get(PRECISION_KEY, "fp32")


def _import_converter() -> tuple[Any, Any]:
    try:
        import onnx  # noqa: PLC0415
        from onnxconverter_common import float16  # noqa: PLC0415
    except ImportError as exc:
        raise Fp16ConversionError(
            f"an fp16 ONNX graph is needed but cannot be made here ({exc}): pip install onnx "
            f"onnxconverter-common, or write it where the model is exported (depth-diffusion-ros export --fp16-onnx)"
        ) from exc
    return onnx, float16


def convert_model_to_fp16(model: Any, name: str = "model") -> tuple[Any, int]:
    """float16 copy of a loaded ``onnx.ModelProto`` with float32 inputs/outputs (keep_io_types).

    Returns (converted ModelProto, the converter's clamp warnings: it raises magnitudes below
    1e-7 to 1e-7 and lowers those above 1e4 to 1e4 — its defaults — and says so once per tensor
    and sign; counted and logged here instead of warned). Raises Fp16ConversionError naming
    ``name`` when the converter fails or its result does not pass ``onnx.checker`` (full type
    inference).
    """
    onnx, float16 = _import_converter()
    float_casts = [n.name for n in model.graph.node if n.op_type == "Cast"
                   and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)]
    if len(set(float_casts)) != len(float_casts) or any(not n for n in float_casts):
        raise Fp16ConversionError(f"{name}: Cast nodes without unique names; re-export the graph")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            converted = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=float_casts)
        onnx.checker.check_model(converted, full_check=True)
    except Exception as exc:  # noqa: BLE001 - converter and checker raise several types
        raise Fp16ConversionError(f"{name}: fp16 conversion failed: {exc}") from exc
    clamped = sum("will be truncated to" in str(w.message) for w in caught)
    for w in caught:
        if "will be truncated to" not in str(w.message):
            LOG.warning("%s: fp16 conversion: %s", name, w.message)
    if clamped:
        LOG.info("%s: the converter clamped values of weight tensors into [1e-7, 1e4] (%d warnings)", name, clamped)
    return converted, clamped


def write_fp16_onnx(onnx_path: str | Path, out_path: str | Path | None = None) -> Path:
    """Convert the fp32 graph at ``onnx_path`` and write it to ``out_path`` (default
    :func:`fp16_path`, beside it), atomically. Returns the written path.

    The copy keeps the source's metadata plus ``ddr.precision = "fp16"``,
    ``ddr.fp32_onnx_sha256`` and ``ddr.fp16_clamp_warnings``. Raises Fp16ConversionError naming the file when it is missing,
    already fp16, or cannot be converted.
    """
    src = Path(onnx_path)
    if not src.is_file():
        raise Fp16ConversionError(f"{src}: ONNX file not found")
    if graph_precision(src) == "fp16":
        raise Fp16ConversionError(f"{src}: already an fp16 graph (ddr.precision); convert its fp32 source")
    onnx, _ = _import_converter()
    out = Path(out_path) if out_path is not None else fp16_path(src)
    converted, clamped = convert_model_to_fp16(onnx.load(str(src)), str(src))
    set_metadata_props(converted, {PRECISION_KEY: "fp16", SOURCE_SHA_KEY: file_sha256(src),
                                   "fp16_clamp_warnings": clamped})
    atomic_write(out, converted.SerializeToString())
    LOG.info("wrote fp16 graph %s from %s", out, src)
    return out


def cached_fp16_onnx(onnx_path: str | Path, cache_dir: str | Path) -> Path:
    """The fp16 graph of ``onnx_path``, made at most once per source file content.

    Returns ``onnx_path`` itself when it already is an fp16 graph; else ``<stem>.fp16.onnx``
    beside it when that copy records this file's SHA-256; else
    ``<cache_dir>/<stem>.<sha[:16]>.fp16.onnx``, converted now if it is not there yet. A copy
    beside the file that was made from other bytes (a re-export without ``--fp16-onnx``) is
    not used, with a warning. Raises Fp16ConversionError as :func:`write_fp16_onnx`.
    """
    src = Path(onnx_path)
    if graph_precision(src) == "fp16":
        return src
    sha = file_sha256(src)
    beside = fp16_path(src)
    if beside.is_file():
        made_from = read_metadata(beside).get(SOURCE_SHA_KEY)
        if made_from == sha:
            return beside
        LOG.warning("%s was made from other bytes than %s (%s); not using it", beside, src.name, made_from)
    cached = Path(cache_dir) / fp16_path(f"{src.stem}.{sha[:16]}.onnx").name
    if cached.is_file() and read_metadata(cached).get(SOURCE_SHA_KEY) == sha:
        return cached
    return write_fp16_onnx(src, cached)
