"""NET.toml for the FPGA back end: a training configuration (train/config.py) plus an `[hls]` section
with what only the hardware needs — the history length on chip, the names for Vitis HLS and the
precision of every quantity (docs/design/hls.md)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..train.config import Config, ConfigError, _Where, parse_config
from .fixed import FixedType

if sys.version_info >= (3, 11):
    import tomllib
else:                                   # pragma: no cover - Python 3.10
    import tomli as tomllib

# the quantities with a type of their own, and their defaults (docs/design/hls.md)
DEFAULT_PRECISION = {
    "membrane": "ap_fixed<24,10,AP_RND_CONV,AP_SAT>",      # membrane potentials, readout outputs
    "weight": "ap_fixed<24,6,AP_RND_CONV,AP_SAT>",       # 18 fraction bits: a per-spike step of eta G ~ 1e-4 must not round away
    "psi": "ap_fixed<16,2,AP_RND_CONV,AP_SAT>",            # pseudo-derivative
    "trace": "ap_fixed<24,8,AP_RND_CONV,AP_SAT>",          # zbar, e, ebar, ebar_reg, adaptation traces
    "signal": "ap_fixed<20,6,AP_RND_CONV,AP_SAT>",         # learning signal L, readout error E
    "gradient": "ap_fixed<32,12,AP_RND_CONV,AP_SAT>",      # a synapse's gradient sum
    "coefficient": "ap_fixed<24,4,AP_RND_CONV,AP_SAT>",    # propagators, filters, eta, gains
    "intermediate": "ap_fixed<40,16,AP_RND_CONV,AP_SAT>",  # a value a statement keeps between two steps of it
}


@dataclass(frozen=True)
class HlsConfig:
    history: int = 128                  # rows of psi / L / R per neuron on chip (a power of two)
    top: str = "eprop_top"
    part: str = "xcu250-figd2104-2L-e"
    clock_ns: float = 5.0
    precision: dict = field(default_factory=dict)     # quantity -> FixedType (every quantity)


@dataclass(frozen=True)
class NetConfig:
    network: Config                     # the training configuration (populations, connections, ...)
    hls: HlsConfig


def load_net_config(path, model: str | None = None) -> NetConfig:
    """NET.toml; `model` (a shipped model's name or a .eprop path) replaces [recurrent] model."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    if model is not None:
        raw.setdefault("recurrent", {})["model"] = str(Path(model).resolve()) if Path(model).suffix == ".eprop" else model
    return NetConfig(parse_config(raw, path), parse_hls(raw.get("hls", {}), path))


def parse_hls(raw: dict, path: Path) -> HlsConfig:
    where = _Where(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [hls]: expected a table")
    precision_raw = raw.get("precision", {})
    plain = where.fields_of(HlsConfig, {k: v for k, v in raw.items() if k != "precision"}, "hls")
    if plain.history < 2 or plain.history & (plain.history - 1):
        raise ConfigError(f"{path}: [hls] history: expected a power of two >= 2, got {plain.history!r}")
    if not plain.top.isidentifier():
        raise ConfigError(f"{path}: [hls] top: expected a C++ function name, got {plain.top!r}")
    if not plain.clock_ns > 0:
        raise ConfigError(f"{path}: [hls] clock_ns: expected a positive number, got {plain.clock_ns!r}")
    if not isinstance(precision_raw, dict):
        raise ConfigError(f"{path}: [hls.precision]: expected a table")
    where.only(precision_raw, DEFAULT_PRECISION, "hls.precision")
    precision = {}
    for quantity, default in DEFAULT_PRECISION.items():
        text = precision_raw.get(quantity, default)
        try:
            precision[quantity] = FixedType.parse(text)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{path}: [hls.precision] {quantity}: {e}") from None
    return HlsConfig(plain.history, plain.top, plain.part, plain.clock_ns, precision)
