"""What the e-prop schedule adds to every engine call (the Network's helpers):

- the history ring: each learning population keeps its last `capacity` steps; before an engine call
  the Network finds the oldest step any replay may still read and runs only as many steps as fit,
  doubling the ring when too little fits (rows nobody needs are overwritten, so memory follows the
  longest window still open);
- the time-driven engine's part of the engine structs (intervals, offsets, spike flags);
- what an interval or sample start restores (the model's initial state);
- how many steps' spikes a network without learning delivers (and exchanges) at once.
"""
from __future__ import annotations

import ctypes

import numpy as np

from . import native
from .native import REAL, pointer
from .plasticity import WINDOW_EMPTY, WINDOW_FLUSH

HISTORY_MARGIN = 4      # rows beyond the oldest needed one: the learning signal lands 2-3 rows back
# An engine call runs at least 1/2 of the ring's steps (or the rest of the call), a large history
# (>= LARGE_HISTORY_BYTES) at least 1/8: with settled windows its ring then stays the next power of
# two above the cutoff, half the memory, for more engine calls (~1-2 ms of Python each, which
# only a small network notices).
RUN_SHARE, LARGE_HISTORY_RUN_SHARE = 2, 8
LARGE_HISTORY_BYTES = 64 * 2 ** 20


def ring_plan(capacity: int, step: int, oldest: int | None, remaining: int,
              history_bytes: int = 0) -> tuple[int, int]:
    """(ring length, steps to run): every replay of the next steps finds its rows, and a share of
    the ring (or the rest of the call) fits before the next check."""
    span = 0 if oldest is None else max(0, step - oldest)
    share = LARGE_HISTORY_RUN_SHARE if history_bytes >= LARGE_HISTORY_BYTES else RUN_SHARE
    while capacity - span - HISTORY_MARGIN < min(remaining, max(1, capacity // share)):
        capacity *= 2
    return capacity, max(1, min(remaining, capacity - span - HISTORY_MARGIN))


# A network without learning delivers static spikes in batches of up to this many steps (its
# smallest delay): every spike record keeps room for a batch of its owners' spikes, so a longer
# batch would mostly reserve memory, while the exchanges it saves are already few.
MAX_DELIVERY_INTERVAL = 64


def delivery_interval(projections, learns: bool) -> int:
    """D: the static spikes of D steps are delivered together (and, under MPI, exchanged once),
    engine.cpp's eg_network.delivery_interval. Every delay must be >= D, so a spike always lands
    in a ring slot not yet read. A learning network delivers every step (D = 1): a plastic
    synapse's replay, readout errors (learning signals one step later), samples and update
    intervals all run on the step schedule. Depends on no rank or thread count."""
    if learns:
        return 1
    return max(1, min([MAX_DELIVERY_INTERVAL] + [int(p._syn.min_delay) for p in projections]))


def oldest_needed_step(projections, time_driven: bool, cutoffs) -> int | None:
    """The oldest step whose history row (or source spike flag) a replay may still read: an
    event-driven window starts at its spike's stamp - 1 and, after flush or settle events, goes
    on where they stopped (at most the targets' cutoff from its start); a time-driven interval
    at t_trig (its arrivals from t_trig - delay). None when no plastic synapse has started.
    cutoffs(population) -> cutoff_steps of its neurons."""
    oldest = None
    for proj in projections:
        if proj._plastic is None:
            continue
        syn = proj._plastic.synapses
        if time_driven:
            started = syn.t_trig[syn.t_trig > 0]
            first = int(started.min()) - int(proj._syn.max_delay) if started.size else None
        else:
            first = _oldest_window_row(syn.win_t_start[0], syn.win_t_last[0], syn.win_flags[0],
                                       *cutoffs(proj.target))
        if first is not None:
            oldest = first if oldest is None else min(oldest, first)
    return oldest


def ring_runs(first: int, end: int, old: int, new: int):
    """(old start, new start, length) runs that move steps [first, end) from a ring of `old` slots
    to one of `new` slots with contiguous slices (at most a few runs)."""
    m = first
    while m < end:
        length = min(end - m, old - m % old, new - m % new)
        yield m % old, m % new, length
        m += length


def rehome(old: np.ndarray, new: np.ndarray, first: int, end: int, axis: int) -> None:
    """Copy the ring slots of steps [first, end) along `axis` from `old` into `new`."""
    for a, b, n in ring_runs(first, end, old.shape[axis], new.shape[axis]):
        if axis == 0:
            new[b:b + n] = old[a:a + n]
        else:
            new[:, b:b + n] = old[:, a:a + n]


def grown_flags(flags: np.ndarray, capacity: int, first: int, end: int) -> np.ndarray:
    """A longer spike-flag ring ([step, neuron]) with the rows of steps [first, end)."""
    grown = np.zeros((capacity, flags.shape[1]), np.uint8)
    rehome(flags, grown, first, end, axis=0)
    return grown


def restore_on_reset(pop, struct, keep: list) -> None:
    """What an interval or sample start restores: the model's initial state for the current
    parameters (observables restart from 0)."""
    params = {k: pop._param[i].copy() for i, k in enumerate(pop.model.params)}
    initial = pop.model.initial_state(params)
    rows = [np.ascontiguousarray(np.broadcast_to(np.asarray(initial.get(name, pop._state[k]), REAL), (pop.n,)))
            for k, name in enumerate(pop.model.states)]
    table = native.pointer_table(rows, native.c_real)
    keep += [rows, table]
    struct.n_states = len(rows)
    struct.n_observables = len(pop.model.observables)
    struct.initial_state = ctypes.cast(table, native.c_real_pp)


def flags_struct_fields(struct, flags: np.ndarray, keep: list) -> None:
    keep.append(flags)
    struct.spike_flags = pointer(flags, ctypes.c_uint8)
    struct.flag_capacity = flags.shape[0]


def _oldest_window_row(t_start, t_last, flags, shortest: int, longest: int) -> int | None:
    """The first row the open windows still need: the replayed part of a continued window (all
    of it once every target's cutoff is reached, then it needs none) is done; an empty one needs none."""
    elapsed = t_last - t_start
    continued = (flags & WINDOW_FLUSH) != 0
    open_ = (t_last > 0) & ((flags & WINDOW_EMPTY) == 0) & ~(continued & (elapsed >= longest))
    if not np.any(open_):
        return None
    done = np.where(continued, np.minimum(elapsed, shortest), 0)
    return int(np.min((t_start - 1 + done)[open_]))


def cutoff_steps(target, dt: float) -> tuple[int, int]:
    """The shortest and longest cutoff of the target neurons' replays in whole steps (2^62:
    none), as the replay kernels round them."""
    never = 2 ** 62
    if target.model.replay_cutoff is None:
        return never, never
    cutoff = target.model.replay_cutoff({k: target._param[i] for i, k in enumerate(target.model.params)})["cutoff"]
    steps = np.where(np.isfinite(cutoff), np.floor(np.minimum(cutoff / dt, never) + 0.5), never).astype(np.int64)
    return int(steps.min(initial=never)), int(steps.max(initial=0))


def settle_steps(longest: int) -> int:
    """The longest cutoff of the target neurons' replays in steps (0 if any is infinite): a window
    that old has replayed all it ever will, and settling it then (a flush-like replay, the same
    numbers) frees its history rows. Without it, a source that stays silent would keep the ring
    as long as its silence."""
    return 0 if longest >= 2 ** 62 else max(1, longest)


def check_flush_interval(pop, update_interval_ms: float) -> None:
    """The time-driven engine (as NEST's bsshslm) is exact only for flush intervals >= U."""
    if getattr(pop, "model", None) is None or pop.model.flush_interval is None:
        return
    flush = pop.model.flush_interval({k: pop._param[i] for i, k in enumerate(pop.model.params)})["flush"]
    if np.any(flush < update_interval_ms - 1e-9):
        raise ValueError(f"population '{pop.name}': a flush interval of {float(flush.min())} ms is shorter "
                         f"than the update interval ({update_interval_ms} ms); the time-driven engine "
                         f"needs flush_event_send_interval >= update_interval (NEST refuses it too)")
