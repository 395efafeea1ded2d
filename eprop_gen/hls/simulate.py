"""The CPU simulator of the on-chip network: the FPGA's algorithm and arithmetic, in Python.

With the `Float64` backend it is the algorithm alone (it must agree with the CPU engine to round-off);
with `Fixed` it is what the firmware computes, bit for bit (the C simulation is tested against it).
Loops are vectorised over neurons and over a source's outgoing synapses; the order of operations
within a statement is the firmware's.

Step n (the CPU engine's phases, docs/design/learning.md): (B) the spikes of step n-1 (inputs and
recurrent neurons, ascending source id) are delivered: each adds its synapses' weights to their
targets' input sums; (C) every neuron takes its step with that sum (plan.NeuronStep).
simulate_forward runs the network without learning; simulate_learning adds event-driven e-prop
(phase A and the replays of phase B; its docstring has the statements), which is what the
firmware does. The fixed-point mode is slow (Python objects per statement: ~10 ms per step for a
network of a dozen neurons); it is for checking precisions on small networks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EpropGenError
from .evaluate import Float64, assign, evaluate
from .plan import Constant, NeuronStep


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


@dataclass(frozen=True)
class LearningRule:
    """The on-chip learning rule (first version: NEST's eprop_iaf rule with c_reg = 0, infinite
    cutoff, no flush events; gradient descent once per spike, batch 1)."""
    alpha_rec: float           # zbar's decay for synapses onto recurrent neurons (their propagator)
    alpha_out: float           # ... onto readouts
    kappa: float               # ebar = kappa ebar + e
    eta: float
    w_min: float
    w_max: float

    def w_min_value(self, backend):
        return backend.from_float(np.array([self.w_min]), "weight")

    def w_max_value(self, backend):
        return backend.from_float(np.array([self.w_max]), "weight")


def simulate_learning(rec_step: NeuronStep, out_step: NeuronStep, n_in: int, n_rec: int, n_out: int,
                      projections: dict[str, Projection], B: np.ndarray, rule: LearningRule,
                      input_spikes: np.ndarray, target: np.ndarray, backend=None, history: int | None = None,
                      learn: np.ndarray | None = None):
    """The network with event-driven e-prop on chip (the CPU engine's event-driven schedule with
    per-spike gradient descent, which is NEST's), in float64 or fixed point. Step n:
      (A) L[n-2] += B[:, k] E_k[n-1], readout after readout (signal type);
      (B) each source that spiked in step n-1 (stamp n), ascending: its synapses replay the rows
          [t_last - 1, n - 2] of their targets' history — zbar = alpha zbar + z (trace; the spike
          with stamp t_last enters one row later), for recurrent targets ebar = kappa ebar + psi
          zbar (trace) and G = G + L ebar, for readouts G = G + E zbar (gradient) — then take one
          step w = clamp(w - eta G, w_min, w_max) (weight) and transmit w; the source's first spike
          only starts its window;
      (C) neurons update; psi[n] and E[n] = y[n] - y*[n] (signal) are archived.
    learn[n] False (the firmware's `learn` off in that step's call): a spiking source's window closes
    without a gradient (zbar, ebar, its last spike forgotten) and its weights stay.
    Returns (recurrent spikes (steps, n_rec), readout y (steps, n_out), {projection: weights as
    float, (n_source, degree)})."""
    b = backend or Float64()
    steps = input_spikes.shape[0]

    def const(value, quantity, shape=(1,)):
        return b.constant(Constant("c", quantity, float(value)), shape)

    rec, out = Population(rec_step, n_rec, b), Population(out_step, n_out, b)
    alpha = {"rec": const(rule.alpha_rec, "coefficient"), "out": const(rule.alpha_out, "coefficient")}
    kappa, eta = const(rule.kappa, "coefficient"), const(rule.eta, "coefficient")
    kinds = {"input": "rec", "recurrent": "rec", "readout": "out"}
    feedback = [b.from_float(B[:, k], "coefficient") for k in range(n_out)]
    weights = {k: [b.from_float(p.weight[s, :p.count[s]], "weight") for s in range(p.weight.shape[0])]
               for k, p in projections.items()}
    windows = {k: [_Window(b, int(p.count[s])) for s in range(p.weight.shape[0])] for k, p in projections.items()}
    psi, E = [], []
    L = [b.from_float(np.zeros(n_rec), "signal") for _ in range(steps)]
    z_rec, y = np.zeros((steps, n_rec), bool), np.zeros((steps, n_out))
    previous_in, previous_rec = np.zeros(n_in, bool), np.zeros(n_rec, bool)
    for n in range(steps):
        if n >= 2:
            for k in range(n_out):
                L[n - 2] = b.quantize(L[n - 2] + feedback[k] * E[n - 1][k:k + 1], "signal")
        x_rec, x_out = b.from_float(np.zeros(n_rec), "membrane"), b.from_float(np.zeros(n_out), "membrane")
        for name, spiking in (("input", previous_in), ("recurrent", previous_rec), ("readout", previous_rec)):
            p, kind = projections[name], kinds[name]
            for s in np.nonzero(spiking)[0]:
                k = p.count[s]
                targets, window = p.target[s, :k], windows[name][s]
                if learn is not None and not learn[n]:
                    windows[name][s] = window = _Window(b, int(k))
                elif window.t_last != 0:
                    if history is not None and n - window.t_last > history - 2:
                        raise EpropGenError(f"a window of {n - window.t_last} steps (source {s} of the {name} "
                                            f"projection, step {n}) does not fit the history of {history} rows "
                                            "on chip: increase [hls] history")
                    G = b.from_float(np.zeros(k), "gradient")
                    zin_next = 1                      # the spike with stamp t_last enters one row later
                    for m in range(window.t_last - 1, n - 1):
                        window.zbar = b.quantize(alpha[kind] * window.zbar + b.integer(window.zbuf, (1,)), "trace")
                        window.zbuf, zin_next = zin_next, 0
                        if kind == "rec":
                            window.ebar = b.quantize(kappa * window.ebar + psi[m][targets] * window.zbar, "trace")
                            G = b.quantize(G + L[m][targets] * window.ebar, "gradient")
                        else:
                            G = b.quantize(G + E[m][targets] * window.zbar, "gradient")
                    w = b.quantize(weights[name][s] - eta * G, "weight")
                    w = _where(w < rule.w_min_value(b), rule.w_min_value(b), w)
                    w = _where(w > rule.w_max_value(b), rule.w_max_value(b), w)
                    weights[name][s] = w
                window.t_last = n if learn is None or learn[n] else 0
                part = b.scatter(targets, weights[name][s], k, n_rec if kind == "rec" else n_out)
                if kind == "rec":
                    x_rec = b.quantize(x_rec + part, "membrane")
                else:
                    x_out = b.quantize(x_out + part, "membrane")
        z_rec[n] = rec.update(x_rec)
        out.update(x_out)
        psi.append(rec.psi)
        E.append(b.quantize(out.y - b.from_float(target[n], "membrane"), "signal"))
        y[n] = b.to_float(out.y)
        previous_in, previous_rec = input_spikes[n], z_rec[n]
    dense = {k: np.stack([np.concatenate([b.to_float(row), np.zeros(p.weight.shape[1] - p.count[s])])
                          for s, row in enumerate(weights[k])]) for k, p in projections.items()}
    return z_rec, y, dense


class _Window:
    """The replay bookkeeping of one source's synapses onto one population (NEST keeps it per
    synapse; every synapse of a source sees the same events, so once per source suffices)."""

    def __init__(self, backend, degree: int):
        self.t_last = 0
        self.zbuf = 0
        self.zbar = backend.from_float(np.zeros(1), "trace")
        self.ebar = backend.from_float(np.zeros(degree), "trace")
