// engine.cpp — the generic step loop shared by every network (compiled once, cached).
//
// Time: step n integrates (n*dt, (n+1)*dt]; a spike in step n has time (n+1)*dt and, through a
// synapse with delay d >= 1 (steps), lands in the target's ring slot of step n+d, which the
// target's update kernel reads (and adds at the end of that step).
//
// Threads: "owner computes". Thread t of T owns the contiguous neuron range [n*t/T, n*(t+1)/T)
// of every population and is the only one that updates those neurons, fills their currents,
// writes their ring slots and clears them. Every value that ends up in a neuron is therefore
// summed by one thread in an order fixed by the data (projection order, ascending sender id,
// CSR row order), so results are bitwise identical for any thread count. No atomics.
//
// Schedule of step n (NEST's, /work/shared/eprop-spec.md §2.2, §6):
//   A. learning signals: L_j[n-2] += B_jk * E_k[n-1] (feedback in creation order, readouts
//      ascending), the readout errors of the previous step;
//   B. delivery of the previous step's spikes (of the previous D steps' in a network without
//      learning whose delays are all >= D: eg_network.delivery_interval): static projections add
//      w into the ring slot of step n-1+d; plastic ones replay, for every spike of step n-d
//      through a synapse of delay d, the synapse with stamp n (generated kernel: replay window,
//      optimizer) and add the weight it returns into the slot of step n; a flush event (spec
//      §3.9, §4.6) of step n-d replays the plastic synapses of delay d the same way (is_flush = 1)
//      and transmits nothing;
//   C. currents, neuron update, then the archive: history row n gets psi[n], R[n] and L[n] = 0;
//      a readout's row gets its error E[n] = (y[n] - y*[n]) * lambda[n].
// A plastic synapse belongs to its target like a static one, so a thread replays only synapses of its
// own targets: the result does not depend on the number of threads.
//
// Events: a model kernel sets pop->spiked[i] = 1 for a spike and 2 for a flush event (a silent
// neuron's request to replay its outgoing plastic synapses, NEST's flush_event_send_interval).
// Spikes go into the spike record (net.spikes, static and plastic delivery); flush events into a
// separate flush record that only plastic projections read: a flush is not a spike.
//
// All arrays belong to Python (numpy) and are passed in the structs below; the ctypes mirrors in
// eprop_gen/engine/native.py must match them field for field (checked via eg_engine_struct_sizes).
#include "eg_runtime.h"
#include "eg_eprop.h"

#include <algorithm>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

extern "C" {

#define EG_ENGINE_ABI 10

// One population as the engine sees it: a model population or a spike source.
typedef struct eg_engine_pop {
    eg_population* model;          // NULL for a spike source
    eg_kernel prepare;             // NULL for a spike source
    eg_kernel update;              // NULL for a spike source
    int64_t n;
    int32_t n_spike_ports;
    int32_t n_current_ports;
    eg_real** ring;                // [n_spike_ports] -> ring_slots[port] rows of n values
    const int64_t* ring_slots;     // [n_spike_ports], >= 1 + largest delay into that port
    // spike source schedule: unique (step, sender) events sorted by step then sender;
    // step is the emission step (time/dt - 1), multiplicity the number of coinciding spikes
    int64_t n_events;
    const int64_t* event_step;
    const int64_t* event_sender;
    const eg_real* event_multiplicity;
    // spike record of a model population: the engine appends (step, id) pairs
    int64_t rec_capacity;
    int64_t rec_count;             // in/out
    int64_t* rec_step;
    int64_t* rec_sender;
    // flush events of a model population (spiked == 2), the same way: sorted by step, then id.
    // Python may drop entries older than any delay can still reach.
    int64_t flush_capacity;
    int64_t flush_count;           // in/out
    int64_t* flush_step;
    int64_t* flush_sender;
    // time-driven e-prop (eg_network.update_interval > 0) only:
    int64_t interval_offset;       // the population's update intervals start at steps offset + k U
    // time-driven intervals and event-driven samples: what a reset restores
    int32_t n_states;              // rows of model->state restored from initial_state
    int32_t n_observables;         // rows after them (psi, traces, ...) set to 0 (samples only)
    const eg_real* const* initial_state;   // [n_states] the values restored (NULL: never reset)
    uint8_t* spike_flags;          // [flag_capacity][n]: 1 if the neuron spiked in step m (row m %
    int64_t flag_capacity;         //  capacity), read by the interval replays; NULL if not needed
} eg_engine_pop;

// Synapses of one projection, CSR by source; targets ascending within a row.
typedef struct eg_projection {
    int32_t source;                // index into eg_network.pops
    int32_t target;                // index into eg_network.pops (a model population)
    int32_t port;                  // spike port of the target model
    int32_t uniform_delay;         // the delay of every synapse, if they all have one (else 0)
    const int64_t* row_ptr;        // [n_source + 1]
    const eg_target_id* target_id; // [n_synapses]
    const eg_real* weight;         // [n_synapses]
    const eg_delay* delay;         // [n_synapses], 1 <= delay < ring_slots
    // plastic projections only (NULL otherwise): the synapse state, which owns the weights the
    // engine transmits (weight above is ignored), and the replay kernel of the target model's port
    eg_plastic* plastic;
    eg_event_kernel replay_event;  // event-driven engine: all synapses of one event
    eg_interval_kernel interval;   // time-driven engine
    // event-driven samples (eg_network.sample_steps > 0): the optimizer applied once per batch of
    // samples; plastic->optimizer then only accumulates (its batch never completes)
    const eg_optimizer* batch_optimizer;
    int32_t eligibility_size;      // rows of plastic->eps and plastic->traces (resets at sample starts)
    int32_t n_traces;
    int64_t max_delay;             // largest delay of the projection (plastic: how far to look back)
    // event-driven: a synapse whose last event is settle_steps old (its target's cutoff, so every
    // row its window still needs is final) replays it like a flush event, without waiting for
    // the next spike: its history rows can then be overwritten (0: no cutoff, never)
    int64_t settle_steps;
} eg_projection;

// What a population archives per step for the plastic synapses that replay it (and, for a readout,
// the error it sends as learning signal). Rows of pop->state are given by index, -1 = absent.
typedef struct eg_archive {
    int32_t pop;
    int32_t psi_state;             // psi -> history psi row (0 if absent)
    int32_t reg_state;             // R -> history regularisation row (0 if absent)
    int32_t output_state;          // readouts: y; the learning-signal row gets (y - y*) * lambda
    eg_history* history;
    // per-step inputs of a readout, [rows][n] from step *_start on: step n uses row
    // clamp(n - start, 0, rows - 1)
    int64_t target_rows;           // 0: y* = 0
    const eg_real* target;
    int64_t window_rows;           // 0: lambda = 1
    const eg_real* window;
    int64_t target_start;
    int64_t window_start;
    int32_t softmax;               // readouts: y normalised over the population (cross-entropy loss)
    int32_t n_extra;               // the model's other archived observables -> history extra rows
    // time-driven engine: spike counts per update interval (the regularisation of that interval)
    int64_t* spike_count;          // [n] spikes since the current interval began
    int64_t* interval_spikes;      // [count_slots][n]: spikes of interval k in row k % count_slots
    int64_t count_slots;
    const int32_t* extra_state;    // [n_extra] their rows of pop->state
} eg_archive;

// Learning-signal feedback from a readout population to a recurrent one: B[j * n_readout + k].
typedef struct eg_feedback {
    int32_t readout;               // index into eg_network.archives
    int32_t target;                // index into eg_network.archives
    const eg_real* weight;         // [n_target][n_readout]
} eg_feedback;

// A piecewise-constant current into one port of some neurons of one population.
typedef struct eg_current_source {
    int32_t pop;
    int32_t port;
    int64_t n_changes;
    const int64_t* change_step;    // non-decreasing; value k holds from change_step[k] on
    const eg_real* amplitude;      // [n_changes][width]
    int64_t width;                 // 1: same value for all targets; else n_targets
    int64_t n_targets;
    const int64_t* targets;        // ascending, unique
} eg_current_source;

// Copies one state variable of some neurons after every step.
typedef struct eg_state_recorder {
    int32_t pop;
    int32_t state;
    int64_t n_neurons;
    const int64_t* neurons;        // ascending, unique
    int64_t first_step;            // the step whose values go into row 0 of out
    eg_real* out;                  // [rows][n_neurons]
} eg_state_recorder;

typedef struct eg_network {
    int32_t n_pops;
    int32_t n_projections;
    int32_t n_currents;
    int32_t n_recorders;
    eg_engine_pop* pops;
    const eg_projection* projections;
    const eg_current_source* currents;
    const eg_state_recorder* recorders;
    int32_t n_archives;
    int32_t n_feedbacks;
    const eg_archive* archives;
    const eg_feedback* feedbacks;
    // Projections that existed when step first_step - 1 ran (the previous call's last step): its
    // spikes, delivered at the start of this call, go only through those, as if delivered then.
    int64_t n_projections_at_previous_step;
    // out: 0 = fine; 1 = a replay needed a history row older than the archive holds. Then
    // error_info = {projection, synapse, oldest row needed, step}, the smallest (projection,
    // synapse) of the failing step; the run stops after that step, whose state is then invalid.
    int64_t error_code;
    int64_t error_info[4];
    // Time-driven e-prop (Bellec et al. 2020, NEST's *_bsshslm_2020): update intervals of U steps,
    // per population shifted by its interval_offset; 0 = the event-driven engine.
    int64_t update_interval;
    int64_t learning_window;       // readout errors count only in the last LW steps of an interval
    int32_t reset_neurons;         // learning populations restart from their initial state
    int32_t average_gradient;      // an interval's gradient is divided by LW
    // Event-driven samples (minibatches): the task is a sequence of samples of sample_steps steps;
    // at each sample start the network restarts from its initial state, every plastic synapse's
    // window is closed (its gradient accumulated), and after every batch_size samples (the
    // optimizer's batch) the weights take one optimizer step. 0 = one continuous run (NEST).
    int64_t sample_steps;
    // MPI (eprop_gen/engine/distributed.py): this process is rank `rank` of `n_ranks` and owns the
    // contiguous block [n*rank/n_ranks, n*(rank+1)/n_ranks) of every model population, its threads
    // split that block. exchange(ctx, step, phase) is called by one thread while the others wait:
    // phase 0 after the update (readouts' outputs for softmax errors), phase 1 at the end of the
    // step (spikes, flush events and readout errors of the step from every rank). NULL: one process.
    int32_t rank;
    int32_t n_ranks;
    void (*exchange)(void* ctx, int64_t step, int32_t phase);
    void* exchange_ctx;
    int32_t exchange_outputs;      // 1: call phase 0 (there are cross-entropy readouts)
    // Delivery in batches (NEST's min-delay slices): a network without learning whose every
    // synapse has a delay >= D (eprop_gen/engine/schedule.py, delivery_interval) delivers the static
    // spikes of steps [kD - D, kD) at the start of step kD, step-major, and exchanges them (phase 1)
    // only at the end of step kD - 1: one exchange per D steps. A spike of step m through delay d
    // lands in slot m + d >= kD, not yet read, and every slot receives its additions in the order
    // of immediate delivery (emission step, projection, sender, synapse): the results are those of
    // D = 1, bitwise. A simulate call ends a batch early (exchange at its last step; its first step
    // delivers what is pending), like NEST's slices ending with Simulate.
    int64_t delivery_interval;     // D >= 1 (learning networks: 1)
    int64_t pending_step;          // in/out: the first step whose spikes are not yet delivered
} eg_network;

}  // extern "C"

namespace {

struct Range {
    int64_t lo, hi;
    bool empty() const { return lo >= hi; }
};

// The neurons thread t of T owns; depends only on n, t and T.
inline Range owned_range(int64_t n, int t, int T) { return {n * t / T, n * (t + 1) / T}; }

// The neurons thread t of this process's T threads owns: its share of the process's block (the
// blocks of ranks 0, 1, ... in order, so ids stay ascending in rank order); depends only on n,
// the rank, the number of ranks, t and T.
inline Range owned_by(const eg_network* net, int64_t n, int t, int T) {
    const int64_t R = net->n_ranks > 0 ? net->n_ranks : 1;
    const int64_t lo = n * net->rank / R, hi = n * (net->rank + 1) / R;
    const Range r = owned_range(hi - lo, t, T);
    return {lo + r.lo, lo + r.hi};
}

// Index of the first element >= value in the ascending array a[lo, hi).
template <typename Index>
inline int64_t first_at_least(const Index* a, int64_t lo, int64_t hi, int64_t value) {
    return std::lower_bound(a + lo, a + hi, value) - a;
}

// Index of the value in force at `step` (last k with change_step[k] <= step); -1 before the first.
inline int64_t active_change(const eg_current_source& c, int64_t step) {
    return (std::upper_bound(c.change_step, c.change_step + c.n_changes, step) - c.change_step) - 1;
}

inline bool is_model(const eg_engine_pop& p) { return p.model != nullptr; }

// The spikes one population emits in one step: ascending ids, optional multiplicities.
struct SpikeList {
    const int64_t* ids;
    const eg_real* multiplicity;   // NULL means 1 for every spike
    int64_t count;
};

// Per-simulate-call scratch shared by the team.
struct Shared {
    std::vector<int64_t> thread_counts;         // [thread][population] spikes found by each thread
    std::vector<int64_t> thread_flush_counts;   // [thread][population] flush events, the same
    std::vector<int32_t> archive_of;            // per population: index into net->archives or -1
    int n_pops = 0;
};

// One event to replay through a plastic projection in this step: the spike of `source` emitted
// `delay` - 1 steps before the current one reaches the synapses of that delay now.
struct PlasticEvent {
    int64_t source;
    eg_real multiplicity;
    int32_t delay;
    int32_t is_flush;              // 1: a flush event (replay only, nothing transmitted);
                                   // 2: a settle event (the same, added by the engine)
};

// The first replay of a step that found its history rows overwritten (smallest projection, synapse).
struct ReplayError {
    int64_t projection = -1, synapse = 0, row = 0, step = 0;
    bool before(int64_t p, int64_t q) const { return projection < 0 || p < projection ||
                                                     (p == projection && q < synapse); }
};

// Per-thread scratch of the step loop.
struct ThreadScratch {
    std::vector<std::vector<int64_t>> own_spikes;   // per population
    std::vector<std::vector<int64_t>> own_flushes;  // per population
    std::vector<PlasticEvent> events;
    ReplayError error;
};

void point_at_step(eg_network* net, int64_t step) {
    for (int32_t p = 0; p < net->n_pops; ++p) {
        eg_engine_pop& pop = net->pops[p];
        if (!is_model(pop)) continue;
        pop.model->step = step;
        for (int32_t port = 0; port < pop.n_spike_ports; ++port) {
            int64_t slot = step % pop.ring_slots[port];
            pop.model->spike_in[port] = pop.ring[port] + slot * pop.n;
        }
    }
}

bool record_has_room(const eg_network* net, int64_t steps) {
    // A step adds at most one spike (or flush event) per own neuron to a population's record (its
    // owners' spikes are written by the exchange, which makes room for them and for the next batch,
    // so that every rank passes this check at the same steps); stop before a batch that could
    // overflow.
    for (int32_t p = 0; p < net->n_pops; ++p) {
        const eg_engine_pop& pop = net->pops[p];
        if (!is_model(pop)) continue;
        const Range own = owned_by(net, pop.n, 0, 1);
        const int64_t room = steps * (own.hi - own.lo);
        if (pop.rec_capacity - pop.rec_count < room || pop.flush_capacity - pop.flush_count < room)
            return false;
    }
    return true;
}

void fill_currents(const eg_network* net, int32_t p, Range r, int64_t step) {
    const eg_engine_pop& pop = net->pops[p];
    for (int32_t port = 0; port < pop.n_current_ports; ++port)
        std::fill(pop.model->current_in[port] + r.lo, pop.model->current_in[port] + r.hi,
                  eg_real(0));
    for (int32_t c = 0; c < net->n_currents; ++c) {
        const eg_current_source& src = net->currents[c];
        if (src.pop != p) continue;
        int64_t k = active_change(src, step);
        if (k < 0) continue;
        const eg_real* value = src.amplitude + k * src.width;
        eg_real* current = pop.model->current_in[src.port];
        int64_t i = first_at_least(src.targets, 0, src.n_targets, r.lo);
        for (; i < src.n_targets && src.targets[i] < r.hi; ++i)
            current[src.targets[i]] += (src.width == 1) ? value[0] : value[i];
    }
}

void clear_read_slots(const eg_engine_pop& pop, Range r, int64_t step) {
    // The slot of this step has been consumed; it is reused for step + ring_slots.
    for (int32_t port = 0; port < pop.n_spike_ports; ++port) {
        eg_real* row = pop.ring[port] + (step % pop.ring_slots[port]) * pop.n;
        std::fill(row + r.lo, row + r.hi, eg_real(0));
    }
}

// spiked: 0 nothing, 1 spike, 2 flush event.
void collect_own_events(const eg_engine_pop& pop, Range r, std::vector<int64_t>& spikes,
                        std::vector<int64_t>& flushes) {
    spikes.clear();
    flushes.clear();
    const uint8_t* spiked = pop.model->spiked;
    for (int64_t i = r.lo; i < r.hi; ++i) {
        if (spiked[i] == 1) spikes.push_back(i);
        else if (spiked[i] == 2) flushes.push_back(i);
    }
}

int64_t events_in_step(const std::vector<int64_t>& counts, const Shared& shared, int32_t p, int T) {
    int64_t total = 0;
    for (int u = 0; u < T; ++u) total += counts[size_t(u) * shared.n_pops + p];
    return total;
}

// The spikes population p emitted in an earlier step (delivery runs at the start of the next step,
// so also across simulate calls): a model population's from its spike record (sorted by step,
// [0, rec_count) complete), a spike source's from its schedule.
SpikeList spike_list(const eg_network* net, int32_t p, int64_t step) {
    const eg_engine_pop& pop = net->pops[p];
    if (step < 0) return {nullptr, nullptr, 0};
    if (is_model(pop)) {
        const int64_t lo = first_at_least(pop.rec_step, 0, pop.rec_count, step);
        const int64_t hi = first_at_least(pop.rec_step, lo, pop.rec_count, step + 1);
        return {pop.rec_sender + lo, nullptr, hi - lo};
    }
    int64_t lo = first_at_least(pop.event_step, 0, pop.n_events, step);
    int64_t hi = first_at_least(pop.event_step, lo, pop.n_events, step + 1);
    return {pop.event_sender + lo, pop.event_multiplicity + lo, hi - lo};
}

// The flush events population p emitted in an earlier step (model populations only; spike
// sources never flush).
SpikeList flush_list(const eg_network* net, int32_t p, int64_t step) {
    const eg_engine_pop& pop = net->pops[p];
    if (step < 0 || !is_model(pop) || pop.flush_count == 0) return {nullptr, nullptr, 0};
    const int64_t lo = first_at_least(pop.flush_step, 0, pop.flush_count, step);
    const int64_t hi = first_at_least(pop.flush_step, lo, pop.flush_count, step + 1);
    return {pop.flush_sender + lo, nullptr, hi - lo};
}

void deliver_projection(const eg_network* net, const eg_projection& proj, const SpikeList& spikes,
                        Range r, int64_t step) {
    const eg_engine_pop& target = net->pops[proj.target];
    eg_real* ring = target.ring[proj.port];
    const int64_t slots = target.ring_slots[proj.port];
    const int64_t base_slot = step % slots;
    for (int64_t k = 0; k < spikes.count; ++k) {
        const int64_t source = spikes.ids[k];
        const int64_t row_begin = proj.row_ptr[source], row_end = proj.row_ptr[source + 1];
        // the synapses onto this thread's targets (targets ascend within a row)
        const int64_t begin = r.lo == 0 ? row_begin : first_at_least(proj.target_id, row_begin, row_end, r.lo);
        const int64_t end = r.hi == target.n ? row_end : first_at_least(proj.target_id, begin, row_end, r.hi);
        const eg_real multiplicity = spikes.multiplicity ? spikes.multiplicity[k] : eg_real(1);  // w * 1 == w
        if (proj.uniform_delay) {   // one ring slot for the whole row
            int64_t slot = base_slot + proj.uniform_delay;
            if (slot >= slots) slot -= slots;
            eg_real* row = ring + slot * target.n;
            for (int64_t s = begin; s < end; ++s) row[proj.target_id[s]] += proj.weight[s] * multiplicity;
            continue;
        }
        for (int64_t s = begin; s < end; ++s) {
            int64_t slot = base_slot + proj.delay[s];       // delay < slots: one wrap at most
            if (slot >= slots) slot -= slots;
            ring[slot * target.n + proj.target_id[s]] += proj.weight[s] * multiplicity;
        }
    }
}

#include "engine_learning.h"

// Phase 1: currents, update, archive, clear consumed slots, note own spikes and flush events.
void update_phase(eg_network* net, int t, int T, int64_t step, Shared& shared,
                  std::vector<std::vector<int64_t>>& own_spikes,
                  std::vector<std::vector<int64_t>>& own_flushes) {
    // (archives are written here, by the owner of the neurons, right after their update)
    for (int32_t p = 0; p < net->n_pops; ++p) {
        const eg_engine_pop& pop = net->pops[p];
        if (!is_model(pop)) {
            flag_source_spikes(net, p, owned_range(pop.n, t, T), step);   // every rank: all of them
            continue;
        }
        Range r = owned_by(net, pop.n, t, T);
        const eg_archive* archive = shared.archive_of[p] >= 0 ? &net->archives[shared.archive_of[p]] : nullptr;
        if (!r.empty()) {
            fill_currents(net, p, r, step);
            if (archive) reset_at_interval_start(net, pop, r, step);
            reset_at_sample_start(net, pop, r, step);
            pop.update(pop.model, r.lo, r.hi);
            if (archive) {
                archive_own(net, *archive, pop, r, step);
                count_interval_spikes(net, *archive, pop, r, step);
            }
            clear_read_slots(pop, r, step);
        }
        collect_own_events(pop, r, own_spikes[p], own_flushes[p]);
        flag_own_spikes(pop, r, step, own_spikes[p]);
        shared.thread_counts[size_t(t) * shared.n_pops + p] = int64_t(own_spikes[p].size());
        shared.thread_flush_counts[size_t(t) * shared.n_pops + p] = int64_t(own_flushes[p].size());
    }
}

// Phase 2: concatenate per-thread spikes in thread order (= ascending id) and record them; the
// flush events likewise into the flush record.
void gather_phase(eg_network* net, int t, int64_t step, Shared& shared,
                  const std::vector<std::vector<int64_t>>& own_spikes,
                  const std::vector<std::vector<int64_t>>& own_flushes) {
    for (int32_t p = 0; p < net->n_pops; ++p) {
        eg_engine_pop& pop = net->pops[p];
        if (!is_model(pop)) continue;
        int64_t offset = 0, flush_offset = 0;
        for (int u = 0; u < t; ++u) {
            offset += shared.thread_counts[size_t(u) * shared.n_pops + p];
            flush_offset += shared.thread_flush_counts[size_t(u) * shared.n_pops + p];
        }
        const std::vector<int64_t>& mine = own_spikes[p];
        int64_t at = pop.rec_count + offset;
        for (size_t k = 0; k < mine.size(); ++k) {
            pop.rec_step[at + int64_t(k)] = step;
            pop.rec_sender[at + int64_t(k)] = mine[k];
        }
        const std::vector<int64_t>& flushes = own_flushes[p];
        at = pop.flush_count + flush_offset;
        for (size_t k = 0; k < flushes.size(); ++k) {
            pop.flush_step[at + int64_t(k)] = step;
            pop.flush_sender[at + int64_t(k)] = flushes[k];
        }
    }
}

// Phase B (NEST's order: at the start of step+1, before any update): every thread walks all
// spikes of `step` but only touches synapses onto its own targets. Static projections put them
// into their slots (step + delay); plastic ones replay and deliver everything that is integrated
// in step+1. Delivering at the start of the next step rather than at the end of this one matters
// for learning: like NEST, the spikes of a simulate call's last step are transmitted (and their
// synapses' weights updated) only by the next call.
void deliver_phase(const eg_network* net, int t, int T, int64_t step, int64_t n_projections,
                   const Shared& shared, ThreadScratch& scratch) {
    for (int32_t j = 0; j < n_projections; ++j) {
        const eg_projection& proj = net->projections[j];
        Range r = owned_by(net, net->pops[proj.target].n, t, T);
        // event-driven plastic projections: every thread follows every event (its copy of the
        // window bookkeeping), also with no targets of its own
        const bool follows_events = proj.plastic && net->update_interval == 0;
        if (r.empty() && !follows_events) continue;
        if (net->sample_steps > 0 && (step + 1) % net->sample_steps == 0) {
            // a new sample starts: the last step's spikes belong to the old one (not delivered);
            // plastic synapses close their windows there and, at a batch end, optimize
            if (proj.plastic) close_sample(net, shared, j, t, r, step, scratch.error);
        } else if (proj.plastic) {
            plastic_events(net, proj, step, scratch.events);
            if (net->update_interval > 0)
                deliver_plastic_interval(net, shared, j, r, step, scratch.events, scratch.error);
            else
                deliver_plastic(net, shared, j, t, r, step, scratch.events, scratch.error);
        } else {
            deliver_projection(net, proj, spike_list(net, proj.source, step), r, step);
        }
    }
}

// Phase 4: copy recorded state values (after step n: time (n+1)*dt).
void record_phase(const eg_network* net, int t, int T, int64_t step) {
    for (int32_t k = 0; k < net->n_recorders; ++k) {
        const eg_state_recorder& rec = net->recorders[k];
        const eg_engine_pop& pop = net->pops[rec.pop];
        Range r = owned_by(net, pop.n, t, T);
        const eg_real* values = pop.model->state[rec.state];
        eg_real* row = rec.out + (step - rec.first_step) * rec.n_neurons;
        int64_t i = first_at_least(rec.neurons, 0, rec.n_neurons, r.lo);
        for (; i < rec.n_neurons && rec.neurons[i] < r.hi; ++i) row[i] = values[rec.neurons[i]];
    }
}

void advance_spike_records(eg_network* net, const Shared& shared, int T) {
    for (int32_t p = 0; p < net->n_pops; ++p) {
        if (!is_model(net->pops[p])) continue;
        net->pops[p].rec_count += events_in_step(shared.thread_counts, shared, p, T);
        net->pops[p].flush_count += events_in_step(shared.thread_flush_counts, shared, p, T);
    }
}

void prepare_phase(eg_network* net, int t, int T) {
    // Parameters may have changed since the last call: derive coefficients afresh. For every
    // neuron on every rank (parameters are replicated): a window's presynaptic components take
    // neuron 0's coefficients for all targets (replay.cpp.j2, presynaptic_advance).
    for (int32_t p = 0; p < net->n_pops; ++p) {
        const eg_engine_pop& pop = net->pops[p];
        if (!is_model(pop)) continue;
        Range r = owned_range(pop.n, t, T);
        if (!r.empty()) pop.prepare(pop.model, r.lo, r.hi);
    }
}

inline int team_size() {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

inline int thread_index() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

}  // namespace

extern "C" {

// Runs steps [first_step, first_step + n_steps). Returns the number of steps done: fewer than
// n_steps only when a spike record could overflow (Python then grows it and calls again).
int64_t eg_engine_simulate(eg_network* net, int64_t first_step, int64_t n_steps, int32_t threads) {
    if (threads < 1) threads = 1;
    Shared shared;
    shared.n_pops = net->n_pops;
    shared.thread_counts.assign(size_t(threads) * size_t(net->n_pops), 0);
    shared.thread_flush_counts.assign(size_t(threads) * size_t(net->n_pops), 0);
    shared.archive_of.assign(size_t(net->n_pops), -1);
    for (int32_t a = 0; a < net->n_archives; ++a) shared.archive_of[net->archives[a].pop] = a;
    net->error_code = 0;
    const int64_t end_step = first_step + n_steps;
    int64_t done = 0;

#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
        const int T = team_size();
        const int t = thread_index();
        ThreadScratch scratch;
        scratch.own_spikes.resize(size_t(net->n_pops));
        scratch.own_flushes.resize(size_t(net->n_pops));
        std::vector<std::vector<int64_t>>& own_spikes = scratch.own_spikes;
        std::vector<std::vector<int64_t>>& own_flushes = scratch.own_flushes;

        prepare_phase(net, t, T);
#ifdef _OPENMP
#pragma omp single
#endif
        point_at_step(net, first_step);     // implicit barrier: prepare done, pointers set

        const int64_t D = std::max<int64_t>(1, net->delivery_interval);
        int64_t pending = net->pending_step;           // the same on every thread
        auto batch_starts = [&](int64_t n) { return n == first_step || n % D == 0; };
        int64_t step = first_step;
        // Every thread reads the same rec_count and error_code values (changed only before the
        // barrier that ends a step), so all threads leave the loop at the same step.
        for (; step < end_step && net->error_code == 0 && (!batch_starts(step) || record_has_room(net, D));
             ++step) {
            // phases A and B of NEST's step: what the previous step(s) produced. Both touch only
            // this thread's targets and read what earlier steps finished (behind barriers).
            feedback_phase(net, t, T, step - 1);
            blocks_phase(net, t, T, step - 2);
            if (batch_starts(step)) {
                for (int64_t m = pending; m < step; ++m) {
                    // the previous call's spikes go only through the projections it had
                    const int64_t n_projections = m < first_step
                        ? std::min<int64_t>(net->n_projections, net->n_projections_at_previous_step)
                        : net->n_projections;
                    deliver_phase(net, t, T, m, n_projections, shared, scratch);
                }
                pending = step;
            }
            publish_error(net, scratch.error);
            // phase C
            update_phase(net, t, T, step, shared, own_spikes, own_flushes);
#ifdef _OPENMP
#pragma omp barrier
#endif
            if (net->exchange && net->exchange_outputs) {
#ifdef _OPENMP
#pragma omp single
#endif
                net->exchange(net->exchange_ctx, step, 0);   // implicit barrier
            }
            softmax_error_phase(net, t, T, step, shared);   // reads every readout's y of this step
            gather_phase(net, t, step, shared, own_spikes, own_flushes);
            record_phase(net, t, T, step);
#ifdef _OPENMP
#pragma omp barrier
#pragma omp single
#endif
            {
                advance_spike_records(net, shared, T);
                if (net->exchange && (step + 1 == end_step || (step + 1) % D == 0))
                    net->exchange(net->exchange_ctx, step, 1);   // the batch's events
                point_at_step(net, step + 1);
            }  // implicit barrier
        }
        if (t == 0) {
            done = step - first_step;
            net->pending_step = pending;
        }
    }
    return done;
}

int32_t eg_engine_abi(void) { return EG_ENGINE_ABI; }

int32_t eg_engine_real_size(void) { return int32_t(sizeof(eg_real)); }

int32_t eg_engine_learning_real_size(void) { return int32_t(sizeof(eg_lreal)); }

int32_t eg_engine_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

// sizeof of every struct shared with Python, so the ctypes mirrors can be checked at load time.
void eg_engine_struct_sizes(int64_t* out) {
    out[0] = int64_t(sizeof(eg_population));
    out[1] = int64_t(sizeof(eg_engine_pop));
    out[2] = int64_t(sizeof(eg_projection));
    out[3] = int64_t(sizeof(eg_current_source));
    out[4] = int64_t(sizeof(eg_state_recorder));
    out[5] = int64_t(sizeof(eg_network));
    out[6] = int64_t(sizeof(eg_archive));
    out[7] = int64_t(sizeof(eg_feedback));
    out[8] = int64_t(sizeof(eg_history));
    out[9] = int64_t(sizeof(eg_plastic));
    out[10] = int64_t(sizeof(eg_interval_replay));
    out[11] = int64_t(sizeof(eg_blocks));
    out[12] = int64_t(sizeof(eg_windows));
    out[13] = int64_t(sizeof(eg_event_batch));
}

}  // extern "C"
