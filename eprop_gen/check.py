"""check: ModelAST -> ModelIR. Resolves every name, builds sympy expressions, reports all mistakes at once."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import sympy as sp
from lark import Token, Tree

from .errors import Diagnostic, ModelError, Span, did_you_mean
from .ir import (DT, E_TRACE, INTERVAL_SPIKES, INTERVAL_STEPS, LEARNING_SIGNAL, OWN_SPIKE, REGULARISATION, RESET_GRADIENTS, SURROGATE_FUNCTIONS, UNITS, WEIGHT,
                 Assignment, CurrentPort, LearningRule, ModelAST, ModelIR, NumericScheme, Parameter, SpikePort,
                 SpikeRule, StateVariable, Surrogate, Trace)
from .solve.eligibility import PSI

_FUNCTIONS = {
    "exp": (sp.exp, 1), "log": (sp.log, 1), "sqrt": (sp.sqrt, 1), "abs": (sp.Abs, 1),
    "sin": (sp.sin, 1), "cos": (sp.cos, 1), "tanh": (sp.tanh, 1), "min": (sp.Min, 2), "max": (sp.Max, 2),
}
_CONSTANTS = {"pi": sp.pi, "inf": sp.oo}
_COMPARE = {">=": sp.GreaterThan, ">": sp.StrictGreaterThan, "<=": sp.LessThan, "<": sp.StrictLessThan}
_SURROGATE_DEFAULTS = {"height": sp.Float(0.3), "width": sp.Float(1.0)}
# built-in names of the learning: section
_LEARNING_BUILTINS = {"e": E_TRACE, "L": LEARNING_SIGNAL, "R": REGULARISATION, "z": OWN_SPIKE, "psi": PSI, "dt": DT}


@dataclass
class _Checker:
    ast: ModelAST
    diagnostics: list[Diagnostic] = field(default_factory=list)
    known_elsewhere: dict[str, str] = field(default_factory=dict)   # declared names -> what they are
    known_spans: dict[str, Span] = field(default_factory=dict)      # declared names -> where

    def error(self, code: str, message: str, span: Span | None, hint: str = "") -> None:
        self.diagnostics.append(Diagnostic(code, message, span, hint))

    # ---------------------------------------------------------------- expressions
    def expr(self, tree, scope: dict[str, sp.Expr], what: str) -> sp.Expr:
        """Convert a parse tree into sympy; unknown names are reported and replaced by 0."""
        if isinstance(tree, Token):
            return self.expr(Tree("name", [tree]), scope, what)
        kind = tree.data
        kids = [c for c in tree.children if not (isinstance(c, Token) and c.type in ("LPAR", "RPAR"))]
        if kind == "number":
            return sp.Float(str(kids[0])) if any(c in kids[0] for c in ".eE") else sp.Integer(int(kids[0]))
        if kind == "name":
            tok = kids[0]
            name = str(tok)
            if name in scope:
                return scope[name]
            if name in _CONSTANTS:
                return _CONSTANTS[name]
            span = Span(tok.line, tok.column, tok.column + len(name), self.ast.file)
            if name in self.known_elsewhere:
                self.error("E104", f"'{name}' cannot be used here: {what}", span, self.known_elsewhere[name])
                return sp.Integer(0)
            hint = did_you_mean(name, list(scope) + list(_CONSTANTS)) or "declare it under parameters: or state:"
            self.error("E104", f"undefined name '{name}'", span, hint)
            return sp.Integer(0)
        if kind == "call":
            tok, args = kids[0], [self.expr(a, scope, what) for a in kids[1:] if a is not None]
            name = str(tok)
            span = Span(tok.line, tok.column, tok.column + len(name), self.ast.file)
            if name not in _FUNCTIONS:
                self.error("E105", f"unknown function '{name}'", span,
                           did_you_mean(name, _FUNCTIONS) or f"known functions: {', '.join(_FUNCTIONS)}")
                return sp.Integer(0)
            fn, arity = _FUNCTIONS[name]
            if len(args) != arity:
                self.error("E106", f"'{name}' takes {arity} argument(s), got {len(args)}", span)
                return sp.Integer(0)
            return fn(*args)
        if kind == "atom":          # parenthesised expression
            return self.expr(kids[0], scope, what)
        if kind == "neg":
            return -self.expr(kids[0], scope, what)
        if kind == "pow":
            return self.expr(kids[0], scope, what) ** self.expr(kids[2], scope, what)
        a, b = self.expr(kids[0], scope, what), self.expr(kids[1], scope, what)
        return {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b, "div": lambda: a / b}[kind]()

    # ---------------------------------------------------------------- declarations
    def unit(self, unit: str | None, span: Span) -> None:
        if unit is not None and unit not in UNITS:
            self.error("E110", f"unknown unit '{unit}'", span, did_you_mean(unit, UNITS) or f"known units: {' '.join(UNITS)}")

    def check(self) -> ModelIR:
        ast = self.ast
        for section, span in ast.duplicate_sections:
            self.error("E102", f"section '{section}:' appears twice", span, "merge the two sections into one")
        declared: dict[str, Span] = {}

        def declare(name: str, span: Span, kind: str) -> bool:
            if name in declared:
                prev = declared[name]
                self.error("E102", f"'{name}' is declared twice", span, f"first declared at line {prev.line}")
                return False
            if name in ("weight", "dt") or name in _FUNCTIONS or name in _CONSTANTS:
                self.error("E103", f"'{name}' is a reserved name and cannot name a {kind}", span)
                return False
            declared[name] = span
            self.known_spans[name] = span
            return True

        params = [p for p in ast.parameters if declare(p.name, p.span, "parameter")]
        states = [s for s in ast.states if declare(s.name, s.span, "state variable")]
        ports = [p for p in ast.ports if declare(p.name, p.span, "port")]

        self.known_elsewhere = {p.name: f"'{p.name}' is a parameter" for p in params}
        self.known_elsewhere.update({s.name: f"'{s.name}' is a state variable" for s in states})
        self.known_elsewhere.update({p.name: f"'{p.name}' is an input port" for p in ports})
        self.known_elsewhere["weight"] = "'weight' exists only in a spike port's increment (inputs:)"
        self.known_elsewhere["dt"] = "'dt' (the simulation step) is known only when the network runs"
        param_symbols = {p.name: sp.Symbol(p.name, real=True) for p in params}
        state_symbols = {s.name: sp.Symbol(s.name, real=True) for s in states}
        current_symbols = {p.name: sp.Symbol(p.name, real=True) for p in ports if p.kind == "current"}

        parameters = []
        for p in params:
            self.unit(p.unit, p.unit_span)
            value = self.expr(p.value, {}, "a parameter default is a number")
            default = self.number(value, p.value_span, f"default of '{p.name}'")
            parameters.append(Parameter(p.name, param_symbols[p.name], default, p.unit))
        defaults = {param_symbols[p.name]: p.default for p in parameters}

        state_vars = []
        for s in states:
            self.unit(s.unit, s.unit_span)
            init = self.expr(s.value, param_symbols, "an initial value may use parameters only")
            self.number(init.subs(defaults), s.value_span, f"initial value of '{s.name}'")
            state_vars.append(StateVariable(s.name, state_symbols[s.name], init, s.unit))

        dynamic_scope = {**param_symbols, **state_symbols, **current_symbols, "dt": DT}
        odes = self.odes(dynamic_scope, state_symbols, param_symbols, current_symbols)
        spike_ports, current_ports = self.ports(ports, param_symbols, state_symbols, current_symbols)
        spike = self.spike(dynamic_scope, param_symbols, state_symbols)
        scheme = self.scheme()
        output = None
        if ast.output is not None:
            tree, span = ast.output
            output = self.expr(tree, {**param_symbols, **state_symbols}, "an output uses states and parameters")
            if spike is not None:
                self.error("E115", "a spiking neuron emits spikes; `output:` is for non-spiking models (readouts)", span,
                           "remove `output:` or the spike: block")

        learning = self.learning(param_symbols, spike is not None) if ast.learning is not None else None

        if self.diagnostics:
            raise ModelError(self.diagnostics, ast.source)
        return ModelIR(ast.name, ast.file, tuple(parameters), tuple(state_vars), spike_ports, current_ports,
                       odes, spike, scheme, output, learning)

    def number(self, value: sp.Expr, span: Span, what: str) -> float:
        if value.free_symbols:
            return 0.0      # the unknown name was already reported
        try:
            number = complex(value.evalf())
        except (TypeError, ValueError):
            number = complex("nan")
        if value == sp.oo:          # `inf`: e.g. no ISI trace cutoff
            return math.inf
        if value.has(sp.zoo) or math.isinf(abs(number)) or number != number:
            self.error("E108", f"{what} is not finite (division by zero?)", span, "check the expression")
            return 0.0
        if number.imag != 0:
            self.error("E108", f"{what} is not a real number", span)
            return 0.0
        return float(number.real)

    def odes(self, scope, state_symbols, param_symbols, current_symbols):
        odes, seen = [], set()
        for o in self.ast.odes:
            if o.name not in state_symbols:
                if o.name in param_symbols:
                    self.error("E107", f"'{o.name}' is a parameter and cannot have an equation", o.span,
                               "move it to the state: block")
                else:
                    hint = did_you_mean(o.name, state_symbols) or f"declare it under state:, e.g. {o.name} = 0"
                    self.error("E107", f"equation for undeclared state variable '{o.name}'", o.span, hint)
                placeholder = {o.name: sp.Symbol(o.name)}     # no follow-on error for its own name
                self.expr(o.rhs, {**scope, **placeholder}, "an equation uses parameters, states and current inputs")
                continue
            if o.name in seen:
                self.error("E102", f"'{o.name}' has two equations", o.span, "combine them into one right-hand side")
                continue
            seen.add(o.name)
            odes.append((o.name, self.expr(o.rhs, scope, "an equation uses parameters, states and current inputs")))
        return tuple(odes)

    def ports(self, ports, param_symbols, state_symbols, current_symbols):
        spike_ports, current_ports = [], []
        scope = {**param_symbols, "weight": WEIGHT, "dt": DT}
        for p in ports:
            if p.kind == "current":
                self.unit(p.unit, p.unit_span)
                current_ports.append(CurrentPort(p.name, current_symbols[p.name], p.unit))
                continue
            if p.target not in state_symbols:
                self.error("E104", f"spike port '{p.name}' targets unknown state variable '{p.target}'",
                           p.target_span, did_you_mean(p.target, state_symbols) or "declare it under state:")
                continue
            x = state_symbols[p.target]
            value = WEIGHT if p.value is None else self.expr(p.value, scope, "a port increment uses weight and parameters")
            increment = _apply_operator(x, p.operator, value) - x        # as written: exact 1 stays 1
            if sp.simplify(increment - sp.diff(increment, WEIGHT) * WEIGHT) != 0 or increment.free_symbols & set(state_symbols.values()):
                # all spikes that reach a neuron in one step are summed before the jump
                self.error("E113", f"the jump of spike port '{p.name}' must be proportional to weight",
                           p.target_span, f"write e.g. {p.target} += weight * <parameters>")
                continue
            spike_ports.append(SpikePort(p.name, p.target, increment))
        return tuple(spike_ports), tuple(current_ports)

    def spike(self, scope, param_symbols, state_symbols) -> SpikeRule | None:
        decl = self.ast.spike
        if decl is None:
            return None
        for item, span in decl.duplicates:
            self.error("E102", f"'{item}:' is given twice in the spike: block", span)
        condition = sp.true
        if decl.threshold is None:
            self.error("E109", "the spike: block needs a threshold", decl.span, "e.g. threshold: V_m >= V_th")
        else:
            lhs, op, rhs, span = decl.threshold
            a = self.expr(lhs, scope, "a threshold uses states and parameters")
            b = self.expr(rhs, scope, "a threshold uses states and parameters")
            condition = _COMPARE[op](a, b, evaluate=False)
            if not (condition.free_symbols & set(state_symbols.values())) and not self.diagnostics:
                self.error("E109", "the threshold does not depend on any state variable", span)
        reset = []
        for a in decl.reset:
            if a.target not in state_symbols:
                self.error("E104", f"reset of unknown state variable '{a.target}'", a.span,
                           did_you_mean(a.target, state_symbols) or "only state variables can be reset")
                continue
            value = self.expr(a.value, scope, "a reset uses states and parameters")
            reset.append(Assignment(a.target, _apply_operator(state_symbols[a.target], a.operator, value)))
        adaptation = []
        for a in decl.adaptation:
            if a.target not in state_symbols:
                self.error("E104", f"adaptation of unknown state variable '{a.target}'", a.span,
                           did_you_mean(a.target, state_symbols) or "declare the adaptation variable under state:")
                continue
            x = state_symbols[a.target]
            value = self.expr(a.value, scope, "an adaptation jump uses parameters")
            jump = sp.simplify(_apply_operator(x, a.operator, value) - x)
            if a.operator not in ("+=", "-=") or jump.free_symbols & set(state_symbols.values()):
                self.error("E114", f"adaptation of '{a.target}' must be a jump by a constant",
                           a.span, f"write e.g. {a.target} += 1 (or += a parameter)")
                continue
            adaptation.append(Assignment(a.target, x + jump))
        period, held = None, ()
        if decl.refractory is not None:
            tree, names, span = decl.refractory
            period = self.expr(tree, {**param_symbols, "dt": DT}, "a refractory period uses parameters only")
            for name, nspan in names:
                if name not in state_symbols:
                    self.error("E104", f"cannot hold unknown state variable '{name}'", nspan,
                               did_you_mean(name, state_symbols) or "list state variables after 'holding'")
            held = tuple(n for n, _ in names if n in state_symbols)
        surrogate = self.surrogate(decl.surrogate, scope) if decl.surrogate else None
        return SpikeRule(condition, tuple(reset), period, held, surrogate, tuple(adaptation))

    def surrogate(self, call, scope) -> Surrogate | None:
        if call.function not in SURROGATE_FUNCTIONS:
            self.error("E111", f"unknown surrogate gradient function '{call.function}'", call.span,
                       did_you_mean(call.function, SURROGATE_FUNCTIONS) or "known: " + ", ".join(SURROGATE_FUNCTIONS))
            return None
        if len(call.args) != 1:
            self.error("E106", f"'{call.function}' takes one positional argument, the distance to threshold "
                       f"(e.g. V_m - V_th), got {len(call.args)}", call.span)
            return None
        distance = self.expr(call.args[0], scope, "a surrogate uses states and parameters")
        options = dict(_SURROGATE_DEFAULTS)
        for name, tree, span in call.kwargs:
            if name not in options:
                self.error("E106", f"unknown option '{name}' of '{call.function}'", span,
                           did_you_mean(name, options) or "options: height, width")
                continue
            options[name] = self.expr(tree, scope, "surrogate options use parameters")
        return Surrogate(call.function, distance, options["height"], options["width"],
                         surrogate_expression(call.function, distance, options["height"], options["width"]))

    def scheme(self) -> NumericScheme:
        call = self.ast.solver
        if call is None:
            return NumericScheme("rk4", 1)
        if call.function != "rk4":
            self.error("E112", f"unknown numerical scheme '{call.function}'", call.span,
                       "available: rk4 (classic 4th-order Runge-Kutta), e.g. solver: rk4(substeps=4)")
            return NumericScheme("rk4", 1)
        substeps = 1
        for name, tree, span in call.kwargs:
            value = self.expr(tree, {}, "substeps is a whole number")
            if name != "substeps":
                self.error("E106", f"unknown option '{name}' of 'rk4'", span, "options: substeps")
            elif not (value.is_Integer and int(value) >= 1):
                self.error("E108", "substeps must be a whole number >= 1", span)
            else:
                substeps = int(value)
        return NumericScheme("rk4", substeps)


    def learning(self, param_symbols, spiking: bool) -> LearningRule | None:
        """The `learning:` section: per-synapse and per-neuron traces, gradient, regularisation, cutoff."""
        decl = self.ast.learning
        for item, span in decl.duplicates:
            self.error("E102", f"'{item}:' is given twice in the learning: section", span)
        for name in _LEARNING_BUILTINS:
            if name in param_symbols:
                self.error("E103", f"'{name}' is a built-in of learning: and cannot name a parameter",
                           self.known_spans.get(name), "rename the parameter")
        traces: dict[str, sp.Symbol] = {}
        for name, _, span in decl.traces:
            if name in traces:
                self.error("E102", f"trace '{name}' is updated twice", span, "one update line per trace")
            elif name in _LEARNING_BUILTINS or name in param_symbols:
                self.error("E103", f"'{name}' is a built-in or a parameter and cannot name a trace", span)
            else:
                traces[name] = sp.Symbol(name, real=True)
        builtins = dict(_LEARNING_BUILTINS)
        if not spiking:
            del builtins["psi"], builtins["z"]
        if decl.regularisation is None:
            del builtins["R"]
        scope = {**param_symbols, **builtins, **traces}
        what = "learning: uses parameters, its traces and e, L, R, z, psi, dt"
        updates = {name: self.expr(tree, scope, what) for name, tree, _ in decl.traces if name in traces}
        per_synapse = _filters_of_e(updates, traces)
        allowed = set(param_symbols.values()) | {DT}
        for name, _, span in decl.traces:
            if name in per_synapse and not _is_linear_filter(updates[name], traces[name], allowed):
                self.error("E118", f"per-synapse trace '{name}' must be a linear filter x <- a * x + b * e",
                           span, "a and b made of parameters: skipped steps are decayed in closed form")
        rule_traces = tuple(Trace(n, traces[n], updates[n], n in per_synapse) for n in updates)
        if decl.gradient is None:
            self.error("E116", "learning: needs a gradient", decl.span, "e.g. gradient: L * ebar")
            return None
        gradient = self.expr(decl.gradient[0], scope, what)
        regularisation = None
        if decl.regularisation is not None:
            tree, span = decl.regularisation
            interval = {"interval_spikes": INTERVAL_SPIKES, "interval_steps": INTERVAL_STEPS}
            regularisation = self.expr(tree, {**scope, **interval},
                                       what + " (the regularisation also interval_spikes, interval_steps)")
            synaptic = {traces[n] for n in per_synapse} | {E_TRACE}
            reads = regularisation.free_symbols
            if reads & synaptic:
                self.error("E117", "the regularisation is a per-neuron signal and cannot use e or per-synapse traces",
                           span, "use per-neuron traces (e.g. a filtered rate of z)")
            elif reads & set(interval.values()) and reads - set(param_symbols.values()) - set(interval.values()) - {DT}:
                self.error("E117", "a regularisation per update interval (interval_spikes, interval_steps) "
                           "can only use parameters and dt besides them", span,
                           "either per step (traces of z) or per interval, not both")
        cutoff = flush = None
        if decl.cutoff is not None:
            cutoff = self.expr(decl.cutoff[0], param_symbols, "a cutoff uses parameters (ms)")
        if decl.flush is not None:
            flush = self.expr(decl.flush[0], param_symbols, "a flush interval uses parameters (ms)")
            if not spiking:
                self.error("E119", "only spiking neurons send flush events", decl.flush[1],
                           "remove flush: from the readout")
        reset_gradient = "stopped"
        if decl.reset_gradient is not None:
            name, span = str(decl.reset_gradient[0]), decl.reset_gradient[1]
            if name not in RESET_GRADIENTS:
                self.error("E120", f"unknown reset_gradient '{name}'", span,
                           did_you_mean(name, RESET_GRADIENTS) or
                           "stopped (Bellec et al.: the reset is invisible to the eligibility), kept (the "
                           "reset's own derivative: Traub et al.'s STDP-aware rule) or full (also through psi)")
            elif not spiking:
                self.error("E120", "reset_gradient: is for spiking neurons (a readout has no reset)", span,
                           "remove it")
            else:
                reset_gradient = name
        return LearningRule(rule_traces, gradient, regularisation, cutoff, flush, reset_gradient)



def _is_linear_filter(update: sp.Expr, own: sp.Symbol, allowed: set) -> bool:
    a, b = sp.diff(update, own), sp.diff(update, E_TRACE)
    rest = sp.expand(update - a * own - b * E_TRACE)
    return rest == 0 and not (a.free_symbols - allowed) and not (b.free_symbols - allowed)


def _filters_of_e(updates: dict[str, sp.Expr], traces: dict[str, sp.Symbol]) -> set[str]:
    """Traces that depend on e, directly or through other such traces, live on each synapse."""
    found, changed = set(), True
    while changed:
        changed = False
        for name, update in updates.items():
            reads = update.free_symbols
            if name not in found and (E_TRACE in reads or any(traces[m] in reads for m in found)):
                found.add(name)
                changed = True
    return found


def _apply_operator(x: sp.Expr, op: str, value: sp.Expr) -> sp.Expr:
    return {"=": value, "+=": x + value, "-=": x - value, "*=": x * value, "/=": x / value}[op]


def surrogate_expression(function: str, d: sp.Expr, height: sp.Expr, width: sp.Expr) -> sp.Expr:
    """The pseudo-derivative psi as NEST 3.10's code computes it (not its doc strings)."""
    x = sp.Abs(d) / width
    return {
        "piecewise_linear": height * sp.Max(0, 1 - x),
        "exponential": height * sp.exp(-x),
        "fast_sigmoid_derivative": height * (1 + x) ** -2,
        "arctan_derivative": height / (1 + (d / width) ** 2),
    }[function]


def check_model(ast: ModelAST) -> ModelIR:
    return _Checker(ast).check()
