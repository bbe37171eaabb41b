"""Training/evaluation datasets and a registry that builds them from YAML config dicts.

Every dataset returns the sample dict of :mod:`training.datasets.common` (``rgb``,
``sparse_depth``, ``valid_mask``, ``gt_depth``, ``gt_mask``, ``K``) and offers ``load_frame(i)``
(numpy, for baselines) and ``sample_name(i)``.

Config form (``data.train`` / ``data.val`` in the training YAML)::

    type: kitti_object            # a name in DATASETS, or "package.module:callable"
    root: ../shared/data/kitti_object_kuixu   # relative paths: against the repository root
    ids: ["000000"]
    max_depth: 88.0
    transforms: [{type: random_crop, size: [256, 512]}, {type: random_hflip}]

``register_dataset(name, builder)`` adds a type (other model families add their own loaders).
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable

from torch.utils.data import ConcatDataset, Dataset

from training.datasets.common import DatasetError, DepthDataset, frame_to_sample

REPO_ROOT = Path(__file__).resolve().parents[2]

_PATH_KEYS = ("root", "dc_root", "raw_root", "split_file", "mat_path")


def resolve_path(value: str | os.PathLike) -> Path:
    """Expand ``~`` and ``$VARS``; a relative path is taken against the repository root."""
    p = Path(os.path.expandvars(os.path.expanduser(str(value))))
    return p if p.is_absolute() else (REPO_ROOT / p)


class RepeatDataset(Dataset):
    """``dataset`` repeated ``times`` (for tiny datasets: one epoch = ``times`` passes, each
    with fresh random augmentation)."""

    def __init__(self, dataset: Dataset, times: int):
        if times < 1:
            raise DatasetError(f"repeat times must be >= 1, got {times}")
        self.dataset, self.times = dataset, int(times)

    def __len__(self) -> int:
        return len(self.dataset) * self.times

    def __getitem__(self, index: int):
        return self.dataset[index % len(self.dataset)]


def _kitti(name: str) -> Callable[..., Dataset]:
    def build(**kw):
        from training.datasets import kitti

        if name == "torch_kitti":
            frames = kitti.torch_kitti_frames(kw.pop("root"), kw.pop("cameras", (2, 3)))
            return kitti.KittiFileList(frames, **kw)
        return getattr(kitti, name)(**kw)
    return build


def _kitti_raw(**kw):
    from training.datasets.kitti_raw import KittiRawSequence

    return KittiRawSequence(**kw)


def _nyu(name: str) -> Callable[..., Dataset]:
    def build(**kw):
        from training.datasets import nyu

        if name == "labeled":
            return nyu.NyuLabeledMat(**kw)
        if name == "sync":
            return nyu.NyuFileList.from_sync_folder(**kw)
        return nyu.NyuFileList.from_annotations(**kw)
    return build


def _sun3d(**kw):
    from training.datasets.sun3d import sun3d_frames

    return sun3d_frames(**kw)


DATASETS: dict[str, Callable[..., Dataset]] = {
    "torch_kitti": _kitti("torch_kitti"),
    "kitti_dc": _kitti("KittiDepthCompletion"),
    "kitti_val_selection_cropped": _kitti("KittiValSelectionCropped"),
    "kitti_eigen": _kitti("KittiEigen"),
    "kitti_object": _kitti("KittiObject"),
    "kitti_raw_sequence": lambda **kw: _kitti_raw(**kw),
    "nyu_labeled": _nyu("labeled"),
    "nyu_sync": _nyu("sync"),
    "nyu_annotations": _nyu("annotations"),
    "sun3d": _sun3d,
}


def register_dataset(name: str, builder: Callable[..., Dataset]) -> None:
    """Add a dataset type usable from configs (``builder(**config_without_type)``)."""
    DATASETS[name] = builder


def _import_callable(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise DatasetError(f"dataset type {spec!r}: expected a registered name or 'module:callable'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise DatasetError(f"cannot import dataset builder {spec!r}: {exc}") from exc


def build_dataset(cfg: dict) -> Dataset:
    """Build a dataset from its config dict (module docstring).

    Special types: ``concat`` (``datasets: [cfg, ...]``) and ``repeat`` (``dataset: cfg``,
    ``times: n``). ``transforms`` is a list for :func:`training.transforms.build_transforms`.

    Raises:
        DatasetError: unknown type (lists the known ones) or bad arguments (named).
    """
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind == "concat":
        return ConcatDataset([build_dataset(c) for c in cfg.pop("datasets")])
    if kind == "repeat":
        return RepeatDataset(build_dataset(cfg.pop("dataset")), cfg.pop("times", 1))
    if kind is None:
        raise DatasetError(f"dataset config needs a 'type' (one of {sorted(DATASETS)}, or 'module:callable')")
    builder = DATASETS.get(kind) or _import_callable(kind)
    for key in _PATH_KEYS:
        if key in cfg and cfg[key] is not None:
            cfg[key] = resolve_path(cfg[key])
    if "transforms" in cfg:
        from training.transforms import build_transforms

        cfg["transform"] = build_transforms(cfg.pop("transforms"))
    try:
        return builder(**cfg)
    except TypeError as exc:
        raise DatasetError(f"dataset {kind!r}: bad arguments {sorted(cfg)}: {exc}") from exc


__all__ = [
    "DATASETS", "DatasetError", "DepthDataset", "RepeatDataset", "build_dataset", "frame_to_sample",
    "register_dataset", "resolve_path",
]
