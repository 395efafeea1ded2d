"""e-prop eligibility dynamics derived from a neuron model's own step map (Bellec et al. 2020;
Traub et al. 2020 for non-linear neurons and the reset).

One step m of the model (plan.py's order), for the states h after step m-1:
    h~[m] = Phi(h[m-1], inputs)               propagation: exact P(dt) for the linear part, RK4 for
                                              the numerically integrated states
            + c * z[m-1]                      adaptation jump of the previous step's spike
            + gain * x[m] at the port's target          spike input of step m
    z[m]  = H(dist(h~[m]))                    threshold, with pseudo-derivative psi = dH/d dist
    h[m]  = reset(h~[m], z[m])

The eligibility vector is eps[m] = d h~[m] / dW_ji along the neuron's own dynamics:
    eps[m+1] = F[m+1] Rj[m] eps[m] + c psi[m] d dist/dh . eps[m] + gain * e_target * z_i[m+1]
    e[m]     = psi[m] * d dist/dh . eps[m]                (spiking neurons)
    e[m]     = d output/dh . eps[m]                       (non-spiking readouts: d y / dW)
with F[m] = d Phi / d h[m-1] (the step's derivative: P itself for the exact part; for numerically
integrated states the derivative of the RK4 step along the trajectory, which the neuron kernel
computes each step and archives) and Rj[m] = d h[m] / d h~[m] the reset's derivative, chosen by
the `reset_gradient:` of the learning section:
    stopped  identity: the reset is invisible (Bellec et al. 2020, NEST's e-prop models)
    kept     the reset's derivative with the spike held: I + z (d reset/d h - I); a state set to a
             value (v = c) forgets its eligibility at a postsynaptic spike, which makes the rule
             STDP-aware (Traub et al. 2020)
    full     kept + (reset value - h~) psi d dist/dh: also through the spike's pseudo-derivative
For a LIF neuron this is zbar <- alpha zbar + z_i, e = psi zbar; for an adaptive threshold with
`adaptation: a += 1` it gives Bellec's second component eps_a <- psi eps_v + (rho - beta psi) eps_a,
i.e. NEST's eps = rho eps + e; for a readout the filtered presynaptic trace; for the Izhikevich
model the two-component rule of Traub et al. Nothing here is written per model.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..ir import DT, OWN_SPIKE, WEIGHT, ModelIR
from .graph import reachable
from .propagators import H, raw_propagator

PSI = sp.Symbol("psi", real=True)          # pseudo-derivative of the step the factor belongs to
Z_PRE = sp.Symbol("z_pre", real=True)      # 1 when a presynaptic spike enters in the step


@dataclass(frozen=True)
class PerStep:
    """A number the neuron kernel computes every step and archives for the replays of its synapses
    (an observable `name`, recordable like psi): an entry of F (`tangent`: the derivative of the
    numerically integrated state `row` after the step by `column` before it, computed alongside the
    RK4 step) or of Rj (`expression`, over the parameters, the pre-reset states, the step's own
    spike OWN_SPIKE and PSI)."""
    name: str
    symbol: sp.Symbol
    row: str
    column: str
    expression: sp.Expr | None = None      # None: a tangent entry


@dataclass(frozen=True)
class EligibilityRule:
    port: str
    hidden: tuple[str, ...]        # components of the eligibility vector (derivatives of these states)
    step: sp.Matrix                # F: constants over the parameters and h, or PerStep symbols
    reset: sp.Matrix               # Rj: the identity unless reset_gradient is kept or full
    jumps: sp.Matrix               # c: the adaptation jumps (a column)
    injection: sp.Matrix           # the presynaptic spike's jump per unit weight (a column)
    trace: sp.Matrix               # e[m] = trace(psi = psi[m]) eps[m], a row
    spiking: bool
    per_step: tuple[PerStep, ...] = ()     # the archived entries of step and reset
    reset_gradient: str = "stopped"

    @property
    def propagation(self) -> sp.Matrix:
        """J with eps[m+1] = J eps[m] + injection z_pre[m+1] (psi = psi[m]; F and Rj symbolic)."""
        through_spike = self.jumps * self.trace if self.spiking else sp.zeros(*self.step.shape)
        return (self.step * self.reset + through_spike).applyfunc(sp.simplify)

    @property
    def constant(self) -> bool:
        """True when the rule reads nothing per step besides psi, L and R (the linear models)."""
        return not self.per_step


@dataclass(frozen=True)
class Unsupported:
    port: str
    reason: str


def derive_eligibility(ir: ModelIR, linear, numeric: tuple[str, ...] = (),
                       carried: tuple[str, ...] = ()) -> tuple[EligibilityRule | Unsupported, ...]:
    """One rule per spike port (the port a plastic synapse delivers into). numeric: the states
    integrated with RK4; carried: every state the RK4 stages carry (the numeric ones and the exact
    ones they read)."""
    return tuple(_rule(ir, linear, numeric, carried, port) for port in ir.spike_ports)


def _rule(ir: ModelIR, linear, numeric, carried, port) -> EligibilityRule | Unsupported:
    signal = _signal(ir)
    if signal is None:
        return Unsupported(port.name, "a non-spiking model needs `output:` (what its learning signal compares)")
    mode = ir.learning.reset_gradient if ir.learning is not None else "stopped"
    exact = [str(s) for s in linear.states] if linear is not None else []
    hidden = _hidden_states(ir, port.target, signal, mode)
    symbols = [ir.state(n).symbol for n in hidden]
    k = len(hidden)
    held = set(ir.spike.held) if ir.spike is not None else set()
    numeric_hidden = [n for n in hidden if n in numeric]
    if held & set(hidden) and (mode != "stopped" or numeric_hidden):
        return Unsupported(port.name, f"states held while refractory ({', '.join(sorted(held & set(hidden)))}) "
                                      f"with reset_gradient: {mode} or numerical integration are not derived yet")
    gradient = sp.Matrix([[sp.diff(signal, s) for s in symbols]])           # d dist/dh (or d y/dh)
    if gradient.free_symbols & set(symbols):
        return Unsupported(port.name, "a threshold (or output) non-linear in the states is not derived yet")
    jumps = sp.Matrix([_adaptation_jump(ir, n) for n in hidden])            # c
    if any(jumps[r] != 0 for r, n in enumerate(hidden) if n in numeric):
        return Unsupported(port.name, "adaptation of a numerically integrated state is not derived yet; "
                                      "write the jump under reset: instead")
    per_step: list[PerStep] = []
    # F: the exact part's propagator (the built-in dt is the step map's interval h); numerically
    # integrated rows are archived entries of the RK4 step's derivative where the step can couple them
    P = raw_propagator(linear.matrix) if linear is not None else None
    F = sp.zeros(k, k)
    couples = _couplings(ir, carried)
    for r, row in enumerate(hidden):
        for c, column in enumerate(hidden):
            if row in exact:
                F[r, c] = P[exact.index(row), exact.index(column)].subs(DT, H) if column in exact else 0
            elif column in couples.get(row, ()):
                name = f"jac[{row},{column}]"
                entry = PerStep(name, sp.Symbol(name, real=True), row, column)
                per_step.append(entry)
                F[r, c] = entry.symbol
    F = F.applyfunc(sp.simplify)
    Rj = _reset_derivative(ir, hidden, signal, mode)
    for r in range(k):
        for c in range(k):
            if Rj[r, c].free_symbols & (set(s.symbol for s in ir.states) | {OWN_SPIKE, PSI}):
                name = f"reset[{hidden[r]},{hidden[c]}]"
                entry = PerStep(name, sp.Symbol(name, real=True), hidden[r], hidden[c], Rj[r, c])
                per_step.append(entry)
                Rj[r, c] = entry.symbol
    gain = sp.diff(port.increment, WEIGHT)
    injection = sp.Matrix([gain if n == port.target else 0 for n in hidden])
    spiking = ir.is_spiking
    trace = gradient * PSI if spiking else gradient
    return EligibilityRule(port.name, tuple(hidden), F, Rj, jumps, injection, trace, spiking,
                           tuple(per_step), mode)


def _couplings(ir: ModelIR, carried) -> dict[str, set[str]]:
    """For each carried state, the carried states its value after one RK4 step can depend on
    (itself, and everything its right-hand side reads, transitively through the stages)."""
    names = {ir.state(n).symbol: n for n in carried}
    reads = {n: {names[y] for y in ir.rhs(n).free_symbols if y in names} for n in carried}
    return {n: reachable(reads, [n]) for n in carried}


def _reset_derivative(ir: ModelIR, hidden, signal, mode: str) -> sp.Matrix:
    """Rj = d h[m] / d h~[m] over the hidden states (pre-reset state symbols, OWN_SPIKE, PSI)."""
    k = len(hidden)
    if mode == "stopped" or ir.spike is None:
        return sp.eye(k)
    symbols = [ir.state(n).symbol for n in hidden]
    value = _reset_map(ir)
    D = sp.Matrix(k, k, lambda r, c: sp.diff(value[symbols[r]], symbols[c]))
    Rj = sp.eye(k) + OWN_SPIKE * (D - sp.eye(k))
    if mode == "full":
        gradient = sp.Matrix([[sp.diff(signal, s) for s in symbols]])
        Rj += sp.Matrix([value[s] - s for s in symbols]) * gradient * PSI
    return Rj.applyfunc(sp.simplify)


def _reset_map(ir: ModelIR) -> dict[sp.Symbol, sp.Expr]:
    """Each state's value after the reset assignments (in order) as a function of the pre-reset states."""
    value = {s.symbol: s.symbol for s in ir.states}
    for a in ir.spike.reset:
        value[ir.state(a.target).symbol] = a.value.xreplace(value)
    return value


def _signal(ir: ModelIR) -> sp.Expr | None:
    """What the spike (or the readout's output) depends on: the surrogate's distance to threshold."""
    if ir.spike is not None:
        if ir.spike.surrogate is not None:
            return ir.spike.surrogate.distance
        cond = ir.spike.condition
        return cond.lhs - cond.rhs
    return ir.output


def _adaptation_jump(ir: ModelIR, name: str) -> sp.Expr:
    for a in (ir.spike.adaptation if ir.spike else ()):
        if a.target == name:
            return sp.simplify(a.value - ir.state(name).symbol)
    return sp.Integer(0)


def _hidden_states(ir: ModelIR, target: str, signal: sp.Expr, mode: str = "stopped") -> list[str]:
    """States on a path from the port's target to the signal: through the equations, from the
    signal's states to the adapted states through the spike, and (reset_gradient kept/full) through
    the reset's assignments."""
    names = {s.symbol: s.name for s in ir.states}
    in_signal = {names[s] for s in signal.free_symbols if s in names}
    drives: dict[str, set[str]] = {s.name: set() for s in ir.states}
    for s in ir.states:
        for y in ir.rhs(s.name).free_symbols:
            if y in names and names[y] != s.name:
                drives[names[y]].add(s.name)
    for a in (ir.spike.adaptation if ir.spike else ()):
        for source in in_signal:
            drives[source].add(a.target)
    if mode != "stopped" and ir.spike is not None:
        for a in ir.spike.reset:
            sources = {names[y] for y in a.value.free_symbols if y in names}
            sources |= in_signal if mode == "full" else set()
            for source in sources - {a.target}:
                drives[source].add(a.target)
    downstream = reachable(drives, [target])
    reverse: dict[str, set[str]] = {n: set() for n in drives}
    for a, bs in drives.items():
        for b in bs:
            reverse[b].add(a)
    upstream = reachable(reverse, in_signal)
    return [s.name for s in ir.states if s.name in downstream and s.name in upstream]


def describe(rule: EligibilityRule | Unsupported) -> list[str]:
    """The derived rule in words and formulas, for `eprop-gen check` (h stands for the step dt)."""
    if isinstance(rule, Unsupported):
        return [f"  e-prop, spike port '{rule.port}': not available: {rule.reason}"]
    eps = [sp.Symbol(f"eps_{n}") for n in rule.hidden]
    vector = sp.Matrix(eps)
    updates = rule.propagation * vector + rule.injection * Z_PRE
    lines = [f"  e-prop eligibility, spike port '{rule.port}' (derived; h = dt, psi = pseudo-derivative):"]
    for e, u in zip(eps, updates):
        terms = sp.collect(sp.expand(u), eps + [Z_PRE], evaluate=False)
        shown = " + ".join(f"{_show(sp.simplify(c))}*{k}" if c != 1 else str(k) for k, c in terms.items())
        lines.append(f"    {e} <- {shown}")
    trace = sp.expand((rule.trace * vector)[0])
    if rule.spiking:
        lines.append(f"    e = psi*({sp.sstr(sp.expand(trace / PSI), full_prec=False)})")
    else:
        lines.append(f"    e = {_show(trace)}")
    if rule.reset_gradient != "stopped":
        lines.append(f"    (reset_gradient: {rule.reset_gradient}: the reset's derivative is part of the rule)")
    for q in rule.per_step:
        if q.expression is None:
            lines.append(f"    {q.name} = d {q.row}[m]/d {q.column}[m-1] of the RK4 step, archived per step")
        else:
            shown = sp.sstr(q.expression.xreplace({OWN_SPIKE: sp.Symbol("z")}), full_prec=False)
            lines.append(f"    {q.name} = {shown}  (pre-reset states, z = the step's spike), archived per step")
    return lines


def _show(expr: sp.Expr) -> str:
    text = sp.sstr(expr, full_prec=False)
    return f"({text})" if isinstance(expr, sp.Add) else text
