"""A small recurrent e-prop network for the MPI tests (tests/test_mpi.py): run it as one process or
under mpirun; rank 0 writes what every rank read (spikes, weights, a recording, a state) to OUT.npz.

    python tests/mpi/network.py OUT.npz {event,time,static} THREADS [half | resume]

static: a network without learning whose delays are all >= 3 steps, delivered (and exchanged) in
batches of 3 steps, simulated in calls of uneven lengths that end mid-batch.

half: simulate the first half and write the network's state (a checkpoint) to OUT.state.npz;
resume: read OUT.state.npz (written with any number of ranks) and simulate the second half.
"""
import sys

import numpy as np

import eprop_gen as eg
from eprop_gen.engine.state import load_network_state, network_state


def main(out: str, engine: str, threads: int, mode: str = "whole") -> None:
    if engine == "static":
        static(out, threads, mode)
        return
    learning = eg.time_driven(update_interval=50.0) if engine == "time" else None
    net = eg.Network(dt=1.0, seed=3, threads=threads, learning=learning)
    rng = np.random.default_rng(0)
    steps = 300
    times = np.sort(rng.integers(1, steps, 400)).astype(float)
    src = net.add_spike_source(20, times=times, senders=rng.integers(0, 20, 400))
    suffix = "_bsshslm_2020" if engine == "time" else ""
    # event-driven: NEST's cutoff and flush events, cross-entropy readouts (both exchange phases)
    extra = {} if suffix else dict(eprop_isi_trace_cutoff=20.0, flush_event_send_interval=25.0)
    rec = net.add_population(eg.compile_model(eg.models.path(("eprop_iaf" if suffix else "eprop_iaf_adapt") + suffix)),
                             17, params=dict(C_m=1.0, E_L=0.0, V_th=0.5, tau_m=20.0, t_ref=2.0,
                                             surrogate_gradient_width=0.5, **extra))
    out_pop = net.add_population(eg.compile_model(eg.models.path("eprop_readout" + suffix)), 3,
                                 params=dict(C_m=1.0, E_L=0.0, tau_m=20.0))
    optimizer = eg.gradient_descent(eta=1e-3, batch_size=1)
    projections = [
        net.connect(src, rec, "spikes", eg.PairwiseBernoulli(p=0.6), weight=eg.Normal(0.5, 0.3), plasticity=optimizer),
        net.connect(rec, rec, "spikes", eg.FixedIndegree(k=5), weight=eg.Normal(0.0, 0.5), plasticity=optimizer),
        net.connect(rec, out_pop, "spikes", eg.PairwiseBernoulli(p=1.0), weight=eg.Normal(0.0, 0.5), plasticity=optimizer),
        net.connect(src, rec, "spikes", eg.FixedIndegree(k=2), weight=0.1, delay=eg.Uniform(1, 4)),
    ]
    net.connect_feedback(out_pop, rec, rng.normal(0, 0.5, (17, 3)))
    if suffix:
        net.add_target(out_pop, np.sin(np.arange(steps)[:, None] / np.array([10.0, 15.0, 20.0])))
    else:
        net.add_target(out_pop, np.eye(3)[(np.arange(steps) // 40) % 3], loss="cross_entropy")
    net.record(out_pop, ("y",))
    net.record(rec, ("V_m",), neurons=[16, 0, 9, 4])
    initial = projections[0].weights
    if not run_halves(net, out, mode, [steps / 2], [steps / 2]):
        return
    times, ids = net.spikes(rec)
    result = dict(times=times, ids=ids, y=net.recording(out_pop)["y"][-steps // 2:],
                  V_m=net.recording(rec)["V_m"][-steps // 2:], V_end=rec.get("V_m"), w0_initial=initial,
                  # rank 0's share: the recurrent neurons' history holds only its own columns
                  rank0_history_bytes=net.memory()["history"],
                  rank0_history_width=net._archives[rec.index].history.psi.shape[1])
    write(net, out, result, projections)


def static(out: str, threads: int, mode: str) -> None:
    """Excitatory and inhibitory LIF neurons with delays of 3-9 steps and input of delay 3."""
    net = eg.Network(dt=1.0, seed=5, threads=threads)
    rng = np.random.default_rng(1)
    times = np.sort(rng.integers(1, 300, 900)).astype(float)
    src = net.add_spike_source(30, times=times, senders=rng.integers(0, 30, 900))
    model = eg.compile_model(eg.models.path("iaf_psc_exp"))
    pop = net.add_population(model, 23, params=dict(C_m=1.0, E_L=0.0, V_th=1.0, V_reset=0.0, tau_m=10.0,
                                                    t_ref=2.0, tau_syn_ex=2.0, tau_syn_in=3.0))
    projections = [
        net.connect(src, pop, "ex", eg.FixedIndegree(k=6), weight=eg.Uniform(0.5, 1.5), delay=3),
        net.connect(pop, pop, "ex", eg.FixedIndegree(k=8), weight=eg.Normal(0.4, 0.2), delay=eg.Uniform(3, 9)),
        net.connect(pop, pop, "in", eg.PairwiseBernoulli(p=0.2), weight=-0.8, delay=4),
    ]
    net.record(pop, ("V_m",), neurons=[22, 0, 11, 5])
    # calls ending mid-batch; the checkpoint after 149 steps holds spikes not yet delivered
    if not run_halves(net, out, mode, [7.0, 50.0, 1.0, 91.0], [5.0, 146.0]):
        return
    times, ids = net.spikes(pop)
    result = dict(times=times, ids=ids, V_m=net.recording(pop)["V_m"][-146:], V_end=pop.get("V_m"),
                  interval=net._delivery_interval(),
                  **{f"comm_{k}": v for k, v in net.communication().items()})
    write(net, out, result, projections)


def run_halves(net, out: str, mode: str, first: list[float], second: list[float]) -> bool:
    """The first half's calls (or, `resume`, the checkpoint of them), then the second's unless
    `half` (then the checkpoint is written): True when the whole run was simulated."""
    checkpoint = out.replace(".npz", ".state.npz")
    if mode == "resume":
        with np.load(checkpoint) as saved:
            load_network_state(net, dict(saved))
    else:
        for t in first:                    # several calls: the state carries over
            net.simulate(t)
    if mode == "half":
        state = network_state(net)
        if net.ranks.rank == 0:
            np.savez(checkpoint, **state)
        return False
    for t in second:
        net.simulate(t)
    return True


def write(net, out: str, result: dict, projections) -> None:
    """Every rank reads the projections whole (collective); rank 0 writes."""
    for k, p in enumerate(projections):
        result.update({f"w{k}": p.weights, f"s{k}": p.sources, f"t{k}": p.targets})
    if net.ranks.rank == 0:
        np.savez(out, ranks=net.ranks.size, **result)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
