"""Precise spike timing (Traub, Butz, Baayen and Otte, ICANN 2020): one neuron driven by a frozen
Poisson pattern learns to fire at given target times from an e-prop learning signal.

The learning signal is the van Rossum error: a leaky readout (time constant tau_out, weight 1) of the
neuron's spikes is compared with the same filter of the target spike train, and reaches the neuron
through feedback B = 1. With the neuron's eligibility filter kappa = exp(-dt / tau_out), e-prop's
gradient for these feed-forward weights is the exact surrogate gradient of
0.5 * sum_n (y[n] - y*[n])^2 (tests/test_gradient_check.py checks that against BPTT). Every iteration
is one trial (a sample of the event-driven engine), followed by one gradient-descent step (Adam,
which scales every weight's step alike, learned the Izhikevich neuron much less reliably here).

What differs between the models is only how their eligibility passes a postsynaptic spike: plain LIF
e-prop (eprop_iaf, Bellec et al. 2020) carries the presynaptic trace through it; the STDP-aware LIF
(eprop_iaf_stdp) and the Izhikevich neuron (eprop_izhikevich) forget it at the reset
(`reset_gradient: kept`), so a weight is credited only for the spikes it helped to cause."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import models
from ..compiler import compile_model
from ..engine import Explicit, Network, event_driven, gradient_descent


@dataclass(frozen=True)
class TimingModel:
    """A neuron model and the set-up it learns with (its own voltage scale sets the weights)."""
    label: str
    model: str                       # a shipped model (eprop_gen/models)
    params: dict = field(default_factory=dict)
    weight_mean: float = 0.0         # initial input weights ~ N(mean, std)
    weight_std: float = 0.0
    eta: float = 1e-4                # gradient descent's step size
    w_min: float = -100.0            # lower weight bound (0: excitatory inputs only)


LIF_PARAMS = dict(C_m=1.0, E_L=0.0, V_th=1.0, tau_m=10.0, t_ref=1.0,
                  surrogate_gradient_height=0.3, surrogate_gradient_width=1.0)
MODELS = {
    "stdp_lif": TimingModel("STDP-aware LIF (eprop_iaf_stdp)", "eprop_iaf_stdp", dict(LIF_PARAMS, V_reset=0.0),
                            0.08, 0.08, 3e-4),
    "izhikevich": TimingModel("Izhikevich (eprop_izhikevich)", "eprop_izhikevich", {}, 5.0, 2.5, 3e-3, w_min=0.0),
    "lif": TimingModel("plain LIF (eprop_iaf)", "eprop_iaf", LIF_PARAMS, 0.08, 0.08, 3e-4),
}


@dataclass(frozen=True)
class PreciseTimingTask:
    dt: float                        # ms
    duration: float                  # ms per trial
    pattern: np.ndarray              # (steps, n_in) bool: the frozen input spikes (step k at (k + 1) dt)
    target_times: np.ndarray         # ms, on the dt grid
    tau_out: float                   # ms: the van Rossum filter (readout time constant)
    warm_up: float = 0.0             # ms at the trial's start that neither the loss nor the error counts

    @property
    def steps(self) -> int:
        return self.pattern.shape[0]

    def learning_window(self) -> np.ndarray:
        """lambda[n]: 0 in the warm-up, else 1."""
        return (np.arange(self.steps) * self.dt >= self.warm_up).astype(float)

    @property
    def kappa(self) -> float:
        return float(np.exp(-self.dt / self.tau_out))

    def target_trace(self) -> np.ndarray:
        """y*[n]: the readout's filter applied to the target spikes, with the network's timing (a
        spike at time t = (m + 1) dt enters the readout in step m + 1)."""
        spikes = np.zeros(self.steps)
        spikes[np.round(self.target_times / self.dt).astype(int) - 1] = 1.0
        trace = np.zeros(self.steps)
        for n in range(1, self.steps):
            trace[n] = self.kappa * trace[n - 1] + spikes[n - 1]
        return trace


def make_precise_timing_task(n_in: int = 200, duration: float = 100.0, target_times=(40.0, 80.0),
                             rate: float = 10.0, dt: float = 0.1, tau_out: float = 5.0,
                             warm_up: float = 20.0, seed: int = 3) -> PreciseTimingTask:
    """A frozen Poisson pattern of n_in inputs at `rate` Hz, and target times inside the trial."""
    steps = int(round(duration / dt))
    targets = np.asarray(target_times, float)
    if not np.all((targets > warm_up) & (targets < duration)):
        raise ValueError(f"target times must lie inside ({warm_up}, {duration}) ms, got {target_times}")
    pattern = np.random.default_rng(seed).random((steps, n_in)) < rate * 1e-3 * dt
    pattern[-1] = False              # a spike of the last step would only arrive in the next trial
    return PreciseTimingTask(dt, duration, pattern, np.round(targets / dt) * dt, tau_out, warm_up)


def spike_time_error(spikes: np.ndarray, targets: np.ndarray, duration: float) -> float:
    """Mean distance (ms) from every target to the nearest output spike and from every output spike
    to the nearest target: 0 only for exactly the target train; a missing or an extra spike counts
    with its distance; no spike at all is the trial's duration."""
    spikes, targets = np.asarray(spikes, float), np.asarray(targets, float)
    if spikes.size == 0:
        return float(duration)
    to_spike = np.abs(targets[:, None] - spikes[None, :]).min(axis=1)
    to_target = np.abs(spikes[:, None] - targets[None, :]).min(axis=1)
    return float(np.concatenate([to_spike, to_target]).mean())


@dataclass(frozen=True)
class TimingResult:
    label: str
    errors: list[float]              # spike-time error per iteration (ms)
    spikes: list[np.ndarray]         # output spike times per iteration (ms within the trial)
    weights: np.ndarray              # the input weights after training

    def first_below(self, threshold: float = 1.0) -> int | None:
        """The first iteration whose error is below `threshold` ms (None: never)."""
        return next((k for k, e in enumerate(self.errors) if e < threshold), None)


def train_precise_timing(task: PreciseTimingTask, setup: TimingModel, iterations: int = 300, seed: int = 0,
                         threads: int = 1, on_iteration: Callable[[int, float], None] | None = None) -> TimingResult:
    n_in = task.pattern.shape[1]
    neuron_model = compile_model(models.path(setup.model))
    readout_model = compile_model(models.path("eprop_readout"))
    net = Network(dt=task.dt, threads=threads, seed=seed, learning=event_driven(sample_duration=task.duration))
    step, sender = np.nonzero(np.tile(task.pattern, (iterations, 1)))
    inputs = net.add_spike_source(n_in, times=(step + 1) * task.dt, senders=sender, name="input")
    neuron = net.add_population(neuron_model, 1, params=dict(setup.params, kappa=task.kappa), name="neuron")
    readout = net.add_population(readout_model, 1, params=dict(C_m=1.0, E_L=0.0, tau_m=task.tau_out), name="readout")
    weights = np.random.default_rng(seed).normal(setup.weight_mean, setup.weight_std, n_in)
    plastic = net.connect(inputs, neuron, "spikes", Explicit(np.arange(n_in), np.zeros(n_in, int), weights=weights),
                          plasticity=gradient_descent(eta=setup.eta, batch_size=1, optimize_each_step=False,
                                                                      w_min=setup.w_min))
    net.connect(neuron, readout, "spikes", Explicit([0], [0], weights=[1.0]))
    net.connect_feedback(readout, neuron, np.ones((1, 1)))
    net.add_target(readout, np.tile(task.target_trace(), iterations))
    net.add_learning_window(readout, np.tile(task.learning_window(), iterations))
    errors, spikes = [], []
    for k in range(iterations):
        net.simulate(task.duration)
        times, _ = net.spikes(neuron)
        trial = times[(times > k * task.duration) & (times <= (k + 1) * task.duration)] - k * task.duration
        spikes.append(trial)
        errors.append(spike_time_error(trial[trial > task.warm_up], task.target_times, task.duration))
        if on_iteration is not None:
            on_iteration(k, errors[-1])
    return TimingResult(setup.label, errors, spikes, plastic.weights.copy())
