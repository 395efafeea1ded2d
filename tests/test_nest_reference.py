"""Tests of the NEST reference harness (tests/nest_reference.py) against NEST 3.10 alone.

Each test pins one timing/behaviour fact stated in the nest_reference docstring, with
hand-computable expectations, and finally the whole harness is checked against an
independent exact-integration simulator (``simulate_exact``) written in eprop-gen
semantics.  None of these tests needs eprop_gen.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import nest_reference as nr

E_L = -70.0
DTS = [0.1, 1.0]
MODELS = list(nr.MODELS)


def _nest():
    return pytest.importorskip("nest")


# ------------------------------------------------------------------------------------------
# pure conversions (no NEST)
# ------------------------------------------------------------------------------------------
def test_conversions_pure():
    assert list(nr.to_steps([0.1, 0.30000000000000004, 2.0], 0.1)) == [1, 3, 20]
    with pytest.raises(ValueError):
        nr.to_steps([0.15], 0.1)
    np.testing.assert_allclose(nr.nest_current_times([0.2, 5.0], 0.1), [0.1, 4.9])
    np.testing.assert_allclose(nr.nest_current_times([2.0, 5.0], 1.0), [1.0, 4.0])
    with pytest.raises(ValueError):
        nr.nest_current_times([0.1], 0.1)          # would need amplitude_time 0
    with pytest.raises(ValueError):
        nr.nest_spike_times([0.0], 0.1)            # NEST cannot emit at t = 0
    assert nr.nest_delay(3, 0.1) == pytest.approx(0.3)
    per = nr.current_per_step([0.0, 0.2, 0.5], [1.0, 2.0, 3.0], 0.1, 7)
    assert list(per) == [1, 1, 2, 2, 2, 3, 3]


# ------------------------------------------------------------------------------------------
# raw NEST facts (no harness conversions involved)
# ------------------------------------------------------------------------------------------
def _raw(dt, model="iaf_psc_delta", params=None):
    nest = _nest()
    nest.ResetKernel()
    nr._quiet(nest)
    nest.set(resolution=dt, local_num_threads=1)
    n = nest.Create(model, params=params or {})
    mm = nest.Create("multimeter", params={"record_from": ["V_m"], "interval": dt})
    nest.Connect(mm, n)
    return nest, n, mm


@pytest.mark.nest
def test_raw_multimeter_lag_and_stamps():
    """Samples are stamped (n+1)*dt; the last min_delay slice (1 ms here) arrives late."""
    nest, n, mm = _raw(0.1, params={"I_e": 100.0})
    nest.Simulate(2.0)
    t = np.asarray(mm.get("events")["times"])
    assert len(t) == 10 and t[0] == pytest.approx(0.1) and t[-1] == pytest.approx(1.0)
    nest.Simulate(1.0)
    t = np.asarray(mm.get("events")["times"])
    assert len(t) == 20
    np.testing.assert_allclose(t, np.arange(1, 21) * 0.1, rtol=0, atol=1e-12)


@pytest.mark.nest
@pytest.mark.parametrize("dt", DTS)
def test_raw_step_current_generator_timing(dt):
    """amplitude_time T_g with connection delay c: first visible at T_g + (c+1)*dt."""
    for c in (1, 2):
        nest, n, mm = _raw(dt)
        g = nest.Create("step_current_generator",
                        params={"amplitude_times": [3 * dt], "amplitude_values": [100.0]})
        nest.Connect(g, n, syn_spec={"delay": c * dt})
        nest.Simulate(30 * dt + 2.0)
        ev = mm.get("events")
        steps = np.rint(np.asarray(ev["times"]) / dt)
        v = np.asarray(ev["V_m"])
        first = steps[np.nonzero(v != E_L)[0][0]]
        assert first == 3 + c + 1
    with pytest.raises(Exception):
        nest.Create("step_current_generator", params={"amplitude_times": [0.0], "amplitude_values": [1.0]})


@pytest.mark.nest
def test_raw_spike_generator_rejects_t0_and_multiplies_spike_weights():
    nest, n, mm = _raw(0.1, params={"tau_m": 1e12})
    with pytest.raises(Exception):
        nest.Create("spike_generator", params={"spike_times": [0.0]})
    g = nest.Create("spike_generator", params={"spike_times": [0.5, 0.5, 1.0],
                                                "spike_weights": [1.5, 2.0, -0.25]})
    nest.Connect(g, n, syn_spec={"weight": 2.0, "delay": 0.1})
    nest.Simulate(3.0)
    ev = mm.get("events")
    v = np.asarray(ev["V_m"]) - E_L
    steps = np.rint(np.asarray(ev["times"]) / 0.1).astype(int)
    assert v[steps == 5][0] == 0.0
    assert v[steps == 6][0] == pytest.approx(7.0, abs=1e-12)     # (1.5 + 2.0) * 2
    assert v[steps == 11][0] == pytest.approx(6.5, abs=1e-9)    # - 0.25 * 2


@pytest.mark.nest
def test_V_min_defaults():
    nest = _nest()
    nest.ResetKernel()
    assert nest.GetDefaults("iaf_psc_delta")["V_min"] == -np.finfo(float).max
    assert nest.GetDefaults("iaf_psc_alpha")["V_min"] == -math.inf
    assert "V_min" not in nest.GetDefaults("iaf_psc_exp")
    assert nest.GetDefaults("iaf_psc_delta")["refractory_input"] is False
    # V_min, when set, clips V_m from below
    r = nr.run_nest("iaf_psc_delta", {"V_min": -75.0}, dt=0.1, t_sim=3.0,
                    spike_trains=[{"times": [1.0], "weights": -20.0, "delay": 1}])
    assert r["V_m"].min() == -75.0


# ------------------------------------------------------------------------------------------
# harness timing facts, hand-computable
# ------------------------------------------------------------------------------------------
@pytest.mark.nest
@pytest.mark.parametrize("dt", DTS)
@pytest.mark.parametrize("s,d", [(1, 1), (3, 1), (3, 3), (1, 2), (5, 4)])
def test_delta_jump_timing(dt, s, d):
    """Spike at s*dt, delay d: V_m jumps by exactly w in the sample at (s+d)*dt."""
    w, tau = 1.0, 10.0
    r = nr.run_nest("iaf_psc_delta", {"tau_m": tau}, dt=dt, t_sim=(s + d + 5) * dt,
                    spike_trains=[{"times": [s * dt], "weights": w, "delay": d}])
    assert list(r["steps"]) == list(range(1, s + d + 6))
    np.testing.assert_allclose(r["times"], r["steps"] * dt, rtol=0, atol=1e-12)
    v = r["V_m"][:, 0]
    k = s + d - 1                       # index of the sample at (s+d)*dt
    assert np.all(v[:k] == E_L)
    assert v[k] == E_L + w
    for j in range(1, 5):
        assert v[k + j] == pytest.approx(E_L + w * math.exp(-j * dt / tau), abs=1e-13)


@pytest.mark.nest
@pytest.mark.parametrize("dt", DTS)
@pytest.mark.parametrize("model", MODELS)
def test_I_e_used_from_step_0(model, dt):
    r = nr.run_nest(model, {"I_e": 100.0}, dt=dt, t_sim=3 * dt)
    tau, C = 10.0, 250.0
    expected = E_L + 100.0 * tau / C * -math.expm1(-dt / tau)
    assert r["V_m"][0, 0] == pytest.approx(expected, abs=1e-13)


@pytest.mark.nest
@pytest.mark.parametrize("dt", DTS)
@pytest.mark.parametrize("method", ["generator", "I_e"])
def test_step_current_timing(dt, method):
    """eprop-gen current starting at t = m*dt is used in step m: first change at (m+1)*dt,
    equal to the one-step analytic solution; the current is off again after the next time."""
    m, amp, tau, C = 4, 100.0, 10.0, 250.0
    r = nr.run_nest("iaf_psc_delta", {}, dt=dt, t_sim=12 * dt, current_method=method,
                    current={"times": [m * dt, (m + 3) * dt], "amplitudes": [amp, 0.0]})
    v = r["V_m"][:, 0]
    first = np.nonzero(v != E_L)[0][0]
    assert r["steps"][first] == m + 1
    assert v[first] == pytest.approx(E_L + amp * tau / C * -math.expm1(-dt / tau), abs=1e-13)
    # 3 steps with current, then free decay
    ex = nr.simulate_exact("iaf_psc_delta", {}, dt=dt, t_sim=12 * dt,
                           current={"times": [m * dt, (m + 3) * dt], "amplitudes": [amp, 0.0]})
    np.testing.assert_allclose(v, ex["V_m"][:, 0], rtol=0, atol=1e-12)


@pytest.mark.nest
@pytest.mark.parametrize("dt", DTS)
def test_current_methods_agree_and_early_times(dt):
    cur = {"times": [2 * dt, 5.0, 12.0], "amplitudes": [100.0, -50.0, 30.0]}
    for model in MODELS:
        a = nr.run_nest(model, {"V_th": 1e9}, dt=dt, t_sim=20.0, current=cur, current_method="generator")
        b = nr.run_nest(model, {"V_th": 1e9}, dt=dt, t_sim=20.0, current=cur, current_method="I_e")
        np.testing.assert_allclose(a["V_m"], b["V_m"], rtol=0, atol=1e-12)
        # times 0 and dt are only possible with the I_e method ("auto" picks it)
        early = {"times": [0.0, dt, 3 * dt], "amplitudes": [100.0, -50.0, 30.0]}
        c = nr.run_nest(model, {"V_th": 1e9}, dt=dt, t_sim=20.0, current=early)
        e = nr.simulate_exact(model, {"V_th": 1e9}, dt=dt, t_sim=20.0, current=early)
        np.testing.assert_allclose(c["V_m"], e["V_m"], rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        nr.run_nest("iaf_psc_delta", {}, dt=dt, t_sim=5.0, current_method="generator",
                    current={"times": [dt], "amplitudes": [1.0]})


@pytest.mark.nest
@pytest.mark.parametrize("dt", DTS)
def test_spike_time_and_threshold_equality(dt):
    """V_m == V_th fires; the spike of step n is stamped (n+1)*dt, V_reset is recorded then."""
    r = nr.run_nest("iaf_psc_delta", {}, dt=dt, t_sim=10 * dt,
                    spike_trains=[{"times": [4 * dt], "weights": 15.0, "delay": 2}])
    assert list(np.rint(r["spike_times"] / dt)) == [6]
    assert list(r["spike_senders"]) == [0]
    assert r["V_m"][5, 0] == -70.0
    r = nr.run_nest("iaf_psc_delta", {}, dt=dt, t_sim=10 * dt,
                    spike_trains=[{"times": [4 * dt], "weights": 15.0 - 1e-9, "delay": 2}])
    assert r["spike_times"].size == 0


@pytest.mark.nest
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("dt,t_ref", [(0.1, 2.0), (0.1, 0.1), (0.1, 0.0), (1.0, 2.0), (1.0, 0.0)])
def test_refractory_clamp(model, dt, t_ref):
    """After a spike in step n: V_reset recorded for r+1 samples, (n+1)..(n+1+r) dt."""
    r_steps = int(round(t_ref / dt))
    a = nr.run_nest(model, {"I_e": 500.0, "t_ref": t_ref}, dt=dt, t_sim=50.0)
    b = nr.run_nest(model, {"I_e": 500.0, "t_ref": 0.0}, dt=dt, t_sim=50.0)
    sa = np.rint(a["spike_times"] / dt).astype(int)
    sb = np.rint(b["spike_times"] / dt).astype(int)
    assert sa[0] == sb[0]                                    # analytic: same first crossing
    # first crossing: smallest n with I R (1 - exp(-(n+1) dt / tau)) >= 15 -> spike step n+1
    n = math.ceil(-10.0 / dt * math.log1p(-15.0 / (500.0 * 10.0 / 250.0))) - 1
    assert sa[0] == n + 1 or sa[0] == n + 2  # allow round-off at the crossing
    assert np.all(np.diff(sa) == np.diff(sb)[0] + r_steps)
    v = a["V_m"][:, 0]
    i0 = sa[0] - 1
    run = 0
    while v[i0 + run] == -70.0:
        run += 1
    assert run == r_steps + 1


@pytest.mark.nest
def test_delta_refractory_drops_input():
    """Spike in step 9 (t=1.0), t_ref = 5 steps: inputs arriving in steps 9..14 are lost."""
    dt = 0.1
    for arrival in range(10, 18):                  # arrival sample index (time arrival*dt)
        r = nr.run_nest("iaf_psc_delta", {"t_ref": 0.5, "tau_m": 1e12}, dt=dt, t_sim=3.0,
                        spike_trains=[{"times": [0.9], "weights": 20.0, "delay": 1},
                                      {"times": [(arrival - 1) * dt], "weights": 1.0, "delay": 1}])
        assert list(np.rint(r["spike_times"] / dt)) == [10]
        kept = r["V_m"][-1, 0] - E_L
        assert kept == pytest.approx(1.0 if arrival >= 16 else 0.0, abs=1e-9), arrival


@pytest.mark.nest
@pytest.mark.parametrize("model", ["iaf_psc_exp", "iaf_psc_alpha"])
def test_psc_synapses_integrate_during_refractoriness(model):
    """V_m is clamped for t_ref, but a spike arriving meanwhile still enters I_syn."""
    dt, p = 0.1, {"t_ref": 2.0}
    w = {"iaf_psc_exp": 5000.0, "iaf_psc_alpha": 2500.0}[model]
    base = [{"times": [0.9], "weights": w, "delay": 1, "port": "ex"}]   # forces one spike
    a = nr.run_nest(model, p, dt=dt, t_sim=8.0, spike_trains=base, record=("V_m", "I_syn_ex"))
    s = int(np.rint(a["spike_times"][0] / dt))                           # spike step s-1
    extra = base + [{"times": [(s + 4) * dt], "weights": 300.0, "delay": 1, "port": "ex"}]
    b = nr.run_nest(model, p, dt=dt, t_sim=8.0, spike_trains=extra, record=("V_m", "I_syn_ex"))
    assert int(np.rint(b["spike_times"][0] / dt)) == s
    clamp = slice(s - 1, s + 20)                      # samples s*dt .. (s+20)*dt
    assert np.all(a["V_m"][clamp] == -70.0) and np.all(b["V_m"][clamp] == -70.0)
    assert np.any(a["I_syn_ex"][clamp] != b["I_syn_ex"][clamp])   # input taken during t_ref
    assert b["V_m"][s + 20, 0] > a["V_m"][s + 20, 0] > -70.0      # and felt right afterwards
    for r, tr in ((a, base), (b, extra)):
        e = nr.simulate_exact(model, p, dt=dt, t_sim=8.0, spike_trains=tr)
        np.testing.assert_allclose(r["V_m"], e["V_m"], rtol=1e-12, atol=1e-11)


@pytest.mark.nest
@pytest.mark.parametrize("dt", DTS)
def test_alpha_psc_peaks_at_weight(dt):
    w, tau_s = 37.5, 2.0
    r = nr.run_nest("iaf_psc_alpha", {"tau_syn_ex": tau_s}, dt=dt, t_sim=20.0,
                    spike_trains=[{"times": [1.0], "weights": w, "delay": 1, "port": "ex"}],
                    record=("V_m", "I_syn_ex"))
    i = int(np.argmax(r["I_syn_ex"][:, 0]))
    assert r["steps"][i] * dt == pytest.approx(1.0 + dt + tau_s)
    assert r["I_syn_ex"][i, 0] == pytest.approx(w, rel=1e-13)
    r = nr.run_nest("iaf_psc_exp", {"tau_syn_ex": tau_s}, dt=dt, t_sim=5.0,
                    spike_trains=[{"times": [1.0], "weights": w, "delay": 1, "port": "ex"}],
                    record=("V_m", "I_syn_ex"))
    i = int(np.nonzero(r["I_syn_ex"][:, 0])[0][0])
    assert r["steps"][i] * dt == pytest.approx(1.0 + dt) and r["I_syn_ex"][i, 0] == w


# ------------------------------------------------------------------------------------------
# whole harness vs an independent exact-integration simulator
# ------------------------------------------------------------------------------------------
WEIGHTS = {"iaf_psc_delta": 1.5, "iaf_psc_exp": 160.0, "iaf_psc_alpha": 100.0}


def _random_case(model, dt, seed, n=3, t_sim=300.0):
    rng = np.random.default_rng(seed)
    sources = nr.poisson_sources(rng, 12, 300.0, t_sim, dt)
    conns = {"sources": [], "targets": [], "weights": [], "delays": []}
    for i in range(12):
        for j in range(n):
            sign = 1.0 if i < 8 else -1.0
            conns["sources"].append(i)
            conns["targets"].append(j)
            conns["weights"].append(sign * WEIGHTS[model] * rng.uniform(0.5, 1.5))
            conns["delays"].append(int(rng.integers(1, 6)))
    params = {"I_e": 150.0, "t_ref": [2.0, 1.0, 3.0][:n], "tau_m": [10.0, 15.0, 7.0][:n],
              "C_m": [250.0, 200.0, 300.0][:n], "V_reset": [-70.0, -65.0, -72.0][:n]}
    if model != "iaf_psc_delta":
        params.update(tau_syn_ex=[2.0, 0.5, 5.0][:n], tau_syn_in=[3.0, 1.0, 7.0][:n])
    cur = {"times": [50.0, 120.0, 200.0], "amplitudes": [100.0, -50.0, 30.0]}
    return params, sources, conns, cur


@pytest.mark.nest
@pytest.mark.parametrize("dt", DTS)
@pytest.mark.parametrize("model", MODELS)
def test_harness_matches_exact_reference(model, dt):
    params, sources, conns, cur = _random_case(model, dt, seed=11)
    changes = [(150.0, {"tau_m": [20.0, 5.0, 12.0], "I_e": 80.0})]
    a = nr.run_nest(model, params, dt=dt, t_sim=300.0, n_neurons=3, sources=sources,
                    connections=conns, current=cur, param_changes=changes)
    e = nr.simulate_exact(model, params, dt=dt, t_sim=300.0, n_neurons=3, sources=sources,
                          connections=conns, current=cur, param_changes=changes)
    dev = np.abs(a["V_m"] - e["V_m"]).max()
    print(f"{model} dt={dt}: {a['spike_times'].size} spikes, max |dV| NEST vs exact = {dev:.3g} mV")
    assert a["spike_times"].size >= 9
    np.testing.assert_allclose(a["V_m"], e["V_m"], rtol=1e-9, atol=1e-9 * 15.0)
    np.testing.assert_array_equal(np.rint(a["spike_times"] / dt), np.rint(e["spike_times"] / dt))
    np.testing.assert_array_equal(a["spike_senders"], e["spike_senders"])


@pytest.mark.nest
@pytest.mark.parametrize("dt", DTS)
@pytest.mark.parametrize("model", ["iaf_psc_exp", "iaf_psc_alpha"])
@pytest.mark.parametrize("eps", [0.0, 1e-10])
def test_singular_tau_nest_is_exact(model, dt, eps):
    """tau_syn == tau_m (and tau_m*(1+1e-10)): NEST agrees with the exact solution."""
    params, sources, conns, cur = _random_case(model, dt, seed=5)
    tm = np.asarray(params["tau_m"])
    params.update(tau_syn_ex=tm * (1 + eps), tau_syn_in=tm * (1 + eps))
    conns["weights"] = [0.3 * w for w in conns["weights"]]      # slower synapses: fewer spikes
    a = nr.run_nest(model, params, dt=dt, t_sim=300.0, n_neurons=3, sources=sources,
                    connections=conns, current=cur)
    e = nr.simulate_exact(model, params, dt=dt, t_sim=300.0, n_neurons=3, sources=sources,
                          connections=conns, current=cur)
    dev = np.abs(a["V_m"] - e["V_m"]).max()
    print(f"{model} dt={dt} eps={eps}: max |dV| NEST vs exact = {dev:.3g} mV")
    assert a["spike_times"].size >= 9
    np.testing.assert_allclose(a["V_m"], e["V_m"], rtol=1e-9, atol=1e-9 * 15.0)
    np.testing.assert_array_equal(np.rint(a["spike_times"] / dt), np.rint(e["spike_times"] / dt))


@pytest.mark.nest
def test_alpha_near_singular_nest_deviation_is_characterised():
    """Characterisation: for 1e-9 < |tau_syn/tau_m - 1| < ~1e-5 NEST's iaf_psc_alpha deviates
    from the exact solution proportionally to the mismatch (it uses the singular limit there):
    at dt = 1.0 and 1e-6 the PSP is off by ~1.3e-8 of its peak.  eprop-gen comparisons at
    rtol 1e-9 must therefore stay at mismatches <= ~1e-8 (the 1e-10 case is fine).
    iaf_psc_exp has no such deviation."""
    dt = 1.0
    tr = [{"times": [dt], "weights": 1000.0, "delay": 1, "port": "ex"}]

    def rel_dev(model, eps):
        p = {"tau_m": 10.0, "tau_syn_ex": 10.0 * (1 + eps), "V_th": 1e9}
        a = nr.run_nest(model, p, dt=dt, t_sim=100.0, spike_trains=tr)
        e = nr.simulate_exact(model, p, dt=dt, t_sim=100.0, spike_trains=tr)
        return np.abs(a["V_m"] - e["V_m"]).max() / np.abs(e["V_m"] - E_L).max()

    assert rel_dev("iaf_psc_alpha", 1e-10) < 1e-11
    assert 1e-9 < rel_dev("iaf_psc_alpha", 1e-6) < 1e-7
    assert rel_dev("iaf_psc_exp", 1e-6) < 1e-13
