"""A training run's configuration: a TOML file, checked key by key into frozen dataclasses.

Every mistake is one `ConfigError` naming the file and the key (`sine.toml: [optimizer] eta: expected
a number >= 0, got "fast"`); the CLI prints it and exits with status 2. Defaults are NEST 3.10's
tutorial values where there is one. `resolved(config)` is the complete configuration with every
default filled in (what metrics.json records).
"""
from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EpropGenError

if sys.version_info >= (3, 11):
    import tomllib
else:                                   # pragma: no cover - Python 3.10
    import tomli as tomllib

TASKS = ("sine_wave", "evidence_accumulation", "nmnist")
ENGINES = ("event", "time")
OPTIMIZERS = ("gradient_descent", "adam")


class ConfigError(EpropGenError):
    """A bad configuration: one line naming the file and the key."""


@dataclass(frozen=True)
class PopulationConfig:
    model: str                          # shipped model name or a .eprop path (relative to the file)
    n: int
    params: dict = field(default_factory=dict)   # name -> number, or [[count, value], ...] per neuron


@dataclass(frozen=True)
class ConnectionConfig:
    density: float = 1.0                # fraction of all possible synapses present (1 - sparsity)
    weight_scale: float = 1.0           # weights ~ N(0, 1) / sqrt(n_source) * weight_scale
    delay: int = 1                      # steps


@dataclass(frozen=True)
class OptimizerConfig:
    type: str = "gradient_descent"
    eta: float = 1e-4
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    w_min: float = -100.0
    w_max: float = 100.0


@dataclass(frozen=True)
class TrainingConfig:
    iterations: int = 100
    batch_size: int = 1                 # samples per iteration and per optimizer step
    seed: int = 1
    threads: int = 1
    engine: str = "event"               # event-driven (minibatches of samples) or time-driven
    checkpoint_every: int = 1           # iterations
    test_samples: int = 0               # evaluated after training with the final weights


@dataclass(frozen=True)
class Config:
    file: Path
    task: dict                          # name + the task's own options (checked by the task)
    training: TrainingConfig
    recurrent: PopulationConfig
    readout: PopulationConfig
    connections: dict                   # input / recurrent / readout -> ConnectionConfig
    feedback_scale: float
    optimizer: OptimizerConfig

    @property
    def folder(self) -> Path:
        return self.file.parent


_SECTIONS = ("task", "training", "recurrent", "readout", "connections", "optimizer", "hls")   # [hls]: hls/config.py


def load_config(path, overrides: dict | None = None) -> Config:
    """The configuration in the TOML file `path`; `overrides` ({section: {key: value}}) replace
    single values (the CLI's --iterations, tests' tiny sizes) before checking."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration ({e.strerror})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    return parse_config(raw, path)


def parse_config(raw: dict, path: Path) -> Config:
    where = _Where(path)
    where.only(raw, _SECTIONS, "")
    for section in ("task", "recurrent", "readout"):
        if section not in raw:
            raise ConfigError(f"{path}: [{section}] is missing")
    task = where.table(raw, "task", "")
    name = task.get("name")
    if name not in TASKS:
        raise ConfigError(f"{path}: [task] name: expected one of {', '.join(TASKS)}, got {name!r}")
    training = where.fields_of(TrainingConfig, raw.get("training", {}), "training")
    where.choice(training.engine, ENGINES, "training", "engine")
    for key in ("iterations", "batch_size", "threads", "checkpoint_every"):
        where.at_least(getattr(training, key), 1, "training", key)
    where.at_least(training.seed, 0, "training", "seed")
    where.at_least(training.test_samples, 0, "training", "test_samples")
    recurrent = _population(where, raw, "recurrent", need_n=True)
    readout = _population(where, raw, "readout", need_n=False)
    connections_raw = where.table(raw, "connections", "", default={})
    where.only(connections_raw, ("input", "recurrent", "readout", "feedback_scale"), "connections")
    connections = {}
    for kind in ("input", "recurrent", "readout"):
        c = where.fields_of(ConnectionConfig, where.table(connections_raw, kind, "connections", default={}),
                            f"connections.{kind}")
        if not 0.0 < c.density <= 1.0:
            raise ConfigError(f"{path}: [connections.{kind}] density: expected a number in (0, 1], got {c.density!r}")
        where.at_least(c.delay, 1, f"connections.{kind}", "delay")
        connections[kind] = c
    feedback_scale = where.number(connections_raw.get("feedback_scale", 1.0), "connections", "feedback_scale")
    optimizer = where.fields_of(OptimizerConfig, raw.get("optimizer", {}), "optimizer")
    where.choice(optimizer.type, OPTIMIZERS, "optimizer", "type")
    if not optimizer.eta >= 0:
        raise ConfigError(f"{path}: [optimizer] eta: expected a number >= 0, got {optimizer.eta!r}")
    if not optimizer.w_min <= optimizer.w_max:
        raise ConfigError(f"{path}: [optimizer] w_min/w_max: need w_min <= w_max")
    return Config(path, dict(task), training, recurrent, readout, connections, feedback_scale, optimizer)


def resolved(config: Config) -> dict:
    """The whole configuration with defaults filled in, as plain TOML-like data."""
    out = {"task": dict(config.task), "training": dataclasses.asdict(config.training),
           "recurrent": dataclasses.asdict(config.recurrent), "readout": dataclasses.asdict(config.readout),
           "connections": {k: dataclasses.asdict(v) for k, v in config.connections.items()},
           "optimizer": dataclasses.asdict(config.optimizer)}
    out["connections"]["feedback_scale"] = config.feedback_scale
    return out


def _population(where: "_Where", raw: dict, section: str, need_n: bool) -> PopulationConfig:
    table = where.table(raw, section, "")
    where.only(table, ("model", "n", "params"), section)
    if "model" not in table or not isinstance(table["model"], str):
        raise ConfigError(f"{where.path}: [{section}] model: expected a model name or a .eprop file")
    n = table.get("n", 0 if not need_n else None)
    if need_n and n is None:
        raise ConfigError(f"{where.path}: [{section}] n: missing (the number of neurons)")
    if need_n:
        where.at_least(where.integer(n, section, "n"), 1, section, "n")
    params = where.table(table, "params", section, default={})
    for key, value in params.items():
        _check_param_value(where, section, key, value, n)
    return PopulationConfig(table["model"], int(n or 0), dict(params))


def _check_param_value(where, section: str, key: str, value, n) -> None:
    if _is_number(value):
        return
    pieces_ok = (isinstance(value, list) and value and all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], int) and not isinstance(p[0], bool)
        and p[0] >= 1 and _is_number(p[1]) for p in value))
    if not pieces_ok:
        raise ConfigError(f"{where.path}: [{section}.params] {key}: expected a number or a list of "
                          f"[count, value] pairs, got {value!r}")
    if n and sum(p[0] for p in value) != n:
        raise ConfigError(f"{where.path}: [{section}.params] {key}: the counts add up to "
                          f"{sum(p[0] for p in value)}, but the population has {n} neurons")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Where:
    path: Path

    def only(self, table: dict, allowed, section: str) -> None:
        for key in table:
            if key not in allowed:
                from ..errors import did_you_mean
                hint = did_you_mean(key, list(allowed))
                place = f"[{section}] " if section else ""
                raise ConfigError(f"{self.path}: {place}unknown key '{key}'"
                                  + (f" ({hint})" if hint else f"; known: {', '.join(allowed)}"))

    def table(self, raw: dict, key: str, section: str, default=None) -> dict:
        value = raw.get(key, default)
        if not isinstance(value, dict):
            place = f"[{section}] {key}" if section else f"[{key}]"
            raise ConfigError(f"{self.path}: {place}: expected a table, got {value!r}")
        return value

    def fields_of(self, cls, raw: dict, section: str):
        if not isinstance(raw, dict):
            raise ConfigError(f"{self.path}: [{section}]: expected a table")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        self.only(raw, fields, section)
        values = {}
        for key, value in raw.items():
            default = fields[key].default
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = _is_number(value) and math.isfinite(value)
                value = float(value) if ok else value
            else:
                ok = isinstance(value, type(default))
            if not ok:
                kind = {bool: "true or false", int: "a whole number", float: "a number"}.get(type(default), "a string")
                raise ConfigError(f"{self.path}: [{section}] {key}: expected {kind}, got {value!r}")
            values[key] = value
        return cls(**values)

    def choice(self, value, options, section: str, key: str) -> None:
        if value not in options:
            raise ConfigError(f"{self.path}: [{section}] {key}: expected one of {', '.join(options)}, got {value!r}")

    def at_least(self, value, low, section: str, key: str) -> None:
        if value < low:
            raise ConfigError(f"{self.path}: [{section}] {key}: must be >= {low}, got {value!r}")

    def integer(self, value, section: str, key: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{self.path}: [{section}] {key}: expected a whole number, got {value!r}")
        return value

    def number(self, value, section: str, key: str) -> float:
        if not _is_number(value):
            raise ConfigError(f"{self.path}: [{section}] {key}: expected a number, got {value!r}")
        return float(value)


def task_options(config: Config, defaults: dict) -> dict:
    """The task's options with defaults; unknown or mistyped keys are a ConfigError."""
    where = _Where(config.file)
    options = {k: v for k, v in config.task.items() if k != "name"}
    where.only(options, defaults, "task")
    out = dict(defaults)
    for key, value in options.items():
        default = defaults[key]
        if default is None or isinstance(default, str):
            ok = value is None or isinstance(value, str)
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = _is_number(value)
        if not ok:
            raise ConfigError(f"{config.file}: [task] {key}: expected a value like {default!r}, got {value!r}")
        out[key] = value
    return out


def check_value(config: Config, ok: bool, section: str, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{config.file}: [{section}] {key}: {message}")

