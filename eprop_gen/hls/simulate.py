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
from .evaluate import Float64, compile_assign, evaluate
from .plan import Constant, NeuronStep
from .plan_replay import ReplayStep, pow_table


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
        constants = {c.name: c for c in step.constants}
        self.constants = constants
        run = {}
        for a in (*step.propagation, *step.adaptation, *step.reset, *step.neuron_traces,
                  *(x for x in (step.psi, step.output, step.regularisation) if x is not None)):
            run[a] = compile_assign(a, constants, backend)
        self._run = run
        self.state = {name: backend.from_float(np.full(n, value), quantity)
                      for (name, quantity), value in zip(step.states, step.initial)}
        self.refractory = np.zeros(n, np.int64)
        self.spiked = np.zeros(n, bool)
        self.psi = backend.from_float(np.zeros(n), "psi")
        self.traces = {a.target: backend.from_float(np.zeros(n), a.quantity) for a in step.neuron_traces}
        self.R = backend.from_float(np.zeros(n), "signal")
        self.last_event = np.zeros(n, np.int64)
        self.flushed = np.zeros(n, bool)
        self.y = None

    def update(self, x_in, n: int = 0) -> np.ndarray:
        """Step n with the summed spike input x_in (membrane type); returns the spikes (flush events
        in self.flushed)."""
        s, b, shape, run = self.step, self.backend, (self.n,), self._run
        refractory_now = self.refractory > 0
        self.refractory = np.where(refractory_now, self.refractory - 1, self.refractory)
        old = dict(self.state)
        new = {a.target: run[a](old, shape) for a in s.propagation}
        for name in s.held:
            new[name] = _where(refractory_now, old[name], new[name])
        for a in s.adaptation:
            new[a.target] = _where(self.spiked, run[a](new, shape), new[a.target])
        added = b.quantize(new[s.input_target] + x_in, dict(s.states)[s.input_target])
        new[s.input_target] = _where(refractory_now, new[s.input_target], added) if s.input_target in s.held \
            else added
        can_spike = self.refractory == 0
        if s.psi is not None:
            self.psi = _where(can_spike, run[s.psi](new, shape), b.from_float(np.zeros(self.n), "psi"))
        spiked = np.zeros(self.n, bool)
        if s.threshold is not None:
            spiked = can_spike & np.asarray(evaluate(s.threshold, new, self.constants, b, shape), bool)
            for a in s.reset:
                new[a.target] = _where(spiked, run[a](new, shape), new[a.target])
            self.refractory = np.where(spiked, s.refractory_steps, self.refractory)
        self.state = new
        self.spiked = spiked
        if s.output is not None:
            self.y = run[s.output](new, shape)
        # learning: per-neuron traces from this step's spike, then R (the CPU engine's order)
        if s.neuron_traces:
            env = {**self.traces, "z": b.from_bits(spiked)}
            self.traces = {a.target: run[a](env, shape) for a in s.neuron_traces}
        if s.regularisation is not None:
            self.R = run[s.regularisation](self.traces, shape)
        if s.flush_steps:
            # NEST: a neuron that spiked (in a step > 0) and then stayed silent for the interval
            self.flushed = ~spiked & (self.last_event > 0) & (n - self.last_event >= s.flush_steps)
            self.last_event = np.where(spiked | self.flushed, n, self.last_event)
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
        z_rec[n] = rec.update(x_rec, n)
        out.update(x_out, n)
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
    """The on-chip learning rule: the replays of synapses onto recurrent neurons and onto readouts
    (plan_replay.py, derived from the models' rules) and per-spike gradient descent."""
    rec: ReplayStep
    out: ReplayStep
    eta: float
    w_min: float
    w_max: float


SPIKE, FLUSH = 0, 1


class _Replay:
    """A ReplayStep made runnable for one backend: its statements compiled, its decay tables typed."""

    def __init__(self, step: ReplayStep, backend):
        self.step, self.b = step, backend
        constants = {c.name: c for c in step.constants}
        self.presynaptic = [(a.target, compile_assign(a, constants, backend)) for a in step.presynaptic]
        self.row = [(a.target, compile_assign(a, constants, backend)) for a in step.row]
        self.tables = [[backend.constant(Constant("p", "coefficient", v), (1,)) for v in pow_table(base)]
                       for base in step.pow_bases]
        self.one = backend.constant(Constant("one", "coefficient", 1.0), (1,))

    def power(self, table: int, n: int):
        """base^n as the firmware's eg_pow: the factors of n's set bits, each product quantized to
        the coefficient type (float64: rounded to double)."""
        factor = self.one
        for bit, entry in enumerate(self.tables[table]):
            if (n >> bit) & 1:
                factor = self.b.quantize(factor * entry, "coefficient")
        return factor


class _Window:
    """The replay bookkeeping of one source's synapses onto one population (NEST keeps it per
    synapse; every synapse of a source sees the same events, so once per source suffices), and
    the per-synapse state its replays carry."""

    def __init__(self, replay: _Replay, degree: int):
        b = replay.b
        self.t_last, self.last_was_flush, self.zbuf, self.c_rem, self.n_decay = 0, False, 0, 0, 0
        self.pre = {name: b.from_float(np.zeros(1), "trace") for name in replay.step.presynaptic_names}
        self.syn = {name: b.from_float(np.zeros(degree), "trace") for name in replay.step.synaptic}
        self.G = b.from_float(np.zeros(degree), "gradient")


def _replay_event(window: _Window, replay: _Replay, kind: int, n: int, targets, history: dict, ring: int | None):
    """NEST's SEND and COMPUTE_GRADIENT (spec 4.2-4.3) for all synapses of the window at stamp n: a
    flush (or settle) replays and keeps the window open, a spike also decays the skipped steps.
    history: name -> list of per-step rows (psi, L or the readouts' E as "L", R). Returns True when
    the weights take a step."""
    b, step = replay.b, replay.step
    if window.t_last == 0:                                   # the first event only starts the window
        window.t_last, window.last_was_flush = n, kind != SPIKE
        return False
    D = n - window.t_last
    if not window.last_was_flush:
        window.c_rem, zcur = step.row_limit, 1
        window.G = b.from_float(np.zeros(len(targets)), "gradient")
    else:
        zcur = 0
    K = min(window.c_rem, D)
    first = window.t_last - 1
    if K > 0 and ring is not None and n - window.t_last > ring - 2:
        raise EpropGenError(f"a window of {D} steps (stamp {n}) does not fit the history of {ring} rows on chip: "
                            "increase [hls] history (or set a cutoff)")
    shape, k = (1,), len(targets)
    rows = []
    for _ in range(K):                                       # the presynaptic components, once per source
        env = {**window.pre, "zin": b.integer(window.zbuf, shape)}
        window.zbuf, zcur = zcur, 0
        window.pre = {name: run(env, shape) for name, run in replay.presynaptic}
        rows.append(window.pre)
    env = {**window.syn, "G": window.G}
    for r, pre in enumerate(rows):                           # every synapse, row after row
        m = first + r
        env.update(pre)
        for name in step.reads:
            env[name] = history[name][m][targets]
        for name, run in replay.row:
            env[name] = run(env, (k,))
    window.syn = {name: env[name] for name in step.synaptic}
    window.G = env["G"]
    window.c_rem -= K
    window.n_decay += D - K
    if kind == SPIKE and window.n_decay > 0:
        factors = [replay.power(table, window.n_decay) for table in range(len(step.pow_bases))]
        for name, table in step.decay:
            store = window.pre if name in window.pre else window.syn
            store[name] = b.quantize(store[name] * factors[table], "trace")
        window.n_decay = 0
    window.t_last, window.last_was_flush = n, kind != SPIKE
    return kind == SPIKE


def simulate_learning(rec_step: NeuronStep, out_step: NeuronStep, n_in: int, n_rec: int, n_out: int,
                      projections: dict[str, Projection], B: np.ndarray, rule: LearningRule,
                      input_spikes: np.ndarray, target: np.ndarray, backend=None, history: int | None = None,
                      learn: np.ndarray | None = None, events: dict | None = None):
    """The network with event-driven e-prop on chip (the CPU engine's event-driven schedule with
    per-spike gradient descent, which is NEST's), in float64 or fixed point. Step n:
      (A) L[n-2] += B[:, k] E_k[n-1], readout after readout (signal type);
      (B) for each projection, each source (ascending) with an event of stamp n — a spike or flush
          event of step n-1, or a settle (its window's cutoff has passed since its last spike, so
          every row it will replay is final: replayed now like a flush, the same numbers, so that
          the history ring can be overwritten) — replays its window (_replay_event); a spike then
          takes one step w = clamp(w - eta G, w_min, w_max) (weight) per synapse and transmits w;
      (C) neurons update; psi[n], R[n] and E[n] = y[n] - y*[n] (signal) are archived.
    learn[n] False (the firmware's `learn` off in that step's call): a source's spike, flush or
    settle closes its window without a gradient (everything forgotten) and its weights stay.
    events: a dict to count the replayed events in ("spike", "flush", "settle").
    Returns (recurrent spikes (steps, n_rec), readout y (steps, n_out), {projection: weights as
    float, (n_source, degree)})."""
    b = backend or Float64()
    steps = input_spikes.shape[0]
    rec, out = Population(rec_step, n_rec, b), Population(out_step, n_out, b)
    replays = {"rec": _Replay(rule.rec, b), "out": _Replay(rule.out, b)}
    eta = b.constant(Constant("eta", "coefficient", float(rule.eta)), (1,))
    w_min, w_max = (b.from_float(np.array([v]), "weight") for v in (rule.w_min, rule.w_max))
    kinds = {"input": "rec", "recurrent": "rec", "readout": "out"}
    feedback = [b.from_float(B[:, k], "coefficient") for k in range(n_out)]
    weights = {k: [b.from_float(p.weight[s, :p.count[s]], "weight") for s in range(p.weight.shape[0])]
               for k, p in projections.items()}
    windows = {k: [_Window(replays[kinds[k]], int(p.count[s])) for s in range(p.weight.shape[0])]
               for k, p in projections.items()}
    zero_rec = b.from_float(np.zeros(n_rec), "signal")
    archive = {"rec": {"psi": [], "L": [], "R": []}, "out": {"L": []}}   # a readout's "L" is its error E
    z_rec, y = np.zeros((steps, n_rec), bool), np.zeros((steps, n_out))
    previous = {"input": (np.zeros(n_in, bool), np.zeros(n_in, bool)), "rec": (np.zeros(n_rec, bool), np.zeros(n_rec, bool))}
    for n in range(steps):
        on = learn is None or bool(learn[n])
        L, E = archive["rec"]["L"], archive["out"]["L"]
        if n >= 2:
            for k in range(n_out):
                L[n - 2] = b.quantize(L[n - 2] + feedback[k] * E[n - 1][k:k + 1], "signal")
        x = {"rec": b.from_float(np.zeros(n_rec), "membrane"), "out": b.from_float(np.zeros(n_out), "membrane")}
        for name, p in projections.items():
            kind = kinds[name]
            replay = replays[kind]
            spiking, flushing = previous["input" if name == "input" else "rec"]
            settle = replay.step.settle_steps
            settling = np.array([settle > 0 and w.t_last != 0 and not w.last_was_flush and n - w.t_last == settle
                                 for w in windows[name]], bool)
            for s in np.nonzero(spiking | flushing | settling)[0]:
                k, event = p.count[s], SPIKE if spiking[s] else FLUSH
                if events is not None:
                    what = "spike" if spiking[s] else "flush" if flushing[s] else "settle"
                    events[what] = events.get(what, 0) + 1
                targets = p.target[s, :k]
                if not on:
                    windows[name][s] = _Window(replay, int(k))
                elif _replay_event(windows[name][s], replay, event, n, targets, archive[kind], history):
                    w = b.quantize(weights[name][s] - eta * windows[name][s].G, "weight")
                    w = _where(w < w_min, w_min, w)
                    weights[name][s] = _where(w > w_max, w_max, w)
                if spiking[s]:
                    x[kind] = b.quantize(x[kind] + b.scatter(targets, weights[name][s], k, x[kind].shape[0]), "membrane")
        z_rec[n] = rec.update(x["rec"], n)
        out.update(x["out"], n)
        archive["rec"]["psi"].append(rec.psi)
        archive["rec"]["R"].append(rec.R)
        archive["rec"]["L"].append(zero_rec)
        E.append(b.quantize(out.y - b.from_float(target[n], "membrane"), "signal"))
        y[n] = b.to_float(out.y)
        previous = {"input": (input_spikes[n], np.zeros(n_in, bool)), "rec": (z_rec[n], rec.flushed.copy())}
    dense = {k: np.stack([np.concatenate([b.to_float(row), np.zeros(p.weight.shape[1] - p.count[s])])
                          for s, row in enumerate(weights[k])]) for k, p in projections.items()}
    return z_rec, y, dense
