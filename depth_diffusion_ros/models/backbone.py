"""timm image backbones as multi-scale feature extractors (the visual condition's first half).

DiffusionDepth (arXiv 2303.05021, Sec. 3.2) extracts multi-scale features with a Swin
Transformer (``swin_large_patch4_window7_224``) or a ResNet. Any timm model that supports
``features_only=True`` works here. Models are always built with ``pretrained=False``: ImageNet
weights come only from a local file (``pretrained_path``), never from the network.

Swin and some other transformer models return NHWC feature maps; :class:`TimmBackbone` returns
NCHW for every model.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)


class BackboneWeightsError(RuntimeError):
    """A backbone weights file is missing, unreadable or does not match the model."""


def load_state_dict_file(path: str | Path) -> Dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``, no pickle
    code execution). Nested ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers are unwrapped.

    Raises BackboneWeightsError naming the file when it is missing or cannot be parsed.
    """
    p = Path(path)
    if not p.is_file():
        raise BackboneWeightsError(f"backbone weights file not found: {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p), device="cpu")
        else:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / truncated / wrong format
        raise BackboneWeightsError(f"cannot read backbone weights {p}: {exc}") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneWeightsError(f"{p} does not hold a state dict of tensors")
    return state


def _norm_key(key: str) -> str:
    # timm's feature wrappers flatten module paths ("layers.0" -> "layers_0"); compare modulo that.
    key = key[len("module."):] if key.startswith("module.") else key
    return key.replace(".", "_")


def load_backbone_weights(model: nn.Module, path: str | Path) -> int:
    """Load ImageNet weights of the *classification* model (or of the feature model itself) from
    ``path`` into a timm ``features_only`` model, strictly for the model's side.

    Every parameter/buffer of ``model`` must be found in the file with the same shape; keys the
    feature model does not have (classifier head, final norm) are ignored.
    Returns the number of tensors loaded. Raises BackboneWeightsError naming the file and the
    first missing/mismatched keys.
    """
    source = load_state_dict_file(path)
    by_norm: Dict[str, str] = {}
    for k in source:
        by_norm.setdefault(_norm_key(k), k)
    target = model.state_dict()
    missing: List[str] = []
    mismatched: List[str] = []
    new_state: Dict[str, torch.Tensor] = {}
    for k, v in target.items():
        src_key = k if k in source else by_norm.get(_norm_key(k))
        if src_key is None:
            missing.append(k)
            continue
        tensor = source[src_key]
        if tuple(tensor.shape) != tuple(v.shape):
            mismatched.append(f"{k}: file {tuple(tensor.shape)} vs model {tuple(v.shape)}")
            continue
        new_state[k] = tensor.to(v.dtype)
    if missing or mismatched:
        raise BackboneWeightsError(
            f"backbone weights {path} do not match the model: {len(missing)} missing keys "
            f"{missing[:5]}, {len(mismatched)} shape mismatches {mismatched[:5]}"
        )
    model.load_state_dict(new_state, strict=True)
    unused = len(source) - len(new_state)
    log.info("loaded %d backbone tensors from %s (%d unused, e.g. classifier head)",
             len(new_state), path, unused)
    return len(new_state)


class TimmBackbone(nn.Module):
    """A timm ``features_only`` model returning NCHW features at strides >= ``min_stride``.

    Args:
        name: timm model name (e.g. "resnet18", "resnet34", "resnet50", "convnext_tiny",
            "swin_large_patch4_window7_224", "mobilenetv3_large_100", "efficientnet_b0").
        pretrained_path: local weights file (see :func:`load_backbone_weights`) or None.
        min_stride: drop feature levels finer than this (default 4; FPN levels 4..32).
        **timm_kwargs: forwarded to ``timm.create_model`` (e.g. ``img_size`` for Swin).
    Attributes:
        channels: list of output channels, fine to coarse.
        strides: list of output strides (reductions), fine to coarse.
    forward(x (B,3,H,W) normalised) -> list of (B, C_i, H/stride_i, W/stride_i).
    Raises ValueError for unknown model names (message names it).
    """

    def __init__(
        self,
        name: str,
        pretrained_path: Optional[str | Path] = None,
        min_stride: int = 4,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        import timm

        try:
            self.body = timm.create_model(name, pretrained=False, features_only=True, **timm_kwargs)
        except RuntimeError as exc:  # timm raises RuntimeError("Unknown model ...")
            raise ValueError(f"backbone {name!r} cannot be built by timm: {exc}") from exc
        info = self.body.feature_info
        all_strides: Sequence[int] = info.reduction()
        all_channels: Sequence[int] = info.channels()
        self.keep: List[int] = [i for i, s in enumerate(all_strides) if s >= min_stride]
        if not self.keep:
            raise ValueError(f"backbone {name!r} has no feature level with stride >= {min_stride}")
        self.strides = [int(all_strides[i]) for i in self.keep]
        self.channels = [int(all_channels[i]) for i in self.keep]
        fmt = getattr(self.body, "output_fmt", "NCHW")
        self.nhwc = str(getattr(fmt, "value", fmt)).upper() == "NHWC"
        self.name = name
        if pretrained_path:
            load_backbone_weights(self.body, pretrained_path)
        # ImageNet normalisation as buffers (timm default mean/std for these models)
        cfg = getattr(self.body, "pretrained_cfg", None) or {}
        mean = cfg.get("mean", (0.485, 0.456, 0.406))
        std = cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb: torch.Tensor) -> List[torch.Tensor]:
        """rgb (B,3,H,W) in [0,1] -> NCHW features, fine to coarse."""
        x = (rgb - self.mean) / self.std
        feats = self.body(x)
        out = []
        for i in self.keep:
            f = feats[i]
            if self.nhwc:
                f = f.permute(0, 3, 1, 2)
            out.append(f.contiguous())
        return out
