"""The generic engine and network API, driven by hand-written fixture kernels (tests/kernels/).

toy_probe copies what the engine hands a neuron in each step into its state, which makes the
engine's timing conventions directly observable; toy_lif is a small spiking model for networks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eprop_gen.build import build_and_load
from eprop_gen.compiled import CompiledModel
from eprop_gen.engine import (Explicit, FixedIndegree, Network, Normal, PairwiseBernoulli,
                              Uniform)
from eprop_gen.engine.native import template_dir

KERNELS = Path(__file__).parent / "kernels"
DT = 0.1


def compile_fixture(name: str, cache_dir: Path, **metadata) -> CompiledModel:
    sources = {f"{name}.cpp": (KERNELS / f"{name}.cpp").read_text(),
               "eg_runtime.h": (template_dir() / "eg_runtime.h").read_text()}
    result, lib = build_and_load(sources, name=name, openmp=False, cache_dir=cache_dir)
    return CompiledModel(name=name, library_path=result.library_path,
                         source_path=result.source_dir / f"{name}.cpp", library=lib, **metadata)


@pytest.fixture(scope="session")
def fixture_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fixture-kernels")


@pytest.fixture(scope="session")
def probe(fixture_cache) -> CompiledModel:
    return compile_fixture(
        "toy_probe", fixture_cache,
        states=("in_a", "in_b", "sum_a", "I_seen"), params=("gain",),
        param_defaults={"gain": 1.0}, spike_ports=("a", "b"), current_ports=("I",), n_coeff=1,
        spiking=False, propagator_states=("sum_a",),
        initial_state=lambda p: {k: np.zeros_like(p["gain"]) for k in ("in_a", "in_b", "sum_a",
                                                                       "I_seen")})


@pytest.fixture(scope="session")
def lif(fixture_cache) -> CompiledModel:
    defaults = {"tau_m": 10.0, "C_m": 250.0, "E_L": -70.0, "V_th": -55.0, "V_reset": -70.0,
                "t_ref": 2.0}
    return compile_fixture(
        "toy_lif", fixture_cache,
        states=("V_m",), params=tuple(defaults), param_defaults=defaults, spike_ports=("in",),
        current_ports=("I",), n_coeff=3, spiking=True, propagator_states=("V_m",),
        initial_state=lambda p: {"V_m": p["E_L"].copy()})


def steps_of(times_ms) -> np.ndarray:
    return np.rint(np.asarray(times_ms) / DT).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# timing conventions

@pytest.mark.parametrize("delay", [1, 2, 7])
def test_source_spike_reaches_step_t_over_dt_plus_delay_minus_one(probe, delay):
    net = Network(dt=DT)
    src = net.add_spike_source(1, times=[0.5])                 # s = 5
    pop = net.add_population(probe, 1)
    net.connect(src, pop, "a", Explicit([0], [0]), weight=2.5, delay=delay)
    net.record(pop, ("in_a", "in_b"))
    net.simulate(2.0)
    rec = net.recording(pop)
    received = np.flatnonzero(rec["in_a"][:, 0])
    assert received.tolist() == [5 + delay - 1]
    assert rec["in_a"][5 + delay - 1, 0] == 2.5
    assert not rec["in_b"].any()


def test_recorded_values_carry_time_n_plus_one_dt(probe):
    net = Network(dt=DT)
    pop = net.add_population(probe, 3)
    net.record(pop, ("I_seen",))
    net.simulate(1.0)
    rec = net.recording(pop)
    assert np.array_equal(steps_of(rec["times"]), np.arange(1, 11))
    assert rec["I_seen"].shape == (10, 3)


def test_coinciding_source_spikes_add_up_and_ports_are_separate(probe):
    net = Network(dt=DT)
    src = net.add_spike_source(2, times=[0.3, 0.3, 0.3, 0.4], senders=[1, 1, 0, 1])
    pop = net.add_population(probe, 2)
    net.connect(src, pop, "a", Explicit([0, 1], [0, 1]), weight=0.5, delay=1)
    net.connect(src, pop, "b", Explicit([1], [0]), weight=-1.0, delay=2)
    net.record(pop, ("in_a", "in_b"))
    net.simulate(1.0)
    rec = net.recording(pop)
    in_a, in_b = rec["in_a"], rec["in_b"]
    assert in_a[3].tolist() == [0.5, 1.0]        # spikes at t=0.3 (s=3), delay 1: step 3
    assert in_a[4].tolist() == [0.0, 0.5]
    assert in_b[4].tolist() == [-2.0, 0.0]       # two spikes of sender 1 at s=3, delay 2
    assert in_b[5].tolist() == [-1.0, 0.0]
    assert np.count_nonzero(in_a) == 3 and np.count_nonzero(in_b) == 2
    times, senders = net.spikes(src)
    assert steps_of(times).tolist() == [3, 3, 3, 4] and senders.tolist() == [0, 1, 1, 1]


def test_current_switches_at_the_step_of_each_time(probe):
    net = Network(dt=DT)
    pop = net.add_population(probe, 3)
    net.add_current(pop, "I", times=[0.2, 0.5, 0.5, 0.9], amplitudes=[1.0, 7.0, 2.0, 3.0])
    net.add_current(pop, "I", times=[0.4], amplitudes=[[10.0, 20.0]], neurons=[2, 0])
    net.record(pop, ("I_seen",))
    net.simulate(1.2)
    seen = net.recording(pop)["I_seen"]
    first = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3], dtype=float)   # duplicate 0.5: last wins
    assert np.array_equal(seen[:, 1], first)
    later = np.where(np.arange(12) >= 4, 1.0, 0.0)
    assert np.array_equal(seen[:, 0], first + 20.0 * later)
    assert np.array_equal(seen[:, 2], first + 10.0 * later)


def test_neuron_spike_has_time_n_plus_one_dt_and_travels_delay_steps(lif, probe):
    net = Network(dt=DT)
    src = net.add_spike_source(1, times=[1.0])
    neuron = net.add_population(lif, 1)
    out = net.add_population(probe, 1)
    net.connect(src, neuron, "in", Explicit([0], [0]), weight=100.0, delay=2)
    net.connect(neuron, out, "a", Explicit([0], [0]), weight=1.0, delay=3)
    net.record(out, ("in_a",))
    net.simulate(3.0)
    times, senders = net.spikes(neuron)
    assert steps_of(times).tolist() == [12] and senders.tolist() == [0]   # step 11 -> t = 1.2
    assert np.flatnonzero(net.recording(out)["in_a"][:, 0]).tolist() == [11 + 3]


def test_parameter_change_between_runs_reaches_the_kernel(probe):
    net = Network(dt=DT)
    src = net.add_spike_source(1, times=[0.1, 0.6])
    pop = net.add_population(probe, 2, params={"gain": [1.0, 3.0]})
    net.connect(src, pop, "a", FixedIndegree(1), weight=1.0)
    net.simulate(0.5)
    assert pop.get("sum_a").tolist() == [1.0, 3.0]
    pop.set("gain", 10.0)
    net.simulate(0.5)
    assert pop.get("sum_a").tolist() == [11.0, 13.0]


def test_longer_delay_added_later_keeps_pending_input(probe):
    net = Network(dt=DT)
    src = net.add_spike_source(1, times=[0.5])
    pop = net.add_population(probe, 1)
    net.connect(src, pop, "a", Explicit([0], [0]), weight=1.0, delay=2)   # arrives in step 6
    net.record(pop, ("in_a",))
    net.simulate(0.5)                        # steps 0..4: the spike is waiting in the ring
    net.connect(src, pop, "a", Explicit([0], [0]), weight=1.0, delay=9)   # ring grows
    net.simulate(1.5)
    assert np.flatnonzero(net.recording(pop)["in_a"][:, 0]).tolist() == [6]


# ---------------------------------------------------------------------------------------------
# connectivity

def test_fixed_indegree_gives_exactly_k_sources_per_target(lif):
    net = Network(dt=DT, seed=3)
    pop = net.add_population(lif, 50)
    k = 7
    multi = net.connect(pop, pop, "in", FixedIndegree(k))
    strict = net.connect(pop, pop, "in", FixedIndegree(k, allow_autapses=False,
                                                        allow_multapses=False))
    for proj in (multi, strict):
        assert np.array_equal(np.bincount(proj.targets, minlength=50), np.full(50, k))
    assert not np.any(strict.sources == strict.targets)
    pairs = strict.sources * 50 + strict.targets
    assert np.unique(pairs).size == pairs.size


def test_csr_order_is_sources_then_targets(lif):
    net = Network(dt=DT, seed=1)
    pop = net.add_population(lif, 30)
    proj = net.connect(pop, pop, "in", FixedIndegree(5), weight=Normal(1.0, 0.2),
                       delay=Uniform(1, 4))
    key = proj.sources * 30 + proj.targets
    assert np.all(np.diff(key) >= 0)
    assert proj.delays.min() >= 1 and proj.delays.max() <= 4


def test_pairwise_bernoulli_density_within_statistical_bounds(lif):
    net = Network(dt=DT, seed=11)
    a = net.add_population(lif, 300)
    b = net.add_population(lif, 200)
    p = 0.1
    proj = net.connect(a, b, "in", PairwiseBernoulli(p))
    pairs = 300 * 200
    expected, sigma = pairs * p, np.sqrt(pairs * p * (1 - p))
    assert abs(len(proj) - expected) < 5 * sigma
    no_self = net.connect(a, a, "in", PairwiseBernoulli(0.5, allow_autapses=False))
    assert not np.any(no_self.sources == no_self.targets)


def _random_connectivity(lif, seed: int, threads: int):
    net = Network(dt=DT, seed=seed, threads=threads)
    pop = net.add_population(lif, 100)
    first = net.connect(pop, pop, "in", FixedIndegree(10), weight=Normal(0.0, 1.0),
                        delay=Uniform(1, 5))
    second = net.connect(pop, pop, "in", PairwiseBernoulli(0.05), weight=Uniform(-1, 1))
    return [np.concatenate([p.sources, p.targets, p.weights, p.delays]) for p in (first, second)]


def test_connectivity_depends_on_seed_only_not_threads(lif):
    one = _random_connectivity(lif, seed=5, threads=1)
    two = _random_connectivity(lif, seed=5, threads=2)
    other = _random_connectivity(lif, seed=6, threads=1)
    for a, b in zip(one, two):
        assert np.array_equal(a, b)
    assert not np.array_equal(one[0], other[0])


def test_connectivity_of_a_target_does_not_depend_on_other_targets(lif):
    # The per-target stream means target j's synapses are the same in a smaller population.
    def synapses_of_target(n, j):
        net = Network(dt=DT, seed=2)
        src = net.add_population(lif, 40)
        tgt = net.add_population(lif, n)
        proj = net.connect(src, tgt, "in", FixedIndegree(6), weight=Normal(0, 1))
        mask = proj.targets == j
        return sorted(zip(proj.sources[mask].tolist(), proj.weights[mask].tolist()))
    assert synapses_of_target(10, 3) == synapses_of_target(25, 3)


def test_explicit_connections_and_set_weights(probe):
    net = Network(dt=DT)
    src = net.add_spike_source(3, times=[0.1], senders=[2])
    pop = net.add_population(probe, 2)
    proj = net.connect(src, pop, "a", Explicit([2, 0, 2], [1, 1, 0], weights=[1.0, 2.0, 3.0],
                                               delays=[1, 2, 3]))
    assert proj.sources.tolist() == [0, 2, 2]
    assert proj.targets.tolist() == [1, 0, 1]
    assert proj.weights.tolist() == [2.0, 3.0, 1.0]
    assert proj.delays.tolist() == [2, 3, 1]
    proj.set_weights(proj.weights * 10)
    net.simulate(1.0)
    assert pop.get("sum_a").tolist() == [30.0, 10.0]


# ---------------------------------------------------------------------------------------------
# determinism and continuation

def _recurrent_network(lif, threads: int, n: int = 2000):
    rng = np.random.default_rng(42)
    net = Network(dt=DT, threads=threads, seed=7)
    n_in = 200
    times = rng.integers(1, 2000, size=5000) * DT
    senders = rng.integers(0, n_in, size=times.size)
    src = net.add_spike_source(n_in, times=times, senders=senders)
    pop = net.add_population(lif, n, params={"V_th": rng.uniform(-56, -54, n)},
                             state={"V_m": rng.uniform(-70, -55, n)})
    net.connect(src, pop, "in", FixedIndegree(20), weight=Normal(2.0, 0.5), delay=Uniform(1, 3))
    net.connect(pop, pop, "in", FixedIndegree(50, allow_autapses=False),
                weight=Normal(0.2, 1.0), delay=Uniform(1, 15))
    net.add_current(pop, "I", times=[0.0, 50.0], amplitudes=[150.0, 250.0],
                    neurons=np.arange(0, n, 3))
    net.record(pop, ("V_m",), neurons=np.arange(0, n, 97)[::-1])    # columns in this order
    return net, pop


def _outcome(net, pop):
    times, senders = net.spikes(pop)
    return times, senders, net.recording(pop)["V_m"], pop.get("V_m")


def _assert_identical(a, b):
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.tobytes() == y.tobytes()    # bitwise


def test_one_and_two_threads_give_bitwise_identical_results(lif):
    net1, pop1 = _recurrent_network(lif, threads=1)
    net2, pop2 = _recurrent_network(lif, threads=2)
    net1.simulate(100.0)
    net2.simulate(100.0)
    one, two = _outcome(net1, pop1), _outcome(net2, pop2)
    assert one[0].size > 5000               # the network is active (and outgrows the record)
    _assert_identical(one, two)
    assert np.array_equal(one[2][-1], one[3][np.arange(0, 2000, 97)[::-1]])


def test_simulate_in_pieces_equals_one_call(lif):
    whole, pop_w = _recurrent_network(lif, threads=2, n=500)
    whole.simulate(60.0)
    pieces, pop_p = _recurrent_network(lif, threads=1, n=500)
    for t in (0.1, 12.3, 7.6, 40.0):
        pieces.simulate(t)
    assert pieces.step == whole.step == 600
    _assert_identical(_outcome(whole, pop_w), _outcome(pieces, pop_p))


def test_no_spike_is_lost_when_the_record_grows(lif, probe):
    # Every LIF spike is forwarded one-to-one to a probe; its count must match the record.
    net, pop = _recurrent_network(lif, threads=2, n=1000)
    counter = net.add_population(probe, pop.n)
    net.connect(pop, counter, "a", Explicit(np.arange(pop.n), np.arange(pop.n)), delay=1)
    net.simulate(80.0)
    net.simulate(DT)                          # deliver the spikes of the last step
    times, senders = net.spikes(pop)
    assert times.size > 3 * 1024
    delivered = steps_of(times) <= 800        # spikes of the extra step are not delivered yet
    assert np.array_equal(np.bincount(senders[delivered], minlength=pop.n), counter.get("sum_a"))
    step = steps_of(times)
    assert np.all((np.diff(step) > 0) | ((np.diff(step) == 0) & (np.diff(senders) > 0)))


# ---------------------------------------------------------------------------------------------
# misuse gives clear errors

def test_clear_errors_for_misuse(probe, lif):
    net = Network(dt=DT)
    src = net.add_spike_source(2)
    pop = net.add_population(probe, 4)
    with pytest.raises(ValueError, match="unknown spike port 'c'.*a, b"):
        net.connect(src, pop, "c", FixedIndegree(1))
    with pytest.raises(ValueError, match="not a multiple of dt"):
        net.add_spike_source(1, times=[0.25])
    with pytest.raises(ValueError, match=">= dt"):
        net.add_spike_source(1, times=[0.0])
    with pytest.raises(ValueError, match="senders are required"):
        net.add_spike_source(3, times=[0.1])
    with pytest.raises(ValueError, match="unknown parameter 'gian'.*did you mean 'gain'"):
        net.add_population(probe, 2, params={"gian": 1.0})
    with pytest.raises(ValueError, match="expected a scalar or 4 values"):
        pop.set("gain", [1.0, 2.0])
    with pytest.raises(ValueError, match="whole number of steps"):
        net.connect(src, pop, "a", FixedIndegree(1), delay=0)
    with pytest.raises(ValueError, match="does not spike"):
        net.connect(pop, pop, "a", FixedIndegree(1))
    with pytest.raises(ValueError, match="amplitudes must have shape"):
        net.add_current(pop, "I", times=[0.1, 0.2], amplitudes=[1.0])
    with pytest.raises(ValueError, match="unknown current port"):
        net.add_current(pop, "J", times=[0.1], amplitudes=[1.0])
    with pytest.raises(ValueError, match="unknown recordable 'V_m'"):
        net.record(pop)
    with pytest.raises(ValueError, match="not a multiple of dt"):
        net.simulate(0.05)
    with pytest.raises(ValueError, match="not a population of this network"):
        Network(dt=DT).record(pop, ("in_a",))
    with pytest.raises(ValueError, match="allow_multapses=False"):
        net.connect(src, pop, "a", FixedIndegree(3, allow_multapses=False))
