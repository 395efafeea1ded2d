// eg_math.h — numerical helpers for generated propagators.
#ifndef EG_MATH_H
#define EG_MATH_H
#include <math.h>

// fmax / fmin with the C library's results (the first operand on ties, so also for +0 / -0; the
// other operand when one is NaN), written inline: the library call is not inlined without
// -ffast-math and costs a call per neuron and step where a surrogate gradient takes a maximum.
static inline double eg_fmax(double x, double y) { return x >= y ? x : (y != y ? x : y); }
static inline double eg_fmin(double x, double y) { return x <= y ? x : (y != y ? x : y); }

// phi_k(x) = (e^x - sum_{j<k} x^j/j!) / x^k, with phi_k(0) = 1/k!.
// Propagator entries at and near singular parameter combinations (tau_m == tau_syn) are written
// through phi_k, which has no pole; near 0 the series avoids the cancellation of the direct formula.
static inline double eg_phi(int k, double x) {
    if (fabs(x) < 0.5) {
        double fact = 1.0;                       // (j + k)!
        for (int j = 2; j <= k; ++j) fact *= j;
        double term = 1.0 / fact, sum = term;
        for (int j = 1; j < 40 && fabs(term) > 1e-18 * fabs(sum); ++j) {
            term *= x / (double)(j + k);
            sum += term;
        }
        return sum;
    }
    double value = exp(x), inv_fact = 1.0;      // phi_0 = e^x; phi_{j+1} = (phi_j - 1/j!) / x
    for (int j = 0; j < k; ++j) {
        value = (value - inv_fact) / x;
        inv_fact /= (double)(j + 1);
    }
    return value;
}
#endif
