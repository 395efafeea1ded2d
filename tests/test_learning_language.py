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
