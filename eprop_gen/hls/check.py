"""check (FPGA back end): the chosen precisions against the statements the firmware will run.

ap_fixed's C simulation aborts (an assertion in the open headers) on an assignment with a rounding
mode whose target LSB lies two or more places above the source's MSB (fixed.csim_aborts). Such a
statement can only round to 0 or one LSB, so it is a precision mistake; it is reported at generation,
with the statement, instead of as an abort in csim.sh. The type of an expression is ap_fixed's: exact
+ - * (fixed.sum_type, product_type, ...), int literals as ap_int<32>, a spike bit as ap_uint<1>."""
from __future__ import annotations

import sympy as sp

from ..errors import EpropGenError
from .fixed import FixedType, csim_aborts, difference_type, negation_type, product_type, sum_type
from .plan import Assign, NeuronStep
from .plan_replay import ReplayStep

INT_LITERAL = FixedType(32, 32, True)
BIT = FixedType(1, 1, False)


def expression_type(expr: sp.Expr, leaf) -> FixedType:
    """The exact type ap_fixed gives expr; leaf(name) -> the type of a variable or constant."""
    if isinstance(expr, sp.Symbol):
        return leaf(expr.name)
    if expr.is_Integer:
        return INT_LITERAL
    if isinstance(expr, sp.Mul) and expr.args[0] == -1:
        rest = expr.args[1:]
        return negation_type(expression_type(rest[0] if len(rest) == 1 else sp.Mul(*rest, evaluate=False), leaf))
    if isinstance(expr, (sp.Add, sp.Mul)):
        combine = sum_type if isinstance(expr, sp.Add) else product_type
        out = expression_type(expr.args[0], leaf)
        for a in expr.args[1:]:
            out = combine(out, expression_type(a, leaf))
        return out
    if isinstance(expr, sp.Abs):
        return negation_type(expression_type(expr.args[0], leaf))
    if isinstance(expr, sp.Max):
        (rest,) = [a for a in expr.args if a != 0]
        return expression_type(rest, leaf)
    if isinstance(expr, sp.Pow):
        base = expression_type(expr.base, leaf)
        out = base
        for _ in range(int(expr.exp) - 1):
            out = product_type(out, base)
        return out
    raise ValueError(f"no ap_fixed type for {expr!r}")


def check_precisions(precision: dict[str, FixedType], rec: NeuronStep, out: NeuronStep,
                     replays: tuple[ReplayStep, ...], where: str) -> None:
    """Raise EpropGenError for the first statement (the neurons', the replays' and the fixed lines of
    the firmware's schedule) whose C simulation would abort with these precisions."""
    T = precision
    for step in (rec, out):
        names = {**{c.name: T[c.quantity] for c in step.constants}, **{n: T[q] for n, q in step.states},
                 **{a.target: T[a.quantity] for a in step.neuron_traces}, "z": BIT}
        statements = [*step.propagation, *step.adaptation, *step.reset, *step.neuron_traces,
                      *(a for a in (step.psi, step.output, step.regularisation) if a is not None)]
        _check(statements, names, T, where, step.model)
    for replay in replays:
        names = {**{c.name: T[c.quantity] for c in replay.constants}, "zin": BIT, "G": T["gradient"],
                 "psi": T["psi"], "L": T["signal"], "R": T["signal"]}
        names.update({a.target: T[a.quantity] for a in (*replay.presynaptic, *replay.row)})
        _check([*replay.presynaptic, *replay.row], names, T, where, f"{replay.model} (replay)")
    # the schedule's own lines in firmware.cpp.j2: input sums, errors, learning signals, weight
    # steps, decays and their powers
    fixed_lines = [("membrane", sum_type(T["membrane"], T["weight"]), "x = x + weight"),
                   ("signal", difference_type(T["membrane"], T["membrane"]), "E = y - y*"),
                   ("signal", sum_type(T["signal"], product_type(T["coefficient"], T["signal"])), "L = L + B E"),
                   ("weight", difference_type(T["weight"], product_type(T["coefficient"], T["gradient"])),
                    "w = w - eta G"),
                   ("trace", product_type(T["trace"], T["coefficient"]), "x = x * base^n"),
                   ("coefficient", product_type(T["coefficient"], T["coefficient"]), "base^n")]
    for quantity, source, text in fixed_lines:
        if csim_aborts(source, T[quantity]):
            raise _error(where, quantity, T[quantity], text, source)


def _check(statements: list[Assign], names: dict[str, FixedType], T: dict, where: str, what: str) -> None:
    def leaf(name: str) -> FixedType:
        return names[name]
    for a in statements:
        source = expression_type(a.expr, leaf)
        if csim_aborts(source, T[a.quantity]):
            raise _error(where, a.quantity, T[a.quantity], f"{a.target} = {a.expr} ({what})", source)


def _error(where: str, quantity: str, target: FixedType, statement: str, source: FixedType) -> EpropGenError:
    return EpropGenError(f"{where}: [hls.precision] {quantity} = \"{target.cpp}\" cannot hold `{statement}`: "
                         f"its value (exact type ap_fixed<{source.W}, {source.I}>) lies entirely below half "
                         f"of the type's step, so it always rounds to 0 or one step, and the C simulation "
                         f"aborts on it; give {quantity} more fraction bits (or use AP_TRN)")
