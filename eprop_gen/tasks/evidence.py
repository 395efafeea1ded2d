"""Evidence accumulation (Bellec et al. 2020; NEST 3.10's e-prop tutorial): a recurrent network of
regular and adaptive LIF neurons hears a series of cues, each from the left or the right input
group, then a delay, then a recall cue; two readouts must say which side had more cues.

Trained here with the event-driven engine in minibatches of samples (eg.event_driven(
sample_duration=...)), softmax cross-entropy on the recall period, Adam. The network follows NEST's
example (40 inputs in four groups: left, right, recall, background; half of the recurrent neurons
adapt); the cue timing is a parameter so that a test can run a short version.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import models
from ..compiler import compile_model
from ..engine import Explicit, Network, adam, event_driven

GROUP = 10                    # input neurons per group: left, right, recall, background


@dataclass(frozen=True)
class EvidenceShape:
    """Timing of one sample in steps (dt = 1 ms); NEST's example: 7 cues of 100, spacing 50,
    delay 1050, recall 150."""
    n_cues: int = 7
    cue: int = 100
    spacing: int = 50
    delay: int = 1050
    recall: int = 150
    cue_rate: float = 0.04           # spike probability per step of an active group
    background_rate: float = 0.01

    @property
    def steps(self) -> int:
        return self.n_cues * (self.cue + self.spacing) + self.delay + self.recall


@dataclass(frozen=True)
class EvidenceBatch:
    times: np.ndarray        # spike times (ms) of all samples, sample k from k * steps on
    senders: np.ndarray
    labels: np.ndarray       # (n_samples,) 0 = left, 1 = right
    target: np.ndarray       # (n_samples * steps, 2) one-hot label per step
    window: np.ndarray       # (n_samples * steps,) 1 in the recall period, else 0


def make_evidence_samples(shape: EvidenceShape, n_samples: int, rng: np.random.Generator) -> EvidenceBatch:
    """Cue sides drawn with probability 0.3 / 0.7 for a side chosen per sample (NEST's example)."""
    steps = shape.steps
    times, senders, labels = [], [], []
    for k in range(n_samples):
        p_left = rng.choice([0.3, 0.7])
        left = rng.random(shape.n_cues) < p_left
        labels.append(0 if left.sum() > shape.n_cues / 2 else 1)
        rate = np.full((steps, 4 * GROUP), 0.0)
        rate[:, 3 * GROUP:] = shape.background_rate
        for c, is_left in enumerate(left):
            start = c * (shape.cue + shape.spacing)
            group = 0 if is_left else 1
            rate[start:start + shape.cue, group * GROUP:(group + 1) * GROUP] = shape.cue_rate
        rate[steps - shape.recall:, 2 * GROUP:3 * GROUP] = shape.cue_rate
        rate[0] = 0.0                                 # no spike can land in a sample's first step
        t, i = np.nonzero(rng.random(rate.shape) < rate)
        times.append(k * steps + t + 1.0)            # sample step t arrives in step t + 1 ... t
        senders.append(i)
    labels = np.asarray(labels)
    target = np.repeat(np.eye(2)[labels], steps, axis=0)
    window = np.tile(np.r_[np.zeros(steps - shape.recall), np.ones(shape.recall)], n_samples)
    return EvidenceBatch(np.concatenate(times), np.concatenate(senders), labels, target, window)


def train_evidence(shape: EvidenceShape = EvidenceShape(), iterations: int = 50, batch_size: int = 32,
                   n_rec: int = 100, eta: float = 5e-3, c_reg: float = 1.0, seed: int = 1, threads: int = 1,
                   on_iteration: Callable[[int, float, float], None] | None = None) -> list[tuple[float, float]]:
    """Train; returns (loss, error) per iteration: the mean cross-entropy over the recall steps of
    the batch and the fraction of samples whose mean softmax output over the recall picks the
    wrong side. Every iteration sees a new batch."""
    rng = np.random.default_rng(seed)
    steps = shape.steps
    n_in = 4 * GROUP
    n_adaptive = n_rec // 2
    total = iterations * batch_size
    data = make_evidence_samples(shape, total, rng)
    model = compile_model(models.path("eprop_iaf_adapt"))
    readout_model = compile_model(models.path("eprop_readout"))
    net = Network(dt=1.0, threads=threads, seed=seed,
                  learning=event_driven(sample_duration=float(steps)))
    inputs = net.add_spike_source(n_in, times=data.times, senders=data.senders, name="input")
    beta = np.r_[np.zeros(n_rec - n_adaptive), np.full(n_adaptive, 1.7 * (1 - np.exp(-1 / 2000)) /
                                                        (1 - np.exp(-1 / 20)))]
    rec = net.add_population(model, n_rec, name="recurrent", params=dict(
        C_m=1.0, E_L=0.0, V_th=0.6, tau_m=20.0, t_ref=5.0, adapt_beta=beta, adapt_tau=2000.0,
        c_reg=c_reg, f_target=10.0, kappa=np.exp(-1 / 20), kappa_reg=np.exp(-1 / 20),
        surrogate_gradient_height=0.5, surrogate_gradient_width=0.6))
    out = net.add_population(readout_model, 2, name="readout", params=dict(C_m=1.0, E_L=0.0, tau_m=20.0))
    optimizer = adam(eta=eta, batch_size=batch_size, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    W_in = rng.normal(size=(n_rec, n_in)) / np.sqrt(n_in)
    W_rec = rng.normal(size=(n_rec, n_rec)) / np.sqrt(n_rec)
    np.fill_diagonal(W_rec, 0.0)
    limit = np.sqrt(3.0 / max(1.0, (n_rec + 2) / 2.0))
    W_out = rng.uniform(-limit, limit, size=(2, n_rec))
    for source, target, W in ((inputs, rec, W_in), (rec, rec, W_rec), (rec, out, W_out)):
        rows, cols = np.nonzero(W != 0.0)
        net.connect(source, target, "spikes", Explicit(cols, rows, weights=W[rows, cols]), plasticity=optimizer)
    net.connect_feedback(out, rec, rng.normal(size=(n_rec, 2)))
    net.add_target(out, data.target, loss="cross_entropy")
    net.add_learning_window(out, data.window)
    net.record(out, ("y",))
    results = []
    for k in range(iterations):
        net.simulate(float(batch_size * steps) + (1.0 if k == iterations - 1 else 0.0))
        y = net.recording(out)["y"][k * batch_size * steps:(k + 1) * batch_size * steps]
        results.append(_loss_and_error(y[: batch_size * steps], data, k, batch_size, shape))
        if on_iteration is not None:
            on_iteration(k, *results[-1])
    return results


def _loss_and_error(logits: np.ndarray, data: EvidenceBatch, k: int, batch_size: int,
                    shape: EvidenceShape) -> tuple[float, float]:
    steps = shape.steps
    logits = logits.reshape(batch_size, steps, 2)[:, steps - shape.recall:]
    z = logits - logits.max(axis=-1, keepdims=True)
    softmax = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    labels = data.labels[k * batch_size:(k + 1) * batch_size]
    loss = -np.mean(np.sum(np.log(softmax[np.arange(batch_size), :, labels] + 1e-12), axis=1))
    error = float(np.mean(softmax.mean(axis=1).argmax(axis=1) != labels))
    return float(loss), error
