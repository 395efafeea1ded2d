"""The shipped e-prop neuron models against NEST 3.10's eprop_* models: membrane potential, the
pseudo-derivative (NEST's `surrogate_gradient`) and the adaptation, step by step, same input.

Only neuron dynamics here (static input synapses); learning is compared elsewhere.
Known, documented difference: NEST's eprop_iaf(_adapt) applies I_e one step late (step 0 uses 0),
so these tests drive the neurons with spikes and a step current and keep I_e = 0."""
import numpy as np
import pytest

import eprop_gen as eg

nest_reference = pytest.importorskip("nest_reference")
pytest.importorskip("nest")

pytestmark = pytest.mark.nest

RTOL = 1e-9
MODELS = {
    # model: (extra parameters, NEST recordables -> ours)
    "eprop_iaf": ({}, {"V_m": "V_m", "surrogate_gradient": "psi"}),
    "eprop_iaf_adapt": ({"adapt_beta": 2.0, "adapt_tau": 30.0},
                        {"V_m": "V_m", "surrogate_gradient": "psi", "adaptation": "adaptation"}),
    "eprop_iaf_psc_delta": ({"V_reset": -68.0},
                            {"V_m": "V_m", "surrogate_gradient": "psi"}),
    "eprop_iaf_psc_delta_adapt": ({"V_reset": -68.0, "adapt_beta": 2.0, "adapt_tau": 30.0},
                                  {"V_m": "V_m", "surrogate_gradient": "psi", "adaptation": "adaptation"}),
    "eprop_readout": ({}, {"V_m": "V_m"}),
}


def drive(dt, t_sim, seed):
    rng = np.random.default_rng(seed)
    steps = int(round(t_sim / dt))
    trains = []
    for sign in (1.0, -1.0):
        hits = np.nonzero(rng.random(steps - 20) < 0.08 * dt)[0] + 1
        times = hits * dt
        trains.append({"times": times, "weights": sign * rng.uniform(2.0, 6.0, size=times.size),
                       "delay": int(rng.integers(1, 4)), "port": "spikes"})
    current = {"times": np.array([20.0, 80.0]), "amplitudes": np.array([400.0, 150.0])}
    return trains, current


def ours(name, params, dt, t_sim, trains, current, variables):
    model = eg.compile_model(eg.models.path(name))
    net = eg.Network(dt=dt)
    pop = net.add_population(model, 1, params=params)
    for train in trains:
        # one sender per spike, so that each spike carries its own weight
        count = train["times"].size
        src = net.add_spike_source(count, times=train["times"], senders=np.arange(count))
        net.connect(src, pop, "spikes", eg.Explicit(np.arange(count), np.zeros(count, int),
                                                     weights=train["weights"]),
                    delay=train["delay"])
    net.add_current(pop, "I_stim", times=current["times"], amplitudes=current["amplitudes"])
    net.record(pop, variables)
    net.simulate(t_sim)
    return net.recording(pop), net.spikes(pop)


CASES = [(name, t_ref) for name in sorted(MODELS) for t_ref in (0.0, 2.0) if name != "eprop_readout"]


@pytest.mark.parametrize("name, t_ref", CASES + [("eprop_readout", None)])
def test_eprop_neuron_matches_nest(name, t_ref):
    dt, t_sim = 1.0, 300.0
    extra, recordables = MODELS[name]
    if name == "eprop_readout":                                 # no refractoriness, no spikes
        params = {"C_m": 250.0, "tau_m": 20.0, "E_L": 0.0}       # NEST starts a readout at V_m = 0
    else:
        params = {"C_m": 250.0, "tau_m": 20.0, "E_L": -70.0, "V_th": -60.0, "t_ref": t_ref,
                  "surrogate_gradient_height": 0.3, "surrogate_gradient_width": 2.0, **extra}
    trains, current = drive(dt, t_sim, seed=7)
    ref = nest_reference.run_nest(name, params, dt=dt, t_sim=t_sim, spike_trains=trains,
                                  current=current, record=tuple(recordables))
    rec, (times, _) = ours(name, params, dt, t_sim, trains, current, list(recordables.values()))
    np.testing.assert_array_equal(np.rint(times / dt), np.rint(ref["spike_times"] / dt))
    if name != "eprop_readout":
        assert len(times) >= 5, "the neuron should fire a few times to exercise reset and refractoriness"
    for theirs, mine in recordables.items():
        np.testing.assert_allclose(rec[mine][:, 0], ref[theirs][:, 0], rtol=RTOL, atol=RTOL * 15.0,
                                   err_msg=f"{name}: {theirs}")


@pytest.mark.parametrize("function", ["piecewise_linear", "exponential", "fast_sigmoid_derivative",
                                      "arctan_derivative"])
def test_every_nest_surrogate_function(function):
    """The language's surrogate functions are NEST's (as its code computes them, spec 3.5)."""
    dt, t_sim = 1.0, 200.0
    params = {"C_m": 250.0, "tau_m": 20.0, "E_L": -70.0, "V_th": -60.0, "t_ref": 2.0,
              "surrogate_gradient_height": 0.7, "surrogate_gradient_width": 3.0}
    trains, current = drive(dt, t_sim, seed=3)
    ref = nest_reference.run_nest("eprop_iaf", {**params, "surrogate_gradient_function": function},
                                  dt=dt, t_sim=t_sim, spike_trains=trains, current=current,
                                  record=("V_m", "surrogate_gradient"))
    model = eg.compile_model(eg.models.path("eprop_iaf"), surrogate=function)   # NEST picks it by a parameter
    net = eg.Network(dt=dt)
    pop = net.add_population(model, 1, params=params)
    for train in trains:
        count = train["times"].size
        src = net.add_spike_source(count, times=train["times"], senders=np.arange(count))
        net.connect(src, pop, "spikes", eg.Explicit(np.arange(count), np.zeros(count, int), weights=train["weights"]),
                    delay=train["delay"])
    net.add_current(pop, "I_stim", times=current["times"], amplitudes=current["amplitudes"])
    net.record(pop, ["psi"])
    net.simulate(t_sim)
    psi = net.recording(pop)["psi"][:, 0]
    assert np.count_nonzero(psi) > 20
    np.testing.assert_allclose(psi, ref["surrogate_gradient"][:, 0], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["eprop_iaf_bsshslm_2020", "eprop_iaf_adapt_bsshslm_2020"])
@pytest.mark.parametrize("regular_spike_arrival", [True, False])
@pytest.mark.parametrize("t_ref", [0.0, 2.0])
def test_time_driven_neuron_matches_nest(name, regular_spike_arrival, t_ref):
    """NEST subtracts the threshold in the step after a spike; our model subtracts theta/alpha in the
    spike step (same dynamics afterwards), so the V_m of a spike step differs by exactly theta/alpha."""
    dt, t_sim = 1.0, 300.0
    params = {"C_m": 250.0, "tau_m": 20.0, "E_L": -70.0, "V_th": -60.0, "t_ref": t_ref,
              "surrogate_gradient_height": 0.3, "surrogate_gradient_width": 2.0}
    if "adapt" in name:
        params.update(adapt_beta=2.0, adapt_tau=30.0)
    trains, current = drive(dt, t_sim, seed=11)
    for train in trains:          # NEST resets these neurons at step 2 (first update interval): start later
        keep = train["times"] >= 5.0
        train["times"], train["weights"] = train["times"][keep], train["weights"][keep]
    recordables = {"V_m": "V_m", "surrogate_gradient": "psi"}
    if "adapt" in name:
        recordables["adaptation"] = "adaptation"
    ref = nest_reference.run_nest(name, {**params, "regular_spike_arrival": regular_spike_arrival}, dt=dt,
                                  t_sim=t_sim, spike_trains=trains, current=current, record=tuple(recordables))
    rec, (times, _) = ours(name, {**params, "regular_spike_arrival": float(regular_spike_arrival)}, dt, t_sim,
                           trains, current, list(recordables.values()))
    np.testing.assert_array_equal(np.rint(times / dt), np.rint(ref["spike_times"] / dt))
    assert len(times) >= 5
    spiked = np.zeros(int(round(t_sim / dt)))
    spiked[np.rint(times / dt).astype(int) - 1] = 1.0
    theta_over_alpha = (params["V_th"] - params["E_L"]) / np.exp(-dt / params["tau_m"])
    np.testing.assert_allclose(rec["V_m"][:, 0] + theta_over_alpha * spiked, ref["V_m"][:, 0],
                               rtol=RTOL, atol=RTOL * 15.0)
    np.testing.assert_allclose(rec["psi"][:, 0], ref["surrogate_gradient"][:, 0], rtol=RTOL, atol=1e-15)
    if "adapt" in name:
        np.testing.assert_allclose(rec["adaptation"][:, 0], ref["adaptation"][:, 0], rtol=RTOL, atol=RTOL)
