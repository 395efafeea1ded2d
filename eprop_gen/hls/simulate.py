"""The CPU simulator of the on-chip network: the FPGA's algorithm and arithmetic, in Python.

With the `Float64` backend it is the algorithm alone (it must agree with the CPU engine to round-off);
with `Fixed` it is what the firmware computes, bit for bit (the C simulation is tested against it).
Loops are vectorised over neurons and over a source's outgoing synapses; the order of operations
within a statement is the firmware's.

Step n (the CPU engine's phases, docs/design/learning.md): (B) the spikes of step n-1 (inputs and
recurrent neurons, ascending source id) are delivered: each adds its synapses' weights to their
targets' input sums; (C) every neuron takes its step with that sum (plan.NeuronStep)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .evaluate import assign, evaluate
from .plan import NeuronStep


@dataclass(frozen=True)
class Projection:
    """Synapses by source, padded to the largest out-degree: target[s, k], weight[s, k] for
    k < count[s]."""
    target: np.ndarray        # (n_source, degree) int
    weight: np.ndarray        # (n_source, degree) float (the value before quantization to weight)
    count: np.ndarray         # (n_source,) int

    @staticmethod
    def from_lists(n_source: int, sources, targets, weights) -> "Projection":
        sources, targets, weights = (np.asarray(a) for a in (sources, targets, weights))
        order = np.lexsort((targets, sources))
        sources, targets, weights = sources[order], targets[order], weights[order]
        count = np.bincount(sources, minlength=n_source)
        degree = max(1, int(count.max()) if count.size else 1)
        target = np.zeros((n_source, degree), np.int64)
        weight = np.zeros((n_source, degree))
        start = np.concatenate([[0], np.cumsum(count)])
        for s in range(n_source):
            k = count[s]
            target[s, :k] = targets[start[s]:start[s + 1]]
            weight[s, :k] = weights[start[s]:start[s + 1]]
        return Projection(target, weight, count)


class Population:
    """The state of n neurons of one NeuronStep and their step."""

    def __init__(self, step: NeuronStep, n: int, backend):
        self.step, self.n, self.backend = step, n, backend
        self.constants = {c.name: c for c in step.constants}
        self.state = {name: backend.from_float(np.full(n, value), quantity)
                      for (name, quantity), value in zip(step.states, step.initial)}
        self.refractory = np.zeros(n, np.int64)
        self.spiked = np.zeros(n, bool)
        self.psi = backend.from_float(np.zeros(n), "psi")
        self.y = None

    def update(self, x_in) -> np.ndarray:
        """One step with the summed spike input x_in (membrane type); returns the spikes."""
        s, b, shape = self.step, self.backend, (self.n,)
        refractory_now = self.refractory > 0
        self.refractory = np.where(refractory_now, self.refractory - 1, self.refractory)
        old = dict(self.state)
        new = {a.target: assign(a, old, self.constants, b, shape) for a in s.propagation}
        for name in s.held:
            new[name] = _where(refractory_now, old[name], new[name])
        for a in s.adaptation:
            jumped = assign(a, new, self.constants, b, shape)
            new[a.target] = _where(self.spiked, jumped, new[a.target])
        added = b.quantize(new[s.input_target] + x_in, dict(s.states)[s.input_target])
        new[s.input_target] = _where(refractory_now, new[s.input_target], added) if s.input_target in s.held \
            else added
        can_spike = self.refractory == 0
        if s.psi is not None:
            psi = assign(s.psi, new, self.constants, b, shape)
            self.psi = _where(can_spike, psi, b.from_float(np.zeros(self.n), "psi"))
        spiked = np.zeros(self.n, bool)
        if s.threshold is not None:
            spiked = can_spike & np.asarray(evaluate(s.threshold, new, self.constants, b, shape), bool)
            for a in s.reset:
                new[a.target] = _where(spiked, assign(a, new, self.constants, b, shape), new[a.target])
            self.refractory = np.where(spiked, s.refractory_steps, self.refractory)
        self.state = new
        self.spiked = spiked
        if s.output is not None:
            self.y = assign(s.output, new, self.constants, b, shape)
        return spiked


def _where(condition, a, b):
    """Elementwise choice that works for float arrays and fixed-point values alike."""
    if hasattr(a, "where"):
        return a.where(condition, b)
    return np.where(condition, a, b)


def simulate_forward(rec_step: NeuronStep, out_step: NeuronStep, n_in: int, n_rec: int, n_out: int,
                     projections: dict[str, Projection], input_spikes: np.ndarray, backend):
    """The network without learning for input_spikes (steps, n_in) bool: an input spike in row m
    is emitted in step m and integrated in step m + 1. Returns (recurrent spikes (steps, n_rec) bool,
    readout y (steps, n_out) float)."""
    steps = input_spikes.shape[0]
    rec = Population(rec_step, n_rec, backend)
    out = Population(out_step, n_out, backend)
    weights = {k: [backend.from_float(p.weight[s], "weight") for s in range(p.weight.shape[0])]
               for k, p in projections.items()}
    z_rec = np.zeros((steps, n_rec), bool)
    y = np.zeros((steps, n_out))
    previous_in = np.zeros(n_in, bool)
    previous_rec = np.zeros(n_rec, bool)
    for n in range(steps):
        x_rec = _sum_inputs([(projections["input"], np.nonzero(previous_in)[0], weights["input"]),
                             (projections["recurrent"], np.nonzero(previous_rec)[0], weights["recurrent"])],
                            n_rec, backend)
        x_out = _sum_inputs([(projections["readout"], np.nonzero(previous_rec)[0], weights["readout"])],
                            n_out, backend)
        z_rec[n] = rec.update(x_rec)
        out.update(x_out)
        y[n] = backend.to_float(out.y)
        previous_in, previous_rec = input_spikes[n], z_rec[n]
    return z_rec, y


def _sum_inputs(parts, n_target, backend):
    """A step's input sums: the firmware adds the weights of each spiking source's synapses into a
    membrane-typed sum per target, source after source in ascending order (one quantization per
    source: a source reaches a target at most once)."""
    total = backend.from_float(np.zeros(n_target), "membrane")
    for projection, sources, weights in parts:
        for s in sources:
            k = projection.count[s]
            total = backend.quantize(total + backend.scatter(projection.target[s, :k], weights[s], k, n_target),
                                     "membrane")
    return total
