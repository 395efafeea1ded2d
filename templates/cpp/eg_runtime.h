// eg_runtime.h — the contract between generated model kernels and the generic engine.
//
// A model library (rendered from model.cpp.j2, one per model) exports, for a model named M:
//   void eg_M_prepare(eg_population* pop, int64_t lo, int64_t hi);
//       derive per-neuron coefficients (propagators for pop->dt, refractory step counts, ...)
//       from the current parameter values; called after any parameter or dt change.
//   void eg_M_update(eg_population* pop, int64_t lo, int64_t hi);
//       advance neurons [lo, hi) by one step pop->step: propagate, add this step's spike input,
//       test the threshold, reset, set pop->spiked[i] (0/1).
//   void eg_M_propagator(const eg_real* param_values, double h, eg_real* out);
//       the exact propagator exp(A h) of the model's linear part for one neuron's parameters
//       (row-major, size eg_M_propagator_size^2; order given by the model's metadata).
// Kernels are serial over [lo, hi): the engine owns all threading (owner computes), so a
// neuron's arithmetic never depends on the thread count.
//
// The engine library (engine.cpp) runs the step loop over populations and projections.
#ifndef EG_RUNTIME_H
#define EG_RUNTIME_H
#include <stdint.h>

#ifndef EG_REAL
#define EG_REAL double   // float32 mode later: -DEG_REAL=float
#endif
typedef EG_REAL eg_real;

#ifdef __cplusplus
extern "C" {
#endif

// One population of identical-model neurons, structure of arrays. All arrays are owned by
// Python (numpy) and passed without copies; every per-neuron array has length n.
typedef struct eg_population {
    int64_t n;                 // number of neurons
    double dt;                 // step in ms
    int64_t step;              // index of the step being computed (set by the engine)
    eg_real** state;           // [n_state]   state variables
    eg_real** param;           // [n_param]   parameters (per neuron, settable at run time)
    eg_real** coeff;           // [n_coeff]   derived by prepare(): propagator entries etc.
    eg_real** spike_in;        // [n_spike_ports] summed weights arriving in this step
    eg_real** current_in;      // [n_current_ports] piecewise-constant input current for this step
    int32_t* refractory;       // remaining refractory steps
    uint8_t* spiked;           // out: 1 spike, 2 flush event (e-prop: replay, transmit nothing), else 0
} eg_population;

typedef void (*eg_kernel)(eg_population* pop, int64_t lo, int64_t hi);

#ifdef __cplusplus
}
#endif
#endif
