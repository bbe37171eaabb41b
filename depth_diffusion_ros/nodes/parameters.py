"""Node parameters: declared once with a descriptor, checked at start and on every change.

Every parameter is a :class:`ParamSpec`: a ``ParameterDescriptor`` (description, integer/float
range, read-only flag, allowed values in ``additional_constraints``) plus the checks. Values are
checked at start; a bad one raises :class:`ParameterError` whose message names the parameter,
the value and what is allowed. Run-time changes (``ros2 param set``) go through the same checks;
read-only ones are refused by rclpy. Each node module exports its table as ``PARAMETERS`` (the
launch/config tests and the README's parameter tables are generated from them).
"""
from __future__ import annotations

import array
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter

from depth_diffusion_ros.ros import RELIABILITY_CHOICES


class ParameterError(ValueError):
    """A parameter value is not allowed; the message names the parameter, the value and the rule."""


_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}
_ARRAY_TYPES = {
    float: ParameterType.PARAMETER_DOUBLE_ARRAY,
    str: ParameterType.PARAMETER_STRING_ARRAY,
    int: ParameterType.PARAMETER_INTEGER_ARRAY,
}


@dataclass(frozen=True)
class ParamSpec:
    """Declaration of one node parameter.

    Attributes:
        name: parameter name.
        default: default value (its Python type fixes the parameter type: bool, int, float, str,
            or a list/tuple for arrays; for an empty list give ``array_of``).
        description: one sentence, with units, shown by ``ros2 param describe``.
        read_only: cannot change after start (model/engine paths, topics, backend).
        range: (from, to) inclusive numeric range, or None.
        choices: allowed string values, or None.
        array_of: element type of an array parameter (float, str, int).
        validate: extra check ``value -> error message or None``.
        dynamic: when not read-only, whether a run-time change takes effect (documented in
            the description; changes to non-dynamic ones are refused).
    """

    name: str
    default: Any
    description: str
    read_only: bool = False
    range: Optional[tuple[float, float]] = None
    choices: Optional[tuple[str, ...]] = None
    array_of: Optional[type] = None
    validate: Optional[Callable[[Any], Optional[str]]] = None
    dynamic: bool = False

    @property
    def type(self) -> int:
        """rcl_interfaces ParameterType of this parameter."""
        if isinstance(self.default, (list, tuple)):
            elem = self.array_of or (type(self.default[0]) if self.default else float)
            return _ARRAY_TYPES[elem]
        return _TYPES[type(self.default)]

    def descriptor(self) -> ParameterDescriptor:
        """The ParameterDescriptor declared for this parameter."""
        d = ParameterDescriptor(name=self.name, type=self.type, description=self.description,
                                read_only=self.read_only or not self.dynamic,
                                dynamic_typing=self._lenient)
        if self.choices:
            d.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.range is not None:
            lo, hi = self.range
            if self.type == ParameterType.PARAMETER_INTEGER:
                d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
            else:
                d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        return d

    @property
    def _lenient(self) -> bool:
        # float parameters accept integers (``max_depth: 100`` in YAML), and empty-array
        # defaults need dynamic typing (rclpy would type an empty list as a byte array)
        return self.type in (ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_DOUBLE_ARRAY) or (
            isinstance(self.default, (list, tuple)) and not self.default)

    def declared_default(self) -> Any:
        """The value given to ``declare_parameter`` (None for an empty array)."""
        if isinstance(self.default, (list, tuple)):
            return list(self.default) or None
        return self.default

    def coerce(self, value: Any) -> Any:
        """Normalise a parameter value to this spec's Python type.

        Raises:
            ParameterError: the value has the wrong type (the message names the parameter).
        """
        value = _plain(value)
        ptype = self.type
        if ptype == ParameterType.PARAMETER_DOUBLE:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParameterError(f"parameter {self.name!r} = {value!r} must be a number ({self.description})")
            return float(value)
        if isinstance(self.default, (list, tuple)):
            if value is None:
                return []
            if not isinstance(value, list):
                raise ParameterError(f"parameter {self.name!r} = {value!r} must be a list ({self.description})")
            elem = self.array_of or (type(self.default[0]) if self.default else float)
            ok = [isinstance(v, elem) or (elem is float and isinstance(v, int)) for v in value]
            if not all(ok) or any(isinstance(v, bool) for v in value):
                raise ParameterError(
                    f"parameter {self.name!r} = {value!r} must be a list of {elem.__name__} ({self.description})")
            return [elem(v) for v in value]
        return value

    def check(self, value: Any) -> Optional[str]:
        """Error message for ``value`` or None if it is allowed."""
        if self.choices is not None and value not in self.choices:
            return f"must be one of {list(self.choices)}"
        if self.range is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            lo, hi = self.range
            if not (lo <= value <= hi):
                return f"must be in [{lo}, {hi}]"
        if self.validate is not None:
            return self.validate(value)
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, (np.ndarray, array.array)):  # rclpy returns arrays for some array types
        return list(value.tolist())
    if isinstance(value, tuple):
        return list(value)
    return value



class NodeParameters(dict):
    """The checked values of a node's parameters (name -> value), kept current: an accepted
    run-time change of a dynamic parameter updates it and calls the hooks registered with
    :meth:`on_change`."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self._hooks: dict[str, list[Callable[[Any], None]]] = {}

    def on_change(self, name: str, hook: Callable[[Any], None]) -> None:
        """Call ``hook(new_value)`` after a run-time change of parameter ``name`` is accepted."""
        self._hooks.setdefault(name, []).append(hook)

    def _changed(self, name: str, value: Any) -> None:
        self[name] = value
        for hook in self._hooks.get(name, []):
            hook(value)


def declare_parameters(node: Node, specs: Sequence[ParamSpec]) -> NodeParameters:
    """Declare ``specs`` on ``node`` and return the checked values (a :class:`NodeParameters`).

    Raises:
        ParameterError: a value of the wrong type, out of range, not among the choices or
            failing its ``validate`` check; the message names the parameter and value.
    """
    values: dict[str, Any] = {}
    by_name = {s.name: s for s in specs}
    for spec in specs:
        try:
            param = node.declare_parameter(spec.name, spec.declared_default(), spec.descriptor())
        except ParameterException as exc:
            raise ParameterError(f"parameter {spec.name!r}: {exc} ({spec.description})") from exc
        value = spec.coerce(param.value)
        problem = spec.check(value)
        if problem:
            raise ParameterError(f"parameter {spec.name!r} = {value!r} {problem} ({spec.description})")
        values[spec.name] = value
    params = NodeParameters(values)

    def on_set(changes: list[Parameter]) -> SetParametersResult:
        for p in changes:
            spec = by_name.get(p.name)
            if spec is None:
                continue
            if not spec.dynamic:
                return SetParametersResult(successful=False, reason=f"{p.name} cannot change at run time")
            try:
                problem = spec.check(spec.coerce(p.value))
            except ParameterError as exc:
                problem = str(exc)
            if problem:
                return SetParametersResult(successful=False, reason=f"{p.name} = {p.value!r} {problem}")
        for p in changes:
            if p.name in by_name:
                params._changed(p.name, by_name[p.name].coerce(p.value))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return params


def _check_slop(v: float) -> Optional[str]:
    return None if math.isfinite(v) else "must be finite"


#: Parameters every node of the package declares (inputs, QoS, sync, diagnostics).
COMMON_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("reliability", "best_effort",
              "QoS reliability of the input subscriptions: best_effort (sensor-data profile, "
              "receives from any publisher) or reliable", read_only=True, choices=RELIABILITY_CHOICES),
    ParamSpec("output_reliability", "reliable",
              "QoS reliability of the published topics: reliable (matches every subscriber) or best_effort",
              read_only=True, choices=RELIABILITY_CHOICES),
    ParamSpec("queue_size", 5, "QoS history depth and per-input synchroniser queue length (messages)",
              read_only=True, range=(1, 100)),
    ParamSpec("sync_slop", 0.05,
              "largest stamp difference (seconds) between the messages of one synchronised set",
              range=(0.0, 10.0), validate=_check_slop, dynamic=True),
    ParamSpec("input_timeout", 2.0,
              "seconds a queued input may wait for its partners before it is dropped and the missing "
              "or unsynchronised input is reported", range=(0.1, 3600.0), dynamic=True),
    ParamSpec("max_future_stamp", 10.0,
              "seconds an input's stamp may be ahead of the node's clock (ROS time; /clock with use_sim_time) "
              "before the message is refused as future_stamp; 0 = no check", range=(0.0, 1e9), dynamic=True),
    ParamSpec("time_jump_threshold", 1.0,
              "seconds the node's clock or one input's stamps may jump back (a looping bag) before the "
              "synchroniser forgets its queues and last stamps (one log line, counter sync_resets); 0 = never",
              range=(0.0, 3600.0), dynamic=True),
    ParamSpec("diagnostics_period", 1.0, "seconds between diagnostics messages", read_only=True,
              range=(0.05, 3600.0)),
    ParamSpec("log_throttle", 5.0, "seconds between two log lines of the same problem", range=(0.0, 3600.0),
              dynamic=True),
)


#: The learned backends' options (same parameter names in both depth nodes): backend name ->
#: the node parameters passed to the backend factory as keyword options.
LEARNED_BACKEND_OPTIONS: dict[str, tuple[str, ...]] = {
    "torch": ("model_path", "num_inference_steps", "ensemble_size", "device", "seed"),
    "onnxruntime": ("model_path", "num_inference_steps", "ensemble_size", "providers", "seed"),
    "tensorrt": ("model_path", "num_inference_steps", "ensemble_size", "engine_cache_dir", "precision",
                 "force_engine_update", "seed"),
}
#: Values meaning "not set: use the backend's default" for :data:`LEARNED_BACKEND_OPTIONS`.
LEARNED_UNSET: dict[str, Any] = {"model_path": "", "device": "", "engine_cache_dir": "", "precision": "",
                                 "providers": [], "num_inference_steps": 0}


def learned_backend_parameter_specs(model_path: str, num_inference_steps: str, ensemble_size: str,
                                    seed: str) -> tuple[ParamSpec, ...]:
    """The parameters of :data:`LEARNED_BACKEND_OPTIONS`, all read-only; the arguments are the
    node-specific descriptions of ``model_path``, ``num_inference_steps``, ``ensemble_size`` and
    ``seed``."""
    return (
        ParamSpec("model_path", "", model_path, read_only=True),
        ParamSpec("num_inference_steps", 0, num_inference_steps, read_only=True, range=(0, 1000)),
        ParamSpec("ensemble_size", 1, ensemble_size, read_only=True, range=(1, 64)),
        ParamSpec("device", "", "torch device (cpu, cuda, cuda:1); '' = the backend's choice", read_only=True),
        ParamSpec("providers", [], "ONNX Runtime execution providers in order of preference (e.g. "
                  "['cuda', 'cpu']); [] = the backend's default", read_only=True, array_of=str),
        ParamSpec("engine_cache_dir", "", "directory for cached TensorRT engines; '' = the backend's default",
                  read_only=True),
        ParamSpec("precision", "", "TensorRT precision; '' = the backend's default", read_only=True,
                  choices=("", "fp16", "fp32")),
        ParamSpec("force_engine_update", False, "tensorrt: rebuild the cached engine even when one matches the "
                  "ONNX hash, precision, TensorRT version and GPU", read_only=True),
        ParamSpec("seed", 0, seed, read_only=True, range=(0, 2**31 - 1)),
    )


def select_backend_options(table: Mapping[str, Sequence[str]], backend: str, params: Mapping[str, Any],
                           unset: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Keyword options for a backend from node parameters: the names ``table[backend]`` lists,
    left out while at their "unset" value (so the backend's own default applies): the learned
    backends' (:data:`LEARNED_UNSET`), then the node's own ``unset`` values."""
    unset = {**LEARNED_UNSET, **(unset or {})}
    return {name: params[name] for name in table.get(backend, ())
            if not (name in unset and params[name] == unset[name])}
