"""The one-screen summary that `eprop-gen check` prints: what the compiler understood and decided."""
from __future__ import annotations

import sympy as sp


def _show(expr) -> str:
    return sp.sstr(expr, full_prec=False)

from .solve import Solution
from .solve.eligibility import describe


def _unit(u: str | None) -> str:
    return f" {u}" if u else ""


def summarize(solution: Solution) -> str:
    ir = solution.ir
    lines = [f"model {ir.name}  ({ir.file})",
             "  kind: " + ("spiking neuron" if ir.is_spiking else "non-spiking (readout / leaky integrator)")]
    lines.append("  parameters: " + ", ".join(f"{p.name}={p.default:g}{_unit(p.unit)}" for p in ir.parameters))
    lines.append("  state: " + ", ".join(f"{s.name}(0)={_show(s.initial)}{_unit(s.unit)}" for s in ir.states))
    ports = [f"{p.name} (spike: {p.target} += {_show(p.increment)})" for p in ir.spike_ports]
    ports += [f"{c.name} (current{_unit(c.unit)}, piecewise constant per step)" for c in ir.current_ports]
    lines.append("  inputs: " + (", ".join(ports) if ports else "none"))
    lin = solution.linear
    if lin is not None:
        lines.append("  solved exactly (propagator exp(A*h), any h): " + ", ".join(str(s) for s in lin.states))
    if solution.numeric_states:
        scheme = ir.scheme
        lines.append(f"  solved numerically ({scheme.method.upper()}, {scheme.substeps} substep(s) per step): "
                     + ", ".join(solution.numeric_states))
        for note in solution.notes:
            lines.append(f"    - {note}")
    if lin is not None and lin.singular_cases:
        for case in lin.singular_cases:
            entries = ", ".join(f"P[{a},{b}]" for a, b in case.entries)
            lines.append(f"  singular case {_show(case.condition.lhs)} == {_show(case.condition.rhs)}: "
                         f"separate exact branch for {entries}")
            if case.regular_nearby:
                nearby = ", ".join(f"P[{a},{b}]" for a, b in case.regular_nearby)
                lines.append(f"    note: near (not at) this case {nearby} use the regular formula "
                             "(three exponentials); expect ~1e-8 relative error within 1e-9 of equality")
    elif lin is not None:
        lines.append("  singular cases: none")
    if ir.spike is not None:
        s = ir.spike
        lines.append(f"  threshold: {_show(s.condition)}")
        lines.append("  reset: " + ("; ".join(f"{a.target} = {_show(a.value)}" for a in s.reset) or "none"))
        if s.adaptation:
            lines.append("  adaptation at a spike: " + "; ".join(f"{a.target} = {_show(a.value)}" for a in s.adaptation))
        if s.refractory_period is not None:
            held = f", holding {', '.join(s.held)}" if s.held else ""
            lines.append(f"  refractory: {_show(s.refractory_period)} ms{held}")
        if s.surrogate is not None:
            lines.append(f"  surrogate gradient: {s.surrogate.function}: psi = {_show(s.surrogate.expression)}")
    if not ir.is_spiking and ir.output is not None:
        lines.append(f"  output (compared with the target): {_show(ir.output)}")
    for rule in solution.eligibility:
        lines += describe(rule)
    if ir.learning is not None:
        lines += _learning_lines(ir.learning)
    return "\n".join(lines)


def _learning_lines(rule) -> list[str]:
    synaptic = [t.name for t in rule.traces if t.per_synapse]
    neuronal = [t.name for t in rule.traces if not t.per_synapse]
    where = "; ".join(part for part in (f"per synapse: {', '.join(synaptic)}" if synaptic else "",
                                        f"per neuron: {', '.join(neuronal)}" if neuronal else "") if part)
    lines = [f"  learning ({where or 'no traces'}; e = derived eligibility trace, L = learning signal):"]
    lines += [f"    {t.name} <- {_show(t.update)}" for t in rule.traces]
    lines.append(f"    gradient = {_show(rule.gradient)}")
    if rule.regularisation is not None:
        when = " (one value per update interval: time-driven engine only)" if rule.regularisation_per_interval else ""
        lines.append(f"    R = {_show(rule.regularisation)}{when}")
    if rule.cutoff is not None:
        lines.append(f"    cutoff: replay at most {_show(rule.cutoff)} ms of each inter-spike interval")
    if rule.flush is not None:
        lines.append(f"    flush: after {_show(rule.flush)} ms without a spike, replay the outgoing synapses so far")
    return lines
