"""The model language: invalid models give one exact, positioned message; shipped models check.

Every file tests/invalid/NAME.eprop holds one mistake class (several_errors.eprop holds several) and
NAME.expected the complete message a user must see, with the file named by its basename (the tests
pass the basename, the CLI test runs inside tests/invalid). The .expected files were generated once
and then read by hand: line:col, caret and hint were checked against the source, not copied blindly
(unknown_unit.expected was written by hand before the unit caret was fixed; it now matches).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp
from click.testing import CliRunner

import eprop_gen
from eprop_gen import models
from eprop_gen.cli import main
from eprop_gen.compiler import check_source
from eprop_gen.errors import EpropGenError, ModelError

INVALID = Path(__file__).parent / "invalid"
INVALID_FILES = sorted(INVALID.glob("*.eprop"))
HEADER = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): error\[(?P<code>E\d{3})\]: ", re.M)


def _error_of(path: Path) -> ModelError:
    with pytest.raises(ModelError) as info:
        check_source(path.read_text(), path.name)
    return info.value


def test_every_mistake_class_has_a_file_and_an_expected_message():
    names = {p.stem for p in INVALID_FILES}
    required = {
        "syntax_missing_operand", "syntax_stray_character", "bad_indentation", "unknown_name",
        "duplicate_declaration", "ode_undeclared_state", "ode_for_parameter", "non_numeric_default",
        "division_by_zero_default", "threshold_unknown_variable", "unknown_surrogate", "unknown_unit",
        "reset_unknown_variable", "unknown_solver", "several_errors",
    }
    assert required <= names
    for p in INVALID_FILES:
        assert p.with_suffix(".expected").is_file(), f"{p.name} has no .expected"


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.stem)
def test_invalid_model_message(path: Path):
    error = _error_of(path)
    expected = path.with_suffix(".expected").read_text().rstrip("\n")
    assert str(error) == expected
    # the error type is exactly ModelError (the single type users catch), and a user error
    assert type(error) is ModelError and isinstance(error, EpropGenError)
    assert eprop_gen.ModelError is ModelError
    assert "Traceback" not in str(error)


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.stem)
def test_invalid_model_caret_is_under_the_reported_column(path: Path):
    """Independent of the .expected text: each diagnostic's caret starts at its column on the
    quoted source line, and that line is the file's line."""
    error = _error_of(path)
    source = path.read_text().splitlines()
    lines = str(error).splitlines()
    headers = [i for i, l in enumerate(lines) if HEADER.match(l)]
    assert len(headers) == len(error.diagnostics) >= 1
    for i in headers:
        m = HEADER.match(lines[i])
        assert m["file"] == path.name
        line, col = int(m["line"]), int(m["col"])
        quoted, caret = lines[i + 1], lines[i + 2]
        assert quoted == "    " + source[line - 1]
        assert caret.startswith(" " * (4 + col - 1) + "^")


def test_several_errors_are_all_reported_sorted_by_position():
    error = _error_of(INVALID / "several_errors.eprop")
    positions = [(d.span.line, d.span.col) for d in error.diagnostics]
    assert len(positions) >= 4
    assert positions == sorted(positions)
    codes = {d.code for d in error.diagnostics}
    assert {"E102", "E104", "E107", "E111"} <= codes
    assert str(error).endswith(f"\n{len(positions)} errors")


def test_unknown_name_hint_names_the_declared_name():
    error = _error_of(INVALID / "unknown_name.eprop")
    (d,) = error.diagnostics
    assert d.code == "E104" and "tau_sin" in d.message
    assert d.hint == "did you mean 'tau_syn'?"


@pytest.mark.parametrize("where, source, unit", [
    ("parameter", "        tau_m = 10.0 msec\n", "msec"),
    ("state", "        tau_m = 10.0 ms\n    state:\n        V_m = 0.0 mVolt\n", "mVolt"),
], ids=["parameter", "state"])
def test_unknown_unit_caret_is_under_the_unit(where, source, unit):
    """The unit, not the value before it, is what is wrong."""
    text = "neuron t:\n    parameters:\n" + source
    if where == "parameter":
        text += "    state:\n        V_m = 0.0 mV\n"
    text += "    equations:\n        V_m' = -V_m / tau_m\n"
    with pytest.raises(ModelError) as info:
        check_source(text, "t.eprop")
    (d,) = info.value.diagnostics
    assert d.code == "E110"
    line = text.splitlines()[d.span.line - 1]
    assert line[d.span.col - 1:d.span.end_col - 1] == unit


def test_unknown_unit_of_current_port_points_at_the_unit():
    text = ("neuron t:\n    parameters:\n        tau_m = 10.0 ms\n    state:\n        V_m = 0.0 mV\n"
            "    inputs:\n        I_stim: current pAA\n"
            "    equations:\n        V_m' = -V_m / tau_m + I_stim\n")
    with pytest.raises(ModelError) as info:
        check_source(text, "t.eprop")
    (d,) = info.value.diagnostics
    assert d.code == "E110"
    line = text.splitlines()[d.span.line - 1]
    assert line[d.span.col - 1:d.span.end_col - 1] == "pAA"


def test_caret_is_under_the_token_on_a_tab_indented_line():
    """The language accepts tab indentation (a tab counts as four); the quoted line is shown with
    tabs expanded, so the caret must be placed in the same expanded columns."""
    text = "neuron t:\n\tparameters:\n\t\ttau_m = 10.0 ms\n\tstate:\n\t\tV_m = 0.0 mV\n" \
           "\tequations:\n\t\tV_m' = -V_m / tau_mm\n"
    with pytest.raises(ModelError) as info:
        check_source(text, "tabs.eprop")
    _, quoted, caret = str(info.value).splitlines()
    assert quoted.strip() == "V_m' = -V_m / tau_mm"
    start = caret.index("^")
    assert quoted[start:start + len("tau_mm")] == "tau_mm"
    assert caret[start:].split(" ")[0] == "^" * len("tau_mm")


def test_model_error_carries_every_diagnostic_and_lines_without_source():
    error = _error_of(INVALID / "several_errors.eprop")
    assert all(d.span.file == "several_errors.eprop" for d in error.diagnostics)
    # the same error without source text still names the position
    bare = ModelError(error.diagnostics)
    assert str(bare).splitlines()[0] == str(error).splitlines()[0]
    assert "^" not in str(bare)


# ------------------------------------------------------------------------------------------ CLI

@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.stem)
def test_cli_check_reports_the_message_on_stderr(path: Path, monkeypatch):
    monkeypatch.chdir(INVALID)
    result = CliRunner().invoke(main, ["check", path.name])
    assert result.exit_code == 1
    # exactly the message of the Python API (whose text the .expected files pin down)
    assert result.stderr.rstrip("\n") == str(_error_of(path))
    assert result.stderr.startswith(path.name + ":")
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_cli_check_in_a_real_process():
    path = INVALID / "unknown_name.eprop"
    proc = subprocess.run([sys.executable, "-m", "eprop_gen.cli", "check", path.name], cwd=INVALID,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.rstrip("\n") == path.with_suffix(".expected").read_text().rstrip("\n")


def test_cli_check_missing_file():
    result = CliRunner().invoke(main, ["check", "no/such/model.eprop"])
    assert result.exit_code == 1
    assert "no/such/model.eprop" in result.stderr and "no such model file" in result.stderr
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------------- valid models

@pytest.fixture(scope="module")
def checked():
    return {name: check_source(models.path(name).read_text(), str(models.path(name)))
            for name in models.names()}


def test_shipped_models_are_the_documented_ones():
    assert {"iaf_psc_alpha", "iaf_psc_delta", "iaf_psc_exp", "izhikevich", "leaky_readout"} <= set(models.names())


def test_every_shipped_model_parses_and_checks(checked):
    for name, c in checked.items():
        source = models.path(name).read_text()
        assert c.ir.name == name
        declared_states = re.findall(r"^\s+(\w+)' =", source, re.M)
        assert {s.name for s in c.ir.states} >= set(declared_states)
        # every state is either exact or numeric, never both, never neither
        exact = {str(s) for s in c.solution.linear.states} if c.solution.linear else set()
        numeric = set(c.solution.numeric_states)
        assert not exact & numeric
        assert exact | numeric == {s.name for s in c.ir.states}
        assert c.summary.startswith(f"model {name}")


def _summary_line(summary: str, prefix: str) -> str:
    lines = [l.strip() for l in summary.splitlines() if l.strip().startswith(prefix)]
    assert len(lines) == 1, f"no single line starting with {prefix!r} in\n{summary}"
    return lines[0]


def test_iaf_psc_alpha_is_all_exact_with_two_singular_cases(checked):
    c = checked["iaf_psc_alpha"]
    states = ["V_m", "dI_ex", "I_ex", "dI_in", "I_in"]
    assert [str(s) for s in c.solution.linear.states] == states
    assert c.solution.numeric_states == ()
    conditions = {(str(k.condition.lhs), str(k.condition.rhs)) for k in c.solution.linear.singular_cases}
    normalised = {tuple(sorted(pair)) for pair in conditions}
    assert normalised == {("tau_m", "tau_syn_ex"), ("tau_m", "tau_syn_in")}
    line = _summary_line(c.summary, "solved exactly")
    assert line.split(": ", 1)[1].split(", ") == states
    assert "solved numerically" not in c.summary
    singular = [l for l in c.summary.splitlines() if "singular case" in l]
    assert len(singular) == 2
    assert any("tau_syn_ex" in l and "tau_m" in l for l in singular)
    assert any("tau_syn_in" in l and "tau_m" in l for l in singular)
    assert "kind: spiking neuron" in c.summary


def test_iaf_psc_alpha_singular_branches_touch_only_the_membrane_row(checked):
    """Only V_m is driven by two different time constants; the synaptic entries are regular."""
    for case in checked["iaf_psc_alpha"].solution.linear.singular_cases:
        syn = "ex" if "ex" in str(case.condition) else "in"
        assert {row for row, _ in case.entries} == {"V_m"}
        assert {col for _, col in case.entries} == {f"I_{syn}", f"dI_{syn}"}


def test_izhikevich_is_numeric_rk4(checked):
    c = checked["izhikevich"]
    assert c.solution.linear is None
    assert c.solution.numeric_states == ("v", "u")
    assert c.ir.scheme.method == "rk4" and c.ir.scheme.substeps == 10
    line = _summary_line(c.summary, "solved numerically")
    assert "RK4" in line and "10 substep" in line and line.endswith(": v, u")
    assert "solved exactly" not in c.summary


def test_leaky_readout_is_non_spiking(checked):
    c = checked["leaky_readout"]
    assert c.ir.spike is None and not c.ir.is_spiking
    assert "non-spiking" in _summary_line(c.summary, "kind:")
    assert "threshold" not in c.summary
    assert [str(s) for s in c.solution.linear.states] == ["V_m"]
    assert c.solution.linear.singular_cases == ()


def test_iaf_psc_exp_and_delta_are_exact(checked):
    exp = checked["iaf_psc_exp"].solution
    assert [str(s) for s in exp.linear.states] == ["V_m", "I_syn_ex", "I_syn_in"] and not exp.numeric_states
    delta = checked["iaf_psc_delta"].solution
    assert [str(s) for s in delta.linear.states] == ["V_m"] and delta.linear.singular_cases == ()


def test_check_source_matches_what_the_file_says(checked):
    """Parameter defaults and units in the IR are the ones written in the file."""
    c = checked["iaf_psc_exp"]
    text = models.path("iaf_psc_exp").read_text()
    for p in c.ir.parameters:
        m = re.search(rf"^\s+{p.name} = (-?[\d.]+) (\w+)", text, re.M)
        assert m, p.name
        assert p.default == float(m[1]) and p.unit == m[2]
    assert c.ir.state("V_m").initial == sp.Symbol("E_L", real=True)


def test_language_features_in_one_model():
    """Comments, line continuation, '^' powers, functions, pi, all reset operators and a
    spike port with an expression are accepted and mean what they say."""
    text = (
        "# header comment\n"
        "neuron feature_test:   # trailing comment\n"
        "    parameters:\n"
        "        tau = 2 * 5.0 ms\n"
        "        g = sqrt(4.0) + max(1.0, 0.5) - pi * 0\n"
        "    state:\n"
        "        x = g * 2\n"
        "        y = 0.0\n"
        "    inputs:\n"
        "        s: spike -> y += weight * g / tau\n"
        "    equations:\n"
        "        x' = -x / tau + \\\n"
        "             y ^ 2\n"
        "        y' = -(y\n"
        "               ) / tau\n"
        "    spike:\n"
        "        threshold: x > 1.0\n"
        "        reset:\n"
        "            x -= 1.0\n"
        "            y *= 0.5\n"
    )
    c = check_source(text)
    ir = c.ir
    assert {p.name: p.default for p in ir.parameters} == {"tau": 10.0, "g": 3.0}
    x, y, tau = (sp.Symbol(n, real=True) for n in ("x", "y", "tau"))
    assert sp.simplify(ir.rhs("x") - (-x / tau + y ** 2)) == 0
    assert sp.simplify(ir.rhs("y") + y / tau) == 0
    assert [a.target for a in ir.spike.reset] == ["x", "y"]
    assert sp.simplify(ir.spike.reset[0].value - (x - 1)) == 0
    assert sp.simplify(ir.spike.reset[1].value - y * 0.5) == 0
    (port,) = ir.spike_ports
    w, g = sp.Symbol("weight", real=True), sp.Symbol("g", real=True)
    assert sp.simplify(port.increment - w * g / tau) == 0
    # x' is non-linear in y, so x is numeric and y (read by x) is carried through the stages
    assert c.solution.numeric_states == ("x",)
    assert c.solution.stage_states == ("y",)
