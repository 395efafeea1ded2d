"""The `learning:` section: traces (per synapse or per neuron, derived from what they read), gradient,
regularisation and cutoff, as the shipped NEST-equivalent models declare them."""
import math

import pytest
import sympy as sp

import eprop_gen as eg
from eprop_gen.compiler import check_source, read_model
from eprop_gen.ir import E_TRACE, LEARNING_SIGNAL, REGULARISATION

RECURRENT = ["eprop_iaf", "eprop_iaf_adapt", "eprop_iaf_psc_delta", "eprop_iaf_psc_delta_adapt"]


def learning(name):
    return check_source(*read_model(eg.models.path(name))).ir


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_models_declare_nest_event_driven_rule(name):
    ir = learning(name)
    rule = ir.learning
    traces = {t.name: t for t in rule.traces}
    assert traces["ebar"].per_synapse and traces["ebar_reg"].per_synapse
    assert not traces["rate"].per_synapse                      # a filtered rate of the neuron's own spikes
    kappa, kappa_reg = sp.Symbol("kappa", real=True), sp.Symbol("kappa_reg", real=True)
    ebar, ebar_reg = traces["ebar"].symbol, traces["ebar_reg"].symbol
    assert sp.simplify(traces["ebar"].update - (kappa * ebar + E_TRACE)) == 0      # no (1 - kappa): NEST's code
    assert sp.simplify(traces["ebar_reg"].update - (kappa_reg * ebar_reg + (1 - kappa_reg) * E_TRACE)) == 0
    assert sp.simplify(rule.gradient - (LEARNING_SIGNAL * ebar + REGULARISATION * ebar_reg)) == 0
    defaults = {p.name: p.default for p in ir.parameters}
    assert math.isinf(defaults["eprop_isi_trace_cutoff"])       # `inf ms`: no cutoff by default
    assert (defaults["kappa"], defaults["kappa_reg"], defaults["f_target"]) == (0.97, 0.97, 10.0)


def test_readout_gradient_is_error_times_trace():
    rule = learning("eprop_readout").learning
    assert rule.traces == ()
    assert sp.simplify(rule.gradient - LEARNING_SIGNAL * E_TRACE) == 0


def test_summary_shows_the_rule():
    text = check_source(*read_model(eg.models.path("eprop_iaf"))).summary
    assert "learning (per synapse: ebar, ebar_reg; per neuron: rate" in text
    assert "gradient = L*ebar + R*ebar_reg" in text


BASE = """\
neuron n:
    parameters:
        tau_m = 10.0 ms
        V_th = 1.0 mV
        kappa = 0.9
    state:
        V_m = 0.0 mV
    inputs:
        spikes: spike -> V_m
    equations:
        V_m' = -V_m / tau_m
    spike:
        threshold: V_m >= V_th
        reset: V_m = 0
        surrogate: piecewise_linear(V_m - V_th)
    learning:
{learning}
"""


@pytest.mark.parametrize("learning_lines, code, fragment", [
    ("        ebar <- kappa * ebar + e\n        ebar <- e\n        gradient: L * ebar", "E102", "updated twice"),
    ("        gradient: L * ebar", "E104", "undefined name 'ebar'"),
    ("        gradient: L * e + R", "E104", "undefined name 'R'"),        # R needs a regularisation
    ("        e <- kappa * e\n        gradient: L * e", "E103", "cannot name a trace"),
    ("        gradient: L * e\n        gradient: L", "E102", "given twice"),
])
def test_learning_mistakes_are_reported(learning_lines, code, fragment):
    with pytest.raises(eg.ModelError) as err:
        check_source(BASE.format(learning=learning_lines), "n.eprop")
    assert f"error[{code}]" in str(err.value) and fragment in str(err.value)


def test_parameter_may_not_shadow_a_learning_builtin():
    text = BASE.replace("        kappa = 0.9\n", "        kappa = 0.9\n        L = 1.0\n")
    with pytest.raises(eg.ModelError, match="E103.*'L' is a built-in"):
        check_source(text.format(learning="        gradient: L * e"), "n.eprop")


def test_readout_learning_has_no_pseudo_derivative():
    text = eg.models.path("eprop_readout").read_text().replace("gradient: L * e ", "gradient: L * e * psi ")
    with pytest.raises(eg.ModelError, match="undefined name 'psi'"):
        check_source(text, "readout.eprop")


def test_kernel_computes_rate_and_regularisation_each_step():
    """rate[n] = kappa_reg rate[n-1] + (1 - kappa_reg) z[n] / dt and R[n] = c_reg (rate[n] - f_target dt)
    (NEST 3.10, spec 3.6), from the neuron's own spikes, every step."""
    import numpy as np
    model = eg.compile_model(eg.models.path("eprop_iaf"))
    assert {"psi", "rate", "R"} <= set(model.observables)
    dt, steps = 1.0, 400
    params = {"C_m": 1.0, "tau_m": 20.0, "E_L": 0.0, "V_th": 0.05, "t_ref": 0.0, "I_e": 0.004,
              "c_reg": 3.0, "f_target": 20.0, "kappa_reg": 0.9}
    net = eg.Network(dt=dt)
    pop = net.add_population(model, 3, params={**params, "I_e": [0.004, 0.006, 0.0]})
    net.record(pop, ["rate", "R"])
    net.simulate(steps * dt)
    times, senders = net.spikes(pop)
    z = np.zeros((steps, 3))
    z[np.rint(times / dt).astype(int) - 1, senders] = 1.0
    assert z[:, 0].sum() > 5 and z[:, 2].sum() == 0
    rate = np.zeros(3)
    expected_rate, expected_R = [], []
    for n in range(steps):
        rate = params["kappa_reg"] * rate + (1 - params["kappa_reg"]) * z[n] / dt
        expected_rate.append(rate.copy())
        expected_R.append(params["c_reg"] * (rate - params["f_target"] / 1000 * dt))
    rec = net.recording(pop)
    np.testing.assert_allclose(rec["rate"], expected_rate, rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(rec["R"], expected_R, rtol=1e-14, atol=1e-16)
