"""Independent numpy reference of NEST 3.10's event-driven e-prop (spec sections 2-6).

Models: recurrent ``eprop_iaf``, ``eprop_iaf_adapt``, ``eprop_iaf_psc_delta``,
``eprop_iaf_psc_delta_adapt``; ``eprop_readout``; plastic ``eprop_synapse`` (gradient replay at
every presynaptic event, cutoff with pow decay, flush events, gradient descent / Adam with the
eta lag, batches in time-step units, Adam catch-up iterations, clamping); static
``eprop_learning_signal_connection``.  Written from /work/shared/eprop-spec.md in our own code;
NEST is only used elsewhere (``nest_event.py``) as a black box to compare against.

Network (the sine-wave set-up of spec 7.1): spike generators -> parrots (n_in) -> recurrent
(n_rec) -> readouts (n_out); feedback B from readouts to recurrent neurons; target from step 2
on (the example's ``amplitude_times = arange(task) + 2``), learning window 1 from step 2 on; one
forced spike at ``task + 1`` ms (weight 1000) into all parrots and recurrent neurons so that every
synapse evaluates its last window (spec 7).  The simulation runs ``task + 5`` steps like the
example (``sim = task + offset 2 + extension_sim 3``).  Note (checked against NEST): after the
forced input of 1000 an ``eprop_iaf`` neuron with t_ref = 0 stays far above threshold and spikes in
every remaining step (task+1 .. task+4); the spikes of task+2 and task+3 are still delivered, so
the final rec->rec and rec->out weights also contain the windows of history entries task+1 and
task+2 (learning signals from readout steps task+2, task+3, where the target holds its last value).

Schedule of step n (spec 2.2, 6)
    Phase A  L_j[n-2] += B_jk * E_k[n-1] for every readout k in order; readout target and window
             for step n.
    Phase B  for every source neuron (parrots, then recurrent, ascending) with an event to deliver
             at n: SEND of each of its synapse groups; spikes add the updated w to the targets'
             input x (in that order, so sums are bitwise NEST's); finally the static forced spike.
    Phase C  neuron updates (psi, R, spikes/flushes with stamp n+1), readout updates (E[n]).

Vectorisation that keeps NEST's operation order
    * All outgoing synapses of one source that go to the same kind of target (recurrent or
      readout) with the same delay form a *group*.  They see the same events, hence share t_last,
      zbuf, zbar (filtered with the shared postsynaptic alpha), c_rem, n_decay and the scalar
      optimizer state (k, n_opt, eta_cur, Adam powers p1, p2).  Only w, ebar, ebar_reg, eps, G and
      the optimizer vectors Gc, m, v are per synapse.  This assumes homogeneous parameters inside
      the recurrent population and inside the readout population, as in every NEST example.
    * A replay window of K steps is one (K, n_targets) block: zbar is a scalar loop; ebar and
      ebar_reg are first-order recursions computed with ``scipy.signal.lfilter`` (its transposed
      direct form evaluates exactly kappa*y_prev + x per step, checked bitwise against a loop);
      sums over the window use ``cumsum`` (sequential, unlike ``sum``).  Per-step gradient descent
      (batch 1) is a cumulative sum of the -eta*g increments, with a per-call fallback when the
      clamp would bind.  Adam and batch sizes > 1 loop over the optimizer calls.
    * Exponentials and powers use libm through ``math``/numpy (numpy's float64 exp and power agree
      with glibc on this machine; pow(x, 2) is taken as x*x as the compiler folds it).

Delays > 1 step for plastic synapses (e-prop+ extension, NEST refuses them)
    A spike or flush event with stamp s sent through a synapse with delay d steps is treated as if
    it had stamp s' = s + d - 1 for that synapse: it is replayed (SEND runs, replay window
    [t_last - 1, s' - 2]) and its weight is integrated by the target at the start of step s'.
    The synapse therefore sees the presynaptic train shifted by d - 1 steps; with d = 1 this is
    exactly NEST.  Inputs of one step are summed in ascending source order, then recurrent groups
    before readout groups, then ascending delay.  The simulation is extended by d_max - 1 steps so
    that the forced final spike reaches every synapse.

Implemented but not compared with NEST: I_e (the P_I rounding is unverified).  Not modelled:
``refractory_input``, ``ignore_and_spike``, multiplicities > 1 (duplicate input times are
rejected), history pruning (memory only, spec 1.3), heterogeneous neuron parameters.

API
---
``EventConfig``        all parameters (NEST units; ms for t_ref/cutoff/flush interval, Hz for
                       f_target); ``EventConfig(**sine_task.example_parameters(model))`` is the
                       example.
``EventResult``        loss per iteration, readout y and target y* (n_out, task) for readout steps
                       2 .. task+1, recurrent spike steps, final dense W_in, W_rec, W_out.
``simulate_event(task, config, delays_in=None, delays_rec=None, delays_out=None)``
``loss_per_iteration(y, y_target, n_iter)``  the example's loss formula.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

DBL_MAX = np.finfo(np.float64).max
NO_LIMIT = 1 << 60                    # "infinite" cutoff / flush interval in steps
FINAL_SPIKE_WEIGHT = 1000.0
ETA_NEST_DEFAULT = 1e-4               # eta_cur of a fresh synapse / default eta of the model
SURROGATES = ("piecewise_linear", "exponential", "fast_sigmoid_derivative", "arctan_derivative")
ADAPTIVE = ("eprop_iaf_adapt", "eprop_iaf_psc_delta_adapt")
PSC_DELTA = ("eprop_iaf_psc_delta", "eprop_iaf_psc_delta_adapt")


@dataclass(frozen=True)
class EventConfig:
    """Parameters of the event-driven set-up; defaults are the example's ``eprop_iaf`` values."""

    model: str = "eprop_iaf"
    # recurrent neurons (NEST names and units)
    C_m: float = 1.0
    E_L: float = 0.0
    V_th: float = 0.03
    V_reset: float = -70.0            # psc_delta models only (NEST default)
    tau_m: float = 30.0
    t_ref: float = 0.0
    I_e: float = 0.0
    adapt_beta: float = 1.0
    adapt_tau: float = 10.0
    c_reg: float = 0.3
    f_target: float = 10.0            # Hz
    kappa: float = 0.97
    kappa_reg: float = 0.97
    surrogate_function: str = "piecewise_linear"
    surrogate_height: float = 10.0
    surrogate_width: float = 1.0 / 33.3
    cutoff: float = 100.0             # ms, eprop_isi_trace_cutoff of the recurrent neurons
    flush_interval: float = math.inf  # ms, flush_event_send_interval
    # readouts
    tau_m_out: float = 30.0
    C_m_out: float = 1.0
    E_L_out: float = 0.0
    cutoff_out: float = 100.0
    # optimizer (common properties of eprop_synapse)
    optimizer: str = "gradient_descent"
    eta: float = 9e-8
    batch_size: int = 1
    optimize_each_step: bool = False
    Wmin: float = -100.0
    Wmax: float = 100.0
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    # ((step, eta), ...): SetDefaults(eta) between Simulate calls, taking effect from step `step`
    eta_changes: tuple = ()
    dt: float = 1.0

    def __post_init__(self):
        if self.model not in ("eprop_iaf", "eprop_iaf_adapt") + PSC_DELTA:
            raise ValueError(f"unknown model {self.model!r}")
        if self.surrogate_function not in SURROGATES:
            raise ValueError(f"unknown surrogate {self.surrogate_function!r}")
        if self.dt != 1.0:
            raise ValueError("only dt = 1 ms is supported (f_target units, spec 9.24)")


@dataclass
class EventResult:
    loss: np.ndarray                  # (n_iter,)
    readout: np.ndarray               # (n_out, task): y*lambda at readout steps 2 .. task+1
    target: np.ndarray                # (n_out, task): y*·lambda at the same steps
    spike_steps: list                 # per recurrent neuron: emission steps (spike time - 1 ms)
    W_in: np.ndarray                  # (n_rec, n_in) final weights, 0 where not connected
    W_rec: np.ndarray                 # (n_rec, n_rec)
    W_out: np.ndarray                 # (n_out, n_rec)
    extra: dict = field(default_factory=dict)


def loss_per_iteration(y: np.ndarray, y_target: np.ndarray, n_iter: int) -> np.ndarray:
    """The example's loss: 0.5 * mean over readouts (and group) of the per-sequence sum of squares."""
    n_out = y.shape[0]
    y = y.reshape((n_out, n_iter, 1, -1))
    t = y_target.reshape((n_out, n_iter, 1, -1))
    return 0.5 * np.mean(np.sum((y - t) ** 2, axis=3), axis=(0, 2))


def steps_of(ms: float, dt: float) -> int:
    """Steps of a duration in ms; infinite durations never elapse."""
    return NO_LIMIT if math.isinf(ms) else int(round(ms / dt))


# ------------------------------------------------------------------------------------------
# neurons (Phase C)
# ------------------------------------------------------------------------------------------
def surrogate_gradient(name: str, r: np.ndarray, u: np.ndarray, thr, height: float,
                       width: float) -> np.ndarray:
    """psi = SG(r, u, thr) as coded in NEST (spec 3.5); 0 while refractory (r > 0)."""
    d = u - thr
    if name == "piecewise_linear":
        psi = height * np.maximum(0.0, 1.0 - np.abs(d) / width)
    elif name == "exponential":
        psi = height * np.exp(-np.abs(d) / width)
    elif name == "fast_sigmoid_derivative":
        psi = height * np.power(1.0 + np.abs(d) / width, -2.0)
    else:  # arctan_derivative
        q = d / width
        psi = height / (1.0 + q * q)
    return np.where(r > 0, 0.0, psi)


class RecurrentPopulation:
    """State and per-step update of the recurrent neurons (spec 3.2-3.4, 3.6, 3.9)."""

    def __init__(self, cfg: EventConfig, n: int):
        dt = cfg.dt
        self.cfg = cfg
        self.alpha = math.exp(-dt / cfg.tau_m)
        self.P_I = cfg.tau_m / cfg.C_m * (1.0 - self.alpha)
        self.rho = math.exp(-dt / cfg.adapt_tau)
        self.theta = cfg.V_th - cfg.E_L
        self.V_reset = cfg.V_reset - cfg.E_L
        self.V_min = -DBL_MAX - cfg.E_L
        self.n_ref = steps_of(cfg.t_ref, dt)
        self.f_target = cfg.f_target / 1000.0          # spikes/ms, as NEST stores it
        self.flush_steps = steps_of(cfg.flush_interval, dt)
        self.adaptive = cfg.model in ADAPTIVE
        self.psc_delta = cfg.model in PSC_DELTA
        self.u = np.zeros(n)
        self.r = np.zeros(n, dtype=np.int64)
        self.z = np.zeros(n)
        self.I = np.zeros(n)
        self.a = np.zeros(n)
        self.A = np.full(n, self.theta)
        self.fbar = np.zeros(n)
        self.last_event = np.zeros(n, dtype=np.int64)

    def _integrate_iaf(self, x):
        self.r = np.where(self.r > 0, self.r - 1, self.r)
        u = self.P_I * self.I + x + self.alpha * self.u
        self.u = np.maximum(u, self.V_min)
        if self.adaptive:                              # z is still the previous step's spike
            self.a = self.rho * self.a + self.z
            self.A = self.theta + self.cfg.adapt_beta * self.a
        return self.A if self.adaptive else self.theta

    def _integrate_psc_delta(self, x):
        free = self.r == 0
        u = self.P_I * (self.I + self.cfg.I_e) + self.alpha * self.u + x
        self.u = np.where(free, np.maximum(u, self.V_min), self.u)
        if self.adaptive:                              # only when not refractory (spec 3.4 quirk)
            self.a = np.where(free, self.rho * self.a + self.z, self.a)
            self.A = np.where(free, self.theta + self.cfg.adapt_beta * self.a, self.A)
        self.r = np.where(free, self.r, self.r - 1)
        return self.A if self.adaptive else self.theta

    def update(self, n: int, x: np.ndarray):
        """Step n.  Returns (psi, R, spike mask, flush mask); events get stamp n+1."""
        cfg = self.cfg
        thr = self._integrate_psc_delta(x) if self.psc_delta else self._integrate_iaf(x)
        psi = surrogate_gradient(cfg.surrogate_function, self.r, self.u, thr,
                                 cfg.surrogate_height, cfg.surrogate_width)
        if self.psc_delta:
            spike = self.u >= thr
            self.u = np.where(spike, self.V_reset, self.u)
        else:
            spike = (self.u >= thr) & (self.r == 0)
            self.u = np.where(spike, self.u - self.theta, self.u)   # reset subtracts theta, not A
        self.r = np.where(spike, self.n_ref, self.r)
        self.z = spike.astype(np.float64)
        flush = (~spike) & (self.last_event > 0) & (n - self.last_event >= self.flush_steps)
        self.last_event = np.where(spike | flush, n, self.last_event)
        self.fbar = self.kappa_reg_filter(self.fbar, self.z)
        R = cfg.c_reg * (self.fbar - self.f_target * cfg.dt)
        # I for the next step: psc_delta adds I_e itself; eprop_iaf uses it one step late (9.25)
        self.I = np.zeros_like(self.I) if self.psc_delta else np.full_like(self.I, cfg.I_e)
        return psi, R, spike, flush

    def kappa_reg_filter(self, fbar, z):
        k = self.cfg.kappa_reg
        return k * fbar + (1.0 - k) * z / self.cfg.dt


class ReadoutPopulation:
    """``eprop_readout`` (spec 3.7): MSE error gated by the learning window."""

    def __init__(self, cfg: EventConfig, n: int):
        self.alpha = math.exp(-cfg.dt / cfg.tau_m_out)
        self.P_I = cfg.tau_m_out / cfg.C_m_out * (1.0 - self.alpha)
        self.E_L = cfg.E_L_out
        self.V_min = -DBL_MAX - cfg.E_L_out
        self.u = np.zeros(n)
        self.I = np.zeros(n)

    def update(self, x, y_star, lam):
        """Returns (gated error E, y*lam, y_star*lam)."""
        self.u = np.maximum(self.P_I * self.I + x + self.alpha * self.u, self.V_min)
        y = self.u + self.E_L
        E = y - y_star
        return E * lam, y * lam, y_star * lam


# ------------------------------------------------------------------------------------------
# optimizers (spec 5)
# ------------------------------------------------------------------------------------------
class EtaSchedule:
    """The model-wide eta bookkeeping of SetDefaults (eta, eta_first, number of changes)."""

    def __init__(self):
        self.eta = ETA_NEST_DEFAULT
        self.eta_first = ETA_NEST_DEFAULT
        self.n_changes = 0

    def set(self, eta: float):
        if eta != self.eta:
            if self.n_changes == 0:
                self.eta_first = eta
            self.n_changes += 1
            self.eta = eta


class GroupOptimizer:
    """The optimizer objects of one synapse group: scalars shared, vectors per synapse."""

    def __init__(self, cfg: EventConfig, eta: EtaSchedule, n: int):
        self.cfg, self.etas = cfg, eta
        self.adam = cfg.optimizer == "adam"
        self.b = int(cfg.batch_size)
        self.k = 1
        self.n_opt = 0
        self.eta_cur = ETA_NEST_DEFAULT
        self.Gc = np.zeros(n)
        if self.adam:
            self.m, self.v = np.zeros(n), np.zeros(n)
            self.p1 = self.p2 = 1.0

    def _eta_for_this_call(self):
        if self.etas.n_changes != 0 and self.n_opt == 0:
            self.eta_cur = self.etas.eta_first
        return self.eta_cur

    def _adam_iterations(self, w, n_iter):
        """n_iter Adam iterations; only the first sees the accumulated gradient (catch-up)."""
        c = self.cfg
        for _ in range(n_iter):
            self.p1 *= c.beta_1
            self.p2 *= c.beta_2
            lr = self.eta_cur * math.sqrt(1.0 - self.p2) / (1.0 - self.p1)
            self.m = c.beta_1 * self.m + (1.0 - c.beta_1) * self.Gc
            self.v = c.beta_2 * self.v + (1.0 - c.beta_2) * self.Gc * self.Gc
            w = w - lr * self.m / (np.sqrt(self.v) + c.epsilon)
            self.Gc = np.zeros_like(self.Gc)
        return w

    def call(self, idx: int, g: np.ndarray, w: np.ndarray) -> np.ndarray:
        """OPT(idx, g, w) of spec 5 for all synapses of the group."""
        self._eta_for_this_call()
        self.Gc = self.Gc + g
        K = 1 + idx // self.b
        if self.k < K:
            self.Gc = self.Gc / self.b
            if self.adam:
                w = self._adam_iterations(w, K - self.k)
            else:
                w = w - self.eta_cur * self.Gc
                self.Gc = np.zeros_like(self.Gc)
            w = np.maximum(self.cfg.Wmin, np.minimum(w, self.cfg.Wmax))
            self.eta_cur = self.etas.eta
            self.n_opt += 1
            self.k = K
        return w

    def call_consecutive(self, idx0: int, g_blk: np.ndarray, w: np.ndarray) -> np.ndarray:
        """OPT(idx0 + r, g_blk[r], w) for r = 0 .. K-1 (per-step optimisation of one window)."""
        if not self.adam and self.b == 1 and not self.Gc.any():
            w_new = self._gd_batch1_block(g_blk, w)
            if w_new is not None:
                self.k = idx0 + len(g_blk)          # = 1 + last index // 1
                return w_new
        for r in range(len(g_blk)):
            w = self.call(idx0 + r, g_blk[r], w)
        return w

    def _gd_batch1_block(self, g_blk, w):
        """Gradient descent, batch 1: every call updates, w_r = clamp(w_{r-1} - eta_r * g_r).

        Without clamping this is a sequential sum (w + (-a) is bitwise w - a; (0 + g)/1 = g), so
        cumsum reproduces it.  Returns None if the clamp would bind (caller falls back)."""
        etas = np.full(len(g_blk), self.etas.eta)
        etas[0] = self._eta_for_this_call()
        steps = np.cumsum(np.vstack([w[None, :], -(etas[:, None] * g_blk)]), axis=0)
        if steps.min() < self.cfg.Wmin or steps.max() > self.cfg.Wmax:
            return None
        self.eta_cur = self.etas.eta
        self.n_opt += len(g_blk)
        return steps[-1].copy()


# ------------------------------------------------------------------------------------------
# eprop_synapse groups (spec 4)
# ------------------------------------------------------------------------------------------
class SynapseGroup:
    """All eprop synapses from one source to one kind of target ("rec" or "out") with one delay."""

    def __init__(self, kind: str, targets: np.ndarray, w: np.ndarray, delay: int,
                 cfg: EventConfig, etas: EtaSchedule, alpha: float, cutoff_steps: int,
                 adaptive: bool, rho: float):
        n = len(targets)
        self.kind, self.targets, self.w, self.delay = kind, targets, w.astype(np.float64), delay
        # column selector into the history arrays; a plain slice when the group has all targets
        full = np.array_equal(targets, np.arange(len(targets)))
        self.columns = slice(0, len(targets)) if full else targets
        self.alpha, self.cutoff, self.adaptive, self.rho = alpha, cutoff_steps, adaptive, rho
        self.kappa, self.kappa_reg, self.beta = cfg.kappa, cfg.kappa_reg, cfg.adapt_beta
        self.each = bool(cfg.optimize_each_step)
        self.t_last = 0
        self.last_was_flush = False
        self.zbuf = 0.0
        self.zbar = 0.0
        self.c_rem = 0
        self.n_decay = 0
        self.ebar, self.ebar_reg, self.eps, self.G = (np.zeros(n) for _ in range(4))
        self.opt = GroupOptimizer(cfg, etas, n)

    def send(self, s: int, is_flush: bool, hist) -> None:
        """SEND(s, is_flush) of spec 4.2 (without transmission, done by the caller)."""
        if self.t_last != 0:
            self._compute_gradient(s, is_flush, hist)
        self.t_last = s
        self.last_was_flush = is_flush

    def _zbar_sequence(self, K: int, zcur: float) -> np.ndarray:
        """zbar over the window; the spike at stamp t enters at history index t through zbuf."""
        seq = np.empty(K)
        zbar, zbuf, a = self.zbar, self.zbuf, self.alpha
        for r in range(K):
            zin, zbuf, zcur = zbuf, zcur, 0.0
            zbar = a * zbar + zin
            seq[r] = zbar
        self.zbar, self.zbuf = zbar, zbuf
        return seq

    def _eligibility(self, psi: np.ndarray, zbar: np.ndarray) -> np.ndarray:
        """e[m] = psi[m] zbar[m]; adaptive: e = psi (zbar - beta eps), then eps = rho eps + e."""
        if not self.adaptive:
            return psi * zbar[:, None]
        e = np.empty_like(psi)
        eps = self.eps
        for r in range(len(zbar)):
            e[r] = psi[r] * (zbar[r] - self.beta * eps)
            eps = self.rho * eps + e[r]
        self.eps = eps
        return e

    def _window_gradients(self, m0: int, K: int, zbar: np.ndarray, hist) -> np.ndarray:
        """g[m] for m = m0 .. m0+K-1 and every target (K, n_targets)."""
        rows, T = slice(m0, m0 + K), self.columns
        if self.kind == "out":
            return hist.E[rows][:, T] * zbar[:, None]
        e = self._eligibility(hist.psi[rows][:, T], zbar)
        # ebar = kappa*ebar + e (no (1-kappa), spec 9.4); ebar_reg = kr*ebar_reg + (1-kr)*e
        ebar = lfilter([1.0], [1.0, -self.kappa], e, axis=0, zi=(self.kappa * self.ebar)[None])[0]
        kr = self.kappa_reg
        ebar_reg = lfilter([1.0], [1.0, -kr], (1.0 - kr) * e, axis=0,
                           zi=(kr * self.ebar_reg)[None])[0]
        self.ebar, self.ebar_reg = ebar[-1].copy(), ebar_reg[-1].copy()
        return hist.L[rows][:, T] * ebar + hist.R[rows][:, T] * ebar_reg

    def _compute_gradient(self, s: int, is_flush: bool, hist) -> None:
        D = s - self.t_last
        if not self.last_was_flush:
            self.c_rem = self.cutoff
            self.G = np.zeros_like(self.G)
            zcur = 1.0                                 # the spike with stamp t_last
        else:
            zcur = 0.0                                 # continue the replay interrupted by a flush
        m0 = self.t_last - 1
        K = min(self.c_rem, D)
        if K > 0:
            zbar = self._zbar_sequence(K, zcur)
            g = self._window_gradients(m0, K, zbar, hist)
            if self.each:
                self.w = self.opt.call_consecutive(m0 + 1, g, self.w)   # optimizer index m+1
            else:
                self.G = np.cumsum(np.vstack([self.G[None, :], g]), axis=0)[-1].copy()
        self.c_rem -= K
        self.n_decay += D - K
        if not is_flush and self.n_decay > 0:        # skipped steps decay in closed form (pow)
            nd = self.n_decay
            self.zbar *= math.pow(self.alpha, nd)
            if self.kind == "rec":
                self.ebar = self.ebar * math.pow(self.kappa, nd)
                self.ebar_reg = self.ebar_reg * math.pow(self.kappa_reg, nd)
                if self.adaptive:
                    self.eps = self.eps * math.pow(self.rho, nd)
            self.n_decay = 0
        if not is_flush and not self.each:
            self.w = self.opt.call(m0 + D, self.G, self.w)            # optimizer index s-1


# ------------------------------------------------------------------------------------------
# network
# ------------------------------------------------------------------------------------------
@dataclass
class History:
    """Archives indexed by step: psi, L, R of recurrent neurons, E of readouts."""

    psi: np.ndarray
    L: np.ndarray
    R: np.ndarray
    E: np.ndarray


def _default_delays(delays, shape):
    if delays is None:
        return np.ones(shape, dtype=np.int64)
    d = np.asarray(delays)
    if d.shape != shape or np.any(d < 1) or np.any(d != np.round(d)):
        raise ValueError(f"delays must be integers >= 1 of shape {shape}")
    return d.astype(np.int64)


def _build_groups(task, cfg, etas, rec, ro, delays_in, delays_rec, delays_out):
    """Synapse groups per source (parrots 0..n_in-1, then recurrent neurons)."""
    c_rec, c_out = steps_of(cfg.cutoff, cfg.dt), steps_of(cfg.cutoff_out, cfg.dt)
    rec_args = dict(cfg=cfg, etas=etas, alpha=rec.alpha, cutoff_steps=c_rec,
                    adaptive=rec.adaptive, rho=rec.rho)
    out_args = dict(cfg=cfg, etas=etas, alpha=ro.alpha, cutoff_steps=c_out,
                    adaptive=False, rho=rec.rho)
    groups = []
    for i in range(task.n_in):
        groups.append(_groups_of_column("rec", task.W_in[:, i], task.mask_in[:, i],
                                        delays_in[:, i], rec_args))
    for i in range(task.n_rec):
        gs = _groups_of_column("rec", task.W_rec[:, i], task.mask_rec[:, i], delays_rec[:, i],
                               rec_args)
        gs += _groups_of_column("out", task.W_out[:, i], np.ones(task.n_out, bool),
                                delays_out[:, i], out_args)
        groups.append(gs)
    return groups


def _groups_of_column(kind, w_col, mask_col, delay_col, args):
    out = []
    for d in np.unique(delay_col[mask_col]):
        T = np.nonzero(mask_col & (delay_col == d))[0]
        out.append(SynapseGroup(kind, T, w_col[T], int(d), **args))
    return out


def _input_event_stamps(task, n_steps):
    """Parrot events: generator spike at tau ms is re-emitted by the parrot with stamp tau+1."""
    ev = np.zeros((n_steps + 2, task.n_in), dtype=bool)
    for i, times in enumerate(task.input_spike_times):
        steps = np.rint(np.asarray(times)).astype(np.int64)
        if np.any(steps != np.asarray(times)) or len(np.unique(steps)) != len(steps):
            raise ValueError("input times must be distinct whole ms (multiplicity unsupported)")
        if np.any(steps == task.task_steps + 1):
            raise ValueError("an input spike at task + 1 ms would coincide with the forced "
                             "final spike (multiplicity 2 in NEST, unsupported here)")
        steps = steps[steps + 1 < n_steps + 2]
        ev[steps + 1, i] = True
    ev[task.task_steps + 2, :] = True              # forced final spike (task + 1 ms) via parrots
    return ev


def simulate_event(task, cfg: EventConfig, delays_in=None, delays_rec=None,
                   delays_out=None) -> EventResult:
    """Run the event-driven schedule on ``task`` (a ``sine_task.SineTask``)."""
    n_in, n_rec, n_out, T = task.n_in, task.n_rec, task.n_out, task.task_steps
    delays_in = _default_delays(delays_in, (n_rec, n_in))
    delays_rec = _default_delays(delays_rec, (n_rec, n_rec))
    delays_out = _default_delays(delays_out, (n_out, n_rec))
    d_max = int(max(delays_in.max(), delays_rec.max(), delays_out.max()))
    n_steps = T + 4 + d_max                         # the example's sim = task + 5 for d = 1

    etas = EtaSchedule()
    etas.set(cfg.eta)                               # the initial SetDefaults
    eta_changes = dict(cfg.eta_changes)
    rec, ro = RecurrentPopulation(cfg, n_rec), ReadoutPopulation(cfg, n_out)
    groups = _build_groups(task, cfg, etas, rec, ro, delays_in, delays_rec, delays_out)
    delay_values = sorted({g.delay for gs in groups for g in gs})

    hist = History(psi=np.zeros((n_steps + 2, n_rec)), L=np.zeros((n_steps + 2, n_rec)),
                   R=np.zeros((n_steps + 2, n_rec)), E=np.zeros((n_steps + 2, n_out)))
    n_src = n_in + n_rec
    ev = np.zeros((n_steps + 2 + d_max, n_src), dtype=np.int8)     # 1 spike, 2 flush, by stamp
    ev[:n_steps + 2, :n_in] = _input_event_stamps(task, n_steps)
    targets = task.target_over_task()
    y_rec, t_rec = np.zeros((n_out, n_steps)), np.zeros((n_out, n_steps))
    spikes = [[] for _ in range(n_rec)]
    E_prev = np.zeros(n_out)

    for n in range(n_steps):
        if n in eta_changes:
            etas.set(eta_changes[n])
        x_rec, x_out = np.zeros(n_rec), np.zeros(n_out)
        if n > 0:
            # Phase A: learning signals of step n-1 into history entry n-2, readout order
            if n >= 2:
                for k in range(n_out):
                    hist.L[n - 2] += task.B[:, k] * E_prev[k]
            # Phase B: events, ascending source id
            _deliver(n, ev, groups, delay_values, hist, x_rec, x_out, n_in)
            if n == T + 1:                           # forced final spike, static, highest id
                x_rec += FINAL_SPIKE_WEIGHT
        # Phase C
        psi, R, spk, flush = rec.update(n, x_rec)
        hist.psi[n], hist.R[n] = psi, R
        ev[n + 1, n_in:] = np.where(spk, 1, np.where(flush, 2, 0))
        for j in np.nonzero(spk)[0]:
            spikes[j].append(n)
        y_star = targets[:, n - 2] if 2 <= n <= T + 1 else (targets[:, -1] if n > T + 1
                                                            else np.zeros(n_out))
        lam = 1.0 if n >= 2 else 0.0
        E_prev, y_rec[:, n], t_rec[:, n] = ro.update(x_out, y_star, lam)
        hist.E[n] = E_prev

    y, yt = y_rec[:, 2:T + 2], t_rec[:, 2:T + 2]
    return EventResult(loss=loss_per_iteration(y, yt, task.n_iter), readout=y, target=yt,
                       spike_steps=[np.array(s, dtype=np.int64) for s in spikes],
                       **_dense_weights(task, groups), extra={"history": hist})


def _deliver(n, ev, groups, delay_values, hist, x_rec, x_out, n_in):
    """Phase B of step n: every group whose (delay-shifted) event falls on step n."""
    if len(delay_values) == 1:
        d = delay_values[0]
        sources = np.nonzero(ev[n - d + 1])[0] if n - d + 1 >= 0 else []
    else:
        rows = [ev[n - d + 1] for d in delay_values if n - d + 1 >= 0]
        sources = np.nonzero(np.any(rows, axis=0))[0] if rows else []
    for p in sources:
        for g in groups[p]:
            stamp = n - g.delay + 1
            kind = ev[stamp, p] if stamp >= 0 else 0
            if kind == 0:
                continue
            g.send(n, kind == 2, hist)
            if kind == 1:
                x = x_rec if g.kind == "rec" else x_out
                x[g.targets] += g.w


def _dense_weights(task, groups):
    W_in, W_rec, W_out = np.zeros_like(task.W_in), np.zeros_like(task.W_rec), np.zeros_like(task.W_out)
    for p, gs in enumerate(groups):
        for g in gs:
            if p < task.n_in:
                W_in[g.targets, p] = g.w
            elif g.kind == "rec":
                W_rec[g.targets, p - task.n_in] = g.w
            else:
                W_out[g.targets, p - task.n_in] = g.w
    return dict(W_in=W_in, W_rec=W_rec, W_out=W_out)
