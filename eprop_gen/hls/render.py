"""render (FPGA back end): the on-chip network's plan -> the HLS project's files, through the
templates in templates/hls/. Every line the templates print is prepared here."""
from __future__ import annotations

import functools

import jinja2

from ..paths import resource_dir
from .plan import NeuronStep
from .plan_replay import pow_table
from .printer import cpp_assign, cpp_constant, cpp_expr

# name, sources, its spike and flush event of the previous step, the input sum it adds to
PROJECTIONS = (("input", "N_IN", "previous_in[s]", "false", "x_rec"),
               ("recurrent", "N_REC", "previous_rec[s]", "previous_flush[s]", "x_rec"),
               ("readout", "N_REC", "previous_rec[s]", "previous_flush[s]", "x_out"))


def history_lines(rule) -> dict[str, list[str]]:
    """The history rings (what the replays read), their clearing and the recurrent neurons'
    archiving of step n (R only when a replay reads it)."""
    rings = [("hist_psi", "psi", "N_REC", "psi"), ("hist_L", "signal", "N_REC", None),
             ("hist_E", "signal", "N_OUT", None)]
    if "R" in rule.rec.reads:
        rings.append(("hist_R", "signal", "N_REC", "R"))
    archive = [f"{name}[n & (H - 1)][i] = {value or 0};" for name, _, size, value in rings if size == "N_REC"]
    return dict(history_lines=[f"static {quantity}_t {name}[H][{size}];" for name, quantity, size, _ in rings],
                history_clear_lines=[f"for (int i = 0; i < {size}; ++i) {name}[m][i] = 0;" for name, _, size, _ in rings],
                archive_lines=archive)


@functools.lru_cache(maxsize=None)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(resource_dir("templates") / "hls")),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def render_template(name: str, **context) -> str:
    return _environment().get_template(name).render(**context)


def constant_lines(step: NeuronStep, prefix: str) -> list[str]:
    return [cpp_constant(c, prefix + "_") for c in step.constants]


def state_lines(step: NeuronStep, prefix: str, size: str) -> list[str]:
    lines = [f"static {quantity}_t {prefix}_{name}[{size}];" for name, quantity in step.states]
    if step.threshold is not None:
        lines += [f"static ap_uint<{max(1, step.refractory_steps.bit_length())}> {prefix}_refractory[{size}];",
                  f"static bool {prefix}_spiked[{size}];", f"static psi_t {prefix}_psi[{size}];"]
    lines += [f"static {a.quantity}_t {prefix}_{a.target}[{size}];" for a in step.neuron_traces]
    if step.flush_steps:
        lines.append(f"static long long {prefix}_last_event[{size}];   // step of the last spike or flush (0: none)")
    return lines


def initial_lines(step: NeuronStep, prefix: str, size: str) -> list[str]:
    body = [f"{prefix}_{name}[i] = {value:.17g};" for (name, _), value in zip(step.states, step.initial)]
    if step.threshold is not None:
        body += [f"{prefix}_refractory[i] = 0;", f"{prefix}_spiked[i] = false;", f"{prefix}_psi[i] = 0;"]
    body += [f"{prefix}_{a.target}[i] = 0;" for a in step.neuron_traces]
    if step.flush_steps:
        body.append(f"{prefix}_last_event[i] = 0;")
    return [f"for (int i = 0; i < {size}; ++i) {{"] + ["    " + line for line in body] + ["}"]


def update_lines(step: NeuronStep, prefix: str, input_sum: str) -> list[str]:
    """One neuron's step in the order of simulate.Population.update (plan.py's order)."""
    constants = {c.name: f"{prefix}_{c.name}" for c in step.constants}
    old = {**constants, **{name: f"old_{name}" for name, _ in step.states}}
    new = {**constants, **{name: name for name, _ in step.states}}
    spiking = step.threshold is not None
    lines = []
    if spiking:
        lines += [f"const bool refractory_now = {prefix}_refractory[i] > 0;",
                  f"if (refractory_now) {prefix}_refractory[i] = {prefix}_refractory[i] - 1;"]
    lines += [f"const {quantity}_t old_{name} = {prefix}_{name}[i];" for name, quantity in step.states]
    lines += [f"{a.quantity}_t " + cpp_assign(a, old, target=a.target) for a in step.propagation]
    lines += [f"if (refractory_now) {name} = old_{name};" for name in step.held]
    lines += [f"if ({prefix}_spiked[i]) " + cpp_assign(a, new) for a in step.adaptation]
    add = f"{step.input_target} = {step.input_target} + {input_sum}[i];"
    lines.append(f"if (!refractory_now) {add}" if step.input_target in step.held else add)
    if spiking:
        lines.append(f"const bool can_spike = {prefix}_refractory[i] == 0;")
        lines.append("psi_t psi = 0;")
        if step.psi is not None:
            lines.append("if (can_spike) " + cpp_assign(step.psi, new))
        lines.append(f"const bool spike = can_spike && {cpp_expr(step.threshold, new)};")
        lines.append("if (spike) {")
        lines += ["    " + cpp_assign(a, new) for a in step.reset]
        lines.append(f"    {prefix}_refractory[i] = N_REF;")
        lines.append("}")
    lines += [f"{prefix}_{name}[i] = {name};" for name, _ in step.states]
    if spiking:
        lines += [f"{prefix}_spiked[i] = spike;", f"{prefix}_psi[i] = psi;"]
    if step.output is not None:
        lines.append("const membrane_t " + cpp_assign(step.output, new))
    return lines + (_learning_lines(step, prefix, constants) if spiking else [])


def _learning_lines(step: NeuronStep, prefix: str, constants: dict[str, str]) -> list[str]:
    """After a spiking neuron's step: its per-neuron traces from this step's spike (simultaneous),
    R from their new values, and whether it sends a flush event (`flush`)."""
    old = {**constants, "z": "ap_uint<1>(spike)", **{a.target: f"{prefix}_{a.target}[i]" for a in step.neuron_traces}}
    lines = [f"const {a.quantity}_t new_{a.target} = {cpp_expr(a.expr, old)};" for a in step.neuron_traces]
    lines += [f"{prefix}_{a.target}[i] = new_{a.target};" for a in step.neuron_traces]
    if step.regularisation is not None:
        new = {**constants, **{a.target: f"new_{a.target}" for a in step.neuron_traces}}
        lines.append("const signal_t " + cpp_assign(step.regularisation, new))
    if not step.flush_steps:
        return lines + ["const bool flush = false;"]
    # NEST: a neuron that spiked (in a step > 0) and then stayed silent for the interval
    return lines + ["bool flush = false;",
                    f"if (spike) {prefix}_last_event[i] = n;",
                    f"else if ({prefix}_last_event[i] > 0 && n - {prefix}_last_event[i] >= {step.flush_steps}) {{",
                    "    flush = true;", f"    {prefix}_last_event[i] = n;", "}"]


def learning_constant_lines(rule, B) -> list[str]:
    """The learning rule's constants (quantized by ap_fixed from their doubles): per target kind
    its replay's constants, decay tables and cutoff; eta, the weight bounds and the feedback B."""
    lines = [f"static const coefficient_t learn_eta = {rule.eta:.17g};",
             f"static const weight_t learn_w_min = {rule.w_min:.17g};",
             f"static const weight_t learn_w_max = {rule.w_max:.17g};"]
    for kind, step in (("rec", rule.rec), ("out", rule.out)):
        lines += [cpp_constant(c, f"learn_{kind}_") for c in step.constants]
        lines += [f"static const coefficient_t learn_{kind}_pow{t}[POW_BITS] = {{"
                  + ", ".join(f"{v:.17g}" for v in pow_table(base)) + "};" for t, base in enumerate(step.pow_bases)]
        lines += [f"static const long long learn_{kind}_cutoff = {step.row_limit}LL;   // rows replayed per window at most",
                  f"static const long long learn_{kind}_settle = {step.settle_steps}LL;   // replay a window this old (0: never)"]
    rows = ", ".join("{" + ", ".join(f"{v:.17g}" for v in row) + "}" for row in B)
    lines.append(f"static const coefficient_t learn_B[N_REC][N_OUT] = {{{rows}}};")
    return lines


def replay_lines(name: str, size: str, kind: str, step) -> dict[str, list[str]]:
    """The lines of projection `name`'s window replay (replay_<name> in the firmware) from its
    target's ReplayStep: state, its reset, the presynaptic rows, one row of one synapse and the
    decay past the cutoff. Locals carry the statements' names (eps_V_m, ebar, G, psi, L, R, zin)."""
    degree = f"DEG_{name.upper()}"
    constants = {c.name: f"learn_{kind}_{c.name}" for c in step.constants}
    pre, syn = step.presynaptic_names, step.synaptic
    history = {"psi": ("psi_t", "hist_psi"), "L": ("signal_t", "hist_L" if kind == "rec" else "hist_E"),
               "R": ("signal_t", "hist_R")}
    state = [f"static trace_t {name}_pre_{x}[{size}];" for x in pre]
    state += [f"static trace_t {name}_{x}[{size}][{degree}];" for x in syn]
    state.append(f"static gradient_t {name}_G[{size}][{degree}];")
    clear = [f"{name}_pre_{x}[s] = 0;" for x in pre]
    clear += [f"for (int k = 0; k < {degree}; ++k) {{ " + " ".join(f"{name}_{x}[s][k] = 0;" for x in (*syn, "G")) + " }"]

    def statement(a) -> str:
        declared = a.target in syn or a.target in pre or a.target == "G"
        return ("" if declared else f"{a.quantity}_t ") + cpp_assign(a, constants)

    by_table = {t: f"f{t}" for t in range(len(step.pow_bases))}
    return dict(
        state_lines=state, clear_lines=clear,
        pre_load_lines=[f"trace_t {x} = {name}_pre_{x}[s];" for x in pre],
        pre_row_declare_lines=[f"trace_t pre_row_{x}[H];" for x in pre],
        pre_row_lines=[statement(a) for a in step.presynaptic] + [f"pre_row_{x}[r] = {x};" for x in pre],
        pre_store_lines=[f"{name}_pre_{x}[s] = {x};" for x in pre],
        syn_load_lines=[f"trace_t {x} = {name}_{x}[s][k];" for x in syn]
        + [f"gradient_t G = {name}_G[s][k];", "if (fresh) G = 0;"],
        row_lines=[f"const trace_t {x} = pre_row_{x}[r];" for x in pre]
        + [f"const {history[x][0]} {x} = {history[x][1]}[m][j];" for x in step.reads]
        + [statement(a) for a in step.row],
        factor_lines=[f"const coefficient_t f{t} = eg_pow(learn_{kind}_pow{t}, n_decay);" for t in by_table],
        pre_decay_lines=[f"{name}_pre_{x}[s] = {name}_pre_{x}[s] * {by_table[t]};" for x, t in step.decay if x in pre],
        syn_decay_lines=[f"{x} = {x} * {by_table[t]};" for x, t in step.decay if x in syn],
        syn_store_lines=[f"{name}_{x}[s][k] = {x};" for x in syn] + [f"{name}_G[s][k] = G;"],
        cutoff=f"learn_{kind}_cutoff", settle=f"learn_{kind}_settle")
