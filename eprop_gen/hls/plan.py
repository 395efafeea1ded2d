"""plan (FPGA back end): a model's step as typed statements, parameters frozen.

The firmware template prints these statements as ap_fixed C++; the CPU simulator of the on-chip
network (simulate.py) evaluates the same statements, in float64 or with fixed.py's arithmetic. One
list, two readers: the C simulation and the CPU fixed-point mode cannot drift apart.

Semantics of a statement `target = expr` (docs/design/hls.md): expr is evaluated exactly (+, -, *,
Abs, Max(0, .) keep every bit; no division) and quantized once, to the target's quantity type.
Numbers in expr are named constants with a quantity type of their own (quantized from their double
value once): factors are coefficients, terms added to or compared with a typed value take that
value's type.

One step of a neuron (plan.py's order, the CPU kernel's):
  1. refractory count: a neuron that begins the step refractory counts down and cannot spike;
  2. propagation: new = sum_c P[x, c] * old_c + P[x, 1] (simultaneous; the exact propagator at the
     fixed step), states in `held` frozen while refractory;
  3. adaptation jumps of the previous step's spike;
  4. the step's summed spike input is added to the port's target;
  5. psi (0 while refractory), threshold, reset, refractory count;
  6. learning (spiking models): per-neuron traces (a firing rate) from this step's spike, the
     regularisation signal R, a flush event after flush_event_send_interval of silence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..errors import EpropGenError
from ..ir import DT, WEIGHT
from ..solve import Solution
from ..solve.propagators import H, ONE


@dataclass(frozen=True)
class Constant:
    name: str                 # the C++ name (k0, k1, ...)
    quantity: str             # the key of its type in the precision table
    value: float              # the double it is quantized from


@dataclass(frozen=True)
class Assign:
    target: str               # a state variable of the kernel or a local
    quantity: str
    expr: sp.Expr             # over the kernel's variable symbols and constant symbols


@dataclass(frozen=True)
class NeuronStep:
    model: str
    states: tuple[tuple[str, str], ...]         # (state name, quantity), the model's order
    initial: tuple[float, ...]                  # each state's initial value (parameters frozen)
    constants: tuple[Constant, ...]
    propagation: tuple[Assign, ...]             # simultaneous (from the old values)
    held: tuple[str, ...]                       # frozen while refractory
    adaptation: tuple[Assign, ...]              # when the previous step spiked
    input_target: str                           # the state the step's spike input sum is added to
    psi: Assign | None                          # the pseudo-derivative (spiking models with a surrogate)
    threshold: sp.Expr | None                   # a relational over states and constants
    reset: tuple[Assign, ...]                   # in order
    refractory_steps: int
    output: Assign | None                       # a readout's y
    # learning (spiking models): per-neuron traces (simultaneous, after the spike; `z` = this step's
    # spike), the regularisation signal R from their new values (archived per step), and the flush
    # interval in steps (0: never; NEST's flush_event_send_interval)
    neuron_traces: tuple[Assign, ...] = ()
    regularisation: Assign | None = None
    flush_steps: int = 0


def state_symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def plan_neuron_step(solution: Solution, params: dict[str, float], dt: float, propagator) -> NeuronStep:
    """params: every parameter's value (frozen); propagator(params, h) -> the exact propagator over
    solution.linear's states and inputs (CompiledModel.propagator: the numbers the CPU kernel uses)."""
    ir = solution.ir
    if solution.numeric_states:
        raise EpropGenError(f"model '{ir.name}': the FPGA back end needs exactly solved dynamics; "
                            f"{', '.join(solution.numeric_states)} are integrated numerically")
    spike = ir.spike
    if spike is not None and spike.surrogate is not None and spike.surrogate.function != "piecewise_linear":
        raise EpropGenError(f"model '{ir.name}': on the FPGA only the piecewise_linear surrogate is "
                            f"supported ({spike.surrogate.function} needs exp or a division)")
    if len(ir.spike_ports) != 1 or sp.diff(ir.spike_ports[0].increment, WEIGHT) != 1:
        raise EpropGenError(f"model '{ir.name}': the FPGA back end takes one spike port whose jump is the weight")
    constants = Constants()
    quantity = {s.name: "membrane" for s in ir.states}     # voltages, adaptation, readout outputs
    frozen = {p.symbol: sp.Float(float(params[p.name])) for p in ir.parameters}
    frozen[DT] = sp.Float(dt)
    frozen[H] = sp.Float(dt)
    states_subs = {s.symbol: state_symbol(s.name) for s in ir.states}

    def typed(expr: sp.Expr, context: str) -> sp.Expr:
        return name_numbers(expr.xreplace(frozen).xreplace(states_subs), context, constants)

    # 2. propagation with the CPU kernel's numbers; current inputs are not on chip (0)
    lin = solution.linear
    names = [str(s) for s in lin.states]
    P = np.asarray(propagator(params, dt))
    propagation = []
    for r, x in enumerate(names):
        terms = []
        for c, y in enumerate(list(lin.states) + list(lin.inputs)):
            value = float(P[r, c])
            if value == 0.0:
                continue
            if y == ONE:
                terms.append(constants.symbol(quantity[x], value))       # an offset, in the state's type
            elif str(y) in names:
                factor = sp.Integer(1) if value == 1.0 else constants.symbol("coefficient", value)
                terms.append(factor * state_symbol(str(y)))
        propagation.append(Assign(x, quantity[x], sp.Add(*terms) if terms else sp.Integer(0)))

    # 3. adaptation: x += c after the next propagation
    adaptation = tuple(Assign(a.target, quantity[a.target], state_symbol(a.target) + constants.symbol(
        quantity[a.target], float((a.value - ir.state(a.target).symbol).xreplace(frozen))))
        for a in (spike.adaptation if spike else ()))

    psi = threshold = None
    reset: tuple[Assign, ...] = ()
    refractory = 0
    if spike is not None:
        if spike.surrogate is not None:
            psi = Assign("psi", "psi", typed(spike.surrogate.expression, "membrane"))
        threshold = typed(spike.condition, "membrane")
        reset = tuple(Assign(a.target, quantity[a.target], typed(a.value, quantity[a.target])) for a in spike.reset)
        if spike.refractory_period is not None:
            refractory = int(round(float(spike.refractory_period.xreplace(frozen)) / dt))
    output = Assign("y", "membrane", typed(ir.output, "membrane")) if ir.output is not None else None
    initial = tuple(float(s.initial.xreplace(frozen)) for s in ir.states)
    traces, regularisation, flush = _neuron_learning(ir, frozen, dt, constants)
    return NeuronStep(ir.name, tuple((s.name, quantity[s.name]) for s in ir.states), initial,
                      constants.table(), tuple(propagation), tuple(spike.held) if spike else (),
                      adaptation, ir.spike_ports[0].target, psi, threshold, reset, refractory, output,
                      traces, regularisation, flush)


def _neuron_learning(ir, frozen: dict, dt: float, constants: "Constants"):
    """(per-neuron traces, R, flush interval in steps) of a spiking model's learning section. A rate
    trace is of the trace type, R of the signal type (it is added to L's products in the replay).
    R that freezes to 0 (c_reg = 0) and the traces only it read are left out."""
    learning = ir.learning
    if learning is None or not ir.is_spiking:
        return (), None, 0
    if learning.regularisation_per_interval:
        raise EpropGenError(f"model '{ir.name}': a regularisation per update interval belongs to the "
                            "time-driven engine; on the FPGA the rule is event-driven")
    names = {t.symbol: state_symbol(t.name) for t in learning.traces if not t.per_synapse}
    regularisation = None
    if learning.regularisation is not None:
        value = learning.regularisation.xreplace(frozen).xreplace(names)
        if value != 0:
            regularisation = Assign("R", "signal", name_numbers(value, "signal", constants))
    traces = tuple(Assign(t.name, "trace", name_numbers(t.update.xreplace(frozen).xreplace(names), "trace", constants))
                   for t in learning.traces if not t.per_synapse) if regularisation is not None else ()
    flush = 0
    if learning.flush is not None:
        steps = float(learning.flush.xreplace(frozen)) / dt
        flush = int(np.floor(steps + 0.5)) if np.isfinite(steps) else 0     # the CPU engine's llround
    return traces, regularisation, flush


class Constants:
    """Named typed constants, one per (quantity, value): prefix0, prefix1, ..."""

    def __init__(self, prefix: str = "k"):
        self.prefix = prefix
        self.items: dict[tuple[str, float], Constant] = {}

    def symbol(self, quantity: str, value: float) -> sp.Symbol:
        key = (quantity, float(value))
        if key not in self.items:
            self.items[key] = Constant(f"{self.prefix}{len(self.items)}", quantity, float(value))
        return sp.Symbol(self.items[key].name, real=True)

    def table(self) -> tuple[Constant, ...]:
        return tuple(self.items.values())


def name_numbers(expr: sp.Expr, context: str, constants: Constants) -> sp.Expr:
    """Numbers become typed constants: a factor of a product is a coefficient; a term of a sum or a
    side of a comparison takes the type of the typed value it meets (`context`). 0 and 1 stay."""
    if expr.is_Number:
        value = float(expr)
        return sp.Integer(int(value)) if value in (0.0, 1.0) else constants.symbol(context, value)
    if isinstance(expr, sp.Mul):
        numbers = [a for a in expr.args if a.is_Number]
        rest = [name_numbers(a, context, constants) for a in expr.args if not a.is_Number]
        factor = float(sp.Mul(*numbers)) if numbers else 1.0
        if factor == 1.0:
            return sp.Mul(*rest, evaluate=False) if len(rest) > 1 else rest[0]
        if factor == -1.0:
            return -sp.Mul(*rest)
        return sp.Mul(constants.symbol("coefficient", factor), *rest, evaluate=False)
    if not expr.args:
        return expr
    return expr.func(*[name_numbers(a, context, constants) for a in expr.args], evaluate=False)
