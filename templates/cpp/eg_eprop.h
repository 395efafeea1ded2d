// eg_eprop.h — data the e-prop replays work on (shared by generated replay kernels and the learning
// engine): the event-driven replay of NEST's eprop_synapse and the time-driven interval replay of
// Bellec et al. 2020 (NEST's eprop_synapse_bsshslm_2020).
#ifndef EG_EPROP_H
#define EG_EPROP_H
#include <stdint.h>
#include "eg_runtime.h"
#include "eg_optimizer.h"

#ifdef __cplusplus
extern "C" {
#endif

// What a neuron archives per step for the synapses that replay it later: neuron i's entries are
// contiguous (a replay walks one neuron's steps), step m at i * capacity + m % capacity.
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
    // time-driven engine only (NULL otherwise): the synapse's first event of the current interval
    // (replay start) and the end of the interval it belongs to minus the target's offset
    int64_t* t_trig;
    int64_t* t_next_upd;
} eg_plastic;

// Replay kernel of a model and port (generated): the event with stamp s of synapse q into neuron j.
typedef double (*eg_replay_kernel)(const eg_population* pop, const eg_history* hist, eg_plastic* syn,
                                   int64_t q, int64_t j, int64_t s, int32_t is_flush);

// One time-driven replay: history entries [t_trig, b) of the target neuron with traces starting at 0,
// the presynaptic spike entering at each arrival stamp m (the source spiked in step m - delay).
typedef struct eg_interval_replay {
    int64_t t_trig;
    int64_t b;                     // first step of the next interval
    int64_t skip;                  // an arrival stamp that was dropped (-1: none)
    const uint8_t* spike_flags;    // the source population's spikes: row (step % flag_capacity)
    int64_t flag_capacity;
    int64_t flag_n;                // row stride: neurons of the source population
    int64_t source;
    int64_t delay;
    double interval_spikes;        // spikes of the target neuron in the interval (regularisation)
    double interval_steps;         // U
} eg_interval_replay;

static inline double eg_arrival(const eg_interval_replay* r, int64_t m)
{
    if (m == r->skip) return 0.0;
    return (double)r->spike_flags[((m - r->delay) % r->flag_capacity) * r->flag_n + r->source];
}

// Interval kernel of a model and port (generated): the gradient of one interval of synapses into j.
typedef double (*eg_interval_kernel)(const eg_population* pop, const eg_history* hist,
                                     const eg_interval_replay* r, int64_t j);

#ifdef __cplusplus
}
#endif
#endif
