"""What the FPGA's fixed-point precisions do to learning (issue 7): the sine-wave network of NEST's
tutorial (examples/sine_wave.toml: 100 inputs, 100 eprop_iaf, one readout, cutoff 100 ms, flush
events, firing-rate regularisation) trained with the on-chip algorithm in float64 (= the CPU
engine's event-driven e-prop with per-spike gradient descent, tests/test_hls_project.py) and in
fixed point with the default precisions and with narrower weights.

    python benchmarks/hls_precision.py [--config examples/sine_wave.toml] [--passes 30] [--eta 2e-6]

Each pass is one sample from rest with the weights the previous pass learned — what the firmware
does when each call sets `reset` and passes back the weights it wrote. Prints the loss
0.5 sum_t (y - y*)^2 per pass for each arithmetic and draws benchmarks/results/hls_precision.png.
The fixed-point simulator is bit-true to the generated firmware (its C simulation) and slow:
about 25 s per 1000-step pass of this network.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from eprop_gen.hls.config import DEFAULT_PRECISION
from eprop_gen.hls.evaluate import Fixed, Float64
from eprop_gen.hls.fixed import FixedType
from eprop_gen.hls.project import on_chip_network
from eprop_gen.hls.simulate import simulate_learning
from eprop_gen.train.config import load_config

HERE = Path(__file__).resolve().parent
DEFAULT = {q: FixedType.parse(v) for q, v in DEFAULT_PRECISION.items()}
ARITHMETIC = {
    "float64": Float64(),
    "fixed, defaults": Fixed(DEFAULT),
    "fixed, weight ap_fixed<18,6>": Fixed(dict(DEFAULT, weight=FixedType.parse("ap_fixed<18,6,AP_RND_CONV,AP_SAT>"))),
}


def train(chip, backend, passes: int, history: int) -> np.ndarray:
    """The loss of each pass; the weights carry over, the state starts from rest."""
    projections = dict(chip.projections)
    losses = []
    for _ in range(passes):
        _, y, weights = simulate_learning(chip.rec, chip.out, chip.n_in, chip.n_rec, chip.n_out, projections,
                                          chip.B, chip.rule, chip.input_spikes, chip.target, backend, history=history)
        losses.append(0.5 * float(((y - chip.target) ** 2).sum()))
        projections = {name: dataclasses.replace(p, weight=weights[name]) for name, p in projections.items()}
    return np.array(losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=HERE.parent / "examples" / "sine_wave.toml")
    parser.add_argument("--passes", type=int, default=30)
    parser.add_argument("--eta", type=float, default=None, help="learning rate (default: the config's)")
    parser.add_argument("--history", type=int, default=128, help="rows of history on chip")
    args = parser.parse_args()
    chip = on_chip_network(load_config(args.config))
    if args.eta is not None:
        chip = dataclasses.replace(chip, rule=dataclasses.replace(chip.rule, eta=args.eta))
    curves = {}
    for name, backend in ARITHMETIC.items():
        start = time.perf_counter()
        curves[name] = train(chip, backend, args.passes, args.history)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    names = list(curves)
    print(f"\nsine wave on chip, eta {chip.rule.eta:g}, loss 0.5 sum (y - y*)^2 per pass")
    print("| pass | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for k in range(args.passes):
        if k % 5 == 0 or k == args.passes - 1:
            print(f"| {k + 1} | " + " | ".join(f"{curves[n][k]:.2f}" for n in names) + " |")
    last = max(1, args.passes // 5)
    print(f"| mean of the last {last} | " + " | ".join(f"{curves[n][-last:].mean():.2f}" for n in names) + " |")
    _plot(curves, HERE / "results" / "hls_precision.png")


def _plot(curves: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, loss in curves.items():
        ax.plot(np.arange(1, loss.size + 1), loss, label=name)
    ax.set_xlabel("pass (one 1 s sample from rest)")
    ax.set_ylabel("loss 0.5 sum (y - y*)^2")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
