"""A network's complete simulation state as named numpy arrays (checkpoints), and back.

`network_state(net)` collects everything a later `simulate` reads: time, neuron states and
parameters, pending synaptic input, the spikes delivery can still reach, e-prop histories, every
plastic synapse's state (weights, eligibility, optimizer moments, schedule), spike flags and
interval counts. `load_network_state(net, state)` writes it into a network built the same way (same
code, configuration and seed); simulating on from there gives bitwise the result of the run that
was never interrupted. Arrays the engine's pointer tables reference are written in place; the
others (rings, records, histories) are replaced, which is safe because their pointers are handed to
C afresh at every engine call.
"""
from __future__ import annotations

import numpy as np

from . import plasticity
from .populations import Population, SpikeSource

_POPULATION_ARRAYS = ("_param", "_state", "_refractory", "_spiked", "_ring_slots")
_SYNAPSE_ARRAYS = ("eps", "traces", "grad", "weight", "t_last", "last_was_flush", "t_trig", "t_next_upd",
                   "win_t_start", "win_t_last", "win_flags", "win_eps", "adam_m", "adam_v")


def network_state(net) -> dict[str, np.ndarray]:
    out = {"net/step": np.int64(net.step), "net/history_steps": np.int64(net.history_steps),
           "net/projections_at_last_step": np.int64(net._projections_at_last_step),
           "net/pending_step": np.int64(net._pending_step)}
    for pop in net.populations:
        key = f"pop{pop.index}"
        if isinstance(pop, SpikeSource):
            out.update({f"{key}/spike_steps": pop.spike_steps, f"{key}/spike_senders": pop.spike_senders})
            continue
        for name in _POPULATION_ARRAYS:
            out[f"{key}/{name}"] = getattr(pop, name)
        for port, ring in enumerate(pop._rings):
            out[f"{key}/ring{port}"] = ring
        out[f"{key}/rec_step"] = pop._rec_step[:pop._rec_count]
        out[f"{key}/rec_sender"] = pop._rec_sender[:pop._rec_count]
        out[f"{key}/flush_step"] = pop._flush_step[:pop._flush_count]
        out[f"{key}/flush_sender"] = pop._flush_sender[:pop._flush_count]
    for proj in net.projections:
        key = f"proj{proj.index}"
        out[f"{key}/weights"] = proj._syn.weights
        if proj._plastic is None:
            continue
        syn = proj._plastic.synapses
        for name in _SYNAPSE_ARRAYS:
            if getattr(syn, name) is not None:     # the windows: thread 0's copy (all are equal)
                out[f"{key}/{name}"] = getattr(syn, name)[:1] if name.startswith("win_") else getattr(syn, name)
        out[f"{key}/opt"] = syn.opt_records.view(np.uint8)
        out[f"{key}/win_opt"] = syn.win_opt[:1].view(np.uint8)
        out[f"{key}/eta_bookkeeping"] = np.array([syn._eta, syn._eta_changes, syn._eta_first])
    for index, archive in net._archives.items():
        key = f"archive{index}"
        for name, array in archive.history.arrays().items():
            out[f"{key}/{name}"] = array
        for name in ("spike_count", "interval_spikes"):
            if getattr(archive, name) is not None:
                out[f"{key}/{name}"] = getattr(archive, name)
    for index, flags in net._spike_flags.items():
        out[f"flags{index}"] = flags
    if net.ranks.distributed:
        _whole_network(net, out)
    return {k: np.array(v, copy=True) for k, v in out.items()}


# Under MPI a checkpoint holds the whole network as one process would (so it resumes on any
# number of ranks): per-neuron arrays from their owners (the axis of the neurons; a history holds
# only its rank's neurons, the others whole-size arrays of which the owned entries count),
# per-synapse arrays in the projection's CSR order. Window bookkeeping, spike records and flags,
# parameters are the same on every rank.
_NEURON_AXIS = {"_state": -1, "_refractory": -1, "_spiked": -1, "ring": -1, "psi": 1, "learning_signal": 1,
                "regularisation": 1, "extra": 2, "prefix": 1, "suffix": 1, "total": 1, "spike_count": 0,
                "interval_spikes": 1}
_PER_SYNAPSE = ("weights",) + tuple(n for n in _SYNAPSE_ARRAYS if not n.startswith("win_"))


def _neuron_axis(name: str) -> int | None:
    return _NEURON_AXIS.get(name.rstrip("0123456789"))


def _divided_histories(net) -> dict[str, tuple[int, int]]:
    """Checkpoint keys of the history arrays that hold only this rank's neurons -> [lo, hi)."""
    out = {}
    for index, archive in net._archives.items():
        lo, hi = archive.history.columns
        if (lo, hi) != (0, archive.pop.n):
            out.update({f"archive{index}/{name}": (lo, hi) for name in archive.history.arrays()})
    return out


def _whole_network(net, out: dict) -> None:
    """network_state's local arrays -> the whole network's (collective)."""
    from .distributed import allgather_array, owners_blocks
    owner_of = {f"pop{p.index}": p for p in net.populations if isinstance(p, Population)}
    owner_of.update({f"archive{i}": a.pop for i, a in net._archives.items()})
    divided = _divided_histories(net)
    for key in sorted(out):
        head, _, name = key.partition("/")
        if key in divided:
            out[key] = np.concatenate(allgather_array(net.ranks, out[key]), axis=_neuron_axis(name))
        elif head in owner_of and _neuron_axis(name) is not None:
            out[key] = owners_blocks(net.ranks, out[key], owner_of[head].n, _neuron_axis(name))
    for proj in net.projections:
        order = proj._order()
        for name in _PER_SYNAPSE:
            if f"proj{proj.index}/{name}" in out:
                out[f"proj{proj.index}/{name}"] = order.gather(out[f"proj{proj.index}/{name}"])
        if proj._plastic is not None and not proj._plastic.synapses.shared:    # records per synapse
            out[f"proj{proj.index}/opt"] = order.gather(proj._plastic.synapses.opt_records).view(np.uint8)


def _own_part(net, state) -> dict:
    """A whole-network state -> this rank's per-synapse parts and history columns (the other
    per-neuron arrays are kept whole: every rank holds them, only the owned entries are used)."""
    state = dict(state)
    for key, (lo, hi) in _divided_histories(net).items():
        if key in state:
            state[key] = np.take(np.asarray(state[key]), np.arange(lo, hi), axis=_neuron_axis(key.partition("/")[2]))
    for proj in net.projections:
        order = proj._order()
        for name in _PER_SYNAPSE:
            key = f"proj{proj.index}/{name}"
            if key in state and state[key].shape[-1] == len(proj):
                state[key] = order.own(np.asarray(state[key]))
        key = f"proj{proj.index}/opt"
        if proj._plastic is not None and not proj._plastic.synapses.shared and key in state:
            records = np.asarray(state[key]).view(proj._plastic.synapses.opt_records.dtype)
            state[key] = order.own(records).view(np.uint8)
    return state


def load_network_state(net, state) -> None:
    """Write a `network_state` into `net` (built like the saved one); ValueError if it does not fit.
    Under MPI a collective call: each rank takes its part of the whole network's state."""
    if net.ranks.distributed:
        state = _own_part(net, state)
    _check_fits(net, state)
    net.step = int(state["net/step"])
    net.history_steps = int(state["net/history_steps"])
    net._projections_at_last_step = int(state["net/projections_at_last_step"])
    # states saved before batched delivery had delivered every step but the last
    net._pending_step = int(state["net/pending_step"]) if "net/pending_step" in state else net.step - 1
    for pop in net.populations:
        key = f"pop{pop.index}"
        if isinstance(pop, SpikeSource):
            pop.spike_steps = np.array(state[f"{key}/spike_steps"])
            pop.spike_senders = np.array(state[f"{key}/spike_senders"])
            pop.event_step, pop.event_sender, pop.event_multiplicity = pop._events(pop.spike_steps,
                                                                                  pop.spike_senders)
            continue
        for name in _POPULATION_ARRAYS:
            np.copyto(getattr(pop, name), state[f"{key}/{name}"])
        pop._rings = [np.array(state[f"{key}/ring{port}"]) for port in range(len(pop._rings))]
        pop._rec_step, pop._rec_sender = np.array(state[f"{key}/rec_step"]), np.array(state[f"{key}/rec_sender"])
        pop._rec_count = pop._rec_step.size
        pop._flush_step = np.array(state[f"{key}/flush_step"])
        pop._flush_sender = np.array(state[f"{key}/flush_sender"])
        pop._flush_count = pop._flush_step.size
    for proj in net.projections:
        key = f"proj{proj.index}"
        np.copyto(proj._syn.weights, state[f"{key}/weights"])
        if proj._plastic is None:
            continue
        syn = proj._plastic.synapses
        for name in _SYNAPSE_ARRAYS:
            if getattr(syn, name) is None:
                continue
            try:
                np.copyto(getattr(syn, name), state[f"{key}/{name}"])
            except (KeyError, ValueError):
                raise ValueError(f"checkpoint does not fit this network: the synapse state '{name}' of "
                                 f"{proj!r} differs (e.g. eligibility kept per synapse / per window)") from None
        if (state[f"{key}/opt"].size, state[f"{key}/win_opt"].size) != (syn.opt_records.nbytes, syn.win_opt[:1].nbytes):
            raise ValueError(f"checkpoint does not fit this network: the optimizer state of {proj!r} differs "
                             f"(per synapse / per window)")
        np.copyto(syn.opt_records.view(np.uint8), state[f"{key}/opt"])
        np.copyto(syn.win_opt.view(np.uint8), state[f"{key}/win_opt"])
        eta, changes, first = state[f"{key}/eta_bookkeeping"]
        syn._eta, syn._eta_changes, syn._eta_first = float(eta), int(changes), float(first)
        syn.optimizer.eta_first, syn.optimizer.n_eta_changes = syn._eta_first, syn._eta_changes
        if syn.accumulator is not None:
            syn.accumulator.eta_first, syn.accumulator.n_eta_changes = syn._eta_first, syn._eta_changes
    for index, archive in net._archives.items():
        key = f"archive{index}"
        psi = state[f"{key}/psi"]
        archive.history = plasticity.History(psi.shape[0], archive.pop.n, archive.history.blocks,
                                             archive.history.extra.shape[0], archive.history.columns)
        for name, array in archive.history.arrays().items():
            np.copyto(array, state[f"{key}/{name}"])
        for name in ("spike_count", "interval_spikes"):
            if f"{key}/{name}" in state:
                setattr(archive, name, np.array(state[f"{key}/{name}"]))
    net._spike_flags = {int(k[len("flags"):]): np.array(v) for k, v in state.items() if k.startswith("flags")}


def _check_fits(net, state) -> None:
    for pop in net.populations:
        key = f"pop{pop.index}"
        if isinstance(pop, Population) and state.get(f"{key}/_state", np.zeros(0)).shape != pop._state.shape:
            raise ValueError(f"checkpoint does not fit this network: population '{pop.name}' differs")
    for proj in net.projections:
        if state.get(f"proj{proj.index}/weights", np.zeros(0)).shape != proj._syn.weights.shape:
            raise ValueError(f"checkpoint does not fit this network: {proj!r} differs")
        if (proj._plastic is not None) != (f"proj{proj.index}/opt" in state):
            raise ValueError(f"checkpoint does not fit this network: plasticity of {proj!r} differs")
    for index, archive in net._archives.items():
        if any(f"archive{index}/{name}" not in state for name in archive.history.arrays()):
            raise ValueError(f"checkpoint does not fit this network: the learning history of "
                             f"'{archive.pop.name}' differs (another learning engine or replay path)")


MEMORY_PARTS = ("neurons", "connectivity", "synapse_state", "windows", "history")


def memory_use(net) -> dict[str, int]:
    """Bytes the network's arrays hold, by part (Network.memory):
    neurons        parameters, state, input rings, spike records, spike-source schedules;
    connectivity   CSR rows, target ids and delays of every synapse, static weights;
    synapse_state  plastic synapses: weight, eligibility, traces, gradient, optimizer state;
    windows        event-driven window bookkeeping per (source, delay) and thread;
    history        what learning neurons archive per step (and its block products), spike flags."""
    parts = dict.fromkeys(MEMORY_PARTS, 0)
    for pop in net.populations:
        parts["neurons"] += _array_bytes(vars(pop))
    for proj in net.projections:
        s = proj._syn
        parts["connectivity"] += s.row_ptr.nbytes + s.targets.nbytes + s.delays.nbytes
        if proj._plastic is None:
            parts["connectivity"] += s.weights.nbytes
            continue
        attrs = vars(proj._plastic.synapses)
        windows = {k: v for k, v in attrs.items() if k.startswith("win_")}
        parts["windows"] += _array_bytes(windows)
        parts["synapse_state"] += _array_bytes({k: v for k, v in attrs.items() if k not in windows})
    for archive in net._archives.values():
        parts["history"] += _array_bytes(archive.history.arrays())
        parts["history"] += _array_bytes({"c": archive.spike_count, "i": archive.interval_spikes})
    parts["history"] += _array_bytes(net._spike_flags)
    return parts


def _array_bytes(attrs: dict) -> int:
    """Bytes of the numpy arrays among `attrs`' values (also inside lists)."""
    total = 0
    for value in attrs.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, np.ndarray):
                total += item.nbytes
    return total
