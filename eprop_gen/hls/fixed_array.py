"""fixed.py's arithmetic for numpy arrays: `ExactArray` and the array forms of quantize,
from_double and to_double, with the same results as the scalar functions (tests/test_fixed.py
compares them). int64 where a bound from the operands' types proves every intermediate fits in 62
bits, object arrays of Python integers otherwise."""
from __future__ import annotations

import math

import numpy as np

from .fixed import INT64_BITS, FixedType, Exact, _as_exact, _ldexp, _overflow, quantize, from_double, to_double

def _as_k_array(k) -> np.ndarray:
    """int64 for integer arrays that fit, object (Python ints) otherwise."""
    k = np.asarray(k)
    if k.dtype == object:
        return k
    if k.dtype.kind in "iu":
        if k.dtype.kind == "i" or k.dtype.itemsize < 8:
            return k.astype(np.int64, copy=False)
        return k.astype(object)
    if k.dtype.kind == "b":
        return k.astype(np.int64)
    raise TypeError(f"fixed-point integers must be an integer array, got dtype {k.dtype}")


def _data_bits(k: np.ndarray) -> int:
    """The smallest b with |k| <= 2**b for every element (0 for an empty array)."""
    if k.size == 0:
        return 0
    return max(abs(int(k.min())), abs(int(k.max()))).bit_length()


def _as_objects(k: np.ndarray) -> np.ndarray:
    """An object array of Python ints (numpy's own object conversion of int64 gives Python ints)."""
    return k if k.dtype == object else k.astype(object)


def _out(values: np.ndarray, T: FixedType) -> np.ndarray:
    """T's integers with the dtype T calls for: int64 if T's range fits, else object."""
    if T.fits_int64:
        return values.astype(np.int64) if values.dtype == object else values
    return _as_objects(values)


def quantize_array(k, F_src: int, T: FixedType, bits: int | None = None) -> np.ndarray:
    """quantize() for each element. bits: a bound |k| <= 2**bits (computed from k if not given);
    int64 arithmetic when it proves that every intermediate fits in 62 bits and k is int64, the
    scalar quantize() per element otherwise. The result is int64 if T's range fits, else object."""
    k = _as_k_array(k)
    if bits is None:
        bits = _data_bits(k)
    s = F_src - T.F
    if k.dtype == object or bits > INT64_BITS or bits - s > INT64_BITS:
        flat = [quantize(v, F_src, T) for v in k.ravel().tolist()]
        return _out(np.array(flat, dtype=object).reshape(k.shape), T)
    if s > bits + 1:
        # |k| <= 2**bits < half an LSB: floor gives 0 or -1, the rounding modes 0
        q = -(k < 0).astype(np.int64) if T.Q == "AP_TRN" else np.zeros_like(k)
        bound = 1
    elif s > 0:                         # s <= 63: the shifts and masks below fit in int64
        q = k >> s
        if T.Q != "AP_TRN":
            rest = k & ((1 << s) - 1)   # k - q * 2**s, in [0, 2**s)
            half = 1 << (s - 1)
            up = rest > half
            if T.Q == "AP_RND":
                up |= rest == half
            else:
                up |= (rest == half) & ((q & 1) == 1)
            q = q + up
        bound = max(bits - s, 0) + 1    # |q| <= 2**(bits - s) + 1
    else:
        q = k << -s
        bound = bits - s
    if bound > INT64_BITS or not T.fits_int64:
        flat = [_overflow(v, T) for v in q.ravel().tolist()]
        return _out(np.array(flat, dtype=object).reshape(q.shape), T)
    if T.signed and bound <= T.W - 2:
        return q                        # |q| <= 2**bound < T.kmax: nothing overflows (also W >= 64)
    if T.O == "AP_SAT":
        return np.clip(q, T.kmin, T.kmax)
    q = q & ((1 << T.W) - 1)            # W <= 63 here: the mask and q mod 2**W fit
    if T.signed:
        high = q >= (1 << (T.W - 1))
        q = np.where(high, (q - (1 << (T.W - 1))) - (1 << (T.W - 1)), q)
    return q


def from_double_array(x, T: FixedType) -> np.ndarray:
    """from_double() for each element of a float64 array (int64 result if T's range fits, else object).

    Exact in float64: x * 2**F is exact when x and the product are normal doubles (or x is 0);
    its floor and the remainder y - floor(y) are exact, and so is fmod by 2**W; so rounding,
    clamping and wrapping are decided without error. Elements outside that (inf, NaN, subnormal x,
    products beyond the double range) and types wider than 63 bits go through from_double()."""
    x = np.asarray(x, dtype=np.float64)
    if T.W > 63:
        flat = [from_double(v, T) for v in x.ravel().tolist()]
        return _out(np.array(flat, dtype=object).reshape(x.shape), T)
    tiny = np.finfo(np.float64).tiny
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        y = np.ldexp(x, T.F)
        ok = (x == 0) | ((np.abs(x) >= tiny) & np.isfinite(y) & (np.abs(y) >= tiny))
    y = np.where(ok, y, 0.0)
    q = np.floor(y)
    if T.Q != "AP_TRN":
        rest = y - q
        up = rest > 0.5
        if T.Q == "AP_RND":
            up |= rest == 0.5
        else:
            up |= (rest == 0.5) & (np.fmod(q, 2.0) != 0)
        q = q + up                      # exact: |q| >= 2**53 has rest 0
    if T.O == "AP_SAT":
        top = math.ldexp(1.0, T.W - 1 if T.signed else T.W)
        bottom = -top if T.signed else 0.0
        over, under = q >= top, q < bottom
        k = np.where(over | under, 0.0, q).astype(np.int64)
        k = np.where(over, T.kmax, np.where(under, T.kmin, k))
    else:
        k = np.fmod(q, math.ldexp(1.0, T.W)).astype(np.int64)      # |k| < 2**W <= 2**63
        k &= (1 << T.W) - 1
        if T.signed:
            k = np.where(k >= (1 << (T.W - 1)), (k - (1 << (T.W - 1))) - (1 << (T.W - 1)), k)
    k = k.astype(np.int64, copy=False)
    if not ok.all():
        for index in zip(*np.nonzero(~ok)):
            k[index] = from_double(float(x[index]), T)
    return k


def to_double_array(k, T: FixedType) -> np.ndarray:
    """to_double() for each element: the nearest double, ties to even."""
    k = _as_k_array(k)
    if k.dtype == object:
        return np.array([to_double(v, T) for v in k.ravel().tolist()], dtype=np.float64).reshape(k.shape)
    return np.ldexp(k.astype(np.float64), -T.F)     # int64 -> double rounds to nearest, ties to even


class ExactArray:
    """Exact values k * 2**-F for an array k with one F: `Exact` elementwise. k is int64 while a
    bound (`bits`: |k| <= 2**bits, from the operands' types) proves every result fits in 62 bits,
    an object array of Python ints otherwise (an object k stays object, which forces the exact
    slow path: the tests compare both). Operands: ExactArray, Exact, Python ints (F = 0)."""
    __slots__ = ("k", "F", "bits")
    __array_ufunc__ = None              # ndarray <op> ExactArray: not a numpy operation (TypeError)

    def __init__(self, k, F: int, bits: int | None = None):
        """k: an integer array; bits: a bound |k| <= 2**bits that the caller guarantees (from the
        data if not given)."""
        self.k = _as_k_array(k)
        self.F = int(F)
        self.bits = _data_bits(self.k) if bits is None else int(bits)

    @classmethod
    def of(cls, k, T: FixedType) -> "ExactArray":
        """Values of type T: T's integers k (checked), whose bound on |k| is T's."""
        k = _as_k_array(k)
        if k.size and (int(k.min()) < T.kmin or int(k.max()) > T.kmax):
            bad = k[np.asarray((k < T.kmin) | (k > T.kmax), dtype=bool)].ravel()[0]
            T.check(int(bad))
        return cls(k, T.F, T.magnitude_bits)

    @classmethod
    def from_double(cls, x, T: FixedType) -> "ExactArray":
        return cls.of(from_double_array(x, T), T)

    def to(self, T: FixedType) -> np.ndarray:
        """The assignment to T: T's integers (int64 if T's range fits, else object)."""
        return quantize_array(self.k, self.F, T, self.bits)

    def to_double(self) -> np.ndarray:
        if self.k.dtype == object:
            return np.array([_ldexp(v, -self.F) for v in self.k.ravel().tolist()],
                            dtype=np.float64).reshape(self.k.shape)
        return np.ldexp(self.k.astype(np.float64), -self.F)

    @property
    def shape(self):
        return self.k.shape

    def __len__(self):
        return len(self.k)

    def __getitem__(self, index):
        k = self.k[index]
        if isinstance(k, np.ndarray):
            return ExactArray(k, self.F, self.bits)
        return Exact(int(k), self.F)

    def __repr__(self):
        return f"ExactArray(F={self.F}, bits={self.bits}, k={self.k!r})"

    # arithmetic -----------------------------------------------------------------------------

    def _pair(self, other):
        """(k1, k2, F, bits of each aligned k) for self and other at a common F, or None."""
        other = _as_exact_array(other)
        if other is None:
            return None
        F = max(self.F, other.F)
        b1, b2 = self.bits + F - self.F, other.bits + F - other.F
        return self.k, self.F, b1, other.k, other.F, b2, F

    @staticmethod
    def _aligned(k, Fk, F, use_int64):
        k = k if use_int64 else _as_objects(k)
        return k << (F - Fk) if F != Fk else k

    def _additive(self, other, sign):
        p = self._pair(other)
        if p is None:
            return NotImplemented
        k1, F1, b1, k2, F2, b2, F = p
        bits = max(b1, b2) + 1
        use = bits <= INT64_BITS and k1.dtype != object and k2.dtype != object
        a, b = self._aligned(k1, F1, F, use), self._aligned(k2, F2, F, use)
        return ExactArray(a + b if sign > 0 else a - b, F, bits)

    def __add__(self, other):
        return self._additive(other, 1)

    def __sub__(self, other):
        return self._additive(other, -1)

    def __radd__(self, other):
        return self._additive(other, 1)

    def __rsub__(self, other):
        return (-self)._additive(other, 1)

    def __mul__(self, other):
        other = _as_exact_array(other)
        if other is None:
            return NotImplemented
        bits = self.bits + other.bits
        use = bits <= INT64_BITS and self.k.dtype != object and other.k.dtype != object
        a, b = (self.k, other.k) if use else (_as_objects(self.k), _as_objects(other.k))
        return ExactArray(a * b, self.F + other.F, bits)

    def __rmul__(self, other):
        return self * other

    def _exact_k(self) -> np.ndarray:
        """k in a dtype in which -k and |k| are exact (int64 only if |k| <= 2**62)."""
        return self.k if self.bits <= INT64_BITS else _as_objects(self.k)

    def __neg__(self):
        return ExactArray(-self._exact_k(), self.F, self.bits)

    def __abs__(self):
        return ExactArray(np.abs(self._exact_k()), self.F, self.bits)

    def _compare(self, other, op):
        p = self._pair(other)
        if p is None:
            return NotImplemented
        k1, F1, b1, k2, F2, b2, F = p
        use = max(b1, b2) <= INT64_BITS and k1.dtype != object and k2.dtype != object
        return np.asarray(op(self._aligned(k1, F1, F, use), self._aligned(k2, F2, F, use)), dtype=bool)

    def __lt__(self, other):
        return self._compare(other, np.less)

    def __le__(self, other):
        return self._compare(other, np.less_equal)

    def __gt__(self, other):
        return self._compare(other, np.greater)

    def __ge__(self, other):
        return self._compare(other, np.greater_equal)

    def __eq__(self, other):
        return self._compare(other, np.equal)

    def __ne__(self, other):
        return self._compare(other, np.not_equal)

    __hash__ = None

    def where(self, condition, other) -> "ExactArray":
        """condition ? self : other, elementwise (the value of C++'s ?: once both branches
        have one type that holds them exactly)."""
        return where(condition, self, other)


def _as_exact_array(x) -> ExactArray | None:
    if isinstance(x, ExactArray):
        return x
    x = _as_exact(x)
    if x is NotImplemented:
        return None
    bits = abs(x.k).bit_length()
    return ExactArray(np.array(x.k, dtype=np.int64 if bits <= INT64_BITS else object), x.F, bits)


def where(condition, a, b) -> ExactArray:
    """condition ? a : b elementwise for exact values (ExactArray, Exact or ints)."""
    a, b = _as_exact_array(a), _as_exact_array(b)
    if a is None or b is None:
        raise TypeError("where() takes exact values (ExactArray, Exact or int)")
    F = max(a.F, b.F)
    bits = max(a.bits + F - a.F, b.bits + F - b.F)
    use = bits <= INT64_BITS and a.k.dtype != object and b.k.dtype != object
    ka, kb = ExactArray._aligned(a.k, a.F, F, use), ExactArray._aligned(b.k, b.F, F, use)
    return ExactArray(np.where(np.asarray(condition, dtype=bool), ka, kb), F, bits)


def maximum(a, b) -> ExactArray:
    """max(a, b) elementwise, exact (e.g. `t > 0 ? t : T(0)` is maximum(t, 0))."""
    a = _as_exact_array(a)
    return where(a > b, a, b)


def minimum(a, b) -> ExactArray:
    """min(a, b) elementwise, exact."""
    a = _as_exact_array(a)
    return where(a < b, a, b)
