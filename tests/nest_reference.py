"""NEST 3.10 reference harness for eprop-gen's neuron comparison tests.

This is a helper module (not a test file).  It runs single NEST neurons
(``iaf_psc_delta``, ``iaf_psc_exp``, ``iaf_psc_alpha``) through PyNEST, used
strictly as a black box, and returns numpy arrays.  Every call starts from a
fresh kernel (``ResetKernel``, verbosity ERROR, ``resolution = dt``,
``local_num_threads = 1``), records the recordables (default ``V_m``) with a
multimeter at ``interval = dt`` and records spikes with a ``spike_recorder``.

Everything in this docstring was established by experiment on NEST 3.10.0
(see ``tests/test_nest_reference.py``, which re-checks each statement).

eprop-gen engine semantics (the reference frame of this module)
----------------------------------------------------------------
* Step n integrates (n*dt, (n+1)*dt]; a neuron spiking in step n has spike time
  (n+1)*dt; the state recorded after step n carries time (n+1)*dt.
* An input spike at time t = s*dt through a synapse with delay d steps is added
  to its target variable at the END of step s+d-1 (after that step's
  propagation), i.e. it first affects the state recorded at t + d*dt.
  (delta: V jumps by w; psc_exp: I_syn jumps by w; psc_alpha: dI jumps by
  w*e/tau_syn.)
* A step current uses in step n the value amplitudes[k] for the last k with
  times[k] <= n*dt.

Timing facts for NEST 3.10 (all verified, dt = 0.1 and dt = 1.0)
----------------------------------------------------------------
Recording
  * multimeter(interval=dt) stamps the state after step n with (n+1)*dt: the
    first sample is at t = dt, there is no sample at t = 0.  => identical to
    eprop-gen's recorded times; no conversion.
  * Samples arrive in the multimeter one min_delay slice late: after
    ``Simulate(T)`` the samples of the last slice (up to min_delay, which is
    1.0 ms when no connection sets it lower, e.g. 10 steps at dt=0.1) are
    missing.  E.g. Simulate(2.0) at dt=0.1 without connections yields only 10
    samples.  The harness therefore keeps simulating extra time until all
    round(t_sim/dt) samples exist and truncates.
  * spike_recorder: a spike emitted in step n has time (n+1)*dt  => identical,
    no conversion.  Threshold test is V_m >= V_th (equality fires).
    NEST's ms values come from its integer tic clock (e.g. 13.9) while
    (n+1)*dt in floating point may be 13.900000000000002: compare spike
    *steps* rint(t/dt) exactly, not the float times.
  * Initial V_m defaults to E_L (settable as the parameter "V_m").
Spike input (spike_generator -> static_synapse, weight w, delay D = d*dt ms)
  * A generator spike at t = s*dt with delay d steps is added at the end of
    step s+d-1, i.e. first visible in the sample at t + d*dt.  => identical to
    eprop-gen: pass the same times and ``delay = d*dt`` ms.  No parrot neurons
    are needed for static synapses.
  * NEST rejects spike time 0 ("spike time cannot be set to 0"), spike times
    must be on the grid and sorted.  eprop-gen spike times must therefore be
    >= dt for this harness (a spike at 0 with delay d is equivalent to a spike
    at dt with delay d-1, if a test needs it).
  * Repeated times in ``spike_times`` produce repeated spikes (they add up).
  * ``spike_weights`` (per spike) MULTIPLY the connection weight; the harness
    uses connection weight 1.0 with per-spike weights, so weights are exact.
  * iaf_psc_exp / iaf_psc_alpha route by sign: w >= 0 -> excitatory synapse
    (tau_syn_ex), w < 0 -> inhibitory synapse (tau_syn_in).  eprop-gen's port
    "ex" (w >= 0) / "in" (w < 0) is the same thing.  iaf_psc_delta: w (mV) of
    either sign is added to V_m.
Currents
  * ``I_e`` is used from step 0 on: the first sample (t = dt) is
    E_L + I_e*tau_m/C_m*(1 - exp(-dt/tau_m)) exactly.  => identical.
  * step_current_generator, connection delay c steps, amplitude_time T_g:
    the amplitude is first used in step T_g/dt + c (first visible in the sample
    at T_g + (c+1)*dt).  I.e. the neuron uses a current event one step after
    its delivery.  With the minimum delay c = 1:
        NEST amplitude_time = eprop-gen time - dt     (nest_current_times)
    NEST requires amplitude_times > 0, so eprop-gen current times 0 and dt
    cannot be expressed with the generator.
  * Changing ``I_e`` between two Simulate calls takes effect exactly in the
    first step of the next call.  The harness uses this ("I_e" method) to
    realise arbitrary step currents (including times 0 and dt) by splitting
    the simulation at the current change times; "generator" uses the
    step_current_generator; "auto" picks the generator when all times >= 2*dt.
    Both methods agree to round-off (checked in the tests).
Refractoriness (t_ref = r*dt, r = round(t_ref/dt))
  * After a spike in step n, V_m = V_reset is recorded at (n+1)*dt ...
    (n+1+r)*dt (r+1 samples; 1 sample for t_ref = 0); steps n+1 .. n+r are
    clamped, step n+r+1 integrates normally again (starting from V_reset).
  * iaf_psc_delta (default ``refractory_input=False``): input spikes whose
    arrival step is n (the spiking step itself: added, then reset) or
    n+1 .. n+r are lost; a spike arriving in step n+r+1 counts.  With
    ``refractory_input=True`` they are instead added when refractoriness
    ends (not used by eprop-gen).
  * iaf_psc_exp / iaf_psc_alpha: the synaptic currents keep decaying and
    keep receiving spikes during refractoriness; only V_m is clamped.
V_min
  * iaf_psc_delta: V_min default -DBL_MAX (= -1.797e308, effectively -inf);
    iaf_psc_alpha: V_min default -inf; iaf_psc_exp has no V_min.  With V_min
    set, V_m is clipped from below after the input is added.  eprop-gen does
    not model V_min; tests keep the default.
Singular propagators (tau_m == tau_syn)
  * NEST accepts tau_m == tau_syn_ex/in for iaf_psc_exp and iaf_psc_alpha and
    uses the analytic limit (e.g. psc_exp: V-gain of I_syn over one step =
    dt/C_m*exp(-dt/tau_m)).  Compared with an exact 60-digit solution
    (``simulate_exact``) over random input:
      - iaf_psc_exp: exact to round-off (<= 2e-13 mV) for every mismatch
        tau_syn = tau_m*(1+eps), eps = 0, 1e-14 .. 1e-3.
      - iaf_psc_alpha: exact to round-off at eps = 0 and eps <= ~1e-10
        (eps = 1e-10: 1.2e-11 mV at dt = 1.0, 1e-13 mV at dt = 0.1).  For
        1e-9 <~ eps <~ 1e-6 (dt = 1.0) / 1e-5 (dt = 0.1) NEST still uses the
        singular limit, and its PSP deviates from the exact one by about
        1.3e-2*eps (dt = 1.0) / 1.4e-4*eps (dt = 0.1) of the PSP peak, e.g.
        2e-7 mV (1.3e-8 of the peak) at eps = 1e-6, dt = 1.0.  An exact
        simulator can therefore only be held to 1e-9 against NEST's alpha
        neuron for eps <~ 1e-8 or eps >~ 1e-5; the 1e-10 case is fine.
psc_alpha weight
  * A spike of weight w adds w*e/tau_syn to dI, so the PSC peaks at exactly
    w pA at tau_syn after arrival.

API
---
``run_nest(model, params, *, dt, t_sim, spike_trains=(), current=None,
n_neurons=1, sources=None, connections=None, record=("V_m",),
current_method="auto", param_changes=())`` -> dict with
  "times" (T,) ms = (1..T)*dt as stamped by NEST, "steps" (T,) int,
  one (T, n) array per recordable (e.g. "V_m"),
  "spike_times" (K,) ms and "spike_senders" (K,) neuron index 0..n-1, sorted by
  (time, sender) and restricted to t <= t_sim.
All times passed in are in eprop-gen semantics; conversion is done here.
Parameter changes between Simulate calls (``param_changes``) take effect from the
next step on (NEST recomputes its propagators at every Simulate call).

Other helpers: ``nest_spike_times``, ``nest_delay``, ``nest_current_times`` (the
conversions above), ``current_per_step``, ``poisson_sources`` (test input) and
``simulate_exact`` (independent exact-integration simulator in eprop-gen semantics,
numpy + mpmath, same arguments as ``run_nest``; it agrees with NEST to <= 2e-13 mV on
random input, see tests/test_nest_reference.py).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

#: models whose spike input has one port (weights of any sign jump V_m, or feed the readout)
DELTA_MODELS = ("iaf_psc_delta", "eprop_iaf", "eprop_iaf_adapt", "eprop_iaf_psc_delta",
                "eprop_iaf_psc_delta_adapt", "eprop_readout", "eprop_iaf_bsshslm_2020",
                "eprop_iaf_adapt_bsshslm_2020")
#: the classic models the neuron comparison tests cover
MODELS = ("iaf_psc_delta", "iaf_psc_exp", "iaf_psc_alpha")
#: everything run_nest can drive (the e-prop neurons are compared in test_eprop_neurons.py)
SUPPORTED_MODELS = MODELS + DELTA_MODELS[1:]

#: connection delay (steps) used for the step_current_generator
CURRENT_DELAY_STEPS = 1


# --------------------------------------------------------------------------------------
# time conversion helpers (pure, no NEST needed)
# --------------------------------------------------------------------------------------
def to_steps(times_ms, dt: float) -> np.ndarray:
    """Grid times (ms) -> integer step indices; raises if a time is off the grid."""
    t = np.atleast_1d(np.asarray(times_ms, dtype=float))
    s = np.rint(t / dt)
    if t.size and np.max(np.abs(t / dt - s)) > 1e-6:
        raise ValueError(f"times not on the dt={dt} grid: {t[np.abs(t / dt - s) > 1e-6][:5]}")
    return s.astype(np.int64)


def nest_spike_times(our_times, dt: float) -> np.ndarray:
    """eprop-gen spike times -> NEST spike_generator spike_times (same delay).

    The mapping is the identity (snapped to the grid); spike times must be >= dt
    because NEST cannot emit a spike at t = 0.
    """
    s = to_steps(our_times, dt)
    if s.size and s.min() < 1:
        raise ValueError("NEST spike_generator cannot emit spikes at t <= 0; use times >= dt "
                         "(a spike at 0 with delay d equals a spike at dt with delay d-1)")
    if s.size and np.any(np.diff(s) < 0):
        raise ValueError("spike times must be sorted")
    return s * dt


def nest_delay(delay_steps: int, dt: float) -> float:
    """eprop-gen synaptic delay (steps) -> NEST delay (ms); identical."""
    d = int(delay_steps)
    if d < 1:
        raise ValueError("delay must be >= 1 step")
    return d * dt


def nest_current_times(our_times, dt: float, delay_steps: int = CURRENT_DELAY_STEPS) -> np.ndarray:
    """eprop-gen step-current times -> NEST step_current_generator amplitude_times.

    For a generator connected with ``delay_steps`` (default 1): the amplitude at
    NEST time T_g is used in step T_g/dt + delay_steps, while eprop-gen uses the
    value with time t in step t/dt.  Hence T_g = t - delay_steps*dt, which must
    be > 0 (i.e. t >= (delay_steps+1)*dt).
    """
    s = to_steps(our_times, dt) - int(delay_steps)
    if s.size and s.min() < 1:
        raise ValueError(f"current times < {(delay_steps + 1) * dt} ms cannot be expressed with a "
                         "step_current_generator; use current_method='I_e'")
    return s * dt


def current_per_step(times, amplitudes, dt: float, n_steps: int) -> np.ndarray:
    """Per-step current (eprop-gen semantics): value in step n = amplitudes[k] for the
    last k with times[k] <= n*dt (0 before the first time).  Returns (n_steps, ...)."""
    s = to_steps(times, dt)
    a = np.asarray(amplitudes, dtype=float)
    out = np.zeros((n_steps,) + a.shape[1:])
    for k in range(len(s)):
        if s[k] < n_steps:
            out[max(s[k], 0):] = a[k]
    return out


# --------------------------------------------------------------------------------------
# NEST runner
# --------------------------------------------------------------------------------------
def _nest():
    import nest  # imported lazily so that this module can be imported without NEST

    return nest


def _quiet(nest) -> None:
    if hasattr(nest, "VerbosityLevel"):
        nest.verbosity = nest.VerbosityLevel.ERROR  # NEST >= 3.9 spelling of M_ERROR
    else:  # pragma: no cover
        nest.set_verbosity("M_ERROR")


def _per_neuron(params: dict, n: int) -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, (str, bool)):      # e.g. surrogate_gradient_function, regular_spike_arrival
            out[k] = v
            continue
        a = np.asarray(v, dtype=float)
        if a.ndim == 0:
            out[k] = float(a)
        else:
            if a.shape != (n,):
                raise ValueError(f"parameter {k}: expected scalar or length {n}, got shape {a.shape}")
            out[k] = [float(x) for x in a]
    return out


def _check_port(model: str, port: str, w: np.ndarray) -> None:
    if model in DELTA_MODELS:
        if port not in ("spikes", "ex", "in"):
            raise ValueError(f"bad port {port!r} for {model}")
        return
    if port == "ex":
        if np.any(w < 0):
            raise ValueError("port 'ex' needs weights >= 0 (NEST routes by sign)")
    elif port == "in":
        if np.any(w > 0):
            raise ValueError("port 'in' needs weights < 0 (NEST routes by sign)")
    else:
        raise ValueError(f"bad port {port!r} for {model}")


def run_nest(model: str, params: dict | None = None, *, dt: float, t_sim: float,
             spike_trains: Sequence[dict] = (),
             current: dict | None = None,
             n_neurons: int = 1,
             sources: Sequence[Iterable[float]] | None = None,
             connections: dict | None = None,
             record: Sequence[str] = ("V_m",),
             current_method: str = "auto",
             param_changes: Sequence[tuple[float, dict]] = ()) -> dict:
    """Simulate ``n_neurons`` NEST neurons of ``model`` for ``t_sim`` ms.

    params: NEST parameter names (C_m, tau_m, tau_syn_ex, tau_syn_in, t_ref, E_L,
        V_reset, V_th, I_e, and the initial V_m); each value scalar or length n.
    spike_trains: list of dicts
        {"times": ms (on grid, >= dt), "weights": scalar or per-spike array,
         "delay": steps (int >= 1), "port": "ex"|"in"|"spikes",
         "targets": optional neuron indices (default: all neurons)}.
    sources / connections: alternative, mirrors eprop-gen's ``Explicit`` rule:
        sources = list of spike-time arrays (one per source);
        connections = {"sources": [...], "targets": [...], "weights": [...],
                       "delays": [...steps], "ports": "ex"|"in"|"spikes" or list}.
    current: {"times": ms, "amplitudes": (K,) or (K, n) pA} step current injected into
        every neuron, in eprop-gen semantics (see module docstring).
    current_method: "generator" | "I_e" | "auto".
    param_changes: [(t_ms, {name: scalar or length-n values}), ...]: set between two
        Simulate calls so that the new values are used from step t_ms/dt on (NEST
        recomputes its propagators at every Simulate call).
    """
    if model not in SUPPORTED_MODELS:
        raise ValueError(f"unsupported model {model!r}")
    nest = _nest()
    n = int(n_neurons)
    n_steps = int(round(t_sim / dt))
    if abs(n_steps * dt - t_sim) > 1e-9 * max(1.0, t_sim):
        raise ValueError("t_sim must be a multiple of dt")
    params = dict(params or {})

    nest.ResetKernel()
    _quiet(nest)
    nest.set(resolution=dt, local_num_threads=1)

    pop = nest.Create(model, n)
    base_p = _per_neuron(params, n)
    if base_p:
        pop.set(base_p)
    gids = np.asarray(pop.tolist(), dtype=np.int64)
    gid0 = int(gids[0])

    max_delay = 1
    # ---- spike input: spike_trains ---------------------------------------------------
    for tr in spike_trains:
        times = np.asarray(tr["times"], dtype=float)
        if times.size == 0:
            continue
        d = int(tr.get("delay", 1))
        max_delay = max(max_delay, d)
        w = np.asarray(tr.get("weights", 1.0), dtype=float)
        port = tr.get("port", "spikes" if model in DELTA_MODELS else ("ex" if np.all(w >= 0) else "in"))
        _check_port(model, port, w)
        gp = {"spike_times": nest_spike_times(times, dt)}
        if w.ndim == 0:
            cw = float(w)
        else:
            if w.shape != times.shape:
                raise ValueError("per-spike weights must match times")
            gp["spike_weights"] = w.tolist()
            cw = 1.0
        gen = nest.Create("spike_generator", params=gp)
        tg = tr.get("targets")
        tgt = pop if tg is None else pop[sorted(int(i) for i in np.atleast_1d(tg))]
        nest.Connect(gen, tgt, "all_to_all",
                     syn_spec={"synapse_model": "static_synapse", "weight": cw,
                               "delay": nest_delay(d, dt)})

    # ---- spike input: sources + explicit connections ---------------------------------
    if connections is not None:
        if sources is None:
            raise ValueError("connections need sources")
        gens = nest.Create("spike_generator", len(sources))
        for i, st in enumerate(sources):
            st = np.asarray(st, dtype=float)
            if st.size:
                gens[i].set(spike_times=nest_spike_times(st, dt))
        cs = np.asarray(connections["sources"], dtype=np.int64)
        ct = np.asarray(connections["targets"], dtype=np.int64)
        cw = np.broadcast_to(np.asarray(connections["weights"], dtype=float), cs.shape).copy()
        cd = np.broadcast_to(np.asarray(connections.get("delays", 1), dtype=np.int64), cs.shape).copy()
        ports = connections.get("ports")
        if ports is None:
            ports = ["spikes" if model in DELTA_MODELS else ("ex" if x >= 0 else "in") for x in cw]
        elif isinstance(ports, str):
            ports = [ports] * len(cs)
        for p_, w_ in zip(ports, cw):
            _check_port(model, p_, np.asarray(w_))
        if cs.size:
            if cd.min() < 1:
                raise ValueError("delays must be >= 1 step")
            max_delay = max(max_delay, int(cd.max()))
            src_ids = np.asarray(gens.tolist(), dtype=np.int64)[cs]
            nest.Connect(src_ids, gids[ct], "one_to_one",
                         syn_spec={"synapse_model": "static_synapse",
                                   "weight": cw, "delay": cd * dt})

    # ---- current & parameter changes -------------------------------------------------
    changes: dict[int, dict] = {}
    for t_c, pc in param_changes:
        s_c = int(to_steps([t_c], dt)[0])
        if not 0 <= s_c <= n_steps:
            raise ValueError("param change outside the simulated interval")
        changes.setdefault(s_c, {}).update(_per_neuron(pc, n))
    ie_amp = None  # (steps, (K, n) amplitudes) when the current is realised through I_e
    if current is not None:
        ct_steps = to_steps(current["times"], dt)
        amps = np.asarray(current["amplitudes"], dtype=float)
        if amps.shape[0] != ct_steps.shape[0]:
            raise ValueError("current times/amplitudes length mismatch")
        if np.any(np.diff(ct_steps) <= 0):
            raise ValueError("current times must be strictly increasing")
        amps2 = amps.reshape(len(ct_steps), -1)
        if amps2.shape[1] not in (1, n):
            raise ValueError("amplitudes must be (K,) or (K, n)")
        amps2 = np.broadcast_to(amps2, (len(ct_steps), n))
        method = current_method
        if method == "auto":
            method = "generator" if (ct_steps.size == 0 or ct_steps.min() >= CURRENT_DELAY_STEPS + 1) else "I_e"
        if method == "generator":
            if ct_steps.size:
                gtimes = nest_current_times(ct_steps * dt, dt)
                same = np.all(amps2 == amps2[:, :1])
                cols = [0] if same else list(range(n))
                for j in cols:
                    g = nest.Create("step_current_generator",
                                    params={"amplitude_times": gtimes.tolist(),
                                            "amplitude_values": amps2[:, j].tolist()})
                    tgt = pop if same else pop[j]
                    nest.Connect(g, tgt, "all_to_all",
                                 syn_spec={"delay": CURRENT_DELAY_STEPS * dt})
        elif method == "I_e":
            ie_amp = (ct_steps, amps2)
        else:
            raise ValueError(f"bad current_method {current_method!r}")
    bounds = {0, n_steps} | {s for s in changes if s < n_steps}
    if ie_amp is not None:
        bounds |= {int(s) for s in ie_amp[0] if 0 < s < n_steps}
    bounds = sorted(bounds)
    segments = []  # (start step, end step, dict to set before the segment)
    ie_base = np.broadcast_to(np.asarray(params.get("I_e", 0.0), dtype=float), (n,)).copy()
    for a, b in zip(bounds[:-1], bounds[1:]):
        upd = dict(changes.get(a, {}))
        if "I_e" in upd:
            ie_base = np.broadcast_to(np.asarray(upd["I_e"], dtype=float), (n,)).copy()
        if ie_amp is not None:
            k = np.nonzero(ie_amp[0] <= a)[0]
            ie = ie_base if k.size == 0 else ie_base + ie_amp[1][k[-1]]
            upd["I_e"] = [float(x) for x in ie]
        segments.append((a, b, upd))

    # ---- recorders -------------------------------------------------------------------
    mm = nest.Create("multimeter", params={"record_from": list(record), "interval": dt})
    nest.Connect(mm, pop)
    sr = None
    if model != "eprop_readout":            # readouts never spike; NEST refuses the connection
        sr = nest.Create("spike_recorder")
        nest.Connect(pop, sr)

    # ---- simulate --------------------------------------------------------------------
    for a, b, upd in segments:
        if upd:
            pop.set(upd)
        if b > a:
            nest.Simulate((b - a) * dt)
    # samples of the last min_delay slice are delivered late: keep going
    extra = (max(max_delay, int(math.ceil(1.0 / dt))) + 2)
    for _ in range(10):
        ev = mm.get("events")
        if np.count_nonzero(np.rint(np.asarray(ev["times"]) / dt) <= n_steps) >= n_steps * n:
            break
        nest.Simulate(extra * dt)
    ev = mm.get("events")

    times = np.asarray(ev["times"], dtype=float)
    senders = np.asarray(ev["senders"], dtype=np.int64) - gid0
    steps = np.rint(times / dt).astype(np.int64)
    keep = (steps >= 1) & (steps <= n_steps)
    if np.count_nonzero(keep) != n_steps * n:
        raise RuntimeError("multimeter did not deliver all samples")
    out: dict = {}
    grid_t = np.full(n_steps, np.nan)
    grid_t[steps[keep] - 1] = times[keep]
    out["times"] = grid_t
    out["steps"] = np.arange(1, n_steps + 1)
    for r in record:
        a = np.full((n_steps, n), np.nan)
        a[steps[keep] - 1, senders[keep]] = np.asarray(ev[r], dtype=float)[keep]
        if np.isnan(a).any():
            raise RuntimeError(f"missing samples for {r}")
        out[r] = a

    se = sr.get("events") if sr is not None else {"times": [], "senders": []}
    st = np.asarray(se["times"], dtype=float)
    ss = np.asarray(se["senders"], dtype=np.int64) - gid0
    k = np.rint(st / dt) <= n_steps
    st, ss = st[k], ss[k]
    order = np.lexsort((ss, st))
    out["spike_times"] = st[order]
    out["spike_senders"] = ss[order]
    return out


# --------------------------------------------------------------------------------------
# Independent exact-integration reference in eprop-gen semantics (numpy + mpmath).
# Written from the model equations, not from NEST; used to check the harness itself.
# --------------------------------------------------------------------------------------
NEST_DEFAULTS = {
    "C_m": 250.0, "tau_m": 10.0, "tau_syn_ex": 2.0, "tau_syn_in": 2.0, "t_ref": 2.0,
    "E_L": -70.0, "V_reset": -70.0, "V_th": -55.0, "I_e": 0.0,
}


def _propagators(model: str, h: float, C: float, tau_m: float, tau_s: float | None):
    """Exact one-step propagators, evaluated in 60-digit arithmetic.

    V' = -V/tau_m + I/C.  P22 = exp(-h/tau_m), P20 = tau_m/C*(1-P22) (constant current),
    Ps1 = (1/C) int_0^h e^{-(h-s)/tau_m} e^{-s/tau_s} ds  (gain of I_syn(t) on V(t+h)),
    Ps2 = (1/C) int_0^h e^{-(h-s)/tau_m} s e^{-s/tau_s} ds (gain of dI(t) on V(t+h), alpha).
    """
    import mpmath as mp

    with mp.workdps(60):
        h_, C_, tm = mp.mpf(h), mp.mpf(C), mp.mpf(tau_m)
        P22 = mp.exp(-h_ / tm)
        P20 = tm / C_ * (1 - P22)
        out = {"P22": float(P22), "P20": float(P20)}
        if tau_s is not None:
            ts = mp.mpf(tau_s)
            a = 1 / ts - 1 / tm
            if a == 0:
                i0, i1 = h_, h_ ** 2 / 2
            else:
                i0 = -mp.expm1(-a * h_) / a
                i1 = (1 - mp.exp(-a * h_) * (1 + a * h_)) / a ** 2
            out["P11"] = float(mp.exp(-h_ / ts))
            out["Ps1"] = float(P22 * i0 / C_)
            out["Ps2"] = float(P22 * i1 / C_)
            out["e_tau"] = float(mp.e / ts)
    return out


def input_per_step(model: str, dt: float, n_steps: int, n: int,
                   spike_trains: Sequence[dict] = (), sources=None, connections=None):
    """Summed input weight per (step of arrival, neuron) for each port, eprop-gen semantics:
    a spike at s*dt with delay d is added at the end of step s+d-1."""
    ports = ("spikes",) if model in DELTA_MODELS else ("ex", "in")
    acc = {p: np.zeros((n_steps, n)) for p in ports}

    def add(port, step, tgt, w):
        if model in DELTA_MODELS:
            port = "spikes"
        if 0 <= step < n_steps:
            acc[port][step, tgt] += w

    for tr in spike_trains:
        times = np.asarray(tr["times"], dtype=float)
        s = to_steps(times, dt)
        d = int(tr.get("delay", 1))
        w = np.broadcast_to(np.asarray(tr.get("weights", 1.0), dtype=float), s.shape)
        tg = np.arange(n) if tr.get("targets") is None else np.atleast_1d(tr["targets"])
        for si, wi in zip(s, w):
            port = tr.get("port") or ("ex" if wi >= 0 else "in")
            for j in tg:
                add(port, si + d - 1, int(j), wi)
    if connections is not None:
        cs = np.asarray(connections["sources"], dtype=np.int64)
        ct = np.asarray(connections["targets"], dtype=np.int64)
        cw = np.broadcast_to(np.asarray(connections["weights"], dtype=float), cs.shape)
        cd = np.broadcast_to(np.asarray(connections.get("delays", 1), dtype=np.int64), cs.shape)
        for i in range(len(cs)):
            for si in to_steps(np.asarray(sources[cs[i]], dtype=float), dt):
                add("ex" if cw[i] >= 0 else "in", si + cd[i] - 1, int(ct[i]), cw[i])
    return acc


def simulate_exact(model: str, params: dict | None = None, *, dt: float, t_sim: float,
                   spike_trains: Sequence[dict] = (), current: dict | None = None,
                   n_neurons: int = 1, sources=None, connections=None,
                   param_changes: Sequence[tuple[float, dict]] = ()) -> dict:
    """Exact-integration simulation in eprop-gen semantics (same arguments and result
    layout as :func:`run_nest`, V_m only).  Per step n, for each neuron:
      not refractory: V <- P22 V + Ps1*I_syn + Ps2*dI + P20*(I_e + I_stim[n])
                      (delta: then V += arriving weights)
      refractory:     V stays, counter -= 1 (delta: arriving weights are dropped)
      psc_exp:   I_syn <- P11 I_syn + arriving w
      psc_alpha: I_syn <- P11 (I_syn + h dI);  dI <- P11 dI + e/tau_syn * arriving w
      if not refractory and V >= V_th: spike at (n+1) dt, V <- V_reset, counter <- t_ref/dt.
    """
    n = int(n_neurons)
    n_steps = int(round(t_sim / dt))
    P = dict(NEST_DEFAULTS)
    P.update(params or {})
    pv = {k: np.broadcast_to(np.asarray(v, dtype=float), (n,)).copy() for k, v in P.items()}
    E_L = pv["E_L"]
    y = (pv["V_m"] - E_L).copy() if "V_m" in pv else np.zeros(n)
    syn = () if model in DELTA_MODELS else ("ex", "in")

    def make_props():
        return [
            {p: _propagators(model, dt, pv["C_m"][j], pv["tau_m"][j],
                             None if p == "spikes" else pv["tau_syn_" + p][j])
             for p in (syn or ("spikes",))}
            for j in range(n)
        ]

    props = make_props()
    changes: dict[int, dict] = {}
    for t_c, pc in param_changes:
        changes.setdefault(int(to_steps([t_c], dt)[0]), {}).update(pc)
    acc = input_per_step(model, dt, n_steps, n, spike_trains, sources, connections)
    I_stim = np.zeros((n_steps, n))
    if current is not None:
        a = np.asarray(current["amplitudes"], dtype=float)
        I_stim = np.broadcast_to(
            current_per_step(current["times"], a.reshape(len(a), -1), dt, n_steps), (n_steps, n))
    I = {p: np.zeros(n) for p in syn}
    dI = {p: np.zeros(n) for p in syn}
    ref = np.zeros(n, dtype=np.int64)
    ref_steps = np.rint(pv["t_ref"] / dt).astype(np.int64)
    V = np.empty((n_steps, n))
    sp_t, sp_s = [], []
    for k in range(n_steps):
        if k in changes:
            pc = changes[k]
            for key, v in pc.items():
                if key != "V_m":
                    new = np.broadcast_to(np.asarray(v, dtype=float), (n,))
                    if key == "E_L":  # absolute V_m is kept
                        y -= new - pv["E_L"]
                    pv[key] = new.copy()
            E_L = pv["E_L"]
            if "V_m" in pc:
                y = np.broadcast_to(np.asarray(pc["V_m"], dtype=float), (n,)) - E_L
            props = make_props()
            ref_steps = np.rint(pv["t_ref"] / dt).astype(np.int64)
        for j in range(n):
            pr = props[j]
            p0 = pr[syn[0] if syn else "spikes"]
            if ref[j] == 0:
                yn = p0["P22"] * y[j] + p0["P20"] * (pv["I_e"][j] + I_stim[k, j])
                for p in syn:
                    yn += pr[p]["Ps1"] * I[p][j]
                    if model == "iaf_psc_alpha":
                        yn += pr[p]["Ps2"] * dI[p][j]
                if model in DELTA_MODELS:
                    yn += acc["spikes"][k, j]
                y[j] = yn
            else:
                ref[j] -= 1
            for p in syn:
                if model == "iaf_psc_exp":
                    I[p][j] = pr[p]["P11"] * I[p][j] + acc[p][k, j]
                else:
                    I[p][j] = pr[p]["P11"] * (I[p][j] + dt * dI[p][j])
                    dI[p][j] = pr[p]["P11"] * dI[p][j] + pr[p]["e_tau"] * acc[p][k, j]
            if ref[j] == 0 and y[j] >= pv["V_th"][j] - E_L[j]:
                sp_t.append((k + 1) * dt)
                sp_s.append(j)
                y[j] = pv["V_reset"][j] - E_L[j]
                ref[j] = ref_steps[j]
        V[k] = y + E_L
    st = np.asarray(sp_t)
    ss = np.asarray(sp_s, dtype=np.int64)
    order = np.lexsort((ss, st))
    return {"times": np.arange(1, n_steps + 1) * dt, "steps": np.arange(1, n_steps + 1),
            "V_m": V, "spike_times": st[order], "spike_senders": ss[order]}


# --------------------------------------------------------------------------------------
# input generation shared by the tests
# --------------------------------------------------------------------------------------
def poisson_sources(rng: np.random.Generator, n_sources: int, rate_hz: float, t_sim: float,
                    dt: float, t_start: float | None = None) -> list[np.ndarray]:
    """Poisson-like spike trains on the dt grid: per step a Poisson count (repeats allowed,
    they become spike multiplicities), times in [max(dt, t_start), t_sim]."""
    n_steps = int(round(t_sim / dt))
    s_min = max(1, int(round((t_start or dt) / dt)))
    out = []
    for _ in range(n_sources):
        counts = rng.poisson(rate_hz * dt / 1000.0, n_steps + 1)
        steps = np.repeat(np.arange(n_steps + 1), counts)
        steps = steps[steps >= s_min]
        out.append(steps * dt)
    return out
