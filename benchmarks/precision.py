"""float32 learning state next to float64 (issue 9): the same training run in both precisions.

    python benchmarks/precision.py [--config examples/sine_wave.toml] [--iterations 100] [--threads 1]

Runs `eprop-gen train CONFIG` twice, with EPROP_GEN_LEARNING_PRECISION=float64 and =float32
(eprop_gen/precision.py: eligibility, traces, gradients, plastic weights, history and block
products stored in float32; neuron dynamics and arithmetic in float64), prints the loss of both per
10 iterations, where they part and their final means, and draws both curves into
benchmarks/results/precision.png.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def train(config: Path, precision: str, iterations: int, threads: int, out: Path) -> list[float]:
    env = {**os.environ, "EPROP_GEN_LEARNING_PRECISION": precision}
    subprocess.run([sys.executable, "-m", "eprop_gen.cli", "train", str(config), "--out", str(out),
                    "--iterations", str(iterations), "--threads", str(threads), "--quiet"],
                   env=env, check=True, cwd=ROOT)
    return [row["loss"] for row in json.loads((out / "metrics.json").read_text())["iterations"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "sine_wave.toml")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        losses = {p: train(args.config, p, args.iterations, args.threads, Path(folder) / p)
                  for p in ("float64", "float32")}
    print(f"{'iteration':>9s} {'float64':>12s} {'float32':>12s}")
    for k in range(0, args.iterations, 10):
        print(f"{k + 1:9d} {losses['float64'][k]:12.5g} {losses['float32'][k]:12.5g}")
    apart = next((k + 1 for k, (a, b) in enumerate(zip(losses["float64"], losses["float32"]))
                  if abs(a - b) > 0.01 * abs(a)), None)
    print(f"the curves first differ by more than 1 % at iteration {apart}; mean loss of the last 10 "
          f"iterations: float64 {sum(losses['float64'][-10:]) / 10:.4g}, float32 {sum(losses['float32'][-10:]) / 10:.4g}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for precision, loss in losses.items():
        ax.plot(range(1, len(loss) + 1), loss, label=f"learning state {precision}")
    ax.set(xlabel="iteration", ylabel="loss", title=f"{args.config.name}: float32 vs float64", yscale="log")
    ax.legend()
    fig.tight_layout()
    out = HERE / "results" / "precision.png"
    fig.savefig(out, dpi=120)
    print(f"written {out}")


if __name__ == "__main__":
    main()
