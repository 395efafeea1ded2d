"""The Python network API: populations, spike sources, projections, inputs, recording, simulate.

Time conventions (shared with engine.cpp): step n integrates (n*dt, (n+1)*dt]; spikes of step n
and state values recorded after step n carry the time (n+1)*dt.
"""
from __future__ import annotations

import ctypes
import numbers
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..compiled import CompiledModel
from . import distributed, learning, native, schedule
from .state import memory_use
from .learning import DEFAULT_HISTORY_STEPS, EventDriven, TimeDriven, history_steps as checked_history_steps
from .connectivity import Rule, ValueSpec, draw_synapses
from .plasticity import Optimizer
from .native import REAL, pointer
from .populations import (AnyPopulation, Population, SpikeSource, neuron_ids, steps_on_grid,
                          unknown_name)
from .projections import Projection

# ---------------------------------------------------------------------------------------------
# currents, recorders

@dataclass(eq=False)
class _CurrentSource:
    pop: Population
    port_index: int
    change_step: np.ndarray     # int64, non-decreasing
    amplitude: np.ndarray       # [n_changes, width]
    targets: np.ndarray         # int64, ascending

    def engine_struct(self, keep: list) -> native.EgCurrentSource:
        keep += [self.change_step, self.amplitude, self.targets]
        return native.EgCurrentSource(
            pop=self.pop.index, port=self.port_index, n_changes=self.change_step.size,
            change_step=pointer(self.change_step, ctypes.c_int64),
            amplitude=pointer(self.amplitude, native.c_real),
            width=self.amplitude.shape[1], n_targets=self.targets.size,
            targets=pointer(self.targets, ctypes.c_int64))


class _StateRecorder:
    """Records state variables of some neurons after every step (time (n+1)*dt)."""

    def __init__(self, pop: Population, variables: Sequence[str], neurons: np.ndarray):
        self.pop, self.variables = pop, tuple(variables)
        self.state_index = [pop.model.recordables.index(v) for v in self.variables]
        order = np.argsort(neurons, kind="stable")
        self.sorted_neurons = np.ascontiguousarray(neurons[order])   # the engine wants ascending
        self.column_of_user = np.argsort(order)                      # back to the user's order
        self.first_steps: list[int] = []
        self.chunks: list[list[np.ndarray]] = []                      # per call: one array per var

    def start_chunk(self, first_step: int, n_steps: int) -> None:
        self.first_steps.append(first_step)
        self.chunks.append([np.zeros((n_steps, self.sorted_neurons.size), dtype=REAL)
                            for _ in self.variables])

    def engine_structs(self, keep: list) -> list[native.EgStateRecorder]:
        keep += [self.sorted_neurons, *self.chunks[-1]]
        return [native.EgStateRecorder(
            pop=self.pop.index, state=state, n_neurons=self.sorted_neurons.size,
            neurons=pointer(self.sorted_neurons, ctypes.c_int64),
            first_step=self.first_steps[-1], out=pointer(out, native.c_real))
            for state, out in zip(self.state_index, self.chunks[-1])]

    def clear(self) -> None:
        self.first_steps.clear()
        self.chunks.clear()

    def result(self, dt: float) -> dict[str, np.ndarray]:
        steps = [np.arange(s, s + c[0].shape[0]) for s, c in zip(self.first_steps, self.chunks)]
        all_steps = np.concatenate(steps) if steps else np.zeros(0, np.int64)
        out = {"times": (all_steps + 1) * dt}
        for k, var in enumerate(self.variables):
            blocks = [c[k] for c in self.chunks]
            values = np.concatenate(blocks) if blocks else np.zeros((0, self.sorted_neurons.size))
            out[var] = values[:, self.column_of_user]
        return out


# ---------------------------------------------------------------------------------------------
# the network

class Network:
    """A network of populations and spike sources, simulated by the compiled engine.

    dt: step in ms. threads: OpenMP threads (results do not depend on it). seed: connectivity seed.
    history_steps: the initial length (steps, rounded up to a power of two) of the e-prop history
    every learning population keeps, a ring. It grows by itself when a synapse's window reaches
    further back (NEST keeps what any synapse still needs, too); its length is `history_steps`
    afterwards. A finite cutoff (the engine settles windows once it has passed), flush events and
    samples bound how far back windows reach.
    learning: the e-prop engine and its schedule: eg.event_driven() (the default; NEST's
    eprop_synapse; with sample_duration=..., minibatches of samples) or
    eg.time_driven(update_interval=..., ...) (Bellec et al. 2020, NEST's *_bsshslm_2020). The same
    models and projections run in both.
    """

    def __init__(self, dt: float = 0.1, threads: int = 1, seed: int = 0,
                 history_steps: int | None = None,
                 learning: EventDriven | TimeDriven | None = None, comm=None):
        if not (isinstance(dt, numbers.Real) and dt > 0 and np.isfinite(dt)):
            raise ValueError(f"dt must be a positive number of ms, got {dt!r}")
        if not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.dt = float(dt)
        self.threads = threads
        # MPI: the processes the network is split across (distributed.py); under mpirun the world
        self.ranks = distributed.Ranks.of(distributed.world() if comm is None else comm)
        self._communication = distributed.CommunicationStats()
        self.seed = int(seed)
        self.step = 0                      # index of the next step to compute
        self._pending_step = -1            # the first step whose spikes are not yet delivered
        self.populations: list[AnyPopulation] = []
        self.projections: list[Projection] = []
        self._currents: list[_CurrentSource] = []
        self._recorders: dict[int, _StateRecorder] = {}
        self._cutoffs = None          # schedule.cutoff_steps per population during a simulate call
        self.history_steps = DEFAULT_HISTORY_STEPS if history_steps is None \
            else checked_history_steps(history_steps)
        self.learning = EventDriven() if learning is None else learning
        self._interval_steps = (0, 0)                   # (U, LW) of the time-driven engine
        self._sample_steps = 0                          # event-driven samples (minibatches)
        if not isinstance(self.learning, (EventDriven, TimeDriven)):
            raise ValueError(f"learning must be eg.event_driven(...) or eg.time_driven(...), got "
                             f"{learning!r}")
        self._block_steps = 0                           # event-driven replays' block products
        if isinstance(self.learning, EventDriven):
            self._sample_steps = self.learning.steps(self.dt)
            self._block_steps = self.learning.blocks
            self.history_steps = max(self.history_steps, self._sample_steps + 2)
        if isinstance(learning, TimeDriven):
            self._interval_steps = learning.steps(self.dt)
            # an interval's replay reads the whole interval
            self.history_steps = max(self.history_steps, self._interval_steps[0] + learning.offset + 4)
        # a power of two (ring slots by bit mask, no division per replayed row), whole blocks
        self.history_steps = 1 << (max(self.history_steps, self._block_steps) - 1).bit_length()
        self._spike_flags: dict[int, np.ndarray] = {}         # time-driven: by source population
        self._archives: dict[int, learning.Archive] = {}     # by population index
        self._feedbacks: list[learning.Feedback] = []
        # the spikes of the last step run are delivered at the start of the next one, through the
        # projections that existed when they were emitted (engine.cpp, deliver_phase)
        self._projections_at_last_step = 0

    @property
    def threads(self) -> int:
        return self._threads

    @threads.setter
    def threads(self, value: int) -> None:
        if not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"threads must be an integer >= 1, got {value!r}")
        self._threads = int(value)

    @property
    def time(self) -> float:
        """Simulated time in ms."""
        return self.step * self.dt

    # -- building ----------------------------------------------------------------------------

    def add_spike_source(self, n: int, times=None, senders=None,
                         name: str | None = None) -> SpikeSource:
        """n senders; spike i of sender senders[i] at times[i] ms (t = s*dt with s >= 1)."""
        index = len(self.populations)
        source = SpikeSource(self, index, _count(n), name or f"source{index}", times, senders)
        self.populations.append(source)
        return source

    def add_population(self, model: CompiledModel, n: int, params: Mapping | None = None,
                       state: Mapping | None = None, name: str | None = None) -> Population:
        if not isinstance(model, CompiledModel):
            raise ValueError(f"add_population needs a CompiledModel, got {type(model).__name__}")
        n = _count(n)
        pop = Population(self, len(self.populations), model, n,
                         name or f"{model.name}{len(self.populations)}", params, state)
        self.populations.append(pop)
        return pop

    def connect(self, source: AnyPopulation, target: Population, port: str, rule: Rule,
                weight: ValueSpec = 1.0, delay: ValueSpec = 1,
                plasticity: Optimizer | None = None) -> Projection:
        """A projection; with `plasticity` (eg.gradient_descent(...) / eg.adam(...)) its synapses
        learn with the e-prop rule of the target model's `port` (NEST's eprop_synapse)."""
        self._check_member(source, "connect source")
        self._check_member(target, "connect target")
        if not isinstance(target, Population):
            raise ValueError("connect: the target must be a model population, not a spike source")
        if isinstance(source, Population) and not source.model.spiking:
            raise ValueError(f"connect: population '{source.name}' (model '{source.model.name}') "
                             f"does not spike and cannot be a source")
        if port not in target.model.spike_ports:
            raise unknown_name("spike port", port, target.model, target.model.spike_ports)
        if plasticity is not None and port not in target.model.learning_ports:
            raise ValueError(f"connect: port '{port}' of model '{target.model.name}' has no learning "
                             f"rule (ports with one: {', '.join(target.model.learning_ports) or 'none'}"
                             f"); give the model a learning: section or connect without plasticity")
        if (plasticity is not None and not self.time_driven
                and target.model.regularisation_per_interval):
            raise ValueError(f"connect: model '{target.model.name}' regularises per update interval "
                             f"(interval_spikes), which only the time-driven engine has; create the "
                             f"network with learning=eg.time_driven(update_interval=...)")
        index = len(self.projections)
        synapses = draw_synapses(rule, n_source=source.n, n_target=target.n,
                                 same_population=source is target, weight=weight, delay=delay,
                                 seed=self.seed, projection=index, owned=self.ranks.block(target.n))
        synapses.min_delay = self.ranks.minimum(synapses.min_delay)    # the whole projection's
        projection = Projection(index, source, target, port, synapses, plasticity,
                                update_interval=self._interval_steps[0],
                                samples=self._sample_steps > 0)
        if plasticity is not None:
            self._archive(target)
        target._ensure_ring_slots(projection.port_index, synapses.max_delay + 1, self.step)
        self.projections.append(projection)
        return projection

    def add_current(self, pop: Population, port: str, times, amplitudes, neurons=None) -> None:
        """Piecewise-constant current: from times[k] on (until the next change) amplitudes[k].

        amplitudes: one value per time (all given neurons), or shape (len(times), len(neurons)).
        Several currents into the same neurons and port add up.
        """
        self._check_member(pop, "add_current")
        if not isinstance(pop, Population):
            raise ValueError("add_current: the target must be a model population")
        if port not in pop.model.current_ports:
            raise unknown_name("current port", port, pop.model, pop.model.current_ports)
        steps = steps_on_grid(times, self.dt, "current times")
        if steps.size and (steps.min() < 0 or np.any(np.diff(steps) < 0)):
            raise ValueError("current times must be >= 0 and non-decreasing")
        ids = neuron_ids(neurons, pop.n, "add_current")
        values = np.asarray(amplitudes, dtype=REAL)
        if values.ndim == 0 and steps.size == 1:
            values = values.reshape(1)
        if values.ndim == 1 and values.shape == (steps.size,):
            values = values[:, None]
        elif values.shape != (steps.size, ids.size):
            raise ValueError(f"add_current: amplitudes must have shape ({steps.size},) or "
                             f"({steps.size}, {ids.size}), got {values.shape}")
        order = np.argsort(ids, kind="stable")
        if values.shape[1] > 1:
            values = values[:, order]
        self._currents.append(_CurrentSource(pop, pop.model.current_ports.index(port),
                                             np.ascontiguousarray(steps),
                                             np.ascontiguousarray(values),
                                             np.ascontiguousarray(ids[order])))

    def record(self, pop: Population, variables: Sequence[str] = ("V_m",), neurons=None) -> None:
        """Record state variables after every step from now on (spikes are always recorded)."""
        self._check_member(pop, "record")
        if not isinstance(pop, Population):
            raise ValueError("record: spike sources have no state; use spikes(source)")
        if pop.index in self._recorders:
            raise ValueError(f"record: population '{pop.name}' is already recorded; "
                             f"call record once with all variables")
        if isinstance(variables, str):
            variables = (variables,)
        for var in variables:
            if var not in pop.model.recordables:
                raise unknown_name("recordable", var, pop.model, pop.model.recordables)
        ids = neuron_ids(neurons, pop.n, "record")
        self._recorders[pop.index] = _StateRecorder(pop, variables, ids)

    # -- learning ----------------------------------------------------------------------------

    def add_target(self, readout: Population, values, loss: str = "mean_squared_error",
                   start: float = 0.0) -> None:
        """The target y* of a readout, per step: values[k] (shape (steps,) or (steps, n)) is used
        in step start/dt + k, the last row in every later step, the first in earlier ones (NEST: a
        target amplitude set at T ms is used from step T/dt on). Replaces an earlier target, so
        streamed training sets each batch's target with its start time.

        loss: "mean_squared_error" (error y - y*) or "cross_entropy" (y is first normalised by a
        softmax over the readout population, the error of softmax cross-entropy with the one-hot or
        probability target y*)."""
        if loss not in learning.LOSSES:
            raise ValueError(f"add_target: loss must be one of {', '.join(learning.LOSSES)}, got {loss!r}")
        archive = self._readout_archive(readout, "add_target")
        archive.target = learning.per_step_values(values, readout.n, "add_target")
        archive.target_start = int(steps_on_grid(start, self.dt, "add_target start")[0])
        archive.loss = loss

    def add_learning_window(self, readout: Population, values, start: float = 0.0) -> None:
        """The learning window lambda of a readout, per step like add_target (default: 1 in every
        step). The error is E = (y - y*) * lambda."""
        archive = self._readout_archive(readout, "add_learning_window")
        archive.window = learning.per_step_values(values, readout.n, "add_learning_window")
        archive.window_start = int(steps_on_grid(start, self.dt, "add_learning_window start")[0])

    def connect_feedback(self, readout: Population, target: Population, B) -> None:
        """Learning signals: L_j[n-1] += B[j, k] * E_k[n] for neuron j of `target` and readout k
        (B: shape (target.n, readout.n); NEST's eprop_learning_signal_connection)."""
        self._check_member(target, "connect_feedback target")
        if not isinstance(target, Population) or "psi" not in target.model.observables:
            raise ValueError(f"connect_feedback: {target!r} has no pseudo-derivative psi, so a "
                             f"learning signal has no effect on it")
        readout_archive = self._readout_archive(readout, "connect_feedback")
        self._feedbacks.append(learning.Feedback(readout_archive, self._archive(target), B))

    def _archive(self, pop: Population) -> learning.Archive:
        if pop.index not in self._archives:
            archive = learning.Archive(pop, self.history_steps, self._block_steps, self.ranks.block(pop.n))
            if self.time_driven:
                archive.use_intervals(self._interval_steps[0])
            self._archives[pop.index] = archive
        return self._archives[pop.index]

    def _readout_archive(self, readout: Population, what: str) -> learning.Archive:
        self._check_member(readout, what)
        if not isinstance(readout, Population) or "y" not in readout.model.observables:
            raise ValueError(f"{what}: {readout!r} is not a readout (its model has no output y)")
        return self._archive(readout)

    # -- running -----------------------------------------------------------------------------

    def simulate(self, t_ms: float) -> None:
        """Advance by t_ms (a multiple of dt); continues where the previous call stopped."""
        n_steps = int(steps_on_grid(t_ms, self.dt, "simulate time")[0])
        if n_steps < 0:
            raise ValueError(f"simulate: time must be >= 0, got {t_ms}")
        if n_steps == 0:
            return
        lib = native.engine_library()
        native.warn_if_serial(lib, self.threads)
        for recorder in self._recorders.values():
            recorder.start_chunk(self.step, n_steps)
        self._cutoffs = {}            # parameters change only between simulate calls
        remaining = n_steps
        try:
            while remaining > 0:
                done = self._run_engine(lib, self._fit_history(remaining))
                self.step += done
                remaining -= done
        except Exception as error:
            if self.ranks.distributed:      # the other ranks wait in a collective: end them all
                self.ranks.abort(f"simulate failed at step {self.step}: {type(error).__name__}: {error}")
            raise
        finally:
            self._cutoffs = None

    # -- the history ring: long enough for every window a synapse may still replay ----------------

    def _fit_history(self, remaining: int) -> int:
        """Steps the next engine call may run so that no replay needs history the ring no longer
        holds (the ring grows when too little fits; schedule.ring_plan)."""
        if not self._archives:
            return remaining
        oldest = schedule.oldest_needed_step(self.projections, self.time_driven, self._cutoff_steps)
        history_bytes = sum(a.nbytes for archive in self._archives.values()
                            for a in archive.history.arrays().values())
        capacity, steps = schedule.ring_plan(self.history_steps, self.step, oldest, remaining, history_bytes)
        if capacity != self.history_steps:
            self._grow_history(capacity)
        return steps

    def _grow_history(self, capacity: int) -> None:
        """Re-home every held row (steps step - old capacity .. step - 1) into longer rings."""
        first = max(0, self.step - self.history_steps)
        for archive in self._archives.values():
            offset = self.learning.offset + int(archive.is_readout) if self.time_driven else 0
            archive.grow(capacity, first, self.step, offset, self._interval_steps[0])
        for index, flags in self._spike_flags.items():
            self._spike_flags[index] = schedule.grown_flags(flags, capacity, first, self.step)
        self.history_steps = capacity

    def _run_engine(self, lib, n_steps: int) -> int:
        models = [p for p in self.populations if isinstance(p, Population)]
        flush_reach = {}                   # largest delay of a plastic projection from each pop
        for proj in self.projections:
            if proj.plasticity is not None:
                flush_reach[proj.source.index] = max(flush_reach.get(proj.source.index, 0),
                                                     int(proj._syn.max_delay))
        for proj in self.projections:
            if proj._plastic is not None:
                proj._plastic.before_engine_call()
                proj._plastic.synapses.use_threads(self.threads)
        interval = self._delivery_interval()
        for pop in models:
            lo, hi = self.ranks.block(pop.n)      # a step records at most one event per own neuron
            pop._ensure_spike_record_room(interval * (hi - lo))
            pop._prepare_flush_record(self.step - flush_reach.get(pop.index, 0), interval * (hi - lo))
        keep: list = []
        pops = native.struct_array(native.EgEnginePop,
                                   [p._engine_struct(keep) for p in self.populations])
        projections = native.struct_array(native.EgProjection,
                                          [p._engine_struct(keep, self._settle_steps(p)) for p in self.projections])
        currents = native.struct_array(native.EgCurrentSource,
                                       [c.engine_struct(keep) for c in self._currents])
        recorders = native.struct_array(native.EgStateRecorder,
                                        [s for r in self._recorders.values()
                                         for s in r.engine_structs(keep)])
        archive_list = list(self._archives.values())
        archive_index = {a.pop.index: i for i, a in enumerate(archive_list)}
        archives = native.struct_array(native.EgArchive,
                                       [a.engine_struct(keep) for a in archive_list])
        feedbacks = native.struct_array(native.EgFeedback,
                                        [f.engine_struct(archive_index, keep)
                                         for f in self._feedbacks])
        net = native.EgNetwork(n_pops=len(self.populations), n_projections=len(self.projections),
                               n_currents=len(self._currents),
                               n_recorders=sum(len(r.variables) for r in self._recorders.values()),
                               pops=pops, projections=projections, currents=currents,
                               recorders=recorders, n_archives=len(archive_list),
                               n_feedbacks=len(self._feedbacks), archives=archives,
                               feedbacks=feedbacks,
                               n_projections_at_previous_step=self._projections_at_last_step,
                               delivery_interval=interval, pending_step=self._pending_step)
        if self.time_driven:
            self._time_driven_fields(net, pops, keep)
        elif self._sample_steps:
            net.sample_steps = self._sample_steps
            for pop in self.populations:
                if isinstance(pop, Population):
                    schedule.restore_on_reset(pop, pops[pop.index], keep)
        exchange = None
        if self.ranks.distributed:
            net.rank, net.n_ranks = self.ranks.rank, self.ranks.size
            exchange = distributed.Exchange(self.ranks, self.populations, pops, archive_list, self._spike_flags,
                                            self._communication, first_step=self.step, interval=interval)
            net.exchange = ctypes.cast(exchange.callback, ctypes.c_void_p)
            net.exchange_outputs = int(bool(exchange.softmax))
        done = int(lib.eg_engine_simulate(ctypes.byref(net), self.step, n_steps, self.threads))
        del exchange
        self._pending_step = int(net.pending_step)
        for i, pop in enumerate(self.populations):
            if isinstance(pop, Population):
                pop._rec_count = int(pops[i].rec_count)
                pop._flush_count = int(pops[i].flush_count)
        if done > 0:
            self._projections_at_last_step = len(self.projections)
        if net.error_code != 0:
            self.step += done
            raise learning.history_error(net, self.projections, self._archives)
        if done < 1 and n_steps > 0:
            raise RuntimeError("internal error: the engine made no progress")
        return done

    def _delivery_interval(self) -> int:
        """Steps whose static spikes the engine delivers (and exchanges) at once: schedule.py."""
        learns = (bool(self._archives) or self.time_driven or self._sample_steps > 0
                  or any(p.plasticity is not None for p in self.projections))
        return schedule.delivery_interval(self.projections, learns)

    def _time_driven_fields(self, net, pops, keep: list) -> None:
        """The time-driven engine's part of the structs: schedule, per-population offsets, the
        initial states an interval start restores, spike flags of plastic projections' sources."""
        U, LW = self._interval_steps
        net.update_interval, net.learning_window = U, LW
        net.reset_neurons = int(self.learning.reset_neurons)
        net.average_gradient = int(self.learning.average_gradient)
        for index, archive in self._archives.items():
            pops[index].interval_offset = self.learning.offset + int(archive.is_readout)
            schedule.restore_on_reset(archive.pop, pops[index], keep)
        for proj in self.projections:
            if proj.plasticity is None:
                continue
            source = proj.source
            schedule.check_flush_interval(source, U * self.dt)
            if source.index not in self._spike_flags:
                self._spike_flags[source.index] = np.zeros((self.history_steps, source.n), np.uint8)
            schedule.flags_struct_fields(pops[source.index], self._spike_flags[source.index], keep)

    def _settle_steps(self, proj: Projection) -> int:
        """Event-driven: how old a plastic synapse's last event may get before the engine replays
        its window like a flush (schedule.settle_steps); 0: never. Not with optimize_each_step: a
        settled window would apply its per-step updates early, with the eta of that moment."""
        if proj.plasticity is None or self.time_driven or proj.plasticity.optimize_each_step:
            return 0
        return schedule.settle_steps(self._cutoff_steps(proj.target)[1])

    def _cutoff_steps(self, pop: Population) -> tuple[int, int]:
        """schedule.cutoff_steps of a population, once per simulate call."""
        cache = self._cutoffs
        if cache is None:
            return schedule.cutoff_steps(pop, self.dt)
        if pop.index not in cache:
            cache[pop.index] = schedule.cutoff_steps(pop, self.dt)
        return cache[pop.index]

    @property
    def time_driven(self) -> bool:
        return isinstance(self.learning, TimeDriven)

    # -- results -----------------------------------------------------------------------------

    def forget_spikes(self, before_ms: float | None = None) -> None:
        """Drop recorded spikes (of every population and spike source) emitted before `before_ms`
        (default: now), keeping whatever delivery still needs: long runs stay in bounded memory.
        `spikes()` then reports only the later ones."""
        step = self.step if before_ms is None else int(steps_on_grid(before_ms, self.dt, "forget_spikes")[0])
        reach = max((int(p._syn.max_delay) + self._settle_steps(p) for p in self.projections), default=0)
        step = min(min(step, self.step) - reach, self._pending_step)    # pending: not yet delivered
        for pop in self.populations:
            pop._forget_before(step)

    def spikes(self, pop: AnyPopulation) -> tuple[np.ndarray, np.ndarray]:
        """(times in ms, sender ids) of all spikes so far, by ascending time then id (flush events
        are not spikes and are not listed)."""
        self._check_member(pop, "spikes")
        if isinstance(pop, SpikeSource):
            emitted = pop.spike_steps - 1 < self.step
            return pop.spike_steps[emitted] * self.dt, pop.spike_senders[emitted].copy()
        used = pop._rec_count
        return (pop._rec_step[:used] + 1) * self.dt, pop._rec_sender[:used].copy()

    def recording(self, pop: Population, clear: bool = False) -> dict[str, np.ndarray]:
        """{"times": (T,), var: (T, n_recorded)} with columns in the order neurons were given.
        clear: forget what was returned (long runs read their recordings piece by piece)."""
        self._check_member(pop, "recording")
        if pop.index not in self._recorders:
            raise ValueError(f"recording: population '{pop.name}' is not recorded; call record() "
                             f"before simulate()")
        recorder = self._recorders[pop.index]
        result = recorder.result(self.dt)
        if self.ranks.distributed:          # each rank recorded its own neurons
            neurons = recorder.sorted_neurons[recorder.column_of_user]
            for var in recorder.variables:
                result[var] = distributed.owners_columns(self.ranks, result[var], neurons, pop.n)
        if clear:
            self._recorders[pop.index].clear()
        return result

    def communication(self) -> dict[str, float]:
        """This rank's MPI exchanges so far: seconds (wall time in the exchanges, the wait for
        slower ranks included), wait_seconds (of them: waiting for the slowest rank, roughly),
        bytes_sent, bytes_received, exchanges, steps (all 0 in one process)."""
        return dict(vars(self._communication))

    def memory(self) -> dict[str, int]:
        """Bytes the network's arrays hold now, by part: neurons, connectivity (target ids, delays,
        static weights), synapse_state (plastic synapses), windows (event-driven bookkeeping per
        source), history (what learning neurons archive per step). Python objects and the
        compiled libraries are not counted."""
        return memory_use(self)

    def _check_member(self, pop, what: str) -> None:
        if not isinstance(pop, (Population, SpikeSource)) or pop.network is not self:
            raise ValueError(f"{what}: {pop!r} is not a population of this network")


def _count(n) -> int:
    if not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"population size must be a positive integer, got {n!r}")
    return int(n)


__all__ = ["Network", "Population", "SpikeSource", "Projection"]
