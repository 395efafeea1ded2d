"""eprop-gen runner of network W (the same input file and JSON line as nest_w.py / brian2_w.py).

    python benchmarks/peers/eprop_gen_w.py network.npz [--threads T] [--learning] [--repeat R]

Without learning: iaf_psc_delta neurons and leaky_readout readouts, static synapses. With --learning:
eprop_iaf and eprop_readout with event-driven e-prop (gradient descent, window mode
(optimize_each_step = False, as the NEST runner), the file's eta and cutoff), learning signals through B,
target 0. Timed: Network.simulate(t_ms) after an untimed simulate(t_warmup_ms); compilation (cached)
and network construction are `build_s`.
"""
from __future__ import annotations

import time

import numpy as np

import common


def build(net: dict, threads: int, learning: bool):
    import eprop_gen as eg
    if learning:
        rec_model = eg.compile_model(eg.models.path("eprop_iaf"))
        out_model = eg.compile_model(eg.models.path("eprop_readout"))
        rec_params = dict(C_m=net["C_m"], E_L=net["E_L"], V_th=net["V_th"], tau_m=net["tau_m"], t_ref=net["t_ref"],
                          surrogate_gradient_height=net["surrogate_height"],
                          surrogate_gradient_width=net["surrogate_width"], kappa=net["kappa"],
                          eprop_isi_trace_cutoff=net["cutoff_ms"])
        out_params = dict(C_m=net["C_m"], tau_m=net["tau_out"], eprop_isi_trace_cutoff=net["cutoff_ms"])
        plasticity = eg.gradient_descent(eta=net["eta"], optimize_each_step=False)
    else:
        rec_model = eg.compile_model(eg.models.path("iaf_psc_delta"))
        out_model = eg.compile_model(eg.models.path("leaky_readout"))
        rec_params = dict(tau_m=net["tau_m"], t_ref=net["t_ref"], V_th=net["V_th"], E_L=net["E_L"],
                          V_reset=net["V_reset"])
        rec_params = {k: v for k, v in rec_params.items() if k in rec_model.params}
        out_params = dict(tau_m=net["tau_out"])
        plasticity = None
    sim = eg.Network(dt=net["dt"], threads=threads, seed=int(net["seed"]))
    inputs = sim.add_spike_source(int(net["n_in"]), times=net["input_times"], senders=net["input_senders"])
    rec = sim.add_population(rec_model, int(net["n"]), params=rec_params)
    out = sim.add_population(out_model, int(net["n_out"]), params=out_params)
    for name, source, target in (("in", inputs, rec), ("rec", rec, rec), ("out", rec, out)):
        rule = eg.Explicit(net[f"{name}_sources"], net[f"{name}_targets"], weights=net[f"{name}_weights"].astype(float))
        sim.connect(source, target, "spikes", rule, plasticity=plasticity)
    if learning:
        sim.connect_feedback(out, rec, net["B"].astype(float))
        sim.add_target(out, np.full(1, float(net["target"])))
    return sim, rec


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    net = common.load(args.network)
    walls, builds = [], []
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        sim, rec = build(net, args.threads, args.learning)
        builds.append(time.perf_counter() - start)
        sim.simulate(net["t_warmup_ms"])
        start = time.perf_counter()
        sim.simulate(net["t_ms"])
        walls.append(time.perf_counter() - start)
    wall = min(walls)
    t0, t1 = common.window(net)
    times, senders = sim.spikes(rec)
    keep = (times > t0) & (times <= t1)
    syn_events = common.synaptic_events(net, senders[keep])
    sim_s = net["t_ms"] * 1e-3
    common.emit({
        "simulator": "eprop-gen", "n": net["n"], "threads": args.threads, "learning": args.learning,
        "wall_s_per_sim_s": round(wall / sim_s, 5), "build_s": round(min(builds), 3),
        "peak_rss_mb": round(common.peak_rss_mb(), 1), **common.activity_stats(net, times[keep], senders[keep]),
        "syn_events_per_s": round(syn_events / wall, 1), "syn_events": syn_events,
        "wall_s_per_sim_s_all": [round(w / sim_s, 5) for w in walls], "history_steps": sim.history_steps,
        "timed": "Network.simulate(t_ms) after an untimed simulate(t_warmup_ms)",
    })


if __name__ == "__main__":
    main()
