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
// All arrays belong to Python (numpy) and are passed in the structs below; the ctypes mirrors in
// eprop_gen/engine/native.py must match them field for field (checked via eg_engine_struct_sizes).
#include "eg_runtime.h"

#include <algorithm>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

extern "C" {

#define EG_ENGINE_ABI 1

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
} eg_engine_pop;

// Synapses of one projection, CSR by source; targets ascending within a row.
typedef struct eg_projection {
    int32_t source;                // index into eg_network.pops
    int32_t target;                // index into eg_network.pops (a model population)
    int32_t port;                  // spike port of the target model
    int32_t reserved;
    const int64_t* row_ptr;        // [n_source + 1]
    const int64_t* target_id;      // [n_synapses]
    const eg_real* weight;         // [n_synapses]
    const int32_t* delay;          // [n_synapses], 1 <= delay < ring_slots
} eg_projection;

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
} eg_network;

}  // extern "C"

namespace {

struct Range {
    int64_t lo, hi;
    bool empty() const { return lo >= hi; }
};

// The neurons thread t of T owns; depends only on n, t and T.
inline Range owned_range(int64_t n, int t, int T) { return {n * t / T, n * (t + 1) / T}; }

// Index of the first element >= value in the ascending array a[lo, hi).
inline int64_t first_at_least(const int64_t* a, int64_t lo, int64_t hi, int64_t value) {
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
    std::vector<std::vector<int64_t>> spikes;   // per population: this step's ids (model pops)
    std::vector<int64_t> thread_counts;         // [thread][population] spikes found by each thread
    int n_pops = 0;
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

bool record_has_room(const eg_network* net) {
    // A step adds at most n spikes per population; stop before a step that could overflow.
    for (int32_t p = 0; p < net->n_pops; ++p) {
        const eg_engine_pop& pop = net->pops[p];
        if (is_model(pop) && pop.rec_capacity - pop.rec_count < pop.n) return false;
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

void collect_own_spikes(const eg_engine_pop& pop, Range r, std::vector<int64_t>& out) {
    out.clear();
    const uint8_t* spiked = pop.model->spiked;
    for (int64_t i = r.lo; i < r.hi; ++i)
        if (spiked[i]) out.push_back(i);
}

// Phase 1: currents, update, clear consumed slots, note own spikes.
void update_phase(eg_network* net, int t, int T, int64_t step, Shared& shared,
                  std::vector<std::vector<int64_t>>& own_spikes) {
    for (int32_t p = 0; p < net->n_pops; ++p) {
        const eg_engine_pop& pop = net->pops[p];
        if (!is_model(pop)) continue;
        Range r = owned_range(pop.n, t, T);
        if (!r.empty()) {
            fill_currents(net, p, r, step);
            pop.update(pop.model, r.lo, r.hi);
            clear_read_slots(pop, r, step);
        }
        collect_own_spikes(pop, r, own_spikes[p]);
        shared.thread_counts[size_t(t) * shared.n_pops + p] = int64_t(own_spikes[p].size());
    }
}

// Phase 2: concatenate per-thread spikes in thread order (= ascending id) and record them.
void gather_phase(eg_network* net, int t, int64_t step, Shared& shared,
                  const std::vector<std::vector<int64_t>>& own_spikes) {
    for (int32_t p = 0; p < net->n_pops; ++p) {
        eg_engine_pop& pop = net->pops[p];
        if (!is_model(pop)) continue;
        int64_t offset = 0;
        for (int u = 0; u < t; ++u) offset += shared.thread_counts[size_t(u) * shared.n_pops + p];
        const std::vector<int64_t>& mine = own_spikes[p];
        std::copy(mine.begin(), mine.end(), shared.spikes[p].begin() + offset);
        int64_t at = pop.rec_count + offset;
        for (size_t k = 0; k < mine.size(); ++k) {
            pop.rec_step[at + int64_t(k)] = step;
            pop.rec_sender[at + int64_t(k)] = mine[k];
        }
    }
}

int64_t spikes_in_step(const Shared& shared, int32_t p, int T) {
    int64_t total = 0;
    for (int u = 0; u < T; ++u) total += shared.thread_counts[size_t(u) * shared.n_pops + p];
    return total;
}

SpikeList spike_list(const eg_network* net, const Shared& shared, int32_t p, int T, int64_t step) {
    const eg_engine_pop& pop = net->pops[p];
    if (is_model(pop)) return {shared.spikes[p].data(), nullptr, spikes_in_step(shared, p, T)};
    int64_t lo = first_at_least(pop.event_step, 0, pop.n_events, step);
    int64_t hi = first_at_least(pop.event_step, lo, pop.n_events, step + 1);
    return {pop.event_sender + lo, pop.event_multiplicity + lo, hi - lo};
}

void deliver_projection(const eg_network* net, const eg_projection& proj, const SpikeList& spikes,
                        Range r, int64_t step) {
    const eg_engine_pop& target = net->pops[proj.target];
    eg_real* ring = target.ring[proj.port];
    const int64_t slots = target.ring_slots[proj.port];
    const int64_t base_slot = step % slots;
    for (int64_t k = 0; k < spikes.count; ++k) {
        const int64_t source = spikes.ids[k];
        const int64_t row_end = proj.row_ptr[source + 1];
        int64_t s = first_at_least(proj.target_id, proj.row_ptr[source], row_end, r.lo);
        for (; s < row_end && proj.target_id[s] < r.hi; ++s) {
            int64_t slot = base_slot + proj.delay[s];       // delay < slots: one wrap at most
            if (slot >= slots) slot -= slots;
            eg_real w = spikes.multiplicity ? proj.weight[s] * spikes.multiplicity[k]
                                            : proj.weight[s];
            ring[slot * target.n + proj.target_id[s]] += w;
        }
    }
}

// Phase 3: every thread walks all spikes but only touches synapses onto its own targets.
void deliver_phase(const eg_network* net, int t, int T, int64_t step, const Shared& shared) {
    for (int32_t j = 0; j < net->n_projections; ++j) {
        const eg_projection& proj = net->projections[j];
        Range r = owned_range(net->pops[proj.target].n, t, T);
        if (r.empty()) continue;
        SpikeList spikes = spike_list(net, shared, proj.source, T, step);
        deliver_projection(net, proj, spikes, r, step);
    }
}

// Phase 4: copy recorded state values (after step n: time (n+1)*dt).
void record_phase(const eg_network* net, int t, int T, int64_t step) {
    for (int32_t k = 0; k < net->n_recorders; ++k) {
        const eg_state_recorder& rec = net->recorders[k];
        const eg_engine_pop& pop = net->pops[rec.pop];
        Range r = owned_range(pop.n, t, T);
        const eg_real* values = pop.model->state[rec.state];
        eg_real* row = rec.out + (step - rec.first_step) * rec.n_neurons;
        int64_t i = first_at_least(rec.neurons, 0, rec.n_neurons, r.lo);
        for (; i < rec.n_neurons && rec.neurons[i] < r.hi; ++i) row[i] = values[rec.neurons[i]];
    }
}

void advance_spike_records(eg_network* net, const Shared& shared, int T) {
    for (int32_t p = 0; p < net->n_pops; ++p)
        if (is_model(net->pops[p])) net->pops[p].rec_count += spikes_in_step(shared, p, T);
}

void prepare_phase(eg_network* net, int t, int T) {
    // Parameters may have changed since the last call: derive coefficients afresh.
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
    shared.spikes.resize(size_t(net->n_pops));
    for (int32_t p = 0; p < net->n_pops; ++p)
        if (is_model(net->pops[p])) shared.spikes[p].resize(size_t(net->pops[p].n));
    shared.thread_counts.assign(size_t(threads) * size_t(net->n_pops), 0);
    const int64_t end_step = first_step + n_steps;
    int64_t done = 0;

#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
        const int T = team_size();
        const int t = thread_index();
        std::vector<std::vector<int64_t>> own_spikes(size_t(net->n_pops));

        prepare_phase(net, t, T);
#ifdef _OPENMP
#pragma omp single
#endif
        point_at_step(net, first_step);     // implicit barrier: prepare done, pointers set

        int64_t step = first_step;
        // Every thread reads the same rec_count values (changed only inside `single` below),
        // so all threads leave the loop at the same step.
        for (; step < end_step && record_has_room(net); ++step) {
            update_phase(net, t, T, step, shared, own_spikes);
#ifdef _OPENMP
#pragma omp barrier
#endif
            gather_phase(net, t, step, shared, own_spikes);
#ifdef _OPENMP
#pragma omp barrier
#endif
            deliver_phase(net, t, T, step, shared);
            record_phase(net, t, T, step);
#ifdef _OPENMP
#pragma omp barrier
#pragma omp single
#endif
            {
                advance_spike_records(net, shared, T);
                point_at_step(net, step + 1);
            }  // implicit barrier
        }
        if (t == 0) done = step - first_step;
    }
    return done;
}

int32_t eg_engine_abi(void) { return EG_ENGINE_ABI; }

int32_t eg_engine_real_size(void) { return int32_t(sizeof(eg_real)); }

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
}

}  // extern "C"
