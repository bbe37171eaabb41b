"""The one config mechanism (models/config_base.py) of DiffusionDepthConfig, DSRDiffConfig and
DenseDepthConfig: dict / YAML round trips, unknown keys and the ``architecture:`` tag named, the
DDIM fields declared and validated once, every shipped config.yaml still loading; and the
torch-free modules (configs, timestep rule, reading a checkpoint's config) importing without torch."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from depth_diffusion_ros.inference.backends.exported import DEFAULT_COMPLETION_CHECKPOINT
from depth_diffusion_ros.models.checkpoint import read_checkpoint_config
from depth_diffusion_ros.models.config import DiffusionDepthConfig
from depth_diffusion_ros.models.config_base import ConfigError, DDIMConfig, ModelConfig
from depth_diffusion_ros.models.dsr_diff_config import DSRDiffConfig

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "depth_diffusion_ros" / "weights"
DDIM_FIELDS = ("num_train_timesteps", "num_inference_steps", "beta_schedule", "beta_start", "beta_end",
               "timestep_spacing", "steps_offset", "set_alpha_to_one", "clip_sample", "clip_sample_range",
               "prediction_type")


def _classes():
    from depth_diffusion_ros.models.densedepth import DenseDepthConfig

    return [DiffusionDepthConfig, DSRDiffConfig, DenseDepthConfig]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["diffusion_depth", "dsr_diff", "densedepth"])
def test_every_model_config_round_trips_and_names_problems(tmp_path, index):
    cls = _classes()[index]
    cfg = cls()
    assert isinstance(cfg, ModelConfig)
    assert cls.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "c.yaml"
    text = cfg.to_yaml(path)
    assert yaml.safe_load(text) == {"architecture": cls.architecture, **cfg.to_dict()}
    assert cls.from_yaml(path) == cfg and cls.from_yaml(text) == cfg
    assert cls.from_dict({"architecture": cls.architecture}) == cfg
    with pytest.raises(ConfigError, match=f"unknown {cls.__name__} keys: \\['colour'\\]"):
        cls.from_dict({"colour": 1})
    with pytest.raises(ConfigError, match="c.yaml: architecture='other'"):
        path.write_text(text.replace(f"architecture: {cls.architecture}", "architecture: other"))
        cls.from_yaml(path)
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        cls.from_yaml(tmp_path / "missing.yaml")
    path.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="c.yaml: not valid YAML"):
        cls.from_yaml(path)
    bad_field = "stage" if cls is DSRDiffConfig else "min_depth"
    path.write_text("stage: 3\n" if cls is DSRDiffConfig else "min_depth: 5.0\nmax_depth: 1.0\n")
    with pytest.raises(ConfigError, match=f"c.yaml: invalid {cls.__name__}: .*{bad_field}"):
        cls.from_yaml(path)
    assert issubclass(ConfigError, ValueError)


def test_ddim_fields_are_declared_once():
    names = [f.name for f in dataclasses.fields(DDIMConfig)]
    assert tuple(names) == DDIM_FIELDS
    for cls in (DiffusionDepthConfig, DSRDiffConfig):
        assert issubclass(cls, DDIMConfig)
        assert {f.name for f in dataclasses.fields(cls)} >= set(DDIM_FIELDS)
    # defaults as before the fields were shared; DSR-Diff keeps its shorter GRN loop
    assert DiffusionDepthConfig().num_inference_steps == 20 and DSRDiffConfig().num_inference_steps == 4
    for cls in (DiffusionDepthConfig, DSRDiffConfig):
        c = cls()
        assert (c.num_train_timesteps, c.beta_schedule, c.beta_start, c.beta_end, c.timestep_spacing,
                c.steps_offset, c.set_alpha_to_one, c.clip_sample, c.clip_sample_range, c.prediction_type) == (
            1000, "linear", 0.0001, 0.02, "leading", 0, True, False, 1.0, "epsilon")


@pytest.mark.parametrize("cls", [DiffusionDepthConfig, DSRDiffConfig])
@pytest.mark.parametrize("bad,match", [
    ({"beta_schedule": "cubic"}, "beta_schedule='cubic'"),
    ({"timestep_spacing": "middle"}, "timestep_spacing='middle'"),
    ({"num_inference_steps": 0}, "num_inference_steps=0: must be in \\[1, num_train_timesteps=1000\\]"),
    ({"num_inference_steps": 30, "num_train_timesteps": 20}, "num_inference_steps=30"),
    ({"beta_start": 0.5, "beta_end": 0.1}, "beta_start=0.5, beta_end=0.1"),
    ({"clip_sample_range": 0.0}, "clip_sample_range=0.0"),
    ({"prediction_type": "x0"}, "prediction_type='x0'"),
])
def test_ddim_validation_is_shared(cls, bad, match):
    with pytest.raises(ConfigError, match=f"invalid {cls.__name__}: .*{match}"):
        cls(**bad)


def test_prediction_types_each_architecture_trains():
    # DiffusionDepth trains epsilon, sample and v_prediction; DSR-Diff's trainer only epsilon.
    for kind in ("epsilon", "sample", "v_prediction"):
        assert DiffusionDepthConfig(prediction_type=kind).prediction_type == kind
    with pytest.raises(ConfigError, match="prediction_type='v_prediction': must be one of \\('epsilon',\\)"):
        DSRDiffConfig(prediction_type="v_prediction")


def test_problems_are_all_named_at_once():
    with pytest.raises(ConfigError) as info:
        DSRDiffConfig(stage=3, depth_noise_prob=2.0, beta_schedule="cubic")
    assert all(word in str(info.value) for word in ("stage", "depth_noise_prob", "beta_schedule"))


@pytest.mark.parametrize("name", [DEFAULT_COMPLETION_CHECKPOINT.name, "dsr_diff_demo"])
def test_shipped_config_yaml_files_load_unchanged(name):
    path = WEIGHTS / name / "config.yaml"
    data = yaml.safe_load(path.read_text())
    cfg = read_checkpoint_config(WEIGHTS / name)
    expected = DSRDiffConfig if data.get("architecture") == "dsr_diff" else DiffusionDepthConfig
    assert type(cfg) is expected
    given = {k: v for k, v in data.items() if k != "architecture"}
    assert {k: cfg.to_dict()[k] for k in given} == given  # every written value kept


def test_torch_free_modules_import_without_torch():
    """The configs, the DDIM timestep rule and reading a checkpoint's config need no torch."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from depth_diffusion_ros.models.ddim_schedule import ddim_timestep_pairs\n"
        "from depth_diffusion_ros.models.dsr_diff_config import DSRDiffConfig\n"
        "from depth_diffusion_ros.models.checkpoint import read_checkpoint_config\n"
        f"assert read_checkpoint_config({str(WEIGHTS / 'dsr_diff_demo')!r}).scales == [2, 4, 8, 16]\n"
        "from depth_diffusion_ros.inference.backends.exported import DEFAULT_COMPLETION_CHECKPOINT\n"
        "assert read_checkpoint_config(DEFAULT_COMPLETION_CHECKPOINT).mode == 'completion'\n"
        "assert ddim_timestep_pairs(2, 1000) == [(500, 0), (0, -500)]\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
