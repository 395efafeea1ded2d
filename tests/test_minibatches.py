"""Minibatches in the event-driven engine (eg.event_driven(sample_duration=...)).

Semantics (docs/design/learning.md): samples are laid out one after another in time; each starts
from the network's initial state, weights stay fixed within a batch, a synapse's gradient is summed
over its sample (windows closed at the sample's end) and over the batch, and after every
batch_size samples the weights take one optimizer step with the mean gradient. That is exactly B
copies of the network run side by side, which is what the tests check: the batched run equals
fresh single-sample networks started from the batch's weights, their gradients averaged.
"""
from __future__ import annotations

import numpy as np

import eprop_gen as eg

T = 100                      # steps per sample (dt = 1 ms)
N_IN, N_REC, N_OUT = 10, 12, 2
ETA = 1e-5


def _samples(n, seed=5):
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        spikes = rng.random((T - 1, N_IN)) < 0.06            # relative times 1 .. T-1
        t, i = np.nonzero(spikes)
        phase = rng.uniform(0, 2 * np.pi, N_OUT)
        target = np.sin(2 * np.pi * np.arange(T)[:, None] / 50.0 + phase)
        samples.append((t + 1.0, i, target))
    return samples


def _weights(seed=2):
    rng = np.random.default_rng(seed)
    W_rec = rng.normal(0, 0.3, (N_REC, N_REC))
    np.fill_diagonal(W_rec, 0.0)
    return dict(W_in=rng.normal(0.3, 0.5, (N_REC, N_IN)), W_rec=W_rec,
                W_out=rng.normal(0, 0.5, (N_OUT, N_REC)), B=rng.normal(0, 1, (N_REC, N_OUT)))


def _dense(mask):
    rows, cols = np.nonzero(mask)
    return rows, cols


def _network(samples, weights, batch_size, threads=1, optimizer=eg.gradient_descent):
    """All samples in one network: sample k from k*T on."""
    n = len(samples)
    times = np.concatenate([k * T + s[0] for k, s in enumerate(samples)])
    senders = np.concatenate([s[1] for s in samples])
    target = np.concatenate([s[2] for s in samples])
    net = eg.Network(dt=1.0, threads=threads, history_steps=2 * T,
                     learning=eg.event_driven(sample_duration=float(T)))
    rec_model = eg.compile_model(eg.models.path("eprop_iaf"))
    out_model = eg.compile_model(eg.models.path("eprop_readout"))
    inputs = net.add_spike_source(N_IN, times=times, senders=senders)
    rec = net.add_population(rec_model, N_REC, params=dict(
        C_m=1.0, E_L=0.0, V_th=0.6, tau_m=20.0, t_ref=2.0, c_reg=0.3, f_target=10.0,
        surrogate_gradient_width=0.6))
    out = net.add_population(out_model, N_OUT, params=dict(C_m=1.0, E_L=0.0, tau_m=20.0))
    opt = optimizer(eta=ETA, batch_size=batch_size)
    projections = []
    for source, target_pop, W in ((inputs, rec, weights["W_in"]), (rec, rec, weights["W_rec"]),
                                  (rec, out, weights["W_out"])):
        rows, cols = _dense(W != 0)
        projections.append(net.connect(source, target_pop, "spikes",
                                       eg.Explicit(cols, rows, weights=W[rows, cols]), plasticity=opt))
    net.connect_feedback(out, rec, weights["B"])
    net.add_target(out, target)
    net.simulate(n * T + 1.0)          # + 1: the last sample closes at the first step after it
    return net, projections, rec


def _as_dense(projections, weights):
    out = {}
    for name, proj in zip(("W_in", "W_rec", "W_out"), projections):
        W = np.zeros_like(weights[name])
        W[proj.targets, proj.sources] = proj.weights
        out[name] = W
    return out


def _side_by_side(samples, weights, batch_size, optimizer=eg.gradient_descent):
    """Reference: every sample in a fresh network from the batch's weights; mean of the changes."""
    w = {k: v.copy() for k, v in weights.items()}
    for start in range(0, len(samples), batch_size):
        changes = []
        for sample in samples[start:start + batch_size]:
            net, projections, _ = _network([sample], w, batch_size=1, optimizer=optimizer)
            after = _as_dense(projections, w)
            changes.append({k: after[k] - w[k] for k in after})
        for k in ("W_in", "W_rec", "W_out"):
            w[k] = w[k] + np.mean([c[k] for c in changes], axis=0)
    return w


def test_a_batch_equals_its_samples_side_by_side():
    samples, weights = _samples(8), _weights()
    net, projections, rec = _network(samples, weights, batch_size=4)
    batched = _as_dense(projections, weights)
    reference = _side_by_side(samples, weights, batch_size=4)
    assert net.spikes(rec)[0].size > 50
    for k in ("W_in", "W_rec", "W_out"):
        change = np.abs(reference[k] - weights[k])
        assert np.count_nonzero(change) > 0.3 * change.size, k
        np.testing.assert_allclose(batched[k], reference[k], rtol=0, atol=1e-12 * change.max())


def test_weights_change_only_at_batch_ends():
    samples, weights = _samples(3), _weights()
    net, projections, _ = _network(samples, weights, batch_size=4)    # the batch never completes
    for name, proj in zip(("W_in", "W_rec", "W_out"), projections):
        W = weights[name]
        np.testing.assert_array_equal(proj.weights, W[proj.targets, proj.sources])


def test_samples_are_independent_of_their_order_within_a_batch():
    samples, weights = _samples(4), _weights()
    _, forward, _ = _network(samples, weights, batch_size=4)
    _, backward, _ = _network(samples[::-1], weights, batch_size=4)
    for a, b in zip(forward, backward):
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-12, atol=1e-15)


def test_adam_batches_one_and_two_threads_identical():
    samples, weights = _samples(6), _weights()
    _, one, _ = _network(samples, weights, batch_size=3, optimizer=eg.adam)
    _, two, _ = _network(samples, weights, batch_size=3, optimizer=eg.adam, threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.weights, b.weights)
