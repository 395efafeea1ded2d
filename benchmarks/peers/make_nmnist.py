"""Input file of the N-MNIST workload: the network of NEST 3.10's tutorial
eprop_supervised_classification_neuromorphic_mnist.py on synthetic Poisson input.

    python benchmarks/peers/make_nmnist.py --samples 5 --rate-in-hz 12 --seed 1 --out /tmp/nmnist.npz

Same format as make_network.py (benchmarks/peers/README.md, "Input file") plus the optional keys of
the N-MNIST network (c_reg, f_target, kappa_reg, flush_ms, loss, targets, learning_window); numpy only.

The network, as the tutorial builds it: 1196 inputs (2 x 34 x 34 pixels without NEST's 1116 blocklisted
ones), 150 eprop_iaf neurons, 10 eprop_readout readouts; input -> neuron weights N(0, 1)/sqrt(n_in) on a
random 25 % of the pairs, recurrent N(0, 1)/sqrt(150) on 1 % (no autapses), readout Glorot-uniform x 0.01
on all pairs, feedback B = N(0, 1)/0.01; samples of 300 ms, one-hot targets, errors in the last 10 ms of
each sample, mean squared error (the tutorial's loss; NEST 3.10's eprop_readout has no other), gradient
descent with eta = 5e-7 (5e-3 x (1 - kappa)^2).

Input: instead of the data set, Poisson spikes at `rate_in_hz` on every input for the whole run (the
sample's digit only decides the target). The warm-up is one sample, the measured part `samples` samples.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from make_network import DT_MS, FORMAT_VERSION, poisson_inputs

N_IN = 2 * 34 * 34 - 1116          # NEST's active pixels (eprop_gen.tasks.nmnist.input_layout())
N_REC, N_OUT = 150, 10
SAMPLE_MS, WINDOW_MS = 300.0, 10.0
DENSITY = {"in": 0.25, "rec": 0.01}
# An N-MNIST sample holds a few thousand events in ~300 ms (three saccades); 12 Hz on 1196 inputs is
# ~4300 spikes per sample. An estimate, not a measurement: the data set is not on this machine.
RATE_IN_HZ = 12.0
KAPPA = 0.99
NEURON = {"tau_m": 30.0, "V_th": 0.6, "E_L": 0.0, "V_reset": 0.0, "t_ref": 0.0, "C_m": 1.0, "tau_out": 100.0}
LEARNING = {"eta": 5e-3 * (1 - KAPPA) ** 2, "cutoff_ms": 100.0, "kappa": KAPPA, "kappa_reg": KAPPA,
            "surrogate_height": 0.5, "surrogate_width": 1.0 / 1.7, "c_reg": 2.0 / SAMPLE_MS / (1 - KAPPA) ** 2,
            "f_target": 10.0, "flush_ms": SAMPLE_MS, "target": 0.0, "loss": "mean_squared_error",
            "update_interval_ms": SAMPLE_MS, "learning_window_ms": WINDOW_MS}


def sparse(n_source: int, n_target: int, density: float, scale: float, rng: np.random.Generator,
           autapses: bool = True):
    """(sources, targets, weights) of a random `density` of all pairs, weights N(0, 1) * scale,
    sorted by target then source."""
    weights = rng.normal(size=(n_target, n_source)) * scale
    mask = rng.random((n_target, n_source)) < density
    if not autapses:
        np.fill_diagonal(mask, False)
    targets, sources = np.nonzero(mask)
    return sources.astype(np.int32), targets.astype(np.int32), weights[targets, sources].astype(np.float32)


def per_step_targets(labels: np.ndarray, steps_per_sample: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(targets (steps, N_OUT), learning_window (steps,)): sample k's one-hot label in its steps, the
    window 1 in the last WINDOW_MS of each sample."""
    one_hot = np.repeat(np.eye(N_OUT, dtype=np.float32)[labels], steps_per_sample, axis=0)[:steps]
    window_steps = int(round(WINDOW_MS / DT_MS))
    in_sample = np.arange(steps) % steps_per_sample
    return one_hot, (in_sample >= steps_per_sample - window_steps).astype(np.float32)


def make_nmnist(samples: int, seed: int, rate_in_hz: float = RATE_IN_HZ) -> dict:
    rng = np.random.default_rng(seed)
    t_warmup_ms, t_ms = SAMPLE_MS, samples * SAMPLE_MS
    input_times, input_senders = poisson_inputs(N_IN, rate_in_hz, t_warmup_ms + t_ms, DT_MS, rng)
    in_sources, in_targets, in_weights = sparse(N_IN, N_REC, DENSITY["in"], 1 / np.sqrt(N_IN), rng)
    rec_sources, rec_targets, rec_weights = sparse(N_REC, N_REC, DENSITY["rec"], 1 / np.sqrt(N_REC), rng,
                                                   autapses=False)
    limit = np.sqrt(3.0 / ((N_REC + N_OUT) / 2.0))                   # Glorot uniform
    out_sources = np.repeat(np.arange(N_REC, dtype=np.int32), N_OUT)
    out_targets = np.tile(np.arange(N_OUT, dtype=np.int32), N_REC)
    out_weights = (rng.uniform(-limit, limit, size=N_REC * N_OUT) * (1 - KAPPA)).astype(np.float32)
    B = (rng.normal(size=(N_REC, N_OUT)) / (1 - KAPPA)).astype(np.float32)
    steps_per_sample = int(round(SAMPLE_MS / DT_MS))
    steps = (samples + 1) * steps_per_sample + 1
    targets, window = per_step_targets(rng.integers(0, N_OUT, size=samples + 2), steps_per_sample, steps)
    scalars = {"format_version": FORMAT_VERSION, "workload": "nmnist", "seed": seed, "n": N_REC, "n_in": N_IN,
               "n_out": N_OUT, "k": -1, "rate_in_hz": rate_in_hz, "dt": DT_MS, "t_ms": t_ms,
               "t_warmup_ms": t_warmup_ms, **NEURON, **LEARNING}
    arrays = {"input_times": input_times, "input_senders": input_senders,
              "in_sources": in_sources, "in_targets": in_targets, "in_weights": in_weights,
              "rec_sources": rec_sources, "rec_targets": rec_targets, "rec_weights": rec_weights,
              "out_sources": out_sources, "out_targets": out_targets, "out_weights": out_weights, "B": B,
              "targets": targets, "learning_window": window}
    return {**{key: np.asarray(value) for key, value in scalars.items()}, **arrays}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5, help="measured samples of 300 ms (after one warm-up sample)")
    parser.add_argument("--rate-in-hz", type=float, default=RATE_IN_HZ, help="Poisson rate of every input")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True, help="output file (.npz)")
    args = parser.parse_args()
    data = make_nmnist(args.samples, args.seed, args.rate_in_hz)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as f:
        np.savez(f, **data)
    n_syn = len(data["in_sources"]) + len(data["rec_sources"]) + len(data["out_sources"])
    print(f"{args.out}: N-MNIST network, synapses={n_syn} input spikes={len(data['input_times'])}")


if __name__ == "__main__":
    main()
