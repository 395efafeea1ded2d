"""Batched delivery (engine.cpp, eg_network.delivery_interval): a network without learning whose
delays are all >= D delivers the static spikes of D steps at once (and under MPI exchanges them
once, tests/test_mpi.py). The batches must change nothing: every ring slot receives its additions
in the order of delivery every step, so spikes and states are bitwise those of D = 1 — here forced
by one more projection of delay 1 from a spike source that never spikes (it adds nothing)."""
import numpy as np
import pytest

import eprop_gen as eg
from eprop_gen.engine import schedule
from eprop_gen.engine.state import load_network_state, network_state
from eprop_gen.tasks.poisson import poisson_trains

T_MS = 60.0


@pytest.fixture(scope="module")
def model():
    return eg.compile_model(eg.models.path("iaf_psc_alpha"))


def build(model, delay_one: bool = False, threads: int = 1) -> tuple[eg.Network, object]:
    dt = 0.1
    net = eg.Network(dt=dt, seed=7, threads=threads)
    times, senders = poisson_trains(50, 80.0, T_MS, dt, np.random.default_rng(2))
    src = net.add_spike_source(50, times=times, senders=senders)
    n = 300
    pop = net.add_population(model, n, params={"I_e": np.linspace(250.0, 420.0, n)})
    net.connect(src, pop, "ex", eg.FixedIndegree(10), weight=eg.Uniform(200.0, 600.0), delay=5)
    net.connect(pop, pop, "ex", eg.FixedIndegree(40, allow_autapses=False), weight=eg.Normal(40.0, 10.0),
                delay=eg.Uniform(5, 15))
    net.connect(pop, pop, "in", eg.PairwiseBernoulli(0.05, allow_autapses=False), weight=-120.0, delay=6)
    if delay_one:
        silent = net.add_spike_source(1, times=[], senders=[])
        net.connect(silent, pop, "ex", eg.FixedIndegree(1), weight=1.0, delay=1)
    net.record(pop, ("V_m", "I_ex"), neurons=np.arange(0, n, 11))
    return net, pop


def result(net, pop) -> dict[str, np.ndarray]:
    times, ids = net.spikes(pop)
    out = {f"recorded_{k}": v for k, v in net.recording(pop).items()}
    out.update(times=times, ids=ids)
    out.update({f"end_{s}": pop.get(s) for s in pop.model.states})
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def reference(model):
    net, pop = build(model, delay_one=True)
    assert net._delivery_interval() == 1
    net.simulate(T_MS)
    return result(net, pop)


def test_batches_of_the_smallest_delay_give_delivery_every_step_bitwise(model, reference):
    net, pop = build(model)
    assert net._delivery_interval() == 5
    net.simulate(T_MS)
    assert reference["ids"].size > 1000, "the network should be active enough to fill the batches"
    assert_same(result(net, pop), reference)


def test_calls_ending_mid_batch_threads_and_a_checkpoint_change_nothing(model, reference):
    calls = [0.7, 13.3, 0.1, 11.2]                        # 253 steps: ends mid-batch
    net, pop = build(model, threads=2)
    for t in calls:
        net.simulate(t)
    assert net._pending_step < net.step - 1              # spikes in flight at the checkpoint
    saved = network_state(net)
    resumed, resumed_pop = build(model)
    load_network_state(resumed, saved)
    resumed.simulate(T_MS - sum(calls))
    net.simulate(T_MS - sum(calls))
    whole = result(net, pop)
    assert_same(whole, reference)
    tail = result(resumed, resumed_pop)
    for key in ("times", "ids") + tuple(k for k in tail if k.startswith("end_")):
        np.testing.assert_array_equal(tail[key], whole[key], err_msg=key)


def test_a_projection_added_between_calls_shortens_the_batches(model):
    """Delay 2 from then on (explicit synapses: no draw depends on the projection's index)."""
    results = []
    for delay_one in (False, True):
        net, pop = build(model, delay_one=delay_one)
        net.simulate(20.3)
        net.connect(pop, pop, "in", eg.Explicit(np.arange(0, 300, 3), np.arange(1, 300, 3)), weight=-50.0, delay=2)
        assert net._delivery_interval() == (1 if delay_one else 2)
        net.simulate(T_MS - 20.3)
        results.append(result(net, pop))
    assert_same(*results)


def test_the_interval_is_one_step_for_learning_and_capped():
    class Proj:
        def __init__(self, d):
            self._syn = type("S", (), {"min_delay": d})()
    assert schedule.delivery_interval([Proj(7), Proj(4)], learns=False) == 4
    assert schedule.delivery_interval([Proj(7)], learns=True) == 1
    assert schedule.delivery_interval([Proj(10 ** 4)], learns=False) == schedule.MAX_DELIVERY_INTERVAL
    assert schedule.delivery_interval([], learns=False) == schedule.MAX_DELIVERY_INTERVAL


def test_forgetting_spikes_between_calls_keeps_those_not_yet_delivered(model, reference):
    net, pop = build(model)
    for t in (11.2, 0.3, 20.4):
        net.simulate(t)
        net.forget_spikes()
    net.simulate(T_MS - 31.9)
    got = result(net, pop)
    for key in [k for k in got if k.startswith(("end_", "recorded_"))]:
        np.testing.assert_array_equal(got[key], reference[key], err_msg=key)
    assert got["times"].min() >= 31.9 - 1.5        # forgotten: all but the last max delay (1.5 ms)
