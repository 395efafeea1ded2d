// eg_eprop.h — data the event-driven e-prop replay works on (shared by generated replay kernels and
// the learning engine).
#ifndef EG_EPROP_H
#define EG_EPROP_H
#include <stdint.h>
#include "eg_runtime.h"
#include "eg_optimizer.h"

#ifdef __cplusplus
extern "C" {
#endif

// What a neuron archives per step for the synapses that replay it later: row (m % capacity) holds
// step m of every neuron of the population (row stride n).
typedef struct eg_history {
    int64_t capacity;          // steps held
    int64_t n;                 // neurons
    eg_real* psi;              // pseudo-derivative psi[m]
    eg_real* learning_signal;  // L[m] (a readout's own error)
    eg_real* regularisation;   // R[m]
} eg_history;

// The plastic synapses of one projection, structure of arrays (a synapse lives with its target).
typedef struct eg_plastic {
    int64_t n;                 // synapses
    eg_real** eps;             // [eligibility size] eligibility vector (derived from the target model)
    eg_real** traces;          // [per-synapse traces] declared in the target model's learning: section
    eg_real* zbuf;             // the previous presynaptic spike, entering eps one step later
    eg_real* grad;             // gradient summed over the current window
    int64_t* c_rem;            // replay steps left before the cutoff
    int64_t* n_decay;          // skipped steps whose decay is still pending (after a flush)
    int64_t* t_last;           // stamp of the previous event; 0: none yet
    uint8_t* last_was_flush;
    eg_real* weight;
    eg_optimizer_state* opt;   // per synapse
    const eg_optimizer* optimizer;   // per projection
    int32_t optimize_each_step;      // 1: one optimizer call per replayed step (index m + 1)
} eg_plastic;

// Replay kernel of a model and port (generated): the event with stamp s of synapse q into neuron j.
typedef double (*eg_replay_kernel)(const eg_population* pop, const eg_history* hist, eg_plastic* syn,
                                   int64_t q, int64_t j, int64_t s, int32_t is_flush);

#ifdef __cplusplus
}
#endif
#endif
