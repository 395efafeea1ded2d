"""The solver: exact propagators exp(A h) (symbolic and generated C++) and the RK4 integration.

References are computed independently of eprop-gen's formulas: scipy.linalg.expm / mpmath.expm of
the numeric augmented matrix A (the model's linear system with parameter values substituted), and
scipy.integrate.solve_ivp for the non-linear Izhikevich model.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.linalg
import sympy as sp
from scipy.integrate import solve_ivp

import eprop_gen as eg
from eprop_gen.compiler import check_source, compile_model
from eprop_gen.solve.propagators import H

H_VALUES = (0.01, 0.1, 1.0, 10.0, 100.0)
REL = 1e-12
# exp(-h/tau) for h = 100 ms and tau = 0.1 ms is 1e-435, below the smallest double; entries the
# reference gives below this floor are "zero" for any double-precision code
UNDERFLOW = 1e-290


# ----------------------------------------------------------------------------------- helpers

def phi_reference(k, x):
    """phi_k(x) = (e^x - sum_{j<k} x^j/j!) / x^k, written independently of templates/cpp/eg_math.h."""
    k, x = int(k), float(x)
    if abs(x) < 1.0:        # Taylor series sum_j x^j / (j+k)!, 40 terms is far beyond double precision
        return math.fsum(x ** j / math.factorial(j + k) for j in range(40))
    if x > 700.0:           # only reached in a Piecewise branch that is not selected
        return math.inf
    return (math.exp(x) - math.fsum(x ** j / math.factorial(j) for j in range(k))) / x ** k


def assert_close(P, R, rel=REL, what=""):
    """|P - R| <= rel * max|R| (per row) + rel * |R| (+ the underflow floor).

    The row scale is needed because scipy leaves ~1e-18 round-off in structurally zero entries
    (ours are exactly 0) and because scaling-and-squaring is accurate normwise, not per entry."""
    P, R = np.asarray(P, dtype=float), np.asarray(R, dtype=float)
    assert P.shape == R.shape
    bound = rel * np.max(np.abs(R), axis=1, keepdims=True) + rel * np.abs(R) + UNDERFLOW
    excess = np.abs(P - R) / bound
    i, j = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess[i, j] <= 1.0, (f"{what}: entry [{i},{j}] ours {P[i, j]!r} reference {R[i, j]!r} "
                                 f"(|diff| = {abs(P[i, j] - R[i, j]):.3g}, bound {bound[i, j]:.3g})")


class Linear:
    """One model's compiled kernel, its symbolic solution and numeric evaluators of both."""

    def __init__(self, name: str):
        path = eg.models.path(name)
        self.compiled = compile_model(path)
        checked = check_source(path.read_text(), str(path))
        self.lin = checked.solution.linear
        self.param_names = [p.name for p in checked.ir.parameters]
        self.defaults = {p.name: p.default for p in checked.ir.parameters}
        symbols = [p.symbol for p in checked.ir.parameters]
        self.order = [str(s) for s in self.lin.states + self.lin.inputs]
        self._A = sp.lambdify(symbols, self.lin.matrix, modules="numpy")
        self._A_mp = sp.lambdify(symbols, self.lin.matrix, modules="mpmath")
        self._P = sp.lambdify(symbols + [H], self.lin.propagator_matrix,
                              modules=[{"phi": phi_reference}, "numpy"])

    def args(self, params):
        values = {**self.defaults, **params}
        return [values[n] for n in self.param_names]

    def matrix(self, params) -> np.ndarray:
        return np.array(self._A(*self.args(params)), dtype=float)

    def generated(self, params, h) -> np.ndarray:
        return self.compiled.propagator(params, h)

    def symbolic(self, params, h) -> np.ndarray:
        with np.errstate(all="ignore"):      # Piecewise evaluates every branch, used or not
            # numpy scalars, so that a discarded branch gives inf/nan instead of raising
            return np.array(self._P(*map(np.float64, self.args(params)), np.float64(h)), dtype=float)

    def scipy_reference(self, params, h) -> np.ndarray:
        return scipy.linalg.expm(self.matrix(params) * h)

    def mpmath_reference(self, params, h) -> np.ndarray:
        # A is built from the parameters in 40-digit arithmetic (exact from the double inputs),
        # then exponentiated in 40 digits: correct to far beyond double precision
        with mpmath.workdps(40):
            args = [mpmath.mpf(v) for v in self.args(params)]
            A = mpmath.matrix(self._A_mp(*args))
            E = mpmath.expm(A * mpmath.mpf(h))
            return np.array([[float(E[i, j]) for j in range(E.cols)] for i in range(E.rows)])


@pytest.fixture(scope="module", params=["iaf_psc_exp", "iaf_psc_alpha"])
def linear(request) -> Linear:
    return Linear(request.param)


def random_params(rng: np.random.Generator) -> dict[str, float]:
    return {
        "C_m": float(np.exp(rng.uniform(np.log(10.0), np.log(1000.0)))),
        "tau_m": float(np.exp(rng.uniform(np.log(1.0), np.log(100.0)))),
        "tau_syn_ex": float(np.exp(rng.uniform(np.log(0.1), np.log(50.0)))),
        "tau_syn_in": float(np.exp(rng.uniform(np.log(0.1), np.log(50.0)))),
        "E_L": float(rng.uniform(-90.0, -50.0)),
        "I_e": float(rng.uniform(-500.0, 500.0)),
    }


NEAR = (1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3)


def singular_draws(rng: np.random.Generator) -> list[tuple[str, dict[str, float]]]:
    """tau_syn == tau_m exactly and at relative offsets 1e-14 ... 1e-3 on both sides."""
    draws = []
    for base in range(2):
        p = random_params(rng)
        tau = p["tau_m"]
        draws.append((f"equal{base}", {**p, "tau_syn_ex": tau, "tau_syn_in": tau}))
        # one exactly singular, the other regular: the branches are independent
        draws.append((f"ex-equal{base}", {**p, "tau_syn_ex": tau}))
        for d in NEAR:
            draws.append((f"+{d:g}/{base}", {**p, "tau_syn_ex": tau * (1 + d), "tau_syn_in": tau * (1 - d)}))
            draws.append((f"-{d:g}/{base}", {**p, "tau_syn_ex": tau * (1 - d), "tau_syn_in": tau * (1 + d)}))
    return draws


# ------------------------------------------------------------------------- structure & layout

def test_propagator_layout_matches_the_solution(linear):
    assert list(linear.compiled.propagator_states) == linear.order
    assert linear.order[-1] == "one__" and "I_stim" in linear.order
    assert linear.lin.matrix.shape == linear.lin.propagator_matrix.shape == (len(linear.order),) * 2


def test_matrix_is_the_model_equations(linear):
    """The numeric A applied to a state vector gives the right-hand sides written in the model file
    (checked here by hand for the membrane equation, shared by both models)."""
    p = random_params(np.random.default_rng(7))
    A = linear.matrix(p)
    rng = np.random.default_rng(8)
    x = rng.normal(size=len(linear.order))
    x[-1] = 1.0                                     # the augmented constant
    idx = {n: k for k, n in enumerate(linear.order)}
    syn = [n for n in linear.order if n in ("I_syn_ex", "I_syn_in", "I_ex", "I_in")]
    v_dot = (-(x[idx["V_m"]] - p["E_L"]) / p["tau_m"]
             + (sum(x[idx[n]] for n in syn) + p["I_e"] + x[idx["I_stim"]]) / p["C_m"])
    assert (A @ x)[idx["V_m"]] == pytest.approx(v_dot, rel=1e-13)
    # inputs have zero derivative
    assert np.all(A[idx["I_stim"]] == 0) and np.all(A[idx["one__"]] == 0)


# ----------------------------------------------------------------------- propagator accuracy

# scipy's expm (scaling and squaring) loses relative accuracy when h/tau is large: measured against
# mpmath on these draws, its error reaches 1e-12 (row-relative) for max|A_ii|*h ~ 50 on the alpha
# model (a Jordan-like dI -> I block) and 2e-11 beyond 300, while ours stays below 1e-13. Such stiff
# draws are therefore checked against mpmath; the others against scipy.
SCIPY_MAX_STIFFNESS = 20.0


def test_generated_and_symbolic_propagators_match_expm_on_random_draws(linear):
    rng = np.random.default_rng(20240601)
    used = {"scipy": 0, "mpmath": 0}
    for draw in range(100):
        p = random_params(rng)
        for h in H_VALUES:
            stiffness = np.max(np.abs(np.diag(linear.matrix(p)))) * h
            if stiffness <= SCIPY_MAX_STIFFNESS:
                which, R = "scipy", linear.scipy_reference(p, h)
            else:
                which, R = "mpmath", linear.mpmath_reference(p, h)
            used[which] += 1
            assert_close(linear.generated(p, h), R, what=f"generated vs {which}, draw {draw}, h={h}, {p}")
            assert_close(linear.symbolic(p, h), R, what=f"symbolic vs {which}, draw {draw}, h={h}, {p}")
    assert used["scipy"] >= 300 and used["mpmath"] >= 50, used


def test_generated_propagator_is_accurate_per_entry(linear):
    """The row-scaled tolerance above would let a small entry (P[V_m, I_syn] ~ 1e-4 next to
    P[V_m, one] ~ 70) be wrong in its 7th digit; against mpmath every entry is checked relative to
    itself. (Fails for iaf_psc_alpha at large h*|1/tau_syn - 1/tau_m|, ~1e-10: the phi form of
    P[V_m, dI] cancels there; reported as a product bug.)"""
    rng = np.random.default_rng(424242)
    for draw in range(20):
        p = random_params(rng)
        for h in H_VALUES:
            R = linear.mpmath_reference(p, h)
            P = linear.generated(p, h)
            bad = np.abs(P - R) > 1e-12 * np.abs(R) + UNDERFLOW
            if bad.any():
                i, j = np.argwhere(bad)[0]
                pytest.fail(f"draw {draw}, h={h}, {p}: P[{linear.order[i]},{linear.order[j]}] = "
                            f"{P[i, j]!r}, reference {R[i, j]!r}, relative error "
                            f"{abs(P[i, j] - R[i, j]) / abs(R[i, j]):.2g}")


def test_propagators_at_and_near_singular_parameters_match_mpmath(linear):
    """scipy.linalg.expm is itself inaccurate when two eigenvalues nearly coincide (it returns
    differences of nearly equal numbers), so the reference here is mpmath's 40-digit expm."""
    rng = np.random.default_rng(99)
    for label, p in singular_draws(rng):
        for h in H_VALUES:
            R = linear.mpmath_reference(p, h)
            assert_close(linear.generated(p, h), R, what=f"generated, {label}, h={h}")
            assert_close(linear.symbolic(p, h), R, what=f"symbolic, {label}, h={h}")


def test_singular_entries_are_accurate_per_entry(linear):
    """The entries coupling the synaptic current into V_m are the ones with a pole at
    tau_syn == tau_m; near it they must be accurate relative to themselves, not only to the row."""
    rng = np.random.default_rng(5)
    idx = {n: k for k, n in enumerate(linear.order)}
    cols = [idx[n] for n in ("I_syn_ex", "I_ex", "dI_ex") if n in idx]
    for label, p in singular_draws(rng)[:16]:
        for h in (0.1, 10.0):
            R = linear.mpmath_reference(p, h)
            P = linear.generated(p, h)
            for c in cols:
                assert P[idx["V_m"], c] == pytest.approx(R[idx["V_m"], c], rel=1e-12, abs=0), (label, h)


def test_continuity_across_the_singular_condition(linear):
    """P is continuous in tau_syn_ex: the exact singular branch and the regular branch agree."""
    p = random_params(np.random.default_rng(3))
    tau = p["tau_m"]
    at = linear.generated({**p, "tau_syn_ex": tau}, 1.0)
    for d in (1e-15, -1e-15, 1e-13):
        near = linear.generated({**p, "tau_syn_ex": tau * (1 + d)}, 1.0)
        assert_close(near, at, rel=1e-12, what=f"offset {d}")
    # and the singular branch is really used (the regular formula would divide 0 by 0 there)
    assert np.all(np.isfinite(at))


def test_defaults_propagator_has_exact_decay_factors(linear):
    """Entries whose closed form is obvious: exp(-h/tau) on the diagonal, 1 for the inputs."""
    h = 0.1
    P = linear.generated({}, h)
    d = linear.defaults
    idx = {n: k for k, n in enumerate(linear.order)}
    assert P[idx["V_m"], idx["V_m"]] == pytest.approx(math.exp(-h / d["tau_m"]), rel=1e-15)
    for n in ("I_syn_ex", "I_ex", "dI_ex"):
        if n in idx:
            assert P[idx[n], idx[n]] == pytest.approx(math.exp(-h / d["tau_syn_ex"]), rel=1e-15)
    assert P[idx["one__"], idx["one__"]] == 1.0 and P[idx["I_stim"], idx["I_stim"]] == 1.0
    # nothing drives the inputs, and the synaptic currents do not depend on V_m
    assert np.all(P[idx["one__"], :-1] == 0) and np.all(P[:, idx["V_m"]][1:] == 0)


# --------------------------------------------------------------------------------- semigroup

@pytest.mark.parametrize("a, b", [(0.1, 0.1), (0.05, 0.95), (1.0, 2.5), (3.0, 7.0), (0.01, 40.0)])
def test_semigroup_property_of_the_generated_propagator(linear, a, b):
    rng = np.random.default_rng(int(a * 1000 + b * 10))
    draws = [random_params(rng) for _ in range(8)]
    tau = draws[0]["tau_m"]
    draws += [{**draws[0], "tau_syn_ex": tau, "tau_syn_in": tau},
              {**draws[0], "tau_syn_ex": tau * (1 + 1e-9), "tau_syn_in": tau * (1 - 1e-6)}]
    for p in draws:
        whole = linear.generated(p, a + b)
        product = linear.generated(p, a) @ linear.generated(p, b)
        assert_close(whole, product, rel=1e-13, what=f"P({a}+{b}) vs P({a})P({b}), {p}")


def test_propagator_at_zero_is_the_identity(linear):
    rng = np.random.default_rng(11)
    n = len(linear.order)
    for p in [random_params(rng) for _ in range(5)] + [{"tau_syn_ex": 10.0, "tau_m": 10.0}]:
        P0 = linear.generated(p, 0.0)
        assert np.max(np.abs(P0 - np.eye(n))) <= 1e-13


# ------------------------------------------------------------------------- non-linear (RK4)

IZH = eg.models.path("izhikevich")
IZH_PARAMS = {"a": 0.02, "b": 0.2, "c": -65.0, "d": 8.0}
I_STIM = 10.0
T_SIM = 200.0
DT = 0.1


def izhikevich_with_substeps(n: int):
    text = IZH.read_text()
    assert "solver: rk4(substeps=10)" in text
    text = text.replace("neuron izhikevich:", f"neuron izhikevich_rk4_{n}:")
    return compile_model(text.replace("solver: rk4(substeps=10)", f"solver: rk4(substeps={n})"))


def simulate_izhikevich(model):
    net = eg.Network(dt=DT, threads=1, seed=0)
    pop = net.add_population(model, 1, params=IZH_PARAMS)
    net.add_current(pop, "I_stim", times=[0.0], amplitudes=[I_STIM])
    net.record(pop, ["v", "u"])
    net.simulate(T_SIM)
    rec = net.recording(pop)
    times, _ = net.spikes(pop)
    return rec["times"], rec["v"][:, 0], rec["u"][:, 0], np.asarray(times)


def izhikevich_rhs(t, y):
    v, u = y
    a, b = IZH_PARAMS["a"], IZH_PARAMS["b"]
    return [0.04 * v * v + 5 * v + 140 - u + I_STIM, a * (b * v - u)]


def segment_errors(run, rtol=1e-10, atol=1e-12):
    """Relative max error of v and u on each stretch between spikes, integrating the ODE with
    solve_ivp from the simulator's own state right after each reset (and from the initial state);
    the last millisecond before each spike (the steep upstroke) is left out."""
    t, v, u, spikes = run
    assert len(spikes) >= 3, "the drive must make the neuron spike several times"
    starts = [(0.0, -65.0, -13.0)]
    for s in spikes:
        k = int(np.argmin(np.abs(t - s)))
        assert abs(t[k] - s) < 1e-9
        assert v[k] == IZH_PARAMS["c"]          # the recorded state after a spike is the reset state
        starts.append((t[k], v[k], u[k]))
    ends = list(spikes) + [t[-1] + 1.0]
    errors = []
    for (t0, v0, u0), t1 in zip(starts, ends):
        mask = (t > t0 + 1e-9) & (t <= t1 - 1.0)
        if mask.sum() < 10:
            continue
        ref = solve_ivp(izhikevich_rhs, (t0, t[mask][-1]), [v0, u0], method="DOP853",
                        rtol=rtol, atol=atol, t_eval=t[mask])
        assert ref.success
        errors.append(max(np.max(np.abs(v[mask] - ref.y[0])) / np.max(np.abs(ref.y[0])),
                          np.max(np.abs(u[mask] - ref.y[1])) / np.max(np.abs(ref.y[1]))))
    assert len(errors) >= 3
    return np.array(errors)


@pytest.fixture(scope="module")
def izhikevich_runs():
    return {n: simulate_izhikevich(izhikevich_with_substeps(n)) for n in (1, 2, 4, 8)}


def test_izhikevich_shipped_model_matches_solve_ivp():
    model = compile_model(IZH)
    assert "10 substep" in model.summary
    errors = segment_errors(simulate_izhikevich(model))
    assert np.all(errors <= 1e-6), errors


def test_izhikevich_spike_times_do_not_depend_on_substeps(izhikevich_runs):
    """With RK4 errors of 1e-7 and less, the threshold crossing lands in the same step."""
    reference = izhikevich_runs[8][3]
    for n, run in izhikevich_runs.items():
        np.testing.assert_array_equal(run[3], reference, err_msg=f"substeps={n}")


def test_izhikevich_rk4_error_is_small_even_with_one_substep(izhikevich_runs):
    errors = segment_errors(izhikevich_runs[1])
    assert np.all(errors <= 1e-6), errors
    assert np.max(errors) > 1e-9        # and it is measurably an approximation


def test_izhikevich_rk4_is_fourth_order(izhikevich_runs):
    """Doubling the substeps divides the error by ~2^4. The reference here uses rtol=1e-13: with
    rtol=1e-10 solve_ivp's own error (~2e-10 relative) hides RK4's beyond 2 substeps."""
    errors = {n: segment_errors(run, rtol=1e-13, atol=1e-13).max() for n, run in izhikevich_runs.items()}
    for n in (1, 2, 4):
        ratio = errors[n] / errors[2 * n]
        assert 13.0 < ratio < 19.5, (n, ratio, errors)


def test_inline_fmax_fmin_equal_the_library_bitwise(tmp_path):
    """eg_math.h's eg_fmax / eg_fmin (printed for Max / Min: the library call is not inlined) give
    the C library's results to the bit, signed zeros, infinities and NaN included."""
    import ctypes
    from eprop_gen.build import build_and_load
    from eprop_gen.paths import resource_dir
    source = ('#include <math.h>\n#include "eg_math.h"\n'
              'extern "C" void both(const double* x, const double* y, long n, double* out) {\n'
              '    for (long k = 0; k < n; ++k) {\n'
              '        out[4 * k] = eg_fmax(x[k], y[k]); out[4 * k + 1] = fmax(x[k], y[k]);\n'
              '        out[4 * k + 2] = eg_fmin(x[k], y[k]); out[4 * k + 3] = fmin(x[k], y[k]);\n'
              '    }\n}\n')
    header = (resource_dir("templates") / "cpp" / "eg_math.h").read_text()
    _, lib = build_and_load({"m.cpp": source, "eg_math.h": header}, name="fmax_check", openmp=False,
                            cache_dir=tmp_path)
    special = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-310, -2.5]
    rng = np.random.default_rng(0)
    x = np.array([a for a in special for _ in special] + list(rng.normal(size=200)))
    y = np.array([b for _ in special for b in special] + list(rng.normal(size=200)))
    y[-50:] = x[-50:]                                      # ties
    out = np.zeros((x.size, 4))
    p = ctypes.POINTER(ctypes.c_double)
    lib.both(x.ctypes.data_as(p), y.ctypes.data_as(p), ctypes.c_long(x.size), out.ctypes.data_as(p))
    bits = out.view(np.uint64)
    nan = np.isnan(out)
    assert np.array_equal(nan[:, 0], nan[:, 1]) and np.array_equal(nan[:, 2], nan[:, 3])
    assert np.array_equal(bits[~nan[:, 1], 0], bits[~nan[:, 1], 1])
    assert np.array_equal(bits[~nan[:, 3], 2], bits[~nan[:, 3], 3])
