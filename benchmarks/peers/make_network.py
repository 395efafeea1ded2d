"""Write the input file of network W (issue 9) that every benchmark runner reads: ``network.npz``.

    python benchmarks/peers/make_network.py --n 1000 --seed 1 --out /tmp/w1k.npz
    python benchmarks/peers/make_network.py --n 1000 --k 300 --scale-rec-with-k --out /tmp/k300.npz   # K sweep
    python benchmarks/peers/make_network.py --n 1000 --in-mu 0.45 --out /tmp/fast.npz                # rate sweep
    python benchmarks/peers/make_network.py --n 1000 --delay-steps 10 --out /tmp/d10.npz            # delays 10 steps

numpy only. Everything random (input spike trains, recurrent connectivity, all weights, feedback
weights B) is drawn here from ``--seed``; the runners add no randomness of their own. The format is
documented in ``benchmarks/peers/README.md`` (section "Input file").
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1

# Network W of issue 9.
N_IN, N_OUT, K, RATE_IN_HZ = 100, 2, 100, 20.0
DT_MS, T_MS, T_WARMUP_MS = 1.0, 1000.0, 100.0
NEURON = {"tau_m": 10.0, "V_th": 15.0, "E_L": 0.0, "V_reset": 0.0, "t_ref": 2.0, "C_m": 250.0, "tau_out": 30.0}
LEARNING = {"eta": 1e-4, "cutoff_ms": 100.0, "kappa": 0.97, "surrogate_height": 0.3, "surrogate_width": 15.0,
            "target": 0.0}
# Only for eprop-gen's time-driven engine (W has no samples): update intervals as long as the event-driven
# replay's cutoff, errors counted in all of it (W's learning window is 1 everywhere).
TIME_DRIVEN = {"update_interval_ms": 100.0, "learning_window_ms": 100.0}
# Weights (mV jumps of the delta synapses), tuned with NEST 3.10's iaf_psc_delta for ~6.5 Hz, asynchronous
# (README, "Weights"): heterogeneous input weights decorrelate the neurons' shared input; recurrent
# weights of zero mean keep the recurrent feedback from synchronising the network.
WEIGHTS = {"in_mu": 0.3, "in_sigma": 1.4, "rec_mu": -0.12, "rec_sigma": 0.5, "out_sigma_sqrt_n": 1.0,
           "B_sigma_sqrt_n": 1.0}


def poisson_inputs(n_in: int, rate_hz: float, t_total_ms: float, dt: float, rng: np.random.Generator):
    """Bernoulli spikes per step (p = rate·dt) on the grid, times in [2·dt, t_total] (ms), sorted by time."""
    steps = np.arange(2, int(round(t_total_ms / dt)) + 1)
    spikes = rng.random((len(steps), n_in)) < rate_hz * dt * 1e-3
    step_idx, senders = np.nonzero(spikes)                 # row-major: sorted by time, then sender
    return (steps[step_idx] * dt).astype(np.float64), senders.astype(np.int32)


def fixed_indegree(n: int, k: int, rng: np.random.Generator):
    """k distinct sources per target drawn uniformly from the other n - 1 neurons (no autapses, no multapses)."""
    if k > n - 1:
        raise ValueError(f"in-degree {k} needs n > {k}, got n = {n}")
    if 2 * k > n - 1:               # dense: redrawing duplicates would take long; a random subset per row
        src = np.sort(np.argsort(rng.random((n, n - 1)), axis=1)[:, :k], axis=1)
    else:
        src = rng.integers(0, n - 1, size=(n, k))
        while True:                                        # redraw duplicates within a row until none is left
            src.sort(axis=1)
            dup = np.zeros_like(src, dtype=bool)
            dup[:, 1:] = src[:, 1:] == src[:, :-1]
            if not dup.any():
                break
            src[dup] = rng.integers(0, n - 1, size=int(dup.sum()))
    targets = np.arange(n, dtype=np.int64)[:, None]
    src = src + (src >= targets)                           # skip the target itself
    return src.ravel().astype(np.int32), np.repeat(np.arange(n, dtype=np.int32), k)


def weights_for_indegree(k: int) -> dict:
    """Recurrent weight statistics for in-degree k that keep each neuron's recurrent input as at K = 100:
    mean scaled by 100/k (same mean drive), standard deviation by sqrt(100/k) (same variance), so that an
    in-degree sweep changes the work per spike, not the network's activity."""
    return {"rec_mu": WEIGHTS["rec_mu"] * K / k, "rec_sigma": WEIGHTS["rec_sigma"] * np.sqrt(K / k)}


def make_network(n: int, seed: int, weights: dict | None = None, t_ms: float = T_MS,
                 t_warmup_ms: float = T_WARMUP_MS, k: int = K, rate_in_hz: float = RATE_IN_HZ,
                 delay_steps: int = 1) -> dict:
    """Network W; k (recurrent in-degree) and rate_in_hz (of the 100 inputs) for the sweeps of run.py;
    delay_steps: the delay of every input, recurrent and readout synapse in steps of dt (W: 1). The
    random draws do not depend on it: the same seed gives the same network with other delays."""
    if delay_steps < 1:
        raise ValueError(f"delay_steps must be >= 1, got {delay_steps}")
    w = {**WEIGHTS, **(weights or {})}
    rng = np.random.default_rng(seed)
    input_times, input_senders = poisson_inputs(N_IN, rate_in_hz, t_warmup_ms + t_ms, DT_MS, rng)
    in_sources = np.repeat(np.arange(N_IN, dtype=np.int32), n)
    in_targets = np.tile(np.arange(n, dtype=np.int32), N_IN)
    # heterogeneous input weights, every neuron's mean exactly in_mu (equal mean drive, different fluctuations)
    in_weights = rng.normal(0.0, w["in_sigma"], size=(N_IN, n))
    in_weights = (in_weights - in_weights.mean(axis=0) + w["in_mu"]).ravel().astype(np.float32)
    rec_sources, rec_targets = fixed_indegree(n, k, rng)
    rec_weights = rng.normal(w["rec_mu"], w["rec_sigma"], size=len(rec_sources)).astype(np.float32)
    out_sources = np.repeat(np.arange(n, dtype=np.int32), N_OUT)
    out_targets = np.tile(np.arange(N_OUT, dtype=np.int32), n)
    out_weights = rng.normal(0.0, w["out_sigma_sqrt_n"] / np.sqrt(n), size=n * N_OUT).astype(np.float32)
    B = rng.normal(0.0, w["B_sigma_sqrt_n"] / np.sqrt(n), size=(n, N_OUT)).astype(np.float32)
    scalars = {"format_version": FORMAT_VERSION, "workload": "W", "seed": seed, "n": n, "n_in": N_IN,
               "n_out": N_OUT, "k": k, "rate_in_hz": rate_in_hz, "dt": DT_MS, "t_ms": t_ms,
               "t_warmup_ms": t_warmup_ms, "delay_steps": int(delay_steps), **NEURON, **LEARNING, **TIME_DRIVEN}
    arrays = {"input_times": input_times, "input_senders": input_senders,
              "in_sources": in_sources, "in_targets": in_targets, "in_weights": in_weights,
              "rec_sources": rec_sources, "rec_targets": rec_targets, "rec_weights": rec_weights,
              "out_sources": out_sources, "out_targets": out_targets, "out_weights": out_weights, "B": B}
    return {**{key: np.asarray(value) for key, value in scalars.items()}, **arrays}


def load(path) -> dict:
    """The file as a dict: scalars as Python numbers, arrays as numpy arrays."""
    with np.load(path) as f:
        return {key: (f[key].item() if f[key].ndim == 0 else f[key]) for key in f.files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True, help="number of recurrent neurons")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True, help="output file (.npz)")
    parser.add_argument("--t-ms", type=float, default=T_MS, help="measured simulated time (ms)")
    parser.add_argument("--t-warmup-ms", type=float, default=T_WARMUP_MS, help="untimed warm-up before it (ms)")
    parser.add_argument("--k", type=int, default=K, help="recurrent in-degree")
    parser.add_argument("--rate-in-hz", type=float, default=RATE_IN_HZ, help="rate of each of the 100 inputs")
    parser.add_argument("--delay-steps", type=int, default=1,
                        help="delay of every input, recurrent and readout synapse in steps of dt (default 1)")
    parser.add_argument("--scale-rec-with-k", action="store_true",
                        help="recurrent weights for in-degree k as weights_for_indegree(k) (same input statistics)")
    for key, value in WEIGHTS.items():          # for tuning only; the defaults are the benchmark's network
        parser.add_argument("--" + key.replace("_", "-"), type=float, default=value, help=argparse.SUPPRESS)
    args = parser.parse_args()
    weights = {key: getattr(args, key) for key in WEIGHTS}
    if args.scale_rec_with_k:
        weights.update(weights_for_indegree(args.k))
    data = make_network(args.n, args.seed, weights, args.t_ms, args.t_warmup_ms, args.k, args.rate_in_hz,
                        args.delay_steps)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as f:            # np.savez would append .npz to a name without it
        np.savez(f, **data)
    n_syn = len(data["in_sources"]) + len(data["rec_sources"]) + len(data["out_sources"])
    print(f"{args.out}: n={args.n} k={args.k} delay={args.delay_steps} steps seed={args.seed} synapses={n_syn} "
          f"input spikes={len(data['input_times'])}")


if __name__ == "__main__":
    main()
