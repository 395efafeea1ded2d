"""Independent numpy reference of NEST 3.10's time-driven ("bsshslm", Bellec et al. 2020) e-prop.

Written from our specification (/work/shared/eprop-spec.md, §2 schedule, §5 optimizers, §8 the
bsshslm models), not from NEST's code.  ``simulate_reference(cfg, weights, input_spikes,
targets, masks=None, delays=None) -> TimeResult`` runs the network of ``nest_time.run_nest`` and
returns the same quantities.

What is modelled (dt = 1 ms, update interval U steps, learning window LW steps)
------------------------------------------------------------------------------
Global step n runs three phases (spec §2.2):
  A  readout errors of step n-1 are added to recurrent history entry n-3 (L[m] = sum_k B_jk
     E_k(step m+2), summed in readout order); targets and the softmax normaliser of step n-1
     are delivered;
  B  events with stamp n (parrot spikes; recurrent spikes/flushes of step n-1) are sent, in
     ascending presynaptic node order; each send runs the synapse's interval bookkeeping
     (``SynapseSchedule``, spec §8.4/8.5), possibly GRAD and the optimizer, then transmits the
     (updated) weight.  Sends to recurrent targets with (s-2) % U == 0 are dropped entirely;
  C  neurons update: recurrent (§8.2: reset at interval start q = (n-2) % U == 0, reset by
     subtracting theta in the step AFTER a spike, zeta = 1 or 1-alpha (regular_spike_arrival),
     adaptive threshold, surrogate psi, per-interval regularisation Rint stamped at the next
     interval start), readouts (§8.3: reset at (n-3) % U == 0, readout signal one step late,
     softmax of the previous step for cross-entropy, error gated by the learning window
     (n-4) % U >= U - LW, error stored in readout history entry n-1).
C++ '%' truncates towards zero: ``cpp_mod``.

GRAD replays history entries [t_trig, t_trig + sum(isis)) of the postsynaptic neuron with
traces restarting at 0; the learning signal of the last replayed entry is read when the
request happens, i.e. it is still 0 if the request comes in the step right after the interval
(stamp b+1): its readout error arrives one step later.  Optimizer: spec §5 (gradient descent or
Adam, index = interval number of the triggering spike, batch in interval units, eta lag,
catch-up Adam iterations, clamp once).

Vectorisation (bitwise identical to the per-synapse algorithm)
--------------------------------------------------------------
* All synapses of one presynaptic neuron to one target class (recurrent, S = 2; readout, S = 3)
  with one delay see the same event stamps, so one ``SynapseSchedule`` drives them; GRAD and the
  optimizer then run elementwise over the group's targets.
* The replays of one interval are batched over all presynaptic groups of a class
  (``_IntervalReplayCache``): every row starts from zeros at the interval's earliest trigger;
  before a row's own trigger its traces stay exactly 0 (z = 0, psi >= 0), so the numbers equal a
  replay that starts at the trigger.  A request whose spike positions differ from the cached
  row (flush corner cases) is replayed literally (``replay="literal"`` forces that everywhere).
  The first request of each interval and class is always replayed literally (its own schedule
  has already moved on when the batch is built), so both paths run in every simulation.
* Synaptic input is accumulated per presynaptic neuron in delivery order, never by a matrix
  product, because floating-point addition order matters for bitwise agreement.

Extension: synaptic delays > 1 step for plastic synapses (NEST refuses them)
----------------------------------------------------------------------------
``delays`` = dict "in"/"rec"/"out" of integer matrices (same shapes as the weights, >= 1).
Semantics: a plastic synapse with delay d behaves exactly like a delay-1 synapse whose
presynaptic neuron fires d-1 steps later.  A spike with stamp s is handled as if it had stamp
s' = s + d - 1 in every respect: it is integrated by the target in step s', its e-prop trace
enters the target's history at index s', the drop rule, the interval it belongs to, the
replay and the optimizer index all use s', and the transmitted weight is the weight after
the update done at s'.  Flush events are delayed the same way.  Inputs arriving in one step
are summed in ascending presynaptic id, then ascending delay.  With delays > 1 the forced
final spike must arrive before the end of the simulation: choose cfg.final_spike_time so that
final_time + max_delay + 1 < total_steps (total_steps grows with final_spike_time).
Invariant used by the tests: giving every synapse of an input neuron the delay d equals
shifting that input's spikes (and its forced final spike) by d-1 steps.

Not modelled: currents (I_e, current generators), V_min clamping (V_min = -inf), neuron reset
switched off (eprop_reset_neurons_on_update = False), eprop_isi_trace_cutoff (absent in bsshslm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .time_tasks import OFFSET_GEN, TOTAL_OFFSET, TimeConfig, TimeResult, evaluate

S_REC = 2  # offset_gen + delay_in_rec: shift of recurrent targets
S_OUT = 3  # + delay_rec_out: shift of readout targets
FINAL_WEIGHT = 1000.0


def cpp_mod(a: int, u: int) -> int:
    """C++ '%' on ints: the remainder takes the sign of the dividend."""
    r = abs(a) % u
    return -r if a < 0 else r


# ---------------------------------------------------------------------------------------------
# neuron parts


def surrogate(name: str, refractory: np.ndarray, d: np.ndarray, height, width) -> np.ndarray:
    """psi as coded in NEST (spec §3.5); d = u - threshold; 0 while refractory."""
    ad = np.abs(d)
    if name == "piecewise_linear":
        psi = height * np.maximum(0.0, 1.0 - ad / width)
    elif name == "exponential":
        psi = height * np.exp(-ad / width)
    elif name == "fast_sigmoid_derivative":
        psi = height * np.power(1.0 + ad / width, -2.0)
    elif name == "arctan_derivative":
        psi = height / (1.0 + np.power(d / width, 2.0))
    else:
        raise ValueError(name)
    return np.where(refractory, 0.0, psi)


@dataclass
class RecurrentParams:
    """Per recurrent neuron constants (regular neurons have beta = rho = 0)."""

    alpha: np.ndarray
    zeta: np.ndarray
    theta: np.ndarray
    beta: np.ndarray
    rho: np.ndarray
    n_ref: int
    height: float
    width: float
    surrogate: str
    c_reg: float
    f_target_per_step: float

    @classmethod
    def from_config(cls, cfg: TimeConfig) -> "RecurrentParams":
        n, n_ad = cfg.n_rec, cfg.n_adaptive
        alpha = math.exp(-1.0 / cfg.tau_m)
        zeta = 1.0 if cfg.regular_spike_arrival else 1.0 - alpha
        beta = np.zeros(n)
        rho = np.zeros(n)
        beta[n - n_ad:] = cfg.adapt_beta
        rho[n - n_ad:] = math.exp(-1.0 / cfg.adapt_tau)
        return cls(np.full(n, alpha), np.full(n, zeta), np.full(n, cfg.V_th - 0.0), beta, rho,
                   int(round(cfg.t_ref)), cfg.surrogate_height, cfg.surrogate_width,
                   cfg.surrogate, cfg.c_reg, (cfg.f_target / 1000.0) * 1.0)


class RecurrentPopulation:
    """eprop_iaf(_adapt)_bsshslm_2020, vectorised over neurons (spec §8.2)."""

    def __init__(self, p: RecurrentParams, cfg: TimeConfig):
        n = len(p.alpha)
        self.p, self.u_int, self.flush_steps = p, cfg.seq_len, cfg.flush_steps
        self.v = np.zeros(n)  # membrane voltage relative to E_L
        self.r = np.zeros(n, dtype=int)  # remaining refractory steps
        self.z = np.zeros(n)  # spike of the previous step (reset is subtracted one step late)
        self.a = np.zeros(n)  # threshold adaptation
        self.n_spk = np.zeros(n, dtype=int)
        self.last_event = np.zeros(n, dtype=int)

    def update(self, n: int, x: np.ndarray):
        """One step; returns (psi, spikes, flushes, Rint or None).  Rint belongs to stamp n+1."""
        p, u = self.p, self.u_int
        q = cpp_mod(n - 2, u)
        if q == 0:  # eprop_reset_neurons_on_update
            self.v[:] = 0.0
            self.r[:] = 0
            self.z[:] = 0.0
            self.a[:] = 0.0
        self.r = np.where(self.r > 0, self.r - 1, self.r)
        self.v = p.zeta * x + p.alpha * self.v
        self.v = self.v - p.theta * self.z
        self.a = p.rho * self.a + self.z
        thr = p.theta + p.beta * self.a  # == theta exactly for regular neurons (beta = 0)
        psi = surrogate(p.surrogate, self.r > 0, self.v - thr, p.height, p.width)
        spikes = (self.v >= thr) & (self.r == 0)
        self.z = spikes.astype(float)
        self.r = np.where(spikes, p.n_ref, self.r)
        self.n_spk += spikes
        flushes = (~spikes) & (self.last_event > 0) & (n - self.last_event >= self.flush_steps)
        self.last_event = np.where(spikes | flushes, n, self.last_event)
        rint = None
        if q == u - 1:
            rint = p.c_reg * (self.n_spk / u - p.f_target_per_step) / u
            self.n_spk[:] = 0
        return psi, spikes, flushes, rint


class ReadoutPopulation:
    """eprop_readout_bsshslm_2020, vectorised over readouts (spec §8.3)."""

    def __init__(self, cfg: TimeConfig):
        self.alpha = math.exp(-1.0 / cfg.tau_m_out)
        self.zeta = 1.0 if cfg.regular_spike_arrival_out else 1.0 - self.alpha
        self.cross_entropy = cfg.loss == "cross_entropy"
        self.u_int, self.lw = cfg.seq_len, cfg.lw
        self.v = np.zeros(cfg.n_out)
        self.yu = np.zeros(cfg.n_out)  # un-normalised signal of the previous step

    def softmax_normaliser(self) -> np.ndarray:
        """Sum of the OTHER readouts' yu of the previous step, in readout order."""
        k = len(self.yu)
        norm = np.zeros(k)
        for i in range(k):
            for j in range(k):
                if j != i:
                    norm[i] += 1.0 * self.yu[j]
        return norm

    def update(self, n: int, x: np.ndarray, ystar: np.ndarray, norm: np.ndarray):
        """One step; returns (y, ystar, E) after learning-window gating."""
        if cpp_mod(n - 3, self.u_int) == 0:
            self.v[:] = 0.0
        self.v = self.zeta * x + self.alpha * self.v
        if self.cross_entropy:
            with np.errstate(invalid="ignore", divide="ignore"):
                y = self.yu / (norm + self.yu)  # softmax of the previous step's voltages
            self.yu = np.exp(self.v + 0.0)
        else:
            y = self.yu  # the readout signal lags the voltage by one step
            self.yu = self.v + 0.0
        err = y - ystar
        if cpp_mod(n - 4, self.u_int) < self.u_int - self.lw:  # outside the learning window
            zero = np.zeros_like(err)
            return zero, zero.copy(), zero.copy()
        return y, ystar.copy(), err


# ---------------------------------------------------------------------------------------------
# synapse parts


class SynapseSchedule:
    """Interval bookkeeping of eprop_synapse_bsshslm_2020 (spec §8.4, §8.5).

    Shared by all synapses of one presynaptic neuron to one target class with one delay: they
    see identical event stamps.  ``send`` returns (grad_request, optimizer_index, transmit);
    grad_request = (isis, t_prev_upd, t_trig) or None.
    """

    __slots__ = ("u", "shift", "drops", "t_last", "last_was_flush", "t_prev_upd", "t_next_upd",
                 "t_trig", "isis")

    def __init__(self, u: int, shift: int, drops: bool):
        self.u, self.shift, self.drops = u, shift, drops
        self.t_last = 0
        self.last_was_flush = False
        self.t_prev_upd = 0
        self.t_next_upd = u
        self.t_trig = 0
        self.isis: list = []

    def send(self, s: int, is_flush: bool):
        u, sh = self.u, self.shift
        grad, opt_idx = None, None
        if self.last_was_flush:
            if is_flush:
                return None, None, False
            self.t_last = s
            self.t_trig = s
        if self.drops and cpp_mod(s - sh, u) == 0:  # first step of the target's interval
            return None, None, False
        if self.t_trig == 0:
            self.t_trig = s
        b = self.t_next_upd + sh  # first step of the next interval
        if self.t_last > 0:
            d = min(s, b) - min(self.t_last, b)
            if d > 0:
                self.isis.append(d)
        if s > b:  # first event after the interval ended
            idx = (s - sh) // u
            if self.isis and self.t_last > 0:
                grad = (tuple(self.isis), self.t_prev_upd, self.t_trig)
                self.isis = []
            if not is_flush:
                opt_idx = idx
            self.t_prev_upd = idx * u
            self.t_next_upd = idx * u + u
            self.t_trig = s
        elif not is_flush and self.last_was_flush:
            opt_idx = (s - sh) // u
        if not is_flush:
            self.t_last = s
        self.last_was_flush = is_flush
        return grad, opt_idx, not is_flush


class OptimizerCommon:
    """Common optimizer properties and the eta bookkeeping of SetDefaults (spec §5)."""

    def __init__(self, cfg: TimeConfig):
        self.adam = cfg.optimizer == "adam"
        if cfg.optimizer not in ("adam", "gradient_descent"):
            raise ValueError(cfg.optimizer)
        self.batch = cfg.batch_size
        self.b1, self.b2, self.eps = cfg.beta_1, cfg.beta_2, cfg.epsilon
        self.wmin, self.wmax = cfg.Wmin, cfg.Wmax
        self.eta, self.eta_first, self.n_eta_changes = 1e-4, 1e-4, 0

    def set_eta(self, eta: float):
        if eta != self.eta:
            if self.n_eta_changes == 0:
                self.eta_first = eta
            self.n_eta_changes += 1
            self.eta = eta


class GroupOptimizer:
    """Optimizer schedule scalars of one synapse group (identical for all its synapses)."""

    __slots__ = ("k", "n_opt", "eta_cur", "p1", "p2")

    def __init__(self):
        self.k, self.n_opt, self.eta_cur, self.p1, self.p2 = 1, 0, 1e-4, 1.0, 1.0

    def step(self, c: OptimizerCommon, idx: int, g, w, gc, m, v):
        """OPT(idx, g, w) elementwise over the group's synapses; returns (w, gc, m, v)."""
        if c.n_eta_changes != 0 and self.n_opt == 0:
            self.eta_cur = c.eta_first
        gc = gc + g
        k_new = 1 + idx // c.batch
        if self.k < k_new:
            gc = gc / c.batch
            if c.adam:
                while self.k < k_new:  # one iteration per elapsed index, zero gradient after 1st
                    self.p1 *= c.b1
                    self.p2 *= c.b2
                    lr = self.eta_cur * math.sqrt(1.0 - self.p2) / (1.0 - self.p1)
                    m = c.b1 * m + (1.0 - c.b1) * gc
                    v = c.b2 * v + (1.0 - c.b2) * gc * gc
                    w = w - lr * m / (np.sqrt(v) + c.eps)
                    gc = np.zeros_like(gc)
                    self.k += 1
            else:
                w = w - self.eta_cur * gc
                gc = np.zeros_like(gc)
            w = np.minimum(np.maximum(w, c.wmin), c.wmax)
            self.eta_cur = c.eta
            self.n_opt += 1
            self.k = k_new
        return w, gc, m, v


@dataclass
class SynapseGroup:
    """Synapses of presynaptic node ``pre`` to targets ``tj`` of one class with one delay."""

    pre: int  # column of the class's weight matrix
    node: int  # presynaptic node order (delivery order)
    cls: str  # "rec" or "out"
    delay: int
    tj: np.ndarray
    schedule: SynapseSchedule
    opt: GroupOptimizer


class History:
    """Postsynaptic archives: psi and L (recurrent), Rint by stamp, E (readout)."""

    def __init__(self, n_steps: int, n_rec: int, n_out: int):
        self.psi = np.zeros((n_steps + 2, n_rec))
        self.L = np.zeros((n_steps + 2, n_rec))
        self.rint = np.zeros((n_steps + 2, n_rec))
        self.E = np.zeros((n_steps + 2, n_out))
        self.written = -1  # last update step whose entries exist


@dataclass
class ClassParams:
    """Target-side constants a replay needs, per target (columns)."""

    alpha: np.ndarray
    zeta: np.ndarray
    beta: np.ndarray
    rho: np.ndarray
    kappa: float
    shift: int


def replay_rows(z: np.ndarray, m0: int, m_end: int, hist: History, cp: ClassParams, cls: str,
                cols=slice(None)):
    """Replay history [m0, m_end) for rows of presynaptic spike indicators z[:, m - m0].

    Returns (gp_partial, last, sum_e): gp_partial is G' summed over [m0, m_end-1), last is the
    trace multiplying the final entry's learning signal (ebar for recurrent targets, zbar for
    readouts), sum_e = sum of e (recurrent only).  The final term is added by the caller with
    the learning signal available at request time.
    """
    rows = z.shape[0]
    alpha, zeta = cp.alpha[cols], cp.zeta[cols]
    shape = (rows, len(alpha))
    zbar = np.zeros(shape)
    gp = np.zeros(shape)
    if m_end > hist.written + 1:
        raise RuntimeError("replay needs history entries that do not exist yet")
    if cls == "out":
        for m in range(m0, m_end):
            zbar = alpha * zbar + zeta * z[:, m - m0, None]
            if m < m_end - 1:
                gp = gp + hist.E[m, cols] * zbar
        return gp, zbar, None
    beta, rho, kappa = cp.beta[cols], cp.rho[cols], cp.kappa
    one_minus_kappa = 1.0 - kappa
    eps = np.zeros(shape)
    ebar = np.zeros(shape)
    sum_e = np.zeros(shape)
    for m in range(m0, m_end):
        zbar = alpha * zbar + zeta * z[:, m - m0, None]
        e = hist.psi[m, cols] * (zbar - beta * eps)
        eps = rho * eps + e
        ebar = kappa * ebar + one_minus_kappa * e
        sum_e = sum_e + e
        if m < m_end - 1:
            gp = gp + hist.L[m, cols] * ebar
    return gp, ebar, sum_e


def spike_positions(t_trig: int, isis) -> tuple:
    """History indices where the replay injects z = 1: the first step of every ISI segment."""
    return tuple(int(t_trig + x) for x in np.cumsum((0,) + tuple(isis[:-1])))


def finish_grad(gp, last, sum_e, m_last: int, t_prev_upd: int, hist: History, cls: str,
                tj, cfg: TimeConfig):
    """Add the last entry's term, the regularisation and the averaging (spec §8.4 GRAD)."""
    if cls == "out":
        gp = gp + hist.E[m_last, tj] * last
    else:
        gp = gp + hist.L[m_last, tj] * last
        gp = gp + hist.rint[t_prev_upd + 2 + cfg.seq_len, tj] * sum_e
    if cfg.average_gradient:
        gp = gp / cfg.lw
    return gp


class _IntervalReplayCache:
    """Replays of one interval for all pending groups of a class, computed in one batch."""

    def __init__(self):
        self.entries: dict = {}  # (cls, t_prev_upd) -> {group id: (positions, gp, last, sum_e)}

    def lookup(self, key, gid, positions, m_end, b):
        table = self.entries.get(key)
        if table is None or m_end != b or gid not in table:
            return None
        pos, gp, last, sum_e = table.pop(gid)
        if not table:
            del self.entries[key]
        return (gp, last, sum_e) if pos == positions else None

    def build(self, key, groups, b, hist, cp, cls):
        """Batch all groups of ``cls`` whose pending interval starts at key[1] (not yet sent)."""
        rows = []
        for gid, g in enumerate(groups):
            st = g.schedule
            if (g.cls != cls or st.t_prev_upd != key[1] or st.t_trig == 0 or st.t_last == 0
                    or st.last_was_flush or st.t_trig >= b):
                continue
            pos = tuple(p for p in spike_positions(st.t_trig, tuple(st.isis) + (0,)) if p < b)
            rows.append((gid, pos))
        table = {}
        if rows:
            m0 = min(pos[0] for _, pos in rows)
            z = np.zeros((len(rows), b - m0))
            for r, (_, pos) in enumerate(rows):
                z[r, np.asarray(pos) - m0] = 1.0
            gp, last, sum_e = replay_rows(z, m0, b, hist, cp, cls)
            for r, (gid, pos) in enumerate(rows):
                table[gid] = (pos, gp[r], last[r], None if sum_e is None else sum_e[r])
        self.entries[key] = table


# ---------------------------------------------------------------------------------------------
# the network


class ReferenceNetwork:
    def __init__(self, cfg: TimeConfig, weights: dict, masks=None, delays=None,
                 replay: str = "batched"):
        masks = masks or {}
        delays = delays or {}
        self.cfg, self.replay = cfg, replay
        n_in, n_rec, n_out = cfg.n_in, cfg.n_rec, cfg.n_out
        m_in = np.ones((n_rec, n_in), bool) if masks.get("in") is None else np.asarray(masks["in"], bool)
        m_rec = np.ones((n_rec, n_rec), bool) if masks.get("rec") is None else np.asarray(masks["rec"], bool).copy()
        np.fill_diagonal(m_rec, False)  # no autapses
        m_out = np.ones((n_out, n_rec), bool) if masks.get("out") is None else np.asarray(masks["out"], bool)
        d_in = np.ones((n_rec, n_in), int) if delays.get("in") is None else np.asarray(delays["in"], int)
        d_rec = np.ones((n_rec, n_rec), int) if delays.get("rec") is None else np.asarray(delays["rec"], int)
        d_out = np.ones((n_out, n_rec), int) if delays.get("out") is None else np.asarray(delays["out"], int)
        # class "rec": columns = parrots then recurrent neurons (node order); class "out": rec
        self.mask = {"rec": np.hstack([m_in, m_rec]), "out": m_out}
        self.delay = {"rec": np.hstack([d_in, d_rec]), "out": d_out}
        w_rec_cls = np.hstack([np.asarray(weights["W_in"], float), np.asarray(weights["W_rec"], float)])
        self.W = {"rec": np.where(self.mask["rec"], w_rec_cls, 0.0),
                  "out": np.where(m_out, np.asarray(weights["W_out"], float), 0.0)}
        self.B = np.asarray(weights["B"], float)
        for c in ("rec", "out"):
            if np.any(self.delay[c][self.mask[c]] < 1):
                raise ValueError("delays must be >= 1 step")
        self.G = {c: np.zeros_like(self.W[c]) for c in self.W}
        self.Gc = {c: np.zeros_like(self.W[c]) for c in self.W}
        self.M = {c: np.zeros_like(self.W[c]) for c in self.W}
        self.V = {c: np.zeros_like(self.W[c]) for c in self.W}
        self.groups: list = []
        self.groups_of_node: dict = {}  # node -> list of group ids in send order
        self._build_groups()
        rp = RecurrentParams.from_config(cfg)
        self.rec = RecurrentPopulation(rp, cfg)
        self.out = ReadoutPopulation(cfg)
        self.cp = {
            "rec": ClassParams(rp.alpha, rp.zeta, rp.beta, rp.rho,
                               math.exp(-1.0 / cfg.kappa_tau), S_REC),
            "out": ClassParams(np.full(n_out, self.out.alpha), np.full(n_out, self.out.zeta),
                               np.zeros(n_out), np.zeros(n_out), 0.0, S_OUT),
        }
        self.common = OptimizerCommon(cfg)
        self.hist = History(cfg.total_steps, n_rec, n_out)
        self.cache = _IntervalReplayCache()

    def _build_groups(self):
        cfg = self.cfg
        n_in = cfg.n_in
        for node in range(n_in + cfg.n_rec):
            specs = [("rec", node)]
            if node >= n_in:
                specs.append(("out", node - n_in))
            for cls, col in specs:  # creation order: in->rec, rec->rec, then rec->out
                mask, delay = self.mask[cls][:, col], self.delay[cls][:, col]
                for d in sorted(set(delay[mask].tolist())):
                    tj = np.nonzero(mask & (delay == d))[0]
                    sched = SynapseSchedule(cfg.seq_len, S_REC if cls == "rec" else S_OUT,
                                            drops=cls == "rec")
                    self.groups.append(SynapseGroup(col, node, cls, d, tj, sched, GroupOptimizer()))
                    self.groups_of_node.setdefault(node, []).append(len(self.groups) - 1)

    # -- synapse side ------------------------------------------------------------------------

    def _grad(self, gid: int, isis, t_prev_upd: int, t_trig: int) -> np.ndarray:
        g = self.groups[gid]
        cp, cls, tj = self.cp[g.cls], g.cls, g.tj
        positions = spike_positions(t_trig, isis)
        m_end = t_trig + int(sum(isis))
        b = t_prev_upd + self.cfg.seq_len + cp.shift
        key = (cls, t_prev_upd)
        hit = None
        if self.replay == "batched":
            if key not in self.cache.entries:
                self.cache.build(key, self.groups, b, self.hist, cp, cls)
            hit = self.cache.lookup(key, gid, positions, m_end, b)
        if hit is not None:
            gp, last, sum_e = hit
            gp, last = gp[tj], last[tj]
            sum_e = None if sum_e is None else sum_e[tj]
        else:
            gp, last, sum_e = self._literal_replay(isis, t_trig, m_end, cp, cls, tj)
        return finish_grad(gp, last, sum_e, m_end - 1, t_prev_upd, self.hist, cls, tj, self.cfg)

    def _literal_replay(self, isis, t_trig, m_end, cp, cls, tj):
        """GRAD of spec §8.4 segment by segment (z = 1 at each segment's first step)."""
        z = np.zeros((1, m_end - t_trig))
        z[0, np.asarray(spike_positions(t_trig, isis)) - t_trig] = 1.0
        gp, last, sum_e = replay_rows(z, t_trig, m_end, self.hist, cp, cls, cols=tj)
        return gp[0], last[0], None if sum_e is None else sum_e[0]

    def _optimize(self, g: SynapseGroup, idx: int):
        c, p, tj = g.cls, g.pre, g.tj
        w, gc, m, v = g.opt.step(self.common, idx, self.G[c][tj, p], self.W[c][tj, p],
                                 self.Gc[c][tj, p], self.M[c][tj, p], self.V[c][tj, p])
        self.W[c][tj, p], self.Gc[c][tj, p], self.M[c][tj, p], self.V[c][tj, p] = w, gc, m, v
        self.G[c][tj, p] = 0.0

    def _send(self, gid: int, s: int, is_flush: bool, x: dict):
        g = self.groups[gid]
        grad, opt_idx, transmit = g.schedule.send(s, is_flush)
        if grad is not None:
            self.G[g.cls][g.tj, g.pre] += self._grad(gid, *grad)
        if opt_idx is not None:
            self._optimize(g, opt_idx)
        if transmit:
            x[g.cls][g.tj] += self.W[g.cls][g.tj, g.pre]

    # -- the run -----------------------------------------------------------------------------

    def run(self, parrot_stamps: dict, target_at) -> dict:
        """parrot_stamps: stamp -> sorted input indices; target_at(n) -> y* used in step n."""
        cfg, hist = self.cfg, self.hist
        n_steps, n_rec, n_out = cfg.total_steps, cfg.n_rec, cfg.n_out
        it_steps = cfg.batch_size * cfg.seq_len
        etas = cfg.eta_schedule
        events: dict = {}  # due step -> list of (node, order, gid, stamp, is_flush)

        def emit(node, stamp, is_flush):
            for order, gid in enumerate(self.groups_of_node.get(node, ())):
                due = stamp + self.groups[gid].delay - 1
                events.setdefault(due, []).append((node, order, gid, due, is_flush))

        y_rec = np.zeros((n_out, n_steps))
        yt_rec = np.zeros((n_out, n_steps))
        spikes_rec = np.zeros((n_steps, n_rec), dtype=bool)
        err_prev = np.zeros(n_out)
        for n in range(n_steps):
            if n % it_steps == 0 and n // it_steps < cfg.n_iter:
                self.common.set_eta(float(etas[n // it_steps]))  # SetDefaults between Simulates
            for i in parrot_stamps.get(n, ()):
                emit(i, n, False)
            # Phase A: learning signals of readout step n-1 -> recurrent entry n-3
            if n >= 3:
                for k in range(n_out):
                    hist.L[n - 3] = hist.L[n - 3] + self.B[:, k] * err_prev[k]
            norm = self.out.softmax_normaliser()
            ystar = target_at(n)
            # Phase B: events with stamp n, ascending presynaptic node, then creation order
            x = {"rec": np.zeros(n_rec), "out": np.zeros(n_out)}
            for node, _, gid, stamp, is_flush in sorted(events.pop(n, ()), key=lambda e: e[:2]):
                self._send(gid, stamp, is_flush, x)
            if n == cfg.final_time:  # the forced-update generator has the highest node id
                x["rec"] = x["rec"] + FINAL_WEIGHT
            # Phase C
            psi, spk, flush, rint = self.rec.update(n, x["rec"])
            hist.psi[n] = psi
            if rint is not None:
                hist.rint[n + 1] = rint
            y, yt, err = self.out.update(n, x["out"], ystar, norm)
            if n >= 1:
                hist.E[n - 1] = err
            hist.written = n - 1  # readout entry n-1 is the last complete one of all archives
            y_rec[:, n], yt_rec[:, n], err_prev = y, yt, err
            spikes_rec[n] = spk
            for j in np.nonzero(spk | flush)[0]:
                emit(cfg.n_in + j, n + 1, bool(flush[j]))
        return dict(readout=y_rec, target=yt_rec, spikes=spikes_rec)


def parrot_stamps(cfg: TimeConfig, input_spikes: np.ndarray) -> dict:
    """Stamps of the parrots' spikes: generator time t -> parrot emits in step t (stamp t+1)."""
    n_seq, u, n_in = input_spikes.shape
    stamps: dict = {}
    g, i, k = np.nonzero(input_spikes)
    times = g * u + i + OFFSET_GEN
    for t, kk in sorted(zip((times + 1).tolist(), k.tolist())):
        stamps.setdefault(t, []).append(kk)
    for kk in range(n_in):  # forced final update: every parrot spikes
        stamps.setdefault(cfg.final_time + 1, []).append(kk)
    return {t: sorted(set(v)) for t, v in stamps.items()}


def target_function(cfg: TimeConfig, targets: np.ndarray):
    """y* used by the readouts in update step n (step_rate_generator semantics, spec §2.3)."""
    targets = np.asarray(targets, dtype=float)
    if targets.ndim == 3:
        flat = targets.reshape(-1, cfg.n_out)  # one value per step from step 4 on
        per_step = True
    else:
        flat = targets
        per_step = False
    zero = np.zeros(cfg.n_out)

    def at(n: int) -> np.ndarray:
        if n < TOTAL_OFFSET:
            return zero
        i = n - TOTAL_OFFSET if per_step else (n - TOTAL_OFFSET) // cfg.seq_len
        return flat[min(i, len(flat) - 1)]

    return at


def simulate_reference(cfg: TimeConfig, weights: dict, input_spikes: np.ndarray,
                       targets: np.ndarray, masks=None, delays=None, replay: str = "batched",
                       stamps: dict | None = None) -> TimeResult:
    """Run the numpy reference; ``stamps`` overrides the parrot spike stamps (tests)."""
    net = ReferenceNetwork(cfg, weights, masks, delays, replay)
    rec = net.run(parrot_stamps(cfg, input_spikes) if stamps is None else stamps,
                  target_function(cfg, targets))
    losses, errors, y, yt = evaluate(rec["readout"], rec["target"], cfg)
    n_in = cfg.n_in
    final = {"in": net.W["rec"][:, :n_in].copy(), "rec": net.W["rec"][:, n_in:].copy(),
             "out": net.W["out"].copy()}
    return TimeResult(losses, errors, y, yt, rec["spikes"], final)
