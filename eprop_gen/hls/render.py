"""render (FPGA back end): the on-chip network's plan -> the HLS project's files, through the
templates in templates/hls/. Every line the templates print is prepared here."""
from __future__ import annotations

import functools

import jinja2

from ..paths import resource_dir
from .plan import NeuronStep
from .printer import cpp_assign, cpp_constant, cpp_expr

PROJECTIONS = (("input", "N_IN", "previous_in", "x_rec"), ("recurrent", "N_REC", "previous_rec", "x_rec"),
               ("readout", "N_REC", "previous_rec", "x_out"))


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
    return lines


def initial_lines(step: NeuronStep, prefix: str, size: str) -> list[str]:
    body = [f"{prefix}_{name}[i] = {value:.17g};" for (name, _), value in zip(step.states, step.initial)]
    if step.threshold is not None:
        body += [f"{prefix}_refractory[i] = 0;", f"{prefix}_spiked[i] = false;", f"{prefix}_psi[i] = 0;"]
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
    return lines


def learning_constant_lines(rule, B) -> list[str]:
    """The learning rule's constants (quantized by ap_fixed from their doubles) and the feedback B."""
    lines = [f"static const coefficient_t learn_{name} = {value:.17g};"
             for name, value in (("alpha_rec", rule.alpha_rec), ("alpha_out", rule.alpha_out),
                                 ("kappa", rule.kappa), ("eta", rule.eta))]
    lines += [f"static const weight_t learn_w_min = {rule.w_min:.17g};",
              f"static const weight_t learn_w_max = {rule.w_max:.17g};"]
    rows = ", ".join("{" + ", ".join(f"{v:.17g}" for v in row) + "}" for row in B)
    lines.append(f"static const coefficient_t learn_B[N_REC][N_OUT] = {{{rows}}};")
    return lines


def replay_lines(name: str, size: str, kind: str) -> dict[str, list[str]]:
    """The per-synapse part of a window's replay (the LIF rule: NEST's eprop_iaf / eprop_readout; the
    same statements as simulate.simulate_learning): state, its reset, the lines around the row loop
    and one row m of target j (zbar_row[r] in scope, G the gradient sum)."""
    if kind == "rec":
        return dict(state_lines=[f"static trace_t {name}_ebar[{size}][DEG_{name.upper()}];"],
                    clear_lines=[f"for (int k = 0; k < DEG_{name.upper()}; ++k) {name}_ebar[s][k] = 0;"],
                    load_lines=[f"trace_t ebar = {name}_ebar[s][k];"],
                    row_lines=["ebar = learn_kappa * ebar + hist_psi[m][j] * zbar_row[r];", "G = G + hist_L[m][j] * ebar;"],
                    store_lines=[f"{name}_ebar[s][k] = ebar;"])
    return dict(state_lines=[], clear_lines=[], load_lines=[], row_lines=["G = G + hist_E[m][j] * zbar_row[r];"], store_lines=[])
