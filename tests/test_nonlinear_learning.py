"""e-prop for the neurons whose rule reads archived per-step quantities (issue 6): the Izhikevich
neuron (the derivative of its RK4 step) and the STDP-aware LIF (the reset's derivative 1 - z).

tests/test_gradient_check.py shows that the numbers are the right ones (BPTT). Here: the engine's
other paths give the same numbers — the O(1) block products (whose step matrices then read the
archive) against the step-by-step walk, 1 against 2 threads, a checkpoint in the middle of a run
against the run itself — and what is refused is refused with a message."""
from __future__ import annotations

import numpy as np
import pytest

import eprop_gen as eg
from eprop_gen.engine.state import load_network_state, network_state

N_IN, N_REC, N_OUT = 8, 4, 2
SETUPS = {  # dt, steps per sample, input spike probability per step, mean and std of W_in
    "eprop_izhikevich": (0.1, 1500, 0.02, 4.0, 2.0),
    "eprop_iaf_stdp": (1.0, 150, 0.1, 0.5, 0.3),
}


def _network(model_name, replay="blocks", threads=1, samples=2):
    dt, T, p_in, mu, sd = SETUPS[model_name]
    rng = np.random.default_rng(1)
    spikes = rng.random((samples * T, N_IN)) < p_in
    spikes[T - 1::T] = False                         # nothing in a sample's last step
    steps, senders = np.nonzero(spikes)
    W_in = rng.normal(mu, sd, (N_REC, N_IN))
    W_rec = rng.normal(0, 0.5 * mu, (N_REC, N_REC))
    np.fill_diagonal(W_rec, 0.0)
    W_out = rng.normal(0, 0.5, (N_OUT, N_REC))
    target = np.sin(np.arange(samples * T)[:, None] * dt / 20.0 + np.arange(N_OUT))
    net = eg.Network(dt=dt, threads=threads, learning=eg.event_driven(sample_duration=T * dt, replay=replay,
                                                                      block_steps=4))
    model = eg.compile_model(eg.models.path(model_name))
    params = dict(C_m=1.0, E_L=0.0, V_th=1.0, V_reset=0.0, tau_m=10.0) if model_name == "eprop_iaf_stdp" else {}
    src = net.add_spike_source(N_IN, times=(steps + 1) * dt, senders=senders)
    rec = net.add_population(model, N_REC, params=params)
    out = net.add_population(eg.compile_model(eg.models.path("eprop_readout")), N_OUT,
                             params=dict(C_m=1.0, E_L=0.0, tau_m=20.0))
    optimizer = eg.adam(eta=0.01, batch_size=1, optimize_each_step=False)
    projections = []
    for source, target_pop, W in ((src, rec, W_in), (rec, rec, W_rec), (rec, out, W_out)):
        rows, cols = np.nonzero(W)
        projections.append(net.connect(source, target_pop, "spikes", eg.Explicit(cols, rows, weights=W[rows, cols]),
                                       plasticity=optimizer))
    net.connect_feedback(out, rec, W_out.T.copy())
    net.add_target(out, target)
    return net, rec, projections, samples * T * dt + dt


def _result(net, rec, projections):
    return net.spikes(rec), [p.weights.copy() for p in projections]


@pytest.mark.parametrize("model_name", sorted(SETUPS))
def test_block_products_equal_the_walk_and_threads_agree(model_name):
    walked = _network(model_name, replay="walk")
    walked[0].simulate(walked[3])
    (t_walk, s_walk), w_walk = _result(*walked[:3])
    assert np.bincount(s_walk, minlength=N_REC).min() >= 3, "every neuron spikes: the resets are exercised"
    for threads in (1, 2):
        net, rec, projections, duration = _network(model_name, replay="blocks", threads=threads)
        net.simulate(duration)
        (t, s), w = _result(net, rec, projections)
        assert np.array_equal(t, t_walk) and np.array_equal(s, s_walk)
        for before, blocks, walk in zip(_network(model_name)[2], w, w_walk):
            change = np.abs(walk - before.weights).max()
            assert change > 0
            np.testing.assert_allclose(blocks, walk, rtol=0, atol=1e-11 * change)
        if threads == 1:
            w_one = w
        else:
            assert all(np.array_equal(a, b) for a, b in zip(w, w_one)), "1 and 2 threads: bitwise equal"


@pytest.mark.parametrize("model_name", sorted(SETUPS))
def test_a_checkpoint_mid_run_continues_the_run(model_name):
    """The archived quantities are part of the network state: save half-way, load into a fresh
    network, continue: the same spikes and weights as the uninterrupted run."""
    whole, rec, projections, duration = _network(model_name)
    whole.simulate(duration)
    expected = _result(whole, rec, projections)
    first, *_ = _network(model_name)
    half = round(duration / 2 / first.dt) * first.dt
    first.simulate(half)
    state = network_state(first)
    assert any(k.endswith("/extra") and v.size > 0 for k, v in state.items())
    resumed, rec2, projections2, _ = _network(model_name)
    load_network_state(resumed, state)
    resumed.simulate(duration - half)
    (t, s), w = _result(resumed, rec2, projections2)
    assert np.array_equal(t, expected[0][0]) and np.array_equal(s, expected[0][1])
    assert all(np.array_equal(a, b) for a, b in zip(w, expected[1]))


def test_a_cutoff_with_archived_quantities_is_refused():
    text = eg.models.path("eprop_iaf_stdp").read_text().replace(
        "        gradient: L * ebar + R * ebar_reg", "        gradient: L * ebar + R * ebar_reg\n        cutoff: 100.0")
    with pytest.raises(eg.EpropGenError, match="remove the cutoff"):
        eg.compile_model(text)


def test_nest_equivalent_rules_read_nothing_per_step():
    """The NEST-equivalent models keep the stopped reset and their constant rules (the NEST
    comparisons in test_replay.py and test_eprop_engine.py check their numbers bitwise)."""
    for name in ("eprop_iaf", "eprop_iaf_adapt", "eprop_iaf_psc_delta", "eprop_iaf_psc_delta_adapt", "eprop_readout"):
        checked = eg.check_source(eg.models.path(name).read_text())
        assert checked.ir.learning.reset_gradient == "stopped"
        assert all(rule.constant for rule in checked.solution.eligibility), name
