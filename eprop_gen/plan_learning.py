"""plan (learning part): derived eligibility + the model's `learning:` section -> replay kernel lines.

Two kernels per (model, spike port), sharing the per-step lines below: the event-driven replay (one
event's synapses per call; its O(1) block path from plan_blocks) and the time-driven interval replay (Bellec et al. 2020 / NEST's bsshslm: history entries [t_trig, b) of
one update interval, traces from 0, each arrival entering at its stamp; returns the interval's
gradient, the engine runs the schedule and the optimizer).

The event-driven replay runs NEST 3.10's event-driven schedule (spec 4.2-4.3):
the event with stamp s of a synapse replays its target's history over [t_last - 1, s - 2], at most the
cutoff's number of steps, decays the rest, and calls the optimizer. Per replayed step m:

    eps = F[m] eps + gain * zin               propagation, then the presynaptic spike (one step after
                                              its stamp) enters
    e   = trace(psi[m]) . eps                 the derived eligibility trace
    x  <- update(x, e)                        the declared per-synapse traces
    g   = gradient(L[m], R[m], traces, e)     the declared gradient
    eps = Rj[m] eps                           the reset's derivative (reset_gradient kept/full)
    eps_a = F_aa eps_a + c_a e                components with an adaptation jump c (the next step's
                                              propagation, constant for them)

(solve/eligibility.py: eps[m+1] = F[m+1] Rj[m] eps[m] + c psi[m] d dist . eps[m] + injection; for
NEST's adaptation c = 1, so the last line is NEST's eps = rho eps + e.) F and Rj entries are constants
(per-neuron coefficients) or quantities the neuron archived for row m (the derivative of an RK4 step,
the reset's derivative). Skipped steps decay with pow() of the diagonal of F and of each trace's own
factor, as NEST does (only rules without archived quantities may have a cutoff).
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


def archived_quantities(solution: Solution) -> tuple:
    """The per-step quantities (solve.eligibility.PerStep) the model's learning ports read from the
    history besides psi, L and R, once each by name: the neuron kernel writes them as observables,
    the archive keeps them as the history's `extra` rows in this order."""
    seen: dict[str, object] = {}
    if solution.ir.learning is not None:
        for rule in solution.eligibility:
            if isinstance(rule, EligibilityRule):
                for q in rule.per_step:
                    seen.setdefault(q.name, q)
    return tuple(seen.values())


def plan_replays(solution: Solution, printer_factory, coefficient_slot) -> tuple[ReplayPlan, ...]:
    """coefficient_slot(expr) -> k: the expression becomes pop->coeff[k] of the neuron kernel, computed
    once per simulate call in prepare() instead of at every replayed event."""
    ir = solution.ir
    if ir.learning is None:
        return ()
    archived = {q.name: k for k, q in enumerate(archived_quantities(solution))}
    plans = []
    for rule in solution.eligibility:
        if not isinstance(rule, EligibilityRule):
            continue            # `check` says why this port cannot learn
        plans.append(_plan_port(ir, rule, printer_factory, coefficient_slot, len(plans), archived))
    return tuple(plans)


def _plan_port(ir: ModelIR, rule: EligibilityRule, printer_factory, coefficient_slot,
               port_index: int, archived: dict[str, int]) -> ReplayPlan:
    learning = ir.learning
    synaptic = [t for t in learning.traces if t.per_synapse]     # linear filters (check.py, E118)
    k = len(rule.hidden)
    eps = [sp.Symbol(f"eps_{n}", real=True) for n in rule.hidden]
    at_step = {H: DT}                                        # the replay runs at the network's step
    F = rule.step.subs(at_step)                              # the step's derivative (per-step symbols kept)
    Rj = rule.reset
    jumps = rule.jumps.subs(at_step)
    gradient_row = rule.trace.subs(PSI, 1) if rule.spiking else rule.trace
    per_step = {q.symbol for q in rule.per_step}

    names = {p.symbol: f"p_{p.name}" for p in ir.parameters}
    names.update({DT: "dt", PSI: "psi", LEARNING_SIGNAL: "L", REGULARISATION: "R", E_TRACE: "e",
                  INTERVAL_SPIKES: "r->interval_spikes", INTERVAL_STEPS: "r->interval_steps"})
    names.update({e: f"eps[{n}]" for n, e in enumerate(eps)})
    names.update({t.symbol: f"tr[{n}]" for n, t in enumerate(synaptic)})
    names.update({q.symbol: f"arch{archived[q.name]}" for q in rule.per_step})
    pr = printer_factory(names).doprint

    setup = [f"const double p_{p.name} = pop->param[{n}][i];" for n, p in enumerate(ir.parameters)]
    slots: dict[int, str] = {}

    def coef(expr) -> str:
        # no simplify(): it may turn an exact 1 (e.g. regular_spike_arrival = 1) into (1 + e^x - 1) e^-x
        expr = sp.sympify(expr)
        if not expr.free_symbols or expr.free_symbols & per_step:
            return pr(expr)      # constants inline; archived quantities are read per step
        k = coefficient_slot(expr)
        return slots.setdefault(k, f"c{k}")

    def coef_symbol(expr) -> sp.Expr:
        """The coefficient as a symbol printed like coef() (for the symbolic step of plan_blocks)."""
        expr = sp.sympify(expr)
        if not expr.free_symbols or expr.free_symbols & per_step:
            return expr
        name = coef(expr)
        symbol = sp.Symbol(f"eg_coef_{name}", real=True)
        names[symbol] = name
        return symbol

    # Components with an adaptation jump (late) are propagated at the end of a replayed step with
    # the next step's (constant) propagator: eps = rho eps + c e, NEST's order; the others (early)
    # at its start, before the presynaptic spike enters: zbar = alpha zbar + zin, as NEST.
    late = [r for r in range(k) if jumps[r] != 0]
    early = [r for r in range(k) if jumps[r] == 0]
    constant_row = {r: all(F[r, c] == 0 for c in range(k) if c != r) and not F[r, r].free_symbols & per_step
                    for r in range(k)}
    if any(not constant_row[r] for r in late) or any(F[r, c] != 0 for r in early for c in late):
        raise EpropGenError(f"model '{ir.name}', port '{rule.port}': an adaptation jump on a state coupled "
                            "to other eligibility components is not supported yet")
    exact_coupled = [r for r in range(k) if not constant_row[r] and not F.row(r).free_symbols & per_step]
    if exact_coupled:
        raise EpropGenError(f"model '{ir.name}', port '{rule.port}': event-driven e-prop with a coupled "
                            f"eligibility propagator ({', '.join(rule.hidden)}) is not supported yet; "
                            "skipped steps are decayed per component")
    if rule.per_step and learning.cutoff is not None:
        raise EpropGenError(f"model '{ir.name}', port '{rule.port}': `cutoff:` decays skipped steps with a "
                            "constant propagator, but this rule reads per-step quantities "
                            f"({', '.join(q.name for q in rule.per_step)}); remove the cutoff")

    def input_term(r) -> str:
        return f" + {coef(rule.injection[r])} * zin" if rule.injection[r] != 0 else ""

    # early rows: rows coupled through archived entries from the old values (temporaries), then the
    # diagonal ones, as NEST prints them
    coupled = [r for r in early if not constant_row[r]]
    step = [f"const double f{r} = {' + '.join(f'{coef(F[r, c])} * eps[{c}]' for c in range(k) if F[r, c] != 0) or '0.0'}"
            f"{input_term(r)};" for r in coupled]
    diagonal_lines = {r: f"eps[{r}] = {coef(F[r, r])} * eps[{r}]{input_term(r)};" for r in early if constant_row[r]}
    step += list(diagonal_lines.values())
    step += [f"eps[{r}] = f{r};" for r in coupled]
    trace = sum((gradient_row[n] * eps[n] for n in range(k)), sp.Integer(0))
    step.append(f"const double e = {pr(PSI * trace if rule.spiking else trace)};")
    # traces: each from the old values of the others (simultaneous), as written in the model
    step += [f"const double new_tr{n} = {pr(t.update)};" for n, t in enumerate(synaptic)]
    step += [f"tr[{n}] = new_tr{n};" for n in range(len(synaptic))]
    step.append(f"const double g = {pr(learning.gradient)};")
    # the reset's derivative (reset_gradient kept/full): rows that differ from the identity
    reset_rows = [r for r in range(k) if Rj.row(r) != sp.eye(k).row(r)]
    step += [f"const double rs{r} = {' + '.join(f'{pr(Rj[r, c])} * eps[{c}]' for c in range(k) if Rj[r, c] != 0) or '0.0'};"
             for r in reset_rows]
    step += [f"eps[{r}] = rs{r};" for r in reset_rows]
    for r in late:
        step.append(f"eps[{r}] = {coef(F[r, r])} * eps[{r}] + " + ("e;" if jumps[r] == 1 else f"{coef(jumps[r])} * e;"))

    # presynaptic components (zbar): their step reads only themselves, the spike and parameters
    presynaptic = tuple(r for r in early if constant_row[r] and Rj.row(r) == sp.eye(k).row(r))
    presynaptic_lines = tuple(diagonal_lines[r] for r in presynaptic)

    # a spike entering component r before a step (eps_r = F_rr eps_r + injection_r zin) is
    # u_r = injection_r / F_rr added before the step's matrix: the block products carry it too
    inputs = tuple(r for r in early if constant_row[r] and rule.injection[r] != 0 and F[r, r] != 0)
    block_input_values = tuple(coef(rule.injection[r] / F[r, r]) for r in inputs)
    blocks = plan_blocks(*_symbolic_step(learning, synaptic, rule, eps, F, Rj, jumps, gradient_row, early,
                                         coef_symbol), pr, inputs)

    # pow() as NEST calls it, remembered per event (the synapses of an event usually share base and n);
    # only constant propagators decay (a rule with archived quantities has no cutoff, so no decay)
    factors = [(f"eps[{r}]", coef(F[r, r])) for r in range(k) if constant_row[r]]
    factors += [(f"tr[{n}]", coef(_own_factor(t))) for n, t in enumerate(synaptic)]
    decay = [f"{name} *= eg_pow_cached(&pow_cache[{m}], {base}, n_decay);" for m, (name, base) in enumerate(factors)]
    presynaptic_decay = tuple(f"eps[{r}] *= pow({coef(F[r, r])}, (double)n_decay);" for r in presynaptic)
    shared_slot = {r: n for n, r in enumerate(presynaptic)}
    load, store, reset = [], [], []
    for r, name in enumerate(rule.hidden):
        own = f"syn->eps[{r}][q]"
        load.append(f"eps[{r}] = shared_eps ? (double)shared_eps[{shared_slot[r]}] : (double){own};   // {name}"
                    if r in shared_slot else f"eps[{r}] = {own};   // {name}")
        store.append(f"if (!shared_eps) {own} = eps[{r}];" if r in shared_slot else f"{own} = eps[{r}];")
        reset.append(f"if (!syn->eps_shared) {own} = 0;" if r in shared_slot else f"{own} = 0;")
    # the parameters the presynaptic components' step and the cutoff (how far a window is walked
    # before the rest decays) depend on: equal values across the targets make the numbers equal
    depends = set().union(*(sp.sympify(e).free_symbols for r in presynaptic
                            for e in (F[r, r], rule.injection[r])))
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
    history += [f"const double arch{archived[q.name]} = hist->extra[{archived[q.name]}][row];   // {q.name}"
                for q in rule.per_step]
    per_interval = learning.regularisation_per_interval
    interval_setup = []
    if per_interval:
        # (printed as written: NEST's c_reg * (n / U - f) / U, then times each step's e)
        interval_setup.append(f"const double R = {pr(learning.regularisation)};")
    interval_history = [line for line in history if not (per_interval and line.startswith("const double R "))]
    return ReplayPlan(ir.name, rule.port, rule.hidden, tuple(t.name for t in synaptic), k,
                      max(1, len(synaptic)), tuple(history), tuple(setup), tuple(step), tuple(decay), cutoff_steps,
                      tuple(interval_history), tuple(interval_setup), per_interval, blocks, port_index,
                      presynaptic, presynaptic_parameters, presynaptic_lines, presynaptic_decay,
                      tuple(load), tuple(store), tuple(reset), inputs, block_input_values,
                      blocks is not None and bool(blocks.input_lines))


def _symbolic_step(learning, synaptic, rule, eps, F, Rj, jumps, gradient_row, early, coef_symbol):
    """One replayed step without input as sympy expressions, in the order the step lines compute it:
    (new values of (eps, traces, G), the old ones)."""
    k = len(eps)
    G = sp.Symbol("eg_G", real=True)
    mixed = [sum((coef_symbol(F[r, c]) * eps[c] for c in range(k) if F[r, c] != 0), sp.Integer(0))
             if r in early else eps[r] for r in range(k)]
    trace = sum((gradient_row[n] * mixed[n] for n in range(k)), sp.Integer(0))
    e = PSI * trace if rule.spiking else trace
    new_traces = [t.update.xreplace({E_TRACE: e}) for t in synaptic]
    g = learning.gradient.xreplace({E_TRACE: e, **{t.symbol: new for t, new in zip(synaptic, new_traces)}})
    after = [sum((Rj[r, c] * mixed[c] for c in range(k) if Rj[r, c] != 0), sp.Integer(0)) for r in range(k)]
    new_eps = [after[r] if r in early else coef_symbol(F[r, r]) * after[r] + coef_symbol(jumps[r]) * e
               for r in range(k)]
    return new_eps + new_traces + [G + g], list(eps) + [t.symbol for t in synaptic] + [G]


def _own_factor(trace) -> sp.Expr:
    return sp.diff(trace.update, trace.symbol)
