// engine_learning.h — the learning phases of the step loop; part of engine.cpp (included once,
// inside its anonymous namespace, after the spike lists it reads).
//
// Two engines share the archive and the feedback:
//  - event-driven (NEST's eprop_synapse, spec §4): deliver_plastic replays a synapse's window at
//    each of its events with the generated replay kernel;
//  - time-driven (Bellec et al. 2020 as NEST's eprop_synapse_bsshslm_2020 computes it, spec §8):
//    every population with an archive has update intervals of U steps starting at
//    interval_offset + k U, where it is reset to its initial state; a synapse's gradient is the
//    sum over one whole interval, computed by the generated interval kernel at the synapse's first
//    event after the interval (deliver_plastic_interval), from the source's spike flags and the
//    target's history; the optimizer runs once per interval with the interval number as index.
//    Readout errors count only in the last LW steps of an interval, and reach the history one step
//    later than in the event-driven engine (NEST's readout signal lags its voltage by one step).

inline bool time_driven(const eg_network* net) { return net->update_interval > 0; }

// Position of `step` in the population's update interval, (step - offset) % U: C++'s truncating
// remainder, negative before the first interval (as NEST computes it).
inline int64_t interval_phase(const eg_network* net, const eg_engine_pop& pop, int64_t step) {
    return (step - pop.interval_offset) % net->update_interval;
}

// Neuron i's entry of `step` (eg_eprop.h: step-major).
inline int64_t history_at(const eg_history* h, int64_t step, int64_t i) { return eg_history_row(h, step, i); }

// A per-step input ([rows][n]) at `step`: row min(step, rows - 1), like a generator that keeps its
// last amplitude; `absent` when no values were given.
inline eg_real per_step_value(const eg_real* values, int64_t rows, int64_t n, int64_t step,
                              int64_t i, eg_real absent) {
    if (rows == 0) return absent;
    if (step < 0) step = 0;
    return values[(step < rows ? step : rows - 1) * n + i];
}

// The readout error's weight in `step`: the user's learning window lambda, times (time-driven) the
// schedule's window: only the last LW steps of the readout's interval count (spec §8.3).
inline eg_real error_weight(const eg_network* net, const eg_archive& a, const eg_engine_pop& pop,
                            int64_t step, int64_t i) {
    eg_real window = per_step_value(a.window, a.window_rows, pop.n, step - a.window_start, i, 1);
    if (time_driven(net) &&
        interval_phase(net, pop, step) < net->update_interval - net->learning_window) window = 0;
    return window;
}

// History row `step` of the owned neurons, right after their update: psi, R, and L = 0, except
// for readouts, whose row holds their own error E = (y - y*) * lambda (spec §3.7). A softmax
// readout's error needs all readouts of the step: softmax_error_phase writes it.
void archive_own(const eg_network* net, const eg_archive& a, const eg_engine_pop& pop, Range r,
                 int64_t step) {
    eg_history* h = a.history;
    eg_real* const* state = pop.model->state;
    for (int64_t i = r.lo; i < r.hi; ++i) {
        const int64_t at = history_at(h, step, i);
        h->psi[at] = a.psi_state >= 0 ? state[a.psi_state][i] : eg_real(0);
        h->regularisation[at] = a.reg_state >= 0 ? state[a.reg_state][i] : eg_real(0);
        for (int32_t k = 0; k < a.n_extra; ++k) h->extra[k][at] = state[a.extra_state[k]][i];
        eg_real error = 0;
        if (a.output_state >= 0 && !a.softmax) {
            const eg_real y = state[a.output_state][i];
            const eg_real target = per_step_value(a.target, a.target_rows, pop.n, step - a.target_start, i, 0);
            error = (y - target) * error_weight(net, a, pop, step, i);
        }
        h->learning_signal[at] = error;
    }
}

// Cross-entropy readouts: y_k = exp(u_k) / sum_j exp(u_j) over the population (shifted by the
// largest u, which changes nothing but overflow), then E = (y - y*) * lambda. Every thread sums in
// the same order, so the result does not depend on the thread count. After the update's barrier.
void softmax_error_phase(const eg_network* net, int t, int T, int64_t step, const Shared& shared) {
    for (int32_t a_index = 0; a_index < net->n_archives; ++a_index) {
        const eg_archive& a = net->archives[a_index];
        if (!a.softmax || a.output_state < 0) continue;
        const eg_engine_pop& pop = net->pops[a.pop];
        const Range r = owned_by(net, pop.n, t, T);
        if (r.empty()) continue;
        const eg_real* u = pop.model->state[a.output_state];
        eg_real largest = u[0];
        for (int64_t k = 1; k < pop.n; ++k) largest = u[k] > largest ? u[k] : largest;
        eg_real sum = 0;
        for (int64_t k = 0; k < pop.n; ++k) sum += exp(u[k] - largest);
        eg_history* h = a.history;
        for (int64_t i = r.lo; i < r.hi; ++i) {
            const eg_real y = exp(u[i] - largest) / sum;
            const eg_real target = per_step_value(a.target, a.target_rows, pop.n, step - a.target_start, i, 0);
            h->learning_signal[history_at(h, step, i)] = (y - target) * error_weight(net, a, pop, step, i);
        }
    }
    (void)shared;
}

// Time-driven: at the first step of a learning population's interval its neurons restart from
// their initial state (NEST's eprop_reset_neurons_on_update): state variables, refractory count,
// and the spike of the previous step (which would otherwise still adapt).
void reset_at_interval_start(const eg_network* net, const eg_engine_pop& pop, Range r, int64_t step) {
    if (!time_driven(net) || !net->reset_neurons || pop.initial_state == nullptr) return;
    if (interval_phase(net, pop, step) != 0) return;
    for (int32_t k = 0; k < pop.n_states; ++k)
        std::copy(pop.initial_state[k] + r.lo, pop.initial_state[k] + r.hi, pop.model->state[k] + r.lo);
    std::fill(pop.model->refractory + r.lo, pop.model->refractory + r.hi, 0);
    std::fill(pop.model->spiked + r.lo, pop.model->spiked + r.hi, uint8_t(0));
}

// Event-driven samples: at the first step of a sample every model population restarts from its
// initial state (observables such as psi and traces from 0, pending input discarded).
void reset_at_sample_start(const eg_network* net, const eg_engine_pop& pop, Range r, int64_t step) {
    if (net->sample_steps <= 0 || step == 0 || step % net->sample_steps != 0 || pop.initial_state == nullptr)
        return;
    for (int32_t k = 0; k < pop.n_states; ++k)
        std::copy(pop.initial_state[k] + r.lo, pop.initial_state[k] + r.hi, pop.model->state[k] + r.lo);
    for (int32_t k = pop.n_states; k < pop.n_states + pop.n_observables; ++k)
        std::fill(pop.model->state[k] + r.lo, pop.model->state[k] + r.hi, eg_real(0));
    std::fill(pop.model->refractory + r.lo, pop.model->refractory + r.hi, 0);
    std::fill(pop.model->spiked + r.lo, pop.model->spiked + r.hi, uint8_t(0));
    for (int32_t port = 0; port < pop.n_spike_ports; ++port)
        for (int64_t slot = 0; slot < pop.ring_slots[port]; ++slot)
            std::fill(pop.ring[port] + slot * pop.n + r.lo, pop.ring[port] + slot * pop.n + r.hi, eg_real(0));
}

// Time-driven: spikes per interval, for the regularisation of that interval. The count of the
// interval ending in this step is stored under its number (spikes before the first interval
// count into it, as in NEST).
void count_interval_spikes(const eg_network* net, const eg_archive& a, const eg_engine_pop& pop,
                           Range r, int64_t step) {
    if (!time_driven(net) || a.spike_count == nullptr) return;
    const uint8_t* spiked = pop.model->spiked;
    for (int64_t i = r.lo; i < r.hi; ++i) a.spike_count[i] += spiked[i] == 1;
    if (interval_phase(net, pop, step) != net->update_interval - 1) return;
    const int64_t k = (step - pop.interval_offset) / net->update_interval;
    int64_t* slot = a.interval_spikes + (k % a.count_slots) * pop.n;
    for (int64_t i = r.lo; i < r.hi; ++i) {
        slot[i] = a.spike_count[i];
        a.spike_count[i] = 0;
    }
}

// Time-driven: this step's row of the spike flags the interval replays read (owned neurons).
void flag_own_spikes(const eg_engine_pop& pop, Range r, int64_t step, const std::vector<int64_t>& spikes) {
    if (pop.spike_flags == nullptr || r.empty()) return;
    uint8_t* row = pop.spike_flags + (step % pop.flag_capacity) * pop.n;
    std::fill(row + r.lo, row + r.hi, uint8_t(0));
    for (int64_t i : spikes) row[i] = 1;
}

void flag_source_spikes(const eg_network* net, int32_t p, Range r, int64_t step) {
    const eg_engine_pop& pop = net->pops[p];
    if (pop.spike_flags == nullptr || r.empty()) return;
    uint8_t* row = pop.spike_flags + (step % pop.flag_capacity) * pop.n;
    std::fill(row + r.lo, row + r.hi, uint8_t(0));
    const SpikeList spikes = spike_list(net, p, step);
    for (int64_t k = 0; k < spikes.count; ++k)
        if (spikes.ids[k] >= r.lo && spikes.ids[k] < r.hi) row[spikes.ids[k]] = 1;
}

// Phase A of step+1: the readout errors of `step` become the learning signals of history row
// step - 1 (spec §2.3: L[m] = sum_k B_jk E_k[m+1]), added one readout at a time in readout order,
// as NEST adds its LearningSignalConnectionEvents. Reads readout rows of other threads: call
// after the barrier that follows the update. Time-driven: one step later (rows step - 1 -> step - 2,
// spec §8.3), so a replay in the step right after an interval still lacks its last signal, as in NEST.
void feedback_phase(const eg_network* net, int t, int T, int64_t step) {
    if (time_driven(net)) step -= 1;
    if (step < 1) return;                               // row -1 does not exist
    for (int32_t f = 0; f < net->n_feedbacks; ++f) {
        const eg_feedback& fb = net->feedbacks[f];
        const eg_history* readout = net->archives[fb.readout].history;
        eg_history* target = net->archives[fb.target].history;
        const Range r = owned_by(net, target->n, t, T);
        const int64_t n_readout = readout->n;
        for (int64_t k = 0; k < n_readout; ++k) {
            const eg_real e = readout->learning_signal[history_at(readout, step, k)];
            for (int64_t j = r.lo; j < r.hi; ++j)
                target->learning_signal[history_at(target, step - 1, j)] += fb.weight[j * n_readout + k] * e;
        }
    }
}

// Event-driven: history row `row` became final (feedback_phase just completed its learning
// signal): it joins the block products of the owned neurons, before any replay reads it.
void blocks_phase(const eg_network* net, int t, int T, int64_t row) {
    if (time_driven(net) || row < 0) return;
    for (int32_t a = 0; a < net->n_archives; ++a) {
        const eg_history* h = net->archives[a].history;
        const Range r = owned_by(net, h->n, t, T);
        if (r.empty()) continue;
        for (int64_t port = 0; port < h->n_blocks; ++port)
            if (h->blocks[port].advance)
                h->blocks[port].advance(net->pops[net->archives[a].pop].model, h, r.lo, r.hi, row);
    }
}

// The events integrated in step+1 through a plastic projection, in NEST's delivery order:
// ascending source, then ascending delay (a spike or flush event of step+1-d reaches the synapses
// of delay d). A neuron either spikes or flushes in a step, so within one delay the two sorted
// lists merge into one without ties. Settle events (the spikes of settle_steps earlier, again,
// as flushes; deliver_plastic skips synapses that had an event since) come first within a
// source and delay: a settle must not follow a spike of the same stamp.
void plastic_events(const eg_network* net, const eg_projection& proj, int64_t step,
                    std::vector<PlasticEvent>& events) {
    events.clear();
    if (proj.settle_steps > 0 && net->update_interval == 0) {
        for (int64_t d = 1; d <= proj.max_delay; ++d) {
            const SpikeList settled = spike_list(net, proj.source, step + 1 - d - proj.settle_steps);
            for (int64_t k = 0; k < settled.count; ++k) events.push_back({settled.ids[k], 1.0, int32_t(d), 2});
        }
    }
    const bool settles = !events.empty();
    for (int64_t d = 1; d <= proj.max_delay; ++d) {
        if (net->sample_steps > 0 && step + 1 - d < (step + 1) - (step + 1) % net->sample_steps)
            break;                 // emitted in an earlier sample (whose windows are closed)
        const SpikeList spikes = spike_list(net, proj.source, step + 1 - d);
        const SpikeList flushes = flush_list(net, proj.source, step + 1 - d);
        int64_t k = 0, f = 0;
        while (k < spikes.count || f < flushes.count) {
            if (f == flushes.count || (k < spikes.count && spikes.ids[k] < flushes.ids[f])) {
                events.push_back({spikes.ids[k], spikes.multiplicity ? spikes.multiplicity[k] : 1.0,
                                  int32_t(d), 0});
                ++k;
            } else {
                events.push_back({flushes.ids[f], 1.0, int32_t(d), 1});
                ++f;
            }
        }
    }
    if (settles)
        std::sort(events.begin(), events.end(), [](const PlasticEvent& a, const PlasticEvent& b) {
            if (a.source != b.source) return a.source < b.source;
            if (a.delay != b.delay) return a.delay < b.delay;
            return a.is_flush == 2 && b.is_flush != 2;
        });
    else if (proj.max_delay > 1)   // stable: within a source the delays stay ascending
        std::stable_sort(events.begin(), events.end(),
                         [](const PlasticEvent& a, const PlasticEvent& b) { return a.source < b.source; });
}

// Phase B of step+1 for one plastic projection and the owned targets: replay every synapse that
// an event reaches now (stamp step+1, spec §4.2) and transmit the weight it returns (x multiplicity;
// the trace counts a spike once, the kernel sees only the stamp). A flush or settle event replays
// and transmits nothing (spec §4.6). The generated event kernel does the synapses of one event and
// advances the event's window bookkeeping in this thread's copy (also when the thread owns none of
// the targets, so that every copy follows every event). A replay whose rows the history no longer
// holds is not run but reported.
eg_event_batch event_batch(const eg_projection& proj, const eg_engine_pop& target, const eg_history* hist,
                           int t, int64_t stamp) {
    const eg_plastic* syn = proj.plastic;
    eg_event_batch batch;
    batch.target_id = proj.target_id;
    batch.delay = proj.uniform_delay ? nullptr : proj.delay;     // one delay: nothing to skip
    batch.stamp = stamp;
    batch.settle_steps = proj.settle_steps;
    batch.oldest_held = stamp - hist->capacity;    // rows (stamp - 1 - capacity, stamp - 1]
    batch.ring = target.ring[proj.port] + (stamp % target.ring_slots[proj.port]) * target.n;
    batch.windows.t_start = syn->win_t_start + int64_t(t) * syn->n_windows;
    batch.windows.t_last = syn->win_t_last + int64_t(t) * syn->n_windows;
    batch.windows.flags = syn->win_flags + int64_t(t) * syn->n_windows;
    batch.windows.opt = syn->shared_optimizer ? syn->win_opt + int64_t(t) * syn->n_windows : nullptr;
    batch.windows.eps = syn->eps_shared ? syn->win_eps + int64_t(t) * syn->n_windows * syn->n_presynaptic : nullptr;
    return batch;
}

// Synapses [q_begin, q_end) of `source` onto the owned targets.
inline void owned_synapses(const eg_projection& proj, int64_t n_target, Range r, int64_t source,
                           eg_event_batch& batch) {
    const int64_t row_begin = proj.row_ptr[source], row_end = proj.row_ptr[source + 1];
    batch.q_begin = r.lo == 0 ? row_begin : first_at_least(proj.target_id, row_begin, row_end, r.lo);
    batch.q_end = r.hi == n_target ? row_end : first_at_least(proj.target_id, batch.q_begin, row_end, r.hi);
}

void deliver_plastic(const eg_network* net, const Shared& shared, int32_t index, int t, Range r,
                     int64_t step, const std::vector<PlasticEvent>& events, ReplayError& error) {
    const eg_projection& proj = net->projections[index];
    const eg_engine_pop& target = net->pops[proj.target];
    const eg_history* hist = net->archives[shared.archive_of[proj.target]].history;
    eg_event_batch batch = event_batch(proj, target, hist, t, step + 1);
    for (const PlasticEvent& ev : events) {
        owned_synapses(proj, target.n, r, ev.source, batch);
        batch.event_delay = ev.delay;
        batch.kind = ev.is_flush;
        batch.multiplicity = ev.multiplicity;
        batch.window = ev.source * proj.max_delay + (ev.delay - 1);
        batch.error_synapse = -1;
        proj.replay_event(target.model, hist, proj.plastic, &batch);
        if (batch.error_synapse >= 0 && error.before(index, batch.error_synapse))
            error = {index, batch.error_synapse, batch.error_row, step};
    }
}

void publish_error(eg_network* net, const ReplayError& error) {
    if (error.projection < 0) return;
#ifdef _OPENMP
#pragma omp critical(eg_replay_error)
#endif
    {
        const bool first = net->error_code == 0;
        if (first || error.projection < net->error_info[0] ||
            (error.projection == net->error_info[0] && error.synapse < net->error_info[1])) {
            net->error_code = 1;
            net->error_info[0] = error.projection;
            net->error_info[1] = error.synapse;
            net->error_info[2] = error.row;
            net->error_info[3] = error.step;
        }
    }
}

// Phase B of step+1 for one plastic projection in the time-driven engine (spec §8.4, NEST's
// eprop_synapse_bsshslm_2020 send): per synapse and event with stamp s,
//   - an arrival at a spiking target in the first step of its interval is dropped;
//   - the first event after the synapse's interval [.., b) ends adds the interval's gradient
//     (interval kernel over [t_trig, b), divided by LW if averaged) to the carry G; a spike then
//     optimizes with index = its interval number (batch_size counts intervals) and transmits;
//   - a flush event adds the gradient but neither optimizes nor transmits; the spike after it
//     restarts the window and optimizes.
// Exact for flush intervals >= U (NEST's own bookkeeping is wrong below that, spec §8.5).
void deliver_plastic_interval(const eg_network* net, const Shared& shared, int32_t index, Range r,
                              int64_t step, const std::vector<PlasticEvent>& events, ReplayError& error) {
    const eg_projection& proj = net->projections[index];
    const eg_engine_pop& target = net->pops[proj.target];
    const eg_engine_pop& source = net->pops[proj.source];
    const eg_archive& archive = net->archives[shared.archive_of[proj.target]];
    const eg_history* hist = archive.history;
    eg_plastic* syn = proj.plastic;
    const int64_t U = net->update_interval, S = target.interval_offset;
    const bool drops = archive.output_state < 0;
    const int64_t s = step + 1;
    eg_real* ring = target.ring[proj.port] + (s % target.ring_slots[proj.port]) * target.n;
    eg_interval_replay replay;
    replay.spike_flags = source.spike_flags;
    replay.flag_capacity = source.flag_capacity;
    replay.flag_n = source.n;
    replay.interval_steps = double(U);
    const bool dropped_now = drops && (s - S) % U == 0;
    for (const PlasticEvent& ev : events) {
        const int64_t row_end = proj.row_ptr[ev.source + 1];
        int64_t q = first_at_least(proj.target_id, proj.row_ptr[ev.source], row_end, r.lo);
        for (; q < row_end && proj.target_id[q] < r.hi; ++q) {
            if (proj.delay[q] != ev.delay) continue;
            const int64_t j = proj.target_id[q];
            if (syn->last_was_flush[q]) {
                if (ev.is_flush) continue;
                syn->t_last[q] = s;
                syn->t_trig[q] = s;
            }
            if (dropped_now) continue;
            if (syn->t_trig[q] == 0) syn->t_trig[q] = s;
            const int64_t b = syn->t_next_upd[q] + S;        // first step of the next interval
            double w = syn->weight[q];
            if (s > b) {
                const int64_t interval = eg_optimizer_floor_div(s - S, U);
                const int64_t t_trig = syn->t_trig[q];
                if (syn->t_last[q] > 0 && t_trig < b) {
                    if (t_trig - ev.delay < s - hist->capacity ||
                        t_trig - ev.delay < s - source.flag_capacity) {
                        if (error.before(index, q)) error = {index, q, t_trig - ev.delay, step};
                        continue;
                    }
                    replay.t_trig = t_trig;
                    replay.b = b;
                    replay.skip = drops ? b - U : -1;
                    replay.source = ev.source;
                    replay.delay = ev.delay;
                    const int64_t k = syn->t_next_upd[q] / U - 1;   // the finished interval
                    replay.interval_spikes = archive.interval_spikes
                        ? double(archive.interval_spikes[(k % archive.count_slots) * target.n + j]) : 0.0;
                    double g = proj.interval(target.model, hist, &replay, j);
                    if (net->average_gradient) g /= double(net->learning_window);
                    syn->grad[q] += g;
                }
                if (!ev.is_flush) {
                    w = eg_optimize(syn->optimizer, &syn->opt[q], interval, syn->grad[q], w);
                    syn->grad[q] = 0;
                }
                syn->t_next_upd[q] = interval * U + U;
                syn->t_trig[q] = s;
            } else if (!ev.is_flush && syn->last_was_flush[q]) {
                w = eg_optimize(syn->optimizer, &syn->opt[q], eg_optimizer_floor_div(s - S, U),
                                syn->grad[q], w);
                syn->grad[q] = 0;
            }
            syn->weight[q] = w;
            if (!ev.is_flush) {
                syn->t_last[q] = s;
                ring[j] += w * ev.multiplicity;
            }
            syn->last_was_flush[q] = uint8_t(ev.is_flush != 0);
        }
    }
}

// Phase B of the first step of a sample (stamp step+1) for one plastic projection, event-driven
// samples: every window onto the owned targets is closed like a flush event (history up to
// stamp - 2, the old sample's last entry with a complete learning signal; a readout's up to
// stamp - 1, its own error), its gradient added to
// the batch's sum, and the new sample starts without history. After the batch's last sample the
// batch optimizer takes its one step (index = samples so far; the mean over the batch).
void close_sample(const eg_network* net, const Shared& shared, int32_t index, int t, Range r, int64_t step,
                  ReplayError& error) {
    const eg_projection& proj = net->projections[index];
    const eg_engine_pop& target = net->pops[proj.target];
    const eg_history* hist = net->archives[shared.archive_of[proj.target]].history;
    eg_plastic* syn = proj.plastic;
    const int64_t stamp = step + 1;
    const int64_t samples = stamp / net->sample_steps;
    const bool batch_end = samples % proj.batch_optimizer->batch_size == 0;
    const int64_t n_source = net->pops[proj.source].n;
    // A readout's row `step` holds its own error already (nothing arrives later), so its windows
    // close through that row: its gradient then covers the same errors E[0 .. step] as the
    // learning signals of the recurrent targets' rows (L[m] = B E[m+1], rows up to stamp - 2).
    const bool readout = net->archives[shared.archive_of[proj.target]].output_state >= 0;
    if (readout)
        for (int64_t port = 0; port < hist->n_blocks; ++port)   // the row joins the products now
            if (hist->blocks[port].advance) hist->blocks[port].advance(target.model, hist, r.lo, r.hi, step);
    eg_event_batch batch = event_batch(proj, target, hist, t, readout ? stamp + 1 : stamp);
    batch.oldest_held = stamp - hist->capacity;
    batch.kind = 3;
    batch.multiplicity = 0.0;
    for (int64_t source = 0; source < n_source; ++source) {
        owned_synapses(proj, target.n, r, source, batch);
        for (int32_t d = 1; d <= proj.max_delay; ++d) {
            batch.event_delay = d;
            batch.window = source * proj.max_delay + (d - 1);
            batch.error_synapse = -1;
            proj.replay_event(target.model, hist, syn, &batch);
            if (batch.error_synapse >= 0 && error.before(index, batch.error_synapse))
                error = {index, batch.error_synapse, batch.error_row, step};
        }
        if (batch_end)
            for (int64_t q = batch.q_begin; q < batch.q_end; ++q)
                syn->weight[q] = eg_optimize(proj.batch_optimizer, &syn->opt[q], samples, 0.0, syn->weight[q]);
    }
}
