/* eg_optimizer.h — the e-prop weight optimizers (gradient descent, Adam) with NEST 3.10 semantics.
 *
 * Source of truth: /work/shared/eprop-spec.md §5 (and §4.3 for how eprop_synapse calls it) and the
 * numpy reference tests/eprop_ref/numpy_event.py (GroupOptimizer), which equals NEST bitwise.
 * tests/test_optimizer.py checks this header bitwise against that reference.
 *
 * Plain C99, usable from C++; depends only on <math.h> and <stdint.h>. Every function is
 * `static inline`, so any number of translation units may include the header (each gets its own
 * internal copy; there is nothing to link).
 *
 * Use:
 *     eg_optimizer o;  eg_optimizer_init(&o);        // NEST defaults; then set kind, batch_size, ...
 *     eg_optimizer_set_eta(&o, eta);                  // every SetDefaults(eta), incl. the first one
 *     eg_optimizer_state s;  eg_optimizer_state_init(&s);   // one per synapse
 *     w = eg_optimize(&o, &s, index, g, w);           // OPT(idx, g, w) of spec §5
 *
 * Index semantics (spec §5, §4.3): `index` is whatever time the caller counts in, and batch_size is
 * in the same unit. eprop_synapse passes the history step m+1 per replayed step
 * (optimize_each_step) or s-1 once per spike; eprop_synapse_bsshslm_2020 passes update intervals.
 * Batches are the half-open index ranges (0, B], (B, 2B], ...; the optimisation happens at the first
 * call whose index lies beyond the current batch, and the gradient of that call belongs to the
 * batch being applied.
 *
 * Bitwise reproducibility: the arithmetic below is written in exactly the order of the spec's
 * pseudo-code / the numpy reference. It must not be reassociated or contracted:
 *   - fast-math compilation (__FAST_MATH__) is rejected at compile time;
 *   - fused multiply-add contraction (a*b+c -> fma) changes rounding. g++ contracts even in ISO mode
 *     when the target has FMA (-march=native, -mfma). If the target has fast FMA we therefore compile
 *     these functions with fp-contract=off (GCC optimize pragma; clang: STDC FP_CONTRACT OFF). Side
 *     effect under GCC: when the includer is compiled with FMA but without -ffp-contract=off the
 *     functions are not inlined (a plain call; the results stay exact). Compile with
 *     -ffp-contract=off to get both. On baseline x86-64 (no FMA) nothing of this applies.
 */
#ifndef EG_OPTIMIZER_H
#define EG_OPTIMIZER_H

#include <math.h>
#include <stdint.h>

#if defined(__FAST_MATH__)
#error "eg_optimizer.h must not be compiled with fast-math options: the optimizer must equal NEST bitwise"
#endif

#if defined(__clang__)
#define EG_OPT_STRICT_FP _Pragma("STDC FP_CONTRACT OFF")
#else
#define EG_OPT_STRICT_FP
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__FP_FAST_FMA)
#define EG_OPT_GCC_NO_CONTRACT 1
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

#define EG_GRADIENT_DESCENT 0
#define EG_ADAM 1

/* eta_cur of a fresh synapse and the model default of eta (NEST: 1e-4). */
#define EG_ETA_NEST_DEFAULT 1e-4

/* Common properties: one per projection / synapse model, shared by its synapses. */
typedef struct {
    int32_t kind;           /* EG_GRADIENT_DESCENT = 0, EG_ADAM = 1 */
    int64_t batch_size;     /* > 0, in optimizer-index units (time steps for event-driven
                               eprop_synapse, update intervals for bsshslm) */
    double eta;             /* current learning rate (last value set) */
    double eta_first;       /* first eta ever set to a new value (EG_ETA_NEST_DEFAULT if never) */
    int64_t n_eta_changes;  /* how often eta was set to a value different from the current one */
    double beta_1, beta_2, epsilon;   /* Adam; beta in [0, 1), epsilon >= 0 */
    double w_min, w_max;    /* clamp applied once after each optimisation */
} eg_optimizer;

/* Per-synapse optimizer state. */
typedef struct {
    double grad_sum;        /* Gc: gradient accumulated since the last optimisation */
    double eta_cur;         /* the eta this synapse uses at its next optimisation (lags by one) */
    double m, v;            /* Adam first and second moments (NEST lets the user set them) */
    double p1, p2;          /* Adam: beta_1^t, beta_2^t for the bias correction */
    int64_t k;              /* optimisation step counter: 1 + index of the current batch */
    int64_t n_opt;          /* number of optimisations done */
} eg_optimizer_state;

/* NEST's defaults of the common properties: gradient descent, batch 1, eta 1e-4 (never changed),
 * Adam 0.9 / 0.999 / 1e-7, weights clamped to [-100, 100]. */
static inline void eg_optimizer_init(eg_optimizer* o)
{
    o->kind = EG_GRADIENT_DESCENT;
    o->batch_size = 1;
    o->eta = EG_ETA_NEST_DEFAULT;
    o->eta_first = EG_ETA_NEST_DEFAULT;
    o->n_eta_changes = 0;
    o->beta_1 = 0.9;
    o->beta_2 = 0.999;
    o->epsilon = 1e-7;
    o->w_min = -100.0;
    o->w_max = 100.0;
}

/* SetDefaults(eta) bookkeeping (spec §5). Only a value different from the current eta counts as a
 * change; the first such value is remembered as eta_first. Note that the initial SetDefaults of a
 * script (eta = 9e-8 in the examples) is itself a change away from the default 1e-4, so call this
 * for it too, not just for later changes. */
static inline void eg_optimizer_set_eta(eg_optimizer* o, double eta)
{
    if (eta != o->eta) {
        if (o->n_eta_changes == 0) o->eta_first = eta;
        o->n_eta_changes += 1;
        o->eta = eta;
    }
}

/* A fresh synapse: Gc = 0, eta_cur = 1e-4, m = v = 0, p1 = p2 = 1, k = 1, n_opt = 0. */
static inline void eg_optimizer_state_init(eg_optimizer_state* s)
{
    s->grad_sum = 0.0;
    s->eta_cur = EG_ETA_NEST_DEFAULT;
    s->m = 0.0;
    s->v = 0.0;
    s->p1 = 1.0;
    s->p2 = 1.0;
    s->k = 1;
    s->n_opt = 0;
}

/* floor(a / b) for b > 0, also for negative a (C's `/` truncates towards zero). Indices passed by
 * the e-prop synapses are >= 0, where this is plain a / b. */
static inline int64_t eg_optimizer_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q -= 1;
    return q;
}

/* The batch an index belongs to, floor(index / batch_size), without a division in the common
 * cases (batch_size 1; an accumulate-only optimizer's index within its one batch): the optimizer
 * runs at every replayed event, and an integer division costs more than the rest of it. */
static inline int64_t eg_optimizer_batch_of(int64_t index, int64_t batch_size)
{
    if (batch_size == 1) return index;
    if (index >= 0 && index < batch_size) return 0;
    return eg_optimizer_floor_div(index, batch_size);
}

/* The clamp applied once after an optimisation. Written as min(w, w_max) then max(w_min, .) with the
 * tie and NaN behaviour of the numpy reference (np.maximum(w_min, np.minimum(w, w_max))): a tie
 * (only visible for signed zeros) yields w_max resp. the weight, NaN propagates. */
static inline double eg_optimizer_clamp(const eg_optimizer* o, double weight)
{
    if (weight >= o->w_max) weight = o->w_max;
    if (o->w_min > weight) weight = o->w_min;
    return weight;
}

/* OPT(index, gradient, weight) of spec §5; returns the new weight.
 *
 * The gradient is added to the synapse's sum. When `index` lies beyond the current batch
 * (K = 1 + floor(index / batch_size) > k), the mean gradient Gc / batch_size is applied:
 *   gradient descent: one step w -= eta_cur * Gc;
 *   Adam: K - k iterations, one per elapsed batch ("catch-up"); only the first sees Gc, the others
 *         see gradient 0 but still move w through the momentum. The Adam time is the index, not the
 *         number of calls.
 * The weight is clamped to [w_min, w_max] once, after all iterations (not inside the Adam loop).
 *
 * Why eta lags: the synapse captures the model's eta into eta_cur only at the end of an
 * optimisation, so each optimisation uses the eta that was current at the synapse's *previous*
 * optimisation. After switching eta to 0 for testing, every synapse still applies one update with
 * the training eta (the one for history recorded during training). The very first optimisation of
 * a synapse has no previous one: it uses eta_first if eta was ever changed (it is re-read on every
 * call until then), and the initial 1e-4 otherwise. */
static inline double eg_optimize(const eg_optimizer* o, eg_optimizer_state* s, int64_t index,
                                 double gradient, double weight)
{
    EG_OPT_STRICT_FP
    int64_t K;
    if (o->n_eta_changes != 0 && s->n_opt == 0) s->eta_cur = o->eta_first;
    s->grad_sum = s->grad_sum + gradient;
    K = 1 + eg_optimizer_batch_of(index, o->batch_size);
    if (s->k < K) {
        /* mean over the batch length in index units, not over the number of calls (x / 1 == x) */
        if (o->batch_size != 1) s->grad_sum = s->grad_sum / (double)o->batch_size;
        if (o->kind == EG_ADAM) {
            while (s->k < K) {
                double lr;
                s->p1 = s->p1 * o->beta_1;
                s->p2 = s->p2 * o->beta_2;
                /* TF/Keras form of the bias correction, epsilon not rescaled */
                lr = s->eta_cur * sqrt(1.0 - s->p2) / (1.0 - s->p1);
                s->m = o->beta_1 * s->m + (1.0 - o->beta_1) * s->grad_sum;
                s->v = o->beta_2 * s->v + (1.0 - o->beta_2) * s->grad_sum * s->grad_sum;
                weight = weight - lr * s->m / (sqrt(s->v) + o->epsilon);
                s->grad_sum = 0.0;   /* later catch-up iterations use gradient 0 */
                s->k += 1;
            }
        } else {
            weight = weight - s->eta_cur * s->grad_sum;
            s->grad_sum = 0.0;
        }
        weight = eg_optimizer_clamp(o, weight);   /* once, after all iterations */
        s->eta_cur = o->eta;   /* the eta of this optimisation's time is used by the next one */
        s->n_opt += 1;
        s->k = K;
    }
    return weight;
}

/* Gradient descent for many synapses that share one state record (the same calls, so the same k,
 * n_opt and eta_cur; their grad_sum is 0 between calls: batch size 1): the part of eg_optimize that
 * depends only on the record, done once (eg_gd_shared_prepare), and the per-synapse rest
 * (eg_gd_shared_apply), with eg_optimize's arithmetic in its order, so bitwise the same weights.
 * The record itself is advanced once afterwards by eg_optimize(o, s, index, 0.0, 0.0). */
typedef struct {
    int32_t apply;          /* this call optimises (index beyond the current batch) */
    double grad_sum;        /* the record's sum before the call (0) */
    double eta;             /* the eta the optimisation uses */
} eg_gd_shared;

static inline eg_gd_shared eg_gd_shared_prepare(const eg_optimizer* o, const eg_optimizer_state* s,
                                                int64_t index)
{
    eg_gd_shared p;
    p.eta = (o->n_eta_changes != 0 && s->n_opt == 0) ? o->eta_first : s->eta_cur;
    p.grad_sum = s->grad_sum;
    p.apply = s->k < 1 + eg_optimizer_batch_of(index, o->batch_size);
    return p;
}

static inline double eg_gd_shared_apply(const eg_optimizer* o, const eg_gd_shared* p, double gradient,
                                        double weight)
{
    EG_OPT_STRICT_FP
    double grad_sum;
    if (!p->apply) return weight;
    grad_sum = p->grad_sum + gradient;
    weight = weight - p->eta * grad_sum;
    return eg_optimizer_clamp(o, weight);
}

#if defined(EG_OPT_GCC_NO_CONTRACT)
#pragma GCC pop_options
#undef EG_OPT_GCC_NO_CONTRACT
#endif

#endif /* EG_OPTIMIZER_H */
