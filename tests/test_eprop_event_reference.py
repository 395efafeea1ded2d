"""The numpy reference of event-driven e-prop (tests/eprop_ref/numpy_event.py) against NEST 3.10.

Every NEST case builds the sine-wave set-up of NEST's example (tests/eprop_ref/sine_task.py) at a
small size, runs it once in NEST (tests/eprop_ref/nest_event.py, 1 thread) and once in the numpy
reference, and requires per-iteration losses, readout traces, recurrent spike trains and every
final weight to agree to 1e-8 relative.  They agree bitwise (asserted separately, so a loss of
bitwise equality is reported as such).  The tests without the ``nest`` mark check the task
generator's float32 conventions, the vectorised optimizer paths and the delay extension.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest

from eprop_ref import numpy_event as ne
from eprop_ref import sine_task as st

RTOL = 1e-8
MODELS = ("eprop_iaf", "eprop_iaf_adapt", "eprop_iaf_psc_delta", "eprop_iaf_psc_delta_adapt")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def max_rel_dev(a: np.ndarray, b: np.ndarray) -> float:
    """max |a-b| / max(|a|, |b|) over entries (0 where both are 0)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = np.maximum(np.abs(a), np.abs(b))
    dev = np.abs(a - b)
    return float(np.max(np.where(scale > 0, dev / np.where(scale > 0, scale, 1.0), dev), initial=0.0))


def deviations(x: ne.EventResult, y: ne.EventResult) -> dict:
    return {k: max_rel_dev(getattr(x, k), getattr(y, k))
            for k in ("loss", "readout", "target", "W_in", "W_rec", "W_out")}


def bitwise_equal(x: ne.EventResult, y: ne.EventResult) -> bool:
    same = all(np.array_equal(getattr(x, k), getattr(y, k))
               for k in ("loss", "readout", "target", "W_in", "W_rec", "W_out"))
    return same and spikes_equal(x, y)


def spikes_equal(x: ne.EventResult, y: ne.EventResult) -> bool:
    return len(x.spike_steps) == len(y.spike_steps) and all(
        np.array_equal(p, q) for p, q in zip(x.spike_steps, y.spike_steps))


def small_task(model="eprop_iaf", n_in=20, n_rec=20, seq=200, n_iter=3, **kw):
    return st.make_sine_task(model, n_in=n_in, n_rec=n_rec, seq=seq, n_iter=n_iter, **kw)


def config(model="eprop_iaf", seq=200, **overrides) -> ne.EventConfig:
    return ne.EventConfig(**{**st.example_parameters(model, seq=seq), **overrides})


@functools.lru_cache(maxsize=None)
def nest_run(task_key, cfg):
    """NEST result for a (hashable) task description and config, computed once per session."""
    pytest.importorskip("nest")
    from eprop_ref import nest_event
    return nest_event.run_nest_event(small_task(**dict(task_key)), cfg)


def compare(task_kw: dict, cfg: ne.EventConfig, expect_learning=True):
    task = small_task(**task_kw)
    ref = ne.simulate_event(task, cfg)
    nst = nest_run(tuple(sorted(task_kw.items())), cfg)
    dev = deviations(nst, ref)
    assert all(v <= RTOL for v in dev.values()), dev
    assert spikes_equal(nst, ref)
    assert bitwise_equal(nst, ref), f"agreement within 1e-8 but not bitwise: {dev}"
    if expect_learning:        # the case must exercise the plasticity it is meant to test
        for k in ("W_in", "W_rec", "W_out"):
            assert np.any(getattr(nst, k) != getattr(task, k)), f"{k} never changed"
    return nst, ref


# ------------------------------------------------------------------------------------------
# NEST comparisons
# ------------------------------------------------------------------------------------------
# strong learning rates so that weight changes feed back into the dynamics within 3 iterations
GD_STRONG = dict(eta=1e-5)
ADAM = dict(optimizer="adam", eta=2e-3)


@pytest.mark.nest
@pytest.mark.parametrize("model", MODELS)
def test_models_gradient_descent_example_parameters(model):
    """Each recurrent model with the example's own parameters (per-spike gradient descent)."""
    compare(dict(model=model), config(model))


@pytest.mark.nest
@pytest.mark.parametrize("model", MODELS)
def test_models_gradient_descent_strong_learning(model):
    extra = dict(adapt_beta=0.5, adapt_tau=200.0) if model == "eprop_iaf_adapt" else {}
    compare(dict(model=model, n_rec=30), config(model, **GD_STRONG, **extra))


@pytest.mark.nest
@pytest.mark.parametrize("each", [True, False])
def test_adam(each):
    compare(dict(n_rec=30), config(optimize_each_step=each, **ADAM))


@pytest.mark.nest
def test_adam_batch_and_cutoff_gaps():
    """Adam catch-up iterations across cutoff gaps and batches of 5 time steps."""
    compare({}, config(optimize_each_step=True, batch_size=5, cutoff=20.0, **ADAM))


@pytest.mark.nest
@pytest.mark.parametrize("each", [True, False])
def test_infinite_cutoff(each):
    compare({}, config(cutoff=math.inf, cutoff_out=math.inf, optimize_each_step=each, **GD_STRONG))


@pytest.mark.nest
def test_short_cutoff_pow_decay():
    compare({}, config(cutoff=4.0, cutoff_out=7.0, **GD_STRONG))


@pytest.mark.nest
@pytest.mark.parametrize("each", [True, False])
def test_flush_interval(each):
    """Short flush interval: flushes interrupt replays (and update weights early when each)."""
    compare({}, config(flush_interval=7.0, cutoff=30.0, optimize_each_step=each, **GD_STRONG))


@pytest.mark.nest
def test_sparse_connectivity():
    compare(dict(n_rec=40, p_conn_in=0.5, p_conn_rec=0.2), config(**GD_STRONG))


@pytest.mark.nest
@pytest.mark.parametrize("model", MODELS)
def test_refractory_period(model):
    compare(dict(model=model), config(model, t_ref=3.0, **GD_STRONG))


@pytest.mark.nest
@pytest.mark.parametrize("surrogate", ["exponential", "fast_sigmoid_derivative", "arctan_derivative"])
def test_surrogate_functions(surrogate):
    compare({}, config(surrogate_function=surrogate, surrogate_width=0.1, **GD_STRONG))


@pytest.mark.nest
@pytest.mark.parametrize("c_reg,f_target", [(0.0, 10.0), (30.0, 40.0)])
def test_firing_rate_regularisation(c_reg, f_target):
    compare({}, config(c_reg=c_reg, f_target=f_target, kappa_reg=0.9, **GD_STRONG))


@pytest.mark.nest
@pytest.mark.parametrize("each", [True, False])
def test_batch_size(each):
    compare({}, config(batch_size=7, optimize_each_step=each, **GD_STRONG))


@pytest.mark.nest
def test_eta_lag_after_changes():
    """eta switched to 0 and back between Simulate calls: each synapse lags one optimisation."""
    compare({}, config(eta=1e-5, eta_changes=((250, 0.0), (430, 3e-6))))


@pytest.mark.nest
def test_two_readouts():
    """Learning signals of several readouts are summed in readout order."""
    compare(dict(n_out=2), config(**GD_STRONG))


@pytest.mark.nest
def test_full_size_example():
    """The example itself (100/100/1, 1000 steps), 2 iterations; validates the task generator."""
    pytest.importorskip("nest")
    task = st.make_sine_task("eprop_iaf", n_iter=2)
    cfg = ne.EventConfig(**st.example_parameters("eprop_iaf"))
    from eprop_ref import nest_event
    nst, ref = nest_event.run_nest_event(task, cfg), ne.simulate_event(task, cfg)
    assert round(float(nst.loss[0]), 6) == 107.737321          # spec 7.1, measured in NEST 3.10
    assert round(float(ref.loss[0]), 6) == 107.737321
    assert bitwise_equal(nst, ref), deviations(nst, ref)


# ------------------------------------------------------------------------------------------
# the comparison can fail: wrong reference variants are caught
# ------------------------------------------------------------------------------------------
@pytest.mark.nest
def test_wrong_kappa_is_detected():
    cfg = config(**GD_STRONG)
    nst = nest_run((), cfg)
    wrong = ne.simulate_event(small_task(), dataclasses.replace(cfg, kappa=1.0 - cfg.kappa))
    dev = deviations(nst, wrong)
    assert dev["W_in"] > 1e-3 and dev["W_rec"] > 1e-3


@pytest.mark.nest
def test_shifted_replay_window_is_detected(monkeypatch):
    """Replaying [t_last, s-1] instead of [t_last-1, s-2] (spec 9.8) changes the weights."""
    cfg = config(**GD_STRONG)
    nst = nest_run((), cfg)
    original = ne.SynapseGroup._window_gradients
    monkeypatch.setattr(ne.SynapseGroup, "_window_gradients",
                        lambda self, m0, K, zbar, hist: original(self, m0 + 1, K, zbar, hist))
    dev = deviations(nst, ne.simulate_event(small_task(), cfg))
    assert dev["W_out"] > 1e-3 and dev["W_in"] > 1e-3


# ------------------------------------------------------------------------------------------
# NEST-free checks
# ------------------------------------------------------------------------------------------
def test_task_generator_float32_conventions():
    task = st.make_sine_task("eprop_iaf", n_iter=2)
    for W in (task.W_in, task.W_rec, task.W_out, task.B):
        assert np.array_equal(W, W.astype(np.float32).astype(np.float64))
    rs = np.random.RandomState(1)
    draw_in = np.array(rs.randn(100, 100).T / np.sqrt(100), dtype=np.float32)
    sf32 = np.float32(st.scale_factor())
    assert np.array_equal(task.W_in, (draw_in * sf32).astype(np.float64))   # scaled in float32
    assert np.all(np.diag(task.W_rec) == 0.0)
    assert task.target.shape == (1, 1000) and task.target[0, 0] == 0.0
    assert np.max(np.abs(task.target)) == 1.0
    t0 = task.input_spike_times[0]
    assert np.all(t0 >= 1.0) and np.all(t0 <= 2000.0) and np.all(t0 == np.round(t0))
    # the pattern is frozen: iteration 2 repeats iteration 1 shifted by one sequence
    first, second = t0[t0 <= 1000.0], t0[t0 > 1000.0]
    assert np.array_equal(first + 1000.0, second)


def test_task_generator_scaling_variants():
    plain = st.make_sine_task("eprop_iaf", n_in=5, n_rec=6, seq=50, n_iter=1, scaling="none",
                              dtype_weights=np.float64)
    delta = st.make_sine_task("eprop_iaf_psc_delta", n_in=5, n_rec=6, seq=50, n_iter=1,
                              dtype_weights=np.float64)
    sf = st.scale_factor()
    assert np.array_equal(delta.W_in, plain.W_in)
    assert np.array_equal(delta.W_out, plain.W_out * sf)
    assert np.array_equal(delta.B, plain.B / sf)
    sparse = st.make_sine_task("eprop_iaf", n_in=5, n_rec=6, seq=50, n_iter=1, p_conn_rec=0.5)
    assert np.all(sparse.W_rec[~sparse.mask_rec] == 0.0) and not sparse.mask_rec.all()


def test_task_from_arrays_roundtrip():
    task = st.make_sine_task("eprop_iaf", n_in=5, n_rec=6, seq=50, n_iter=2, p_conn_in=0.7)
    again = st.task_from_arrays(task.W_in, task.W_rec, task.W_out, task.B, task.input_spike_times,
                                task.target_over_task(), seq=50, n_iter=2, mask_in=task.mask_in)
    assert np.array_equal(again.target_over_task(), task.target_over_task())
    assert np.array_equal(again.W_in, task.W_in) and np.array_equal(again.mask_rec, task.mask_rec)
    with pytest.raises(ValueError):
        st.task_from_arrays(task.W_in, task.W_rec, task.W_out, task.B, task.input_spike_times,
                            task.target, seq=50, n_iter=2, mask_rec=np.ones((6, 6)))


def test_gradient_descent_block_equals_per_call():
    """The cumsum fast path of per-step gradient descent equals the per-call loop bitwise."""
    rng = np.random.default_rng(3)
    cfg = ne.EventConfig(optimize_each_step=True, eta=1e-3)
    g = rng.standard_normal((57, 9)) * 10.0 ** rng.integers(-6, 2, size=(57, 9))
    w0 = rng.standard_normal(9)
    fast = ne.GroupOptimizer(cfg, _etas(cfg), 9)
    slow = ne.GroupOptimizer(cfg, _etas(cfg), 9)
    w_fast = fast.call_consecutive(41, g, w0)
    w_slow = w0
    for r in range(len(g)):
        w_slow = slow.call(41 + r, g[r], w_slow)
    assert np.array_equal(w_fast, w_slow)
    assert (fast.k, fast.n_opt, fast.eta_cur) == (slow.k, slow.n_opt, slow.eta_cur)


def test_gradient_descent_block_falls_back_when_clamped():
    cfg = ne.EventConfig(optimize_each_step=True, eta=1.0, Wmin=-0.5, Wmax=0.5)
    opt = ne.GroupOptimizer(cfg, _etas(cfg), 1)
    w = opt.call_consecutive(1, np.array([[-2.0], [1.0]]), np.array([0.0]))
    assert w[0] == -0.5                           # clamp(0 + 2) = 0.5, then 0.5 - 1 = -0.5


def _etas(cfg):
    etas = ne.EtaSchedule()
    etas.set(cfg.eta)
    return etas


def test_explicit_unit_delays_equal_default():
    task = small_task(n_iter=2)
    cfg = config(**GD_STRONG)
    a = ne.simulate_event(task, cfg)
    b = ne.simulate_event(task, cfg, delays_in=np.ones((20, 20)), delays_rec=np.ones((20, 20)),
                          delays_out=np.ones((1, 20)))
    assert bitwise_equal(a, b)


def test_input_delay_equals_shifted_input_times():
    """Delay d on in->rec plastic synapses = input spikes d-1 ms later through delay 1.

    Up to the forced final spike everything is identical (losses, readout, recurrent spikes);
    afterwards the two runs differ (the forced parrot spike arrives d-1 steps later, the delayed
    run is d-1 steps longer), so the final weights are not compared."""
    d = 3
    task = small_task(n_iter=2)
    T = task.task_steps
    # shifted spikes at >= T+1 ms only reach the network after the loss window; dropping them
    # avoids a collision with the forced final spike at T+1 ms
    shifted = dataclasses.replace(task, input_spike_times=tuple(
        (t + (d - 1))[t + (d - 1) < T + 1] for t in task.input_spike_times))
    cfg = config(**GD_STRONG)
    delayed = ne.simulate_event(task, cfg, delays_in=np.full((20, 20), d))
    ref = ne.simulate_event(shifted, cfg)
    assert np.array_equal(delayed.loss, ref.loss)
    assert np.array_equal(delayed.readout, ref.readout)
    for a, b in zip(delayed.spike_steps, ref.spike_steps):
        assert np.array_equal(a[a <= T], b[b <= T])
    assert not np.array_equal(delayed.W_in, task.W_in)


def test_heterogeneous_delays_run():
    task = small_task(n_iter=2)
    rng = np.random.default_rng(0)
    res = ne.simulate_event(task, config(**GD_STRONG),
                            delays_in=rng.integers(1, 4, (20, 20)),
                            delays_rec=rng.integers(1, 6, (20, 20)),
                            delays_out=rng.integers(1, 3, (1, 20)))
    base = ne.simulate_event(task, config(**GD_STRONG))
    assert np.all(np.isfinite(res.W_rec)) and not np.array_equal(res.W_rec, base.W_rec)
