"""What the pipeline hands to the engine: a loaded model library and the facts needed to drive it.

The engine never sees sympy or the IR; it sees names, defaults and kernel addresses.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np


@dataclass(frozen=True, eq=False)
class CompiledModel:
    name: str                                   # C identifier of the model (kernel prefix eg_<name>_)
    states: tuple[str, ...]                     # order of pop->state
    params: tuple[str, ...]                     # order of pop->param
    param_defaults: Mapping[str, float]
    spike_ports: tuple[str, ...]                # order of pop->spike_in
    current_ports: tuple[str, ...]              # order of pop->current_in
    n_coeff: int                                # length of pop->coeff
    spiking: bool                               # False for readouts (never sets spiked)
    propagator_states: tuple[str, ...]          # row/column order of eg_<name>_propagator's output
    # initial values of the state variables from (vectorised) parameter values
    initial_state: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
    library_path: Path
    source_path: Path
    library: ctypes.CDLL = field(repr=False)
    summary: str = ""                           # what `eprop-gen check` prints
    # per-step quantities the kernel writes after the states (e.g. "psi", the pseudo-derivative):
    # recordable and readable like states, never integrated
    observables: tuple[str, ...] = ()
    # the observables a learning neuron's history keeps per step besides psi, L and R (the derivative
    # of an RK4 step, the reset's derivative: solve/eligibility.py's PerStep), in the history's order
    archived: tuple[str, ...] = ()
    # spike ports whose plastic synapses the generated replay kernels serve, with the sizes of the
    # per-synapse eligibility vector and declared traces: {port: (eligibility size, trace count)}
    learning_ports: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    # doubles per block product of each learning port's O(1) replay path (plan_blocks; 0: the
    # replay always walks), in learning_ports order
    block_entries: Mapping[str, int] = field(default_factory=dict)
    # per learning port: the eligibility components kept once per window when the targets agree
    # on the parameters they depend on (plan_learning's presynaptic components; zbar), and those
    # parameters: {port: (components, parameter names)}
    presynaptic: Mapping[str, tuple[tuple[int, ...], tuple[str, ...]]] = field(default_factory=dict)
    # the model's regularisation is one value per update interval: only the time-driven engine
    regularisation_per_interval: bool = False
    # {"flush": ms per neuron} from parameter values, for models that send flush events; else None
    flush_interval: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]] | None = None
    # {"cutoff": ms per neuron} (the learning section's cutoff:) from parameter values; else None
    replay_cutoff: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]] | None = None

    @property
    def recordables(self) -> tuple[str, ...]:
        """Rows of pop->state: the state variables, then the observables."""
        return self.states + self.observables

    def kernel_address(self, which: str) -> int:
        """Address of eg_<name>_<which> ('prepare', 'update', 'replay_<port>', 'interval_<port>',
        'blocks_<port>')."""
        fn = getattr(self.library, f"eg_{self.name}_{which}")
        return ctypes.cast(fn, ctypes.c_void_p).value

    def propagator(self, param_values: Mapping[str, float], h: float) -> np.ndarray:
        """exp(A h) of the linear part for one neuron's parameters, evaluated by the generated code."""
        fn = getattr(self.library, f"eg_{self.name}_propagator")
        fn.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.c_double, ctypes.POINTER(ctypes.c_double)]
        fn.restype = None
        values = {**self.param_defaults, **param_values}
        p = np.ascontiguousarray([float(values[k]) for k in self.params], dtype=np.float64)
        m = len(self.propagator_states)
        out = np.zeros((m, m), dtype=np.float64)
        fn(p.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), float(h),
           out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)))
        return out
