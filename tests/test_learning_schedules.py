"""The learning schedules' API: eg.event_driven / eg.time_driven and what they refuse."""
from __future__ import annotations

import numpy as np
import pytest

import eprop_gen as eg


@pytest.fixture(scope="module")
def models():
    return {name: eg.compile_model(eg.models.path(name))
            for name in ("eprop_iaf_bsshslm_2020", "eprop_readout_bsshslm_2020", "eprop_iaf", "eprop_readout")}


def test_flush_interval_shorter_than_the_update_interval_is_refused(models):
    net = eg.Network(dt=1.0, history_steps=500, learning=eg.time_driven(update_interval=100.0))
    rec = net.add_population(models["eprop_iaf_bsshslm_2020"], 3, params=dict(flush_event_send_interval=40.0))
    out = net.add_population(models["eprop_readout_bsshslm_2020"], 1)
    net.connect(rec, out, "spikes", eg.FixedIndegree(1), plasticity=eg.gradient_descent())
    with pytest.raises(ValueError, match="flush interval of 40.0 ms is shorter than the update interval"):
        net.simulate(5.0)


def test_per_interval_regularisation_needs_the_time_driven_engine(models):
    net = eg.Network(dt=1.0)
    rec = net.add_population(models["eprop_iaf_bsshslm_2020"], 3)
    with pytest.raises(ValueError, match="only the time-driven engine has"):
        net.connect(rec, rec, "spikes", eg.FixedIndegree(1), plasticity=eg.gradient_descent())


@pytest.mark.parametrize("make, message", [
    (lambda: eg.time_driven(update_interval=10.5), "update_interval must be a positive multiple of dt"),
    (lambda: eg.time_driven(update_interval=100.0, learning_window=200.0), "must not exceed"),
    (lambda: eg.time_driven(update_interval=100.0, offset=-1), "offset must be a whole number"),
    (lambda: eg.event_driven(sample_duration=0.0), "sample_duration must be a positive multiple"),
])
def test_bad_schedules(make, message):
    with pytest.raises(ValueError, match=message):
        eg.Network(dt=1.0, learning=make())


def test_history_holds_at_least_an_interval_or_a_sample():
    net = eg.Network(dt=1.0, history_steps=50, learning=eg.time_driven(update_interval=100.0))
    assert net.history_steps >= 100 + 2 + 4
    net = eg.Network(dt=1.0, history_steps=50, learning=eg.event_driven(sample_duration=100.0))
    assert net.history_steps >= 102
    with pytest.raises(ValueError, match="learning must be eg.event_driven"):
        eg.Network(dt=1.0, learning="time")


def test_unknown_loss(models):
    net = eg.Network(dt=1.0)
    out = net.add_population(models["eprop_readout"], 2)
    with pytest.raises(ValueError, match="loss must be one of mean_squared_error, cross_entropy"):
        net.add_target(out, np.zeros(3), loss="hinge")


def test_cross_entropy_error_is_softmax_minus_target(models):
    """One step of two readouts driven to known voltages: the archived error is softmax - y*."""
    net = eg.Network(dt=1.0)
    out = net.add_population(models["eprop_readout"], 2, params=dict(C_m=1.0, E_L=0.0, tau_m=10.0),
                             state=dict(V_m=np.array([1.0, -0.5])))
    rec = net.add_population(models["eprop_iaf"], 1)
    net.connect_feedback(out, rec, np.array([[1.0, 0.0]]))
    net.add_target(out, np.array([[0.0, 1.0]]), loss="cross_entropy")
    net.simulate(1.0)
    u = np.array([1.0, -0.5]) * np.exp(-0.1)
    y = np.exp(u) / np.exp(u).sum()
    error = net._archives[out.index].history.learning_signal[0, :]      # step 0, both readouts
    np.testing.assert_allclose(error, y - [0.0, 1.0], rtol=1e-14)
