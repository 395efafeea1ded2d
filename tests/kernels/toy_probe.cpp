// Non-spiking probe: copies what the engine hands to a neuron in each step into its state, so
// tests can see exactly which step received which input. Hand-written against eg_runtime.h.
//   state:   in_a, in_b (spike input of this step per port), sum_a (all "a" input so far),
//            I_seen (the current of this step)
//   params:  gain (multiplies sum_a's increments; lets tests check that set() reaches kernels)
//   coeff:   0: gain as prepared (prepare copies it, so a stale prepare would show)
//   ports:   spike "a", "b"; current "I"
#include "eg_runtime.h"

enum { IN_A = 0, IN_B, SUM_A, I_SEEN };

extern "C" void eg_toy_probe_prepare(eg_population* pop, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) pop->coeff[0][i] = pop->param[0][i];
}

extern "C" void eg_toy_probe_update(eg_population* pop, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
        pop->state[IN_A][i] = pop->spike_in[0][i];
        pop->state[IN_B][i] = pop->spike_in[1][i];
        pop->state[SUM_A][i] += pop->coeff[0][i] * pop->spike_in[0][i];
        pop->state[I_SEEN][i] = pop->current_in[0][i];
    }
}

extern "C" void eg_toy_probe_propagator(const eg_real*, double, eg_real* out) { out[0] = 1.0; }
