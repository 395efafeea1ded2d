"""Learning in the network engine: plastic projections, per-population archives, feedback.

The C side is engine.cpp (archive, phase A, phase B with the generated replay kernels); the
synapse/history arrays are plasticity.py's. This module holds what the Network keeps per learning
object and turns it into the engine's structs.

Timing (the same as NEST 3.10's event-driven e-prop, /work/shared/eprop-spec.md §2-§3):
  - a population with an archive writes row n of its history right after its update of step n:
    psi[n] and R[n] of the model's observables (0 if it has none), L[n] = 0;
  - a readout (a model with the observable `y`) writes its error E[n] = (y[n] - y*[n]) * lambda[n]
    into its learning-signal row n; y*[n] and lambda[n] are row n of the arrays given to
    `Network.add_target` / `add_learning_window` (the last row for later steps; y* = 0 and
    lambda = 1 without them);
  - feedback: L_j[n-1] += B[j, k] * E_k[n] (readouts in order) before the spikes of step n are
    delivered;
  - a spike emitted in step n through a plastic synapse with delay d is replayed with stamp n+d
    (window [t_last-1, n+d-2]) just before it is integrated, in step n+d.
  - a flush event (a model kernel's spiked == 2, NEST's flush_event_send_interval) emitted in
    step n is replayed the same way with is_flush = 1 (stamp n+d) and transmits nothing; static
    projections, readouts and the spike record never see it.
"""
from __future__ import annotations

import ctypes
import math
import numbers
from dataclasses import dataclass

import numpy as np

from . import native, plasticity
from .native import REAL, pointer
from .plasticity import ADAM, Optimizer, PlasticSynapses

DEFAULT_HISTORY_STEPS = 64          # initial rows of a population's history ring (it grows)
MIN_HISTORY_STEPS = 2               # row n-1 receives its learning signal while row n is written
LOSSES = ("mean_squared_error", "cross_entropy")
REPLAYS = ("blocks", "walk")


@dataclass(frozen=True)
class TimeDriven:
    """The time-driven e-prop engine's schedule (Bellec et al. 2020; NEST's *_bsshslm_2020).

    The task is cut into update intervals of `update_interval` ms (one sequence each). A learning
    population's intervals start `offset` steps after the input's (a readout's offset + 1: the
    spikes need one step per hop), i.e. at steps offset + k U; there its neurons are reset to their
    initial state (reset_neurons). A plastic synapse's gradient is summed over a whole interval with
    traces starting at 0, and its weight changes once per interval, at its first event after it
    (the optimizer's batch_size counts intervals). Readout errors count in the last
    `learning_window` ms of each interval only. average_gradient divides an interval's gradient by
    the learning window's length in steps.
    """
    update_interval: float = 1000.0
    learning_window: float | None = None       # ms; None: the whole interval
    offset: int = 2                            # steps (NEST: generator -> parrot -> neuron)
    reset_neurons: bool = True
    average_gradient: bool = False

    def steps(self, dt: float) -> tuple[int, int]:
        """(U, LW) in steps; ValueError unless both are positive multiples of dt with LW <= U."""
        u = _whole_steps(self.update_interval, dt, "update_interval")
        lw = u if self.learning_window is None else _whole_steps(self.learning_window, dt, "learning_window")
        if lw > u:
            raise ValueError(f"time_driven: learning_window ({self.learning_window} ms) must not exceed "
                             f"update_interval ({self.update_interval} ms)")
        if not (isinstance(self.offset, numbers.Integral) and self.offset >= 0):
            raise ValueError(f"time_driven: offset must be a whole number of steps >= 0, got {self.offset!r}")
        return u, lw


@dataclass(frozen=True)
class EventDriven:
    """The event-driven e-prop engine (NEST's eprop_synapse): a synapse replays its target's history
    at each of its events and its weight may change at every event.

    sample_duration (ms), optional: the task is a sequence of samples of this length (sample k from
    k * sample_duration on), trained in minibatches "side by side": every sample starts from the
    network's initial state, weights stay fixed within a batch, each synapse's gradient is summed
    over the whole sample (its windows are closed at the sample's end) and over the batch's
    samples, and after every `batch_size` samples (the optimizer's, counted in samples) the weights
    take one optimizer step with the mean gradient. Spikes of a sample's last step and arrivals of
    earlier samples' spikes are not delivered into the next one. optimize_each_step is ignored.

    replay: how a synapse integrates its target's history over a window. "blocks" (the default):
    the target neuron keeps products of its step matrices per block of `block_steps` history rows,
    and a window costs a few small matrix-vector products however long it is (equal to the
    step-by-step walk to round-off, ~1e-14); windows inside one block, the first two steps of each
    window and optimize_each_step=True are walked. "walk": every window step by step, in NEST's
    order of operations (NEST's results to the last bit where the model allows it).
    """
    sample_duration: float | None = None
    replay: str = "blocks"
    block_steps: int = 16

    def __post_init__(self):
        if self.replay not in REPLAYS:
            raise ValueError(f"event_driven: replay must be one of {', '.join(REPLAYS)}, got {self.replay!r}")
        if not (isinstance(self.block_steps, numbers.Integral) and plasticity.is_power_of_two(self.block_steps)):
            raise ValueError(f"event_driven: block_steps must be a power of two, got {self.block_steps!r}")

    def steps(self, dt: float) -> int:
        """The sample length in steps (0: one continuous run)."""
        if self.sample_duration is None:
            return 0
        return _whole_steps(self.sample_duration, dt, "sample_duration", "event_driven")

    @property
    def blocks(self) -> int:
        """Rows per block of the block products (0: every replay walks)."""
        return int(self.block_steps) if self.replay == "blocks" else 0


def event_driven(**options) -> EventDriven:
    """The event-driven engine (the default); with sample_duration=..., minibatches of samples."""
    return EventDriven(**options)


def time_driven(**options) -> TimeDriven:
    """The time-driven engine: eg.Network(..., learning=eg.time_driven(update_interval=...))."""
    return TimeDriven(**options)


def _whole_steps(ms, dt: float, what: str, schedule: str = "time_driven") -> int:
    steps = ms / dt if isinstance(ms, numbers.Real) else math.nan
    if not (math.isfinite(steps) and steps >= 1 and abs(steps - round(steps)) < 1e-6):
        raise ValueError(f"{schedule}: {what} must be a positive multiple of dt = {dt} ms, got {ms!r}")
    return int(round(steps))


def history_steps(value) -> int:
    if not isinstance(value, numbers.Integral) or value < MIN_HISTORY_STEPS:
        raise ValueError(f"history_steps must be an integer >= {MIN_HISTORY_STEPS}, got {value!r}")
    return int(value)


class Archive:
    """The history ring of one population and, for a readout, its per-step target and window."""

    def __init__(self, pop, capacity: int, block_steps: int = 0, owned: tuple[int, int] | None = None):
        """owned: the neurons [lo, hi) this MPI rank owns, whose history it alone holds (a
        readout's is held whole: every rank turns all readouts' errors into learning signals)."""
        self.pop = pop
        recordables, observables = pop.model.recordables, pop.model.observables
        self.history = plasticity.History(capacity, pop.n, block_layout(pop.model, block_steps),
                                          len(pop.model.archived), None if "y" in observables else owned)
        self.extra_states = np.array([recordables.index(name) for name in pop.model.archived], np.int32)
        self.psi_state = recordables.index("psi") if "psi" in observables else -1
        self.reg_state = recordables.index("R") if "R" in observables else -1
        self.output_state = recordables.index("y") if "y" in observables else -1
        self.target = np.zeros((0, pop.n), REAL)
        self.window = np.zeros((0, pop.n), REAL)
        self.target_start = self.window_start = 0       # step of row 0
        self.loss = LOSSES[0]
        self.spike_count = None             # time-driven engine: see use_intervals
        self.interval_spikes = None

    def grow(self, capacity: int, first: int, step: int, offset: int, update_interval: int) -> None:
        """A longer history ring with the entries of steps [first, step); time-driven: the interval
        counts of every interval the longer ring can reach."""
        self.history = self.history.grown(capacity, first, step)
        if self.interval_spikes is not None:
            counts, count = self.interval_spikes, self.spike_count
            self.use_intervals(update_interval)
            self.spike_count[:] = count
            current = (step - offset) // update_interval
            for k in range(max(0, current - counts.shape[0] + 1), current + 1):
                self.interval_spikes[k % self.interval_spikes.shape[0]] = counts[k % counts.shape[0]]

    def use_intervals(self, update_interval: int) -> None:
        """Time-driven engine: spike counts per interval, for every interval the history reaches."""
        slots = self.history.psi.shape[0] // update_interval + 2
        self.spike_count = np.zeros(self.pop.n, np.int64)
        self.interval_spikes = np.zeros((slots, self.pop.n), np.int64)

    @property
    def is_readout(self) -> bool:
        return self.output_state >= 0

    def engine_struct(self, keep: list) -> native.EgArchive:
        keep += [self.history, self.target, self.window, self.spike_count, self.interval_spikes, self.extra_states]
        return native.EgArchive(
            pop=self.pop.index, psi_state=self.psi_state, reg_state=self.reg_state,
            output_state=self.output_state, history=ctypes.addressof(self.history.view),
            target_rows=self.target.shape[0], target=pointer(self.target, native.c_real),
            window_rows=self.window.shape[0], window=pointer(self.window, native.c_real),
            target_start=self.target_start, window_start=self.window_start,
            softmax=int(self.loss == "cross_entropy"), n_extra=len(self.extra_states),
            extra_state=pointer(self.extra_states, ctypes.c_int32),
            spike_count=pointer(self.spike_count, ctypes.c_int64),
            interval_spikes=pointer(self.interval_spikes, ctypes.c_int64),
            count_slots=0 if self.interval_spikes is None else self.interval_spikes.shape[0])


def block_layout(model, block_steps: int) -> plasticity.BlockLayout | None:
    """The block products a population's history keeps (None: its replays walk): block_steps > 0
    and a model with at least one learning port that has the O(1) replay path."""
    entries = model.block_entries
    if block_steps <= 0 or not any(entries.values()):
        return None
    return plasticity.BlockLayout(block_steps, tuple(
        (entries[port], model.kernel_address(f"blocks_{port}") if entries[port] else None)
        for port in model.learning_ports))


def per_step_values(values, n: int, what: str) -> np.ndarray:
    """(steps,) or (steps, n) values as a C-contiguous (steps, n) array; row k is step k."""
    array = np.asarray(values, dtype=REAL)
    if array.ndim == 1:
        array = np.repeat(array[:, None], n, axis=1)
    if array.ndim != 2 or array.shape[1] != n or array.shape[0] < 1:
        raise ValueError(f"{what}: expected values of shape (steps,) or (steps, {n}), got "
                         f"{np.shape(values)}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: values must be finite")
    return np.ascontiguousarray(array)


class Feedback:
    """Fixed learning-signal weights B (n_target x n_readout) from a readout to a population."""

    def __init__(self, readout: Archive, target: Archive, weights):
        B = np.asarray(weights, dtype=REAL)
        shape = (target.pop.n, readout.pop.n)
        if B.ndim == 1 and readout.pop.n == 1:
            B = B[:, None]
        if B.shape != shape:
            raise ValueError(f"connect_feedback: B must have shape {shape} (one row per neuron of "
                             f"'{target.pop.name}', one column per readout), got {np.shape(weights)}")
        if not np.all(np.isfinite(B)):
            raise ValueError("connect_feedback: B must be finite")
        self.readout, self.target, self.weights = readout, target, np.ascontiguousarray(B)

    def engine_struct(self, archive_index: dict, keep: list) -> native.EgFeedback:
        keep.append(self.weights)
        return native.EgFeedback(readout=archive_index[self.readout.pop.index],
                                 target=archive_index[self.target.pop.index],
                                 weight=pointer(self.weights, native.c_real))


class PlasticState:
    """The plastic part of a projection: synapse state (owning the weights) and replay kernel."""

    def __init__(self, projection, weights: np.ndarray, optimizer: Optimizer, update_interval: int = 0,
                 samples: bool = False):
        check_optimizer(optimizer)
        model, port = projection.target.model, projection.port
        eligibility_size, n_traces = model.learning_ports[port]
        self.eligibility_size, self.n_traces = eligibility_size, n_traces
        self._syn = projection._syn
        self._target = projection.target
        presynaptic, self._presynaptic_parameters = model.presynaptic.get(port, ((), ()))
        self.synapses = PlasticSynapses(weights.size, eligibility_size, n_traces, weights, optimizer,
                                        update_interval, samples,
                                        n_windows=projection.source.n * int(projection._syn.max_delay),
                                        presynaptic=presynaptic if self._targets_agree() else ())
        self.replay_event = model.kernel_address(f"replay_event_{port}")
        self.interval = model.kernel_address(f"interval_{port}")
        self.optimizer = optimizer

    def _targets_agree(self) -> bool:
        """Do all target neurons have equal values of the parameters the presynaptic eligibility
        components depend on (then those are the same for all synapses of a window)?"""
        params = self._target.model.params
        rows = (self._target._param[params.index(name)] for name in self._presynaptic_parameters)
        return all(row.size == 0 or np.all(row == row[0]) for row in rows)

    def _entry_of_synapse(self) -> np.ndarray:
        syn = self._syn              # each synapse's window entry: source * max_delay + delay - 1
        return syn.sources * syn.max_delay + syn.delays.astype(np.int64) - 1

    def before_engine_call(self) -> None:
        """Targets whose parameters have come to differ keep the presynaptic components per synapse
        from now on (each synapse starts from its window's value)."""
        if self.synapses.presynaptic and not self._targets_agree():
            self.synapses.spread_eps(self._entry_of_synapse())

    def set_optimizer(self, optimizer: Optimizer) -> None:
        check_optimizer(optimizer)
        if optimizer.kind != self.optimizer.kind:
            raise ValueError("set_optimizer: the optimizer type of a projection cannot change "
                             "(its per-synapse state would be meaningless); change eta, "
                             "batch_size, bounds or optimize_each_step only")
        if self.synapses.shared and not plasticity.shares_optimizer(optimizer):
            self.synapses.unshare(self._entry_of_synapse())
        self.synapses.set_optimizer(optimizer)
        self.optimizer = optimizer


def check_optimizer(optimizer) -> None:
    if not isinstance(optimizer, Optimizer):
        raise ValueError(f"plasticity must be eg.gradient_descent(...) or eg.adam(...), got "
                         f"{optimizer!r}")
    if not (isinstance(optimizer.batch_size, numbers.Integral) and optimizer.batch_size >= 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {optimizer.batch_size!r}")
    if not optimizer.eta >= 0:
        raise ValueError(f"eta must be >= 0, got {optimizer.eta!r}")
    if not optimizer.w_min <= optimizer.w_max:
        raise ValueError(f"need w_min <= w_max, got {optimizer.w_min}, {optimizer.w_max}")
    if optimizer.kind == ADAM and not (0 <= optimizer.beta_1 < 1 and 0 <= optimizer.beta_2 < 1
                                       and optimizer.epsilon >= 0):
        raise ValueError("adam: need 0 <= beta_1, beta_2 < 1 and epsilon >= 0")


def history_error(net_struct, projections, archives_by_pop) -> RuntimeError:
    """The engine's report of a replay that needed an overwritten history row, as an exception.
    The Network sizes the ring before every engine call, so this is a bug if it ever shows."""
    index, synapse, row, step = (int(v) for v in net_struct.error_info)
    proj = projections[index]
    capacity = archives_by_pop[proj.target.index].history.view.capacity
    return RuntimeError(
        f"internal error: e-prop history too short: at step {step} synapse {synapse} of {proj!r} "
        f"(source {int(proj._syn.sources[synapse])} -> target {int(proj._syn.targets[synapse])}) "
        f"needed the history row of step {row}, but '{proj.target.name}' keeps only the last "
        f"{capacity} steps. Please report this. The network state is invalid now (this step was "
        f"only partly delivered).")
