"""Populations of model neurons and spike sources: their numpy state and their engine views.

All simulation state lives in numpy arrays owned by these objects; the C engine works on them in
place through pointers (see native.py). Parameter and state arrays are therefore never replaced,
only written into; ring buffers and spike records may be reallocated, because their pointers are
handed to C afresh at every engine call.
"""
from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Mapping, Sequence, Union

import numpy as np

from ..compiled import CompiledModel
from ..errors import did_you_mean
from . import distributed, native
from .connectivity import INDEX_DTYPE
from .native import REAL, pointer, pointer_table

if TYPE_CHECKING:
    from .network import Network

GRID_TOLERANCE = 1e-6            # in steps: how far a time may sit from the dt grid
MIN_SPIKE_RECORD_CAPACITY = 1024


# ---------------------------------------------------------------------------------------------
# time grid

def steps_on_grid(times_ms, dt: float, what: str) -> np.ndarray:
    """Times (ms) as integer step counts; ValueError if any is not a multiple of dt."""
    times = np.atleast_1d(np.asarray(times_ms, dtype=np.float64))
    if times.ndim != 1:
        raise ValueError(f"{what} must be a 1-D sequence of times in ms")
    if not np.all(np.isfinite(times)):
        raise ValueError(f"{what} must be finite")
    exact = times / dt
    steps = np.rint(exact)
    off = np.abs(exact - steps) > GRID_TOLERANCE
    if np.any(off):
        bad = times[off][0]
        raise ValueError(f"{what}: {bad!r} ms is not a multiple of dt={dt} ms")
    return steps.astype(np.int64)


def neuron_ids(neurons, n: int, what: str, unique: bool = True) -> np.ndarray:
    """Validated neuron ids in [0, n) as int64 (None means all n)."""
    if neurons is None:
        return np.arange(n, dtype=INDEX_DTYPE)
    ids = np.atleast_1d(np.asarray(neurons))
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError(f"{what}: expected a 1-D array of integer neuron ids")
    ids = ids.astype(INDEX_DTYPE)
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        raise ValueError(f"{what}: neuron ids must lie in [0, {n})")
    if unique and np.unique(ids).size != ids.size:
        raise ValueError(f"{what}: neuron ids must not repeat")
    return ids


def _per_neuron(name: str, values, n: int) -> np.ndarray:
    array = np.asarray(values, dtype=REAL)
    if array.ndim == 0:
        return np.full(n, float(array), dtype=REAL)
    if array.shape != (n,):
        raise ValueError(f"'{name}': expected a scalar or {n} values, got shape {array.shape}")
    return array


def unknown_name(kind: str, name: str, model: CompiledModel, valid: Sequence[str]) -> ValueError:
    hint = did_you_mean(name, valid)
    listing = ", ".join(valid) if valid else "(none)"
    return ValueError(f"unknown {kind} '{name}' of model '{model.name}'; valid: {listing}"
                      + (f" ({hint})" if hint else ""))


# ---------------------------------------------------------------------------------------------
# populations

class SpikeSource:
    """n senders that emit given spikes. Handle returned by Network.add_spike_source."""

    def __init__(self, network: "Network", index: int, n: int, name: str, times, senders):
        self.network, self.index, self.n, self.name = network, index, n, name
        steps, ids = self._validated_spikes(times, senders)
        self.spike_steps, self.spike_senders = steps, ids   # sorted by (step, sender); for spikes()
        self.event_step, self.event_sender, self.event_multiplicity = self._events(steps, ids)

    def __repr__(self):
        return f"SpikeSource({self.name!r}, n={self.n}, spikes={self.spike_steps.size})"

    def add_spikes(self, times, senders=None) -> None:
        """More spikes, all in the future (time > the network's current time): streamed input,
        e.g. the next batch of samples."""
        steps, ids = self._validated_spikes(times, senders)
        if steps.size and steps.min() - 1 < self.network.step:
            raise ValueError(f"add_spikes: spike times must lie after the current time "
                             f"{self.network.time} ms (got {steps.min() * self.network.dt} ms)")
        steps = np.concatenate([self.spike_steps, steps])
        ids = np.concatenate([self.spike_senders, ids])
        order = np.lexsort((ids, steps))
        self.spike_steps, self.spike_senders = steps[order], ids[order]
        self.event_step, self.event_sender, self.event_multiplicity = self._events(steps[order], ids[order])

    def _forget_before(self, step: int) -> None:
        """Drop the spikes emitted before `step` (they can no longer be delivered)."""
        keep = self.spike_steps - 1 >= step
        self.spike_steps, self.spike_senders = self.spike_steps[keep], self.spike_senders[keep]
        keep = self.event_step >= step
        self.event_step = np.ascontiguousarray(self.event_step[keep])
        self.event_sender = np.ascontiguousarray(self.event_sender[keep])
        self.event_multiplicity = np.ascontiguousarray(self.event_multiplicity[keep])

    def _validated_spikes(self, times, senders):
        if times is None:
            if senders is not None:
                raise ValueError("add_spike_source: senders given without times")
            return np.zeros(0, np.int64), np.zeros(0, INDEX_DTYPE)
        steps = steps_on_grid(times, self.network.dt, "spike source times")
        if steps.size and steps.min() < 1:
            raise ValueError(f"spike source times must be >= dt={self.network.dt} ms (a spike at "
                             f"t = s*dt is emitted in step s-1)")
        if senders is None:
            if self.n != 1:
                raise ValueError(f"add_spike_source: senders are required when n={self.n} > 1")
            ids = np.zeros(steps.size, INDEX_DTYPE)
        else:
            ids = neuron_ids(senders, self.n, "spike source senders", unique=False)
        if ids.shape != steps.shape:
            raise ValueError(f"add_spike_source: {steps.size} times but {ids.size} senders")
        order = np.lexsort((ids, steps))
        return steps[order], ids[order]

    def _events(self, steps, ids):
        """Unique (emission step, sender) pairs with multiplicities, as the engine reads them."""
        emission = steps - 1
        if emission.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, INDEX_DTYPE), np.zeros(0, REAL)
        keys = np.stack([emission, ids])
        unique, counts = np.unique(keys, axis=1, return_counts=True)   # sorted by step, then id
        return (np.ascontiguousarray(unique[0], dtype=np.int64),
                np.ascontiguousarray(unique[1], dtype=INDEX_DTYPE),
                counts.astype(REAL))

    def _engine_struct(self, keep: list) -> native.EgEnginePop:
        keep += [self.event_step, self.event_sender, self.event_multiplicity]
        return native.EgEnginePop(
            n=self.n,
            n_events=self.event_step.size,
            event_step=pointer(self.event_step, ctypes.c_int64),
            event_sender=pointer(self.event_sender, ctypes.c_int64),
            event_multiplicity=pointer(self.event_multiplicity, native.c_real))


class Population:
    """n neurons of one compiled model. Handle returned by Network.add_population."""

    def __init__(self, network: "Network", index: int, model: CompiledModel, n: int, name: str,
                 params: Mapping | None, state: Mapping | None):
        self.network, self.index, self.model, self.n, self.name = network, index, model, n, name
        self._param = np.zeros((len(model.params), n), dtype=REAL)
        self._state = np.zeros((len(model.recordables), n), dtype=REAL)   # states, then observables
        self._coeff = np.zeros((model.n_coeff, n), dtype=REAL)
        self._current = np.zeros((len(model.current_ports), n), dtype=REAL)
        self._refractory = np.zeros(n, dtype=np.int32)
        self._spiked = np.zeros(n, dtype=np.uint8)
        self._ring_slots = np.ones(len(model.spike_ports), dtype=np.int64)
        self._rings = [np.zeros((1, n), dtype=REAL) for _ in model.spike_ports]
        self._rec_step = np.zeros(0, np.int64)
        self._rec_sender = np.zeros(0, INDEX_DTYPE)
        self._rec_count = 0
        # flush events (the kernel's spiked == 2): not spikes, only plastic projections read them;
        # (step, sender) sorted like the spike record, trimmed to what a delay can still reach
        self._flush_step = np.zeros(0, np.int64)
        self._flush_sender = np.zeros(0, INDEX_DTYPE)
        self._flush_count = 0
        self._set_initial_values(params or {}, state or {})
        self._model_view = self._make_model_view()

    def __repr__(self):
        return f"Population({self.name!r}, model={self.model.name!r}, n={self.n})"

    # -- parameters and state --------------------------------------------------------------

    def get(self, name: str) -> np.ndarray:
        """A copy of one parameter or state variable, per neuron (under MPI a state variable is
        gathered from the neurons' owners: a collective call)."""
        ranks = self.network.ranks
        if ranks.distributed and name in self.model.recordables:
            return distributed.gathered_row(ranks, self._row(name))
        return self._row(name).copy()

    def set(self, name: str, values) -> None:
        """Set a parameter or state variable (scalar or one value per neuron); no recompilation."""
        self._row(name)[:] = _per_neuron(name, values, self.n)

    def _row(self, name: str) -> np.ndarray:
        if name in self.model.params:
            return self._param[self.model.params.index(name)]
        if name in self.model.recordables:
            return self._state[self.model.recordables.index(name)]
        raise unknown_name("parameter or state", name, self.model,
                           (*self.model.params, *self.model.recordables))

    def _set_initial_values(self, params: Mapping, state: Mapping) -> None:
        for name in params:
            if name not in self.model.params:
                raise unknown_name("parameter", name, self.model, self.model.params)
        for name in state:
            if name not in self.model.states:
                raise unknown_name("state variable", name, self.model, self.model.states)
        for i, name in enumerate(self.model.params):
            if name in params:
                self._param[i] = _per_neuron(name, params[name], self.n)
            elif name in self.model.param_defaults:
                self._param[i] = float(self.model.param_defaults[name])
            else:
                raise ValueError(f"parameter '{name}' of model '{self.model.name}' has no default; "
                                 f"give it in params=")
        initial = self.model.initial_state({k: self._param[i].copy()
                                            for i, k in enumerate(self.model.params)})
        for i, name in enumerate(self.model.states):
            if name in state:
                self._state[i] = _per_neuron(name, state[name], self.n)
            elif name in initial:
                self._state[i] = _per_neuron(name, initial[name], self.n)

    # -- engine view -------------------------------------------------------------------------

    def _make_model_view(self) -> native.EgPopulation:
        """The eg_population the kernels see; its pointer tables live as long as the population."""
        self._tables = {
            "state": pointer_table(list(self._state), native.c_real),
            "param": pointer_table(list(self._param), native.c_real),
            "coeff": pointer_table(list(self._coeff), native.c_real),
            "spike_in": pointer_table([None] * len(self.model.spike_ports), native.c_real),
            "current_in": pointer_table(list(self._current), native.c_real),
        }
        view = native.EgPopulation(n=self.n, dt=self.network.dt, step=0,
                                   refractory=pointer(self._refractory, ctypes.c_int32),
                                   spiked=pointer(self._spiked, ctypes.c_uint8))
        for field_name, table in self._tables.items():
            setattr(view, field_name, ctypes.cast(table, native.c_real_pp))
        return view

    def _engine_struct(self, keep: list) -> native.EgEnginePop:
        ring_table = pointer_table(self._rings, native.c_real)
        keep += [ring_table, self._rings, self._ring_slots, self._rec_step, self._rec_sender,
                 self._flush_step, self._flush_sender]
        struct = native.EgEnginePop(
            model=ctypes.pointer(self._model_view),
            prepare=self.model.kernel_address("prepare"),
            update=self.model.kernel_address("update"),
            n=self.n,
            n_spike_ports=len(self.model.spike_ports),
            n_current_ports=len(self.model.current_ports),
            ring=ctypes.cast(ring_table, native.c_real_pp),
            ring_slots=pointer(self._ring_slots, ctypes.c_int64))
        self._point_records(struct)
        struct.rec_count, struct.flush_count = self._rec_count, self._flush_count
        return struct

    def _record(self, flush: bool) -> tuple[np.ndarray, np.ndarray]:
        """(senders, steps) of the spike record or of the flush record."""
        return (self._flush_sender, self._flush_step) if flush else (self._rec_sender, self._rec_step)

    def _replace_record_tail(self, flush: bool, at: int, senders: np.ndarray, steps: np.ndarray,
                             room: int) -> None:
        """Entries [at, ...) of a record become the given ones, with room for `room` more after
        them (MPI: every rank's events of a batch replace this rank's own)."""
        if flush:
            self._flush_count = at
            self._ensure_flush_record_room(senders.size + room)
        else:
            self._rec_count = at
            self._ensure_spike_record_room(senders.size + room)
        sender_array, step_array = self._record(flush)
        sender_array[at:at + senders.size] = senders
        step_array[at:at + senders.size] = steps
        if flush:
            self._flush_count += senders.size
        else:
            self._rec_count += senders.size

    def _point_records(self, struct: native.EgEnginePop) -> None:
        """Point an engine struct at the spike and flush records (again after they grew; the
        counts are set by the caller)."""
        struct.rec_capacity = self._rec_step.size
        struct.rec_step = pointer(self._rec_step, ctypes.c_int64)
        struct.rec_sender = pointer(self._rec_sender, ctypes.c_int64)
        struct.flush_capacity = self._flush_step.size
        struct.flush_step = pointer(self._flush_step, ctypes.c_int64)
        struct.flush_sender = pointer(self._flush_sender, ctypes.c_int64)

    def _ensure_ring_slots(self, port: int, slots: int, next_step: int) -> None:
        """Grow a ring to `slots` rows, keeping pending input at the rows its steps map to."""
        old_slots = int(self._ring_slots[port])
        if slots <= old_slots:
            return
        old, new = self._rings[port], np.zeros((slots, self.n), dtype=REAL)
        for step in range(next_step, next_step + old_slots):
            new[step % slots] = old[step % old_slots]
        self._rings[port] = new
        self._ring_slots[port] = slots

    def _forget_before(self, step: int) -> None:
        """Drop the recorded spikes emitted before `step` (kept: what delivery can still reach)."""
        used = self._rec_count
        start = int(np.searchsorted(self._rec_step[:used], step, side="left"))
        if start:
            kept = used - start
            self._rec_step[:kept] = self._rec_step[start:used]
            self._rec_sender[:kept] = self._rec_sender[start:used]
            self._rec_count = kept

    def _ensure_spike_record_room(self, room: int) -> None:
        """The engine stops before a batch of steps that could overflow: make room for at least
        one (`room` entries)."""
        free = self._rec_step.size - self._rec_count
        if free >= room and self._rec_step.size:
            return
        capacity = max(MIN_SPIKE_RECORD_CAPACITY, 2 * self._rec_step.size, self._rec_count + room)
        self._rec_step = _grown(self._rec_step, capacity, self._rec_count)
        self._rec_sender = _grown(self._rec_sender, capacity, self._rec_count)

    def _prepare_flush_record(self, first_needed_step: int, room: int) -> None:
        """Before an engine call: drop the flush events of steps before `first_needed_step` (no
        plastic synapse can still receive them; next step - largest outgoing plastic delay) and
        make room for `room` events, as for spikes."""
        used = self._flush_count
        if used and self._flush_step[0] < first_needed_step:
            start = int(np.searchsorted(self._flush_step[:used], first_needed_step, side="left"))
            kept = used - start
            self._flush_step[:kept] = self._flush_step[start:used]
            self._flush_sender[:kept] = self._flush_sender[start:used]
            self._flush_count = kept
        self._ensure_flush_record_room(room)

    def _ensure_flush_record_room(self, room: int) -> None:
        used = self._flush_count
        if self._flush_step.size - used >= room and self._flush_step.size:
            return
        capacity = max(MIN_SPIKE_RECORD_CAPACITY, 2 * self._flush_step.size, used + room)
        self._flush_step = _grown(self._flush_step, capacity, used)
        self._flush_sender = _grown(self._flush_sender, capacity, used)


def _grown(array: np.ndarray, capacity: int, used: int) -> np.ndarray:
    bigger = np.zeros(capacity, dtype=array.dtype)
    bigger[:used] = array[:used]
    return bigger


AnyPopulation = Union[Population, SpikeSource]

