"""e-prop eligibility dynamics derived from a neuron model's own step map (Bellec et al. 2020).

One step of the model (plan.py's order) is, for the states h after step n:
    h~[n+1] = P(dt) h[n] + (inputs)            propagation of the exactly solved part
              + c * z[n]                      adaptation jump of the previous step's spike (kept)
              + gain * x[n+1] at the port's target        spike input of step n+1
    z[n+1]  = H(dist(h~[n+1]))                 threshold, with pseudo-derivative psi = dH/d dist
    h[n+1]  = reset(h~[n+1])                   reset (gradient stopped, Bellec et al.)

The eligibility vector is eps[n] = d h~[n] / dW_ji along the neuron's own dynamics, so
    eps[n+1] = (P + c psi[n] d dist/dh) eps[n] + gain * e_target * z_i[n+1]
    e[n]     = psi[n] * d dist/dh . eps[n]                (spiking neurons)
    e[n]     = d output/dh . eps[n]                       (non-spiking readouts: d y / dW)
For a LIF neuron this is zbar <- alpha zbar + z_i, e = psi zbar; for an adaptive threshold with
`adaptation: a += 1` it gives Bellec's second component eps_a <- psi eps_v + (rho - beta psi) eps_a,
i.e. NEST's eps = rho eps + e; for a readout the filtered presynaptic trace. Nothing here is written
per model.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..ir import DT, WEIGHT, ModelIR
from .graph import reachable
from .propagators import H, raw_propagator

PSI = sp.Symbol("psi", real=True)          # pseudo-derivative of the step the factor belongs to
Z_PRE = sp.Symbol("z_pre", real=True)      # 1 when a presynaptic spike enters in the step


@dataclass(frozen=True)
class EligibilityRule:
    port: str
    hidden: tuple[str, ...]        # components of the eligibility vector (derivatives of these states)
    propagation: sp.Matrix         # eps[n+1] = propagation(psi = psi[n]) eps[n] + injection z_pre[n+1]
    injection: sp.Matrix
    trace: sp.Matrix               # e[n] = trace(psi = psi[n]) eps[n], a row
    spiking: bool


@dataclass(frozen=True)
class Unsupported:
    port: str
    reason: str


def derive_eligibility(ir: ModelIR, linear) -> tuple[EligibilityRule | Unsupported, ...]:
    """One rule per spike port (the port a plastic synapse delivers into)."""
    return tuple(_rule(ir, linear, port) for port in ir.spike_ports)


def _rule(ir: ModelIR, linear, port) -> EligibilityRule | Unsupported:
    signal = _signal(ir)
    if signal is None:
        return Unsupported(port.name, "a non-spiking model needs `output:` (what its learning signal compares)")
    exact = [str(s) for s in linear.states] if linear is not None else []
    hidden = _hidden_states(ir, port.target, signal)
    numeric = [n for n in hidden if n not in exact]
    if numeric:
        return Unsupported(port.name, f"eligibility through numerically integrated states ({', '.join(numeric)}) "
                                      "is not derived yet")
    index = [exact.index(n) for n in hidden]
    P = raw_propagator(linear.matrix).extract(index, index)
    symbols = [ir.state(n).symbol for n in hidden]
    gradient = sp.Matrix([[sp.diff(signal, s) for s in symbols]])           # d dist/dh (or d y/dh)
    jumps = sp.Matrix([_adaptation_jump(ir, n) for n in hidden])            # c
    spiking = ir.is_spiking
    through_spike = jumps * gradient * PSI if spiking else sp.zeros(len(hidden), len(hidden))
    # the adaptation jump of step n's spike lands after step n+1's propagation: J = P + c psi d dist
    # (the built-in dt is the propagation interval h of the step map)
    propagation = (P + through_spike).subs(DT, H).applyfunc(sp.simplify)
    gain = sp.diff(port.increment, WEIGHT)
    injection = sp.Matrix([gain if n == port.target else 0 for n in hidden])
    trace = gradient * PSI if spiking else gradient
    return EligibilityRule(port.name, tuple(hidden), propagation, injection, trace, spiking)


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


def _hidden_states(ir: ModelIR, target: str, signal: sp.Expr) -> list[str]:
    """States on a path from the port's target to the signal: through the equations, and from the
    signal's states to the adapted states through the spike."""
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
    return lines


def _show(expr: sp.Expr) -> str:
    text = sp.sstr(expr, full_prec=False)
    return f"({text})" if isinstance(expr, sp.Add) else text
