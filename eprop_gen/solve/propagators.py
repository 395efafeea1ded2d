"""Exact propagators exp(A·h) for the linear part of a model, with singular cases handled.

The system is written as x' = A x + B u, where x are the exactly solvable states and u the inputs that
are constant over a step (current ports and the constant 1, which carries parameter-only terms).
Augmenting x with u (zero derivative) makes exp always exist, even for constant right-hand sides.

Entry P_ij only depends on the states on paths from j to i, so each entry is exponentiated on that
small subsystem (ODE-toolbox exponentiates connected blocks; this is the same idea, finer).

Singular parameter combinations are found from the denominators of each entry (e.g. tau_m - tau_syn).
Such an entry becomes
    Piecewise((exact formula for the singular case, p == p*), (stable formula, True))
where the singular formula comes from exponentiating the substituted matrix (an independent
derivation) and the stable formula is written through phi_k(mu_1 - mu_2): no pole, no cancellation,
so parameters *near* the condition are as accurate as any others. Entries without a singular
condition are written through expm1 instead of a difference of exponentials.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp
from sympy.codegen.cfunctions import expm1

from .graph import reachable

H = sp.Symbol("h", positive=True)      # the propagation interval (ms): the step dt or any event interval
ONE = sp.Symbol("one__", real=True)    # augmented constant input



class phi(sp.Function):
    """phi_k(x) = (e^x - sum_{j<k} x^j/j!) / x^k, entire, phi_k(0) = 1/k!.

    The generated code evaluates it stably (series near 0); writing a propagator entry through phi_k
    removes the pole of order k that a difference of exponentials has at a singular condition.
    """
    nargs = 2

    @classmethod
    def eval(cls, k, x):
        if x.is_zero:
            return 1 / sp.factorial(k)

    def _ccode(self, printer):
        return f"eg_phi({printer._print(self.args[0])}, {printer._print(self.args[1])})"

    _cxxcode = _ccode


@dataclass(frozen=True)
class SingularCase:
    condition: sp.Eq          # e.g. Eq(tau_syn_ex, tau_m)
    entries: tuple[tuple[str, str], ...]
    # entries with three or more distinct exponentials: exact at the condition, but evaluated in the
    # regular form near it (digits are lost within ~1e-8 relative of equality)
    regular_nearby: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LinearSolution:
    states: tuple[sp.Symbol, ...]          # exactly solved states, in order
    inputs: tuple[sp.Symbol, ...]          # current ports and ONE (augmented, zero derivative)
    matrix: sp.Matrix                      # A_aug over states + inputs
    propagator_matrix: sp.Matrix           # exp(A_aug h), entries in stable Piecewise form
    held_propagator_matrix: sp.Matrix | None   # same with held (refractory) states frozen
    singular_cases: tuple[SingularCase, ...]


def linear_system(rhs: dict[sp.Symbol, sp.Expr], states, inputs) -> sp.Matrix:
    """A_aug such that d/dt [x; u] = A_aug [x; u]. The caller (classify_states) guarantees that rhs is
    affine in x and u with parameter-only coefficients."""
    cols = list(states) + list(inputs)
    n = len(cols)
    A = sp.zeros(n, n)
    for r, x in enumerate(states):
        f = sp.expand(rhs.get(x, sp.Integer(0)))
        rest = f
        for c, y in enumerate(cols):
            if y == ONE:
                continue
            coeff = sp.diff(f, y)
            A[r, c] = coeff
            rest = rest - coeff * y
        A[r, cols.index(ONE)] = sp.simplify(rest)
    return A


def solve_linear(A: sp.Matrix, states, inputs, held=()) -> LinearSolution:
    names = list(states) + list(inputs)
    P, cases = _stable_propagator(A, names)
    held_P = None
    if held:
        A_held = A.copy()
        for x in held:
            A_held[names.index(x), :] = sp.zeros(1, A.shape[1])
        held_P, held_cases = _stable_propagator(A_held, names)
        cases = _merge_cases(cases + held_cases)
    return LinearSolution(tuple(states), tuple(inputs), A, P, held_P, tuple(cases))


def raw_propagator(A: sp.Matrix) -> sp.Matrix:
    """exp(A h) assembled entry by entry from the minimal subsystems (no stabilisation)."""
    n = A.shape[0]
    P = sp.zeros(n, n)
    for i in range(n):
        for j in range(n):
            P[i, j] = _entry(A, i, j)
    return P


def _stable_propagator(A: sp.Matrix, names) -> tuple[sp.Matrix, list[SingularCase]]:
    n = A.shape[0]
    P = sp.zeros(n, n)
    found: dict[sp.Eq, list] = {}
    params = A.free_symbols
    for i in range(n):
        for j in range(n):
            raw = _entry(A, i, j)
            if raw == 0:
                continue
            stable, conditions = stabilise(raw, params, lambda subs, i=i, j=j: _entry(A.subs(subs), i, j))
            P[i, j] = stable
            pair = (str(names[i]), str(names[j]))
            many = len(exponential_groups(raw)) > 2
            for c in conditions:
                entries, nearby = found.setdefault(c, ([], []))
                if pair not in entries:
                    entries.append(pair)
                    if many:
                        nearby.append(pair)
    return P, [SingularCase(c, tuple(e), tuple(n)) for c, (e, n) in found.items()]


def _merge_cases(cases):
    merged: dict = {}
    for c in cases:
        entries, nearby = merged.setdefault(c.condition, (set(), set()))
        entries.update(c.entries)
        nearby.update(c.regular_nearby)
    return [SingularCase(c, tuple(sorted(e)), tuple(sorted(n))) for c, (e, n) in merged.items()]


def _entry(A: sp.Matrix, i: int, j: int) -> sp.Expr:
    nodes = _path_nodes(_adjacency(A), i, j)
    if not nodes:
        return sp.Integer(0)
    return _block_exp(A.extract(nodes, nodes))[nodes.index(i), nodes.index(j)]


def _adjacency(A: sp.Matrix) -> dict[int, set[int]]:
    """edges j -> i where x_j drives x_i"""
    out: dict[int, set[int]] = {k: set() for k in range(A.shape[0])}
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            if i != j and A[i, j] != 0:
                out[j].add(i)
    return out


def _path_nodes(adj, i, j) -> list[int]:
    downstream = reachable(adj, [j])
    if i not in downstream:
        return []
    reverse: dict[int, set[int]] = {k: set() for k in adj}
    for a, bs in adj.items():
        for b in bs:
            reverse[b].add(a)
    return sorted(downstream & reachable(reverse, [i]))


@functools.lru_cache(maxsize=None)
def _block_exp_cached(A: sp.ImmutableMatrix) -> sp.ImmutableMatrix:
    return sp.ImmutableMatrix((sp.Matrix(A) * H).exp())


def _block_exp(A: sp.Matrix) -> sp.Matrix:
    return sp.Matrix(_block_exp_cached(sp.ImmutableMatrix(A)))


# ------------------------------------------------------------------------------- stable forms

def exponential_groups(expr: sp.Expr) -> dict[sp.Expr, sp.Expr]:
    """Write expr as sum_k c_k * exp(mu_k) (c_k free of exp) and return {mu_k: c_k}."""
    groups: dict[sp.Expr, sp.Expr] = {}
    num, den = sp.fraction(sp.together(expr))
    # exponentials in a (product) denominator move up with a negated argument, so that the
    # expansion below distributes over the numerator only
    den_exp = sp.Integer(0)
    for f in sp.Mul.make_args(den):
        if isinstance(f, sp.exp):
            den_exp += f.args[0]
        elif f.is_Pow and isinstance(f.base, sp.exp):
            den_exp += f.base.args[0] * f.exp
    num = num * sp.exp(-den_exp)
    den = sp.simplify(den * sp.exp(-den_exp))
    for term in sp.Add.make_args(sp.expand(sp.powsimp(sp.expand(num), combine="exp"))):
        term = sp.powsimp(term, combine="exp")
        exps = [f for f in sp.Mul.make_args(term) if isinstance(f, sp.exp)]
        mu = sp.expand(sp.Add(*[f.args[0] for f in exps]))
        rest = sp.Mul(*[f for f in sp.Mul.make_args(term) if not isinstance(f, sp.exp)]) / den
        groups[mu] = groups.get(mu, sp.Integer(0)) + rest
    return {mu: sp.factor(sp.together(c)) for mu, c in groups.items() if sp.simplify(c) != 0}


def expm1_form(expr: sp.Expr) -> sp.Expr:
    """exp-polynomial with differences of exponentials rewritten through expm1 (no cancellation).

    sum_k c_k e^{mu_k} = e^{mu_r} (sum_k c_k + sum_{k!=r} c_k expm1(mu_k - mu_r)); with two groups the
    reference r is the larger exponent, chosen at run time when the sign is not known symbolically, so
    expm1's argument is <= 0 and nothing overflows for long event intervals.
    """
    groups = exponential_groups(expr)
    if len(groups) != 2:
        return sp.Add(*[c * sp.exp(mu) for mu, c in groups.items()])
    (m1, c1), (m2, c2) = groups.items()
    total = sp.factor(sp.together(c1 + c2))

    def around(mr, mk, ck):
        return sp.exp(mr) * (total + ck * expm1(sp.expand(mk - mr)))

    return _around_larger_exponent(m1, m2, around(m1, m2, c2), around(m2, m1, c1))


def singular_factors(expr: sp.Expr, params: set) -> list[tuple[sp.Expr, int]]:
    """(factor, multiplicity) of denominator factors that vanish for some parameter combination."""
    found: dict[sp.Expr, int] = {}
    for c in exponential_groups(expr).values():
        _, den = sp.fraction(sp.together(c))
        for f, m in sp.factor_list(den)[1]:
            syms = f.free_symbols
            if H in syms or len(syms & params) < 2 or f.has(sp.exp):
                continue
            f = sp.expand(f)
            key = f if f.could_extract_minus_sign() is False else sp.expand(-f)
            found[key] = max(found.get(key, 0), m)
    return list(found.items())


def phi_form(groups: dict[sp.Expr, sp.Expr], order: int) -> sp.Expr:
    """Two exponential groups c1 e^{mu1} + c2 e^{mu2} with c1 having a pole of `order` at mu1 = mu2:
    e^{mu2} (c2 + c1 sum_{j<order} x^j/j!) + e^{mu2} c1 x^order phi_order(x), x = mu1 - mu2;
    both brackets are pole-free after cancellation. The reference exponent is the larger one."""
    (m1, c1), (m2, c2) = groups.items()

    def around(mr, cr, mk, ck):
        x = sp.expand(mk - mr)
        polynomial = sp.cancel(sp.together(cr + ck * sum(x ** j / sp.factorial(j) for j in range(order))))
        coefficient = sp.cancel(sp.together(ck * x ** order))
        return sp.exp(mr) * (polynomial + coefficient * phi(order, x))

    return _around_larger_exponent(m1, m2, around(m1, c1, m2, c2), around(m2, c2, m1, c1))


def _around_larger_exponent(m1, m2, first, second) -> sp.Expr:
    """`first` (the form referred to e^{m1}) where m1 >= m2, else `second`: the remaining exponential
    then has a non-positive argument and nothing overflows. Decided symbolically when possible."""
    sign = sp.simplify(m1 - m2)
    if sign.is_nonnegative:
        return first
    if sign.is_nonpositive:
        return second
    return sp.Piecewise((first, m1 >= m2), (second, True))


def stabilise(expr: sp.Expr, params: set, derive, substitutions: tuple = ()) -> tuple[sp.Expr, list[sp.Eq]]:
    """The entry in a form accurate at, near and away from every singular condition.

    derive(substitutions) re-derives the entry from the matrix with the parameter substitutions
    applied in order (a singular branch is never obtained by substituting into a formula, which
    would be 0/0); `substitutions` are those already made on the way to `expr`."""
    factors = singular_factors(expr, params)
    if not factors:
        return expm1_form(expr), []
    groups = exponential_groups(expr)
    if len(groups) == 2 and len(factors) == 1:
        # phi_k removes the pole where the exponents are close; far apart (long intervals h, very
        # different time constants) its two terms would cancel, and the expm1 form is exact there
        m1, m2 = groups
        regular = sp.Piecewise((phi_form(groups, factors[0][1]), sp.Abs(m1 - m2) <= 1), (expm1_form(expr), True))
    else:
        # three or more distinct exponentials: exact singular branches, regular form elsewhere
        regular = expm1_form(expr)
    pieces, conditions = [], []
    for f, _ in factors:
        p = sorted(f.free_symbols & params, key=str)[-1]
        solutions = sp.solve(f, p)
        if len(solutions) != 1:
            continue
        g = solutions[0]
        deeper = substitutions + ((p, g),)
        special, inner = stabilise(derive(list(deeper)), params - {p}, derive, deeper)
        condition = sp.Eq(p, g)
        pieces.append((special, condition))
        conditions += [condition, *inner]
    return sp.Piecewise(*pieces, (regular, True)), conditions
