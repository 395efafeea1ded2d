"""The generated e-prop replay kernels (from the derived eligibility and the model's learning:
section) against our NEST-bitwise numpy reference of eprop_synapse (tests/eprop_ref/numpy_event.py),
on synthetic histories: random psi, L, R and random event stamps with flush events, every optimizer
mode. This checks what the compiler generates, independently of the network engine."""
import ctypes
import math

import numpy as np
import pytest

import eprop_gen as eg
from eprop_gen.engine import native, plasticity
from eprop_ref.numpy_event import EtaSchedule, EventConfig, SynapseGroup
from eprop_ref.numpy_event import History as ReferenceHistory

STEPS, N_TARGETS = 512, 5      # the history ring holds a power of two of steps


def events(rng, flush_every=None):
    """Increasing stamps >= 1 with gaps of 1..60 steps; some flush events in between."""
    stamps, t = [], int(rng.integers(1, 5))
    while t < STEPS - 2:
        stamps.append((t, False))
        gap = int(rng.integers(1, 60))
        if flush_every and gap > flush_every:
            for f in range(t + flush_every, min(t + gap, STEPS - 2), flush_every):
                stamps.append((f, True))
        t += gap
    return stamps


def run_both(model_name, kind, cfg, seed, shared=False):
    rng = np.random.default_rng(seed)
    psi = rng.uniform(0, 0.3, (STEPS, N_TARGETS)) * (rng.random((STEPS, N_TARGETS)) < 0.7)
    L = rng.normal(0, 1, (STEPS, N_TARGETS))
    R = rng.normal(0, 0.1, (STEPS, N_TARGETS))
    w0 = rng.normal(0, 0.5, N_TARGETS)
    stamps = events(rng, flush_every=int(cfg.flush_interval) if math.isfinite(cfg.flush_interval) else None)

    # reference: one group = one presynaptic neuron's synapses to all targets
    etas = EtaSchedule()
    etas.set(cfg.eta)
    tau, cutoff = (cfg.tau_m, cfg.cutoff) if kind == "rec" else (cfg.tau_m_out, cfg.cutoff_out)
    cut_steps = math.inf if math.isinf(cutoff) else int(round(cutoff / cfg.dt))
    group = SynapseGroup(kind, np.arange(N_TARGETS), w0.copy(), 1, cfg, etas, math.exp(-cfg.dt / tau),
                         cut_steps, cfg.model.endswith("adapt"), math.exp(-cfg.dt / cfg.adapt_tau))
    hist = ReferenceHistory(psi=psi, L=L, R=R, E=L)
    for s, flush in stamps:
        group.send(s, flush, hist)

    # generated kernel
    model = eg.compile_model(eg.models.path(model_name))
    net = eg.Network(dt=cfg.dt)
    if kind == "rec":
        params = {"tau_m": cfg.tau_m, "kappa": cfg.kappa, "kappa_reg": cfg.kappa_reg,
                  "eprop_isi_trace_cutoff": cfg.cutoff}
        if model_name.endswith("adapt"):
            params.update(adapt_beta=cfg.adapt_beta, adapt_tau=cfg.adapt_tau)
    else:
        params = {"tau_m": cfg.tau_m_out, "eprop_isi_trace_cutoff": cfg.cutoff_out}
    pop = net.add_population(model, N_TARGETS, params=params)
    history = plasticity.History(STEPS, N_TARGETS)
    history.psi[:], history.learning_signal[:], history.regularisation[:] = psi, L, R   # step-major
    eps_size, n_traces = model.learning_ports["spikes"]
    optimizer = plasticity.Optimizer(kind=plasticity.ADAM if cfg.optimizer == "adam" else plasticity.GRADIENT_DESCENT,
                                     eta=cfg.eta, batch_size=cfg.batch_size,
                                     optimize_each_step=cfg.optimize_each_step, beta_1=cfg.beta_1,
                                     beta_2=cfg.beta_2, epsilon=cfg.epsilon, w_min=cfg.Wmin, w_max=cfg.Wmax)
    # shared: the presynaptic components (zbar) kept once per window, as the engine does for
    # targets with equal parameters
    presynaptic = model.presynaptic["spikes"][0] if shared else ()
    synapses = plasticity.PlasticSynapses(N_TARGETS, eps_size, n_traces, w0, optimizer, n_windows=1,
                                          presynaptic=presynaptic)
    replay = plasticity.EVENT_KERNEL(model.kernel_address("replay_event_spikes"))
    view = pop._model_view
    # one presynaptic neuron, synapse q onto neuron q, delay 1: each stamp is one event
    target_id, delay, ring = np.arange(N_TARGETS, dtype=native.TARGET_ID_DTYPE), np.ones(N_TARGETS, native.DELAY_DTYPE), np.zeros(N_TARGETS)
    windows = plasticity.EgWindows(*(native.pointer(a, t) for a, t in (
        (synapses.win_t_start, ctypes.c_int64), (synapses.win_t_last, ctypes.c_int64),
        (synapses.win_flags, ctypes.c_uint8))), synapses.view.win_opt,
        synapses.view.win_eps if shared else None)
    # the contract: prepare() (coefficients from the parameters, as the engine runs at every
    # simulate call) before any replay
    prepare = ctypes.CFUNCTYPE(None, ctypes.POINTER(type(view)), ctypes.c_int64, ctypes.c_int64)(
        model.kernel_address("prepare"))
    prepare(view, 0, N_TARGETS)
    for s, flush in stamps:
        event = plasticity.EgEventBatch(
            q_begin=0, q_end=N_TARGETS, target_id=native.pointer(target_id, native.c_target_id),
            delay=native.pointer(delay, native.c_delay), event_delay=1, kind=int(flush), stamp=s,
            settle_steps=0, oldest_held=s - STEPS, multiplicity=1.0, ring=native.pointer(ring, native.c_real),
            windows=windows, window=0, error_synapse=-1)
        replay(view, history.view, synapses.view, event)
        assert event.error_synapse == -1
    return group, synapses, w0


CASES = {
    "gradient descent, per spike": dict(),
    "gradient descent, per step": dict(optimize_each_step=True),
    "adam per step, batch 3": dict(optimizer="adam", optimize_each_step=True, batch_size=3, eta=1e-3),
    "adam per spike": dict(optimizer="adam", optimize_each_step=False, eta=1e-3),
    "no cutoff": dict(cutoff=math.inf, cutoff_out=math.inf),
    "short cutoff": dict(cutoff=6.0, cutoff_out=9.0),
    "flush events": dict(flush_interval=7.0, optimize_each_step=True),
    "clamped": dict(Wmin=-0.2, Wmax=0.2, eta=1e-2),
}


@pytest.mark.parametrize("shared", [False, True], ids=["zbar per synapse", "zbar per window"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("model_name", ["eprop_iaf", "eprop_iaf_adapt"])
def test_recurrent_replay_matches_reference(model_name, case, shared):
    base = dict(tau_m=20.0, kappa=0.9, kappa_reg=0.8, adapt_beta=0.7, adapt_tau=25.0, eta=1e-2, cutoff=30.0)
    cfg = EventConfig(model=model_name, **{**base, **CASES[case]})
    group, synapses, w0 = run_both(model_name, "rec", cfg, seed=len(case), shared=shared)
    assert np.abs(group.w - w0).max() > 1e-6, "the case should actually learn"
    # the generated kernel performs NEST's operations in NEST's order: bitwise equal
    np.testing.assert_array_equal(synapses.weight, group.w)
    np.testing.assert_array_equal(synapses.traces[0], group.ebar)
    np.testing.assert_array_equal(synapses.traces[1], group.ebar_reg)
    zbar = synapses.win_eps[0, 0, 0] if shared else synapses.eps[0]
    np.testing.assert_array_equal(zbar, group.zbar)
    if model_name.endswith("adapt"):     # the adaptation component stays per synapse
        np.testing.assert_array_equal(synapses.eps[synapses.eps_rows[1]], group.eps)


@pytest.mark.parametrize("case", ["gradient descent, per spike", "adam per step, batch 3", "short cutoff"])
def test_readout_replay_matches_reference(case):
    cfg = EventConfig(model="eprop_iaf", **{"tau_m_out": 15.0, "eta": 1e-2, **CASES[case]})
    group, synapses, w0 = run_both("eprop_readout", "out", cfg, seed=3)
    assert np.abs(group.w - w0).max() > 1e-6
    np.testing.assert_array_equal(synapses.weight, group.w)
