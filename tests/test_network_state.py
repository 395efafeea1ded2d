"""Checkpoints: a network's state saved mid-run and loaded into a freshly built network continues
bitwise like the run that was never interrupted, in all three learning schedules, also across a
.npz file (the trainer's checkpoint format)."""
from __future__ import annotations

import numpy as np
import pytest

import eprop_gen as eg
from eprop_gen.engine.state import load_network_state, network_state

T = 80


def _build(schedule, seed=4):
    rng = np.random.default_rng(seed)
    time_driven = isinstance(schedule, eg.TimeDriven)
    rec_name = "eprop_iaf_adapt_bsshslm_2020" if time_driven else "eprop_iaf_adapt"
    out_name = "eprop_readout_bsshslm_2020" if time_driven else "eprop_readout"
    net = eg.Network(dt=1.0, seed=seed, learning=schedule)
    n_steps = 6 * T
    spikes = rng.random((n_steps, 8)) < 0.08
    spikes[::T] = False
    t, i = np.nonzero(spikes)
    inputs = net.add_spike_source(8, times=t + 1.0, senders=i)
    params = dict(C_m=1.0, E_L=0.0, V_th=0.5, tau_m=20.0, t_ref=2.0, c_reg=0.5, f_target=10.0,
                  adapt_beta=np.r_[np.zeros(5), np.full(5, 0.05)], adapt_tau=300.0,
                  flush_event_send_interval=float(T) if time_driven else 40.0)
    rec = net.add_population(eg.compile_model(eg.models.path(rec_name)), 10, params=params)
    out = net.add_population(eg.compile_model(eg.models.path(out_name)), 2,
                             params=dict(C_m=1.0, E_L=0.0, tau_m=20.0))
    opt = eg.adam(eta=5e-3, batch_size=2 if not time_driven else 1)
    net.connect(inputs, rec, "spikes", eg.FixedIndegree(6), weight=eg.Normal(0.3, 0.3), plasticity=opt)
    net.connect(rec, rec, "spikes", eg.FixedIndegree(4, allow_autapses=False), weight=eg.Normal(0, 0.2),
                delay=eg.Uniform(1, 3), plasticity=opt)
    net.connect(rec, out, "spikes", eg.FixedIndegree(10), weight=eg.Normal(0, 0.3), plasticity=opt)
    net.connect_feedback(out, rec, rng.normal(size=(10, 2)))
    net.add_target(out, np.sin(np.arange(n_steps)[:, None] / 9.0 + np.array([0.0, 1.0])),
                   loss="cross_entropy" if time_driven else "mean_squared_error")
    return net, rec


SCHEDULES = {
    "event": lambda: eg.event_driven(),
    "samples": lambda: eg.event_driven(sample_duration=float(T)),
    "time": lambda: eg.time_driven(update_interval=float(T)),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_resumed_run_is_bitwise_the_uninterrupted_one(name, tmp_path):
    whole, rec_whole = _build(SCHEDULES[name]())
    whole.simulate(5.0 * T + 7)

    first, _ = _build(SCHEDULES[name]())
    first.simulate(2.0 * T + 3)
    np.savez(tmp_path / "checkpoint.npz", **network_state(first))

    resumed, rec_resumed = _build(SCHEDULES[name]())
    with np.load(tmp_path / "checkpoint.npz") as saved:
        load_network_state(resumed, dict(saved))
    resumed.simulate(3.0 * T + 4)

    assert resumed.step == whole.step
    for a, b in zip(whole.projections, resumed.projections):
        np.testing.assert_array_equal(a.weights, b.weights)
        assert not np.array_equal(a.weights, _build(SCHEDULES[name]())[0].projections[a.index].weights)
    t_whole, s_whole = whole.spikes(rec_whole)
    t_res, s_res = resumed.spikes(rec_resumed)
    later = t_whole > 2 * T + 3
    np.testing.assert_array_equal(t_whole[later], t_res[t_res > 2 * T + 3])
    np.testing.assert_array_equal(s_whole[later], s_res[t_res > 2 * T + 3])


def test_a_checkpoint_of_another_network_is_refused():
    small, _ = _build(eg.event_driven())
    other = eg.Network(dt=1.0)
    other.add_population(eg.compile_model(eg.models.path("eprop_iaf")), 3)
    with pytest.raises(ValueError, match="does not fit"):
        load_network_state(other, network_state(small))


def test_forgetting_spikes_changes_nothing_but_memory():
    a, rec_a = _build(eg.event_driven(sample_duration=float(T)))
    b, rec_b = _build(eg.event_driven(sample_duration=float(T)))
    a.simulate(5.0 * T)
    for _ in range(5):
        b.simulate(float(T))
        b.forget_spikes()
    for x, y in zip(a.projections, b.projections):
        np.testing.assert_array_equal(x.weights, y.weights)
    assert b.spikes(rec_b)[0].size < a.spikes(rec_a)[0].size


def test_streamed_input_equals_input_given_up_front():
    rng = np.random.default_rng(0)
    t, i = np.nonzero(rng.random((4 * T, 5)) < 0.1)
    results = []
    for streamed in (False, True):
        net = eg.Network(dt=1.0, learning=eg.event_driven(sample_duration=float(T)))
        src = net.add_spike_source(5) if streamed else net.add_spike_source(5, times=t + 1.0, senders=i)
        pop = net.add_population(eg.compile_model(eg.models.path("eprop_iaf")), 4,
                                 params=dict(C_m=1.0, E_L=0.0, V_th=0.3, tau_m=10.0))
        out = net.add_population(eg.compile_model(eg.models.path("eprop_readout")), 1)
        net.connect(src, pop, "spikes", eg.FixedIndegree(5), weight=0.2, plasticity=eg.gradient_descent(eta=1e-2))
        net.connect(pop, out, "spikes", eg.FixedIndegree(4), weight=0.1, plasticity=eg.gradient_descent(eta=1e-2))
        net.connect_feedback(out, pop, np.ones((4, 1)))
        for k in range(4):
            if streamed:
                in_sample = (t >= k * T) & (t < (k + 1) * T)
                src.add_spikes(t[in_sample] + 1.0, i[in_sample])
                net.add_target(out, np.full(T, 0.5 * k), start=float(k * T))
            else:
                net.add_target(out, np.repeat(0.5 * np.arange(4), T))
            net.simulate(float(T))
        results.append((net.spikes(pop), [p.weights for p in net.projections]))
    (ta, sa), wa = results[0]
    (tb, sb), wb = results[1]
    np.testing.assert_array_equal(ta, tb)
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="after the current time"):
        src.add_spikes([1.0], [0])
