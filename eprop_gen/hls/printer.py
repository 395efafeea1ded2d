"""plan.py's typed statements as ap_fixed C++ (the firmware's lines).

ap_fixed keeps every bit of + - * inside an expression and quantizes on assignment, which is the
statements' meaning (plan.py), so an expression prints as itself; Abs and Max(0, .) print as the
exact helpers eg_abs / eg_max0 of the firmware header."""
from __future__ import annotations

import sympy as sp

from .plan import Assign, Constant


def cpp_expr(expr: sp.Expr, names: dict[str, str]) -> str:
    """names: the C++ spelling of a variable or constant (e.g. 'k0' -> 'rec_k0'); others as named."""
    if isinstance(expr, sp.Symbol):
        return names.get(expr.name, expr.name)
    if expr.is_Integer:
        return str(int(expr))
    if isinstance(expr, sp.Add):
        return "(" + " + ".join(cpp_expr(a, names) for a in expr.args) + ")"
    if isinstance(expr, sp.Mul):
        if expr.args[0] == -1:
            rest = expr.args[1:]
            return "(-" + (cpp_expr(rest[0], names) if len(rest) == 1 else cpp_expr(sp.Mul(*rest, evaluate=False), names)) + ")"
        return "(" + " * ".join(cpp_expr(a, names) for a in expr.args) + ")"
    if isinstance(expr, sp.Abs):
        return f"eg_abs({cpp_expr(expr.args[0], names)})"
    if isinstance(expr, sp.Max):
        (rest,) = [a for a in expr.args if a != 0]
        return f"eg_max0({cpp_expr(rest, names)})"
    if isinstance(expr, sp.Pow) and expr.exp.is_Integer and 2 <= int(expr.exp) <= 4:
        base = cpp_expr(expr.base, names)
        return "(" + " * ".join([base] * int(expr.exp)) + ")"
    relations = {sp.GreaterThan: ">=", sp.StrictGreaterThan: ">", sp.LessThan: "<=", sp.StrictLessThan: "<"}
    if type(expr) in relations:
        return f"({cpp_expr(expr.lhs, names)} {relations[type(expr)]} {cpp_expr(expr.rhs, names)})"
    raise ValueError(f"cannot print {expr!r} for the FPGA")


def cpp_assign(statement: Assign, names: dict[str, str], target: str | None = None) -> str:
    """`target = expr;` (the target quantized to its type by the assignment)."""
    return f"{target or names.get(statement.target, statement.target)} = {cpp_expr(statement.expr, names)};"


def cpp_constant(c: Constant, prefix: str = "") -> str:
    """A constant of its quantity's type, quantized by ap_fixed from the double (17 digits: the same
    double read back)."""
    return f"static const {c.quantity}_t {prefix}{c.name} = {float(c.value):.17g};"
