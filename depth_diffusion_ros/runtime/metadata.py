"""``ddr.*`` metadata of exported ONNX files, read without onnx, onnxruntime or torch; file
hashes and atomic file writes for the caches built from them.

``depth-diffusion-ros export`` stores what a backend needs to run a graph in the ONNX
``metadata_props`` under keys prefixed ``ddr.`` (graph role, model hash, config, scheduler,
shapes). :func:`read_metadata` reads them straight from the protobuf, so a TensorRT-only robot
can check an ONNX file before building an engine from it; :func:`set_metadata_props` writes
them into a loaded ``onnx.ModelProto`` (the exporter and the fp16 converter use it).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from depth_diffusion_ros.runtime.errors import BackendError

#: prefix of every metadata_props key this package writes
METADATA_PREFIX = "ddr."


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (the ONNX hash keying engine caches)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename, so
    a crash mid-write never leaves a truncated file (engines, sidecars, derived ONNX graphs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _scan_fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """Yield (field number, wire type, value) of one protobuf message (length-delimited -> bytes)."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field_no, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field_no, wire, value


def read_metadata(path: str | Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (raw strings; JSON values undecoded).

    Reads the protobuf directly (ModelProto field 14, StringStringEntryProto key=1, value=2).
    Raises BackendError naming the file when it is missing or not an ONNX model.
    """
    path = Path(path)
    if not path.is_file():
        raise BackendError(f"{path}: ONNX file not found")
    data = path.read_bytes()
    out: dict[str, str] = {}
    seen_graph = False
    try:
        for field_no, wire, value in _scan_fields(data):
            if field_no == 7 and wire == 2:
                seen_graph = True
            elif field_no == 14 and wire == 2:
                entry = {f: v for f, w, v in _scan_fields(value) if w == 2}
                out[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise BackendError(f"{path}: not a readable ONNX model ({exc})") from exc
    if not seen_graph:
        raise BackendError(f"{path}: not a readable ONNX model (no graph)")
    return out


def decode_metadata(raw: Mapping[str, str]) -> dict[str, Any]:
    """``ddr.*`` metadata_props -> {key without prefix: JSON-decoded value (the string if not JSON)}."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if not k.startswith(METADATA_PREFIX):
            continue
        try:
            out[k[len(METADATA_PREFIX):]] = json.loads(v)
        except ValueError:
            out[k[len(METADATA_PREFIX):]] = v
    return out


def read_ddr_metadata(path: str | Path) -> dict[str, Any]:
    """:func:`decode_metadata` of :func:`read_metadata` (BackendError naming an unreadable file)."""
    return decode_metadata(read_metadata(path))


def encode_metadata_value(value: Any) -> str:
    """A metadata_props value: strings as they are, anything else as JSON (sorted keys)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def set_metadata_props(model: Any, metadata: Mapping[str, Any]) -> None:
    """Add (or replace) ``metadata_props`` entries of a loaded ``onnx.ModelProto`` in place.

    Keys without the ``ddr.`` prefix get it; non-string values are stored as JSON; entries end
    up sorted by key. Works on the protobuf message itself (no onnx import here).
    """
    entries = {p.key: p.value for p in model.metadata_props}
    for key, value in metadata.items():
        k = key if key.startswith(METADATA_PREFIX) else METADATA_PREFIX + key
        entries[k] = encode_metadata_value(value)
    del model.metadata_props[:]
    for k in sorted(entries):
        prop = model.metadata_props.add()
        prop.key, prop.value = k, entries[k]
