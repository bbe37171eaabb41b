"""Host-side DDIM loop over exported graphs (numpy only; no torch).

The "step" export form of DiffusionDepth is three graphs:

* ``encoder``:  rgb (1,3,H,W), sparse_depth (1,1,H,W), valid_mask (1,1,H,W) -> cond
* ``step``:     latents (B,C,h,w), cond, timestep (1,) int64, prev_timestep (1,) int64
  -> prev_latents  (one DDIM step, eta 0: Song et al., ICLR 2021, eq. 12; the alpha table is
  a constant inside the graph)
* ``decoder``:  latents, cond -> depth (B,1,H,W) metres

and this module drives them for any number of steps: it computes the DDIM timestep pairs with
the same rule as :class:`depth_diffusion_ros.models.ddim.DDIMScheduler` (which equals
``diffusers.DDIMScheduler``; "leading", "trailing" and "linspace" spacing), runs the step
graph once per pair and aggregates an ensemble (mean depth, per-pixel standard deviation as
the uncertainty). The graph runners are abstract (:class:`GraphRunner`) so ONNX Runtime and
TensorRT share the loop; values returned by a runner may stay on the device between steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

import numpy as np

TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


def ddim_timesteps(
    num_inference_steps: int,
    num_train_timesteps: int = 1000,
    timestep_spacing: str = "leading",
    steps_offset: int = 0,
) -> np.ndarray:
    """Descending int64 DDIM timesteps, (num_inference_steps,).

    Same rule as diffusers' DDIMScheduler.set_timesteps (Lin et al., WACV 2024, Table 2 for the
    spacings). Raises ValueError for steps outside [1, num_train_timesteps] or an unknown spacing.
    """
    n, T = int(num_inference_steps), int(num_train_timesteps)
    if n < 1 or n > T:
        raise ValueError(f"num_inference_steps={n}: must be in [1, num_train_timesteps={T}]")
    if timestep_spacing == "linspace":
        return np.linspace(0, T - 1, n).round()[::-1].copy().astype(np.int64)
    if timestep_spacing == "leading":
        ratio = T // n
        return (np.arange(0, n) * ratio).round()[::-1].copy().astype(np.int64) + int(steps_offset)
    if timestep_spacing == "trailing":
        return np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
    raise ValueError(f"timestep_spacing={timestep_spacing!r}: must be one of {TIMESTEP_SPACINGS}")


def ddim_timestep_pairs(
    num_inference_steps: int,
    num_train_timesteps: int = 1000,
    timestep_spacing: str = "leading",
    steps_offset: int = 0,
) -> list[tuple[int, int]]:
    """[(t, prev_t), ...] with prev_t = t - T // n (may be < 0: the final alpha is then used)."""
    ts = ddim_timesteps(num_inference_steps, num_train_timesteps, timestep_spacing, steps_offset)
    ratio = int(num_train_timesteps) // int(num_inference_steps)
    return [(int(t), int(t) - ratio) for t in ts]


class GraphRunner(Protocol):
    """One compiled graph (an ONNX Runtime session or a TensorRT engine).

    ``run`` takes {input name: numpy array or a value this runner returned earlier} and returns
    {output name: value}; ``to_numpy`` brings a returned value to the host.
    """

    path: str

    def run(self, feed: Mapping[str, Any]) -> dict[str, Any]: ...

    def to_numpy(self, value: Any) -> np.ndarray: ...


@dataclass
class SchedulerSpec:
    """The DDIM settings the host loop needs (stored in the step graph's ``ddr.scheduler``)."""

    num_train_timesteps: int = 1000
    timestep_spacing: str = "leading"
    steps_offset: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SchedulerSpec":
        return cls(
            int(d.get("num_train_timesteps", 1000)),
            str(d.get("timestep_spacing", "leading")),
            int(d.get("steps_offset", 0)),
        )

    def pairs(self, num_inference_steps: int) -> list[tuple[int, int]]:
        return ddim_timestep_pairs(
            num_inference_steps, self.num_train_timesteps, self.timestep_spacing, self.steps_offset
        )


def aggregate_ensemble(depths: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Ensemble (E,1,H,W) -> (mean (1,1,H,W), std (1,1,H,W) or None when E == 1).

    The standard deviation over samples (ddof 0) is the per-pixel uncertainty in metres, as in
    DiffusionDepth.sample.
    """
    depths = np.asarray(depths, np.float32)
    mean = depths.mean(axis=0, keepdims=True)
    if depths.shape[0] == 1:
        return mean, None
    return mean, depths.std(axis=0, keepdims=True).astype(np.float32)


class HostDDIMSampler:
    """Drives encoder / step / decoder graphs through the DDIM loop on the host.

    encoder, step, decoder: GraphRunners with the I/O names above. scheduler: SchedulerSpec.
    batch_capacity: how many ensemble members the step/decoder graphs take at once (their
    static batch; None = dynamic batch, all members at once).
    """

    def __init__(
        self,
        encoder: GraphRunner,
        step: GraphRunner,
        decoder: GraphRunner,
        scheduler: SchedulerSpec,
        batch_capacity: Optional[int] = 1,
        repeat_cond: Optional[Callable[[Any, int], Any]] = None,
    ) -> None:
        self.encoder, self.step, self.decoder = encoder, step, decoder
        self.scheduler = scheduler
        self.batch_capacity = batch_capacity
        self._repeat_cond = repeat_cond

    def run_loop(self, latents: Any, cond: Any, pairs: Sequence[tuple[int, int]]) -> Any:
        """Apply the step graph for each (t, prev_t) pair; returns the final latents value."""
        for t, prev in pairs:
            feed = {
                "latents": latents,
                "cond": cond,
                "timestep": np.array([t], np.int64),
                "prev_timestep": np.array([prev], np.int64),
            }
            latents = self.step.run(feed)["prev_latents"]
        return latents

    def sample(
        self,
        rgb: np.ndarray,
        sparse_depth: np.ndarray,
        valid_mask: np.ndarray,
        noise: np.ndarray,
        num_inference_steps: int,
    ) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Sample depth for one frame.

        rgb (1,3,H,W) float32 [0,1]; sparse_depth, valid_mask (1,1,H,W) float32;
        noise (E,C,h,w) float32, one initial latent per ensemble member.
        Returns (depth (1,1,H,W) m, uncertainty (1,1,H,W) m or None when E == 1).
        """
        cond = self.encoder.run({"rgb": rgb, "sparse_depth": sparse_depth, "valid_mask": valid_mask})["cond"]
        pairs = self.scheduler.pairs(num_inference_steps)
        E = int(noise.shape[0])
        chunk = E if self.batch_capacity is None else int(self.batch_capacity)
        depths = []
        for start in range(0, E, chunk):
            members = np.ascontiguousarray(noise[start:start + chunk], np.float32)
            c = cond
            if members.shape[0] > 1:
                c = (self._repeat_cond or _repeat_numpy(self.encoder))(cond, members.shape[0])
            latents = self.run_loop(members, c, pairs)
            depth = self.decoder.run({"latents": latents, "cond": c})["depth"]
            depths.append(self.decoder.to_numpy(depth))
        return aggregate_ensemble(np.concatenate(depths, axis=0))


def _repeat_numpy(runner: GraphRunner) -> Callable[[Any, int], np.ndarray]:
    def repeat(value: Any, n: int) -> np.ndarray:
        return np.repeat(runner.to_numpy(value), n, axis=0)

    return repeat
