"""INT8 calibration for TensorRT 10 engines (the implicit-quantization hook).

NVIDIA deprecated the INT8 calibrators in TensorRT 10.1 ("superseded by explicit quantization",
C++ API Deprecated List) and removed them, with ``IBuilderConfig.int8_calibrator`` and
``BuilderFlag.INT8``, in TensorRT 11 ("Removed Python APIs and Replacements"). On TensorRT 11
:func:`~depth_diffusion_ros.runtime.tensorrt_engine.build_serialized_engine` refuses "int8";
quantize the ONNX with Q/DQ nodes instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np


def make_int8_calibrator(
    trt: Any,
    batches: Iterable[Mapping[str, np.ndarray]],
    cache_file: str | Path,
    cuda: Any,
) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding ``batches`` ({input name: array}) to the builder.

    The INT8 hook: calibration data are real frames preprocessed like the backend's inputs.
    The calibration table is cached in ``cache_file`` and reused when present.
    cuda: a :class:`depth_diffusion_ros.runtime.cuda_runtime.CudaRuntime`.
    """
    cache_file = Path(cache_file)
    iterator = iter(batches)

    class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._device: dict[str, tuple[int, int]] = {}
            self._stream = cuda.stream_create()

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> Optional[list[int]]:
            try:
                batch = next(iterator)
            except StopIteration:
                return None
            ptrs = []
            for name in names:
                arr = np.ascontiguousarray(batch[name])
                ptr, size = self._device.get(name, (0, 0))
                if size < arr.nbytes:
                    if ptr:
                        cuda.free(ptr)
                    ptr, size = cuda.malloc(arr.nbytes), arr.nbytes
                    self._device[name] = (ptr, size)
                cuda.htod_async(ptr, arr, self._stream)
                ptrs.append(int(ptr))
            cuda.stream_synchronize(self._stream)
            return ptrs

        def read_calibration_cache(self) -> Optional[bytes]:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_bytes(bytes(cache))

    return _Calibrator()
