"""SUN3D RGB-D fragments in the 3DMatch layout (``../shared/data/sun3d_rgbd_3dmatch``).

Layout (Zeng et al., 3DMatch toolbox)::

    <root>/camera-intrinsics.txt                     3x3 K (fx = fy = 570.342 px, 640x480)
    <root>/<fragment>/frame-NNNNNN.color.png         RGB 8-bit
    <root>/<fragment>/frame-NNNNNN.depth.png         uint16 millimetres, 0 = invalid, registered to colour

Depth is dense (about 87 % valid) and plain millimetres. It is one case of the generic RGB-D
folder layout, read by :func:`training.datasets.rgbd_folder.rgbd_folder_frames`; the frames are
:class:`~training.datasets.nyu.NyuFileList` entries (same encoding, same sample dict).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from training.datasets.common import DatasetError
from training.datasets.nyu import NyuFileList
from training.datasets.rgbd_folder import read_intrinsics, rgbd_folder_frames

__all__ = ["read_intrinsics", "sun3d_frames"]


def sun3d_frames(root: Union[str, Path], fragments: Optional[Sequence[str]] = None, every: int = 1,
                 frames: Optional[slice] = None, **kwargs) -> NyuFileList:
    """Every ``every``-th frame of the given fragments (all ``fragment-*`` folders when None);
    ``frames`` slices each fragment's frame list first (e.g. ``slice(0, 38)``).

    Raises DatasetError for a missing root, intrinsics or depth file, or no frame.
    """
    root = Path(root)
    if not (root / "camera-intrinsics.txt").is_file():
        raise DatasetError(f"{root / 'camera-intrinsics.txt'}: expected a 3x3 intrinsics matrix (file missing)")
    names = fragments or sorted(p.name for p in root.glob("fragment-*") if p.is_dir())
    for name in names:
        colours = sorted((root / name).glob("frame-*.color.png"))
        if not colours:
            raise DatasetError(f"{root / name}: no frame-*.color.png")
        for rgb in colours:
            depth = rgb.with_name(rgb.name.replace(".color.png", ".depth.png"))
            if not depth.is_file():
                raise DatasetError(f"{depth} missing (the depth of {rgb.name})")
    return rgbd_folder_frames(root, sequences=names, every=every, frames=frames, **kwargs)
