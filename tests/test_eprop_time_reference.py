"""The numpy reference of NEST 3.10's time-driven (bsshslm) e-prop against NEST itself.

Each case builds a task with ``eprop_ref.time_tasks`` (the examples' random draws), runs it
through NEST (``eprop_ref.nest_time``, 1 thread) and through the numpy reference
(``eprop_ref.numpy_time``), and requires per-iteration losses and every final plastic weight to
agree to <= 1e-8 relative (measured: bitwise, see ``test_reference_matches_nest``).  Mutant
tests show that the comparison catches single wrong details of the schedule.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from eprop_ref import numpy_time as nt
from eprop_ref.time_tasks import (EvidenceShape, evidence_config, evidence_task,
                                  sine_config, sine_task)

REL_TOL = 1e-8
SMALL_SINE = dict(n_in=20, n_rec=20, n_out=1, seq_len=100, n_iter=3)
SHORT_PERIODS = (100, 50, 33, 20)  # the example's periods scaled to 100-step sequences
SMALL_EVIDENCE = EvidenceShape(n_cues=3, cue=20, spacing=10, bg_noise=60, recall=30, spike_prob=0.1)


def _sine(**kw):
    cfg = sine_config(**dict(SMALL_SINE, **kw))
    return cfg, sine_task(cfg, periods=SHORT_PERIODS), None


def _evidence(masks_p=None, **kw):
    shape = SMALL_EVIDENCE
    base = dict(n_in=8, n_rec=20, n_adaptive=10, seq_len=shape.seq_len,
                learning_window=shape.recall, n_iter=3, batch_size=3)
    cfg = evidence_config(**dict(base, **kw))
    masks = None
    if masks_p is not None:  # drawn from a separate stream: the task's numbers do not change
        rs = np.random.RandomState(7)
        masks = {"in": rs.rand(cfg.n_rec, cfg.n_in) < masks_p,
                 "rec": rs.rand(cfg.n_rec, cfg.n_rec) < masks_p,
                 "out": rs.rand(cfg.n_out, cfg.n_rec) < 0.8}
    return cfg, evidence_task(cfg, shape), masks


CASES = {
    "sine_gradient_descent": lambda: _sine(),
    "sine_adam": lambda: _sine(optimizer="adam", eta=1e-3, epsilon=1e-8),
    "sine_average_gradient": lambda: _sine(average_gradient=True, eta=5e-2),
    "sine_batch2": lambda: _sine(batch_size=2, n_iter=2, eta=3e-4),
    "sine_no_regularisation": lambda: _sine(c_reg=0.0),
    "sine_regular_arrival": lambda: _sine(regular_spike_arrival=True,
                                          regular_spike_arrival_out=True, c_reg=30.0),
    "sine_exponential_tref": lambda: _sine(surrogate="exponential", t_ref=3.0, n_adaptive=8,
                                           adapt_beta=0.05, adapt_tau=200.0),
    # the example's phases: validation (eta 0) first, then training, then test (eta lag!)
    "evidence_adam_batch3": lambda: _evidence(etas=(0.0, 5e-3, 0.0)),
    "evidence_sparse_gd": lambda: _evidence(masks_p=0.5, optimizer="gradient_descent", eta=2e-2),
    # softmax over 3 readouts (normaliser summed in readout order), no refractoriness
    "evidence_3_readouts_tref0": lambda: _evidence(n_out=3, t_ref=0.0, n_iter=2, batch_size=2),
    "sine_fast_sigmoid_adam_batch2": lambda: _sine(surrogate="fast_sigmoid_derivative",
                                                   surrogate_height=0.3, surrogate_width=0.5,
                                                   optimizer="adam", eta=1e-3, batch_size=2,
                                                   n_iter=2, average_gradient=True),
}


@functools.lru_cache(maxsize=None)
def _case(name):
    cfg, (weights, inputs, targets), masks = CASES[name]()
    return cfg, weights, inputs, targets, masks


@functools.lru_cache(maxsize=None)
def _nest_result(name):
    from eprop_ref.nest_time import run_nest

    cfg, weights, inputs, targets, masks = _case(name)
    return run_nest(cfg, weights, inputs, targets, masks=masks)


def _reference(name, **kw):
    cfg, weights, inputs, targets, masks = _case(name)
    return nt.simulate_reference(cfg, weights, inputs, targets, masks=masks, **kw)


def max_rel(a, b) -> float:
    """Largest |a-b| / |a| over all entries (0/0 counts as 0)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = np.abs(a - b)
    scale = np.abs(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(diff == 0, 0.0, diff / scale)
    return float(np.max(rel)) if rel.size else 0.0


def deviations(nest_res, ref_res) -> dict:
    out = {"losses": max_rel(nest_res.losses, ref_res.losses)}
    for k in ("in", "rec", "out"):
        out["W_" + k] = max_rel(nest_res.weights[k], ref_res.weights[k])
    return out


def _assert_agrees(nest_res, ref_res):
    dev = deviations(nest_res, ref_res)
    assert all(v <= REL_TOL for v in dev.values()), dev
    if nest_res.errors is not None:
        np.testing.assert_array_equal(nest_res.errors, ref_res.errors)


# ---------------------------------------------------------------------------------------------


@pytest.mark.nest
@pytest.mark.parametrize("name", list(CASES))
def test_reference_matches_nest(name):
    pytest.importorskip("nest")
    cfg, weights, *_ = _case(name)
    nres, rres = _nest_result(name), _reference(name)
    # not vacuous: the network spikes and learning moved every kind of weight
    assert nres.rec_spikes.sum() > 0
    for k, key in (("in", "W_in"), ("rec", "W_rec"), ("out", "W_out")):
        assert np.any(nres.weights[k] != np.asarray(weights[key], float) * (nres.weights[k] != 0))
    _assert_agrees(nres, rres)
    # measured on NEST 3.10.0: every number is bitwise identical
    assert deviations(nres, rres) == {"losses": 0.0, "W_in": 0.0, "W_rec": 0.0, "W_out": 0.0}
    np.testing.assert_array_equal(nres.rec_spikes, rres.rec_spikes)
    np.testing.assert_array_equal(nres.readout, rres.readout)


@pytest.mark.nest
def test_full_size_sine_first_iteration_loss():
    """Validates the task generator: spec §7.2 reports 101.964357 for iteration 1."""
    pytest.importorskip("nest")
    from eprop_ref.nest_time import run_nest

    cfg = sine_config(n_iter=1)
    weights, inputs, targets = sine_task(cfg)
    nres = run_nest(cfg, weights, inputs, targets)
    rres = nt.simulate_reference(cfg, weights, inputs, targets)
    assert round(float(nres.losses[0]), 6) == 101.964357
    _assert_agrees(nres, rres)


@pytest.mark.nest
def test_full_size_evidence_network_two_sequences():
    """The full evidence-accumulation network (40+100+2, 2250 steps), one batch of 2."""
    pytest.importorskip("nest")
    from eprop_ref.nest_time import run_nest

    cfg = evidence_config(n_iter=1, batch_size=2)
    weights, inputs, targets = evidence_task(cfg)
    _assert_agrees(run_nest(cfg, weights, inputs, targets),
                   nt.simulate_reference(cfg, weights, inputs, targets))


# --- mutants: a single wrong detail must be caught by the NEST comparison ----------------------


def _no_drop_at_interval_start(monkeypatch):
    init = nt.SynapseSchedule.__init__
    monkeypatch.setattr(nt.SynapseSchedule, "__init__",
                        lambda self, u, shift, drops: init(self, u, shift, False))


def _softmax_without_delay(monkeypatch):
    update = nt.ReadoutPopulation.update

    def same_step_softmax(self, n, x, ystar, norm):
        y, yt, err = update(self, n, x, ystar, norm)
        if not np.any(yt):  # outside the window: nothing to change
            return y, yt, err
        y_now = self.yu / np.sum(self.yu)  # softmax of THIS step's voltages
        return y_now, yt, y_now - yt

    monkeypatch.setattr(nt.ReadoutPopulation, "update", same_step_softmax)


def _reset_in_spike_step(monkeypatch):
    update = nt.RecurrentPopulation.update

    def early_reset(self, n, x):
        psi, spikes, flushes, rint = update(self, n, x)
        self.v = self.v - self.p.theta * self.z  # subtract now ...
        self.z = np.zeros_like(self.z)  # ... and not again in the next step (adaptation too)
        return psi, spikes, flushes, rint

    monkeypatch.setattr(nt.RecurrentPopulation, "update", early_reset)


def _eta_without_lag(monkeypatch):
    step = nt.GroupOptimizer.step

    def current_eta(self, c, idx, g, w, gc, m, v):
        self.eta_cur = c.eta
        return step(self, c, idx, g, w, gc, m, v)

    monkeypatch.setattr(nt.GroupOptimizer, "step", current_eta)


MUTANTS = {
    "no_drop_at_interval_step0": (_no_drop_at_interval_start, "evidence_adam_batch3"),
    "softmax_without_delay": (_softmax_without_delay, "evidence_adam_batch3"),
    "reset_in_spike_step": (_reset_in_spike_step, "sine_gradient_descent"),
    "eta_without_lag": (_eta_without_lag, "evidence_adam_batch3"),
}


@pytest.mark.nest
@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_wrong_detail_is_caught(mutant, monkeypatch):
    pytest.importorskip("nest")
    patch, case = MUTANTS[mutant]
    nres = _nest_result(case)
    patch(monkeypatch)
    dev = deviations(nres, _reference(case))
    assert max(dev.values()) > 1e-6, dev


@pytest.mark.nest
def test_last_learning_signal_of_interval_read_when_replayed():
    """A replay triggered at stamp b+1 must see L[b-1] = 0 (its error arrives one step later).

    Mutant: give every replay the complete learning signal of its last entry (taken from a
    first run) -- NEST disagrees, so the reference's timing of Phase A vs B is what NEST does.
    """
    pytest.importorskip("nest")
    name = "evidence_adam_batch3"
    cfg, weights, inputs, targets, _ = _case(name)
    first = nt.ReferenceNetwork(cfg, weights)
    first.run(nt.parrot_stamps(cfg, inputs), nt.target_function(cfg, targets))
    complete_L = first.hist.L.copy()
    finish = nt.finish_grad

    def with_complete_L(gp, last, sum_e, m_last, t_prev_upd, hist, cls, tj, c):
        if cls == "rec":
            gp = gp + complete_L[m_last, tj] * last - hist.L[m_last, tj] * last
        return finish(gp, last, sum_e, m_last, t_prev_upd, hist, cls, tj, c)

    mp = pytest.MonkeyPatch()
    mp.setattr(nt, "finish_grad", with_complete_L)
    try:
        dev = deviations(_nest_result(name), _reference(name))
    finally:
        mp.undo()
    assert max(dev.values()) > 1e-9, dev


# --- internal consistency and the delay extension (no NEST needed) ------------------------------


@pytest.mark.parametrize("name", ["evidence_adam_batch3", "sine_exponential_tref"])
def test_batched_replay_equals_literal_replay(name):
    a, b = _reference(name), _reference(name, replay="literal")
    np.testing.assert_array_equal(a.losses, b.losses)
    for k in a.weights:
        np.testing.assert_array_equal(a.weights[k], b.weights[k])


def _delay_case():
    cfg = sine_config(**dict(SMALL_SINE, extra_steps=4))
    return cfg, sine_task(cfg, periods=SHORT_PERIODS)


def test_unit_delays_equal_default():
    cfg, (w, x, y) = _delay_case()
    ones = {"in": np.ones((cfg.n_rec, cfg.n_in), int), "rec": np.ones((cfg.n_rec, cfg.n_rec), int),
            "out": np.ones((cfg.n_out, cfg.n_rec), int)}
    a, b = nt.simulate_reference(cfg, w, x, y), nt.simulate_reference(cfg, w, x, y, delays=ones)
    for k in a.weights:
        np.testing.assert_array_equal(a.weights[k], b.weights[k])


@pytest.mark.parametrize("d", [2, 3])
def test_input_delay_equals_shifted_input(d):
    """Delay d on every input synapse == delay 1 with all input spikes d-1 steps later."""
    cfg, (w, x, y) = _delay_case()
    delayed = nt.simulate_reference(cfg, w, x, y, delays={"in": np.full((cfg.n_rec, cfg.n_in), d)})
    shifted_stamps = {t + d - 1: v for t, v in nt.parrot_stamps(cfg, x).items()}
    shifted = nt.simulate_reference(cfg, w, x, y, stamps=shifted_stamps)
    undelayed = nt.simulate_reference(cfg, w, x, y)
    np.testing.assert_array_equal(delayed.losses, shifted.losses)
    for k in delayed.weights:
        np.testing.assert_array_equal(delayed.weights[k], shifted.weights[k])
    assert not np.array_equal(delayed.losses, undelayed.losses)


def test_mixed_delays_run():
    cfg, (w, x, y) = _delay_case()
    rs = np.random.RandomState(3)
    delays = {"in": rs.randint(1, 4, (cfg.n_rec, cfg.n_in)), "rec": rs.randint(1, 4, (cfg.n_rec, cfg.n_rec)),
              "out": rs.randint(1, 3, (cfg.n_out, cfg.n_rec))}
    res = nt.simulate_reference(cfg, w, x, y, delays=delays)
    assert np.all(np.isfinite(res.losses)) and res.rec_spikes.sum() > 0


@pytest.mark.nest
def test_nest_refuses_plastic_delay_above_one_step():
    nest = pytest.importorskip("nest")
    nest.ResetKernel()
    nest.set(eprop_update_interval=100.0, eprop_learning_window=100.0)
    pre, post = nest.Create("parrot_neuron"), nest.Create("eprop_iaf_bsshslm_2020")
    with pytest.raises(Exception, match="delay of one simulation step"):
        nest.Connect(pre, post, syn_spec={"synapse_model": "eprop_synapse_bsshslm_2020", "delay": 2.0})


def test_cpp_mod_truncates_towards_zero():
    assert [nt.cpp_mod(a, 5) for a in (-7, -5, -1, 0, 4, 5, 12)] == [-2, 0, -1, 0, 4, 0, 2]
    assert math.isclose(nt.cpp_mod(-2, 1000), -2)
