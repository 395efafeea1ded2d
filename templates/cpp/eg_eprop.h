// eg_eprop.h — data the e-prop replays work on (shared by generated replay kernels and the learning
// engine): the event-driven replay of NEST's eprop_synapse and the time-driven interval replay of
// Bellec et al. 2020 (NEST's eprop_synapse_bsshslm_2020).
#ifndef EG_EPROP_H
#define EG_EPROP_H
#include <stdint.h>
#include "eg_runtime.h"
#include "eg_optimizer.h"

// The learning state's storage type (eprop_gen/precision.py): -DEG_LEARNING_REAL=float stores
// histories, block products and synapse state in float32; arithmetic stays double.
#ifndef EG_LEARNING_REAL
#define EG_LEARNING_REAL double
#endif
typedef EG_LEARNING_REAL eg_lreal;

// A synapse's target (a neuron index within its population, < 2^31) and delay (whole steps,
// 1 .. 32767): stored per synapse, so kept small (eprop_gen/engine/connectivity.py checks ranges).
typedef int32_t eg_target_id;
typedef int16_t eg_delay;

#ifdef __cplusplus
extern "C" {
#endif

struct eg_history;

// Per-neuron block products of one learning port's step matrices M_m (the event-driven replay's
// O(1) fast path; eprop_gen/plan_blocks.py says what they are). `entries` doubles per product:
//   prefix [block][n][entries]     P_m = M_m ... M_first, rows m of the newest block (at m % block)
//   suffix [capacity][n][entries]  S_m = M_last ... M_m, rows m of completed blocks (at m % capacity)
//   total  [capacity / block][n][entries]  T_k of completed blocks k (at k % (capacity / block))
// Step-major like the history: the synapses of one event share their window's rows, so their
// targets' products lie side by side.
// advance (generated, eg_<model>_blocks_<port>) adds history row m of neurons [lo, hi), once the
// row is final (its learning signal complete), rows in order.
typedef void (*eg_block_kernel)(const eg_population* pop, const struct eg_history* hist, int64_t lo,
                                int64_t hi, int64_t m);
typedef struct eg_blocks {
    int64_t block;             // rows per block, a power of two (<= the history capacity)
    int64_t shift;             // log2(block): a row's block is m >> shift (no divisions per event)
    int64_t entries;
    eg_lreal* prefix;
    eg_lreal* suffix;
    eg_lreal* total;
    eg_block_kernel advance;
} eg_blocks;

// What a neuron archives per step for the synapses that replay it later, step-major: step m of
// neuron i at (m % capacity) * width + i - first. An event reaches many targets whose windows share
// their rows (all of a source's synapses have the same last event), so one row serves them all
// from consecutive memory. Under MPI a rank holds only its own neurons' columns [first, first +
// width) (a readout's history stays whole: every rank reads all readouts' errors).
typedef struct eg_history {
    int64_t capacity;          // steps held, a power of two
    int64_t mask;              // capacity - 1: step m is in slot m & mask (m >= 0)
    int64_t n;                 // neurons of the population
    int64_t first;             // the first neuron held
    int64_t width;             // neurons held (n in one process)
    eg_lreal* psi;             // pseudo-derivative psi[m]
    eg_lreal* learning_signal; // L[m] (a readout's own error)
    eg_lreal* regularisation;  // R[m]
    int64_t n_blocks;          // 0: replays walk; else one eg_blocks per learning port of the model
    eg_blocks* blocks;
    // the model's other per-step quantities (CompiledModel.archived: derivative of an RK4 step,
    // the reset's derivative), extra[k] laid out like psi
    int64_t n_extra;
    eg_lreal** extra;
} eg_history;

static inline int64_t eg_history_row(const eg_history* h, int64_t m, int64_t i) {
    return (m & h->mask) * h->width + (i - h->first);
}
static inline eg_lreal* eg_prefix_at(const eg_history* h, const eg_blocks* b, int64_t m, int64_t i) {
    return b->prefix + ((m & (b->block - 1)) * h->width + (i - h->first)) * b->entries;
}
static inline eg_lreal* eg_suffix_at(const eg_history* h, const eg_blocks* b, int64_t m, int64_t i) {
    return b->suffix + (eg_history_row(h, m, i)) * b->entries;
}
static inline eg_lreal* eg_total_at(const eg_history* h, const eg_blocks* b, int64_t k, int64_t i) {
    return b->total + ((k & (h->mask >> b->shift)) * h->width + (i - h->first)) * b->entries;
}

// The plastic synapses of one projection, structure of arrays (a synapse lives with its target).
typedef struct eg_plastic {
    int64_t n;                 // synapses
    eg_lreal** eps;            // [eligibility size] eligibility vector (derived from the target model)
    eg_lreal** traces;         // [per-synapse traces] declared in the target model's learning: section
    eg_lreal* grad;            // gradient summed over the current window
    eg_lreal* weight;
    eg_optimizer_state* opt;   // per synapse (unless shared_optimizer)
    const eg_optimizer* optimizer;   // per projection
    int32_t optimize_each_step;      // 1: one optimizer call per replayed step (index m + 1)
    // event-driven engine only (NULL otherwise): the window bookkeeping (eg_windows), one copy of
    // n_windows entries per thread, thread t's at t * n_windows
    int64_t n_windows;
    int64_t window_threads;          // copies held (>= the threads of the call)
    int64_t* win_t_start;
    int64_t* win_t_last;
    uint8_t* win_flags;
    // batch 1, one optimisation per spike: the synapses of a window are optimised by the same calls
    // (index = stamp - 1), so the optimizer's bookkeeping (k, n_opt, eta_cur; Adam's p1, p2;
    // grad_sum is 0 between calls) is the same for all of them and kept per window entry instead
    // of per synapse (opt is then unused); Adam's moments stay per synapse (adam_m, adam_v)
    int32_t shared_optimizer;
    eg_optimizer_state* win_opt;
    eg_lreal* adam_m;
    eg_lreal* adam_v;
    // event-driven engine, targets with equal parameters: the eligibility's presynaptic components
    // (zbar; plan_learning's `presynaptic`) are kept once per window entry, like the bookkeeping:
    // win_eps[thread][entry][n_presynaptic]; eps[r] of those components is then NULL
    int32_t eps_shared;
    int32_t n_presynaptic;
    eg_lreal* win_eps;
    // time-driven engine only (NULL otherwise), per synapse: stamp of the previous event (0: none
    // yet), whether it was a flush, the first event of the current interval (replay start) and the
    // end of the interval it belongs to minus the target's offset
    int64_t* t_last;
    uint8_t* last_was_flush;
    int64_t* t_trig;
    int64_t* t_next_upd;
} eg_plastic;

// Event-driven windows: every synapse of one source with one delay sees the same events, so the
// window bookkeeping is kept once per (source, delay), entry source * max_delay + delay - 1 (and
// once per thread: each thread follows every event, whichever targets it owns, so the copies stay
// equal and no thread waits for another). A window opens with a spike (stamp t_start), may be
// continued by flush and settle events, and closes with the next spike.
#define EG_WINDOW_FLUSH 1          // the last event was a flush or settle (the window continues)
#define EG_WINDOW_ADJACENT 2       // the window's spike came one stamp after the previous spike,
                                   // which therefore enters at the window's first row
#define EG_WINDOW_EMPTY 4          // opened by a flush before any spike: nothing to replay
typedef struct eg_windows {
    int64_t* t_start;          // stamp of the window's spike
    int64_t* t_last;           // stamp of the last event; 0: none yet
    uint8_t* flags;
    eg_optimizer_state* opt;   // shared optimizer bookkeeping (eg_plastic.shared_optimizer), else NULL
    eg_lreal* eps;             // presynaptic eligibility per entry (eg_plastic.eps_shared), else NULL
} eg_windows;

// One event (a spike, flush or settle of a source, with one delay) through a plastic projection:
// synapses [q_begin, q_end) of the source onto the caller's targets (those of another delay are
// skipped; delay is NULL when all synapses of the projection have the event's delay). The kernel replays each and adds a spike's weight into ring[target]; kind 3 closes
// the windows at a sample's end (a flush whose gradient joins the batch sum; state reset).
typedef struct eg_event_batch {
    int64_t q_begin, q_end;
    const eg_target_id* target_id;
    const eg_delay* delay;
    int32_t event_delay;
    int32_t kind;                  // 0 spike (transmits), 1 flush, 2 settle, 3 sample close
    int64_t stamp;
    int64_t settle_steps;          // a settle replays windows whose last event is this old
    int64_t oldest_held;           // oldest history row the ring still holds
    double multiplicity;
    eg_real* ring;
    eg_windows windows;            // this thread's copy
    int64_t window;                // the event's entry: source * max_delay + delay - 1
    int64_t error_synapse;         // out: the first synapse whose window lost its rows (-1: none)
    int64_t error_row;
} eg_event_batch;

typedef void (*eg_event_kernel)(const eg_population* pop, const struct eg_history* hist, eg_plastic* syn,
                                eg_event_batch* ev);

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
