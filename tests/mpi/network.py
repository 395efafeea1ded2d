"""A small recurrent e-prop network for the MPI tests (tests/test_mpi.py): run it as one process or
under mpirun; rank 0 writes what every rank read (spikes, weights, a recording, a state) to OUT.npz.

    python tests/mpi/network.py OUT.npz {event,time} THREADS [half | resume]

half: simulate the first half and write the network's state (a checkpoint) to OUT.state.npz;
resume: read OUT.state.npz (written with any number of ranks) and simulate the second half.
"""
import sys

import numpy as np

import eprop_gen as eg
from eprop_gen.engine.state import load_network_state, network_state


def main(out: str, engine: str, threads: int, mode: str = "whole") -> None:
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
    checkpoint = out.replace(".npz", ".state.npz")
    if mode == "resume":
        with np.load(checkpoint) as saved:
            load_network_state(net, dict(saved))
    else:
        net.simulate(steps / 2)            # two calls: the state carries over
    if mode == "half":
        state = network_state(net)
        if net.ranks.rank == 0:
            np.savez(checkpoint, **state)
        return
    net.simulate(steps / 2)
    times, ids = net.spikes(rec)
    result = dict(times=times, ids=ids, y=net.recording(out_pop)["y"][-steps // 2:],
                  V_m=net.recording(rec)["V_m"][-steps // 2:], V_end=rec.get("V_m"), w0_initial=initial)
    for k, p in enumerate(projections):
        result.update({f"w{k}": p.weights, f"s{k}": p.sources, f"t{k}": p.targets})
    if net.ranks.rank == 0:
        np.savez(out, ranks=net.ranks.size, **result)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
