"""`eprop-gen demo`: train a recurrent spiking network with e-prop, offline, on a built-in task."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np


def poisson_trains(n: int, rate_hz: float, t_ms: float, dt: float, rng: np.random.Generator):
    """Spike times on the dt grid (at most one spike per source and step) and sender ids."""
    steps = int(round(t_ms / dt))
    spikes = rng.random((steps, n)) < rate_hz * dt * 1e-3
    step, sender = np.nonzero(spikes)
    return (step + 1) * dt, sender


def run_demo(iterations: int = 30, threads: int = 2, seed: int = 1,
             echo: Callable[[str], None] = print) -> dict:
    """Train a recurrent spiking network with event-driven e-prop on sine-wave pattern generation."""
    from .tasks import make_sine_wave_task, train_sine_wave
    start = time.perf_counter()
    task = make_sine_wave_task(seed=seed)
    n_rec, n_in = task.W_in.shape
    echo(f"sine-wave pattern generation: {n_in} Poisson inputs -> {n_rec} recurrent eprop_iaf -> 1 readout, "
         f"{task.pattern.shape[0]} ms per sequence, event-driven e-prop, {threads} thread(s)")

    def report(k: int, loss: float) -> None:
        if k == 0 or (k + 1) % 5 == 0:
            echo(f"  iteration {k + 1:3d}: loss {loss:9.3f}")

    losses = train_sine_wave(task, iterations=iterations, threads=threads, seed=seed, on_iteration=report)
    wall = time.perf_counter() - start
    echo(f"loss fell from {losses[0]:.2f} to {losses[-1]:.2f} ({losses[0] / losses[-1]:.1f}x) in {wall:.1f} s "
         "(including compilation on the first run)")
    echo("next: eprop-gen check eprop_iaf_adapt | docs/python-api.md (learning) | docs/language.md")
    return {"losses": losses, "wall_s": wall}
