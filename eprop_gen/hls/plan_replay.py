"""plan (FPGA back end, learning): a target model's event-driven replay as typed statements,
derived from the same eligibility rule and `learning:` section as the CPU engine's replay
(plan_learning.py), parameters frozen.

One replayed history row m of a synapse onto target j (NEST's eprop_synapse, spec 4.3; the CPU
engine's order):
    presynaptic   eps_r = F_rr eps_r + injection_r zin      components that read only themselves and
                                                            the arriving spike: kept once per source
                                                            window (zbar), all its synapses read them
    row           x = update(x, e)                          the declared per-synapse traces (ebar, ...),
                                                            e = psi[m] (trace . eps) (readouts: trace . eps)
                                                            written out in each statement (ap_fixed keeps
                                                            the product exact: e is not rounded alone)
                  G = G + gradient(L[m], R[m], x, e)        L: a readout's own error E for readouts
                  eps_a = F_aa eps_a + c_a e                components with an adaptation jump (per
                                                            synapse: NEST's eps = rho eps + e)
and after a window's last row, the skipped steps past the cutoff decay every component and trace by
its own factor to the power n_decay. The same statement list is printed as ap_fixed C++ and
evaluated by the CPU simulator (simulate.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..errors import EpropGenError
from ..ir import DT, E_TRACE, LEARNING_SIGNAL, REGULARISATION
from ..solve import Solution
from ..solve.eligibility import PSI, EligibilityRule
from ..solve.propagators import H
from .plan import Assign, Constant, Constants, name_numbers, state_symbol

ZIN = state_symbol("zin")                  # 1 in the row the presynaptic spike enters
GRADIENT = state_symbol("G")               # the window's gradient sum of one synapse
HISTORY = {PSI: state_symbol("psi"), LEARNING_SIGNAL: state_symbol("L"), REGULARISATION: state_symbol("R")}
POW_BITS = 31                              # n_decay < 2^31 steps: the binary powers of a decay base
NEVER = 2 ** 62                            # the row limit of a window without a cutoff


@dataclass(frozen=True)
class ReplayStep:
    model: str
    constants: tuple[Constant, ...]
    presynaptic: tuple[Assign, ...]           # one row of the per-source components (zin in scope)
    synaptic: tuple[str, ...]                 # per-synapse state (trace type), starts at 0
    row: tuple[Assign, ...]                   # one row of one synapse, in order
    reads: tuple[str, ...]                    # history rows read: psi, L (readouts: their E), R
    decay: tuple[tuple[str, int], ...]        # (component or trace, index of its base in pow_bases)
    pow_bases: tuple[float, ...]              # the decay factors per skipped step
    cutoff_steps: int | None                  # replay at most this many rows of a window (None: all)

    @property
    def presynaptic_names(self) -> tuple[str, ...]:
        return tuple(a.target for a in self.presynaptic)

    @property
    def row_limit(self) -> int:
        """Rows a window replays at most (NEVER without a cutoff)."""
        return NEVER if self.cutoff_steps is None else self.cutoff_steps

    @property
    def settle_steps(self) -> int:
        """A window whose last event was a spike this many steps ago is replayed then (a settle
        event, the CPU engine's schedule.settle_steps: it has replayed all it ever will); 0: never."""
        return 0 if self.cutoff_steps is None else max(1, self.cutoff_steps)


def plan_replay_step(solution: Solution, params: dict[str, float], dt: float) -> ReplayStep:
    """The replay of the model's (single) spike port with parameters `params` frozen at step dt."""
    ir = solution.ir
    learning = ir.learning
    rules = [r for r in solution.eligibility if isinstance(r, EligibilityRule)]
    if learning is None or len(rules) != 1:
        raise EpropGenError(f"model '{ir.name}': no event-driven e-prop rule to put on chip "
                            "(`eprop-gen check` shows why)")
    (rule,) = rules
    if rule.per_step:
        raise EpropGenError(f"model '{ir.name}': its rule reads quantities archived per step "
                            f"({', '.join(q.name for q in rule.per_step)}); on the FPGA the replay reads "
                            "psi, L and R only (reset_gradient: stopped and exactly solved dynamics)")
    frozen = {p.symbol: sp.Float(float(params[p.name])) for p in ir.parameters}
    frozen.update({DT: sp.Float(dt), H: sp.Float(dt)})
    k = len(rule.hidden)
    F, jumps, injection = (m.xreplace(frozen) for m in (rule.step, rule.jumps, rule.injection))
    if any(F[r, c] != 0 for r in range(k) for c in range(k) if r != c) or rule.reset != sp.eye(k):
        raise EpropGenError(f"model '{ir.name}': on the FPGA every eligibility component decays by its own "
                            "factor (coupled components and reset derivatives are not on chip yet)")
    constants = Constants("r")
    eps = [state_symbol(f"eps_{name}") for name in rule.hidden]

    def typed(expr, context="trace"):
        return name_numbers(sp.sympify(expr).xreplace(frozen).xreplace(HISTORY), context, constants)

    late = [r for r in range(k) if jumps[r] != 0]
    early = [r for r in range(k) if jumps[r] == 0]
    presynaptic = tuple(Assign(eps[r].name, "trace", typed(F[r, r] * eps[r] + injection[r] * ZIN)) for r in early)

    # e enters every statement as its expression: ap_fixed keeps the product psi * eps exact, so the
    # eligibility value is rounded once, with what it is stored in (one quantization per statement)
    row_of_trace = rule.trace.subs(PSI, 1) if rule.spiking else rule.trace
    e = sum((row_of_trace[r] * eps[r] for r in range(k)), sp.Integer(0))
    e = PSI * e if rule.spiking else e
    regularisation = learning.regularisation.xreplace(frozen) if learning.regularisation is not None else None
    gradient = learning.gradient.xreplace({REGULARISATION: 0} if regularisation == 0 else {})
    traces = _needed_traces([t for t in learning.traces if t.per_synapse], gradient)
    trace_names = {t.symbol: state_symbol(t.name) for t in traces}
    row = []
    simultaneous = any((t.update.free_symbols & set(trace_names)) - {t.symbol} for t in traces)
    for t in traces:
        row.append(Assign(f"new_{t.name}" if simultaneous else t.name, "trace",
                          typed(t.update.xreplace({E_TRACE: e, **trace_names}))))
    if simultaneous:
        row += [Assign(t.name, "trace", state_symbol(f"new_{t.name}")) for t in traces]
    row.append(Assign("G", "gradient", GRADIENT + typed(gradient.xreplace({E_TRACE: e, **trace_names}), "gradient")))
    row += [Assign(eps[r].name, "trace", typed(F[r, r] * eps[r] + jumps[r] * e)) for r in late]
    read = set().union(*(a.expr.free_symbols for a in row))
    reads = tuple(name for name in ("psi", "L", "R") if state_symbol(name) in read)

    bases: list[float] = []
    decay = []
    factors = [(eps[r].name, F[r, r]) for r in range(k)]
    factors += [(t.name, sp.diff(t.update, t.symbol).xreplace(frozen)) for t in traces]
    for name, factor in factors:
        value = float(factor)
        if value not in bases:
            bases.append(value)
        decay.append((name, bases.index(value)))
    cutoff = None
    if learning.cutoff is not None:
        steps = float(learning.cutoff.xreplace(frozen)) / dt
        cutoff = int(np.floor(steps + 0.5)) if np.isfinite(steps) else None     # the CPU engine's rounding
    synaptic = tuple(eps[r].name for r in late) + tuple(t.name for t in traces)
    return ReplayStep(ir.name, constants.table(), presynaptic, synaptic, tuple(row), reads, tuple(decay),
                      tuple(bases), cutoff)


def _needed_traces(traces: list, gradient: sp.Expr) -> list:
    """The per-synapse traces the gradient reads, directly or through other traces (a trace only a
    frozen-to-zero term read, e.g. ebar_reg with c_reg = 0, is left out)."""
    needed = set(gradient.free_symbols)
    while True:
        grown = needed | set().union(*(t.update.free_symbols for t in traces if t.symbol in needed))
        if grown == needed:
            return [t for t in traces if t.symbol in needed]
        needed = grown


def pow_table(base: float) -> tuple[float, ...]:
    """base^(2^b) for b < POW_BITS: a decay by base^n multiplies the entries of n's set bits."""
    return tuple(float(base) ** (2 ** b) for b in range(POW_BITS))
