"""solve: ModelIR -> Solution. Which states are solved exactly (propagators) and which numerically."""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..ir import ModelIR
from .eligibility import derive_eligibility
from .graph import reachable
from .propagators import ONE, LinearSolution, linear_system, solve_linear


@dataclass(frozen=True)
class Solution:
    ir: ModelIR
    linear: LinearSolution | None     # exact propagators for the linear part
    numeric_states: tuple[str, ...]   # integrated with ir.scheme (RK4) and written back
    stage_states: tuple[str, ...]     # exact states the numeric ones read: carried through the RK4 stages
    notes: tuple[str, ...]            # why a state is numeric, in words for `check`
    eligibility: tuple = ()           # one EligibilityRule (or Unsupported) per spike port


def solve_model(ir: ModelIR) -> Solution:
    exact, numeric, notes = classify_states(ir)
    linear = None
    if exact:
        symbols = [ir.state(n).symbol for n in exact]
        inputs = [p.symbol for p in ir.current_ports] + [ONE]
        rhs = {ir.state(n).symbol: ir.rhs(n) for n in exact}
        held = [ir.state(n).symbol for n in (ir.spike.held if ir.spike else ()) if n in exact]
        linear = solve_linear(linear_system(rhs, symbols, inputs), symbols, inputs, held)
    upstream = _closure_upstream(ir, numeric)
    stage = tuple(n for n in exact if n in upstream)
    return Solution(ir, linear, numeric, stage, tuple(notes),
                    derive_eligibility(ir, linear, numeric, stage + numeric))


def classify_states(ir: ModelIR) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """Exact: right-hand side affine in the states with parameter-only coefficients, affine in the
    current inputs, depending only on exact states, and no feedback loop between states (a loop
    such as AdEx's V <-> w may have complex eigenvalues; it is integrated numerically for now)."""
    states = {s.symbol: s.name for s in ir.states}
    currents = {p.symbol for p in ir.current_ports}
    numeric, notes = set(), []
    for s in ir.states:
        f = ir.rhs(s.name)
        for y in list(states) + list(currents):
            if sp.diff(f, y).free_symbols & (set(states) | currents):
                numeric.add(s.name)
                notes.append(f"{s.name}: right-hand side is non-linear in {states.get(y, y)}")
                break
    cyclic = _cyclic_states(ir)
    for name in sorted(cyclic - numeric):
        numeric.add(name)
        notes.append(f"{name}: part of a feedback loop between states")
    changed = True
    while changed:      # whatever reads a numeric state is numeric too
        changed = False
        for s in ir.states:
            if s.name not in numeric and any(states[y] in numeric for y in ir.rhs(s.name).free_symbols if y in states):
                numeric.add(s.name)
                notes.append(f"{s.name}: depends on a numerically integrated state")
                changed = True
    order = [s.name for s in ir.states]
    return (tuple(n for n in order if n not in numeric), tuple(n for n in order if n in numeric), notes)


def _dependencies(ir: ModelIR) -> dict[str, set[str]]:
    names = {s.symbol: s.name for s in ir.states}
    return {s.name: {names[y] for y in ir.rhs(s.name).free_symbols if y in names and names[y] != s.name}
            for s in ir.states}


def _cyclic_states(ir: ModelIR) -> set[str]:
    deps = _dependencies(ir)
    # n is on a loop when it can be reached again from the states it reads
    return {n for n in deps if n in reachable(deps, deps[n])}


def _closure_upstream(ir: ModelIR, numeric) -> set[str]:
    """numeric states and every state they read, transitively"""
    return reachable(_dependencies(ir), numeric)
