"""Fixed-point arithmetic that reproduces Xilinx's `ap_fixed<W, I, Q, O>` bit for bit (the firmware's
arithmetic, docs/design/hls.md "Fixed-point arithmetic"), for scalars and for numpy arrays.

Representation. A value of type T = ap_fixed<W, I, Q, O> (or ap_ufixed) is an integer k meaning
k * 2**-F, F = W - I fraction bits (F may be negative when I > W, and larger than W when I <= 0);
signed types hold k in [-2**(W-1), 2**(W-1)), unsigned ones k in [0, 2**W). An exact intermediate
is an `Exact(k, F)` (or an `ExactArray` of them): any integer k, any F.

What ap_fixed does, and what this module does:
- `a + b`, `a - b`, `a * b` and unary `-a` of ap_fixed values give a result type wide enough for the
  exact result (ap_fixed_base::RType: a product has W1 + W2 bits and I1 + I2 integer bits; a sum
  max(I1, I2) + 1 integer bits and max(F1, F2) fraction bits; `-a` is ap_fixed<W + 1, I + 1>, so
  even the negation of the most negative value is exact). An expression therefore keeps every bit:
  `Exact` arithmetic is exact (Python integers; numpy int64 where a bound from the operands' types
  proves that every intermediate fits in 62 bits, object arrays of Python integers otherwise).
- Quantization happens once, when an exact value is assigned to a variable of type T
  (`T v = expr;`): `quantize(k, F_src, T)` / `Exact.to(T)`. First rounding to T's F fraction bits
  by Q: AP_TRN towards -inf (floor), AP_RND half an LSB up (ties towards +inf: -2.5 -> -2),
  AP_RND_CONV ties to even; then overflow by O: AP_SAT clamps to [T.kmin, T.kmax], AP_WRAP keeps
  the low W bits (two's complement for signed types). Overflow is judged on the rounded value,
  so rounding up past the maximum saturates (AP_SAT) or wraps (AP_WRAP).
- `T v = x;` for a double x (`from_double`): the double's exact value, quantized as above. Two
  quirks of ap_fixed's constructor are reproduced: +-inf is taken as +-2**1024 (so AP_SAT gives
  the extreme, AP_WRAP gives 0 for every type with I <= 1024), and a subnormal double's exponent
  field 0 is decoded like a normal one (the value (2**52 + mantissa) * 2**-1075 instead of
  mantissa * 2**-1074; visible only with F >= 1022). NaN is refused with ValueError (ap_fixed
  prints a warning and makes up bits).
- `to_double`: ap_fixed's to_double rounds to the nearest double, ties to even (exact for W <= 53).
- Comparisons of ap_fixed values of any two types, and with ints, are exact (`Exact` compares by
  value). Not modelled: comparing with a *double* (`v > 0.5`), which ap_fixed does as
  `v.to_double() > 0.5` (read from the header; it rounds for W > 53): compare with ints or typed
  constants. Arithmetic with a double does not compile (`v * 0.5`, `v + 0.5`: ambiguous
  overloads), so constants are typed ap_fixed values (`from_double` of their double).
- C++'s `?:` needs one type for both branches, and ap_fixed gives none for `d < 0 ? -d : d`
  (-d is ap_fixed<W+1, I+1>, d is ap_fixed<W, I, Q, O>) or `t > 0 ? t : 0` (ap_fixed vs int): both
  are compile errors ("operands to ?: have different types"). What compiles and what it means:
  `R r = d < 0 ? R(-d) : R(d);` is quantize(|d|) (`abs(d).to(R)`); `R r = d < 0 ? T(-d) : d;`
  with T = d's type first quantizes -d to T (T's most negative value saturates to T.kmax under
  AP_SAT and stays itself under AP_WRAP), then to R; `R r = t > 0 ? t : T(0);` is
  `maximum(t, 0).to(R)`. The tests (tests/test_fixed.py) compile each of these with g++.
- A C simulation with the open headers (assertions on, no NDEBUG) aborts on an assignment with a
  rounding mode whose target LSB lies two or more places above the source's MSB ("Attempting to
  read bit beyond MSB"); `csim_aborts(source, target)` says when, and product_type / sum_type /
  difference_type / negation_type give the exact intermediate types (ap_fixed's RType).

Supported: 1 <= W <= 1024 (AP_INT_MAX_W), any integer I (ap_fixed accepts I > W and I <= 0),
signed and unsigned, Q in QUANTIZATION_MODES, O in OVERFLOW_MODES, and ap_fixed's default
saturation-bit count N = 0. Tested bit for bit against ap_fixed compiled with g++: W from 1 to 64
(and results of 72, 96 and 100 bits, products of up to 128 bits), I from W + 8 down to -2, and
two types with F > 1022 for the subnormal quirk.

Usage:
    w = FixedType.parse("ap_fixed<18,6,AP_RND_CONV,AP_SAT>")
    c = FixedType.parse("ap_fixed<24,4,AP_RND_CONV,AP_SAT>")
    kw, kc = from_double(0.3, w), from_double(0.97, c)       # integers: value * 2**F
    kw = (Exact.of(kw, w) * Exact.of(kc, c) + Exact.of(kw, w)).to(w)   # w = w * c + w;
    to_double(kw, w)
    # arrays (fixed_array.py): the same with ExactArray / from_double_array / to_double_array
    v = ExactArray.of(from_double_array(x, w), w)
    y = (v * Exact.of(kc, c)).to(w)
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

QUANTIZATION_MODES = ("AP_TRN", "AP_RND", "AP_RND_CONV")
OVERFLOW_MODES = ("AP_WRAP", "AP_SAT")
MAX_W = 1024            # ap_fixed's default AP_INT_MAX_W
INT64_BITS = 62         # an int64 intermediate is used when a bound proves |k| <= 2**62

# ap_fixed's other modes, named so that a user who asks for one is told it is not supported
_OTHER_MODES = ("AP_RND_ZERO", "AP_RND_MIN_INF", "AP_RND_INF", "AP_TRN_ZERO",
                "AP_SAT_ZERO", "AP_SAT_SYM", "AP_WRAP_SM")
_TYPE_TEXT = re.compile(r"^\s*ap_(u?)fixed\s*<(.*)>\s*$", re.S)


@dataclass(frozen=True)
class FixedType:
    """ap_fixed<W, I, Q, O> (signed) or ap_ufixed<W, I, Q, O> (unsigned)."""
    W: int
    I: int
    signed: bool = True
    Q: str = "AP_TRN"
    O: str = "AP_WRAP"

    def __post_init__(self):
        for name in ("W", "I"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ValueError(f"{self._name()}: {name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not 1 <= self.W <= MAX_W:
            raise ValueError(f"{self._name()}: the width W must be in 1..{MAX_W}, got {self.W}")
        if not isinstance(self.signed, (bool, np.bool_)):
            raise ValueError(f"{self._name()}: signed must be True or False, got {self.signed!r}")
        object.__setattr__(self, "signed", bool(self.signed))
        if self.Q not in QUANTIZATION_MODES:
            raise ValueError(f"{self._name()}: {_mode_problem(self.Q, 'quantization', QUANTIZATION_MODES)}")
        if self.O not in OVERFLOW_MODES:
            raise ValueError(f"{self._name()}: {_mode_problem(self.O, 'overflow', OVERFLOW_MODES)}")

    def _name(self) -> str:
        return f"ap_{'' if self.signed else 'u'}fixed<{self.W}, {self.I}, {self.Q}, {self.O}>"

    @classmethod
    def parse(cls, text: str) -> "FixedType":
        """From C++ type text: `ap_fixed<18, 6, AP_RND_CONV, AP_SAT>`, `ap_ufixed<8,3>` (Q and O
        default to AP_TRN and AP_WRAP as in ap_fixed; a fifth argument, N, must be 0)."""
        if not isinstance(text, str):
            raise ValueError(f"expected an ap_fixed type as text, got {text!r}")
        m = _TYPE_TEXT.match(text)
        if not m:
            raise ValueError(f"expected ap_fixed<W, I[, Q[, O]]> or ap_ufixed<...>, got {text!r}")
        args = [a.strip() for a in m.group(2).split(",")]
        if not 2 <= len(args) <= 5:
            raise ValueError(f"{text!r}: expected 2 to 4 template arguments (W, I[, Q[, O]]), got {len(args)}")
        ints = []
        for name, a in zip(("W", "I"), args):
            if not re.fullmatch(r"[+-]?\d+", a):
                raise ValueError(f"{text!r}: {name} must be an integer, got {a!r}")
            ints.append(int(a))
        q = args[2] if len(args) > 2 else "AP_TRN"
        o = args[3] if len(args) > 3 else "AP_WRAP"
        if len(args) == 5 and args[4] not in ("0", "+0"):
            raise ValueError(f"{text!r}: only N = 0 saturation bits is supported, got {args[4]!r}")
        try:
            return cls(ints[0], ints[1], signed=not m.group(1), Q=q, O=o)
        except ValueError as e:
            raise ValueError(f"{text!r}: {str(e).split(': ', 1)[1]}") from None

    @property
    def F(self) -> int:
        """Fraction bits: a value is k * 2**-F."""
        return self.W - self.I

    @property
    def cpp(self) -> str:
        return f"ap_{'' if self.signed else 'u'}fixed<{self.W}, {self.I}, {self.Q}, {self.O}>"

    def __str__(self) -> str:
        return self.cpp

    @property
    def kmin(self) -> int:
        return -(1 << (self.W - 1)) if self.signed else 0

    @property
    def kmax(self) -> int:
        return (1 << (self.W - 1)) - 1 if self.signed else (1 << self.W) - 1

    @property
    def magnitude_bits(self) -> int:
        """A bound on T's integers: |k| <= 2**magnitude_bits."""
        return self.W - 1 if self.signed else self.W

    def check(self, k: int) -> int:
        """k, if it is one of T's integers; ValueError otherwise."""
        if not self.kmin <= k <= self.kmax:
            raise ValueError(f"{k} is not an integer of {self.cpp} (range {self.kmin}..{self.kmax})")
        return k

    @property
    def fits_int64(self) -> bool:
        return self.kmin >= -(1 << 63) and self.kmax < (1 << 63)

    @property
    def min(self) -> float:
        return _ldexp(self.kmin, -self.F)

    @property
    def max(self) -> float:
        """The largest value (as the nearest double: exact for W <= 53)."""
        return _ldexp(self.kmax, -self.F)

    @property
    def eps(self) -> float:
        """One LSB, 2**-F."""
        return math.ldexp(1.0, -self.F)


def product_type(a: FixedType, b: FixedType) -> FixedType:
    """The type of ap_fixed's `a * b` (exact): W1 + W2 bits, I1 + I2 integer bits."""
    return FixedType(a.W + b.W, a.I + b.I, a.signed or b.signed)


def sum_type(a: FixedType, b: FixedType) -> FixedType:
    """The type of ap_fixed's `a + b` (exact): one integer bit more than the wider operand (one
    more again for an unsigned operand next to a signed one), the finer fraction."""
    i = max(a.I + (b.signed and not a.signed), b.I + (a.signed and not b.signed)) + 1
    return FixedType(i + max(a.F, b.F), i, a.signed or b.signed)


def difference_type(a: FixedType, b: FixedType) -> FixedType:
    """The type of ap_fixed's `a - b` (exact): sum_type's shape, always signed."""
    t = sum_type(a, b)
    return FixedType(t.W, t.I, True)


def negation_type(a: FixedType) -> FixedType:
    """The type of ap_fixed's `-a` (exact, also for the most negative value): ap_fixed<W+1, I+1>."""
    return FixedType(a.W + 1, a.I + 1, True)


def csim_aborts(source: FixedType, target: FixedType) -> bool:
    """Whether `target v = source_value;` aborts in a C simulation with the open headers (without
    NDEBUG): with a rounding mode, ap_fixed's assignment reads the bit below the target's LSB before
    checking that it lies beyond the source's MSB, and ap_private asserts "Attempting to read bit
    beyond MSB" when it does (the target's LSB two or more places above the source's MSB). (With NDEBUG
    the result is the correctly rounded one, which quantize() gives.) A generator should not emit
    such an assignment: the value rounds to 0 or one LSB anyway."""
    return target.Q != "AP_TRN" and source.F - target.F > source.W


def _mode_problem(mode, kind: str, supported) -> str:
    if mode in _OTHER_MODES:
        return f"the {kind} mode {mode} is not supported (supported: {', '.join(supported)})"
    return f"unknown {kind} mode {mode!r} (supported: {', '.join(supported)})"


def _ldexp(k: int, e: int) -> float:
    """k * 2**e as the nearest double, ties to even (float(int) rounds so; ldexp is exact then)."""
    return math.ldexp(float(k), e) if k else 0.0


# ---------------------------------------------------------------------------------------------
# scalars

def _round(k: int, s: int, q: str) -> int:
    """k * 2**-s rounded to an integer by q (s > 0)."""
    floor = k >> s
    if q == "AP_TRN":
        return floor
    rest = k - (floor << s)             # 0 <= rest < 2**s
    half = 1 << (s - 1)
    if rest > half or (rest == half and (q == "AP_RND" or floor & 1)):
        return floor + 1
    return floor


def _overflow(k: int, T: FixedType) -> int:
    if T.kmin <= k <= T.kmax:
        return k
    if T.O == "AP_SAT":
        return T.kmax if k > T.kmax else T.kmin
    k &= (1 << T.W) - 1
    return k - (1 << T.W) if T.signed and k >> (T.W - 1) else k


def quantize(k: int, F_src: int, T: FixedType) -> int:
    """`T v = e;` for the exact value e = k * 2**-F_src: T's integer (rounding by T.Q, then
    overflow by T.O)."""
    k, s = int(k), F_src - T.F
    k = _round(k, s, T.Q) if s > 0 else k << -s
    return _overflow(k, T)


def _double_parts(x: float) -> tuple[int, int]:
    """(m, F) such that ap_fixed's constructor from the double x sees the value m * 2**-F."""
    bits = struct.unpack("<Q", struct.pack("<d", float(x)))[0]
    if not bits & ~(1 << 63):
        return 0, 0
    exponent, mantissa = (bits >> 52) & 0x7FF, bits & ((1 << 52) - 1)
    if exponent == 0x7FF and mantissa:
        raise ValueError("cannot convert NaN to a fixed-point value")
    m = (1 << 52) | mantissa            # also for subnormals and inf, as ap_fixed decodes them
    return (-m if bits >> 63 else m), 1075 - exponent


def from_double(x: float, T: FixedType) -> int:
    """`T v = x;` for a double x: T's integer."""
    return quantize(*_double_parts(x), T)


def to_double(k: int, T: FixedType) -> float:
    """ap_fixed's to_double(): the nearest double, ties to even."""
    return _ldexp(int(k), -T.F)


@dataclass(frozen=True, eq=False)
class Exact:
    """An exact value k * 2**-F: + - * and unary - / abs() are exact, comparisons are by value,
    `.to(T)` is the assignment to T. Operands may be Exact or Python ints."""
    k: int
    F: int

    def __post_init__(self):
        object.__setattr__(self, "k", int(self.k))
        object.__setattr__(self, "F", int(self.F))

    @classmethod
    def of(cls, k: int, T: FixedType) -> "Exact":
        """The value of T's integer k."""
        return cls(T.check(int(k)), T.F)

    @classmethod
    def from_double(cls, x: float, T: FixedType) -> "Exact":
        """A constant: the double x as T holds it."""
        return cls(from_double(x, T), T.F)

    def to(self, T: FixedType) -> int:
        return quantize(self.k, self.F, T)

    def __float__(self) -> float:
        return _ldexp(self.k, -self.F)

    @property
    def fraction(self) -> Fraction:
        return Fraction(self.k) * Fraction(2) ** -self.F

    def _pair(self, other):
        other = _as_exact(other)
        if other is NotImplemented:
            return None
        F = max(self.F, other.F)
        return self.k << (F - self.F), other.k << (F - other.F), F

    def __add__(self, other):
        p = self._pair(other)
        return NotImplemented if p is None else Exact(p[0] + p[1], p[2])

    def __sub__(self, other):
        p = self._pair(other)
        return NotImplemented if p is None else Exact(p[0] - p[1], p[2])

    def __mul__(self, other):
        other = _as_exact(other)
        return NotImplemented if other is NotImplemented else Exact(self.k * other.k, self.F + other.F)

    def __radd__(self, other):
        return self + other

    def __rsub__(self, other):
        return -self + other

    def __rmul__(self, other):
        return self * other

    def __neg__(self):
        return Exact(-self.k, self.F)

    def __abs__(self):
        return Exact(abs(self.k), self.F)

    def _cmp(self, other, op):
        p = self._pair(other)
        return NotImplemented if p is None else op(p[0], p[1])

    def __eq__(self, other):
        return self._cmp(other, lambda a, b: a == b)

    def __ne__(self, other):
        return self._cmp(other, lambda a, b: a != b)

    def __lt__(self, other):
        return self._cmp(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._cmp(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._cmp(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._cmp(other, lambda a, b: a >= b)

    def __hash__(self):
        f = self.fraction
        return hash((f.numerator, f.denominator))

    def __repr__(self):
        return f"Exact({self.k}, F={self.F}) = {float(self)!r}"


def _as_exact(x):
    if isinstance(x, Exact):
        return x
    if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
        return Exact(int(x), 0)
    return NotImplemented
