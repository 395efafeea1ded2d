"""plan (learning part): derived eligibility + the model's `learning:` section -> replay kernel lines.

Two kernels per (model, spike port), sharing the per-step lines below: the event-driven replay (one
event's synapses per call; its O(1) block path from plan_blocks) and the time-driven interval replay (Bellec et al. 2020 / NEST's bsshslm: history entries [t_trig, b) of
one update interval, traces from 0, each arrival entering at its stamp; returns the interval's
gradient, the engine runs the schedule and the optimizer).

The event-driven replay runs NEST 3.10's event-driven schedule (spec 4.2-4.3):
the event with stamp s of a synapse replays its target's history over [t_last - 1, s - 2], at most the
cutoff's number of steps, decays the rest, and calls the optimizer. Per replayed step m:

    eps[target] += gain * zin                 the presynaptic spike enters (one step after its stamp)
    e   = trace(psi[m]) . eps                 the derived eligibility trace
    x  <- update(x, e)                        the declared per-synapse traces
    g   = gradient(L[m], R[m], traces, e)     the declared gradient
    eps = P eps + (P c) e                     propagation, J(psi) eps written through e

(J(psi) eps = P (I + c psi d dist) eps = P eps + P c e; for NEST's adaptation P c is exactly 1, so the
update is NEST's eps = rho eps + e.) Components without the e-term are propagated at the start of the
next step instead of the end of this one (the same values, NEST's order). Skipped steps decay with
pow() of the diagonal of P and of each trace's own factor, as NEST does.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .errors import EpropGenError
from .plan_blocks import BlockPlan, plan_blocks
from .ir import DT, E_TRACE, INTERVAL_SPIKES, INTERVAL_STEPS, LEARNING_SIGNAL, REGULARISATION, ModelIR
from .solve import Solution
from .solve.eligibility import PSI, EligibilityRule
from .solve.propagators import H


@dataclass(frozen=True)
class ReplayPlan:
    model: str
    port: str
    eps: tuple[str, ...]              # eligibility components (state names)
    traces: tuple[str, ...]           # per-synapse learning traces
    eps_size: int
    trace_slots: int                  # at least 1 (C++ has no empty arrays)
    history_lines: tuple[str, ...]    # loads of what the rule reads from the archive at step m
    setup_lines: tuple[str, ...]      # per call: parameters of neuron i and the coefficients
    step_lines: tuple[str, ...]       # one replayed step (zin and the history loads in scope; defines g)
    decay_lines: tuple[str, ...]      # n_decay skipped steps
    cutoff_steps: str                 # C expression of the cutoff in whole steps (2^62: none)
    interval_history_lines: tuple[str, ...]   # the loads of the interval replay (R per step or not)
    interval_setup_lines: tuple[str, ...]     # R of the interval when it is one value per interval
    regularisation_per_interval: bool
    blocks: BlockPlan | None          # the O(1) fast path of the event-driven replay (plan_blocks)
    port_index: int                   # position among the model's learning ports (its eg_blocks)
    # Presynaptic components of eps (zbar): their step reads only themselves, the arriving spike and
    # the target's parameters, so all synapses of a window onto targets with equal values of
    # `presynaptic_parameters` carry the same numbers; the engine then keeps them once per window
    # (eg_plastic.eps_shared) and advances them once per event with `presynaptic_lines`
    presynaptic: tuple[int, ...]
    presynaptic_parameters: tuple[str, ...]
    presynaptic_lines: tuple[str, ...]        # their part of one replayed step (zin in scope)
    presynaptic_decay_lines: tuple[str, ...]  # their decay past the cutoff (n_decay in scope)
    eps_load_lines: tuple[str, ...]           # eps[] of synapse q (shared_eps: the window's, or NULL)
    eps_store_lines: tuple[str, ...]
    eps_reset_lines: tuple[str, ...]          # a sample's end: the per-synapse components to 0
    block_inputs: tuple[int, ...]             # components a spike enters (plan_blocks' `inputs`)
    block_input_values: tuple[str, ...]       # their u_r (C names, per target neuron)
    spikes_through_products: bool             # the block path can start at a window's first row


def plan_replays(solution: Solution, printer_factory, coefficient_slot) -> tuple[ReplayPlan, ...]:
    """coefficient_slot(expr) -> k: the expression becomes pop->coeff[k] of the neuron kernel, computed
    once per simulate call in prepare() instead of at every replayed event."""
    ir = solution.ir
    if ir.learning is None:
        return ()
    plans = []
    for rule in solution.eligibility:
        if not isinstance(rule, EligibilityRule):
            continue            # `check` says why this port cannot learn
        plans.append(_plan_port(ir, rule, printer_factory, coefficient_slot, len(plans)))
    return tuple(plans)


def _plan_port(ir: ModelIR, rule: EligibilityRule, printer_factory, coefficient_slot,
               port_index: int) -> ReplayPlan:
    learning = ir.learning
    synaptic = [t for t in learning.traces if t.per_synapse]     # linear filters (check.py, E118)
    k = len(rule.hidden)
    eps = [sp.Symbol(f"eps_{n}", real=True) for n in rule.hidden]
    at_step = {H: DT}                                        # the replay runs at the network's step
    P = rule.propagation.subs(PSI, 0).subs(at_step)         # J(0): the propagator of the hidden states
    jump = (rule.propagation.subs(PSI, 1).subs(at_step) - P) # J(psi) = P + psi * J1, J1 = P c d dist
    gradient_row = rule.trace.subs(PSI, 1) if rule.spiking else rule.trace
    # J1 eps = (P c)(d dist . eps) = (P c) e / psi: recover P c from J1 and the trace's gradient row
    pc = _column_through_trace(jump, gradient_row)

    names = {p.symbol: f"p_{p.name}" for p in ir.parameters}
    names.update({DT: "dt", PSI: "psi", LEARNING_SIGNAL: "L", REGULARISATION: "R", E_TRACE: "e",
                  INTERVAL_SPIKES: "r->interval_spikes", INTERVAL_STEPS: "r->interval_steps"})
    names.update({e: f"eps[{n}]" for n, e in enumerate(eps)})
    names.update({t.symbol: f"tr[{n}]" for n, t in enumerate(synaptic)})
    pr = printer_factory(names).doprint

    setup = [f"const double p_{p.name} = pop->param[{n}][i];" for n, p in enumerate(ir.parameters)]
    slots: dict[int, str] = {}

    def coef(expr) -> str:
        # no simplify(): it may turn an exact 1 (e.g. regular_spike_arrival = 1) into (1 + e^x - 1) e^-x
        expr = sp.sympify(expr)
        if not expr.free_symbols:
            return pr(expr)
        k = coefficient_slot(expr)
        return slots.setdefault(k, f"c{k}")

    def coef_symbol(expr) -> sp.Expr:
        """The coefficient as a symbol printed like coef() (for the symbolic step of plan_blocks)."""
        expr = sp.sympify(expr)
        if not expr.free_symbols:
            return expr
        name = coef(expr)
        symbol = sp.Symbol(f"eg_coef_{name}", real=True)
        names[symbol] = name
        return symbol

    if any(P[r, c] != 0 for r in range(k) for c in range(k) if r != c):
        raise EpropGenError(f"model '{ir.name}', port '{rule.port}': event-driven e-prop with a coupled "
                            f"eligibility propagator ({', '.join(rule.hidden)}) is not supported yet; "
                            "skipped steps are decayed per component")
    # Components the spike's psi-term does not touch (zbar) propagate at the start of a step, before
    # the presynaptic spike enters: zbar = alpha zbar + zin, as NEST, so the cutoff decay acts on zbar
    # itself. Components that receive e (adaptation) are updated at the end: eps = rho eps + e.
    early = [r for r in range(k) if pc[r] == 0]
    late = [r for r in range(k) if pc[r] != 0]
    step = [f"eps[{r}] = {coef(P[r, r])} * eps[{r}]" + (f" + {coef(rule.injection[r])} * zin;"
                                                       if rule.injection[r] != 0 else ";") for r in early]
    presynaptic_lines = tuple(step)
    trace = sum((gradient_row[n] * eps[n] for n in range(k)), sp.Integer(0))
    step.append(f"const double e = {pr(PSI * trace if rule.spiking else trace)};")
    # traces: each from the old values of the others (simultaneous), as written in the model
    step += [f"const double new_tr{n} = {pr(t.update)};" for n, t in enumerate(synaptic)]
    step += [f"tr[{n}] = new_tr{n};" for n in range(len(synaptic))]
    step.append(f"const double g = {pr(learning.gradient)};")
    for r in late:
        step.append(f"eps[{r}] = {coef(P[r, r])} * eps[{r}] + " + ("e;" if pc[r] == 1 else f"{coef(pc[r])} * e;"))

    # a spike entering component r before a step (eps_r = P_rr eps_r + injection_r zin) is
    # u_r = injection_r / P_rr added before the step's matrix: the block products carry it too
    inputs = tuple(r for r in early if rule.injection[r] != 0 and P[r, r] != 0)
    block_input_values = tuple(coef(rule.injection[r] / P[r, r]) for r in inputs)
    blocks = plan_blocks(*_symbolic_step(learning, synaptic, rule, eps, P, pc, gradient_row, early,
                                         coef_symbol), pr, inputs)

    # pow() as NEST calls it, remembered per event (the synapses of an event usually share base and n)
    factors = [(f"eps[{r}]", coef(P[r, r])) for r in range(k)]
    factors += [(f"tr[{n}]", coef(_own_factor(t))) for n, t in enumerate(synaptic)]
    decay = [f"{name} *= eg_pow_cached(&pow_cache[{m}], {base}, n_decay);" for m, (name, base) in enumerate(factors)]
    presynaptic_decay = tuple(f"{name} *= pow({base}, (double)n_decay);"
                              for r, (name, base) in enumerate(factors[:k]) if r in early)
    shared_slot = {r: n for n, r in enumerate(early)}
    load, store, reset = [], [], []
    for r, name in enumerate(rule.hidden):
        own = f"syn->eps[{r}][q]"
        load.append(f"eps[{r}] = shared_eps ? (double)shared_eps[{shared_slot[r]}] : (double){own};   // {name}"
                    if r in shared_slot else f"eps[{r}] = {own};   // {name}")
        store.append(f"if (!shared_eps) {own} = eps[{r}];" if r in shared_slot else f"{own} = eps[{r}];")
        reset.append(f"if (!syn->eps_shared) {own} = 0;" if r in shared_slot else f"{own} = 0;")
    # the parameters the presynaptic components' step and the cutoff (how far a window is walked
    # before the rest decays) depend on: equal values across the targets make the numbers equal
    depends = set().union(*(sp.sympify(e).free_symbols for r in early
                            for e in (P[r, r], rule.injection[r])))
    if learning.cutoff is not None:
        depends |= sp.sympify(learning.cutoff).free_symbols
    presynaptic_parameters = tuple(p.name for p in ir.parameters if p.symbol in depends)

    # whole steps, prepared once per simulate call (no division or rounding per replayed event);
    # an infinite cutoff becomes 2^62 steps, longer than any run
    never = sp.Integer(2) ** 62
    cutoff_steps = coef(sp.Function("llround")(sp.Min(learning.cutoff / DT, never))) \
        if learning.cutoff is not None else pr(never)
    setup += [f"const double {name} = pop->coeff[{k}][i];" for k, name in sorted(slots.items())]
    read = learning.gradient.free_symbols | {s for t in synaptic for s in t.update.free_symbols}
    history = [f"const double {name} = hist->{field}[row];"
               for symbol, name, field in ((PSI, "psi", "psi"), (LEARNING_SIGNAL, "L", "learning_signal"),
                                           (REGULARISATION, "R", "regularisation"))
               if symbol in read or (symbol == PSI and rule.spiking)]
    per_interval = learning.regularisation_per_interval
    interval_setup = []
    if per_interval:
        # (printed as written: NEST's c_reg * (n / U - f) / U, then times each step's e)
        interval_setup.append(f"const double R = {pr(learning.regularisation)};")
    interval_history = [line for line in history if not (per_interval and line.startswith("const double R "))]
    return ReplayPlan(ir.name, rule.port, rule.hidden, tuple(t.name for t in synaptic), k,
                      max(1, len(synaptic)), tuple(history), tuple(setup), tuple(step), tuple(decay), cutoff_steps,
                      tuple(interval_history), tuple(interval_setup), per_interval, blocks, port_index,
                      tuple(early), presynaptic_parameters, presynaptic_lines, presynaptic_decay,
                      tuple(load), tuple(store), tuple(reset), inputs, block_input_values,
                      blocks is not None and bool(blocks.input_lines))


def _symbolic_step(learning, synaptic, rule, eps, P, pc, gradient_row, early, coef_symbol):
    """One replayed step without input as sympy expressions, in the order the step lines compute it:
    (new values of (eps, traces, G), the old ones)."""
    k = len(eps)
    G = sp.Symbol("eg_G", real=True)
    new_eps = [coef_symbol(P[r, r]) * eps[r] if r in early else None for r in range(k)]
    mixed = [new_eps[r] if r in early else eps[r] for r in range(k)]
    trace = sum((gradient_row[n] * mixed[n] for n in range(k)), sp.Integer(0))
    e = PSI * trace if rule.spiking else trace
    new_traces = [t.update.xreplace({E_TRACE: e}) for t in synaptic]
    g = learning.gradient.xreplace({E_TRACE: e, **{t.symbol: new for t, new in zip(synaptic, new_traces)}})
    for r in range(k):
        if r not in early:
            new_eps[r] = coef_symbol(P[r, r]) * eps[r] + coef_symbol(pc[r]) * e
    return new_eps + new_traces + [G + g], list(eps) + [t.symbol for t in synaptic] + [G]


def _column_through_trace(jump: sp.Matrix, row: sp.Matrix) -> sp.Matrix:
    """c' with jump == c' * row (the psi-dependent part is rank one through the threshold)."""
    k = jump.shape[0]
    pivot = next((c for c in range(k) if row[c] != 0), None)
    if pivot is None or jump == sp.zeros(k, k):
        return sp.zeros(k, 1)
    column = (jump[:, pivot] / row[pivot]).applyfunc(sp.simplify)
    assert sp.simplify(column * row - jump) == sp.zeros(k, k), "the adaptation part of J is rank one"
    return column


def _own_factor(trace) -> sp.Expr:
    return sp.diff(trace.update, trace.symbol)
