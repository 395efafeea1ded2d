"""The intermediate representations every stage shares. Plain frozen dataclasses, no target knowledge.

Two layers:
- the AST (what the file says, with spans; expressions still as positioned parse trees), made by
  `parse.py`;
- the ModelIR (what the model means: sympy symbols and expressions, resolved names), made by
  `check.py` and consumed by `solve/`, `plan.py` and any back end (C++ now, HLS later).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy as sp

from .errors import Span

# --------------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Declaration:            # `name = expr [unit]` in `parameters:` or `state:`
    name: str
    value: Any                # lark Tree/Token of the expression
    unit: str | None
    span: Span                # the name
    value_span: Span
    unit_span: Span | None = None


@dataclass(frozen=True)
class PortDecl:
    name: str
    kind: str                 # "spike" or "current"
    target: str | None        # spike ports: the state variable that jumps
    operator: str             # spike ports: "+=", "-=", ...; "+=" for the plain `-> x` form
    value: Any                # spike ports: increment expression tree, None for `-> x` (means weight)
    unit: str | None
    span: Span
    target_span: Span | None
    unit_span: Span | None = None


@dataclass(frozen=True)
class OdeDecl:
    name: str
    rhs: Any
    span: Span


@dataclass(frozen=True)
class AssignmentDecl:
    target: str
    operator: str
    value: Any
    span: Span


@dataclass(frozen=True)
class CallDecl:               # `surrogate: f(args)` and `solver: rk4(args)`
    function: str
    args: tuple               # positional argument trees
    kwargs: tuple             # ((name, tree, span), ...)
    span: Span


@dataclass(frozen=True)
class SpikeDecl:
    threshold: tuple | None   # (lhs tree, comparison operator, rhs tree, span)
    reset: tuple[AssignmentDecl, ...]
    refractory: tuple | None  # (period tree, (held names, ...), ((name, span), ...), span)
    surrogate: CallDecl | None
    span: Span
    duplicates: tuple = ()    # ((item name, span), ...) given more than once
    adaptation: tuple[AssignmentDecl, ...] = ()


@dataclass(frozen=True)
class LearningDecl:           # the `learning:` section
    traces: tuple             # ((name, expression tree, span), ...) in file order
    gradient: tuple | None    # (tree, span)
    regularisation: tuple | None
    cutoff: tuple | None
    span: Span
    duplicates: tuple = ()    # ((item, span), ...)
    flush: tuple | None = None
    reset_gradient: tuple | None = None   # (name token, span)


@dataclass(frozen=True)
class ModelAST:
    name: str
    file: str
    source: str
    parameters: tuple[Declaration, ...]
    states: tuple[Declaration, ...]
    ports: tuple[PortDecl, ...]
    odes: tuple[OdeDecl, ...]
    spike: SpikeDecl | None
    solver: CallDecl | None
    span: Span
    duplicate_sections: tuple = ()   # ((section name, span), ...)
    output: tuple | None = None       # (expression tree, span) of `output:`
    learning: "LearningDecl | None" = None


# ---------------------------------------------------------------------------------------------- IR

WEIGHT = sp.Symbol("weight", real=True)   # the synaptic weight inside a spike port's increment
DT = sp.Symbol("dt", positive=True)       # the simulation step (ms), known when the network runs


@dataclass(frozen=True)
class Parameter:
    name: str
    symbol: sp.Symbol
    default: float
    unit: str | None


@dataclass(frozen=True)
class StateVariable:
    name: str
    symbol: sp.Symbol
    initial: sp.Expr          # may use parameters (e.g. V_m = E_L)
    unit: str | None


@dataclass(frozen=True)
class SpikePort:
    name: str
    target: str               # the state variable that jumps
    increment: sp.Expr        # new value = target + increment; uses WEIGHT and parameters


@dataclass(frozen=True)
class CurrentPort:
    name: str
    symbol: sp.Symbol         # piecewise constant over each step
    unit: str | None


@dataclass(frozen=True)
class Assignment:
    target: str
    value: sp.Expr            # the new value (x += d is stored as x + d)


@dataclass(frozen=True)
class Surrogate:
    function: str             # one of SURROGATE_FUNCTIONS
    distance: sp.Expr         # v - threshold, the argument the pseudo-derivative is taken at
    height: sp.Expr
    width: sp.Expr
    expression: sp.Expr       # the pseudo-derivative itself


@dataclass(frozen=True)
class SpikeRule:
    condition: sp.Expr        # a sympy relational
    # applied in order at a spike; e-prop does not differentiate through them (Bellec et al. 2020)
    reset: tuple[Assignment, ...]
    refractory_period: sp.Expr | None     # in ms, over parameters
    held: tuple[str, ...]                 # state variables frozen while refractory
    surrogate: Surrogate | None
    # spike-triggered jumps x += c (after the reset); e-prop differentiates them through the
    # spike's pseudo-derivative, which is what gives adaptive neurons their second eligibility
    adaptation: tuple[Assignment, ...] = ()


# built-in names of the `learning:` section
E_TRACE = sp.Symbol("e", real=True)            # the derived eligibility trace of the synapse
LEARNING_SIGNAL = sp.Symbol("L", real=True)    # per neuron and step (a readout's own error)
REGULARISATION = sp.Symbol("R", real=True)     # the value of `regularisation:`
OWN_SPIKE = sp.Symbol("z", real=True)          # 1 in a step the neuron spiked
# regularisation per update interval (time-driven e-prop, Bellec et al. 2020): the neuron's spike
# count in the interval and the interval's length in steps
INTERVAL_SPIKES = sp.Symbol("interval_spikes", real=True)
INTERVAL_STEPS = sp.Symbol("interval_steps", real=True)


@dataclass(frozen=True)
class Trace:
    name: str
    symbol: sp.Symbol
    update: sp.Expr           # new value from the old (the trace's own symbol) each step; starts at 0
    per_synapse: bool         # True when it filters e (directly or through another per-synapse trace)


@dataclass(frozen=True)
class LearningRule:
    traces: tuple[Trace, ...]
    gradient: sp.Expr          # per synapse and step
    regularisation: sp.Expr | None
    cutoff: sp.Expr | None     # ms; the replay of an inter-spike interval stops after it
    # ms; a neuron silent for this long sends a flush event, which replays its outgoing plastic
    # synapses' windows so far without transmitting anything (NEST's flush_event_send_interval)
    flush: sp.Expr | None = None
    # how the eligibility passes a spike's reset (solve/eligibility.py): "stopped" (Bellec et al.
    # 2020, NEST: the reset is invisible), "kept" (the reset's own derivative with the spike held:
    # a state set to a value forgets its eligibility; Traub et al. 2020) or "full" (also through
    # the spike's pseudo-derivative)
    reset_gradient: str = "stopped"

    @property
    def regularisation_per_interval(self) -> bool:
        """True when R is one value per update interval (it reads interval_spikes/interval_steps):
        only the time-driven engine has intervals."""
        return self.regularisation is not None and bool(
            self.regularisation.free_symbols & {INTERVAL_SPIKES, INTERVAL_STEPS})


@dataclass(frozen=True)
class NumericScheme:
    method: str               # "rk4"
    substeps: int


@dataclass(frozen=True)
class ModelIR:
    name: str
    file: str
    parameters: tuple[Parameter, ...]
    states: tuple[StateVariable, ...]
    spike_ports: tuple[SpikePort, ...]
    current_ports: tuple[CurrentPort, ...]
    odes: tuple[tuple[str, sp.Expr], ...]   # (state name, right-hand side); states without ODE are constant
    spike: SpikeRule | None
    scheme: NumericScheme
    output: sp.Expr | None = None    # what a non-spiking model emits (a readout's y); None for neurons
    learning: LearningRule | None = None   # how incoming plastic synapses turn eligibility into gradients

    @property
    def is_spiking(self) -> bool:
        return self.spike is not None

    def state(self, name: str) -> StateVariable:
        return next(s for s in self.states if s.name == name)

    def rhs(self, name: str) -> sp.Expr:
        return dict(self.odes).get(name, sp.Integer(0))


RESET_GRADIENTS = ("stopped", "kept", "full")
SURROGATE_FUNCTIONS = ("piecewise_linear", "exponential", "fast_sigmoid_derivative", "arctan_derivative")
UNITS = ("ms", "s", "mV", "V", "pA", "nA", "pF", "nF", "nS", "uS", "Hz", "GOhm", "MOhm", "1")
