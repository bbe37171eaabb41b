"""torch -> ONNX export with named inputs/outputs, metadata and a parity check.

The model-specific exporters (:mod:`depth_diffusion_ros.export.diffusion_depth`,
:mod:`depth_diffusion_ros.export.densedepth`) are built on the functions here:

* :func:`export_onnx` runs ``torch.onnx.export`` (opset 17 by default, the opset TensorRT 10's
  ONNX parser handles fully) with named inputs and outputs, static shapes unless
  ``dynamic_axes`` is given, and writes ``metadata_props``.
* :func:`check_parity` runs the exported file in a real ONNX Runtime session and compares it
  with torch's outputs; :class:`ParityError` names the output and the error when it is off.
* :func:`write_metadata` stores our ``ddr.*`` keys (read back, without onnx or torch, by
  :func:`depth_diffusion_ros.runtime.metadata.read_metadata`).
* :func:`export_checked` is the three in a row for one graph (export, parity, the errors in the
  metadata); :func:`write_export_json` writes the ``export.json`` summary of an export folder.

Exporter choice (measured on the 2-core CI CPU, torch 2.15): the TorchScript exporter
(``dynamo=False``) writes opset 17 directly and takes ~0.2 s for a small module; the
``torch.export``-based exporter (``dynamo=True``) takes ~8 s for the same module, implements
opset >= 18 only and its down-conversion to 17 fails on ``ReduceMean`` axes. The default is
therefore ``dynamo=False``; ``dynamo=True`` stays selectable (its files are then opset 18).

torch is imported inside the functions only: importing this module does not need torch.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from depth_diffusion_ros.runtime.metadata import set_metadata_props

#: opset for TensorRT 10's ONNX parser (and every ONNX Runtime >= 1.14)
DEFAULT_OPSET = 17


class ExportError(RuntimeError):
    """Export or its parity check failed; the message names the file and what differs."""


class ParityError(ExportError):
    """The exported graph's outputs differ from torch's by more than the tolerance."""


def model_sha256(model: Any) -> str:
    """The weights' SHA-256 as checkpoints store and verify it
    (:func:`depth_diffusion_ros.models.checkpoint.tensors_sha256`), recorded in every exported
    graph as ``ddr.model_sha256``."""
    from depth_diffusion_ros.models.checkpoint import tensors_sha256

    return tensors_sha256(model.state_dict())


def write_metadata(path: str | Path, metadata: Mapping[str, Any]) -> None:
    """Add (or replace) ``metadata_props`` entries of the ONNX file at ``path`` in place.

    Keys without the ``ddr.`` prefix get it. Non-string values are stored as JSON.
    Raises ExportError if the file is not a readable ONNX model.
    """
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types
        raise ExportError(f"{path}: not a readable ONNX model ({exc})") from exc
    set_metadata_props(model, metadata)
    onnx.save(model, str(path))


def export_onnx(
    module: Any,
    args: Sequence[Any],
    path: str | Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Optional[Mapping[str, Mapping[int, str]]] = None,
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
    metadata: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Export ``module(*args)`` to ONNX at ``path``.

    module: a torch.nn.Module in eval mode (the caller chooses); args: example tensors whose
        shapes become the static shapes of the graph (except the axes in ``dynamic_axes``).
    input_names / output_names: graph I/O names, in the order of ``args`` / of the outputs.
    dynamic_axes: {name: {axis: "symbol"}}; None gives a fully static graph (TensorRT builds
        its fastest engine for static shapes).
    opset: ONNX opset (17 for TensorRT 10). dynamo: use the torch.export-based exporter.
    metadata: extra ``ddr.*`` metadata_props; ``opset``, ``exporter`` and ``torch_version``
        are always added.
    Returns the path. Raises ExportError on exporter failure (message names the file).
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = dict(
        input_names=list(input_names),
        output_names=list(output_names),
        opset_version=opset,
        dynamo=dynamo,
    )
    if dynamic_axes:
        kwargs["dynamic_axes"] = {k: dict(v) for k, v in dynamic_axes.items()}
    if not dynamo:
        kwargs["do_constant_folding"] = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                torch.onnx.export(module, tuple(args), str(path), **kwargs)
    except Exception as exc:  # noqa: BLE001 - exporter errors are varied
        raise ExportError(f"{path}: torch.onnx.export failed: {exc}") from exc
    _inline_external_data(path)
    meta = {
        "opset": opset,
        "exporter": "dynamo" if dynamo else "torchscript",
        "torch_version": torch.__version__,
        "inputs": {n: list(a.shape) for n, a in zip(input_names, args)},
    }
    meta.update(metadata or {})
    write_metadata(path, meta)
    return path


def _inline_external_data(path: Path) -> None:
    """Store the weights inside the .onnx file (the dynamo exporter writes ``<file>.data``).

    One self-contained file per graph: the engine-cache key hashes only this file, and the
    file can be copied to a robot alone. (ONNX's protobuf limit is 2 GiB; our models are far
    below it.)
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    locations = {
        entry.value
        for t in model.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
        for entry in t.external_data
        if entry.key == "location"
    }
    if not locations:
        return
    model = onnx.load(str(path), load_external_data=True)
    onnx.save(model, str(path), save_as_external_data=False)
    for loc in locations:
        data = path.parent / loc
        if data.is_file():
            data.unlink()


@dataclass
class ParityReport:
    """Result of :func:`check_parity`: per-output max absolute and max relative error."""

    max_abs: dict[str, float] = field(default_factory=dict)
    max_rel: dict[str, float] = field(default_factory=dict)

    @property
    def worst_abs(self) -> float:
        return max(self.max_abs.values()) if self.max_abs else 0.0


def run_onnx(path: str | Path, inputs: Mapping[str, np.ndarray], threads: int = 0) -> dict[str, np.ndarray]:
    """Run an ONNX file once on CPU with ONNX Runtime; returns {output name: array}."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    feed = {i.name: np.ascontiguousarray(inputs[i.name]) for i in sess.get_inputs()}
    return dict(zip(names, sess.run(names, feed)))


def check_parity(
    path: str | Path,
    inputs: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray],
    atol: float,
    rtol: float = 0.0,
    threads: int = 0,
) -> ParityReport:
    """Run the ONNX file on ``inputs`` and compare each output with ``expected`` (torch's).

    An output passes where ``|onnx - torch| <= atol + rtol * |torch|`` everywhere (like
    numpy.allclose). Raises ParityError naming the file, the output and the max error.
    Returns the ParityReport (max abs / rel error per output) for the metadata and logs.
    """
    got = run_onnx(path, inputs, threads=threads)
    report = ParityReport()
    for name, ref in expected.items():
        if name not in got:
            raise ParityError(f"{path}: output {name!r} missing (graph outputs: {sorted(got)})")
        out, ref = np.asarray(got[name], np.float64), np.asarray(ref, np.float64)
        if out.shape != ref.shape:
            raise ParityError(f"{path}: output {name!r} has shape {out.shape}, torch gives {ref.shape}")
        err = np.abs(out - ref)
        report.max_abs[name] = float(err.max()) if err.size else 0.0
        report.max_rel[name] = float((err / np.maximum(np.abs(ref), 1e-6)).max()) if err.size else 0.0
        bad = err > atol + rtol * np.abs(ref)
        if bad.any():
            raise ParityError(
                f"{path}: output {name!r} differs from torch at {int(bad.sum())} of {bad.size} "
                f"values (max abs error {report.max_abs[name]:.3g}, tolerance atol={atol:g} rtol={rtol:g})"
            )
    return report


@dataclass
class ExportedGraph:
    """One written file: path, role, parity errors vs torch, export seconds."""

    path: Path
    graph: str
    max_abs_error: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class ExportReport:
    """Everything one export call wrote (its graphs, the weights' hash, the export id)."""

    out_dir: Path
    graphs: list = field(default_factory=list)
    model_sha256: str = ""
    export_id: str = ""


def export_checked(module: Any, args: Sequence[Any], path: str | Path, input_names: Sequence[str],
                   output_names: Sequence[str], expected: Mapping[str, Any], graph: str,
                   metadata: Mapping[str, Any], check: bool = True, atol: float = 1e-4, rtol: float = 0.0,
                   **export_options: Any) -> ExportedGraph:
    """:func:`export_onnx` of one graph (role ``graph``, stored as ``ddr.graph``) in eval mode,
    then, with ``check``, :func:`check_parity` of the file on ``args`` against torch's
    ``expected`` outputs ({name: tensor}), the errors and tolerances added to its metadata.

    export_options: ``dynamic_axes``, ``opset``, ``dynamo`` of :func:`export_onnx`.
    Returns the :class:`ExportedGraph`. Raises ExportError / ParityError naming the file.
    """
    path = Path(path)
    t0 = time.perf_counter()
    # in eval mode: the exporter restores the wrapper's mode afterwards, and a wrapper left in
    # training mode would flip the model inside it (BatchNorm batch statistics) to training too
    module.eval()
    export_onnx(module, args, path, input_names, output_names, metadata=dict(metadata, graph=graph), **export_options)
    seconds = time.perf_counter() - t0
    errors: dict = {}
    if check:
        np_in = {n: (a.numpy() if hasattr(a, "numpy") else a) for n, a in zip(input_names, args)}
        ref = {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in expected.items()}
        errors = check_parity(path, np_in, ref, atol=atol, rtol=rtol).max_abs
        write_metadata(path, {"parity_max_abs_error": errors, "parity_atol": atol, "parity_rtol": rtol})
    return ExportedGraph(path, graph, errors, seconds)


def write_export_json(report: ExportReport, height: int, width: int, **extra: Any) -> Path:
    """``export.json`` in ``report.out_dir``: model_sha256, export_id, height, width, each graph's
    file, role, parity error and export seconds (+ ``extra``); what the ONNX cache reads back."""
    path = Path(report.out_dir) / "export.json"
    path.write_text(json.dumps({
        "model_sha256": report.model_sha256, "export_id": report.export_id, "height": height, "width": width,
        **extra,
        "graphs": [{"file": g.path.name, "graph": g.graph, "max_abs_error": g.max_abs_error,
                    "export_seconds": round(g.seconds, 2)} for g in report.graphs],
    }, indent=2) + "\n")
    return path
