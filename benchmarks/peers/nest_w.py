"""Network W (issue 9) in NEST 3.10, from an input file of make_network.py; prints one JSON line.

    python benchmarks/peers/nest_w.py network.npz [--threads T] [--learning]

Without --learning: iaf_psc_delta recurrent neurons, static synapses, 2 readouts = iaf_psc_delta with
an unreachable threshold (leaky integrators, tau_out). With --learning: NEST's event-driven e-prop,
wired as NEST's example eprop_supervised_regression_sine-waves.py: eprop_iaf recurrent neurons,
eprop_readout readouts, eprop_synapse (gradient descent, eta from the file, optimize_each_step False)
on input, recurrent and readout synapses, eprop_learning_signal_connection readout -> recurrent with
weights B, a step_rate_generator target (the file's `targets` per step, else the constant `target`) and
learning window (the file's `learning_window`, else 1); c_reg, f_target, kappa_reg, flush_ms from the file
where given (the N-MNIST network). Only the mean squared error (NEST 3.10's eprop_readout has no other loss).
Memory per synapse: common.memory_fields, from just before the first network synapse is connected. Inputs: one
spike_generator per input -> parrot_neuron -> network (the generator fires one delay early so the
parrot spikes at the file's time). Every synapse has delay `delay_steps` · dt (the file's, else dt;
learning needs dt): input, recurrent, readout, generator -> parrot and neuron -> spike_recorder, so that
NEST's min_delay is the network's; where generators would have to fire before dt, the whole run is
`time_offset` ms late. Timed: the measured nest.Simulate(t_ms) only, after an untimed
nest.Simulate(t_warmup_ms) (which also pays NEST's connection-infrastructure preparation).
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import numpy as np  # noqa: E402


def build(nest, net: dict, threads: int, learning: bool):
    dt, n, n_in, n_out = net["dt"], net["n"], net["n_in"], net["n_out"]
    if learning:
        common.refuse_learning_delay(net, "nest_w.py", "NEST 3.10's eprop_synapse needs delay = dt")
    delay = common.delay_steps(net) * dt                             # of the input, recurrent and readout synapses
    offset = time_offset(net)
    if learning and net.get("loss", "mean_squared_error") != "mean_squared_error":
        raise SystemExit(f"nest_w.py: loss {net['loss']!r}: NEST 3.10's eprop_readout has only the mean squared error")
    nest.ResetKernel()
    nest.verbosity = nest.VerbosityLevel.ERROR
    nest.SetKernelStatus({"resolution": dt, "local_num_threads": threads, "print_time": False})

    gens = nest.Create("spike_generator", n_in)
    times, senders = net["input_times"], net["input_senders"]
    order = np.argsort(senders, kind="stable")
    bounds = np.searchsorted(senders[order], np.arange(n_in + 1))
    gens.set([{"spike_times": times[order[bounds[i]:bounds[i + 1]]] + offset - delay} for i in range(n_in)])
    parrots = nest.Create("parrot_neuron", n_in)
    # generator -> parrot with the network's delay too: NEST's min_delay (its communication interval) is then
    # the network's, as eprop-gen's delivery interval
    nest.Connect(gens, parrots, "one_to_one", {"synapse_model": "static_synapse", "delay": delay})

    lif = {"tau_m": net["tau_m"], "E_L": net["E_L"], "V_m": net["E_L"], "V_th": net["V_th"],
           "t_ref": net["t_ref"], "C_m": net["C_m"], "I_e": 0.0}
    if learning:
        cutoff = net["cutoff_ms"]
        pop = nest.Create("eprop_iaf", n, {**lif, "c_reg": net.get("c_reg", 0.0), "f_target": net.get("f_target", 10.0),
                                           "kappa": net["kappa"], "kappa_reg": net.get("kappa_reg", net["kappa"]),
                                           "surrogate_gradient_function": "piecewise_linear",
                                           "surrogate_gradient_height": net["surrogate_height"],
                                           "surrogate_gradient_width": net["surrogate_width"],
                                           "eprop_isi_trace_cutoff": cutoff})
        if np.isfinite(net.get("flush_ms", np.inf)):
            pop.set({"flush_event_send_interval": net["flush_ms"]})
        out = nest.Create("eprop_readout", n_out, {"C_m": net["C_m"], "E_L": 0.0, "V_m": 0.0, "I_e": 0.0,
                                                   "tau_m": net["tau_out"], "eprop_isi_trace_cutoff": cutoff})
        nest.SetDefaults("eprop_synapse", {"optimizer": {
            "type": "gradient_descent", "batch_size": 1, "eta": net["eta"], "optimize_each_step": False,
            "Wmin": -100.0, "Wmax": 100.0}})
        syn = "eprop_synapse"
    else:
        pop = nest.Create("iaf_psc_delta", n, {**lif, "V_reset": net["V_reset"]})
        out = nest.Create("iaf_psc_delta", n_out, {"tau_m": net["tau_out"], "E_L": 0.0, "V_m": 0.0, "V_reset": 0.0,
                                                   "V_th": 1e9, "t_ref": 0.0, "C_m": net["C_m"]})
        syn = "static_synapse"

    pre_in, post_rec, post_out = np.asarray(parrots.tolist()), np.asarray(pop.tolist()), np.asarray(out.tolist())
    rss_before = common.rss_mb()
    for pre_ids, post_ids, key in ((pre_in, post_rec, "in"), (post_rec, post_rec, "rec"), (post_rec, post_out, "out")):
        sources, targets = net[key + "_sources"], net[key + "_targets"]
        weights = net[key + "_weights"].astype(np.float64)
        nest.Connect(pre_ids[sources], post_ids[targets], "one_to_one",
                     {"synapse_model": syn, "weight": weights, "delay": np.full(len(weights), delay)})

    if learning:
        B = net["B"].astype(np.float64)                                # (n, n_out): readout k -> neuron j
        k_idx, j_idx = np.meshgrid(np.arange(n_out), np.arange(n), indexing="xy")
        nest.Connect(post_out[k_idx.ravel()], post_rec[j_idx.ravel()], "one_to_one",
                     {"synapse_model": "eprop_learning_signal_connection", "weight": B[j_idx.ravel(), k_idx.ravel()],
                      "delay": np.full(n * n_out, dt)})
        receptors = out[0].get("receptor_types")
        targets = net["targets"] if "targets" in net else np.full((1, n_out), float(net["target"]))
        target = nest.Create("step_rate_generator", n_out)
        target.set([step_rate(targets[:, m], dt) for m in range(n_out)])
        window = net["learning_window"] if "learning_window" in net else np.ones(1)
        learning_window = nest.Create("step_rate_generator", 1, step_rate(window, dt))
        nest.Connect(target, out, "one_to_one", {"synapse_model": "rate_connection_delayed", "delay": dt,
                                                 "receptor_type": receptors["target_signal"]})
        nest.Connect(learning_window, out, "all_to_all", {"synapse_model": "rate_connection_delayed", "delay": dt,
                                                          "receptor_type": receptors["eprop_learning_window"]})

    t0, t1 = common.window(net)
    recorder = nest.Create("spike_recorder", {"start": t0 + offset, "stop": t1 + offset})
    nest.Connect(pop, recorder, syn_spec={"delay": delay})       # the default 1 ms would be NEST's min_delay
    return pop, recorder, rss_before


def time_offset(net: dict) -> float:
    """ms by which NEST runs the file's network late: a parrot spikes at the file's time + offset, its
    generator fires delay_steps · dt before, and the generators' first spike may be at dt at the earliest.
    0 with delays of one step (the inputs start at 2 dt); before the first input the neurons rest at E_L,
    so the offset changes nothing but NEST's clock (the runner subtracts it again)."""
    dt = net["dt"]
    first = float(np.min(net["input_times"])) if len(net["input_times"]) else np.inf
    return max(0.0, (common.delay_steps(net) + 1) * dt - first)


def step_rate(values: np.ndarray, dt: float) -> dict:
    """step_rate_generator parameters for a per-step array (row k from step k on; the last row after it):
    the values where they change, the first at time dt (NEST's generators start there)."""
    values = np.asarray(values, dtype=np.float64)
    changes = np.r_[0, np.flatnonzero(np.diff(values)) + 1]
    return {"amplitude_times": (changes + 1) * dt, "amplitude_values": values[changes]}


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    net = common.load(args.network)
    os.environ.setdefault("PYNEST_QUIET", "1")          # no banner: stdout carries only the JSON line
    import nest
    walls, warmups, builds, memory = [], [], [], None
    for _ in range(max(1, args.repeat)):       # each repetition: fresh kernel, same network, same input
        start = time.perf_counter()
        pop, recorder, rss_before = build(nest, net, args.threads, args.learning)
        builds.append(time.perf_counter() - start)
        start = time.perf_counter()
        nest.Simulate(net["t_warmup_ms"] + time_offset(net))
        warmups.append(time.perf_counter() - start)
        start = time.perf_counter()
        nest.Simulate(net["t_ms"])
        walls.append(time.perf_counter() - start)
        memory = memory or common.memory_fields(rss_before, common.synapse_count(net))   # first repetition's
    wall, build_s, warmup_s = min(walls), min(builds), min(warmups)

    events = recorder.get("events")
    senders = np.asarray(events["senders"]) - pop[0].global_id
    times = np.asarray(events["times"]) - time_offset(net)
    syn_events = common.synaptic_events(net, senders)
    sim_s = net["t_ms"] * 1e-3
    common.emit({
        "simulator": "nest", "version": nest.__version__, "n": net["n"], "threads": args.threads,
        "engine": "event-driven" if args.learning else "static", "k": net["k"],
        "learning": args.learning, "wall_s_per_sim_s": round(wall / sim_s, 5), "build_s": round(build_s, 3),
        **memory, **common.activity_stats(net, times, senders),
        "syn_events_per_s": round(syn_events / wall, 1), "syn_events": syn_events, "warmup_s": round(warmup_s, 3),
        "wall_s_per_sim_s_all": [round(w / sim_s, 5) for w in walls],
        "timed": "nest.Simulate(t_ms) after an untimed nest.Simulate(t_warmup_ms)",
    })


if __name__ == "__main__":
    main()
