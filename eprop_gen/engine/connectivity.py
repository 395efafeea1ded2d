"""Connection rules, weight/delay distributions, and drawing synapses into CSR-by-source form.

Synapses are drawn *per target*: every random number for target j of projection p (which sources,
weights, delays, in that order) comes from `np.random.default_rng([seed, p, j])`. Connectivity
therefore depends only on the network seed, the projection index and the target id — not on
threads, and not on how targets may later be split across processes. The result is then stored
CSR by source, which is what spike delivery walks.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from .native import DELAY_DTYPE, MAX_DELAY, MAX_TARGETS, REAL, TARGET_ID_DTYPE

INDEX_DTYPE = np.int64            # neuron ids outside the synapse arrays (records, sources)
NO_SYNAPSE_DELAY = MAX_DELAY + 1  # Synapses.min_delay of a projection without synapses


# ---------------------------------------------------------------------------------------------
# distributions for weights and delays

@dataclass(frozen=True)
class Normal:
    mean: float
    std: float

    def __post_init__(self):
        if not self.std >= 0:
            raise ValueError(f"Normal: std must be >= 0, got {self.std}")

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return rng.normal(self.mean, self.std, count)


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def __post_init__(self):
        if not self.low <= self.high:
            raise ValueError(f"Uniform: need low <= high, got {self.low}, {self.high}")

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, count)


Distribution = Union[Normal, Uniform]
ValueSpec = Union[float, Distribution]


def is_random(spec) -> bool:
    return isinstance(spec, (Normal, Uniform))


# ---------------------------------------------------------------------------------------------
# connection rules

@dataclass(frozen=True)
class FixedIndegree:
    """Each target gets exactly k synapses from sources drawn uniformly."""
    k: int
    allow_autapses: bool = True
    allow_multapses: bool = True

    def __post_init__(self):
        if not isinstance(self.k, numbers.Integral) or self.k < 0:
            raise ValueError(f"FixedIndegree: k must be a non-negative integer, got {self.k!r}")


@dataclass(frozen=True)
class PairwiseBernoulli:
    """Each (source, target) pair is connected independently with probability p."""
    p: float
    allow_autapses: bool = True

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"PairwiseBernoulli: p must be in [0, 1], got {self.p}")


@dataclass(frozen=True, eq=False)
class Explicit:
    """Exactly the given (source, target) pairs; weights/delays arrays override `connect`'s."""
    sources: np.ndarray
    targets: np.ndarray
    weights: np.ndarray | None = None
    delays: np.ndarray | None = None


Rule = Union[FixedIndegree, PairwiseBernoulli, Explicit]


# ---------------------------------------------------------------------------------------------
# drawn synapses

@dataclass(eq=False)
class Synapses:
    """One projection's synapses, CSR by source (sources ascending, then targets, then draws)."""
    row_ptr: np.ndarray          # int64 [n_source + 1]
    targets: np.ndarray          # int32 [n_synapses]
    weights: np.ndarray          # eg_real [n_synapses]
    delays: np.ndarray           # int16 [n_synapses], steps >= 1
    max_delay: int = field(init=False)
    uniform_delay: int = field(init=False)     # the delay of every synapse if they all have one, else 0
    # the smallest delay (NO_SYNAPSE_DELAY without synapses); under MPI the Network makes it the
    # whole projection's, so that every rank count delivers in the same batches
    min_delay: int = field(init=False)

    def __post_init__(self):
        self.max_delay = int(self.delays.max()) if self.delays.size else 1
        self.min_delay = int(self.delays.min()) if self.delays.size else NO_SYNAPSE_DELAY
        self.uniform_delay = self.max_delay if self.delays.size and int(self.delays.min()) == self.max_delay else 0

    @property
    def sources(self) -> np.ndarray:
        """The source (CSR row) of each synapse, made when asked: not kept per synapse."""
        return np.repeat(np.arange(self.row_ptr.size - 1, dtype=INDEX_DTYPE), np.diff(self.row_ptr))


def draw_synapses(rule: Rule, *, n_source: int, n_target: int, same_population: bool,
                  weight: ValueSpec, delay: ValueSpec, seed: int, projection: int,
                  owned: tuple[int, int] | None = None) -> Synapses:
    """The projection's synapses onto the targets in `owned` = [lo, hi) (default: all): under MPI a
    process draws and keeps only its own targets' synapses, the same ones for any number of ranks."""
    _check_value_spec(weight, "weight")
    _check_value_spec(delay, "delay")
    if n_target > MAX_TARGETS:
        raise ValueError(f"a projection's target population may have at most {MAX_TARGETS} neurons "
                         f"(synapses store 32-bit target ids); this one has {n_target}")
    if isinstance(rule, Explicit):
        targets, sources, weights, delays = _explicit_target_major(
            rule, n_source, n_target, weight, delay, seed, projection)
    elif isinstance(rule, (FixedIndegree, PairwiseBernoulli)):
        targets, sources, weights, delays = _random_target_major(
            rule, n_source, n_target, same_population, weight, delay, seed, projection,
            owned or (0, n_target))
    else:
        raise ValueError(f"unknown connection rule {rule!r}; use FixedIndegree, "
                         f"PairwiseBernoulli or Explicit")
    if owned is not None and owned != (0, n_target):
        mine = (targets >= owned[0]) & (targets < owned[1])
        targets, sources, weights, delays = targets[mine], sources[mine], weights[mine], delays[mine]
    return to_csr_by_source(n_source, targets, sources, weights, delays)


def to_csr_by_source(n_source: int, targets: np.ndarray, sources: np.ndarray, weights: np.ndarray,
                     delays: np.ndarray) -> Synapses:
    """Reorder target-major synapses (targets ascending, draw order within) into CSR by source."""
    order = np.argsort(sources, kind="stable")   # stable keeps targets ascending, then draw order
    counts = np.bincount(sources, minlength=n_source) if sources.size else np.zeros(n_source, int)
    row_ptr = np.zeros(n_source + 1, dtype=INDEX_DTYPE)
    np.cumsum(counts, out=row_ptr[1:])
    return Synapses(row_ptr=row_ptr,
                    targets=np.ascontiguousarray(targets[order], dtype=TARGET_ID_DTYPE),
                    weights=np.ascontiguousarray(weights[order], dtype=REAL),
                    delays=np.ascontiguousarray(delays[order], dtype=DELAY_DTYPE))


def target_rng(seed: int, projection: int, target: int) -> np.random.Generator:
    return np.random.default_rng([seed, projection, target])


# ---------------------------------------------------------------------------------------------
# internals

def _check_value_spec(spec, what: str) -> None:
    if is_random(spec):
        return
    if not isinstance(spec, numbers.Real) or isinstance(spec, bool):
        raise ValueError(f"{what} must be a number, Normal(mean, std) or Uniform(low, high); "
                         f"got {spec!r}")
    if what == "delay" and (spec != int(spec) or spec < 1):
        raise ValueError(f"delay must be a whole number of steps >= 1, got {spec!r}")


def _values(spec: ValueSpec, rng: np.random.Generator | None, count: int) -> np.ndarray:
    if is_random(spec):
        return spec.draw(rng, count)
    return np.full(count, float(spec))


def _delays(spec: ValueSpec, rng: np.random.Generator | None, count: int) -> np.ndarray:
    """Delays in whole steps; random draws are rounded to the nearest step and must be >= 1."""
    steps = np.rint(_values(spec, rng, count))
    if steps.size and steps.min() < 1:
        raise ValueError(f"delay distribution {spec!r} produced a delay below 1 step "
                         f"({steps.min():g}); delays are whole steps >= 1")
    _check_delay_range(steps)
    return steps.astype(DELAY_DTYPE)


def _check_delay_range(steps: np.ndarray) -> None:
    if steps.size and steps.max() > MAX_DELAY:
        raise ValueError(f"a delay of {steps.max():g} steps is longer than the {MAX_DELAY} steps a "
                         f"synapse can store; use a longer time step or shorter delays")


def _draw_sources(rule: Rule, rng: np.random.Generator, target: int, n_source: int,
                  exclude_self: bool) -> np.ndarray:
    if isinstance(rule, PairwiseBernoulli):
        chosen = rng.random(n_source) < rule.p
        if exclude_self:
            chosen[target] = False
        return np.flatnonzero(chosen)
    candidates = n_source - 1 if exclude_self else n_source
    if rule.allow_multapses:
        picks = rng.integers(0, candidates, size=rule.k) if rule.k else np.zeros(0, np.int64)
    else:
        picks = rng.choice(candidates, size=rule.k, replace=False)
    if exclude_self:
        picks = picks + (picks >= target)    # skip the target's own index
    return picks.astype(INDEX_DTYPE)


def _check_random_rule(rule: Rule, n_source: int, exclude_self: bool) -> None:
    if not isinstance(rule, FixedIndegree) or rule.k == 0:
        return
    candidates = n_source - 1 if exclude_self else n_source
    if candidates < 1:
        raise ValueError(f"FixedIndegree(k={rule.k}): no source neurons to choose from")
    if not rule.allow_multapses and rule.k > candidates:
        raise ValueError(f"FixedIndegree(k={rule.k}, allow_multapses=False) needs at least "
                         f"{rule.k} candidate sources, there are {candidates}")


def _random_target_major(rule, n_source, n_target, same_population, weight, delay, seed,
                         projection, owned):
    autapses = rule.allow_autapses
    exclude_self = same_population and not autapses
    _check_random_rule(rule, n_source, exclude_self)
    parts = []
    for j in range(*owned):             # each target from its own stream: the ranks' shares add up
        rng = target_rng(seed, projection, j)
        sources = _draw_sources(rule, rng, j, n_source, exclude_self)
        # draw order per target is fixed: sources, then weights, then delays
        weights = _values(weight, rng, sources.size)
        delays = _delays(delay, rng, sources.size)
        parts.append((np.full(sources.size, j, dtype=INDEX_DTYPE), sources, weights, delays))
    return _concatenate(parts)


def _explicit_target_major(rule: Explicit, n_source, n_target, weight, delay, seed, projection):
    sources = _index_array(rule.sources, "Explicit sources", n_source)
    targets = _index_array(rule.targets, "Explicit targets", n_target)
    if sources.shape != targets.shape:
        raise ValueError(f"Explicit: {sources.size} sources but {targets.size} targets")
    count = sources.size
    weights = _explicit_column(rule.weights, count, "weights")
    delays = _explicit_column(rule.delays, count, "delays")
    if delays is not None:
        if np.any(delays != np.rint(delays)) or (count and delays.min() < 1):
            raise ValueError("Explicit delays must be whole numbers of steps >= 1")
        _check_delay_range(delays)
        delays = delays.astype(DELAY_DTYPE)
    order = np.argsort(targets, kind="stable")   # target-major, given order within a target
    targets, sources = targets[order], sources[order]
    weights = weights[order] if weights is not None else None
    delays = delays[order] if delays is not None else None
    if weights is None:
        weights = _per_target_values(_values, weight, targets, seed, projection)
    if delays is None:
        delays = _per_target_values(_delays, delay, targets, seed, projection)
    return targets, sources, weights, delays


def _per_target_values(draw, spec, targets: np.ndarray, seed: int, projection: int) -> np.ndarray:
    """Values for target-major synapses; random ones from each target's own stream."""
    if not is_random(spec):
        return draw(spec, None, targets.size)
    bounds = np.flatnonzero(np.diff(targets)) + 1
    chunks = [draw(spec, target_rng(seed, projection, int(group[0])), group.size)
              for group in np.split(targets, bounds) if group.size]
    return np.concatenate(chunks) if chunks else draw(spec, None, 0)


def _index_array(values, what: str, limit: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{what} must be a 1-D array of integer neuron ids")
    array = array.astype(INDEX_DTYPE)
    if array.size and (array.min() < 0 or array.max() >= limit):
        raise ValueError(f"{what} must lie in [0, {limit}); got ids from {array.min()} to "
                         f"{array.max()}")
    return array


def _explicit_column(values, count: int, what: str) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(count, float(array))
    if array.shape != (count,):
        raise ValueError(f"Explicit {what}: expected {count} values, got shape {array.shape}")
    return array


def _concatenate(parts):
    if not parts:
        empty = np.zeros(0, INDEX_DTYPE)
        return empty, empty, np.zeros(0, REAL), np.zeros(0, DELAY_DTYPE)
    return tuple(np.concatenate(column) for column in zip(*parts))
