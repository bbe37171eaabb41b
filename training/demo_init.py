"""Initialisation hooks for ``model.post_init`` in training configs.

:func:`trust_prior` makes an untrained completion DiffusionDepth start as its densification
prior: the decoder head's residual channel (and, with two priors, its image-dependent selection
correction) is zeroed and its gate bias raised, so ``log depth = log prior + r`` with ``r = 0``
and ``sigmoid(gate) ~ 1`` where the prior exists (with two priors, "prior" is the hand-rule
selection :func:`depth_diffusion_ros.models.prior.select_scanline`, softened)
(see ``depth_diffusion_ros.models.depth_latent.DepthDecoder``). Training then learns only the
correction, the usual zero-initialised residual branch (e.g. ReZero, Bachlechner et al. 2020;
ControlNet's zero convolutions, Zhang et al. 2023). Used for the shipped default completion model
(``training/configs/kitti_completion_v2.yaml``), trained on a CPU budget.
"""
from __future__ import annotations

import torch

from training.trainer import TrainingError


def trust_prior(model: torch.nn.Module, gate_bias: float = 6.0) -> torch.nn.Module:
    """Zero the residual output and set the gate bias of ``model.depth_decoder.head``.

    Args:
        model: a completion-mode DiffusionDepth (its decoder head has 3 outputs: u, r, g, or 4
            with two priors: u, r, g, a; plus log b with the uncertainty head, left as it is).
        gate_bias: initial gate logit (6.0 -> sigmoid 0.9975).

    Raises:
        TrainingError: the model has no completion decoder head of that layout.
    """
    decoder = getattr(model, "depth_decoder", None)
    head = getattr(decoder, "head", None)
    outputs = getattr(head, "out_channels", 0) - int(bool(getattr(decoder, "uncertainty", False)))
    if not isinstance(head, torch.nn.Conv2d) or outputs not in (3, 4):
        raise TrainingError("trust_prior needs a completion DiffusionDepth (depth_decoder.head with 3 or 4 outputs "
                            "besides an uncertainty channel)")
    with torch.no_grad():
        head.weight[1].zero_()
        head.bias[1].zero_()
        head.bias[2].fill_(float(gate_bias))
        if outputs == 4:
            head.weight[3].zero_()
            head.bias[3].zero_()
    return model
