"""Poisson spike trains on the dt grid (inputs for tests and benchmarks)."""
from __future__ import annotations

import numpy as np


def poisson_trains(n: int, rate_hz: float, t_ms: float, dt: float, rng: np.random.Generator):
    """Spike times on the dt grid (at most one spike per source and step) and sender ids."""
    steps = int(round(t_ms / dt))
    spikes = rng.random((steps, n)) < rate_hz * dt * 1e-3
    step, sender = np.nonzero(spikes)
    return (step + 1) * dt, sender
