"""Rank 1 fails (tests/test_mpi.py): inside simulate, or (argument `script`) in the script itself
while rank 0 waits in a collective read; every rank must end, with rank 1's message."""
import sys

import numpy as np

import eprop_gen as eg

net = eg.Network(dt=1.0)
src = net.add_spike_source(5, times=np.array([1.0, 2.0]), senders=np.array([0, 1]))
rec = net.add_population(eg.compile_model(eg.models.path("iaf_psc_delta")), 6)
net.connect(src, rec, "spikes", eg.FixedIndegree(k=2))
net.simulate(5.0)                      # fine on every rank
if sys.argv[1:] == ["script"]:
    if net.ranks.rank == 1:
        raise ValueError("a mistake in the script on rank 1")
    print(len(net.projections[0].weights), flush=True)       # rank 0 waits for rank 1 here
if net.ranks.rank == 1:
    def broken(lib, n_steps):
        raise MemoryError("cannot allocate the spike record (simulated)")
    net._run_engine = broken
net.simulate(5.0)                      # rank 1 fails, rank 0 would wait in the next exchange
print("not reached on rank 1", flush=True)
