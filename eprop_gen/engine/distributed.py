"""One network across MPI ranks (issue 10): who owns what, and what the ranks exchange each step.

Scheme (NEST's "owner computes", with contiguous blocks instead of NEST's round-robin): rank r of R
owns the neurons [n r / R, n (r+1) / R) of every model population and updates them; its OpenMP
threads split that block as they split a whole population in one process (engine.cpp, owned_by). A
synapse lives with its target, so a rank draws and stores only the synapses onto its own neurons
(connectivity.draw_synapses(owned=...): every target's synapses come from the stream keyed by
(seed, projection, target), so 1, 2 or 3 ranks build the same network) and replays only them; its
history holds its own neurons' rows. Spike sources are replicated: every rank knows every input spike.

The engine calls `Exchange` (engine.cpp, eg_network.exchange) from one thread:
  phase 0, after the neurons' update (with cross-entropy readouts only): the outputs y of those
           readouts, which every owner of a readout needs whole to normalise its own;
  phase 1, at the end of a communication interval (below) and of every engine call: the spikes
           and flush events of the interval's steps of every model population (per step each
           rank's ascending ids, concatenated in rank order: ascending again, as one process
           records them) and the readouts' errors of the step, which phase A of the next step
           turns into learning signals on every rank — the one-step timing of one process.
Collectives are mpi4py's Allgather/Allgatherv on the network's communicator: no protocol of our own.
Buffers are compact: int32 sender ids (int64 only for populations of 2^31 neurons or more).

The communication interval: a learning network exchanges every step (an eprop synapse has delay
1, readout errors are the next step's learning signals). A network without learning whose delays
are all >= D (schedule.delivery_interval) runs the engine's delivery in batches of D steps, in one
process too, and exchanges once per batch, as (sender id, step offset in the batch) pairs: spikes
of step m reach their targets at m + d >= the batch's end, so no rank needs them earlier.
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

    def minimum(self, value: int) -> int:
        """The smallest of every rank's value (a collective call; the value itself in one process)."""
        if not self.distributed:
            return value
        from mpi4py import MPI
        return int(self.comm.allreduce(value, op=MPI.MIN))

    def abort(self, message: str) -> None:
        """End every rank: the message from this one, then MPI_Abort (never a hang)."""
        print(f"eprop-gen: rank {self.rank} of {self.size}: {message}", file=sys.stderr, flush=True)
        self.comm.Abort(1)


@dataclass
class CommunicationStats:
    """What the exchanges of a network have cost so far (Network.communication()): wall seconds in
    the callback (the collectives, including the wait for slower ranks); of them wait_seconds in the
    first collective of each exchange of events (the counts' Allgather, a few bytes: it ends when the
    slowest rank arrives, so it is mostly waiting — load imbalance — and one small collective's
    latency); bytes this rank sent and received; exchanges (callbacks: one per communication
    interval, plus one per step for softmax outputs); steps they covered."""
    seconds: float = 0.0
    wait_seconds: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    exchanges: int = 0
    steps: int = 0


class Exchange:
    """The engine's exchange callback for one engine call (see the module docstring). Holds the
    ctypes structs the engine works on: counts it changes are read from there, records it grows
    are pointed to there."""

    def __init__(self, ranks: Ranks, populations, pops_struct, archives, spike_flags: dict,
                 stats: CommunicationStats, first_step: int, interval: int):
        from mpi4py import MPI
        self.MPI, self.ranks = MPI, ranks
        self.models = [p for p in populations if getattr(p, "model", None) is not None]
        self.pops_struct = pops_struct
        self.spike_flags = spike_flags
        self.readouts = [a for a in archives if a.is_readout]
        self.softmax = [a for a in self.readouts if a.loss == "cross_entropy"]
        # readout errors are learning signals of the next step: a network with readouts runs D = 1
        assert interval == 1 or not self.readouts, "readouts need an exchange every step"
        self.interval = interval
        self.next_step = first_step        # the first step of the batch being run
        # compact buffers: int32 ids (and step offsets within the batch) where the ids fit
        self.id_dtype = np.dtype(np.int32 if max((p.n for p in self.models), default=0) < 2 ** 31 else np.int64)
        # where this rank's entries of the batch start in each record
        self.rec_start = {p.index: int(pops_struct[p.index].rec_count) for p in self.models}
        # the exchanged records ("columns"): every model population's spike and flush records
        self.columns = [(p, flush) for p in self.models for flush in (False, True)]
        self.counts = np.empty(len(self.columns), np.int64)
        self.every = np.empty((ranks.size, len(self.columns)), np.int64)
        self.column_of_entry = np.tile(np.arange(len(self.columns)), ranks.size)
        self.id_type = MPI._typedict[self.id_dtype.char]
        self.nothing = np.zeros(0, self.id_dtype)
        # room a record keeps after each exchange: the next batch's own events
        self.own_room = {p.index: interval * int(np.diff(ranks.block(p.n))[0]) for p in self.models}
        self.flush_start = {p.index: int(pops_struct[p.index].flush_count) for p in self.models}
        self.stats = stats
        self.callback = native.EXCHANGE(self._call)      # kept alive as long as the engine may call it

    def _call(self, ctx, step: int, phase: int) -> None:
        started = time.perf_counter()
        try:
            self.stats.exchanges += 1
            if phase == 0:
                for archive in self.softmax:
                    self._gather_rows(archive.pop._state[archive.output_state], archive.pop.n)
            else:
                self.stats.steps += step + 1 - self.next_step
                self._events(step)
                for archive in self.readouts:
                    h = archive.history.learning_signal
                    self._gather_rows(h[step % h.shape[0]], archive.pop.n)
                self.next_step = step + 1
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

    def _events(self, last: int) -> None:
        """The spikes and flush events of the batch's steps [next_step, last] of every model
        population from every rank, into every rank's records (sorted by step, then id)."""
        first, pairs = self.next_step, self.interval > 1
        counts, buffers = self.counts, []
        for c, (p, flush) in enumerate(self.columns):
            senders, steps = p._record(flush)
            lo, hi = self._start(p, flush), self._count_field(p, flush)
            counts[c] = hi - lo
            if hi > lo:
                buffers.append(np.stack([senders[lo:hi], steps[lo:hi] - first], axis=1) if pairs else senders[lo:hi])
        every = self.every
        arrived = time.perf_counter()
        self.ranks.comm.Allgather(counts, every)
        self.stats.wait_seconds += time.perf_counter() - arrived
        width = 2 if pairs else 1                   # (sender id, step offset in the batch) or ids
        sent = np.concatenate(buffers).astype(self.id_dtype).ravel() if buffers else self.nothing
        totals = every.sum(axis=1) * width
        received = np.empty(int(totals.sum()), self.id_dtype)
        self.ranks.comm.Allgatherv(sent, [received, totals, np.cumsum(totals) - totals, self.id_type])
        self._count(counts.nbytes + sent.nbytes, every.nbytes - counts.nbytes + received.nbytes - sent.nbytes)
        # received: rank after rank, column after column; regroup by column (stable: rank order) and,
        # for a batch, by step within a column: then each step's ids ascend, as one process has them
        entries = received.reshape(-1, width)
        per_column = every.sum(axis=0)
        busy = np.flatnonzero(per_column)
        if busy.size > 1:
            column = np.repeat(self.column_of_entry, every.ravel())
            order = np.lexsort((entries[:, 1], column)) if pairs else np.argsort(column, kind="stable")
            entries = entries[order]
        elif pairs:
            entries = entries[np.argsort(entries[:, 1], kind="stable")]
        ends = np.cumsum(per_column)
        for c in busy:                              # a record without events keeps its room
            p, flush = self.columns[c]
            mine = entries[ends[c] - per_column[c]:ends[c]]
            steps = mine[:, 1].astype(np.int64) + first if pairs else np.full(mine.shape[0], last, np.int64)
            self._write(p, flush, mine[:, 0], steps)
        for p in self.models:
            flags = self.spike_flags.get(p.index)
            if flags is not None:                   # time-driven: the sources' spikes of the batch
                self._flag_others(p, flags, first, last)

    def _start(self, p, flush: bool) -> int:
        return (self.flush_start if flush else self.rec_start)[p.index]

    def _count_field(self, p, flush: bool) -> int:
        struct = self.pops_struct[p.index]
        return int(struct.flush_count if flush else struct.rec_count)

    def _write(self, p, flush: bool, ids: np.ndarray, steps: np.ndarray) -> None:
        """The batch's entries of a record (replacing this rank's own), with room after them for
        the next batch's own entries: every rank's engine then finds room at the same steps."""
        start = self.flush_start if flush else self.rec_start
        before = p._record(flush)[0]
        p._replace_record_tail(flush, start[p.index], ids, steps, self.own_room[p.index])
        start[p.index] += ids.size
        struct = self.pops_struct[p.index]
        if p._record(flush)[0] is not before:      # it grew: point the engine at the new arrays
            p._point_records(struct)
        if flush:
            struct.flush_count = start[p.index]
        else:
            struct.rec_count = start[p.index]

    def _flag_others(self, p, flags: np.ndarray, first: int, last: int) -> None:
        """Spike flags of the batch's steps: the other ranks' neurons from the record (the engine
        flagged this rank's own)."""
        lo, hi = self.ranks.block(p.n)
        at = self.rec_start[p.index]
        senders, steps = p._rec_sender, p._rec_step
        begin = int(np.searchsorted(steps[:at], first, side="left"))
        for step in range(first, last + 1):
            row = flags[step % flags.shape[0]]
            row[:lo] = 0
            row[hi:] = 0
            a, b = np.searchsorted(steps[begin:at], [step, step + 1]) + begin
            ids = senders[a:b]
            row[ids[(ids < lo) | (ids >= hi)]] = 1


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
