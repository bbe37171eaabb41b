"""Model-agnostic trainer: optimiser + schedule, mixed precision, clipping, resume, DDP, logging.

The trainer needs only ``model.training_losses(batch) -> dict`` with ``"loss"`` the total
(differentiable) and other entries logged as scalars; evaluation goes through an ``evaluator``
callable (see :mod:`training.evaluate`), which calls ``model.sample(...)``.

Schedule (DiffusionDepth, arXiv 2303.05021, Sec. 4.1, and the authors' code, which follows
NLSPN, Park et al., ECCV 2020): Adam, lr 1e-3, linear warm-up over the first epoch, step decay at
epochs 10/15/20. The decay factors (1.0, 0.2, 0.04: the lr is multiplied by the factor of the
first milestone not yet reached, the last factor after the last milestone) are NLSPN's defaults;
both lists are config fields. AdamW (the paper's text) is ``optimizer: adamw``. The lr is updated
every step from the fractional epoch, so warm-up is smooth.

Distributed (``torchrun --nproc_per_node N -m training.train ...``): when ``WORLD_SIZE > 1`` the
process group starts with NCCL on CUDA and gloo on CPU; the model is wrapped in
DistributedDataParallel (through a small module whose ``forward`` is ``training_losses``, so DDP's
gradient hooks run); data is split with ``DistributedSampler``; only rank 0 logs, evaluates and
writes checkpoints, and the others wait at a barrier.

Resume checkpoints (``<out_dir>/checkpoints/step_XXXXXXXX/``), no pickle anywhere:
  * ``model.safetensors`` (+ ``config.yaml`` when the model is a DiffusionDepth, DSR-Diff or
    DenseDepth: then the folder is also a normal
    :func:`depth_diffusion_ros.models.checkpoint.load_checkpoint` folder);
  * ``trainer_state.safetensors``: every optimiser state tensor (``optim/<param>/<name>``), the
    torch/CUDA RNG states, and JSON metadata with the step, epoch, param groups, scheduler state,
    GradScaler state and the training config.
``<out_dir>/checkpoints/latest.txt`` names the newest; ``resume: auto`` continues from it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

LOG = logging.getLogger("training")

OPTIMIZERS = ("adam", "adamw")
AMP_MODES = ("none", "auto", "bf16", "fp16")
SCHEDULES = ("step", "constant")


class TrainingError(RuntimeError):
    """Bad training configuration or state (message names the field or file)."""


@dataclass
class TrainConfig:
    """Training loop settings (the ``train:`` section of a config YAML).

    Epoch-based fields count passes over the training dataset (per process, the data is split
    across ranks). ``max_steps`` (optimiser steps) stops earlier when set.
    """

    epochs: int = 30
    max_steps: Optional[int] = None
    batch_size: int = 16                 # per process
    num_workers: int = 2
    seed: int = 0
    device: str = "auto"                 # "auto" | "cpu" | "cuda" | "cuda:N"
    threads: Optional[int] = None        # torch.set_num_threads on CPU

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: Sequence[float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "step"
    warmup_epochs: float = 1.0
    warmup_steps: Optional[int] = None   # overrides warmup_epochs
    lr_milestones: Sequence[float] = (10, 15, 20)
    lr_factors: Sequence[float] = (1.0, 0.2, 0.04)

    amp: str = "auto"                    # auto: fp16 + GradScaler on CUDA, none on CPU
    grad_clip: Optional[float] = 1.0     # max global grad norm; None/0 = off
    freeze: Sequence[str] = ()           # parameter-name prefixes kept fixed (e.g. "backbone.")
    find_unused_parameters: bool = False

    out_dir: str = "runs/train"
    log_every: int = 10
    ckpt_every_steps: Optional[int] = None
    ckpt_every_epochs: Optional[int] = 1
    keep_last: int = 2
    eval_every_epochs: Optional[int] = None
    resume: Optional[str] = None         # path of a step_X folder, "auto" (latest), or None
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        # YAML 1.1 reads "3e-3" (no dot) as a string: coerce numbers, naming the bad field.
        for name, kind in (("lr", float), ("weight_decay", float), ("eps", float), ("warmup_epochs", float),
                           ("epochs", int), ("batch_size", int), ("num_workers", int), ("seed", int),
                           ("log_every", int), ("keep_last", int)):
            try:
                setattr(self, name, kind(getattr(self, name)))
            except (TypeError, ValueError) as exc:
                raise TrainingError(f"train.{name}={getattr(self, name)!r}: not a number") from exc
        for name in ("grad_clip", "max_steps", "warmup_steps", "threads", "ckpt_every_steps",
                     "ckpt_every_epochs", "eval_every_epochs"):
            value = getattr(self, name)
            if value is not None:
                try:
                    setattr(self, name, (float if name == "grad_clip" else int)(value))
                except (TypeError, ValueError) as exc:
                    raise TrainingError(f"train.{name}={value!r}: not a number") from exc
        self.betas = tuple(float(b) for b in self.betas)
        self.lr_milestones = tuple(float(m) for m in self.lr_milestones)
        self.lr_factors = tuple(float(f) for f in self.lr_factors)
        self.freeze = tuple(str(f) for f in (self.freeze or ()))
        if self.optimizer not in OPTIMIZERS:
            raise TrainingError(f"train.optimizer={self.optimizer!r}: choose one of {OPTIMIZERS}")
        if self.amp not in AMP_MODES:
            raise TrainingError(f"train.amp={self.amp!r}: choose one of {AMP_MODES}")
        if self.schedule not in SCHEDULES:
            raise TrainingError(f"train.schedule={self.schedule!r}: choose one of {SCHEDULES}")
        if self.schedule == "step" and len(self.lr_milestones) != len(self.lr_factors):
            raise TrainingError(
                f"train.lr_milestones {self.lr_milestones} and lr_factors {self.lr_factors} need the same length"
            )
        for name in ("epochs", "batch_size", "log_every", "keep_last"):
            if int(getattr(self, name)) < 1:
                raise TrainingError(f"train.{name}={getattr(self, name)}: must be >= 1")
        if self.lr <= 0:
            raise TrainingError(f"train.lr={self.lr}: must be > 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise TrainingError(f"train.max_steps={self.max_steps}: must be >= 1 or null")

    @classmethod
    def from_dict(cls, data: Optional[dict]) -> "TrainConfig":
        """Build from a dict; unknown keys raise :class:`TrainingError` naming them."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingError(f"unknown train config keys: {unknown} (known: {sorted(known)})")
        return cls(**data)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for k in ("betas", "lr_milestones", "lr_factors", "freeze"):
            out[k] = list(out[k])
        return out


# ----------------------------------------------------------------------------- distributed helpers

def init_distributed(device_type: str) -> tuple[int, int, int]:
    """Start the default process group when launched by torchrun / with WORLD_SIZE > 1.

    Returns (rank, world_size, local_rank); (0, 1, 0) for a single process. Backend: NCCL on
    CUDA, gloo otherwise. Rendezvous from the env (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return 0, 1, 0
    if not dist.is_available():
        raise TrainingError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def _is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if _is_dist():
        dist.barrier()


class _LossModule(nn.Module):
    """``forward(batch) = model.training_losses(batch)`` so DDP sees the training pass."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return self.model.training_losses(batch)


class _SkipSampler(Sampler):
    """Yields the indices of ``base`` after skipping the first ``skip`` (mid-epoch resume)."""

    def __init__(self, base: DistributedSampler, skip: int = 0):
        self.base, self.skip = base, int(skip)

    def __iter__(self) -> Iterator[int]:
        for i, idx in enumerate(self.base):
            if i >= self.skip:
                yield idx

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


def lr_factor(epoch: float, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Multiplier of the base lr at fractional ``epoch`` (module docstring: warm-up + steps)."""
    warm_epochs = cfg.warmup_epochs if cfg.warmup_steps is None else cfg.warmup_steps / max(1, steps_per_epoch)
    factor = 1.0
    if cfg.schedule == "step":
        factor = cfg.lr_factors[-1] if cfg.lr_factors else 1.0
        for milestone, f in zip(cfg.lr_milestones, cfg.lr_factors):
            if epoch < milestone:
                factor = f
                break
    if warm_epochs > 0 and epoch < warm_epochs:
        factor *= max(epoch / warm_epochs, 1.0 / max(1, steps_per_epoch))
    return factor


# ----------------------------------------------------------------------------- state (de)serialisation

def _optimizer_to_safetensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            if torch.is_tensor(value):
                tensors[f"optim/{pid}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}/{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_safetensors(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, value in tensors.items():
        if not key.startswith("optim/"):
            continue
        _, pid, name = key.split("/", 2)
        state.setdefault(int(pid), {})[name] = value
    for key, value in meta.get("scalars", {}).items():
        pid, name = key.split("/", 1)
        state.setdefault(int(pid), {})[name] = value
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def default_save_model(model: nn.Module, directory: Path) -> None:
    """Models with a checkpointable config (DiffusionDepth, DSR-Diff, DenseDepth):
    :func:`models.checkpoint.save_checkpoint` (weights + config.yaml); any other module: its
    state dict as ``model.safetensors``."""
    from safetensors.torch import save_file

    from depth_diffusion_ros.models.checkpoint import architecture_of, save_checkpoint

    directory.mkdir(parents=True, exist_ok=True)
    if architecture_of(model) is not None:
        save_checkpoint(model, directory)
        return
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))


def load_model_weights(model: nn.Module, directory: Path) -> None:
    """Load ``directory/model.safetensors`` into ``model`` strictly.

    Raises:
        TrainingError: the file is missing or keys/shapes differ (named).
    """
    from safetensors.torch import load_file

    path = Path(directory) / "model.safetensors"
    if not path.is_file():
        raise TrainingError(f"model weights not found: {path}")
    state = load_file(str(path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise TrainingError(f"{path} does not match the model: {exc}") from exc


# ----------------------------------------------------------------------------- the trainer

class Trainer:
    """Train ``model`` on ``train_dataset`` with :class:`TrainConfig`.

    Args:
        model: an ``nn.Module`` with ``training_losses(batch) -> dict`` ("loss" = total).
        train_dataset: map-style dataset of sample dicts (tensors are moved to the device;
            other values pass through).
        config: TrainConfig.
        evaluator: optional ``evaluator(model) -> dict[str, float]`` run on rank 0 in eval mode
            every ``eval_every_epochs`` and at the end; may return ``"figure"`` (a PNG path) too.
        save_model: ``save_model(model, directory)``; default :func:`default_save_model`.
        extra_state: JSON-serialisable dict stored in every checkpoint (e.g. the full YAML config).
    """

    def __init__(
        self,
        model: nn.Module,
        train_dataset: Dataset,
        config: TrainConfig,
        evaluator: Optional[Callable[[nn.Module], Dict[str, Any]]] = None,
        save_model: Callable[[nn.Module, Path], None] = default_save_model,
        extra_state: Optional[dict] = None,
    ):
        if not callable(getattr(model, "training_losses", None)):
            raise TrainingError(f"{type(model).__name__} has no training_losses(batch) method")
        self.cfg = config
        self.model = model
        self.dataset = train_dataset
        self.evaluator = evaluator
        self.save_model = save_model
        self.extra_state = dict(extra_state or {})

        self.device = self._pick_device(config.device)
        if config.threads and self.device.type == "cpu":
            torch.set_num_threads(int(config.threads))
        self.rank, self.world_size, self.local_rank = init_distributed(self.device.type)
        if self.device.type == "cuda" and config.device in ("auto", "cuda"):
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        self.is_main = self.rank == 0
        torch.manual_seed(config.seed + self.rank)

        if config.freeze:
            frozen = [n for n, p in self.model.named_parameters() if n.startswith(tuple(config.freeze))]
            if not frozen:
                names = sorted({n.split(".")[0] for n, _ in self.model.named_parameters()})
                raise TrainingError(f"train.freeze={list(config.freeze)} matches no parameter (top-level: {names})")
            for n, p in self.model.named_parameters():
                if n in frozen:
                    p.requires_grad_(False)
        self.model.to(self.device)
        self.loss_module: nn.Module = _LossModule(self.model)
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            kwargs = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
            self.loss_module = DDP(self.loss_module, find_unused_parameters=config.find_unused_parameters, **kwargs)

        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise TrainingError("the model has no trainable parameters")
        opt_cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        self.optimizer = opt_cls(params, lr=config.lr, betas=tuple(config.betas), eps=config.eps,
                                 weight_decay=config.weight_decay)
        self.amp_dtype = self._amp_dtype(config.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda")

        if len(train_dataset) < self.world_size * config.batch_size:
            raise TrainingError(
                f"training set has {len(train_dataset)} samples, fewer than world_size x batch_size = "
                f"{self.world_size} x {config.batch_size}; repeat the dataset (type: repeat) or lower batch_size"
            )
        self.sampler = DistributedSampler(train_dataset, num_replicas=self.world_size, rank=self.rank,
                                          shuffle=True, seed=config.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // config.batch_size
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, int(config.max_steps))
        self.step = 0
        self.out_dir = Path(config.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.history: List[Dict[str, float]] = []  # logged scalars (rank 0)
        self.skipped_nonfinite = 0
        self._writer = None
        self._metrics_file = None
        if config.resume:
            self.resume(config.resume)

    # ------------------------------------------------------------------ setup helpers
    @staticmethod
    def _pick_device(name: str) -> torch.device:
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise TrainingError(f"train.device={name!r} but CUDA is not available here")
        return dev

    def _amp_dtype(self, mode: str) -> Optional[torch.dtype]:
        if mode == "auto":
            return torch.float16 if self.device.type == "cuda" else None
        if mode == "fp16":
            if self.device.type != "cuda":
                raise TrainingError("train.amp='fp16' needs CUDA (GradScaler); use 'bf16' or 'none' on CPU")
            return torch.float16
        if mode == "bf16":
            return torch.bfloat16
        return None

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _open_logs(self) -> None:
        if not self.is_main or self._metrics_file is not None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._metrics_file = open(self.out_dir / "metrics.jsonl", "a")
        if self.cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.out_dir / "tensorboard"))
            except ImportError:
                LOG.warning("tensorboard is not installed: scalars are written to %s only "
                            "(pip install tensorboard to get event files)", self.out_dir / "metrics.jsonl")

    def _log(self, scalars: Dict[str, float], kind: str = "train") -> None:
        if not self.is_main:
            return
        self._open_logs()
        record = {"kind": kind, "step": self.step, **scalars}
        self.history.append(record)
        self._metrics_file.write(json.dumps(record) + "\n")
        self._metrics_file.flush()
        if self._writer is not None:
            for k, v in scalars.items():
                if isinstance(v, (int, float)) and math.isfinite(float(v)):
                    self._writer.add_scalar(f"{kind}/{k}", float(v), self.step)

    def _log_image(self, tag: str, png_path: str) -> None:
        if self._writer is None:
            return
        import cv2

        img = cv2.imread(png_path, cv2.IMREAD_COLOR)
        if img is not None:
            self._writer.add_image(tag, img[..., ::-1].copy(), self.step, dataformats="HWC")

    # ------------------------------------------------------------------ data
    def _loader(self, epoch: int, skip_batches: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        sampler = _SkipSampler(self.sampler, skip_batches * self.cfg.batch_size)
        gen = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch * 1009 + self.rank)
        return DataLoader(
            self.dataset, batch_size=self.cfg.batch_size, sampler=sampler, drop_last=True,
            num_workers=self.cfg.num_workers, pin_memory=self.device.type == "cuda",
            generator=gen, persistent_workers=False,
        )

    def _to_device(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        return {k: (v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}

    # ------------------------------------------------------------------ training
    def _set_lr(self) -> float:
        factor = lr_factor(self.step / max(1, self.steps_per_epoch), self.cfg, self.steps_per_epoch)
        lr = self.cfg.lr * factor
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    def train_step(self, batch: Dict[str, Any]) -> Dict[str, float]:
        """One optimiser step on ``batch``; returns the (local) loss scalars and lr/grad_norm."""
        self.model.train()
        lr = self._set_lr()
        batch = self._to_device(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            losses = self.loss_module(batch)
        if "loss" not in losses:
            raise TrainingError(f"training_losses returned {sorted(losses)}; it must contain 'loss'")
        loss = losses["loss"]
        if not torch.isfinite(loss.detach()).all():
            # every rank must take the same decision, or DDP hangs in the backward all-reduce
            bad = torch.ones(1, device=self.device)
        else:
            bad = torch.zeros(1, device=self.device)
        if _is_dist():
            dist.all_reduce(bad)
        if bad.item() > 0:
            self.skipped_nonfinite += 1
            LOG.warning("step %d: non-finite loss on some rank, step skipped (%d so far)", self.step, self.skipped_nonfinite)
            self.step += 1
            return {"loss": float("nan"), "lr": lr}
        self.scaler.scale(loss).backward()
        grad_norm = float("nan")
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        out = {k: float(v.detach().float().mean()) for k, v in losses.items() if torch.is_tensor(v)}
        out.update(lr=lr, grad_norm=grad_norm)
        return out

    def fit(self) -> Dict[str, Any]:
        """Run until ``total_steps``; returns {"step", "last": last logged scalars, "eval": last
        evaluation (or None), "wall_s", "skipped_nonfinite"}."""
        t0 = time.time()
        cfg = self.cfg
        self._open_logs()
        if self.is_main:
            LOG.info("training %s on %s: %d samples, world %d, batch %d/process, %d steps/epoch, %d steps",
                     type(self.model).__name__, self.device, len(self.dataset), self.world_size,
                     cfg.batch_size, self.steps_per_epoch, self.total_steps)
        bar = None
        if self.is_main and cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc="train", dynamic_ncols=True, mininterval=2.0)
        last: Dict[str, float] = {}
        window: List[Dict[str, float]] = []
        eval_result = None
        while self.step < self.total_steps:
            epoch = self.step // self.steps_per_epoch
            skip = self.step % self.steps_per_epoch
            for batch in self._loader(epoch, skip):
                scalars = self.train_step(batch)
                window.append(scalars)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{scalars['loss']:.4f}", lr=f"{scalars['lr']:.2e}")
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    last = self._reduce_window(window)
                    last["epoch"] = self.step / self.steps_per_epoch
                    self._log(last)
                    window = []
                if cfg.ckpt_every_steps and self.step % cfg.ckpt_every_steps == 0:
                    self.save_checkpoint()
                end_of_epoch = self.step % self.steps_per_epoch == 0
                if end_of_epoch:
                    done_epochs = self.step // self.steps_per_epoch
                    if cfg.ckpt_every_epochs and done_epochs % cfg.ckpt_every_epochs == 0 and not (
                        cfg.ckpt_every_steps and self.step % cfg.ckpt_every_steps == 0
                    ):
                        self.save_checkpoint()
                    if cfg.eval_every_epochs and done_epochs % cfg.eval_every_epochs == 0 \
                            and self.step < self.total_steps:
                        eval_result = self.evaluate()
                if self.step >= self.total_steps:
                    break
        if bar is not None:
            bar.close()
        if self.evaluator is not None:
            eval_result = self.evaluate()
        final_dir = self.out_dir / "final"
        if self.is_main:
            self.save_model(self.model, final_dir)
        barrier()
        wall = time.time() - t0
        if self.is_main:
            self._log({"wall_s": wall, "skipped_nonfinite": self.skipped_nonfinite}, kind="summary")
            if self._writer is not None:
                self._writer.flush()
        return {"step": self.step, "last": last, "eval": eval_result, "wall_s": wall,
                "skipped_nonfinite": self.skipped_nonfinite, "final_dir": str(final_dir)}

    def _reduce_window(self, window: List[Dict[str, float]]) -> Dict[str, float]:
        """Mean of the window's scalars over steps and (all-reduced) over ranks."""
        keys = sorted({k for w in window for k in w})
        vals = torch.tensor([[w.get(k, float("nan")) for k in keys] for w in window], dtype=torch.float64)
        finite = torch.isfinite(vals)
        sums = torch.where(finite, vals, torch.zeros_like(vals)).sum(0)
        counts = finite.sum(0).to(torch.float64)
        if _is_dist():
            packed = torch.cat([sums, counts]).to(self.device if self.device.type == "cuda" else "cpu")
            dist.all_reduce(packed)
            sums, counts = packed[: len(keys)].cpu(), packed[len(keys):].cpu()
        return {k: (float(s / c) if c > 0 else float("nan")) for k, s, c in zip(keys, sums, counts)}

    def evaluate(self) -> Optional[Dict[str, Any]]:
        """Run the evaluator on rank 0 (model in eval mode, no grad); others wait."""
        result = None
        if self.is_main and self.evaluator is not None:
            was_training = self.model.training
            self.model.eval()
            with torch.no_grad():
                result = dict(self.evaluator(self.model))
            self.model.train(was_training)
            figure = result.pop("figure", None)
            self._log({k: v for k, v in result.items() if isinstance(v, (int, float))}, kind="eval")
            if figure:
                self._log_image("eval/figure", str(figure))
                result["figure"] = figure
        barrier()
        return result

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Optional[Path]:
        """Write a resume checkpoint for the current step (rank 0); returns its folder."""
        path = None
        if self.is_main:
            from safetensors.torch import save_file

            path = self.ckpt_dir / f"step_{self.step:08d}"
            tmp = self.ckpt_dir / f".tmp_step_{self.step:08d}"
            if tmp.exists():
                shutil.rmtree(tmp)
            self.save_model(self.model, tmp)
            tensors, opt_meta = _optimizer_to_safetensors(self.optimizer)
            tensors["rng/torch"] = torch.get_rng_state()
            if torch.cuda.is_available() and self.device.type == "cuda":
                tensors["rng/cuda"] = torch.cuda.get_rng_state(self.device)
            meta = {
                "step": self.step,
                "epoch": self.step / self.steps_per_epoch,
                "steps_per_epoch": self.steps_per_epoch,
                "world_size": self.world_size,
                "optimizer": opt_meta,
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "train_config": self.cfg.to_dict(),
                "extra": self.extra_state,
                "skipped_nonfinite": self.skipped_nonfinite,
            }
            save_file(tensors, str(tmp / "trainer_state.safetensors"), metadata={"trainer": json.dumps(meta)})
            if path.exists():
                shutil.rmtree(path)
            tmp.replace(path)
            (self.ckpt_dir / "latest.txt").write_text(path.name + "\n")
            old = sorted(p for p in self.ckpt_dir.glob("step_*") if p.is_dir())
            for p in old[: max(0, len(old) - self.cfg.keep_last)]:
                shutil.rmtree(p, ignore_errors=True)
            LOG.info("checkpoint %s", path)
        barrier()
        return path

    def resume(self, where: str | Path) -> None:
        """Load model, optimiser, scaler, RNG and step from a checkpoint folder (or "auto").

        Raises:
            TrainingError: nothing to resume, or files that do not match (named).
        """
        from safetensors import safe_open

        if str(where) == "auto":
            latest = self.ckpt_dir / "latest.txt"
            if not latest.is_file():
                LOG.info("resume=auto: no checkpoint in %s, starting from scratch", self.ckpt_dir)
                return
            where = self.ckpt_dir / latest.read_text().strip()
        where = Path(where)
        state_path = where / "trainer_state.safetensors"
        if not state_path.is_file():
            raise TrainingError(f"resume: {state_path} not found")
        load_model_weights(self.model, where)
        tensors = {}
        with safe_open(str(state_path), framework="pt", device="cpu") as f:
            meta = json.loads((f.metadata() or {})["trainer"])
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
        try:
            _optimizer_from_safetensors(self.optimizer, tensors, meta["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise TrainingError(f"{state_path}: optimiser state does not match this model: {exc}") from exc
        if meta.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(meta["scaler"])
        if "rng/torch" in tensors:
            torch.set_rng_state(tensors["rng/torch"])
        if "rng/cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng/cuda"], self.device)
        if meta.get("steps_per_epoch") != self.steps_per_epoch or meta.get("world_size") != self.world_size:
            LOG.warning("resume: steps/epoch %s -> %s, world size %s -> %s; the data order changes",
                        meta.get("steps_per_epoch"), self.steps_per_epoch, meta.get("world_size"), self.world_size)
        self.step = int(meta["step"])
        self.skipped_nonfinite = int(meta.get("skipped_nonfinite", 0))
        if self.is_main:
            LOG.info("resumed from %s at step %d", where, self.step)

    def close(self) -> None:
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
