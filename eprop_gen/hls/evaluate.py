"""Evaluate plan.py's typed statements for many neurons at once, in float64 or in fixed point.

The arithmetic comes from a backend: `Float64` (plain numpy: what the statements mean without
quantization) or `Fixed` (fixed.py: exact + - * and one quantization per assignment, as ap_fixed
does). The expression walk is the same for both, so the two modes differ only in arithmetic."""
from __future__ import annotations

import numpy as np
import sympy as sp

from .fixed import from_double
from .fixed_array import ExactArray, maximum
from .plan import Assign, Constant


class Float64:
    """No quantization: the reference the fixed-point results are compared with."""

    def __init__(self, precision=None):
        self.precision = precision

    def constant(self, c: Constant, shape):
        return np.full(shape, c.value)

    def integer(self, k: int, shape):
        return np.full(shape, float(k))

    def from_bits(self, bits):
        """0/1 per element (a spike) as a value of the arithmetic."""
        return np.asarray(bits, dtype=np.float64)

    def quantize(self, value, quantity: str):
        return np.asarray(value, dtype=np.float64)

    def absolute(self, value):
        return np.abs(value)

    def max0(self, value):
        return np.maximum(value, 0.0)

    def scatter(self, targets, values, k: int, n: int):
        """values[:k] placed at targets (n entries, 0 elsewhere)."""
        out = np.zeros(n)
        np.add.at(out, targets, np.asarray(values)[:k])
        return out

    def to_float(self, value) -> np.ndarray:
        return np.asarray(value, dtype=np.float64)

    def from_float(self, value, quantity: str):
        return np.asarray(value, dtype=np.float64)


def evaluate(expr: sp.Expr, env: dict, constants: dict[str, Constant], backend, shape):
    """The exact value of expr (before the assignment's quantization)."""
    if isinstance(expr, sp.Symbol):
        name = expr.name
        if name in env:
            return env[name]
        return backend.constant(constants[name], shape)
    if expr.is_Integer:
        return backend.integer(int(expr), shape)
    args = [evaluate(a, env, constants, backend, shape) for a in expr.args] if not isinstance(expr, sp.Max) else None
    if isinstance(expr, sp.Add):
        out = args[0]
        for a in args[1:]:
            out = out + a
        return out
    if isinstance(expr, sp.Mul):
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if isinstance(expr, sp.Abs):
        return backend.absolute(args[0])
    if isinstance(expr, sp.Max):
        zero = [a for a in expr.args if a == 0]
        rest = [a for a in expr.args if a != 0]
        if len(zero) != 1 or len(rest) != 1:
            raise ValueError(f"only Max(0, x) is supported on chip, got {expr}")
        return backend.max0(evaluate(rest[0], env, constants, backend, shape))
    if isinstance(expr, sp.Pow) and expr.exp.is_Integer and 2 <= int(expr.exp) <= 4:
        base = args[0]
        out = base
        for _ in range(int(expr.exp) - 1):
            out = out * base
        return out
    if isinstance(expr, (sp.GreaterThan, sp.StrictGreaterThan, sp.LessThan, sp.StrictLessThan)):
        lhs, rhs = args
        return {sp.GreaterThan: lambda: lhs >= rhs, sp.StrictGreaterThan: lambda: lhs > rhs,
                sp.LessThan: lambda: lhs <= rhs, sp.StrictLessThan: lambda: lhs < rhs}[type(expr)]()
    raise ValueError(f"cannot evaluate {expr!r} on chip ({type(expr).__name__})")


def assign(statement: Assign, env: dict, constants: dict[str, Constant], backend, shape):
    """The statement's value, quantized to its target's type."""
    return backend.quantize(evaluate(statement.expr, env, constants, backend, shape), statement.quantity)


def compile_assign(statement: Assign, constants: dict[str, Constant], backend):
    """assign() with the expression walk done once: f(env, shape) -> the quantized value (the
    simulator runs the same statements for every step and every replayed row)."""
    value = compile_expr(statement.expr, constants, backend)
    quantity = statement.quantity
    return lambda env, shape: backend.quantize(value(env, shape), quantity)


def compile_expr(expr: sp.Expr, constants: dict[str, Constant], backend):
    """evaluate() as a closure f(env, shape); constants are made once per shape."""
    if isinstance(expr, sp.Symbol) or expr.is_Integer:
        name = expr.name if isinstance(expr, sp.Symbol) else None
        cache: dict = {}

        def leaf(env, shape):
            if name in env:
                return env[name]
            if shape not in cache:
                cache[shape] = backend.constant(constants[name], shape) if name is not None \
                    else backend.integer(int(expr), shape)
            return cache[shape]
        return leaf
    if isinstance(expr, (sp.Add, sp.Mul)):
        parts = [compile_expr(a, constants, backend) for a in expr.args]
        add = isinstance(expr, sp.Add)

        def combine(env, shape):
            out = parts[0](env, shape)
            for part in parts[1:]:
                out = out + part(env, shape) if add else out * part(env, shape)
            return out
        return combine
    # the rest (Abs, Max, powers, comparisons) is rare: evaluate's walk
    return lambda env, shape: evaluate(expr, env, constants, backend, shape)


class Fixed:
    """ap_fixed arithmetic (fixed.py): exact + - * Abs Max, one quantization per assignment."""

    def __init__(self, precision: dict):
        self.precision = precision          # quantity -> FixedType

    def constant(self, c: Constant, shape):
        T = self.precision[c.quantity]
        return ExactArray.of(np.full(shape, from_double(c.value, T), dtype=object if not T.fits_int64 else np.int64), T)

    def integer(self, k: int, shape):
        return ExactArray(np.full(shape, k, dtype=np.int64), 0)

    def from_bits(self, bits):
        return ExactArray(np.asarray(bits, dtype=np.int64), 0, 1)

    def quantize(self, value, quantity: str):
        T = self.precision[quantity]
        return ExactArray.of(value.to(T), T)

    def absolute(self, value):
        return abs(value)

    def max0(self, value):
        return maximum(value, 0)

    def scatter(self, targets, values, k: int, n: int):
        out = np.zeros(n, dtype=values.k.dtype)
        np.add.at(out, np.asarray(targets)[:k], values.k[:k])
        return ExactArray(out, values.F, values.bits + int(max(k, 1)).bit_length())   # up to k values per target

    def to_float(self, value) -> np.ndarray:
        return value.to_double()

    def from_float(self, value, quantity: str):
        return ExactArray.from_double(np.asarray(value, dtype=np.float64), self.precision[quantity])
