"""The precise-timing experiment (issue 6; Traub et al., ICANN 2020): one neuron learns to fire at
40 and 80 ms of a 100 ms trial from an e-prop learning signal (eprop_gen/tasks/precise_timing.py;
examples/precise_timing.py plots it). The numbers asserted are what the engine gives, run here; the
claims are those of the issue:

* the STDP-aware models reach a mean spike-time error under 1 ms within a bounded number of
  iterations: the STDP-aware LIF in every seed, fast; the Izhikevich neuron in most seeds, slower, and
  then more precisely than the LIF neurons can (their spikes can only follow input spikes; the
  Izhikevich upswing can place a spike between them);
* plain LIF e-prop, stated as it is: at a third of the learning rate it learns the task as well,
  about as fast, a little less stably (here 90 % of iterations 50-150 under 1 ms over 4 seeds, the
  STDP-aware LIF at the same rate 97 %; over 6 seeds and 300 iterations 96 % and 98 %); at the
  STDP-aware LIF's rate it falls silent in every seed: its eligibility keeps accumulating through
  postsynaptic spikes, so its steps are larger.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from eprop_gen.tasks.precise_timing import (MODELS, make_precise_timing_task, spike_time_error,
                                            train_precise_timing)

TASK = make_precise_timing_task()


def _runs(setup, seeds, iterations):
    return [train_precise_timing(TASK, setup, iterations, seed=seed) for seed in range(seeds)]


def _final(run) -> float:
    return float(np.mean(run.errors[-20:]))


def test_spike_time_error():
    targets = np.array([40.0, 80.0])
    assert spike_time_error(np.array([40.0, 80.0]), targets, 100.0) == 0.0
    assert spike_time_error(np.array([41.0, 79.0]), targets, 100.0) == pytest.approx(1.0)
    # an extra spike 20 ms from the nearest target: (0 + 0 | 0 + 20 + 0) / 5
    assert spike_time_error(np.array([40.0, 60.0, 80.0]), targets, 100.0) == pytest.approx(4.0)
    assert spike_time_error(np.array([]), targets, 100.0) == 100.0


def test_stdp_aware_lif_learns_precise_timing():
    runs = _runs(MODELS["stdp_lif"], seeds=4, iterations=150)
    for run in runs:
        assert run.first_below(1.0) is not None and run.first_below(1.0) <= 20, run.errors[:30]
        assert _final(run) < 1.0
        assert len(run.spikes[-1][run.spikes[-1] > TASK.warm_up]) == 2       # one spike per target


def test_izhikevich_learns_precise_timing():
    runs = _runs(MODELS["izhikevich"], seeds=8, iterations=300)
    final = np.array([_final(run) for run in runs])
    learned = final < 1.0
    assert learned.sum() >= 5, f"seeds under 1 ms: {learned.sum()} of 8, final errors {np.round(final, 2)}"
    assert all(run.first_below(1.0) <= 300 for run, ok in zip(runs, learned) if ok)
    # where it learned, below the LIF neurons' floor (their spikes follow input spikes, ~0.4 ms here)
    assert np.median(final[learned]) < 0.2


def test_plain_lif_result_stated_honestly():
    stdp = MODELS["stdp_lif"]
    plain = MODELS["lif"]
    assert plain.eta == stdp.eta and plain.params.keys() <= stdp.params.keys()   # the same set-up
    same_rate = _runs(plain, seeds=4, iterations=100)
    assert all(run.errors[-1] == TASK.duration for run in same_rate), "plain LIF falls silent at this rate"
    slower = _runs(dataclasses.replace(plain, eta=plain.eta / 3), seeds=4, iterations=150)
    assert all(run.first_below(1.0) <= 20 for run in slower)    # at a third of the rate it learns too
    stdp_slower = _runs(dataclasses.replace(stdp, eta=stdp.eta / 3), seeds=4, iterations=150)

    def under(runs):          # the share of iterations 50-150 with an error under 1 ms
        return float(np.mean([np.mean(np.array(run.errors[50:]) < 1.0) for run in runs]))
    assert 0.8 < under(slower) <= under(stdp_slower), (under(slower), under(stdp_slower))
