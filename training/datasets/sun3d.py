"""SUN3D RGB-D fragments in the 3DMatch layout (``../shared/data/sun3d_rgbd_3dmatch``).

Layout (Zeng et al., 3DMatch toolbox)::

    <root>/camera-intrinsics.txt                     3x3 K (fx = fy = 570.342 px, 640x480)
    <root>/<fragment>/frame-NNNNNN.color.png         RGB 8-bit
    <root>/<fragment>/frame-NNNNNN.depth.png         uint16 millimetres, 0 = invalid, registered to colour

Depth is dense (about 87 % valid) and plain millimetres. The frames are returned as
:class:`~training.datasets.nyu.NyuFileList` entries (same encoding, same sample dict).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from training.datasets.common import DatasetError
from training.datasets.nyu import NyuEntry, NyuFileList


def read_intrinsics(path: Union[str, Path]) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of a 3DMatch ``camera-intrinsics.txt``; DatasetError naming the file."""
    try:
        K = np.loadtxt(str(path), dtype=np.float64).reshape(3, 3)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: expected a 3x3 intrinsics matrix ({exc})") from exc
    return float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])


def sun3d_frames(root: Union[str, Path], fragments: Optional[Sequence[str]] = None, every: int = 1,
                 **kwargs) -> NyuFileList:
    """Every ``every``-th frame of the given fragments (all ``fragment-*`` folders when None).

    Raises DatasetError for a missing root, intrinsics or depth file, or no frame.
    """
    root = Path(root)
    K = read_intrinsics(root / "camera-intrinsics.txt")
    names = fragments or sorted(p.name for p in root.glob("fragment-*") if p.is_dir())
    entries = []
    for name in names:
        colours = sorted((root / name).glob("frame-*.color.png"))
        if not colours:
            raise DatasetError(f"{root / name}: no frame-*.color.png")
        for rgb in colours[::max(1, int(every))]:
            depth = rgb.with_name(rgb.name.replace(".color.png", ".depth.png"))
            if not depth.is_file():
                raise DatasetError(f"{depth} missing (the depth of {rgb.name})")
            entries.append(NyuEntry(rgb, depth, K, 1000.0))
    return NyuFileList(entries, **kwargs)
