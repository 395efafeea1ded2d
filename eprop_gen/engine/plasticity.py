"""Plastic (e-prop) synapses and the per-neuron history they replay: numpy arrays owned by Python,
seen by the generated replay kernels through the structs of eg_eprop.h / eg_optimizer.h.

These are the building blocks of the learning engine: `PlasticSynapses` holds one projection's
synapse state (structure of arrays), `History` what the target neurons archive per step, and
`Optimizer` the projection's optimizer (NEST 3.10's semantics, templates/cpp/eg_optimizer.h).
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from . import native
from ..precision import LEARNING_REAL, c_lreal, c_lreal_p, c_lreal_pp
from .native import pointer, pointer_table

GRADIENT_DESCENT, ADAM = 0, 1
NEST_INITIAL_ETA = 1e-4          # a synapse's eta before its first optimisation (NEST's default)
NEVER = 2 ** 62                  # the batch size of an optimizer that only accumulates


class EgOptimizer(ctypes.Structure):           # eg_optimizer (eg_optimizer.h), per projection
    _fields_ = [("kind", ctypes.c_int32), ("batch_size", ctypes.c_int64), ("eta", ctypes.c_double),
                ("eta_first", ctypes.c_double), ("n_eta_changes", ctypes.c_int64),
                ("beta_1", ctypes.c_double), ("beta_2", ctypes.c_double), ("epsilon", ctypes.c_double),
                ("w_min", ctypes.c_double), ("w_max", ctypes.c_double)]


class EgOptimizerState(ctypes.Structure):      # eg_optimizer_state, per synapse
    _fields_ = [("grad_sum", ctypes.c_double), ("eta_cur", ctypes.c_double), ("m", ctypes.c_double),
                ("v", ctypes.c_double), ("p1", ctypes.c_double), ("p2", ctypes.c_double),
                ("k", ctypes.c_int64), ("n_opt", ctypes.c_int64)]


OPTIMIZER_STATE_DTYPE = np.dtype([(name, np.float64 if kind is ctypes.c_double else np.int64)
                                  for name, kind in EgOptimizerState._fields_])
assert OPTIMIZER_STATE_DTYPE.itemsize == ctypes.sizeof(EgOptimizerState)
BLOCK_KERNEL = ctypes.c_void_p


class EgBlocks(ctypes.Structure):              # eg_blocks (eg_eprop.h), per learning port
    _fields_ = [("block", ctypes.c_int64), ("shift", ctypes.c_int64), ("entries", ctypes.c_int64),
                ("prefix", c_lreal_p),
                ("suffix", c_lreal_p), ("total", c_lreal_p), ("advance", BLOCK_KERNEL)]


class EgHistory(ctypes.Structure):             # eg_history (eg_eprop.h)
    _fields_ = [("capacity", ctypes.c_int64), ("mask", ctypes.c_int64), ("n", ctypes.c_int64),
                ("first", ctypes.c_int64), ("width", ctypes.c_int64), ("psi", c_lreal_p),
                ("learning_signal", c_lreal_p), ("regularisation", c_lreal_p),
                ("n_blocks", ctypes.c_int64), ("blocks", ctypes.POINTER(EgBlocks)),
                ("n_extra", ctypes.c_int64), ("extra", c_lreal_pp)]


class EgPlastic(ctypes.Structure):             # eg_plastic (eg_eprop.h)
    _fields_ = [("n", ctypes.c_int64), ("eps", c_lreal_pp), ("traces", c_lreal_pp), ("grad", c_lreal_p),
                ("weight", c_lreal_p), ("opt", ctypes.POINTER(EgOptimizerState)),
                ("optimizer", ctypes.POINTER(EgOptimizer)), ("optimize_each_step", ctypes.c_int32),
                ("n_windows", ctypes.c_int64), ("window_threads", ctypes.c_int64),
                ("win_t_start", ctypes.POINTER(ctypes.c_int64)), ("win_t_last", ctypes.POINTER(ctypes.c_int64)),
                ("win_flags", ctypes.POINTER(ctypes.c_uint8)),
                ("shared_optimizer", ctypes.c_int32), ("win_opt", ctypes.POINTER(EgOptimizerState)),
                ("adam_m", c_lreal_p), ("adam_v", c_lreal_p),
                ("eps_shared", ctypes.c_int32), ("n_presynaptic", ctypes.c_int32), ("win_eps", c_lreal_p),
                ("t_last", ctypes.POINTER(ctypes.c_int64)), ("last_was_flush", ctypes.POINTER(ctypes.c_uint8)),
                ("t_trig", ctypes.POINTER(ctypes.c_int64)), ("t_next_upd", ctypes.POINTER(ctypes.c_int64))]


class EgIntervalReplay(ctypes.Structure):      # eg_interval_replay (eg_eprop.h); built by the engine
    _fields_ = [("t_trig", ctypes.c_int64), ("b", ctypes.c_int64), ("skip", ctypes.c_int64),
                ("spike_flags", ctypes.POINTER(ctypes.c_uint8)), ("flag_capacity", ctypes.c_int64),
                ("flag_n", ctypes.c_int64), ("source", ctypes.c_int64), ("delay", ctypes.c_int64),
                ("interval_spikes", ctypes.c_double), ("interval_steps", ctypes.c_double)]


class EgWindows(ctypes.Structure):             # eg_windows (eg_eprop.h)
    _fields_ = [("t_start", ctypes.POINTER(ctypes.c_int64)), ("t_last", ctypes.POINTER(ctypes.c_int64)),
                ("flags", ctypes.POINTER(ctypes.c_uint8)), ("opt", ctypes.POINTER(EgOptimizerState)),
                ("eps", c_lreal_p)]


class EgEventBatch(ctypes.Structure):          # eg_event_batch (eg_eprop.h)
    _fields_ = [("q_begin", ctypes.c_int64), ("q_end", ctypes.c_int64),
                ("target_id", ctypes.POINTER(native.c_target_id)), ("delay", ctypes.POINTER(native.c_delay)),
                ("event_delay", ctypes.c_int32), ("kind", ctypes.c_int32), ("stamp", ctypes.c_int64),
                ("settle_steps", ctypes.c_int64), ("oldest_held", ctypes.c_int64),
                ("multiplicity", ctypes.c_double), ("ring", native.c_real_p), ("windows", EgWindows),
                ("window", ctypes.c_int64), ("error_synapse", ctypes.c_int64), ("error_row", ctypes.c_int64)]


EVENT_KERNEL = ctypes.CFUNCTYPE(None, ctypes.POINTER(native.EgPopulation), ctypes.POINTER(EgHistory),
                                ctypes.POINTER(EgPlastic), ctypes.POINTER(EgEventBatch))
WINDOW_FLUSH, WINDOW_ADJACENT, WINDOW_EMPTY = 1, 2, 4     # eg_windows flags


@dataclass(frozen=True)
class Optimizer:
    """A projection's optimizer. eta may change between simulations; NEST's one-call lag applies."""
    kind: int = GRADIENT_DESCENT
    eta: float = 1e-4
    batch_size: int = 1
    optimize_each_step: bool = True
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    w_min: float = -100.0
    w_max: float = 100.0


def gradient_descent(**options) -> Optimizer:
    return Optimizer(kind=GRADIENT_DESCENT, **options)


def adam(**options) -> Optimizer:
    return Optimizer(kind=ADAM, **options)


def is_power_of_two(k: int) -> bool:
    return k >= 1 and k & (k - 1) == 0


@dataclass(frozen=True)
class BlockLayout:
    """The block products a history keeps for the event-driven replays' O(1) path: rows per block
    and, per learning port of the model, (doubles per product, address of its advance kernel);
    (0, None) for a port whose replays always walk."""
    block: int
    ports: tuple[tuple[int, int | None], ...]


class History:
    """psi, L and R of the neurons [first, first + width) of a population of n for the last
    `capacity` steps: [m % capacity, neuron - first] holds step m (step-major: the synapses an event
    reaches share their window's rows, eg_eprop.h); `extra` [k][m % capacity, neuron - first] the
    model's other archived quantities (CompiledModel.archived: the derivative of an RK4 step, the
    reset's derivative); with a BlockLayout also the per-neuron block products of each learning
    port (eg_blocks). One process holds all n neurons; an MPI rank its own block."""

    def __init__(self, capacity: int, n: int, blocks: BlockLayout | None = None, n_extra: int = 0,
                 columns: tuple[int, int] | None = None):
        self.n = n
        self.columns = (0, n) if columns is None else columns    # neurons [first, end) held
        width = self.columns[1] - self.columns[0]
        self.psi = np.zeros((capacity, width), LEARNING_REAL)
        self.learning_signal = np.zeros((capacity, width), LEARNING_REAL)
        self.regularisation = np.zeros((capacity, width), LEARNING_REAL)
        self.extra = np.zeros((n_extra, capacity, width), LEARNING_REAL)
        self._extra_rows = (c_lreal_p * max(1, n_extra))(*[pointer(self.extra[k], c_lreal) for k in range(n_extra)])
        self.blocks = blocks
        self.prefix, self.suffix, self.total = [], [], []
        block = blocks.block if blocks else 1
        if not (is_power_of_two(capacity) and is_power_of_two(block) and block <= capacity):
            raise ValueError(f"history capacity {capacity} and block {block} must be powers of two, "
                             f"the block at most the capacity")
        for entries, _ in (blocks.ports if blocks else ()):
            self.prefix.append(np.zeros((blocks.block, width, entries), LEARNING_REAL))
            self.suffix.append(np.zeros((capacity, width, entries), LEARNING_REAL))
            self.total.append(np.zeros((capacity // blocks.block, width, entries), LEARNING_REAL))
        self._block_structs = (EgBlocks * max(1, len(self.prefix)))(*[
            EgBlocks(block=blocks.block, shift=blocks.block.bit_length() - 1, entries=entries,
                     prefix=pointer(self.prefix[k], c_lreal),
                     suffix=pointer(self.suffix[k], c_lreal), total=pointer(self.total[k], c_lreal),
                     advance=advance)
            for k, (entries, advance) in enumerate(blocks.ports if blocks else ())])
        self.view = EgHistory(capacity=capacity, mask=capacity - 1, n=n, first=self.columns[0], width=width,
                              psi=pointer(self.psi, c_lreal),
                              learning_signal=pointer(self.learning_signal, c_lreal),
                              regularisation=pointer(self.regularisation, c_lreal),
                              n_blocks=len(self.prefix), blocks=self._block_structs,
                              n_extra=n_extra, extra=self._extra_rows)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by name (saved and restored with the network state)."""
        out = {name: getattr(self, name) for name in ("psi", "learning_signal", "regularisation", "extra")}
        for k in range(len(self.prefix)):
            out.update({f"prefix{k}": self.prefix[k], f"suffix{k}": self.suffix[k], f"total{k}": self.total[k]})
        return out

    def grown(self, capacity: int, first: int, end: int) -> "History":
        """A longer ring with the rows of steps [first, end) (their block products too)."""
        from .schedule import rehome
        new = History(capacity, self.n, self.blocks, self.extra.shape[0], self.columns)
        for name in ("psi", "learning_signal", "regularisation"):
            rehome(getattr(self, name), getattr(new, name), first, end, axis=0)
        for k in range(self.extra.shape[0]):
            rehome(self.extra[k], new.extra[k], first, end, axis=0)
        for k in range(len(self.prefix)):
            B = self.blocks.block
            new.prefix[k][:] = self.prefix[k]
            rehome(self.suffix[k], new.suffix[k], first, end, axis=0)
            held = self.total[k].shape[0]            # the newest blocks, the last one still partial
            rehome(self.total[k], new.total[k], max(first // B, end // B + 1 - held), end // B + 1, axis=0)
        return new


def shares_optimizer(optimizer: Optimizer) -> bool:
    """Batch 1, once per spike: every call optimises, grad_sum is 0 between calls, and the synapses
    of a window see the same calls (eg_plastic.shared_optimizer; Adam's moments stay per synapse)."""
    return optimizer.batch_size == 1 and not optimizer.optimize_each_step


def fresh_optimizer_records(n: int) -> np.ndarray:
    """n eg_optimizer_state records of fresh synapses (NEST: eta_cur 1e-4, p1 = p2 = 1, k = 1)."""
    records = np.zeros(n, OPTIMIZER_STATE_DTYPE)
    records["eta_cur"], records["p1"], records["p2"], records["k"] = NEST_INITIAL_ETA, 1.0, 1.0, 1
    return records


class PlasticSynapses:
    """The state of n plastic synapses of one projection (eligibility, traces, optimizer, weight).
    Event-driven (update_interval 0): the window bookkeeping per (source, delay), n_windows =
    sources x largest delay entries, one copy per thread (eg_windows), and the eligibility's
    `presynaptic` components (zbar) there too, once per entry, when the targets agree on the
    parameters they depend on (the caller knows). Time-driven (update_interval > 0 steps): the
    per-synapse event and interval state instead (its replays start every interval from 0: no
    eligibility or traces are kept)."""

    def __init__(self, n: int, eligibility_size: int, n_traces: int, weights, optimizer: Optimizer,
                 update_interval: int = 0, samples: bool = False, n_windows: int = 0,
                 presynaptic: tuple[int, ...] = ()):
        event_driven = not update_interval
        self.eligibility_size = eligibility_size
        self.presynaptic = tuple(presynaptic) if event_driven else ()
        own = [r for r in range(eligibility_size) if r not in self.presynaptic] if event_driven else []
        self.eps_rows = {r: k for k, r in enumerate(own)}       # component -> row of eps
        self.eps = np.zeros((len(own), n), LEARNING_REAL)
        self.traces = np.zeros((n_traces if event_driven else 0, n), LEARNING_REAL)
        self.grad = np.zeros(n, LEARNING_REAL)
        self.weight = np.array(np.broadcast_to(np.asarray(weights, LEARNING_REAL), (n,)))
        self.n_windows = 0 if update_interval else n_windows
        self.win_eps = np.zeros((1, self.n_windows, len(self.presynaptic)), LEARNING_REAL)
        self.win_t_start = np.zeros((1, self.n_windows), np.int64)
        self.win_t_last = np.zeros((1, self.n_windows), np.int64)
        self.win_flags = np.zeros((1, self.n_windows), np.uint8)
        # time-driven: the last event, the first event of the current interval, the end of its
        # interval minus the offset
        self.t_last = np.zeros(n, np.int64) if update_interval else None
        self.last_was_flush = np.zeros(n, np.uint8) if update_interval else None
        self.t_trig = np.zeros(n, np.int64) if update_interval else None
        self.t_next_upd = np.full(n, update_interval, np.int64) if update_interval else None
        # the optimizer's bookkeeping: one record per window entry when the synapses of a window are
        # optimised in lockstep (eg_plastic.shared_optimizer), else one per synapse
        self.shared = not update_interval and not samples and shares_optimizer(optimizer)
        self.opt_records = fresh_optimizer_records(0 if self.shared else n)
        self.win_opt = fresh_optimizer_records(self.n_windows if self.shared else 0)[None, :]
        adam_moments = self.shared and optimizer.kind == ADAM
        self.adam_m = np.zeros(n, LEARNING_REAL) if adam_moments else None
        self.adam_v = np.zeros(n, LEARNING_REAL) if adam_moments else None
        self.optimizer = EgOptimizer()
        # event-driven samples: the replays only accumulate (a batch that never completes); the
        # engine applies `optimizer` once per batch of samples
        self.samples = samples
        self.accumulator = EgOptimizer() if samples else None
        # NEST's bookkeeping starts from its default eta; setting another one is change number 1
        self._eta, self._eta_changes, self._eta_first = NEST_INITIAL_ETA, 0, NEST_INITIAL_ETA
        self.set_optimizer(optimizer)
        self._traces_table = pointer_table(list(self.traces), c_lreal)
        self.view = EgPlastic(
            n=n, traces=ctypes.cast(self._traces_table, c_lreal_pp), grad=pointer(self.grad, c_lreal),
            weight=pointer(self.weight, c_lreal), shared_optimizer=int(self.shared),
            adam_m=pointer(self.adam_m, c_lreal), adam_v=pointer(self.adam_v, c_lreal),
            optimizer=ctypes.pointer(self.accumulator if samples else self.optimizer),
            optimize_each_step=int(optimizer.optimize_each_step and not samples),
            n_windows=self.n_windows,
            t_last=pointer(self.t_last, ctypes.c_int64), last_was_flush=pointer(self.last_was_flush, ctypes.c_uint8),
            t_trig=pointer(self.t_trig, ctypes.c_int64), t_next_upd=pointer(self.t_next_upd, ctypes.c_int64),
            n_presynaptic=len(self.presynaptic))
        self._point_at_eps()
        self.use_threads(1)

    def _point_at_eps(self) -> None:
        """eg_plastic.eps: a row per component kept per synapse, NULL for those kept per window."""
        rows = [self.eps[self.eps_rows[r]] if r in self.eps_rows else None for r in range(self.eligibility_size)]
        self._eps_table = pointer_table(rows, c_lreal)
        self.view.eps = ctypes.cast(self._eps_table, c_lreal_pp)
        self.view.eps_shared = int(bool(self.presynaptic))

    def spread_eps(self, entry_of_synapse: np.ndarray) -> None:
        """From the presynaptic components per window entry to one value per synapse (its entry's),
        when the targets stop agreeing on the parameters those depend on."""
        eps = np.zeros((self.eligibility_size, self.weight.size), LEARNING_REAL)
        for r, k in self.eps_rows.items():
            eps[r] = self.eps[k]
        for k, r in enumerate(self.presynaptic):
            eps[r] = self.win_eps[0][entry_of_synapse, k]
        self.eps, self.eps_rows, self.presynaptic = eps, {r: r for r in range(self.eligibility_size)}, ()
        self.win_eps = np.zeros((self.win_t_last.shape[0], self.n_windows, 0), LEARNING_REAL)
        self.view.n_presynaptic = 0
        self._point_at_eps()
        self.use_threads(self.win_t_last.shape[0])

    def use_threads(self, threads: int) -> None:
        """One copy of the window bookkeeping per thread of the next engine call, all equal to
        thread 0's (every thread follows every event; this also covers a team smaller than asked)."""
        if self.win_t_last.shape[0] != threads:
            self.win_t_start, self.win_t_last, self.win_flags, self.win_opt, self.win_eps = (
                np.repeat(a[:1], threads, axis=0)
                for a in (self.win_t_start, self.win_t_last, self.win_flags, self.win_opt, self.win_eps))
        for a in (self.win_t_start, self.win_t_last, self.win_flags, self.win_opt, self.win_eps):
            a[1:] = a[0]
        v = self.view
        v.win_eps = pointer(self.win_eps, c_lreal)
        v.window_threads = threads
        v.win_t_start = pointer(self.win_t_start, ctypes.c_int64)
        v.win_t_last = pointer(self.win_t_last, ctypes.c_int64)
        v.win_flags = pointer(self.win_flags, ctypes.c_uint8)
        v.win_opt = self.win_opt.ctypes.data_as(ctypes.POINTER(EgOptimizerState))
        v.opt = self.opt_records.ctypes.data_as(ctypes.POINTER(EgOptimizerState))

    def unshare(self, entry_of_synapse: np.ndarray) -> None:
        """From one optimizer record per window entry to one per synapse (its entry's), e.g. when
        the optimizer changes to one whose synapses are no longer optimised in lockstep."""
        self.opt_records = self.win_opt[0][entry_of_synapse].copy()
        if self.adam_m is not None:
            self.opt_records["m"], self.opt_records["v"] = self.adam_m, self.adam_v
        self.win_opt = fresh_optimizer_records(0)[None, :]
        self.adam_m = self.adam_v = None
        self.shared = False
        self.view.shared_optimizer = 0
        self.view.adam_m = self.view.adam_v = None
        self.use_threads(self.win_t_last.shape[0])

    def set_optimizer(self, optimizer: Optimizer) -> None:
        """Set (or change) the optimizer's parameters; eta changes are counted as NEST counts them."""
        if optimizer.eta != self._eta:
            if self._eta_changes == 0:
                self._eta_first = optimizer.eta
            self._eta_changes += 1
            self._eta = optimizer.eta
        o = self.optimizer
        o.kind, o.batch_size, o.eta = optimizer.kind, optimizer.batch_size, optimizer.eta
        o.eta_first, o.n_eta_changes = self._eta_first, self._eta_changes
        o.beta_1, o.beta_2, o.epsilon = optimizer.beta_1, optimizer.beta_2, optimizer.epsilon
        o.w_min, o.w_max = optimizer.w_min, optimizer.w_max
        if self.accumulator is not None:
            ctypes.memmove(ctypes.addressof(self.accumulator), ctypes.addressof(o), ctypes.sizeof(o))
            self.accumulator.batch_size = NEVER
        if hasattr(self, "view"):
            self.view.optimize_each_step = int(optimizer.optimize_each_step and not self.samples)
