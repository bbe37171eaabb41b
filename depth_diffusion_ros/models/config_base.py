"""One config mechanism for every model config (no torch import): dict / YAML round trip,
unknown keys and bad values as named errors, and the DDIM sampler fields declared once.

* :class:`ModelConfig`: base of the model config dataclasses
  (:class:`~depth_diffusion_ros.models.config.DiffusionDepthConfig`,
  :class:`~depth_diffusion_ros.models.dsr_diff_config.DSRDiffConfig`,
  :class:`~depth_diffusion_ros.models.densedepth.DenseDepthConfig`). A subclass names its
  ``architecture`` (the tag written as ``architecture:`` in a checkpoint's ``config.yaml``),
  returns its problems from :meth:`ModelConfig.problems` and lists in ``RUNTIME_FIELDS`` the
  fields a checkpoint's config.yaml may change without changing the weights.
* :class:`DDIMConfig`: the DDIM fields (Song et al., ICLR 2021; names and meaning as
  ``diffusers.DDIMScheduler``) and their validation, for the diffusion models;
  :meth:`~depth_diffusion_ros.models.ddim.DDIMScheduler.from_config` reads them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, FrozenSet, List, Optional, TypeVar, Union

import yaml

from depth_diffusion_ros.models.ddim_schedule import BETA_SCHEDULES, TIMESTEP_SPACINGS

C = TypeVar("C", bound="ModelConfig")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the allowed values."""


class ModelConfig:
    """Base of the model config dataclasses (module docstring).

    Validation runs at construction (``__post_init__``): :meth:`normalise` first (e.g. YAML
    lists to tuples), then every problem :meth:`problems` reports, all in one
    :class:`ConfigError` ("invalid <Class>: <problem>; <problem>").
    """

    architecture: ClassVar[str] = ""
    RUNTIME_FIELDS: ClassVar[FrozenSet[str]] = frozenset()

    def __post_init__(self) -> None:
        self.normalise()
        self.validate()

    def normalise(self) -> None:
        """Bring field values to their canonical types (subclasses extend it)."""

    def problems(self) -> List[str]:
        """One "field=value: what is wrong" string per invalid field (subclasses extend it)."""
        return []

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming every invalid field."""
        problems = self.problems()
        if problems:
            raise ConfigError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> Dict[str, Any]:
        """Plain-python dict (tuples become lists) suitable for YAML/JSON; no ``architecture``."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls: type[C], data: Dict[str, Any]) -> C:
        """Build from a mapping. An ``architecture`` key must be this class's and is dropped;
        unknown keys raise :class:`ConfigError` naming them; bad values raise it too."""
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
        data = dict(data)
        tag = data.pop("architecture", cls.architecture)
        if tag != cls.architecture:
            raise ConfigError(f"architecture={tag!r}: a {cls.__name__} config has architecture {cls.architecture!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} keys: {unknown}")
        return cls(**data)

    def to_yaml(self, path: Optional[Union[str, Path]] = None) -> str:
        """YAML text with ``architecture:`` first, then :meth:`to_dict`; also written to ``path``
        when given."""
        text = yaml.safe_dump({"architecture": self.architecture, **self.to_dict()}, sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls: type[C], path_or_text: Union[str, Path]) -> C:
        """Load from a YAML file (a ``Path``, or a string ending in .yaml/.yml or naming an
        existing file) or from YAML text; an empty document is the defaults.

        Raises :class:`ConfigError` (naming the file for a file): not found, not YAML, or
        what :meth:`from_dict` raises.
        """
        source = str(path_or_text)
        is_path = isinstance(path_or_text, Path) or (
            "\n" not in source and (source.endswith((".yaml", ".yml")) or Path(source).is_file())
        )
        if not is_path:
            return cls.from_dict(yaml.safe_load(source) or {})
        p = Path(source)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        try:
            return cls.from_dict(data or {})
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{p}: {exc}") from exc

    @classmethod
    def default_dict(cls) -> Dict[str, Any]:
        """:meth:`to_dict` of the defaults (fills in fields added since a config was written)."""
        return cls().to_dict()


@dataclass
class DDIMConfig(ModelConfig):
    """The DDIM fields (Song et al., ICLR 2021; numbers identical to ``diffusers.DDIMScheduler``).

    num_train_timesteps: T of the forward process. num_inference_steps: DDIM steps at sampling
    (a model may change the default). beta_schedule, beta_start, beta_end: the noise schedule
    (:func:`~depth_diffusion_ros.models.ddim.make_betas`). timestep_spacing, steps_offset: the
    timestep rule (:func:`~depth_diffusion_ros.models.ddim_schedule.ddim_timesteps`).
    set_alpha_to_one: abar after the last step is 1 (else abar_0). clip_sample,
    clip_sample_range: clamp each step's x0 prediction to [-range, range]. prediction_type: what
    the network predicts; the models here are trained with "epsilon" only.
    """

    num_train_timesteps: int = 1000
    num_inference_steps: int = 20
    beta_schedule: str = "linear"
    beta_start: float = 0.0001
    beta_end: float = 0.02
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    set_alpha_to_one: bool = True
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    prediction_type: str = "epsilon"

    # The DDIMScheduler arguments among the fields (num_inference_steps is a sampling argument).
    SCHEDULER_FIELDS: ClassVar[tuple] = (
        "num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "set_alpha_to_one",
        "steps_offset", "timestep_spacing", "prediction_type", "clip_sample", "clip_sample_range",
    )
    # Sampling-time fields: a checkpoint's config.yaml may change them without touching the weights.
    DDIM_RUNTIME_FIELDS: ClassVar[FrozenSet[str]] = frozenset(
        {"num_inference_steps", "timestep_spacing", "steps_offset", "clip_sample", "clip_sample_range"}
    )
    TRAINED_PREDICTION_TYPES: ClassVar[tuple] = ("epsilon",)

    def problems(self) -> List[str]:
        out = super().problems()
        if self.beta_schedule not in BETA_SCHEDULES:
            out.append(f"beta_schedule={self.beta_schedule!r}: must be one of {BETA_SCHEDULES}")
        if self.timestep_spacing not in TIMESTEP_SPACINGS:
            out.append(f"timestep_spacing={self.timestep_spacing!r}: must be one of {TIMESTEP_SPACINGS}")
        if int(self.num_train_timesteps) < 1:
            out.append(f"num_train_timesteps={self.num_train_timesteps}: must be >= 1")
        if not 1 <= int(self.num_inference_steps) <= int(self.num_train_timesteps):
            out.append(f"num_inference_steps={self.num_inference_steps}: must be in "
                       f"[1, num_train_timesteps={self.num_train_timesteps}]")
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            out.append(f"beta_start={self.beta_start}, beta_end={self.beta_end}: need 0 < start < end < 1")
        if self.clip_sample_range <= 0:
            out.append(f"clip_sample_range={self.clip_sample_range}: must be > 0")
        if self.prediction_type not in self.TRAINED_PREDICTION_TYPES:
            out.append(f"prediction_type={self.prediction_type!r}: must be one of {self.TRAINED_PREDICTION_TYPES}")
        return out
