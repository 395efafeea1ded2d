"""eprop-gen runner of network W / the N-MNIST network (the same input file and JSON line as nest_w.py / brian2_w.py).

    python benchmarks/peers/eprop_gen_w.py network.npz [--threads T] [--learning | --time-driven] [--repeat R]
    mpirun -n R python benchmarks/peers/eprop_gen_w.py network.npz ...      (one network across R ranks)

Without learning: iaf_psc_delta neurons and leaky_readout readouts, static synapses. With --learning:
eprop_iaf and eprop_readout with event-driven e-prop (gradient descent, window mode
(optimize_each_step = False, as the NEST runner), the file's eta and cutoff), learning signals through B,
the file's target(s) and learning window. With --time-driven: the time-driven engine (Bellec et al. 2020)
with eprop_iaf_bsshslm_2020 / eprop_readout_bsshslm_2020, update intervals and learning window from the
file (`update_interval_ms`, `learning_window_ms`), neurons not reset between intervals (W runs on
continuously), kappa as the event-driven run's (tau_m_readout = -dt / ln kappa).
Every synapse has the file's delay (`delay_steps`, else 1 step); without learning and with delays of
D > 1 steps the engine delivers (and under MPI exchanges) the spikes once per D steps (at most 64).
Timed: Network.simulate(t_ms) after an untimed simulate(t_warmup_ms); compilation (cached) and network
construction are `build_s`. Memory per synapse: common.memory_fields, measured from just before the first
connect (after a one-neuron network has loaded the engine and started its threads).

Under `mpirun -n R` (R > 1) every rank builds and simulates its share of the one network (eg.Network
takes MPI.COMM_WORLD); the ranks meet at a barrier before the timer starts, the wall time is the slowest
rank's, and rank 0 alone prints the JSON line, with what mpi_fields() gathers from every rank:
`ranks`, `comm_s` / `comm_share` (the slowest rank's seconds in the exchanges during the timed
simulate, and their share of the timed wall time), `bytes_per_step` (all ranks' bytes sent per timed
step), `exchanges_per_step` (the most exchanges of a rank per timed step: 1 when every step is
exchanged, 1/D in batches of D), `memory_per_rank` (each rank's Network.memory()),
`synapse_bytes_per_rank`. The memory fields then cover all ranks: `bytes_per_synapse` = the ranks'
summed resident growth per synapse of the whole network, `peak_rss_mb` = the largest rank's (each
rank's in `peak_rss_mb_per_rank`). One process: the same fields with ranks 1 and no communication.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))     # this checkout's eprop_gen, installed or not
import common  # noqa: E402

MODELS = {"static": ("iaf_psc_delta", "leaky_readout"), "event-driven": ("eprop_iaf", "eprop_readout"),
          "time-driven": ("eprop_iaf_bsshslm_2020", "eprop_readout_bsshslm_2020")}


def parameters(net: dict, mode: str) -> tuple[dict, dict]:
    """(recurrent, readout) parameters of the models of `mode` from the file."""
    if mode == "static":
        rec = dict(tau_m=net["tau_m"], t_ref=net["t_ref"], V_th=net["V_th"], E_L=net["E_L"], V_reset=net["V_reset"],
                   C_m=net["C_m"])
        return rec, dict(tau_m=net["tau_out"])
    rec = dict(C_m=net["C_m"], E_L=net["E_L"], V_th=net["V_th"], tau_m=net["tau_m"], t_ref=net["t_ref"],
               surrogate_gradient_height=net["surrogate_height"], surrogate_gradient_width=net["surrogate_width"],
               c_reg=net.get("c_reg", 0.0), f_target=net.get("f_target", 10.0),
               flush_event_send_interval=net.get("flush_ms", math.inf))
    out = dict(C_m=net["C_m"], E_L=0.0, tau_m=net["tau_out"])
    if mode == "event-driven":
        rec.update(kappa=net["kappa"], kappa_reg=net.get("kappa_reg", net["kappa"]),
                   eprop_isi_trace_cutoff=net["cutoff_ms"])
        out.update(eprop_isi_trace_cutoff=net["cutoff_ms"])
    else:
        rec.update(tau_m_readout=-net["dt"] / math.log(net["kappa"]))
    return rec, out


def schedule(eg, net: dict, mode: str):
    if mode != "time-driven":
        return None
    return eg.time_driven(update_interval=net["update_interval_ms"], learning_window=net["learning_window_ms"],
                          reset_neurons=False)


def build(net: dict, threads: int, mode: str):
    """The network of the file; returns (network, recurrent population, RSS in MB before the first synapse)."""
    import eprop_gen as eg
    rec_model, out_model = (eg.compile_model(eg.models.path(name)) for name in MODELS[mode])
    rec_params, out_params = parameters(net, mode)
    learning = schedule(eg, net, mode)
    warm = eg.Network(dt=net["dt"], threads=threads, learning=learning)   # loads the engine, starts the threads
    warm.add_population(rec_model, 1, params=rec_params)
    warm.simulate(net["dt"])
    del warm
    sim = eg.Network(dt=net["dt"], threads=threads, seed=int(net["seed"]), learning=learning)
    inputs = sim.add_spike_source(int(net["n_in"]), times=net["input_times"], senders=net["input_senders"])
    rec = sim.add_population(rec_model, int(net["n"]), params=rec_params)
    out = sim.add_population(out_model, int(net["n_out"]), params=out_params)
    rss_before = common.rss_mb()
    plasticity = None if mode == "static" else eg.gradient_descent(eta=net["eta"], optimize_each_step=False)
    for name, source, target in (("in", inputs, rec), ("rec", rec, rec), ("out", rec, out)):
        rule = eg.Explicit(net[f"{name}_sources"], net[f"{name}_targets"], weights=net[f"{name}_weights"].astype(float))
        sim.connect(source, target, "spikes", rule, delay=common.delay_steps(net), plasticity=plasticity)
    if mode != "static":
        sim.connect_feedback(out, rec, net["B"].astype(float))
        targets = net["targets"].astype(float) if "targets" in net else np.full(1, float(net["target"]))
        sim.add_target(out, targets, loss=net.get("loss", "mean_squared_error"))
        if "learning_window" in net and mode == "event-driven":    # time-driven: the schedule's window
            sim.add_learning_window(out, net["learning_window"].astype(float))
    return sim, rec, rss_before


def state_bytes(memory_per_rank: list[dict], synapses: int) -> dict:
    """What the network's arrays hold (Network.memory of every rank, summed), per synapse: the synapses'
    own state (connectivity + plastic state) and everything else that was counted (per neuron, per source)."""
    parts = {key: sum(m[key] for m in memory_per_rank) for key in memory_per_rank[0]}
    own = parts["connectivity"] + parts["synapse_state"]
    return {"synapse_bytes_per_synapse": round(own / synapses, 2),
            "shared_bytes_per_synapse": round((sum(parts.values()) - own) / synapses, 2),
            "memory_parts_mb": {k: round(v / 2 ** 20, 2) for k, v in parts.items()}}


def gathered(sim, value) -> list:
    """`value` of every rank, in rank order, on rank 0 (one process: [value]; other ranks: None)."""
    if not sim.ranks.distributed:
        return [value]
    return sim.ranks.comm.gather(value, root=0)


def timed_simulate(sim, t_ms: float) -> tuple[float, dict]:
    """(wall seconds, this rank's communication() during the call) of the timed simulate. Under MPI the
    ranks start together (barrier) and the wall time is taken per rank (rank 0 keeps the slowest)."""
    if sim.ranks.distributed:
        sim.ranks.comm.Barrier()
    before = sim.communication()
    start = time.perf_counter()
    sim.simulate(t_ms)
    wall = time.perf_counter() - start
    after = sim.communication()
    return wall, {key: after[key] - before[key] for key in after}


def mpi_fields(sim, net: dict, wall: float, comm: list[dict], memory_per_rank: list[dict]) -> dict:
    """The per-rank figures (issue 10) from every rank's timed communication and memory, on rank 0."""
    steps = round(net["t_ms"] / net["dt"])
    comm_s = max(c["seconds"] for c in comm)
    return {"ranks": sim.ranks.size, "comm_s": round(comm_s, 5), "comm_share": round(comm_s / wall, 4),
            "comm_s_per_rank": [round(c["seconds"], 5) for c in comm],
            "bytes_per_step": round(sum(c["bytes_sent"] for c in comm) / steps, 1),
            "bytes_received_per_step_per_rank": [round(c["bytes_received"] / steps, 1) for c in comm],
            "exchanges_per_step": round(max(c["exchanges"] for c in comm) / steps, 3),
            "memory_per_rank": memory_per_rank,
            "synapse_bytes_per_rank": [m["connectivity"] + m["synapse_state"] for m in memory_per_rank]}


def network_memory_fields(per_rank: list[dict], synapses: int) -> dict:
    """common.memory_fields of every rank combined: resident growth summed over the ranks per synapse of
    the whole network, the largest rank's peak; each rank's peak and growth listed."""
    if len(per_rank) == 1:
        return per_rank[0]
    per_synapse = 1024.0 ** 2 / max(synapses, 1)
    grown = sum(m["rss_mb"] - m["rss_before_synapses_mb"] for m in per_rank)
    grown_peak = sum(m["peak_rss_mb"] - m["rss_before_synapses_mb"] for m in per_rank)
    return {"synapses": synapses, "rss_before_synapses_mb": max(m["rss_before_synapses_mb"] for m in per_rank),
            "rss_mb": max(m["rss_mb"] for m in per_rank), "peak_rss_mb": max(m["peak_rss_mb"] for m in per_rank),
            "bytes_per_synapse": round(grown * per_synapse, 1), "peak_bytes_per_synapse": round(grown_peak * per_synapse, 1),
            "peak_rss_mb_per_rank": [m["peak_rss_mb"] for m in per_rank],
            "rss_before_synapses_mb_per_rank": [m["rss_before_synapses_mb"] for m in per_rank]}


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--time-driven", action="store_true", help="learning with the time-driven engine")
    args = parser.parse_args()
    mode = "time-driven" if args.time_driven else "event-driven" if args.learning else "static"
    net = common.load(args.network)
    walls, comms, builds, memory = [], [], [], None
    for _ in range(max(1, args.repeat)):
        sim = rec = None                         # free the previous repetition's network first
        start = time.perf_counter()
        sim, rec, rss_before = build(net, args.threads, mode)
        builds.append(time.perf_counter() - start)
        sim.simulate(net["t_warmup_ms"])
        wall, comm = timed_simulate(sim, net["t_ms"])
        walls.append(wall)
        comms.append(comm)
        memory = memory or common.memory_fields(rss_before, common.synapse_count(net))   # first repetition's
    fastest = int(np.argmin(walls))
    # every rank's figures on rank 0 (collective: every rank takes part)
    walls_all = gathered(sim, walls)
    comm_all = gathered(sim, comms[fastest])
    memory_all = gathered(sim, memory)
    arrays_all = gathered(sim, sim.memory())
    builds_all = gathered(sim, builds)
    if sim.ranks.rank != 0:
        return
    walls = [max(w[i] for w in walls_all) for i in range(len(walls))]       # the slowest rank's
    wall = walls[fastest]
    builds = [max(b[i] for b in builds_all) for i in range(len(builds))]
    t0, t1 = common.window(net)
    times, senders = sim.spikes(rec)             # every rank records every spike (exchanged each interval)
    keep = (times > t0) & (times <= t1)
    syn_events = common.synaptic_events(net, senders[keep])
    sim_s = net["t_ms"] * 1e-3
    synapses = common.synapse_count(net)
    common.emit({
        "simulator": "eprop-gen", "engine": mode, "n": net["n"], "k": net["k"], "threads": args.threads,
        "learning": mode != "static", "wall_s_per_sim_s": round(wall / sim_s, 5), "build_s": round(min(builds), 3),
        **network_memory_fields(memory_all, synapses), **common.activity_stats(net, times[keep], senders[keep]),
        "syn_events_per_s": round(syn_events / wall, 1), "syn_events": syn_events,
        "wall_s_per_sim_s_all": [round(w / sim_s, 5) for w in walls], "history_steps": sim.history_steps,
        **state_bytes(arrays_all, synapses), **mpi_fields(sim, net, wall, comm_all, arrays_all),
        "timed": "Network.simulate(t_ms) after an untimed simulate(t_warmup_ms)"
                 + (", all ranks from a barrier, the slowest rank's wall time" if sim.ranks.distributed else ""),
    })


if __name__ == "__main__":
    main()
