"""plan (learning part, fast path): per-neuron block products for event-driven replays in O(1).

After its first two steps (where the presynaptic spike enters) a window of the event-driven replay
receives no input, so one replayed step is linear in the synapse's learning state
x = (eps, per-synapse traces, G):

    x_m = M_m x_(m-1),      M_m = M(psi[m], L[m], R[m], parameters of the target neuron),

the same matrix for every synapse into that neuron. Per neuron and block of B history rows the
engine keeps (eg_blocks in eg_eprop.h)

    prefix  P_m = M_m ... M_first        rows m of the newest (current) block
    suffix  S_m = M_last ... M_m         rows m of completed blocks
    total   T_k = M_last ... M_first     completed blocks k

and a window [a, e] whose ends lie in different blocks is x_e = P_e T_(k(e)-1) ... T_(k(a)+1) S_a x_(a-1):
products of decaying matrices only, no inverses (an inverse-based prefix-sum scheme loses digits
like (1/alpha)^B; benchmarks/prototypes/block_replay.py measures both). A window within one block
is walked step by step, as is the reference path. The presynaptic spikes enter a window's first two
rows; a spike entering component r before step m (eps_r = P_rr eps_r + injection_r zin) is the
vector u (u_r = injection_r / P_rr) added to x before M_m, so a window whose two input rows share a
block goes through the products from its first row: x_e = ... S_n0 (x + z0 u) + z1 S_(n0+1) u.

This module derives M symbolically from the same step the walk prints (plan_learning), finds the
sparsity pattern every product of M's can have, and prints the fixed-pattern products as C lines.
G is the last component; its column is always the unit vector (G only accumulates), so it is not
stored and the products add it implicitly.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp


@dataclass(frozen=True)
class BlockPlan:
    size: int                              # d = |eps| + |traces| + 1 (G last)
    entries: int                           # doubles stored per product (its pattern, G column excluded)
    matrix_entries: int                    # doubles of one step's matrix M (its own pattern)
    matrix_lines: tuple[str, ...]          # M[k] = ... (psi, L, R and the neuron's setup in scope)
    first_lines: tuple[str, ...]           # out = M       (a block's first prefix, a suffix's last row)
    prefix_lines: tuple[str, ...]          # out = M * in  (P_m = M_m P_(m-1))
    suffix_lines: tuple[str, ...]          # out = in * M  (S_m = S_(m+1) M_m)
    apply_lines: tuple[str, ...]           # x = A x       (A a stored product)
    input_lines: tuple[str, ...]           # x += s A u    (u: a spike's input, on the `inputs` components)


def plan_blocks(new_state: list[sp.Expr], old_state: list[sp.Symbol], print_c,
                inputs: tuple[int, ...] = ()) -> BlockPlan | None:
    """new_state[r]: component r after one step without input, linear in old_state (G last).
    inputs: the components a presynaptic spike enters (the products then also carry it: a spike
    entering before step m is a vector u added to x before M_m).
    None when the step is not linear in the state (no fast path; the walk serves)."""
    d = len(old_state)
    M = sp.Matrix([[sp.diff(new, old) for old in old_state] for new in new_state])
    if any(s in M.free_symbols for s in old_state):
        return None
    if any(M[r, d - 1] != (1 if r == d - 1 else 0) for r in range(d)):
        return None                              # G must only accumulate
    own = [[M[r, c] != 0 for c in range(d)] for r in range(d)]
    pattern = _closure(own)
    stored = [(r, c) for r in range(d) for c in range(d - 1) if pattern[r][c]]
    at = {rc: k for k, rc in enumerate(stored)}
    m_stored = [(r, c) for r in range(d) for c in range(d - 1) if own[r][c]]
    m_at = {rc: k for k, rc in enumerate(m_stored)}

    def entry(name: str, index: dict, r: int, c: int) -> str | None:
        """Element (r, c) of a product (or of M), with the implicit unit G column."""
        if c == d - 1:
            return "1" if r == d - 1 else None
        return f"{name}[{index[(r, c)]}]" if (r, c) in index else None

    def product(left: tuple[str, dict], right: tuple[str, dict]) -> list[str]:
        lines = []
        for r, c in stored:
            terms = []
            for l in range(d):
                a, b = entry(*left, r, l), entry(*right, l, c)
                if a is not None and b is not None:
                    terms.append(b if a == "1" else a if b == "1" else f"{a} * {b}")
            lines.append(f"out[{at[(r, c)]}] = {' + '.join(terms) if terms else '0.0'};")
        return lines

    matrix = [f"M[{m_at[rc]}] = {print_c(M[rc])};" for rc in m_stored]
    first = [f"out[{at[rc]}] = {entry('M', m_at, *rc) or '0.0'};" for rc in stored]
    apply = []
    for r in range(d):
        terms = [f"{entry('A', at, r, c)} * x[{c}]" for c in range(d - 1) if (r, c) in at]
        if r == d - 1:
            terms.append(f"x[{d - 1}]")
        apply.append(f"const double y{r} = {' + '.join(terms) if terms else '0.0'};")
    apply += [f"x[{r}] = y{r};" for r in range(d)]
    input_lines = []
    for r in range(d):
        terms = [f"{entry('A', at, r, c)} * u[{n}]" for n, c in enumerate(inputs) if entry("A", at, r, c)]
        if terms:
            input_lines.append(f"x[{r}] += s * ({' + '.join(terms)});")
    return BlockPlan(d, len(stored), len(m_stored), tuple(matrix), tuple(first),
                     tuple(product(("M", m_at), ("in", at))), tuple(product(("in", at), ("M", m_at))),
                     tuple(apply), tuple(input_lines))


def _closure(own: list[list[bool]]) -> list[list[bool]]:
    """Which entries a product of one or more step matrices can make nonzero."""
    d = len(own)
    pattern = [row[:] for row in own]
    while True:
        grown = [[pattern[r][c] or any(own[r][l] and pattern[l][c] for l in range(d)) for c in range(d)]
                 for r in range(d)]
        if grown == pattern:
            return pattern
        pattern = grown
