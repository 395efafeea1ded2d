"""tau_m == tau_syn is not a problem: the propagator is exact at, near and away from the singular case.

The textbook formula for the current-to-voltage propagator of a LIF neuron with exponential
synaptic currents divides by (tau_syn - tau_m): at equality it is 0/0, and near equality a
difference of nearly equal exponentials loses digits. eprop-gen derives a separate branch for the
singular case and writes the regular one through stable functions (see docs/language.md).

Run:  python examples/singular_propagator.py
"""
import numpy as np

import eprop_gen as eg

model = eg.compile_model(eg.models.path("iaf_psc_exp"))
row, col = model.propagator_states.index("V_m"), model.propagator_states.index("I_syn_ex")
tau_m, c_m, h = 10.0, 250.0, 0.1


def textbook(tau_syn):
    tau_syn = np.float64(tau_syn)       # numpy division: nan at equality instead of an exception
    return tau_m * tau_syn / (c_m * (tau_syn - tau_m)) * (np.exp(-h / tau_syn) - np.exp(-h / tau_m))


print(f"{'tau_syn_ex':>22} {'eprop-gen P[V_m, I_syn_ex]':>28} {'textbook formula':>22}")
for tau_syn in (2.0, 9.9, 10.0 * (1 - 1e-8), 10.0 * (1 - 1e-13), 10.0, 10.0 * (1 + 1e-13)):
    p = model.propagator({"tau_m": tau_m, "tau_syn_ex": tau_syn, "C_m": c_m}, h)[row, col]
    with np.errstate(invalid="ignore", divide="ignore"):
        naive = textbook(tau_syn)
    print(f"{tau_syn:22.15f} {p:28.17e} {naive:22.15e}")
print(f"exact value at equality: h*exp(-h/tau)/C_m = {h * np.exp(-h / tau_m) / c_m:.17e}")
