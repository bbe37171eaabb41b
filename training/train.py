"""Training CLI: ``python -m training.train --config training/configs/kitti_completion_v2.yaml``.

Multi-GPU / multi-node: ``torchrun --nproc_per_node 8 [--nnodes N --node_rank R
--rdzv_endpoint HOST:PORT] -m training.train --config ...`` (DDP; see :mod:`training.trainer`).

Config YAML sections:

``model``
    ``type`` (default ``diffusion_depth``; or a name added with :func:`register_model`, or
    ``"package.module:callable"``), ``init_from`` (optional checkpoint folder to start from),
    ``canonical_focal`` (pixels: a monocular model trained on frames resized to this focal length,
    saved with its weights for the estimation pipeline), ``depth_prior`` (a row-median reference JSON:
    the model predicts ``depth_prior_unit`` (default 10) times depth / prior, see
    ``training.transforms.RowPriorRatio``; saved as the prior / unit),
    ``post_init`` (``"module:function"`` or a list: ``function(model)`` runs after building,
    e.g. ``training.demo_init:trust_prior``), and the model's own fields (for DiffusionDepth: :class:`DiffusionDepthConfig`).
``data``
    ``train`` and optional ``val``: dataset configs for :func:`training.datasets.build_dataset`.
``eval``
    ``protocol`` (see :mod:`training.evaluate`), ``num_inference_steps``, ``max_frames``.
``train``
    :class:`training.trainer.TrainConfig` fields.

``--set key.sub=value`` overrides any field (value parsed as YAML), e.g.
``--set train.max_steps=20 --set train.out_dir=runs/try``.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
import yaml

from training.datasets import build_dataset, resolve_path
from training.trainer import Trainer, TrainConfig, TrainingError, load_model_weights

LOG = logging.getLogger("training")


def _build_diffusion_depth(cfg: Dict[str, Any]) -> torch.nn.Module:
    from depth_diffusion_ros.models.config import DiffusionDepthConfig
    from depth_diffusion_ros.models.diffusion_depth import DiffusionDepth

    if cfg.get("pretrained_path"):
        cfg = dict(cfg, pretrained_path=str(resolve_path(cfg["pretrained_path"])))
    return DiffusionDepth(DiffusionDepthConfig.from_dict(cfg))


def _build_densedepth(cfg: Dict[str, Any]) -> torch.nn.Module:
    from depth_diffusion_ros.models.densedepth import DenseDepth, DenseDepthConfig

    if cfg.get("pretrained_path"):
        cfg = dict(cfg, pretrained_path=str(resolve_path(cfg["pretrained_path"])))
    return DenseDepth(DenseDepthConfig.from_dict(cfg))


MODELS: Dict[str, Callable[[Dict[str, Any]], torch.nn.Module]] = {"diffusion_depth": _build_diffusion_depth,
                                                                  "densedepth": _build_densedepth}


def register_model(name: str, builder: Callable[[Dict[str, Any]], torch.nn.Module]) -> None:
    """Make ``model.type: name`` build ``builder(model_cfg_without_type)``."""
    MODELS[name] = builder


def build_model(model_cfg: Dict[str, Any]) -> torch.nn.Module:
    """Build the model of a config's ``model`` section (see module docstring).

    Raises:
        TrainingError: unknown type or a builder error (named).
    """
    cfg = dict(model_cfg or {})
    kind = cfg.pop("type", "diffusion_depth")
    canonical_focal = cfg.pop("canonical_focal", None)
    depth_prior = cfg.pop("depth_prior", None)
    depth_prior_unit = float(cfg.pop("depth_prior_unit", 10.0))
    init_from = cfg.pop("init_from", None)
    post_init = cfg.pop("post_init", None) or []
    if kind in MODELS:
        builder = MODELS[kind]
    elif ":" in kind:
        builder = _import("model.type", kind)
    else:
        raise TrainingError(f"model.type {kind!r} unknown; registered: {sorted(MODELS)} or 'module:callable'")
    try:
        model = builder(cfg)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"model config invalid: {exc}") from exc
    for spec in [post_init] if isinstance(post_init, str) else post_init:
        model = _import("model.post_init", spec)(model) or model
    if init_from:
        load_model_weights(model, resolve_path(init_from))
    if canonical_focal is not None:
        model.canonical_focal = float(canonical_focal)  # saved with the weights (models.checkpoint)
    if depth_prior is not None:  # the model predicts depth / this prior (the row_prior_ratio transform)
        from depth_diffusion_ros.baselines.row_median import RowMedianDepth

        ref = RowMedianDepth.load(resolve_path(depth_prior))
        model.depth_prior = RowMedianDepth(ref.tan_min, ref.bin_width, ref.depth / depth_prior_unit).to_json()
    return model


def _import(what: str, spec: str) -> Callable:
    module, _, attr = str(spec).partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise TrainingError(f"{what} {spec!r}: cannot import ({exc})") from exc


def apply_overrides(config: Dict[str, Any], overrides: List[str]) -> Dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict copy.

    A part that is an integer indexes a list (``data.train.datasets.0.gt_source=accumulated``).
    Lists and mappings a YAML anchor shares stay shared in the copy, so an override through one
    alias changes every place the anchor is used.

    Raises:
        TrainingError: an override without '=', or an index outside its list / into a non-list.
    """
    config = copy.deepcopy(config)
    for item in overrides or []:
        if "=" not in item:
            raise TrainingError(f"--set {item!r}: expected key.sub=value")
        key, _, raw = item.partition("=")
        node = config
        parts = key.strip().split(".")
        for depth, p in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not (p.lstrip("-").isdigit() and -len(node) <= int(p) < len(node)):
                    raise TrainingError(f"--set {item!r}: {'.'.join(parts[:depth]) or 'the config'} is a list of "
                                        f"{len(node)}; {p!r} is not an index into it")
                if last:
                    node[int(p)] = yaml.safe_load(raw)
                else:
                    node = node[int(p)]
            elif isinstance(node, dict):
                if last:
                    node[p] = yaml.safe_load(raw)
                else:
                    node = node.setdefault(p, {})
            else:
                raise TrainingError(f"--set {item!r}: {'.'.join(parts[:depth])} is a {type(node).__name__}, "
                                    f"not a mapping or list")
    return config


def load_config(path: str | Path, overrides: Optional[List[str]] = None) -> Dict[str, Any]:
    """Read a training YAML and apply overrides. Raises TrainingError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise TrainingError(f"config file not found: {p}")
    try:
        cfg = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TrainingError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(cfg, dict):
        raise TrainingError(f"{p}: top level must be a mapping")
    unknown = sorted(set(cfg) - {"model", "data", "eval", "train", "notes"})
    if unknown:
        raise TrainingError(f"{p}: unknown sections {unknown} (model, data, eval, train, notes)")
    return apply_overrides(cfg, overrides or [])


def build_trainer(cfg: Dict[str, Any]) -> Trainer:
    """Model, datasets, evaluator and :class:`Trainer` from a loaded config dict."""
    train_cfg = TrainConfig.from_dict(cfg.get("train"))
    train_cfg.out_dir = str(resolve_path(train_cfg.out_dir)) if not Path(train_cfg.out_dir).is_absolute() \
        else train_cfg.out_dir
    if train_cfg.threads:
        torch.set_num_threads(int(train_cfg.threads))
    torch.manual_seed(train_cfg.seed)  # same initial weights on every rank
    model = build_model(cfg.get("model", {}))
    data = cfg.get("data") or {}
    if "train" not in data:
        raise TrainingError("config needs data.train")
    train_set = build_dataset(data["train"])
    evaluator = None
    if data.get("val"):
        from training.evaluate import make_evaluator

        ev = cfg.get("eval") or {}
        evaluator = make_evaluator(
            build_dataset(data["val"]), ev.get("protocol", "kitti_dc"), ev.get("num_inference_steps"),
            ev.get("max_frames"), figure_dir=Path(train_cfg.out_dir) / "figures",
        )
    return Trainer(model, train_set, train_cfg, evaluator=evaluator, extra_state={"config": cfg})


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="training YAML (training/configs/*.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. train.max_steps=100 (repeatable)")
    parser.add_argument("--resume", default=None, help="checkpoint folder or 'auto' (= train.resume)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, args.overrides)
    if args.resume:
        cfg.setdefault("train", {})["resume"] = args.resume
    trainer = build_trainer(cfg)
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    if trainer.is_main:
        (Path(trainer.out_dir) / "config.resolved.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        print(json.dumps({k: v for k, v in result.items() if k != "eval"} | {"eval": result.get("eval")},
                         indent=2, default=str))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
