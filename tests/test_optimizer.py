"""templates/cpp/eg_optimizer.h against the numpy reference optimizer, bitwise.

The reference is ``GroupOptimizer`` / ``EtaSchedule`` of tests/eprop_ref/numpy_event.py (spec 5),
which equals NEST 3.10 bitwise.  It is called directly: one ``GroupOptimizer`` of ``n`` synapses
receives the same calls (index, gradient vector, eta schedule) as ``n`` independent C states.  The
optimizer is not re-implemented here.

A C++ shim (below) runs a whole sequence of calls and returns the weight after every call plus the
final per-synapse state.
"""
from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import pytest

from eprop_gen.build import build_and_load
from eprop_gen.paths import resource_dir
from eprop_ref.numpy_event import ETA_NEST_DEFAULT, EtaSchedule, EventConfig, GroupOptimizer

HEADER_DIR = resource_dir("templates") / "cpp"
N_STATE = 8          # per synapse: Gc, eta_cur, m, v, p1, p2, k, n_opt

SHIM = r"""
#include "eg_optimizer.h"
#include <stdint.h>

// Runs n_calls optimizer calls for n_syn independent synapses that see the same indices.
// eta_set[t] (NaN = no change) is applied with eg_optimizer_set_eta before call t, like a
// SetDefaults between two Simulate calls. grad and w_out are (n_calls, n_syn), row-major.
extern "C" void eg_test_run(int32_t kind, int64_t batch_size, double beta_1, double beta_2,
                            double epsilon, double w_min, double w_max,
                            int64_t n_calls, int64_t n_syn, const int64_t* index,
                            const double* grad, const double* eta_set,
                            const double* w0, const double* m0, const double* v0,
                            double* w_out, double* state_out)
{
    eg_optimizer o;
    eg_optimizer_init(&o);
    o.kind = kind; o.batch_size = batch_size;
    o.beta_1 = beta_1; o.beta_2 = beta_2; o.epsilon = epsilon;
    o.w_min = w_min; o.w_max = w_max;
    for (int64_t j = 0; j < n_syn; ++j) {
        eg_optimizer_state s;
        eg_optimizer_state_init(&s);
        s.m = m0[j]; s.v = v0[j];
        eg_optimizer oj = o;                   // every synapse sees the same eta schedule
        double w = w0[j];
        for (int64_t t = 0; t < n_calls; ++t) {
            if (eta_set[t] == eta_set[t]) eg_optimizer_set_eta(&oj, eta_set[t]);
            w = eg_optimize(&oj, &s, index[t], grad[t * n_syn + j], w);
            w_out[t * n_syn + j] = w;
        }
        double* st = state_out + 8 * j;
        st[0] = s.grad_sum; st[1] = s.eta_cur; st[2] = s.m; st[3] = s.v;
        st[4] = s.p1; st[5] = s.p2; st[6] = (double)s.k; st[7] = (double)s.n_opt;
    }
}
"""

# A second translation unit including the header: linking both proves the header is safe to
# include twice; it also reports the initial values.
SECOND_TU = r"""
#include "eg_optimizer.h"
extern "C" void eg_test_initial(double* out)
{
    eg_optimizer o; eg_optimizer_init(&o);
    eg_optimizer_state s; eg_optimizer_state_init(&s);
    out[0] = s.grad_sum; out[1] = s.eta_cur; out[2] = s.m; out[3] = s.v; out[4] = s.p1;
    out[5] = s.p2; out[6] = (double)s.k; out[7] = (double)s.n_opt;
    out[8] = o.kind; out[9] = (double)o.batch_size; out[10] = o.eta; out[11] = o.eta_first;
    out[12] = (double)o.n_eta_changes; out[13] = o.beta_1; out[14] = o.beta_2; out[15] = o.epsilon;
    out[16] = o.w_min; out[17] = o.w_max;
}
"""


def _load(cache_dir, extra_flags=()):
    _, lib = build_and_load({"eg_opt_shim.cpp": SHIM, "eg_opt_second.cpp": SECOND_TU},
                            name="eg_opt_test", openmp=False, include_dirs=(HEADER_DIR,),
                            extra_flags=extra_flags, cache_dir=cache_dir)
    d, i64 = ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int64)
    lib.eg_test_run.argtypes = [ctypes.c_int32, ctypes.c_int64, ctypes.c_double, ctypes.c_double,
                                ctypes.c_double, ctypes.c_double, ctypes.c_double,
                                ctypes.c_int64, ctypes.c_int64, i64, d, d, d, d, d, d, d]
    lib.eg_test_run.restype = None
    lib.eg_test_initial.argtypes = [d]
    lib.eg_test_initial.restype = None
    return lib


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return _load(tmp_path_factory.mktemp("eg_opt_build"))


# ------------------------------------------------------------------------------------------------
# a case, the two runners, the bitwise comparison

@dataclass
class Case:
    index: np.ndarray                 # (T,) int64
    grad: np.ndarray                  # (T, n) float64
    adam: bool = False
    batch_size: int = 1
    eta_set: np.ndarray | None = None  # (T,) NaN = no SetDefaults before that call
    w0: np.ndarray | None = None
    m0: np.ndarray | None = None
    v0: np.ndarray | None = None
    Wmin: float = -100.0
    Wmax: float = 100.0
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7

    def __post_init__(self):
        self.index = np.ascontiguousarray(self.index, dtype=np.int64)
        self.grad = np.ascontiguousarray(self.grad, dtype=np.float64)
        T, n = self.grad.shape
        assert self.index.shape == (T,)
        if self.eta_set is None:
            self.eta_set = np.full(T, np.nan)
        self.eta_set = np.ascontiguousarray(self.eta_set, dtype=np.float64)
        if self.w0 is None:
            self.w0 = np.zeros(n)
        for name in ("m0", "v0"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(n))


def run_c(lib, c: Case):
    T, n = c.grad.shape
    w = np.empty((T, n))
    state = np.empty((n, N_STATE))
    ptr = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))    # noqa: E731
    lib.eg_test_run(int(c.adam), c.batch_size, c.beta_1, c.beta_2, c.epsilon, c.Wmin, c.Wmax,
                    T, n, c.index.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)), ptr(c.grad),
                    ptr(c.eta_set), ptr(np.ascontiguousarray(c.w0, dtype=float)),
                    ptr(np.ascontiguousarray(c.m0, dtype=float)),
                    ptr(np.ascontiguousarray(c.v0, dtype=float)), ptr(w), ptr(state))
    return w, state


def _reference_optimizer(c: Case):
    cfg = EventConfig(optimizer="adam" if c.adam else "gradient_descent",
                      batch_size=c.batch_size, Wmin=c.Wmin, Wmax=c.Wmax,
                      beta_1=c.beta_1, beta_2=c.beta_2, epsilon=c.epsilon)
    etas = EtaSchedule()
    opt = GroupOptimizer(cfg, etas, c.grad.shape[1])
    if c.adam:
        opt.m, opt.v = np.array(c.m0, dtype=float), np.array(c.v0, dtype=float)
    return etas, opt


def _reference_state(opt, n):
    state = np.empty((n, N_STATE))
    state[:, 0] = opt.Gc
    state[:, 1] = opt.eta_cur
    state[:, 2] = opt.m if opt.adam else 0.0
    state[:, 3] = opt.v if opt.adam else 0.0
    state[:, 4] = opt.p1 if opt.adam else 1.0
    state[:, 5] = opt.p2 if opt.adam else 1.0
    state[:, 6] = opt.k
    state[:, 7] = opt.n_opt
    return state


def run_reference(c: Case):
    """One GroupOptimizer.call per call of the sequence (the reference's general path)."""
    etas, opt = _reference_optimizer(c)
    w = np.array(c.w0, dtype=float)
    out = np.empty_like(c.grad)
    for t in range(len(c.index)):
        if not math.isnan(c.eta_set[t]):
            etas.set(float(c.eta_set[t]))
        w = opt.call(int(c.index[t]), c.grad[t].copy(), w)
        out[t] = w
    return out, _reference_state(opt, c.grad.shape[1])


def run_reference_blocks(c: Case, block_starts):
    """The reference's per-step path (call_consecutive, as used for optimize_each_step) over
    blocks of consecutive indices; eta changes only at block starts."""
    etas, opt = _reference_optimizer(c)
    w = np.array(c.w0, dtype=float)
    out = np.empty_like(c.grad)
    bounds = list(block_starts) + [len(c.index)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        assert np.all(np.diff(c.index[a:b]) == 1) and np.all(np.isnan(c.eta_set[a + 1:b]))
        if not math.isnan(c.eta_set[a]):
            etas.set(float(c.eta_set[a]))
        w = opt.call_consecutive(int(c.index[a]), c.grad[a:b].copy(), w)
        out[b - 1] = w            # call_consecutive only returns the weight after the block
        out[a:b - 1] = np.nan
    return out, _reference_state(opt, c.grad.shape[1])


def assert_bitwise(actual, expected, what=""):
    a = np.ascontiguousarray(actual, dtype=np.float64)
    e = np.ascontiguousarray(expected, dtype=np.float64)
    assert a.shape == e.shape
    diff = a.view(np.uint64) != e.view(np.uint64)
    if diff.any():
        first = tuple(int(i) for i in np.argwhere(diff)[0])
        raise AssertionError(f"{what}: {int(diff.sum())} of {diff.size} values differ bitwise; "
                             f"first at {first}: C {a[first]!r} vs reference {e[first]!r}")


def check(lib, c: Case):
    """Weights after every call and the final state must equal the reference bitwise."""
    w_c, s_c = run_c(lib, c)
    w_r, s_r = run_reference(c)
    assert_bitwise(w_c, w_r, "weights")
    assert_bitwise(s_c, s_r, "final state (Gc, eta_cur, m, v, p1, p2, k, n_opt)")
    return w_c, s_c


# ------------------------------------------------------------------------------------------------
# case generators

def _grads(rng, T, n, scale=1.0):
    """Gradients over a wide dynamic range, both signs, some exact zeros."""
    g = rng.standard_normal((T, n)) * np.exp(rng.uniform(-6, 2, (T, n))) * scale
    g[rng.random((T, n)) < 0.05] = 0.0
    return g


def _gapped_index(rng, T, start, max_gap, allow_repeat=False):
    gaps = rng.integers(0 if allow_repeat else 1, max_gap + 1, T - 1)
    return np.concatenate([[start], start + np.cumsum(gaps)]).astype(np.int64)


def _eta_schedule(rng, T, n_changes, first=None):
    eta = np.full(T, np.nan)
    eta[0] = 0.01 if first is None else first
    for t in rng.choice(np.arange(1, T), size=n_changes, replace=False):
        eta[t] = rng.choice([0.0, 1e-3, 0.02, 0.05, float(eta[0])])
    return eta


N_SYN = 4


# ------------------------------------------------------------------------------------------------
# tests

def test_initial_values_and_two_translation_units(lib):
    out = np.empty(18)
    lib.eg_test_initial(out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)))
    etas, opt = _reference_optimizer(Case(np.zeros(1), np.zeros((1, 1)), adam=True))
    assert list(out[:8]) == [0.0, ETA_NEST_DEFAULT, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    assert opt.eta_cur == out[1] and opt.k == out[6] and opt.n_opt == out[7]
    assert opt.p1 == out[4] and opt.p2 == out[5]
    assert list(out[8:]) == [0, 1, 1e-4, 1e-4, 0, 0.9, 0.999, 1e-7, -100.0, 100.0]
    assert etas.eta == out[10] and etas.eta_first == out[11] and etas.n_changes == out[12]


def test_gradient_descent_batch_1_per_step(lib):
    rng = np.random.default_rng(1)
    T = 400
    c = Case(np.arange(1, T + 1), _grads(rng, T, N_SYN), eta_set=_eta_schedule(rng, T, 0),
             w0=rng.standard_normal(N_SYN))
    w, _ = check(lib, c)
    # the reference's vectorised per-step path (cumsum) gives the same final weights
    w_blk, _ = run_reference_blocks(c, [0, 1, 57, 200, 201])
    assert_bitwise(w[[0, 56, 199, 200, T - 1]], w_blk[[0, 56, 199, 200, T - 1]], "blocks")


def test_gradient_descent_batch_1_per_spike_gaps(lib):
    rng = np.random.default_rng(2)
    T = 300
    check(lib, Case(_gapped_index(rng, T, 5, 30), _grads(rng, T, N_SYN),
                    eta_set=_eta_schedule(rng, T, 0), w0=rng.standard_normal(N_SYN)))


@pytest.mark.parametrize("batch", [2, 7, 25])
def test_gradient_descent_batch_gt_1(lib, batch):
    rng = np.random.default_rng(10 + batch)
    T = 300
    per_step = Case(np.arange(1, T + 1), _grads(rng, T, N_SYN), batch_size=batch,
                    eta_set=_eta_schedule(rng, T, 0), w0=rng.standard_normal(N_SYN))
    w, s = check(lib, per_step)
    # one optimisation per completed batch of indices, the weight constant in between
    assert s[0, 7] == T // batch
    changes = np.flatnonzero(np.any(np.diff(w, axis=0) != 0, axis=1)) + 1
    assert set(changes) <= set(np.flatnonzero(per_step.index % batch == 0))
    check(lib, Case(_gapped_index(rng, T, 0, 3 * batch, allow_repeat=True),
                    _grads(rng, T, N_SYN), batch_size=batch,
                    eta_set=_eta_schedule(rng, T, 0), w0=rng.standard_normal(N_SYN)))


def test_adam_per_step(lib):
    rng = np.random.default_rng(3)
    T = 400
    c = Case(np.arange(1, T + 1), _grads(rng, T, N_SYN), adam=True,
             eta_set=_eta_schedule(rng, T, 0, first=1e-3), w0=rng.standard_normal(N_SYN))
    w, s = check(lib, c)
    assert s[0, 6] == T + 1 and s[0, 7] == T
    w_blk, _ = run_reference_blocks(c, [0, 100, 101, 300])
    assert_bitwise(w[[99, 100, 299, T - 1]], w_blk[[99, 100, 299, T - 1]], "blocks")


def test_adam_per_step_late_first_call(lib):
    """The event-driven synapse's first call at index m+1 runs m+1 Adam iterations."""
    rng = np.random.default_rng(4)
    T = 200
    check(lib, Case(np.arange(137, 137 + T), _grads(rng, T, N_SYN), adam=True,
                    eta_set=_eta_schedule(rng, T, 0, first=1e-3), w0=rng.standard_normal(N_SYN)))


def test_adam_index_gaps_catch_up(lib):
    rng = np.random.default_rng(5)
    T = 300
    c = Case(_gapped_index(rng, T, 23, 40), _grads(rng, T, N_SYN), adam=True,
             eta_set=_eta_schedule(rng, T, 0, first=1e-3), w0=rng.standard_normal(N_SYN))
    w, s = check(lib, c)
    assert s[0, 6] == c.index[-1] + 1          # one Adam iteration per elapsed index
    assert s[0, 7] == T                        # but one optimisation per call


@pytest.mark.parametrize("batch", [3, 10])
def test_adam_batch_gt_1(lib, batch):
    rng = np.random.default_rng(20 + batch)
    T = 300
    check(lib, Case(np.arange(1, T + 1), _grads(rng, T, N_SYN), adam=True, batch_size=batch,
                    eta_set=_eta_schedule(rng, T, 0, first=1e-3), w0=rng.standard_normal(N_SYN)))
    check(lib, Case(_gapped_index(rng, T, 0, 4 * batch, allow_repeat=True),
                    _grads(rng, T, N_SYN), adam=True, batch_size=batch,
                    eta_set=_eta_schedule(rng, T, 0, first=1e-3), w0=rng.standard_normal(N_SYN)))


def test_adam_initial_moments(lib):
    """m and v are settable per synapse in NEST."""
    rng = np.random.default_rng(6)
    T = 150
    check(lib, Case(_gapped_index(rng, T, 1, 5), _grads(rng, T, N_SYN), adam=True,
                    eta_set=_eta_schedule(rng, T, 0, first=1e-3), w0=rng.standard_normal(N_SYN),
                    m0=rng.standard_normal(N_SYN), v0=rng.random(N_SYN),
                    beta_1=0.8, beta_2=0.99, epsilon=1e-5))


@pytest.mark.parametrize("adam", [False, True])
def test_clamping(lib, adam):
    rng = np.random.default_rng(7 + adam)
    T = 300
    eta = 0.05 if adam else 0.5
    for index in (np.arange(1, T + 1), _gapped_index(rng, T, 3, 12)):
        c = Case(index, _grads(rng, T, N_SYN), adam=adam, Wmin=-0.3, Wmax=0.4,
                 eta_set=_eta_schedule(rng, T, 0, first=eta),
                 w0=np.array([0.0, 0.39, -0.29, 0.1]))
        w, _ = check(lib, c)
        assert (w == -0.3).any() and (w == 0.4).any()        # both bounds were hit
        assert w.min() >= -0.3 and w.max() <= 0.4


@pytest.mark.parametrize("adam", [False, True])
def test_clamping_initial_weight_outside(lib, adam):
    """Weights starting outside [Wmin, Wmax]: the clamp is applied once after all Adam
    iterations, so a catch-up run that moves back inside is not clamped midway."""
    rng = np.random.default_rng(9)
    T = 60
    g = np.abs(_grads(rng, T, N_SYN)) + 0.1
    g[:, 1::2] *= -1
    c = Case(_gapped_index(rng, T, 40, 30), g, adam=adam, Wmin=-1.0, Wmax=1.0,
             eta_set=_eta_schedule(rng, T, 0, first=0.01),
             w0=np.array([1.05, -1.05, 1.3, -1.2]))
    check(lib, c)


def test_clamping_signed_zero_bounds(lib):
    T = 20
    c = Case(np.arange(1, T + 1), np.zeros((T, 4)), Wmin=0.0, Wmax=0.0,
             eta_set=_eta_schedule(np.random.default_rng(0), T, 0, first=0.1),
             w0=np.array([-0.0, 0.0, -0.0, 0.0]))
    c.grad[:, 2:] = -0.0
    check(lib, c)


@pytest.mark.parametrize("adam", [False, True])
def test_eta_lag(lib, adam):
    """The first optimisation after a change uses the old eta; the first optimisation ever uses
    eta_first when eta was changed before it (even if it was changed again since)."""
    T = 8
    index = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    grad = np.ones((T, 1))
    # set 0.5 (initial SetDefaults, a change from 1e-4), then 0.25 before the first optimisation,
    # then 0 (testing) later
    eta = np.array([0.5, 0.25, np.nan, np.nan, 0.0, np.nan, np.nan, 0.125])
    w, s = check(lib, Case(index, grad, adam=adam, eta_set=eta, w0=np.array([1.0])))
    if not adam:
        steps = -np.diff(np.concatenate([[1.0], w[:, 0]]))
        # call 0: index 0 lies in batch (.., 0], nothing to apply yet; call 1 (index 1) is the first
        # optimisation: Gc = 1 + 1 (call 0's gradient is carried over), with eta_first = 0.5
        assert steps[0] == 0.0 and steps[1] == 0.5 * 2.0
        assert steps[2] == steps[3] == steps[4] == 0.25   # eta 0 set before call 4: lag
        assert steps[5] == steps[6] == 0.0
        assert steps[7] == 0.0 and s[0, 1] == 0.125       # 0.125 used from the next one on
    # never changed: the first optimisation uses 1e-4, the model eta from the second on
    w, _ = check(lib, Case(np.arange(1, 4), np.ones((3, 1)), adam=adam, w0=np.array([1.0])))
    # setting the same value is not a change
    w, s = check(lib, Case(np.arange(1, 4), np.ones((3, 1)), adam=adam,
                           eta_set=np.array([1e-4, 1e-4, np.nan]), w0=np.array([1.0])))
    if not adam:
        assert w[0, 0] == 1.0 - 1e-4


@pytest.mark.parametrize("adam", [False, True])
@pytest.mark.parametrize("batch", [1, 4])
def test_eta_change_schedule(lib, adam, batch):
    rng = np.random.default_rng(30 + 2 * batch + adam)
    T = 300
    for index in (np.arange(1, T + 1), _gapped_index(rng, T, 2, 9)):
        check(lib, Case(index, _grads(rng, T, N_SYN), adam=adam, batch_size=batch,
                        eta_set=_eta_schedule(rng, T, 12, first=0.01),
                        w0=rng.standard_normal(N_SYN)))


def test_negative_indices_floor(lib):
    """Not produced by the e-prop synapses, but K = 1 + floor(idx / B) is defined for them."""
    rng = np.random.default_rng(8)
    T = 60
    for adam in (False, True):
        check(lib, Case(_gapped_index(rng, T, -37, 3), _grads(rng, T, N_SYN), adam=adam,
                        batch_size=4, eta_set=_eta_schedule(rng, T, 3),
                        w0=rng.standard_normal(N_SYN)))


def _random_case(seed):
    rng = np.random.default_rng(1000 + seed)
    T = int(rng.integers(200, 500))
    adam = bool(rng.integers(2))
    batch = int(rng.choice([1, 1, 2, 3, 5, 8, 16]))
    if rng.random() < 0.4:
        index = np.arange(1, T + 1) + int(rng.integers(0, 50))
    else:
        index = _gapped_index(rng, T, int(rng.integers(0, 60)), int(rng.integers(1, 25)),
                              allow_repeat=bool(rng.integers(2)))
    eta0 = float(rng.choice([1e-4, 1e-3, 1e-2, 0.1]))
    bound = float(rng.choice([100.0, 3.0, 0.5]))
    return Case(index, _grads(rng, T, N_SYN, scale=float(rng.choice([1e-3, 1.0, 50.0]))),
                adam=adam, batch_size=batch,
                eta_set=_eta_schedule(rng, T, int(rng.integers(0, 8)), first=eta0),
                w0=rng.uniform(-bound, bound, N_SYN), m0=None, v0=None,
                Wmin=-bound, Wmax=bound * float(rng.choice([1.0, 0.5])),
                beta_1=float(rng.choice([0.9, 0.5, 0.0])),
                beta_2=float(rng.choice([0.999, 0.9])),
                epsilon=float(rng.choice([1e-7, 1e-8, 0.0])))


@pytest.mark.parametrize("seed", range(12))
def test_random_sequences(lib, seed):
    check(lib, _random_case(seed))


def _has_fma():
    try:
        with open("/proc/cpuinfo") as f:
            return " fma " in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not _has_fma(), reason="CPU without FMA")
def test_fma_target_still_bitwise(tmp_path):
    """With -march=native g++ would contract a*b+c into fma; the header turns that off."""
    fma_lib = _load(tmp_path, extra_flags=("-march=native",))
    for seed in range(4):
        check(fma_lib, _random_case(seed))
    check(fma_lib, Case(np.arange(1, 301), _grads(np.random.default_rng(3), 300, N_SYN),
                        adam=True, eta_set=_eta_schedule(np.random.default_rng(3), 300, 5,
                                                         first=1e-3)))


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler")
def test_header_is_c99(tmp_path):
    src = tmp_path / "c99.c"
    src.write_text('#include "eg_optimizer.h"\n'
                   "double f(void) { eg_optimizer o; eg_optimizer_state s;\n"
                   "  eg_optimizer_init(&o); eg_optimizer_state_init(&s);\n"
                   "  eg_optimizer_set_eta(&o, 0.1); return eg_optimize(&o, &s, 3, 1.0, 0.0); }\n")
    for extra in ([], ["-march=native"] if _has_fma() else []):
        run = subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror",
                              "-fsyntax-only", f"-I{HEADER_DIR}", *extra, str(src)],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
