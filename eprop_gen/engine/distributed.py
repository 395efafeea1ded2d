"""One network across MPI ranks (issue 10): who owns what, and what the ranks exchange each step.

Scheme (NEST's "owner computes", with contiguous blocks instead of NEST's round-robin): rank r of R
owns the neurons [n r / R, n (r+1) / R) of every model population and updates them; its OpenMP
threads split that block as they split a whole population in one process (engine.cpp, owned_by). A
synapse lives with its target, so a rank draws and stores only the synapses onto its own neurons
(connectivity.draw_synapses(owned=...): every target's synapses come from the stream keyed by
(seed, projection, target), so 1, 2 or 3 ranks build the same network) and replays only them; its
history holds its own neurons' rows. Spike sources are replicated: every rank knows every input spike.

Each step the engine calls `Exchange` (engine.cpp, eg_network.exchange) from one thread:
  phase 0, after the neurons' update: the outputs y of cross-entropy (softmax) readouts, which
           every owner of a readout needs whole to normalise its own;
  phase 1, at the end of the step: the step's spikes and flush events of every model population
           (each rank's ascending ids, concatenated in rank order: ascending again, as one process
           records them) and the readouts' errors of the step, which phase A of the next step
           turns into learning signals on every rank — the one-step timing of one process.
Collectives are mpi4py's Allgather/Allgatherv on the network's communicator: no protocol of our own.
The minimum delay is one step, so the communication interval is one step.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from . import native

# environment variables an MPI launcher sets for its processes (Open MPI, MPICH / Intel MPI)
LAUNCHER_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def launched_size() -> int:
    """The number of processes an MPI launcher started (1 when not under mpirun)."""
    sizes = [int(os.environ[v]) for v in LAUNCHER_SIZE_VARIABLES if os.environ.get(v, "").isdigit()]
    return max(sizes, default=1)


def launched_rank() -> int:
    """This process's rank as the MPI launcher numbered it (0 when not under mpirun): the others
    keep quiet where every rank would print the same."""
    for name in ("OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def world():
    """MPI_COMM_WORLD when this process was started by mpirun with more than one process, else
    None (then mpi4py is not even imported: one process needs no MPI). The first call also makes an
    uncaught exception end every rank (MPI_Abort after the traceback), so that a script that fails
    on one rank does not leave the others waiting in a collective."""
    if launched_size() <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise RuntimeError(f"started by mpirun with {launched_size()} processes, but mpi4py cannot be "
                           f"imported ({error}); install the MPI extra: pip install 'eprop-gen[mpi]'") from None
    if not getattr(sys.excepthook, "ends_all_ranks", False):
        sys.excepthook = _abort_on_uncaught(sys.excepthook, MPI.COMM_WORLD)
    return MPI.COMM_WORLD


def _abort_on_uncaught(previous, comm):
    def hook(kind, value, traceback):
        print(f"eprop-gen: rank {comm.Get_rank()} of {comm.Get_size()}: uncaught exception, ending all ranks",
              file=sys.stderr, flush=True)
        previous(kind, value, traceback)
        sys.stderr.flush()
        comm.Abort(1)
    hook.ends_all_ranks = True
    return hook


@dataclass(frozen=True)
class Ranks:
    """The processes a network runs on: comm None = one process."""
    comm: object = None
    rank: int = 0
    size: int = 1

    @staticmethod
    def of(comm) -> "Ranks":
        if comm is None or comm.Get_size() == 1:
            return Ranks(comm, 0, 1)
        return Ranks(comm, comm.Get_rank(), comm.Get_size())

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def block(self, n: int) -> tuple[int, int]:
        """The neurons [lo, hi) of a population of n this rank owns (engine.cpp's owned_by)."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def blocks(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Every rank's block size and offset (rank order)."""
        edges = np.array([n * r // self.size for r in range(self.size + 1)], np.int64)
        return np.diff(edges), edges[:-1]

    def abort(self, message: str) -> None:
        """End every rank: the message from this one, then MPI_Abort (never a hang)."""
        print(f"eprop-gen: rank {self.rank} of {self.size}: {message}", file=sys.stderr, flush=True)
        self.comm.Abort(1)


@dataclass
class CommunicationStats:
    """What the exchanges of a network have cost so far (Network.communication()): wall seconds in
    the callback (the collectives, including the wait for slower ranks), bytes this rank sent and
    received, exchanges (two per step at most: one for softmax outputs, one at the step's end)."""
    seconds: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    exchanges: int = 0
    steps: int = 0


class Exchange:
    """The engine's exchange callback for one engine call (see the module docstring). Holds the
    ctypes structs the engine works on: counts it changes are read from there."""

    def __init__(self, ranks: Ranks, populations, pops_struct, archives, spike_flags: dict,
                 stats: CommunicationStats):
        from mpi4py import MPI
        self.MPI, self.ranks = MPI, ranks
        self.models = [p for p in populations if getattr(p, "model", None) is not None]
        self.pops_struct = pops_struct
        self.spike_flags = spike_flags
        self.readouts = [a for a in archives if a.is_readout]
        self.softmax = [a for a in self.readouts if a.loss == "cross_entropy"]
        # where this rank's entries of the step being run start in each record
        self.rec_start = {p.index: int(pops_struct[p.index].rec_count) for p in self.models}
        self.flush_start = {p.index: int(pops_struct[p.index].flush_count) for p in self.models}
        self.stats = stats
        self.callback = native.EXCHANGE(self._call)      # kept alive as long as the engine may call it

    def _call(self, ctx, step: int, phase: int) -> None:
        started = time.perf_counter()
        try:
            self.stats.exchanges += 1
            self.stats.steps += phase == 1
            if phase == 0:
                for archive in self.softmax:
                    self._gather_rows(archive.pop._state[archive.output_state], archive.pop.n)
            else:
                self._events(step)
                for archive in self.readouts:
                    h = archive.history.learning_signal
                    self._gather_rows(h[step % h.shape[0]], archive.pop.n)
        except BaseException as error:             # an exception cannot cross back into C++
            self.ranks.abort(f"exchange at step {step} failed: {type(error).__name__}: {error}")
        self.stats.seconds += time.perf_counter() - started

    def _gather_rows(self, row: np.ndarray, n: int) -> None:
        """Every rank's block of a per-neuron row into the whole row, in place."""
        counts, offsets = self.ranks.blocks(n)
        self.ranks.comm.Allgatherv(self.MPI.IN_PLACE, [row, counts, offsets, self.MPI._typedict[row.dtype.char]])
        self._count(int(counts[self.ranks.rank]) * row.itemsize, int(n - counts[self.ranks.rank]) * row.itemsize)

    def _count(self, sent: int, received: int) -> None:
        self.stats.bytes_sent += sent
        self.stats.bytes_received += received

    def _events(self, step: int) -> None:
        """The step's spikes and flush events of every model population from every rank."""
        local, counts = [], []
        for p in self.models:
            s = self.pops_struct[p.index]
            spikes = p._rec_sender[self.rec_start[p.index]:int(s.rec_count)]
            flushes = p._flush_sender[self.flush_start[p.index]:int(s.flush_count)]
            local += [spikes, flushes]
            counts += [spikes.size, flushes.size]
        counts = np.array(counts, np.int64)
        every = np.empty((self.ranks.size, counts.size), np.int64)
        self.ranks.comm.Allgather(counts, every)
        sent = np.concatenate(local).astype(np.int64) if local else np.zeros(0, np.int64)
        totals = every.sum(axis=1)
        received = np.empty(int(totals.sum()), np.int64)
        self.ranks.comm.Allgatherv(sent, [received, totals, np.concatenate([[0], np.cumsum(totals)[:-1]]),
                                          self.MPI.INT64_T])
        self._count(counts.nbytes + sent.nbytes, every.nbytes - counts.nbytes + received.nbytes - sent.nbytes)
        # received: rank after rank, each [pop0 spikes, pop0 flushes, pop1 spikes, ...]
        ends = np.cumsum(every, axis=1)
        starts = ends - every
        base = np.concatenate([[0], np.cumsum(totals)[:-1]])
        for k, p in enumerate(self.models):
            s = self.pops_struct[p.index]

            def column(c):
                return np.concatenate([received[base[r] + starts[r, c]:base[r] + ends[r, c]]
                                       for r in range(self.ranks.size)])
            spikes = column(2 * k)
            self._write(p._rec_sender, p._rec_step, self.rec_start, p.index, spikes, step)
            s.rec_count = self.rec_start[p.index]
            self._write(p._flush_sender, p._flush_step, self.flush_start, p.index, column(2 * k + 1), step)
            s.flush_count = self.flush_start[p.index]
            flags = self.spike_flags.get(p.index)
            if flags is not None:                   # time-driven: the sources' spikes of the step
                lo, hi = self.ranks.block(p.n)
                row = flags[step % flags.shape[0]]
                row[:lo] = 0
                row[hi:] = 0
                row[spikes[(spikes < lo) | (spikes >= hi)]] = 1

    @staticmethod
    def _write(ids_array, steps_array, start: dict, index: int, ids: np.ndarray, step: int) -> None:
        """The step's entries of a record (replacing this rank's own), advancing its start."""
        at = start[index]
        ids_array[at:at + ids.size] = ids
        steps_array[at:at + ids.size] = step
        start[index] = at + ids.size


# ---------------------------------------------------------------------------------------------
# reading a distributed network: every rank gets the whole, in the order one process has

def allgather_array(ranks: Ranks, array: np.ndarray) -> list[np.ndarray]:
    """Every rank's array (rank order)."""
    return ranks.comm.allgather(np.ascontiguousarray(array))


def gathered_row(ranks: Ranks, row: np.ndarray) -> np.ndarray:
    """A per-neuron row whose valid entries are each rank's block: the whole row, owners' values."""
    whole = np.array(row, copy=True)
    counts, offsets = ranks.blocks(row.size)
    from mpi4py import MPI
    ranks.comm.Allgatherv(MPI.IN_PLACE, [whole, counts, offsets, MPI._typedict[whole.dtype.char]])
    return whole


def owners_columns(ranks: Ranks, values: np.ndarray, neurons: np.ndarray, n: int) -> np.ndarray:
    """values[..., c] recorded for neurons[c] by every rank, valid on the neuron's owner only: the
    owners' columns."""
    every = allgather_array(ranks, values)
    owner = np.searchsorted(ranks.blocks(n)[1], neurons, side="right") - 1
    out = np.empty_like(values)
    for r, part in enumerate(every):
        out[..., owner == r] = part[..., owner == r]
    return out


class SynapseOrder:
    """Where this rank's synapses of one projection stand in the whole projection's CSR order
    (sources ascending, then targets, then draw order: what one process stores)."""

    def __init__(self, ranks: Ranks, sources: np.ndarray, targets: np.ndarray):
        self.ranks = ranks
        all_sources = np.concatenate(allgather_array(ranks, sources))
        all_targets = np.concatenate(allgather_array(ranks, targets))
        counts = np.array(ranks.comm.allgather(int(sources.size)), np.int64)
        self.order = np.lexsort((all_targets, all_sources))      # stable: rank order, then CSR
        position = np.empty_like(self.order)
        position[self.order] = np.arange(self.order.size)
        start = int(counts[:ranks.rank].sum())
        self.mine = position[start:start + sources.size]          # this rank's synapses' positions
        self.total = int(counts.sum())

    def gather(self, values: np.ndarray) -> np.ndarray:
        """A per-synapse array (synapses along the last axis) of the whole projection."""
        return np.concatenate(allgather_array(self.ranks, values), axis=-1)[..., self.order]

    def own(self, values: np.ndarray) -> np.ndarray:
        """This rank's part of a whole projection's per-synapse array (synapses along the last axis)."""
        return values[..., self.mine]


def owners_blocks(ranks: Ranks, array: np.ndarray, n: int, axis: int) -> np.ndarray:
    """An array with a neuron axis of length n whose valid entries along it are each rank's block:
    the whole array, each neuron's slice from its owner."""
    lo, hi = ranks.block(n)
    mine = np.take(array, np.arange(lo, hi), axis=axis)
    return np.concatenate(allgather_array(ranks, mine), axis=axis)
