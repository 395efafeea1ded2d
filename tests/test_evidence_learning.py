"""Evidence accumulation learns with event-driven e-prop in minibatches (the set-up NEST 3.10 could
not offer event-driven): a short version of the task (3 cues, 100 ms delay, 50 ms recall), 100
recurrent neurons (half adaptive), batches of 16 samples, Adam; softmax cross-entropy on the recall.

The error is the fraction of wrong answers of the batches; averaged over 10 consecutive batches
(160 samples) it must fall from chance (~50 %) below 10 % within 120 iterations."""
from __future__ import annotations

import numpy as np

from eprop_gen.tasks.evidence import EvidenceShape, train_evidence

SHAPE = EvidenceShape(n_cues=3, cue=50, spacing=25, delay=100, recall=50)


def test_evidence_accumulation_learns_with_minibatches():
    results = train_evidence(SHAPE, iterations=120, batch_size=16, eta=5e-3, seed=1, threads=1)
    errors = np.array([e for _, e in results])
    losses = np.array([l for l, _ in results])
    running = np.convolve(errors, np.ones(10) / 10, mode="valid")
    print("error per 10 iterations:", np.round(errors.reshape(-1, 10).mean(axis=1), 3))
    assert running[0] > 0.3                               # it starts at chance
    assert running.min() < 0.10                           # and gets below 10 %
    assert errors[-20:].mean() < 0.15                     # and stays there
    assert losses[-20:].mean() < 0.5 * losses[:10].mean()
