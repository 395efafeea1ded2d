"""1 vs 2 OpenMP threads on generated models: bitwise identical spikes and states (owner computes)."""
import numpy as np
import pytest

import eprop_gen as eg
from eprop_gen.tasks.poisson import poisson_trains


def run(model, threads: int, excitatory: str, inhibitory: str, n: int = 2000, t_ms: float = 200.0):
    dt = 0.1
    times, senders = poisson_trains(100, 50.0, t_ms, dt, np.random.default_rng(3))
    net = eg.Network(dt=dt, threads=threads, seed=11)
    src = net.add_spike_source(100, times=times, senders=senders)
    pop = net.add_population(model, n, params={"I_e": np.linspace(250.0, 420.0, n)})
    net.connect(src, pop, port=excitatory, rule=eg.FixedIndegree(20), weight=eg.Uniform(200.0, 600.0), delay=1)
    net.connect(pop, pop, port=excitatory, rule=eg.FixedIndegree(50, allow_autapses=False),
                weight=eg.Normal(40.0, 10.0), delay=eg.Uniform(1, 5))
    net.connect(pop, pop, port=inhibitory, rule=eg.PairwiseBernoulli(0.02, allow_autapses=False), weight=-120.0, delay=2)
    state_names = [s for s in model.states]
    net.record(pop, state_names, neurons=np.arange(0, n, 7))
    net.simulate(t_ms)
    return net.spikes(pop), net.recording(pop), {s: pop.get(s) for s in state_names}


@pytest.mark.parametrize("name, excitatory, inhibitory", [
    ("iaf_psc_exp", "ex", "in"), ("iaf_psc_alpha", "ex", "in"), ("iaf_psc_delta", "spikes", "spikes")])
def test_one_and_two_threads_identical(name, excitatory, inhibitory):
    model = eg.compile_model(eg.models.path(name))
    (t1, s1), rec1, final1 = run(model, 1, excitatory, inhibitory)
    (t2, s2), rec2, final2 = run(model, 2, excitatory, inhibitory)
    assert len(t1) > 2000, "the network should be active enough to exercise delivery across threads"
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(s1, s2)
    for key in rec1:
        np.testing.assert_array_equal(rec1[key], rec2[key])
    for key in final1:
        np.testing.assert_array_equal(final1[key], final2[key])
