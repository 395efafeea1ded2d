"""Spike-frequency adaptation: an adaptive LIF written in the model language, driven by a current step.

Run:  python examples/adaptation.py
"""
from pathlib import Path

import numpy as np

import eprop_gen as eg

model = eg.compile_model(Path(__file__).with_name("adaptive_lif.eprop"))
print(model.summary)

net = eg.Network(dt=0.1, threads=1)
neuron = net.add_population(model, 1)
net.add_current(neuron, "I_stim", times=[50.0], amplitudes=[500.0])   # 500 pA from 50 ms on
net.record(neuron, ["V_m", "a"])
net.simulate(1000.0)

times, _ = net.spikes(neuron)
isi = np.diff(times)
print(f"\n{len(times)} spikes; first at {times[0]:.1f} ms")
print("inter-spike intervals (ms):", np.array2string(isi[:12], precision=1))
print(f"first ISI {isi[0]:.1f} ms -> last ISI {isi[-1]:.1f} ms: the neuron adapts")
