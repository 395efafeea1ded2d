"""The e-prop eligibility rules come out of the model's equations (solve/eligibility.py).

Expected rules are the ones known from the e-prop literature (Bellec et al. 2020) and NEST's models,
written here by hand; the derivation must reproduce them symbolically."""
from pathlib import Path

import sympy as sp
import numpy as np
import pytest

import eprop_gen as eg
from eprop_gen.compiler import check_source, read_model
from eprop_gen.solve.eligibility import PSI
from eprop_gen.solve.propagators import H, raw_propagator

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def rules(model):
    checked = check_source(*read_model(model))
    return checked, {r.port: r for r in checked.solution.eligibility}


def sym(name):
    return sp.Symbol(name, real=True)


def same(a, b):
    return sp.simplify(sp.Matrix(a) - sp.Matrix(b)) == sp.zeros(*sp.Matrix(a).shape)


def test_lif_eligibility_is_the_filtered_presynaptic_trace():
    _, r = rules(eg.models.path("iaf_psc_delta"))
    rule = r["spikes"]
    assert rule.hidden == ("V_m",)
    assert same(rule.propagation, [[sp.exp(-H / sym("tau_m"))]])     # zbar <- alpha zbar + z
    assert same(rule.injection, [[1]])
    assert same(rule.trace, [[PSI]])                                   # e = psi zbar


def test_adaptive_threshold_gives_bellec_second_component():
    _, r = rules(EXAMPLES / "adaptive_lif.eprop")
    rule = r["spikes"]
    assert rule.hidden == ("V_m", "a")
    alpha, rho, beta = sp.exp(-H / sym("tau_m")), sp.exp(-H / sym("tau_a")), sym("beta")
    # eps_v <- alpha eps_v + z ; eps_a <- psi eps_v + (rho - beta psi) eps_a   (Bellec et al. 2020)
    assert same(rule.propagation, [[alpha, 0], [PSI, rho - beta * PSI]])
    assert same(rule.injection, [[1], [0]])
    assert same(rule.trace, [[PSI, -beta * PSI]])                      # e = psi (eps_v - beta eps_a)


def test_adaptation_gives_nests_rule():
    """The jump lands after the next decay (a = rho a + z, NEST's eprop_iaf_adapt): the derived rule
    is NEST's eps <- rho eps + e."""
    _, r = rules(EXAMPLES / "adaptive_lif.eprop")
    rule = r["spikes"]
    # eps_a[n+1] = rho eps_a[n] + e[n]   (NEST: e = psi (zbar - beta eps); eps = rho eps + e)
    expected = sp.Matrix([[0, sp.exp(-H / sym("tau_a"))]]) + rule.trace
    assert same(rule.propagation.row(1), expected)


def test_exponential_synapse_carries_the_current_component():
    checked, r = rules(eg.models.path("iaf_psc_exp"))
    rule = r["ex"]
    assert rule.hidden == ("V_m", "I_syn_ex")
    lin = checked.solution.linear
    names = [str(s) for s in lin.states]
    idx = [names.index("V_m"), names.index("I_syn_ex")]
    assert same(rule.propagation, raw_propagator(lin.matrix).extract(idx, idx))
    assert same(rule.injection, [[0], [1]])
    assert same(rule.trace, [[PSI, 0]])
    assert r["in"].hidden == ("V_m", "I_syn_in")


def test_alpha_synapse_eligibility_spans_the_kernel():
    _, r = rules(eg.models.path("iaf_psc_alpha"))
    rule = r["ex"]
    assert rule.hidden == ("V_m", "dI_ex", "I_ex")
    assert same(rule.injection, [[0], [sp.E / sym("tau_syn_ex")], [0]])   # the port's jump per unit weight


def test_readout_eligibility_is_the_output_gradient():
    _, r = rules(eg.models.path("leaky_readout"))
    rule = r["spikes"]
    assert not rule.spiking
    assert same(rule.propagation, [[sp.exp(-H / sym("tau_m"))]])
    assert same(rule.trace, [[1]])                                      # g = E * zbar


def test_izhikevich_rule_goes_through_the_rk4_step_and_the_reset():
    """Traub et al. 2020: eps = (eps_v, eps_u), propagated by the derivative of the step along the
    trajectory (archived per step) and, with reset_gradient: kept, by the reset's derivative: v = c
    forgets eps_v at a spike (1 - z), u += d passes eps_u on."""
    _, r = rules(eg.models.path("eprop_izhikevich"))
    rule = r["spikes"]
    assert rule.hidden == ("v", "u") and rule.reset_gradient == "kept"
    jac = {(q.row, q.column): q.symbol for q in rule.per_step if q.expression is None}
    assert set(jac) == {("v", "v"), ("v", "u"), ("u", "v"), ("u", "u")}
    assert same(rule.step, [[jac["v", "v"], jac["v", "u"]], [jac["u", "v"], jac["u", "u"]]])
    (reset,) = [q for q in rule.per_step if q.expression is not None]
    assert (reset.row, reset.column) == ("v", "v")
    assert sp.simplify(reset.expression - (1 - sym("z"))) == 0
    assert same(rule.reset, [[reset.symbol, 0], [0, 1]])
    assert same(rule.injection, [[1], [0]])
    assert same(rule.trace, [[PSI, 0]])


def test_stdp_lif_forgets_the_presynaptic_trace_at_a_spike():
    """eprop_iaf_stdp: V_m = V_reset and reset_gradient: kept give eps <- alpha (1 - z) eps + z_pre;
    the same neuron with reset_gradient: stopped is plain LIF e-prop."""
    _, r = rules(eg.models.path("eprop_iaf_stdp"))
    rule = r["spikes"]
    (reset,) = rule.per_step
    assert sp.simplify(reset.expression - (1 - sym("z"))) == 0
    assert same(rule.propagation, [[sp.exp(-H / sym("tau_m")) * reset.symbol]])
    stopped = eg.models.path("eprop_iaf_stdp").read_text().replace("reset_gradient: kept", "reset_gradient: stopped")
    rule = check_source(stopped).solution.eligibility[0]
    assert rule.per_step == () and same(rule.propagation, [[sp.exp(-H / sym("tau_m"))]])


def test_full_reset_gradient_goes_through_the_pseudo_derivative():
    """reset_gradient: full on a subtracting reset: V_m -= V_th - E_L gives d V/d V~ = 1 - (V_th - E_L) psi
    (the term Bellec et al. drop because it makes the eligibility explode)."""
    text = eg.models.path("eprop_iaf").read_text().replace(
        "        gradient: L * ebar + R * ebar_reg", "        gradient: L * ebar + R * ebar_reg\n        reset_gradient: full")
    rule = check_source(text).solution.eligibility[0]
    (reset,) = rule.per_step
    assert sp.simplify(reset.expression - (1 - (sym("V_th") - sym("E_L")) * PSI)) == 0


def test_unknown_reset_gradient_is_an_error():
    text = eg.models.path("eprop_iaf_stdp").read_text().replace("reset_gradient: kept", "reset_gradient: keep")
    with pytest.raises(eg.ModelError, match="(?s)E120.*did you mean 'kept'"):
        check_source(text)


@pytest.mark.parametrize("model", ["iaf_psc_delta", "iaf_psc_exp", "leaky_readout"])
def test_check_prints_the_derived_rule(model):
    checked, _ = rules(eg.models.path(model))
    assert "e-prop eligibility" in checked.summary
    assert "eps_V_m <-" in checked.summary


def test_dt_is_the_simulation_step_in_generated_code(tmp_path, monkeypatch):
    """a += exp(dt/tau_a): the jump reads the network's step at run time."""
    monkeypatch.setenv("EPROP_GEN_CACHE", str(tmp_path))
    text = (EXAMPLES / "adaptive_lif.eprop").read_text().replace("adaptation: a += 1", "adaptation: a += exp(dt / tau_a)")
    model = eg.compile_model(text)
    for dt in (0.1, 1.0):
        net = eg.Network(dt=dt)
        pop = net.add_population(model, 1, params={"I_e": 2000.0, "t_ref": 0.0})
        net.simulate(30 * dt)
        times, _ = net.spikes(pop)
        assert len(times) >= 1
        first = times[0]
        net2 = eg.Network(dt=dt)
        probe = net2.add_population(model, 1, params={"I_e": 2000.0, "t_ref": 0.0})
        net2.simulate(first + dt)
        # one step after the first spike: the jump exp(dt / tau_a) (it lands after that step's decay)
        assert probe.get("a")[0] == pytest.approx(float(sp.exp(dt / 200.0)), rel=1e-14)


def test_output_is_only_for_non_spiking_models():
    text = eg.models.path("iaf_psc_delta").read_text() + "\n    output: V_m\n"
    with pytest.raises(eg.ModelError, match="E115"):
        check_source(text)


def test_archived_rk4_derivative_equals_finite_differences_of_the_step():
    """jac[r,c] (what the Izhikevich kernel archives per step, computed alongside the RK4 stages)
    equals the derivative of the model's own step, measured by central differences: one step of
    fresh neurons started from the recorded state with c nudged by +-delta."""
    model = eg.compile_model(eg.models.path("eprop_izhikevich"))
    dt, delta = 0.1, 1e-5
    net = eg.Network(dt=dt)
    pop = net.add_population(model, 3, params={"I_e": [4.0, 10.0, 30.0]})
    net.simulate(20 * dt)
    start = {name: pop.get(name).copy() for name in ("v", "u")}
    net.simulate(dt)
    for column in ("v", "u"):
        after = {}
        for sign in (1, -1):
            probe = eg.Network(dt=dt)
            p = probe.add_population(model, 3, params={"I_e": [4.0, 10.0, 30.0]})
            for name in ("v", "u"):
                p.set(name, start[name] + (sign * delta if name == column else 0.0))
            probe.simulate(dt)
            after[sign] = {name: p.get(name) for name in ("v", "u")}
        for row in ("v", "u"):
            measured = (after[1][row] - after[-1][row]) / (2 * delta)
            archived = pop.get(f"jac[{row},{column}]")
            np.testing.assert_allclose(archived, measured, rtol=1e-7, atol=1e-9)
    assert not np.allclose(pop.get("jac[v,v]"), 1.0)          # the quadratic voltage matters
