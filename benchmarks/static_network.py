"""Benchmark: network W of the performance issue without learning, eprop-gen vs NEST 3.10, same run.

N LIF neurons with delta synapses (tau_m 10 ms, threshold 15 mV above rest, t_ref 2 ms), fixed
in-degree K = 100 recurrent synapses, 100 Poisson inputs at 20 Hz connected all-to-all, 2 leaky
readouts from all recurrent neurons, all delays one step, dt = 1 ms, 1 s simulated. Both simulators
get the identical connectivity (drawn by eprop-gen, passed to NEST as explicit arrays) and the
identical input spikes. Prints one table: wall seconds per simulated second and peak RSS growth.

    python benchmarks/static_network.py [--sizes 1000 10000] [--threads 1 2] [--no-nest]

(Brian2 2.9 does not import with numpy >= 2.4; it joins this table with the performance issue.)
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import numpy as np

DT, T_MS, K, N_IN, RATE_IN, W_IN, W_REC = 1.0, 1000.0, 100, 100, 20.0, 0.55, 0.2


def network_arrays(n: int, seed: int):
    import eprop_gen as eg
    from eprop_gen.tasks.poisson import poisson_trains
    times, senders = poisson_trains(N_IN, RATE_IN, T_MS, DT, np.random.default_rng(seed))
    model = eg.compile_model(eg.models.path("iaf_psc_delta"))
    net = eg.Network(dt=DT, threads=1, seed=seed)
    net.add_spike_source(N_IN, times=times, senders=senders)
    pop = net.add_population(model, n)
    proj = net.connect(pop, pop, port="spikes", rule=eg.FixedIndegree(K, allow_autapses=False), weight=W_REC)
    return times, senders, proj.sources, proj.targets


def run_eprop_gen(n: int, threads: int, arrays) -> tuple[float, int]:
    import eprop_gen as eg
    times, senders, sources, targets = arrays
    model = eg.compile_model(eg.models.path("iaf_psc_delta"))
    readout = eg.compile_model(eg.models.path("leaky_readout"))
    net = eg.Network(dt=DT, threads=threads, seed=1)
    inp = net.add_spike_source(N_IN, times=times, senders=senders)
    pop = net.add_population(model, n, params=_lif_params())
    out = net.add_population(readout, 2, params={"tau_m": 30.0})
    all_to_all = eg.Explicit(np.repeat(np.arange(N_IN), n), np.tile(np.arange(n), N_IN))
    net.connect(inp, pop, port="spikes", rule=all_to_all, weight=W_IN)
    net.connect(pop, pop, port="spikes", rule=eg.Explicit(sources, targets), weight=W_REC)
    net.connect(pop, out, port="spikes", rule=eg.Explicit(np.repeat(np.arange(n), 2), np.tile([0, 1], n)), weight=0.01)
    start = time.perf_counter()
    net.simulate(T_MS)
    wall = time.perf_counter() - start
    return wall, len(net.spikes(pop)[0])


def run_nest(n: int, threads: int, arrays) -> tuple[float, int]:
    import nest
    times, senders, sources, targets = arrays
    nest.ResetKernel()
    nest.set_verbosity("M_ERROR")
    nest.SetKernelStatus({"resolution": DT, "local_num_threads": threads, "print_time": False})
    gens = nest.Create("spike_generator", N_IN)
    for i in range(N_IN):
        gens[i].spike_times = np.sort(times[senders == i]).tolist()
    parrots = nest.Create("parrot_neuron", N_IN)
    pop = nest.Create("iaf_psc_delta", n, params=_lif_params())
    out = nest.Create("iaf_psc_delta", 2, params={"tau_m": 30.0, "V_th": 1e9, "E_L": 0.0, "V_m": 0.0,
                                                   "V_reset": 0.0, "t_ref": 0.0})
    nest.Connect(gens, parrots, "one_to_one", {"delay": DT})
    nest.Connect(parrots, pop, "all_to_all", {"weight": W_IN, "delay": DT})
    ids = np.asarray(pop.tolist())
    nest.Connect(ids[sources], ids[targets], "one_to_one",
                 {"weight": np.full(len(sources), W_REC), "delay": np.full(len(sources), DT)})
    nest.Connect(pop, out, "all_to_all", {"weight": 0.01, "delay": DT})
    rec = nest.Create("spike_recorder")
    nest.Connect(pop, rec)
    start = time.perf_counter()
    nest.Simulate(T_MS)
    wall = time.perf_counter() - start
    return wall, rec.n_events


def _lif_params():
    return {"tau_m": 10.0, "E_L": 0.0, "V_reset": 0.0, "V_th": 15.0, "t_ref": 2.0, "C_m": 250.0}


def _child(args) -> None:
    """One measurement in a fresh process, so peak RSS belongs to that simulator alone."""
    simulator, n, threads = args.child, args.n, args.t
    arrays = network_arrays(n, seed=1)
    if simulator == "eprop-gen":      # load the engine library before timing, as NEST loads its own at import
        from eprop_gen.engine import native
        native.engine_library()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall, spikes = (run_eprop_gen if simulator == "eprop-gen" else run_nest)(n, threads, arrays)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{wall} {spikes} {(peak - base) / 1024:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-nest", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--t", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)
    simulators = ["eprop-gen"] + ([] if args.no_nest else ["NEST 3.10"])
    print(f"{'simulator':12s} {'N':>7s} {'threads':>7s} {'s per sim. s':>13s} {'rate Hz':>8s} {'RSS growth MB':>14s}")
    for n in args.sizes:
        for threads in args.threads:
            for sim in simulators:
                key = "eprop-gen" if sim == "eprop-gen" else "nest"
                done = subprocess.run([sys.executable, __file__, "--child", key, "--n", str(n), "--t", str(threads)],
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{sim:12s} {n:7d} {threads:7d}  failed: {done.stderr.strip().splitlines()[-1:]}")
                    continue
                wall, spikes, rss = done.stdout.split()[-3:]
                rate = float(spikes) / n / (T_MS * 1e-3)
                print(f"{sim:12s} {n:7d} {threads:7d} {float(wall) / (T_MS * 1e-3):13.3f} {rate:8.1f} {float(rss):14.0f}")


if __name__ == "__main__":
    main()
