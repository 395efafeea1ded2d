"""plan: Solution -> KernelPlan, the lists of printed C++ lines the templates loop over.

Every decision about the generated code is taken here (what is a per-neuron coefficient, what is
inlined, how refractoriness, jumps and the threshold are ordered), so templates stay free of logic.

Order of one step for neuron i (matches NEST's iaf_psc_* models):
  1. propagate: exact states with P(dt) (held states frozen while refractory), numeric ones with RK4;
  2. add this step's summed spike input to the port targets (dropped for held states while refractory);
  3. if the neuron was not refractory at the start of the step and the threshold holds: reset,
     start the refractory count, flag the spike.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.printing.c import C99CodePrinter

from .ir import DT, OWN_SPIKE, WEIGHT, ModelIR
from .solve.eligibility import PSI
from .plan_learning import archived_quantities, plan_replays
from .solve import Solution
from .solve.propagators import H, ONE


@dataclass(frozen=True)
class KernelPlan:
    name: str
    source_file: str
    states: tuple[str, ...]
    params: tuple[str, ...]
    spike_ports: tuple[str, ...]
    current_ports: tuple[str, ...]
    propagator_states: tuple[str, ...]
    n_coeff: int
    prepare_lines: tuple[str, ...]
    update_lines: tuple[str, ...]
    propagator_lines: tuple[str, ...]
    spiking: bool
    observables: tuple[str, ...] = ()     # written after the states: pop->state[len(states) + k]
    replays: tuple = ()                   # one ReplayPlan per spike port that can learn
    archived: tuple[str, ...] = ()        # observables the history keeps per step besides psi, L, R


class _Printer(C99CodePrinter):
    """C99 printing with the kernel's local names: p_<param>, s_<state>, u_<current>, c[k]."""

    def __init__(self, names: dict[sp.Symbol, str]):
        super().__init__()
        self.names = names
        self.known_functions = {**self.known_functions, "llround": "llround"}

    def _print_Symbol(self, expr):
        return self.names.get(expr, super()._print_Symbol(expr))

    def _print_Max(self, expr):
        return self._print_nested("eg_fmax", expr.args)

    def _print_Min(self, expr):
        return self._print_nested("eg_fmin", expr.args)

    def _print_nested(self, name: str, args) -> str:
        # as sympy's C99 printer nests fmax/fmin (halves), with the inline versions of eg_math.h
        if len(args) == 1:
            return self._print(args[0])
        half = len(args) // 2
        return f"{name}({self._print_nested(name, args[:half])}, {self._print_nested(name, args[half:])})"

    def _print_Pow(self, expr):
        # small integer powers as products: exact and faster than pow()
        if expr.exp.is_Integer and 2 <= int(expr.exp) <= 4:
            base = self.parenthesize(expr.base, 100)
            return "(" + "*".join([base] * int(expr.exp)) + ")"
        return super()._print_Pow(expr)


class _Coefficients:
    """Per-neuron coefficients computed in prepare(), deduplicated by expression."""

    def __init__(self):
        self.exprs: list[sp.Expr] = []

    def slot(self, expr: sp.Expr) -> str:
        for k, e in enumerate(self.exprs):
            if e == expr:
                return f"c{k}"
        self.exprs.append(expr)
        return f"c{len(self.exprs) - 1}"


def _is_inline(expr: sp.Expr) -> bool:
    return not expr.free_symbols


def plan_kernel(solution: Solution) -> KernelPlan:
    ir = solution.ir
    names = _local_names(ir)
    printer = _Printer(names)
    coeffs = _Coefficients()
    pr = printer.doprint

    def term(expr: sp.Expr) -> str:
        """a coefficient expression over parameters and h: inlined constant or coefficient slot"""
        expr = sp.sympify(expr)
        return pr(expr) if _is_inline(expr) else coeffs.slot(expr)

    held = set(ir.spike.held) if ir.spike else set()
    refractory = bool(ir.spike and ir.spike.refractory_period is not None)
    update: list[str] = []

    # 1. propagation
    normal, held_lines = _exact_lines(solution, term, names, held=False), _exact_lines(solution, term, names, held=True)
    if refractory:
        # NEST's count: held states freeze in the steps that begin with a running count; a spike
        # (and a non-zero pseudo-derivative) is possible again once the count has run out
        update.append("const bool refractory_now = pop->refractory[i] > 0;")
        update.append("if (refractory_now) {")
        update.append("    --pop->refractory[i];")
        update += ["    " + l for l in held_lines]
        update.append("} else {")
        update += ["    " + l for l in normal]
        update.append("}")
    else:
        update += normal
    archived = archived_quantities(solution)
    tangent_columns = sorted({q.column for q in archived if q.expression is None},
                             key=[s.name for s in ir.states].index)
    update += _rk4_lines(solution, printer, held, refractory, tangent_columns)
    for n in _exact_names(solution) + list(solution.numeric_states):
        update.append(f"s_{n} = n_{n};")

    # 1b. adaptation: the previous step's spike increments after this step's decay (a = rho a + c z),
    #     NEST's order; like spike input, it is lost for a state held while refractory
    for a in (ir.spike.adaptation if ir.spike else ()):
        jump = sp.simplify(a.value - ir.state(a.target).symbol)
        line = f"if (pop->spiked[i] == 1) s_{a.target} += {term(jump)};"
        update.append(f"if (!refractory_now) {{ {line} }}" if refractory and a.target in held else line)

    # 2. spike input (summed weights of this step)
    for k, port in enumerate(ir.spike_ports):
        gain = sp.diff(port.increment, WEIGHT)
        line = f"s_{port.target} += {term(gain)} * pop->spike_in[{k}][i];"
        update.append(f"if (!refractory_now) {line}" if refractory and port.target in held else line)

    # 3. pseudo-derivative at the state the threshold sees, then threshold, reset, refractoriness
    observables = []
    if refractory:
        update.append("const bool can_spike = pop->refractory[i] == 0;")
    if ir.spike is not None and ir.spike.surrogate is not None:
        observables.append("psi")
        psi = pr(ir.spike.surrogate.expression)
        value = f"can_spike ? ({psi}) : 0.0" if refractory else psi
        update.append(f"pop->state[{len(ir.states)}][i] = {value};")
    # the reset's derivative (reset_gradient kept/full) reads the states before the reset
    reset_reads = set().union(*(q.expression.free_symbols for q in archived if q.expression is not None))
    pre_reset = [s for s in ir.states if s.symbol in reset_reads]
    update += [f"const double pre_{s.name} = s_{s.name};" for s in pre_reset]
    if ir.spike is not None:
        update.append("pop->spiked[i] = 0;")
        guard = "can_spike && " if refractory else ""
        update.append(f"if ({guard}({pr(ir.spike.condition)})) {{")
        for a in ir.spike.reset:
            update.append(f"    s_{a.target} = {pr(a.value)};")
        if refractory:
            steps = sp.Function("llround")(ir.spike.refractory_period / H)
            update.append(f"    pop->refractory[i] = (int32_t){term(steps)};")
        update.append("    pop->spiked[i] = 1;")
        update.append("}")

    # 3a. what the learning rule archives per step besides psi (solve/eligibility.py's PerStep): the
    #     derivative of the RK4 step (tangents computed with it) and the reset's derivative
    at_reset = _Printer({**names, **{s.symbol: f"pre_{s.name}" for s in pre_reset},
                         OWN_SPIKE: "(double)pop->spiked[i]", PSI: f"pop->state[{len(ir.states)}][i]"})
    for q in archived:
        observables.append(q.name)
        value = f"dy_{q.column}_{q.row}" if q.expression is None else at_reset.doprint(q.expression)
        update.append(f"pop->state[{len(ir.states) + len(observables) - 1}][i] = {value};   // {q.name}")

    # 3b. what a non-spiking model emits (a readout's y), for the error y - y* of the learning engine
    if ir.output is not None:
        observables.append("y")
        update.append(f"pop->state[{len(ir.states) + len(observables) - 1}][i] = {pr(ir.output)};")

    # 4. per-neuron learning traces (e.g. a filtered rate) and the regularisation signal R: they
    #    need this step's spike, so they come last; stored as observables after psi
    update += _neuron_learning_lines(ir, printer, observables)

    # 5. flush events (NEST's flush_event_send_interval): spiked = 2 asks the engine to replay the
    #    neuron's outgoing plastic synapses without transmitting anything
    if ir.learning is not None and ir.learning.flush is not None and ir.is_spiking:
        observables.append("last_event")
        row = len(ir.states) + len(observables) - 1
        interval = term(ir.learning.flush / H)          # steps (inf: never)
        update += [
            "{  // NEST: a neuron that has spiked (at a step > 0) and then stayed silent for the interval",
            f"    const double interval = {interval};",
            f"    if (pop->spiked[i]) pop->state[{row}][i] = (double)pop->step;",
            f"    else if (pop->state[{row}][i] > 0 && isfinite(interval) &&",
            f"             (double)pop->step - pop->state[{row}][i] >= llround(interval)) {{",
            "        pop->spiked[i] = 2;",
            f"        pop->state[{row}][i] = (double)pop->step;",
            "    }",
            "}"]

    # replay kernels of the learning rule: their coefficients join this kernel's prepared table
    replays = plan_replays(solution, _Printer, lambda expr: int(coeffs.slot(expr.subs(DT, H))[1:]))

    direct = _parameters_read_by_update(solution)
    loads = [f"const double p_{p.name} = pop->param[{k}][i];" for k, p in enumerate(ir.parameters)
             if p.symbol in direct]
    loads += [f"double s_{s.name} = pop->state[{k}][i];" for k, s in enumerate(ir.states)]
    loads += [f"const double u_{c.name} = pop->current_in[{k}][i];" for k, c in enumerate(ir.current_ports)]
    loads += [f"double n_{n};" for n in _exact_names(solution) + list(solution.numeric_states)]
    loads += [f"const double c{k} = pop->coeff[{k}][i];" for k in range(len(coeffs.exprs))]
    stores = [f"pop->state[{k}][i] = s_{s.name};" for k, s in enumerate(ir.states)]
    if DT in _symbols_read_by_update(solution):
        loads.insert(0, "const double dt = pop->dt;")

    prepare = [f"const double p_{p.name} = pop->param[{k}][i];" for k, p in enumerate(ir.parameters)]
    if any(DT in e.free_symbols for e in coeffs.exprs):
        prepare.insert(0, "const double dt = h;")
    prepare += _cse_lines([(f"pop->coeff[{k}][i]", e) for k, e in enumerate(coeffs.exprs)], printer)

    return KernelPlan(
        name=ir.name, source_file=ir.file,
        states=tuple(s.name for s in ir.states), params=tuple(p.name for p in ir.parameters),
        spike_ports=tuple(p.name for p in ir.spike_ports), current_ports=tuple(c.name for c in ir.current_ports),
        propagator_states=tuple(str(s) for s in (solution.linear.states + solution.linear.inputs)) if solution.linear else (),
        n_coeff=len(coeffs.exprs), prepare_lines=tuple(prepare), update_lines=tuple(loads + update + stores),
        propagator_lines=tuple(_propagator_lines(solution, printer)), spiking=ir.is_spiking,
        observables=tuple(observables), replays=replays, archived=tuple(q.name for q in archived),
    )


def neuron_traces(ir: ModelIR) -> list:
    """The learning traces kept per neuron (those that do not filter the synaptic trace e)."""
    return [t for t in ir.learning.traces if not t.per_synapse] if ir.learning is not None else []


def _neuron_learning_lines(ir: ModelIR, printer: _Printer, observables: list[str]) -> list[str]:
    traces = neuron_traces(ir)
    per_step_regularisation = (ir.learning is not None and ir.learning.regularisation is not None
                               and not ir.learning.regularisation_per_interval)
    if not traces and not per_step_regularisation:
        return []
    rows = {}
    for t in traces:
        observables.append(t.name)
        rows[t.name] = len(ir.states) + len(observables) - 1
    spike = "(double)pop->spiked[i]" if ir.is_spiking else "0.0"
    local = {**printer.names, OWN_SPIKE: "z_self", **{t.symbol: f"lt_{t.name}" for t in traces}}
    learning_printer = _Printer(local)
    lines = ["{  // per-neuron learning traces (simultaneous update), then R from the new values",
             f"    const double z_self = {spike};"]
    lines += [f"    const double lt_{t.name} = pop->state[{rows[t.name]}][i];" for t in traces]
    lines += [f"    const double new_{t.name} = {learning_printer.doprint(t.update)};" for t in traces]
    lines += [f"    pop->state[{rows[t.name]}][i] = new_{t.name};" for t in traces]
    if per_step_regularisation:            # (a per-interval R is computed by the interval replay)
        observables.append("R")
        after = _Printer({**local, **{t.symbol: f"new_{t.name}" for t in traces}})
        lines.append(f"    pop->state[{len(ir.states) + len(observables) - 1}][i] = "
                     f"{after.doprint(ir.learning.regularisation)};")
    lines.append("}")
    return lines


def _local_names(ir: ModelIR) -> dict[sp.Symbol, str]:
    names = {p.symbol: f"p_{p.name}" for p in ir.parameters}
    names.update({s.symbol: f"s_{s.name}" for s in ir.states})
    names.update({c.symbol: f"u_{c.name}" for c in ir.current_ports})
    names[ONE] = "1.0"
    names[H] = "h"
    names[DT] = "dt"
    return names


def _exact_names(solution: Solution) -> list[str]:
    return [str(s) for s in solution.linear.states] if solution.linear else []


def _exact_lines(solution: Solution, term, names, held: bool) -> list[str]:
    lin = solution.linear
    if lin is None:
        return []
    P = lin.held_propagator_matrix if held and lin.held_propagator_matrix is not None else lin.propagator_matrix
    cols = list(lin.states) + list(lin.inputs)
    lines = []
    for r, x in enumerate(lin.states):
        parts = []
        for c, y in enumerate(cols):
            entry = P[r, c]
            if entry == 0:
                continue
            value = names[y]
            parts.append(value if entry == 1 and y != ONE else f"{term(entry)} * {value}")
        lines.append(f"n_{x} = {' + '.join(parts) if parts else '0.0'};")
    return lines


def _rk4_lines(solution: Solution, printer: _Printer, held: set, refractory: bool,
               tangent_columns: list[str] = ()) -> list[str]:
    """The RK4 substeps of the numerically integrated states; with tangent_columns, also the
    derivative of the step by each of those states' values before it (forward mode: the same stages
    applied to the variational equation, dy_<column>_<state>), what e-prop archives as F."""
    ir = solution.ir
    carried = list(solution.stage_states) + list(solution.numeric_states)
    if not solution.numeric_states:
        return []
    substeps = ir.scheme.substeps

    def guarded(n: str, expr: str) -> str:
        return f"refractory_now ? 0.0 : ({expr})" if refractory and n in held else expr

    def rhs_lines(stage: str, at: dict[str, str]) -> list[str]:
        local = {**printer.names, **{ir.state(n).symbol: at[n] for n in carried}}
        stage_printer = _Printer(local)
        return [f"    const double {stage}_{n} = {guarded(n, stage_printer.doprint(ir.rhs(n)))};" for n in carried]

    def tangent_lines(stage: str, at: dict[str, str], direction: str) -> list[str]:
        """d(stage)/d(column) = Df(at) . (the stage point's tangent)"""
        stage_printer = _Printer({**printer.names, **{ir.state(n).symbol: at[n] for n in carried}})
        out = []
        for c in tangent_columns:
            for n in carried:
                terms = []
                for m in carried:
                    d = sp.diff(ir.rhs(n), ir.state(m).symbol)
                    if d != 0:
                        terms.append(f"({stage_printer.doprint(d)}) * {direction.format(c=c, n=m)}")
                out.append(f"    const double d{stage}_{c}_{n} = {guarded(n, ' + '.join(terms) or '0.0')};")
        return out

    lines = [f"for (int sub = 0; sub < {substeps}; ++sub) {{  // RK4, {substeps} substep(s) per step",
             f"    const double hs = pop->dt / {substeps};"]
    y = {n: f"y_{n}" for n in carried}
    pre = [f"double y_{n} = s_{n};" for n in carried]
    pre += [f"double dy_{c}_{n} = {1.0 if c == n else 0.0};" for c in tangent_columns for n in carried]
    lines += rhs_lines("k1", y)
    lines += tangent_lines("k1", y, "dy_{c}_{n}")
    for stage, prev, frac in (("k2", "k1", "0.5"), ("k3", "k2", "0.5"), ("k4", "k3", "1.0")):
        at = {n: f"t{stage}_{n}" for n in carried}
        lines += [f"    const double t{stage}_{n} = y_{n} + {frac} * hs * {prev}_{n};" for n in carried]
        lines += rhs_lines(stage, at)
        lines += [f"    const double dt{stage}_{c}_{n} = dy_{c}_{n} + {frac} * hs * d{prev}_{c}_{n};"
                  for c in tangent_columns for n in carried]
        lines += tangent_lines(stage, at, f"dt{stage}_{{c}}_{{n}}")
    lines += [f"    y_{n} += hs / 6.0 * (k1_{n} + 2.0 * k2_{n} + 2.0 * k3_{n} + k4_{n});" for n in carried]
    lines += [f"    dy_{c}_{n} += hs / 6.0 * (dk1_{c}_{n} + 2.0 * dk2_{c}_{n} + 2.0 * dk3_{c}_{n} + dk4_{c}_{n});"
              for c in tangent_columns for n in carried]
    lines.append("}")
    return pre + lines + [f"n_{n} = y_{n};" for n in solution.numeric_states]


def _propagator_lines(solution: Solution, printer: _Printer) -> list[str]:
    lin = solution.linear
    if lin is None:
        return []
    m = len(lin.states) + len(lin.inputs)
    ir = solution.ir
    lines = [f"const double p_{p.name} = param[{k}];" for k, p in enumerate(ir.parameters)]
    targets = []
    for r in range(m):
        for c in range(m):
            entry = lin.propagator_matrix[r, c] if r < len(lin.states) else sp.Integer(int(r == c))
            targets.append((f"out[{r * m + c}]", entry))
    return lines + _cse_lines(targets, printer)


def _cse_lines(targets: list[tuple[str, sp.Expr]], printer: _Printer) -> list[str]:
    """One assignment per coefficient, printed as written. No common-subexpression elimination: it
    turns exp(-dt/tau) into exp(-dt*t) with t = 1/tau, which rounds differently from NEST's
    exp(-dt/tau); these lines run once per neuron and simulate call, so sharing buys nothing."""
    return [f"{dest} = {printer.doprint(e)};" for dest, e in targets]


def _symbols_read_by_update(solution: Solution) -> set[sp.Symbol]:
    """Symbols the step itself reads (everything else reaches it through prepared coefficients):
    those in the threshold, the resets and the numerically integrated right-hand sides."""
    ir = solution.ir
    exprs = [ir.rhs(n) for n in solution.stage_states + solution.numeric_states]
    if ir.output is not None:
        exprs.append(ir.output)
    exprs += [q.expression for q in archived_quantities(solution) if q.expression is not None]
    if ir.learning is not None:
        exprs += [t.update for t in neuron_traces(ir)]
        if ir.learning.regularisation is not None and not ir.learning.regularisation_per_interval:
            exprs.append(ir.learning.regularisation)
    if ir.spike is not None:
        exprs += [ir.spike.condition] + [a.value for a in ir.spike.reset]
        if ir.spike.surrogate is not None:
            exprs.append(ir.spike.surrogate.expression)
    return set().union(*(e.free_symbols for e in exprs)) if exprs else set()


def _parameters_read_by_update(solution: Solution) -> set[sp.Symbol]:
    return _symbols_read_by_update(solution) & {p.symbol for p in solution.ir.parameters}
