"""Sine-wave pattern generation (Bellec et al. 2020; NEST 3.10's e-prop tutorial): a recurrent network
driven by a frozen Poisson pattern learns to draw a sum of four sines with its readout.

The set-up follows NEST's example (eprop_iaf neurons, their parameters and weight scaling, per-spike
gradient descent); it is a demonstration and training task, not a NEST comparison (the tests compare
against NEST with the example's exact random draws and timing)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import models
from ..compiler import compile_model
from ..engine import Explicit, Network, gradient_descent

KAPPA = 0.97
SCALE = 1.0 - KAPPA          # NEST's example scales weights by 1 - kappa for the event-driven models


@dataclass(frozen=True)
class SineWaveTask:
    pattern: np.ndarray      # (steps per sequence, n_in) bool: the frozen input spikes
    target: np.ndarray       # (steps per sequence,): the readout's target
    W_in: np.ndarray         # (n_rec, n_in)
    W_rec: np.ndarray        # (n_rec, n_rec), zero diagonal
    W_out: np.ndarray        # (1, n_rec)
    B: np.ndarray            # (n_rec, 1) fixed random feedback weights


def make_sine_wave_task(n_in: int = 50, n_rec: int = 300, steps: int = 500, seed: int = 1) -> SineWaveTask:
    rng = np.random.default_rng(seed)
    W_in = rng.normal(size=(n_rec, n_in)) / np.sqrt(n_in) * SCALE
    W_rec = rng.normal(size=(n_rec, n_rec)) / np.sqrt(n_rec) * SCALE
    np.fill_diagonal(W_rec, 0.0)
    W_out = rng.normal(size=(1, n_rec)) / np.sqrt(n_rec) * SCALE
    B = rng.normal(size=(n_rec, 1)) / np.sqrt(n_rec) * SCALE
    pattern = rng.random((steps, n_in)) < 0.05
    t = np.arange(steps)
    target = sum(rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
                 for period in (steps, steps / 2, steps / 3, steps / 5))
    target = (target - target[0]) / max(np.abs(target).max(), 1e-6)
    return SineWaveTask(pattern, target, W_in, W_rec, W_out, B)


def _all_to_all(W: np.ndarray) -> Explicit:
    targets, sources = np.nonzero(W != 0.0)
    return Explicit(sources, targets, weights=W[targets, sources])


def train_sine_wave(task: SineWaveTask, iterations: int = 30, eta: float = 2e-5, threads: int = 2,
                    seed: int = 1, on_iteration: Callable[[int, float], None] | None = None) -> list[float]:
    """Train with event-driven e-prop (per-spike gradient descent); returns the loss per iteration,
    0.5 * sum over the sequence of (y - y*)^2."""
    steps, n_in = task.pattern.shape
    n_rec = task.W_rec.shape[0]
    rec_model = compile_model(models.path("eprop_iaf"))
    out_model = compile_model(models.path("eprop_readout"))
    net = Network(dt=1.0, threads=threads, seed=seed)
    step, sender = np.nonzero(np.tile(task.pattern, (iterations, 1)))
    inputs = net.add_spike_source(n_in, times=(step + 1).astype(float), senders=sender, name="input")
    rec = net.add_population(rec_model, n_rec, name="recurrent", params=dict(
        C_m=1.0, E_L=0.0, V_th=0.03, tau_m=30.0, t_ref=0.0, c_reg=300.0 / steps, f_target=10.0,
        kappa=KAPPA, kappa_reg=KAPPA, surrogate_gradient_height=10.0, surrogate_gradient_width=1 / 33.3,
        eprop_isi_trace_cutoff=100.0, flush_event_send_interval=float(steps)))
    out = net.add_population(out_model, 1, name="readout",
                             params=dict(C_m=1.0, E_L=0.0, tau_m=30.0, eprop_isi_trace_cutoff=100.0))
    optimizer = gradient_descent(eta=eta, optimize_each_step=False)
    net.connect(inputs, rec, "spikes", _all_to_all(task.W_in), plasticity=optimizer)
    net.connect(rec, rec, "spikes", _all_to_all(task.W_rec), plasticity=optimizer)
    net.connect(rec, out, "spikes", _all_to_all(task.W_out), plasticity=optimizer)
    net.connect_feedback(out, rec, task.B)
    net.add_target(out, np.tile(task.target, iterations))
    net.record(out, ("y",))
    losses = []
    for k in range(iterations):
        net.simulate(float(steps))
        y = net.recording(out)["y"][k * steps:(k + 1) * steps, 0]
        losses.append(float(0.5 * np.sum((y - task.target) ** 2)))
        if on_iteration is not None:
            on_iteration(k, losses[-1])
    return losses
