"""build (FPGA back end): NET.toml + the model -> a self-contained Vitis HLS project on disk.

The network is the one `eprop-gen train` builds from the same file (same draws of connectivity and
weights); its parameters are frozen into the firmware. The reference outputs the test bench compares
with come from the CPU fixed-point simulator (simulate.py) run on the task's first sample."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import models
from ..compiler import check_source, read_model
from ..errors import EpropGenError
from ..train.config import Config
from ..train.trainer import build
from .ap_types import LICENCE, ap_types_dir
from .check import check_precisions
from .config import NetConfig
from .evaluate import Fixed
from .fixed_array import from_double_array, to_double_array
from .plan import NeuronStep, plan_neuron_step
from .plan_replay import POW_BITS, plan_replay_step
from .render import (PROJECTIONS, constant_lines, history_lines, initial_lines, learning_constant_lines,
                     render_template, replay_lines, state_lines, update_lines)
from .simulate import LearningRule, Projection, simulate_learning


@dataclass(frozen=True)
class OnChipNetwork:
    """What the firmware is generated for: sizes, neuron steps, connectivity by source."""
    n_in: int
    n_rec: int
    n_out: int
    rec: NeuronStep
    out: NeuronStep
    projections: dict          # "input" / "recurrent" / "readout" -> simulate.Projection
    input_spikes: np.ndarray   # (steps, n_in) bool: the task's first sample (row m emitted in step m)
    target: np.ndarray         # (steps, n_out): the readouts' target y* in that sample
    B: np.ndarray              # (n_rec, n_out) feedback weights
    rule: LearningRule


def on_chip_network(config: Config, dt: float = 1.0) -> OnChipNetwork:
    built = build(config, threads=1)
    steps, replays = {}, {}
    for section, pop in (("recurrent", built.recurrent), ("readout", built.readout)):
        model = pop.model
        values = {}
        for name in model.params:
            column = np.asarray(pop.get(name), dtype=float)
            if not np.all(column == column[0]):
                raise EpropGenError(f"{config.file}: [{section}.params] {name}: on the FPGA every neuron "
                                    "of a population has the same parameters (they are frozen into the firmware)")
            values[name] = float(column[0])
        solution = check_source(*read_model(_model_path(config, getattr(config, section).model))).solution
        try:
            steps[section] = plan_neuron_step(solution, values, dt, model.propagator)
            replays[section] = plan_replay_step(solution, values, dt)
        except EpropGenError as error:
            raise EpropGenError(f"{config.file}: [{section}] model: {error}") from None
    projections = {}
    for name, size, *_ in PROJECTIONS:
        p = built.projections[name]
        n_source = built.task.n_in if name == "input" else config.recurrent.n
        pairs = np.stack([p.sources, p.targets], axis=1)
        if len(np.unique(pairs, axis=0)) != len(pairs):
            raise EpropGenError(f"{config.file}: the {name} projection connects a pair of neurons twice; "
                                "on the FPGA a source reaches each target at most once")
        projections[name] = Projection.from_lists(n_source, p.sources, p.targets, p.weights)
    batch = built.task.batch(0, 1)
    spikes = np.zeros((built.task.steps, built.task.n_in), bool)
    rows = np.rint(batch.times / dt).astype(int) - 1
    spikes[rows, batch.senders] = True
    o = config.optimizer
    if o.type != "gradient_descent":
        raise EpropGenError(f"{config.file}: [optimizer] type: on chip the weights take gradient-descent "
                            f"steps (one per spike); got '{o.type}'")
    rule = LearningRule(replays["recurrent"], replays["readout"], o.eta, o.w_min, o.w_max)
    (feedback,) = built.net._feedbacks
    return OnChipNetwork(built.task.n_in, config.recurrent.n, built.task.n_out, steps["recurrent"],
                         steps["readout"], projections, spikes, np.asarray(batch.target, float),
                         feedback.weights.copy(), rule)


def _model_path(config: Config, name: str) -> Path:
    """A population's model file: a shipped model's or a .eprop path relative to the configuration."""
    path = Path(name)
    if path.suffix == ".eprop":
        return path if path.is_absolute() else config.folder / path
    return models.path(name)


def write_project(net: NetConfig, out: Path, steps: int | None = None, calls: int = 3) -> Path:
    """The project in `out` (created; existing files of the same names are replaced)."""
    hls = net.hls
    chip = on_chip_network(net.network)
    steps = chip.input_spikes.shape[0] if steps is None else int(steps)
    for kind, step in (("recurrent", chip.rule.rec), ("readout", chip.rule.out)):
        if step.cutoff_steps is not None and step.cutoff_steps > hls.history - 2:
            raise EpropGenError(f"{net.network.file}: [hls] history = {hls.history} rows cannot hold the "
                                f"{step.cutoff_steps} steps of eprop_isi_trace_cutoff of the {kind} neurons' "
                                f"replays; increase [hls] history to at least {step.cutoff_steps + 2} "
                                "(a power of two)")
    check_precisions(hls.precision, chip.rec, chip.out, (chip.rule.rec, chip.rule.out), str(net.network.file))
    backend = Fixed(hls.precision)
    # the test bench's calls: learning on, off, on (each call's `learn`), the state kept between them
    call_steps = _calls(steps, calls)
    call_learn = [int(k % 2 == 0) for k in range(len(call_steps))]
    learn = np.repeat(np.array(call_learn, bool), call_steps)
    spikes, y, weights = simulate_learning(chip.rec, chip.out, chip.n_in, chip.n_rec, chip.n_out, chip.projections,
                                           chip.B, chip.rule, chip.input_spikes[:steps], chip.target[:steps],
                                           backend, history=hls.history, learn=learn)
    out = Path(out)
    for folder in ("firmware", "tb", "data"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    top = hls.top
    kinds = {"x_rec": "rec", "x_out": "out"}
    steps_of = {"rec": chip.rule.rec, "out": chip.rule.out}
    projections = [dict(name=name, n_source=chip.projections[name].count.size, spike=spike, flush=flush, sum=input_sum,
                        replay=replay_lines(name, size, kinds[input_sum], steps_of[kinds[input_sum]]))
                   for name, size, spike, flush, input_sum in PROJECTIONS]
    degrees = [(name, chip.projections[name].target.shape[1]) for name, *_ in PROJECTIONS]
    state = state_lines(chip.rec, "rec", "N_REC") + state_lines(chip.out, "out", "N_OUT")
    for name, size, *_ in PROJECTIONS:
        state += [f"static weight_t {name}_weight[{size}][DEG_{name.upper()}];",
                  f"static index_t {name}_target[{size}][DEG_{name.upper()}];",
                  f"static index_t {name}_count[{size}];"]
    context = dict(source_file=chip.rec.model, top=top, n_in=chip.n_in, n_rec=chip.n_rec, n_out=chip.n_out,
                   degrees=degrees, degrees_text=", ".join(f"{n} {d}" for n, d in degrees),
                   refractory_steps=chip.rec.refractory_steps,
                   types=[(q, T.cpp) for q, T in hls.precision.items()],
                   index_bits=(index_bits := max(8, int(max(chip.n_in, chip.n_rec, max(d for _, d in degrees)) + 1).bit_length())),
                   bus_types=_bus_types(hls.precision, index_bits),
                   constant_lines=constant_lines(chip.rec, "rec") + constant_lines(chip.out, "out"),
                   learning_constant_lines=learning_constant_lines(chip.rule, chip.B), history=hls.history,
                   state_lines=state, initial_lines=initial_lines(chip.rec, "rec", "N_REC") + initial_lines(chip.out, "out", "N_OUT"),
                   projections=projections, rec_update_lines=update_lines(chip.rec, "rec", "x_rec"),
                   out_update_lines=update_lines(chip.out, "out", "x_out"),
                   n_weights=sum(p.target.size for p in chip.projections.values()),
                   n_sources=sum(p.count.size for p in chip.projections.values()),
                   steps=steps, calls=call_steps, call_learn=call_learn, ap_types=str(ap_types_dir()), ap_types_licence=LICENCE,
                   part=hls.part, clock_ns=hls.clock_ns, pow_bits=POW_BITS, history_text=_history_text(chip.rule),
                   **history_lines(chip.rule))
    files = {"firmware/defines.h": render_template("defines.h.j2", **context),
             f"firmware/{top}.cpp": render_template("firmware.cpp.j2", **context),
             f"tb/tb_{top}.cpp": render_template("tb.cpp.j2", **context),
             "csim.sh": render_template("csim.sh.j2", **context),
             "build_prj.tcl": render_template("build_prj.tcl.j2", **context),
             "README.md": render_template("README.md.j2", **context)}
    weight_type = hls.precision["weight"]
    quantized = [to_double_array(from_double_array(chip.projections[name].weight.ravel(), weight_type), weight_type)
                 for name, *_ in PROJECTIONS]
    data = {"data/weights.txt": _numbers(np.concatenate(quantized)),
            "data/targets.txt": _numbers(np.concatenate([chip.projections[n].target.ravel() for n, *_ in PROJECTIONS]), int),
            "data/counts.txt": _numbers(np.concatenate([chip.projections[n].count for n, *_ in PROJECTIONS]), int),
            "data/input_spikes.txt": _numbers(chip.input_spikes[:steps].astype(int).ravel(), int),
            "data/expected_spikes.txt": _numbers(spikes.astype(int).ravel(), int),
            "data/expected_readout.txt": _numbers(y.ravel()),
            "data/readout_target.txt": _numbers(chip.target[:steps].ravel()),
            "data/expected_weights.txt": _numbers(np.concatenate([weights[n].ravel() for n, *_ in PROJECTIONS]))}
    for name, text in {**files, **data}.items():
        (out / name).write_text(text)
    (out / "csim.sh").chmod(0o755)
    return out


def _bus_types(precision: dict, index_bits: int) -> list[tuple[str, str]]:
    """The AXI-master ports' element types: power-of-two widths of at least a byte (no padding, burst
    inference; Vitis HLS guidance), the same integer bits as the on-chip type, so that every on-chip
    value converts to the bus and back exactly."""
    def width(bits: int) -> int:
        return max(8, 1 << (bits - 1).bit_length())
    out = []
    for quantity in ("weight", "membrane"):
        T = precision[quantity]
        out.append((f"{quantity}_bus_t", f"ap_{'' if T.signed else 'u'}fixed<{width(T.W)}, {T.I}, {T.Q}, {T.O}>"))
    out.append(("index_bus_t", f"ap_uint<{width(index_bits)}>"))
    return out


def _history_text(rule) -> str:
    """What the history length means for this rule (the generated README)."""
    cutoffs = [f"{kind} {step.cutoff_steps} steps" for kind, step in (("recurrent", rule.rec), ("readout", rule.out))
               if step.cutoff_steps is not None]
    if len(cutoffs) == 2:
        return "replays stop at the cutoff: " + ", ".join(cutoffs) + "; older windows settle and decay"
    return ("every window without a cutoff must fit it: a source silent for longer than that "
            "needs eprop_isi_trace_cutoff")


def _calls(steps: int, calls: int) -> list[int]:
    """Steps per call of the top function: the state stays on chip between calls."""
    calls = max(1, min(calls, steps))
    base = [steps // calls] * calls
    base[-1] += steps - sum(base)
    return base


def _numbers(values: np.ndarray, kind=float) -> str:
    if kind is int:
        return "\n".join(str(int(v)) for v in values) + "\n"
    return "\n".join(f"{float(v):.17g}" for v in values) + "\n"
