"""The DDIM sampler loop and the ensemble, shared by every learned backend (numpy only).

A learned DiffusionDepth backend (torch, ONNX Runtime, TensorRT; see
:class:`~depth_diffusion_ros.inference.backends.base.DiffusionBackend`) offers the model in
parts — ``encode`` (image [+ sparse depth] -> condition), ``run_steps`` (DDIM steps, eta 0; Song
et al., ICLR 2021, eq. 12) and ``decode`` (latents -> depth) — or, for a graph exported with the
loop unrolled, ``sample_unrolled``. :func:`sample_members` drives those parts for one frame and
every ensemble member; :func:`aggregate_ensemble` turns the members into the depth and its
uncertainty. Values the backend returns between steps are opaque here (torch tensors, OrtValues,
device buffers) and may stay on the device.

The timesteps come from the one DDIM timestep rule (:func:`ddim_timestep_pairs`), the same the
torch scheduler uses; the initial noise from :func:`~depth_diffusion_ros.inference.frames.make_noise`
with the backend's seed, so all backends start from the same latents.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from depth_diffusion_ros.inference.errors import BackendError
from depth_diffusion_ros.models.ddim_schedule import ddim_timestep_pairs


@dataclass(frozen=True)
class SamplingOptions:
    """How a learned backend samples: DDIM steps (None = the model's default), ensemble size
    (diffusion samples per frame; > 1 gives an uncertainty) and the seed of the initial noise
    (the same every frame, so a static scene gives the same depth frame after frame).

    Raises BackendError for ensemble_size < 1 or num_inference_steps < 1.
    """

    num_inference_steps: Optional[int] = None
    ensemble_size: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.ensemble_size) < 1:
            raise BackendError(f"ensemble_size={self.ensemble_size}: must be >= 1")
        if self.num_inference_steps is not None and int(self.num_inference_steps) < 1:
            raise BackendError(f"num_inference_steps={self.num_inference_steps}: must be >= 1")

    def steps(self, default: int, num_train_timesteps: int, model: str) -> int:
        """The step count to run: the requested one, else ``default`` (the model's); BackendError
        naming ``model`` when it exceeds ``num_train_timesteps``."""
        n = int(default if self.num_inference_steps is None else self.num_inference_steps)
        if not 1 <= n <= int(num_train_timesteps):
            raise BackendError(f"num_inference_steps={n}: must be in [1, {num_train_timesteps}] for {model}")
        return n


@dataclass(frozen=True)
class SchedulerSpec:
    """The DDIM settings the loop needs (a model config's, or the ``ddr.scheduler`` metadata of an
    exported step graph)."""

    num_train_timesteps: int = 1000
    timestep_spacing: str = "leading"
    steps_offset: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SchedulerSpec":
        return cls(int(d.get("num_train_timesteps", 1000)), str(d.get("timestep_spacing", "leading")),
                   int(d.get("steps_offset", 0)))

    @classmethod
    def from_config(cls, config: Any) -> "SchedulerSpec":
        """From a model config with the DDIM fields (DiffusionDepthConfig, DSRDiffConfig)."""
        return cls(int(config.num_train_timesteps), str(config.timestep_spacing), int(config.steps_offset))

    def to_dict(self) -> dict[str, Any]:
        return {"num_train_timesteps": self.num_train_timesteps, "timestep_spacing": self.timestep_spacing,
                "steps_offset": self.steps_offset}

    def pairs(self, num_inference_steps: int) -> list[tuple[int, int]]:
        """[(t, prev_t), ...] descending; prev_t < 0 on the last step (see ddim_timestep_pairs)."""
        return ddim_timestep_pairs(num_inference_steps, self.num_train_timesteps, self.timestep_spacing,
                                   self.steps_offset)


def sample_members(backend: Any, feed: Mapping[str, np.ndarray], noise: np.ndarray,
                   num_inference_steps: int) -> np.ndarray:
    """Depth of every ensemble member for one frame.

    backend: a DiffusionBackend; feed: {"rgb" (1,3,H,W) [0,1], "sparse_depth", "valid_mask"
    (1,1,H,W)} float32 at a size the backend accepts; noise: (E, C, h, w) float32, one initial
    latent per member. Members are run ``backend.batch_capacity`` at a time (None: all at once).
    Returns (E, C, H, W) float32 metres: C = 1 depth, C = 2 [depth, predicted sigma] for a
    model with an uncertainty head.
    """
    E = int(noise.shape[0])
    chunk = E if backend.batch_capacity is None else int(backend.batch_capacity)
    parts = []
    if backend.form == "unrolled":
        for start in range(0, E, chunk):
            parts.append(np.asarray(backend.sample_unrolled(feed, noise[start:start + chunk]), np.float32))
        return np.concatenate(parts, axis=0)
    cond = backend.encode(feed)
    pairs = backend.scheduler.pairs(num_inference_steps)
    for start in range(0, E, chunk):
        members = np.ascontiguousarray(noise[start:start + chunk], np.float32)
        c = backend.repeat(cond, members.shape[0]) if members.shape[0] > 1 else cond
        latents = backend.run_steps(members, c, pairs)
        parts.append(np.asarray(backend.decode(latents, c), np.float32))
    return np.concatenate(parts, axis=0)


def aggregate_ensemble(members: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The ensemble's depth and uncertainty: (E, ..., H, W) members -> ((..., H, W), std | None).

    The one convention of the package (test-time ensembling of diffusion samples, as Marigold,
    Ke et al., CVPR 2024, does — here the plain mean, the depth being metric already): the depth
    is the per-pixel mean over the members, the uncertainty the per-pixel population standard
    deviation (ddof 0, metres). A pixel has an estimate only
    where every member has one (> 0); elsewhere both are 0. For a single member the uncertainty
    is None.
    """
    members = np.asarray(members, np.float32)
    if members.shape[0] == 1:
        return members[0], None
    valid = (members > 0).all(axis=0)
    mean = np.where(valid, members.mean(axis=0), 0.0).astype(np.float32)
    std = np.where(valid, members.std(axis=0), 0.0).astype(np.float32)
    return mean, std


def aggregate_depth_members(members: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Depth and uncertainty of (E, C, H, W) DiffusionDepth members (:func:`sample_members`).

    C = 1: :func:`aggregate_ensemble` of the depths. C = 2 (a model with an uncertainty head,
    channel 1 = its predicted standard deviation, metres): the uncertainty is the total standard
    deviation of the mixture of the members, sqrt(mean(sigma^2) + spread^2) (law of total
    variance; spread = the ensemble's population std), so a single member already has one.
    Returns ((H, W) depth m, (H, W) uncertainty m | None), both 0 where there is no estimate.
    """
    members = np.asarray(members, np.float32)
    depth, spread = aggregate_ensemble(members[:, 0])
    if members.shape[1] < 2:
        return depth, spread
    total = np.mean(np.square(members[:, 1]), axis=0)
    if spread is not None:
        total = total + np.square(spread)
    return depth, np.where(depth > 0, np.sqrt(total), 0.0).astype(np.float32)
