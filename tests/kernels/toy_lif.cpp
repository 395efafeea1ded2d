// Toy leaky integrate-and-fire neuron with delta-shaped spike input, hand-written against
// eg_runtime.h. Used only to test the engine before generated kernels exist.
//   state:   V_m
//   params:  tau_m, C_m, E_L, V_th, V_reset, t_ref (ms)
//   coeff:   0: P = exp(-dt/tau_m)   1: input gain tau_m/C_m*(1-P)   2: refractory steps
//   ports:   spike "in" (adds to V_m at the end of the step), current "I"
#include "eg_runtime.h"
#include <cmath>

enum { V_M = 0 };
enum { TAU_M = 0, C_M, E_L, V_TH, V_RESET, T_REF };
enum { P_DECAY = 0, P_INPUT, REF_STEPS };

extern "C" void eg_toy_lif_prepare(eg_population* pop, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
        double tau = pop->param[TAU_M][i];
        double decay = std::exp(-pop->dt / tau);
        pop->coeff[P_DECAY][i] = decay;
        pop->coeff[P_INPUT][i] = tau / pop->param[C_M][i] * (1.0 - decay);
        pop->coeff[REF_STEPS][i] = std::round(pop->param[T_REF][i] / pop->dt);
    }
}

extern "C" void eg_toy_lif_update(eg_population* pop, int64_t lo, int64_t hi) {
    eg_real* v = pop->state[V_M];
    const eg_real* input = pop->spike_in[0];
    const eg_real* current = pop->current_in[0];
    for (int64_t i = lo; i < hi; ++i) {
        pop->spiked[i] = 0;
        if (pop->refractory[i] > 0) {       // clamped; input arriving now is lost
            pop->refractory[i] -= 1;
            v[i] = pop->param[V_RESET][i];
            continue;
        }
        double e_l = pop->param[E_L][i];
        v[i] = e_l + pop->coeff[P_DECAY][i] * (v[i] - e_l) + pop->coeff[P_INPUT][i] * current[i];
        v[i] += input[i];
        if (v[i] >= pop->param[V_TH][i]) {
            v[i] = pop->param[V_RESET][i];
            pop->refractory[i] = int32_t(pop->coeff[REF_STEPS][i]);
            pop->spiked[i] = 1;
        }
    }
}

extern "C" void eg_toy_lif_propagator(const eg_real* param_values, double h, eg_real* out) {
    out[0] = std::exp(-h / param_values[TAU_M]);
}
