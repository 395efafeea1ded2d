"""fixed.py reproduces ap_fixed bit for bit: random and edge-case inputs run through real ap_fixed
(the open headers, compiled with g++) and through fixed.py must give the same bit patterns, for every
supported rounding (AP_TRN, AP_RND, AP_RND_CONV) and overflow (AP_WRAP, AP_SAT) mode, signed and
unsigned, narrow and wide types, I > W and I <= 0 (ap_fixed accepts both; covered below). The C++
operations: `T v = x;` of a double, the assignment of an exact product / sum / difference / a*b + c*d
of differently typed values to a third type, unary minus, the abs and max(0, .) patterns that compile
(`d < 0 ? -d : d` and `t > 0 ? t : 0` themselves do not: checked), comparisons and to_double().

All cases go into two C++ programs, compiled once for the module and in parallel (g++ -O1 spends
~0.1 s on each instantiated ap_fixed conversion, so the types are chosen to give every mode each kind
of shape rather than as a full product)."""
import math
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pytest

from eprop_gen.hls.ap_types import ap_types_dir
from eprop_gen.hls.fixed import (
    OVERFLOW_MODES, QUANTIZATION_MODES, Exact, FixedType, csim_aborts, difference_type, from_double,
    negation_type, product_type, quantize, sum_type, to_double)
from eprop_gen.hls.fixed_array import (ExactArray, from_double_array, maximum, minimum, quantize_array,
                                       to_double_array, where)

MODES = [(q, o) for q in QUANTIZATION_MODES for o in OVERFLOW_MODES]
# (W, I): I > W, I < 0, I = 0, a single bit, the design's defaults, > 53 bits (beyond a double), 64
SHAPES = [(1, 1), (2, 1), (5, 8), (6, -2), (7, 0), (8, 3), (16, 2), (18, 6), (24, 10), (32, 12),
          (40, 16), (53, 20), (60, 62), (64, 32)]


def T(W, I, signed=True, Q="AP_TRN", O="AP_WRAP"):
    return FixedType(W, I, signed, Q, O)


# ------------------------------------------------------------------------------------------------
# pure Python: the type, and an independent reference for the rounding

def test_type_text_round_trips_and_bad_text_is_refused():
    t = FixedType.parse("ap_fixed<18,6,AP_RND_CONV,AP_SAT>")
    assert (t.W, t.I, t.signed, t.Q, t.O, t.F) == (18, 6, True, "AP_RND_CONV", "AP_SAT", 12)
    assert t.cpp == "ap_fixed<18, 6, AP_RND_CONV, AP_SAT>" and FixedType.parse(t.cpp) == t
    assert FixedType.parse(" ap_ufixed < 8 , -3 > ") == FixedType(8, -3, False, "AP_TRN", "AP_WRAP")
    assert FixedType.parse("ap_fixed<8, 3, AP_RND>").O == "AP_WRAP"
    assert FixedType.parse("ap_fixed<8, 3, AP_RND, AP_SAT, 0>").O == "AP_SAT"
    assert (t.min, t.max, t.eps) == (-32.0, 32.0 - 2.0 ** -12, 2.0 ** -12)
    assert (T(8, 3, False).min, T(8, 3, False).max, T(8, 3, False).eps) == (0.0, 8.0 - 2.0 ** -5, 2.0 ** -5)
    assert (T(5, 8).kmin, T(5, 8).kmax, T(5, 8).eps) == (-16, 15, 8.0)
    for text, message in [("float", "expected ap_fixed<W, I"), ("ap_fixed<8>", "2 to 4 template arguments"),
                          ("ap_fixed<8,x>", "I must be an integer"), ("ap_fixed<0,0>", "W must be in 1..1024"),
                          ("ap_fixed<8,3,AP_RND_ZERO>", "AP_RND_ZERO is not supported"),
                          ("ap_fixed<8,3,AP_RND,AP_SAT_SYM>", "AP_SAT_SYM is not supported"),
                          ("ap_fixed<8,3,AP_RND,AP_SATT>", "unknown overflow mode 'AP_SATT'"),
                          ("ap_fixed<8,3,AP_RND,AP_SAT,2>", "only N = 0")]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("<", "<")):
            FixedType.parse(text)


def _reference_quantize(value: Fraction, t: FixedType) -> int:
    """The definition, in rationals: round value * 2**F by Q, then overflow by O."""
    scaled = value * Fraction(2) ** t.F
    floor = math.floor(scaled)
    rest = scaled - floor
    if t.Q == "AP_TRN":
        k = floor
    elif rest != Fraction(1, 2):
        k = floor + (rest > Fraction(1, 2))
    else:
        k = floor + 1 if t.Q == "AP_RND" or floor % 2 else floor
    if t.O == "AP_SAT":
        return min(max(k, t.kmin), t.kmax)
    k %= 1 << t.W
    return k - (1 << t.W) if t.signed and k >= 1 << (t.W - 1) else k


def test_quantize_matches_the_definition_in_rationals():
    rng = random.Random(1)
    for q, o in MODES:
        for W, I in SHAPES:
            for signed in (True, False):
                t = T(W, I, signed, q, o)
                for _ in range(60):
                    F_src = t.F + rng.choice([-5, -1, 0, 1, 2, 3, 7, 40, 90])
                    k = rng.randrange(-(1 << (W + 6)), 1 << (W + 6)) >> rng.randrange(0, W + 6)
                    if rng.random() < 0.3:                        # exact ties and near ties
                        k = (rng.randrange(-(1 << W), 1 << W) * 2 + 1) << max(F_src - t.F - 1, 0)
                        k += rng.choice([0, 0, 1, -1])
                    want = _reference_quantize(Fraction(k) * Fraction(2) ** -F_src, t)
                    assert quantize(k, F_src, t) == want, (t, k, F_src)


def test_exact_arithmetic_is_exact():
    a, b = Exact(-3, 2), Exact(5, -1)          # -0.75 and 10
    assert (a + b).fraction == Fraction(37, 4) and (a - b).fraction == Fraction(-43, 4)
    assert (a * b).fraction == Fraction(-15, 2) and (-a).fraction == Fraction(3, 4) and abs(a) == -a
    assert a + 1 == Exact(1, 2) and 1 - a == Exact(7, 2) and 2 * a == Exact(-3, 1)
    assert a < 0 < b and a != b and Exact(2, 1) == 1 and hash(Exact(2, 1)) == hash(Exact(1, 0))
    assert max(a, Exact(0, 0)) == 0 and min(b, 3) == 3
    t = T(8, 3, True, "AP_RND", "AP_SAT")
    assert Exact.from_double(1.03125, t) == Exact(33, 5) and Exact.from_double(100.0, t).to(t) == t.kmax


def test_nan_is_refused_and_inf_is_2_to_the_1024():
    with pytest.raises(ValueError, match="NaN"):
        from_double(math.nan, T(8, 3))
    with pytest.raises(ValueError, match="NaN"):
        from_double_array(np.array([1.0, math.nan]), T(8, 3))
    assert from_double(math.inf, T(8, 3, True, "AP_TRN", "AP_SAT")) == 127
    assert from_double(-math.inf, T(8, 3, True, "AP_TRN", "AP_SAT")) == -128
    assert from_double(math.inf, T(8, 3)) == 0 == from_double(-math.inf, T(8, 3, False))


# ------------------------------------------------------------------------------------------------
# the vectorised paths agree with the scalar ones (int64 where provable, object arrays otherwise)

def _ks(t: FixedType, n: int, rng: random.Random) -> list[int]:
    """Random integers of t: uniform, extremes, small."""
    extremes = [v for v in (t.kmin, t.kmin + 1, -1, 0, 1, t.kmax - 1, t.kmax) if t.kmin <= v <= t.kmax]
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.15:
            out.append(rng.choice(extremes))
        elif r < 0.3:
            out.append(min(max(rng.randrange(-8, 9), t.kmin), t.kmax))
        elif r < 0.5:                           # uniform over a random number of low bits
            b = rng.randrange(0, t.W)
            out.append(min(max(rng.randrange(-(1 << b), 1 << b), t.kmin), t.kmax))
        else:
            out.append(rng.randrange(t.kmin, t.kmax + 1))
    return out


def _clip(k: int, t: FixedType) -> int:
    return min(max(k, t.kmin), t.kmax)


def _ties(ks: list[int], t: FixedType, s: int, rng: random.Random, share=0.4) -> list[int]:
    """A share of t's integers ks replaced by ones whose low s bits are 10...0 (a tie when they are
    dropped), or one off it."""
    if not 1 <= s <= t.W:
        return ks
    return [_clip((k >> s << s) + (1 << (s - 1)) + rng.choice([0, 0, 0, 1, -1]), t) if rng.random() < share else k
            for k in ks]


def _operand_ties(name, a, b, a_t, b_t, r, rng, share=0.4):
    """Pairs (a, b) changed in place so that a share of `a op b` are ties of r's rounding: for a
    product an odd multiple of 2**p times one of 2**q with p + q one below the dropped bits; for a
    sum or difference the finer operand's low bits set to make the exact result's dropped bits 10...0."""
    for i in range(len(a)):
        if rng.random() >= share:
            continue
        if name == "mul":
            s = a_t.F + b_t.F - r.F
            lo, hi = max(0, s - b_t.W), min(s - 1, a_t.W - 1)
            if s < 1 or lo > hi:
                return
            p = rng.randrange(lo, hi + 1)
            a[i] = _clip((a[i] >> (p + 1) << (p + 1)) + (1 << p), a_t)
            b[i] = _clip((b[i] >> (s - p) << (s - p)) + (1 << (s - 1 - p)), b_t)
        else:
            F = max(a_t.F, b_t.F)
            s = F - r.F
            if s < 1:
                return
            a_, b_ = a[i] << (F - a_t.F), b[i] << (F - b_t.F)
            half = 1 << (s - 1)
            if a_t.F == F:          # set a's low bits
                want = (half - b_) if name == "add" else (half + b_)
                a[i] = _clip((a[i] >> s << s) + want % (1 << s), a_t)
            else:
                want = (half - a_) if name == "add" else (a_ - half)
                b[i] = _clip((b[i] >> s << s) + want % (1 << s), b_t)


def _doubles(t: FixedType, n: int, rng: random.Random) -> list[float]:
    """Doubles to convert to t: grid points, ties and near ties (positive and negative), random
    magnitudes from far below an LSB to far beyond the range, and the special doubles."""
    special = [0.0, -0.0, math.inf, -math.inf, 5e-324, -5e-324, 2.2250738585072014e-308, -1e-310,
               1e300, -1e300, 1e-300, -1e-300]
    lsb = t.F
    out = []
    for i in range(n):
        r = rng.random()
        k = rng.randrange(t.kmin - 4, t.kmax + 5)
        if r < 0.05:
            out.append(rng.choice(special))
        elif r < 0.15:
            out.append(math.ldexp(k, -lsb))
        elif r < 0.35:                          # ties at half an LSB, near the range ends too
            kk = rng.choice([k, t.kmin - 1, t.kmin, t.kmax, t.kmax + 1, -1, 0, 1, -2])
            out.append(math.ldexp(kk + 0.5, -lsb))
        elif r < 0.45:
            out.append(math.ldexp(k + rng.choice([0.25, 0.75, 0.5 - 2 ** -30, 0.5 + 2 ** -30]), -lsb))
        elif r < 0.55:                          # beyond the range
            out.append(math.ldexp(rng.choice([-1, 1]) * (1 + rng.random()), t.I + rng.randrange(-1, 12)))
        else:                                   # any magnitude from 70 bits below the LSB to 70 above the range
            out.append(math.ldexp(rng.uniform(-1, 1), rng.randrange(-lsb - 70, t.I + 70)))
    return out


def test_array_paths_agree_with_the_scalar_ones():
    """int64 arithmetic where provable, object arrays otherwise, and the scalar functions: one result."""
    rng = random.Random(2)
    types = [T(W, I, s, q, o) for (q, o) in MODES for (W, I) in SHAPES for s in (True, False)]
    types += [T(100, 40, True, "AP_RND_CONV", "AP_SAT"), T(64, 10, False, "AP_RND", "AP_WRAP"),
              T(63, 3, False, "AP_RND", "AP_WRAP"), T(8, -1020, True, "AP_RND_CONV", "AP_SAT")]
    n = 120
    for i, t in enumerate(types):
        a_t, b_t = types[(i * 7 + 3) % len(types)], types[(i * 13 + 5) % len(types)]
        x = np.array(_doubles(t, n, rng))
        k = from_double_array(x, t)
        assert k.dtype == (np.int64 if t.fits_int64 else object)
        assert k.tolist() == [from_double(v, t) for v in x.tolist()], t
        assert to_double_array(k, t).tolist() == [to_double(v, t) for v in k.tolist()]
        assert to_double_array(k.astype(object), t).tolist() == [to_double(v, t) for v in k.tolist()]
        a = _ties(_ks(a_t, n, rng), a_t, a_t.F - t.F, rng)
        b = _ties(_ks(b_t, n, rng), b_t, b_t.F - t.F, rng)
        fast_a = ExactArray.of(np.array(a, dtype=np.int64 if a_t.fits_int64 else object), a_t)
        fast_b = ExactArray.of(np.array(b, dtype=np.int64 if b_t.fits_int64 else object), b_t)
        slow_a = ExactArray.of(np.array(a, dtype=object), a_t)
        slow_b = ExactArray.of(np.array(b, dtype=object), b_t)
        ea, eb = [Exact.of(v, a_t) for v in a], [Exact.of(v, b_t) for v in b]
        zero, c = Exact(0, 0), Exact(3, 1)
        cases = {
            "mul": (lambda u, v: u * v, [p * q for p, q in zip(ea, eb)]),
            "add": (lambda u, v: u + v, [p + q for p, q in zip(ea, eb)]),
            "sub": (lambda u, v: u - v, [p - q for p, q in zip(ea, eb)]),
            "poly": (lambda u, v: u * v + v * v - u + 1, [p * q + q * q - p + 1 for p, q in zip(ea, eb)]),
            "abs": (lambda u, v: abs(u) - (-v), [abs(p) + q for p, q in zip(ea, eb)]),
            "max": (lambda u, v: maximum(u, 0) + minimum(v, c), [max(p, zero) + min(q, c) for p, q in zip(ea, eb)]),
            "where": (lambda u, v: where(u > v, u, v * 2) + u.where(u <= 1, 5),
                      [(p if p > q else q * 2) + (p if p <= 1 else Exact(5, 0)) for p, q in zip(ea, eb)]),
        }
        for name, (op, exact) in cases.items():
            fast, slow = op(fast_a, fast_b).to(t), op(slow_a, slow_b).to(t)
            assert fast.dtype == slow.dtype == (np.int64 if t.fits_int64 else object)
            assert fast.tolist() == slow.tolist() == [e.to(t) for e in exact], (name, t, a_t, b_t)
        for got, want in [(fast_a < fast_b, [p < q for p, q in zip(ea, eb)]),
                          (slow_a >= fast_b, [p >= q for p, q in zip(ea, eb)]),
                          (fast_a == fast_b, [p == q for p, q in zip(ea, eb)]),
                          (fast_a > 0, [p > 0 for p in ea])]:
            assert got.dtype == bool and got.tolist() == want
        # any integers with a bound from the data (here beyond 64 bits)
        wide = [v << 40 for v in a]
        assert quantize_array(np.array(wide, dtype=object), a_t.F + 40, t).tolist() == \
            [quantize(v, a_t.F + 40, t) for v in wide]


def test_int64_quantization_at_the_edges_of_its_bound():
    """Shifts by up to 70 places of integers up to 2**62, and doubles into random types."""
    rng = random.Random(5)
    for _ in range(1500):
        t = T(rng.randrange(1, 64), rng.randrange(-70, 80), rng.random() < 0.6, rng.choice(QUANTIZATION_MODES),
              rng.choice(OVERFLOW_MODES))
        bits = rng.randrange(0, 63)
        F_src = t.F + rng.randrange(-70, 70)
        ks = [rng.randrange(-(1 << bits), (1 << bits) + 1) for _ in range(12)] + [-(1 << bits), 1 << bits, 0, -1]
        ks = _ties(ks, FixedType(bits + 1, 0), F_src - t.F, rng)
        assert quantize_array(np.array(ks), F_src, t, bits).tolist() == [quantize(k, F_src, t) for k in ks]
        xs = _doubles(t, 16, rng)
        assert from_double_array(np.array(xs), t).tolist() == [from_double(x, t) for x in xs]


def test_int64_is_used_where_the_types_prove_it_fits():
    w, c = T(18, 6, True, "AP_RND_CONV", "AP_SAT"), T(24, 4, True, "AP_RND_CONV", "AP_SAT")
    v, k = ExactArray.of(np.arange(-5, 5), w), ExactArray.of(np.arange(10), c)
    assert (v * k + v).k.dtype == np.int64 and (v * k + v).bits == 17 + 23 + 1
    assert (v * k + v).to(w).dtype == np.int64
    wide = T(40, 16)
    assert (ExactArray.of(np.arange(3), wide) * ExactArray.of(np.arange(3), wide)).k.dtype == object
    assert (ExactArray.of(np.arange(3), wide) * ExactArray.of(np.arange(3), wide)).to(w).dtype == np.int64
    assert ExactArray.of(np.arange(3), T(70, 3)).to(T(70, 3)).dtype == object
    assert from_double_array(np.arange(3.0), T(64, 10, False)).dtype == object


# ------------------------------------------------------------------------------------------------
# against ap_fixed compiled with g++

HEADER = r"""
#include <ap_fixed.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
typedef unsigned long long u64;

// bit patterns as 32-bit hex chunks, most significant first
template <class T> static void get(T& v) {
  for (int lo = ((T::width - 1) / 32) * 32; lo >= 0; lo -= 32) {
    unsigned c;
    if (scanf("%x", &c) != 1) { fprintf(stderr, "bad input\n"); exit(2); }
    v.range(lo + 31 < T::width - 1 ? lo + 31 : T::width - 1, lo) = (u64)c;
  }
}
template <class T> static void put(const T& v) {
  for (int lo = ((T::width - 1) / 32) * 32; lo >= 0; lo -= 32)
    printf("%08x", (unsigned)(u64)v.range(lo + 31 < T::width - 1 ? lo + 31 : T::width - 1, lo));
  putchar('\n');
}
static double get_double() {
  double x;
  if (scanf("%la", &x) != 1) { fprintf(stderr, "bad double\n"); exit(2); }
  return x;
}
template <class T> static void conv(int n) { for (int i = 0; i < n; ++i) { T v = get_double(); put(v); } }
template <class A> static void todbl(int n) {
  for (int i = 0; i < n; ++i) { A a; get(a); printf("%a\n", a.to_double()); }
}
#define BINARY(NAME, EXPR) \
  template <class A, class B, class R> static void NAME(int n) { \
    for (int i = 0; i < n; ++i) { A a; B b; get(a); get(b); R r = EXPR; put(r); } }
BINARY(mul, a * b)
BINARY(add, a + b)
BINARY(sub, a - b)
template <class A, class B, class C, class D, class R> static void fma2(int n) {
  for (int i = 0; i < n; ++i) { A a; B b; C c; D d; get(a); get(b); get(c); get(d); R r = a * b + c * d; put(r); }
}
template <class A, class R> static void neg(int n) { for (int i = 0; i < n; ++i) { A a; get(a); R r = -a; put(r); } }
template <class A, class R> static void absr(int n) {
  for (int i = 0; i < n; ++i) { A a; get(a); R r = a < 0 ? R(-a) : R(a); put(r); }
}
template <class A, class R> static void abst(int n) {
  for (int i = 0; i < n; ++i) { A a; get(a); R r = a < 0 ? A(-a) : a; put(r); }
}
template <class A, class R> static void max0(int n) {
  for (int i = 0; i < n; ++i) { A a; get(a); R r = a > 0 ? a : A(0); put(r); }
}
template <class A, class R> static void minc(int n) {
  for (int i = 0; i < n; ++i) { A a, c; get(a); get(c); R r = a < c ? a : c; put(r); }
}
template <int W, int I, bool S, ap_q_mode Q, ap_o_mode O, int N>
static void shape(const ap_fixed_base<W, I, S, Q, O, N>&) { printf("%d %d %d\n", W, I, (int)S); }
template <class A, class B> static void shapes() {
  A a = 0; B b = 0; shape(a * b); shape(a + b); shape(a - b); shape(-a);
}
template <class A, class B> static void cmp(int n) {
  for (int i = 0; i < n; ++i) {
    A a; B b; get(a); get(b);
    printf("%d%d%d%d%d%d%d%d%d\n", a < b, a <= b, a > b, a >= b, a == b, a != b, a < 0, a > 0, a == 0);
  }
}
"""


@dataclass
class Group:
    """n cases of one operation on fixed types: C++ call, input tokens, expected output lines."""
    call: str
    tokens: list = field(default_factory=list)
    expected: list = field(default_factory=list)
    inputs: list = field(default_factory=list)      # for the failure message
    out_type: FixedType | None = None               # the output is a bit pattern of this type
    parse: object = str                             # else the output is parse(line)


def _hex_chunks(k: int, t: FixedType) -> str:
    bits = k % (1 << t.W)
    n = (t.W + 31) // 32
    return " ".join(f"{(bits >> (32 * j)) & 0xFFFFFFFF:x}" for j in reversed(range(n)))


def _from_hex(text: str, t: FixedType) -> int:
    bits = int(text, 16)
    assert bits >> t.W == 0, (text, t)
    return bits - (1 << t.W) if t.signed and bits >> (t.W - 1) else bits


# shapes by kind, to give every (Q, O) some of each (a full product costs too much compile time)
ODD = [(1, 1), (2, 1), (5, 8), (6, -2), (7, 0)]                     # a single bit, I > W, I <= 0
MID = [(8, 3), (16, 2), (18, 6), (24, 10), (32, 12), (40, 16)]
WIDE = [(53, 20), (60, 62), (64, 32)]                               # beyond a double's 53 bits


def _conversion_groups(rng):
    """`T v = x;` for doubles x: each (Q, O), signed and unsigned, with two odd, a middle and a
    wide shape (in turn, so that each shape meets several modes), and the design's defaults."""
    groups = []
    for m, (q, o) in enumerate(MODES):
        for s, signed in enumerate((True, False)):
            c = 2 * m + s
            for W, I in [ODD[c % 5], ODD[(c + 2) % 5], MID[c % 6], WIDE[c % 3]]:
                groups.append(_conversion(T(W, I, signed, q, o), _doubles, rng))
    # the design's default precisions (docs/design/hls.md)
    for W, I in [(24, 10), (18, 6), (16, 2), (24, 8), (20, 6), (32, 12), (24, 4), (40, 16)]:
        groups.append(_conversion(T(W, I, True, "AP_RND_CONV", "AP_SAT"), _doubles, rng))
    # wider than 64 bits (results as Python ints)
    groups += [_conversion(T(96, 40, True, "AP_RND_CONV", "AP_SAT"), _doubles, rng),
               _conversion(T(72, 80, False, "AP_RND", "AP_WRAP"), _doubles, rng)]
    # subnormal doubles are decoded as if their exponent field were that of 2**-1023
    subnormals = [5e-324, -5e-324, 1e-310, -1e-310, 2.0 ** -1030, 2.0 ** -1040, 2.2250738585072014e-308,
                  2.225073858507201e-308]
    for t in (T(8, -1020, True, "AP_RND", "AP_SAT"), T(12, -1030, False, "AP_TRN", "AP_WRAP")):
        groups.append(_conversion(t, lambda t, n, rng: subnormals + _doubles(t, n, rng), rng))
    return groups


def _conversion(t, doubles, rng, n=150):
    xs = doubles(t, n, rng)
    return Group(f"conv<{t.cpp} >", [x.hex() for x in xs], [from_double(x, t) for x in xs], xs, t)


def _todouble_groups(rng):
    groups = []
    for t in (T(8, 3), T(24, 10, False), T(53, 20), T(54, 10), T(60, 62, False), T(64, 32), T(64, -3, False),
              T(5, 8), T(6, -2)):
        ks = _ks(t, 200, rng)
        # ties of the rounding to 53 bits: 2**53 + 1 shifted
        if t.W > 54:
            ks += [((1 << 53) + 1) << (t.W - 56), -(((1 << 53) + 3) << (t.W - 56))][: 1 + t.signed]
        groups.append(Group(f"todbl<{t.cpp} >", [_hex_chunks(k, t) for k in ks],
                            [to_double(k, t) for k in ks], ks, parse=float.fromhex))
    return groups


def _operation_groups(rng):
    """Assignments of exact products, sums and differences of two types to a third, for every (Q, O)
    and signedness of the target; and a statement of the firmware's shape, r = a * b + c * d."""
    groups = []
    n = 150
    operands = [T(18, 6), T(24, 4, True, "AP_RND_CONV", "AP_SAT"), T(16, 2, False), T(8, 3, True, "AP_RND"),
                T(5, 8), T(6, -2, False), T(32, 12), T(64, 32), T(64, 10, False), T(1, 1), T(2, 1, False),
                T(40, 16), T(33, 33)]
    targets = [(18, 6), (24, 10), (8, 3), (16, 2), (6, -2), (5, 8), (32, 12), (64, 30), (100, 40), (3, 1),
               (20, 6), (12, 12)]
    ops = {"mul": (lambda a, b: a * b, product_type), "add": (lambda a, b: a + b, sum_type),
           "sub": (lambda a, b: a - b, difference_type)}
    names, i = list(ops), 0
    for m, (q, o) in enumerate(MODES):
        for s, signed in enumerate((True, False)):
            c = 2 * m + s
            for name in (names[c % 3], names[(c + 1) % 3]):       # two of the three per target
                op, result_type = ops[name]
                a_t, b_t = operands[i % len(operands)], operands[(i * 7 + 3) % len(operands)]
                for j in range(len(targets)):       # the first target the C simulation can assign to
                    r = T(*targets[(i * 5 + m + j) % len(targets)], signed, q, o)
                    if not csim_aborts(result_type(a_t, b_t), r):
                        break
                i += 1
                a, b = _ks(a_t, n, rng), _ks(b_t, n, rng)
                _operand_ties(name, a, b, a_t, b_t, r, rng)
                groups.append(Group(f"{name}<{a_t.cpp}, {b_t.cpp}, {r.cpp} >",
                                    [f"{_hex_chunks(x, a_t)} {_hex_chunks(y, b_t)}" for x, y in zip(a, b)],
                                    [op(Exact.of(x, a_t), Exact.of(y, b_t)).to(r) for x, y in zip(a, b)],
                                    list(zip(a, b)), r))
    # a statement of the firmware's shape: v = p * v + q * I
    for r in (T(24, 10, True, "AP_RND_CONV", "AP_SAT"), T(24, 10, True, "AP_RND", "AP_WRAP"),
              T(20, 6, False, "AP_TRN", "AP_SAT")):
        ts = [T(24, 4, True, "AP_RND_CONV", "AP_SAT"), T(24, 10), T(24, 4), T(20, 6, False)]
        vals = [_ks(t, n, rng) for t in ts]
        groups.append(Group(f"fma2<{', '.join(t.cpp for t in ts)}, {r.cpp} >",
                            [" ".join(_hex_chunks(v, t) for v, t in zip(row, ts)) for row in zip(*vals)],
                            [(Exact.of(a, ts[0]) * Exact.of(b, ts[1]) + Exact.of(c, ts[2]) * Exact.of(d, ts[3])).to(r)
                             for a, b, c, d in zip(*vals)], list(zip(*vals)), r))
    return groups


def _pattern_groups(rng):
    """-a, the abs and max(0, .) patterns, min with a constant, for every (Q, O) of the target and
    of the operand (whose own modes matter for `A(-a)`)."""
    groups = []
    n = 120
    shapes = [(8, 3), (18, 6), (5, 8), (6, -2), (24, 10), (1, 1), (64, 32), (16, 2)]
    for m, (q, o) in enumerate(MODES):
        for s, signed in enumerate((True, False)):
            W, I = shapes[(m + 3 * s) % len(shapes)]
            a_t = T(W, I, True, *MODES[(m + 1 + s) % len(MODES)])
            u_t = T(W, I, False, *MODES[(m + 4 + s) % len(MODES)])
            for j in range(len(shapes)):            # the first target the C simulation can assign to
                r = T(*shapes[(2 * m + s + 1 + j) % len(shapes)], signed, q, o)
                if not any(csim_aborts(source, r) for source in (a_t, negation_type(a_t), negation_type(u_t))):
                    break
            a = _ties(_ks(a_t, n, rng), a_t, a_t.F - r.F, rng)
            ea = [Exact.of(x, a_t) for x in a]
            tok = [_hex_chunks(x, a_t) for x in a]
            zero = Exact(0, 0)
            groups += [
                Group(f"neg<{a_t.cpp}, {r.cpp} >", tok, [(-e).to(r) for e in ea], a, r),
                Group(f"absr<{a_t.cpp}, {r.cpp} >", tok, [abs(e).to(r) for e in ea], a, r),
                Group(f"abst<{a_t.cpp}, {r.cpp} >", tok,
                      [(Exact.of((-e).to(a_t), a_t) if e < 0 else e).to(r) for e in ea], a, r),
                Group(f"max0<{a_t.cpp}, {r.cpp} >", tok, [max(e, zero).to(r) for e in ea], a, r),
            ]
            if m % 2 == s:                          # -u of an unsigned type, min with a variable
                u = _ties(_ks(u_t, n, rng), u_t, u_t.F - r.F, rng)
                eu = [Exact.of(x, u_t) for x in u]
                groups.append(Group(f"neg<{u_t.cpp}, {r.cpp} >", [_hex_chunks(x, u_t) for x in u],
                                    [(-e).to(r) for e in eu], u, r))
                c = _ks(a_t, n, rng)
                groups.append(Group(f"minc<{a_t.cpp}, {r.cpp} >",
                                    [f"{_hex_chunks(x, a_t)} {_hex_chunks(y, a_t)}" for x, y in zip(a, c)],
                                    [min(e, Exact.of(y, a_t)).to(r) for e, y in zip(ea, c)], list(zip(a, c)), r))
    return groups


def _comparison_groups(rng):
    """a < b ... a != b for two types (different F, signedness, I > W, I < 0), and a against int 0."""
    groups = []
    pairs = [(T(18, 6), T(24, 4)), (T(8, 3), T(8, 3, False)), (T(5, 8), T(6, -2)), (T(64, 32), T(64, 10, False)),
             (T(1, 1), T(2, 1, False)), (T(24, 10, False), T(20, 6, False))]
    n = 300
    for a_t, b_t in pairs:
        a, b = _ks(a_t, n, rng), _ks(b_t, n, rng)
        for j in range(0, n, 4):                # equal values, where b's type holds a's value
            x = Exact.of(a[j], a_t)
            if Exact.of(x.to(b_t), b_t) == x:
                b[j] = x.to(b_t)
        expected = []
        for x, y in zip(a, b):
            p, q = Exact.of(x, a_t), Exact.of(y, b_t)
            expected.append("".join(str(int(v)) for v in (p < q, p <= q, p > q, p >= q, p == q, p != q,
                                                             p < 0, p > 0, p == 0)))
        groups.append(Group(f"cmp<{a_t.cpp}, {b_t.cpp} >",
                            [f"{_hex_chunks(x, a_t)} {_hex_chunks(y, b_t)}" for x, y in zip(a, b)],
                            expected, list(zip(a, b))))
    return groups


def _program(groups, special: str = "") -> str:
    """A main() that runs the groups in order, or with an argument one of the `special` cases."""
    calls = "\n".join(f"  {g.call}({len(g.expected)});" for g in groups)
    return f"{HEADER}\nint main(int argc, char** argv) {{\n{special}\n{calls}\n  return 0;\n}}\n"


TYPE_PAIRS = [(T(18, 6), T(16, 2, False)), (T(8, 3, False), T(5, 8, False)), (T(6, -2), T(24, 10)),
              (T(7, 0, False), T(1, 1)), (T(64, 32), T(33, 33, False))]
SPECIAL = r"""
  if (argc > 1 && !strcmp(argv[1], "types")) {     // the result types of * + - and unary -
%s
    return 0;
  }
  if (argc > 1) {                                   // assignments next to the csim abort
    ap_fixed<16, 2> a = 1.5;
    if (!strcmp(argv[1], "edge")) { ap_fixed<5, 7, AP_RND> r = a; printf("%%d\n", r.to_int()); }
    if (!strcmp(argv[1], "beyond")) { ap_fixed<5, 8, AP_RND> r = a; printf("%%d\n", r.to_int()); }
    if (!strcmp(argv[1], "truncating")) { ap_fixed<5, 30> r = a; printf("%%d\n", r.to_int()); }
    return 0;
  }"""


def _compile(path, source: str):
    path.with_suffix(".cpp").write_text(source)
    build = subprocess.run(["g++", "-O1", "-std=c++14", "-I", str(ap_types_dir()), str(path.with_suffix(".cpp")),
                            "-o", str(path)], capture_output=True, text=True)
    if build.returncode:
        raise AssertionError(f"g++ failed:\n{build.stderr[-4000:]}")
    return path


def _run(path, groups):
    stdin = "\n".join(tok for g in groups for tok in g.tokens) + "\n"
    run = subprocess.run([str(path)], input=stdin, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == sum(len(g.expected) for g in groups)
    out, at = [], 0
    for g in groups:
        out.append(lines[at:at + len(g.expected)])
        at += len(g.expected)
    return out


@pytest.fixture(scope="module")
def ap_fixed_runs(tmp_path_factory):
    """The programs built in parallel: {"runs": [(group, its output lines)], "types": executable}."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    rng = random.Random(7)
    programs = [_conversion_groups(rng) + _todouble_groups(rng) + _comparison_groups(rng),
                _operation_groups(rng) + _pattern_groups(rng)]
    directory = tmp_path_factory.mktemp("ap_fixed")
    special = SPECIAL % "\n".join(f"    shapes<{a.cpp}, {b.cpp} >();" for a, b in TYPE_PAIRS)
    with ThreadPoolExecutor(len(programs)) as pool:
        built = [pool.submit(_compile, directory / f"program{i}", _program(g, special if i == 0 else ""))
                 for i, g in enumerate(programs)]
        paths = [b.result() for b in built]
    return {"runs": [pair for g, path in zip(programs, paths) for pair in zip(g, _run(path, g))], "types": paths[0]}


def _check(runs, prefixes):
    checked = 0
    for g, lines in runs:
        if not g.call.startswith(prefixes):
            continue
        bad = []
        for inputs, want, line in zip(g.inputs, g.expected, lines):
            got = _from_hex(line, g.out_type) if g.out_type is not None else g.parse(line)
            if got != want:
                bad.append(f"  input {inputs!r}: ap_fixed {got!r}, fixed.py {want!r}")
        assert not bad, f"{g.call}: {len(bad)} of {len(lines)} differ\n" + "\n".join(bad[:10])
        checked += len(lines)
    return checked


def test_double_conversion_is_bit_exact(ap_fixed_runs):
    assert _check(ap_fixed_runs["runs"], ("conv<",)) > 8000


def test_to_double_is_bit_exact(ap_fixed_runs):
    assert _check(ap_fixed_runs["runs"], ("todbl<",)) > 1000


def test_assignment_of_exact_products_sums_and_differences_is_bit_exact(ap_fixed_runs):
    assert _check(ap_fixed_runs["runs"], ("mul<", "add<", "sub<", "fma2<")) > 4000


def test_negation_abs_max_min_patterns_are_bit_exact(ap_fixed_runs):
    assert _check(ap_fixed_runs["runs"], ("neg<", "absr<", "abst<", "max0<", "minc<")) > 5000


def test_comparisons_are_exact(ap_fixed_runs):
    assert _check(ap_fixed_runs["runs"], ("cmp<",)) > 1500


def test_result_types_and_the_csim_abort(ap_fixed_runs):
    """product_type ... negation_type are ap_fixed's result types; csim_aborts marks the assignments
    the C simulation aborts on (and only those: one place closer, or truncating, runs)."""
    out = subprocess.run([str(ap_fixed_runs["types"]), "types"], capture_output=True, text=True).stdout.split("\n")
    want = [(t.W, t.I, int(t.signed)) for a, b in TYPE_PAIRS
            for t in (product_type(a, b), sum_type(a, b), difference_type(a, b), negation_type(a))]
    assert [tuple(map(int, line.split())) for line in out if line] == want
    source = T(16, 2)
    for case, target, aborts in [("edge", T(5, 7, True, "AP_RND"), False), ("beyond", T(5, 8, True, "AP_RND"), True),
                                 ("truncating", T(5, 30), False)]:
        run = subprocess.run([str(ap_fixed_runs["types"]), case], capture_output=True, text=True)
        assert csim_aborts(source, target) == aborts == (run.returncode != 0), (case, run.stderr)
        if aborts:
            assert "Attempting to read bit beyond MSB" in run.stderr
        else:
            assert int(run.stdout) == to_double(from_double(1.5, target), target)


def test_what_does_not_compile(tmp_path):
    """`d < 0 ? -d : d` and `t > 0 ? t : 0` have no common type in ap_fixed, so the generator must
    write `R(-d) : R(d)` / `t : T(0)` (the forms tested above); arithmetic with a double is ambiguous,
    so constants must be typed."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    source = tmp_path / "bad.cpp"
    source.write_text("#include <ap_fixed.h>\n"
                      "ap_fixed<8, 3, AP_RND, AP_SAT> d, t;\n"
                      "void f() { auto a = d < 0 ? -d : d; auto b = t > 0 ? t : 0; auto c = d * 0.5; }\n")
    build = subprocess.run(["g++", "-fsyntax-only", "-std=c++14", "-I", str(ap_types_dir()), str(source)],
                           capture_output=True, text=True)
    errors = [line for line in build.stderr.splitlines() if "error:" in line]
    assert len(errors) == 3, build.stderr
    assert "have different types" in errors[0] and "have different types" in errors[1]
    assert "ambiguous overload for" in errors[2]
