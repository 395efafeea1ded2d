"""The floating-point type of the learning state: one process-wide choice, made here.

EPROP_GEN_LEARNING_PRECISION=float32 (environment, read at import) stores what e-prop keeps per
synapse and per archived step in float32: eligibility vectors and traces, gradients, plastic
weights, the history (psi, L, R) and the replay's block products. Neuron states, parameters,
propagators and all arithmetic stay float64 (the kernels compute in double and round when they
store). Half the bytes of the learning state, which is what large networks are made of; the
learning curves move by the rounding (benchmarks/precision.py shows them next to float64).

Every generated library and the engine are compiled for the chosen type (the define is part of
their cache key), so the two precisions never mix in one process.
"""
from __future__ import annotations

import ctypes
import os

import numpy as np

_CHOICES = {
    "float64": (np.float64, ctypes.c_double, ()),
    "float32": (np.float32, ctypes.c_float, ("-DEG_LEARNING_REAL=float",)),
}
LEARNING_PRECISION = os.environ.get("EPROP_GEN_LEARNING_PRECISION", "float64")
if LEARNING_PRECISION not in _CHOICES:
    raise ValueError(f"EPROP_GEN_LEARNING_PRECISION must be one of {', '.join(_CHOICES)}, "
                     f"got {LEARNING_PRECISION!r}")
LEARNING_REAL, c_lreal, LEARNING_FLAGS = _CHOICES[LEARNING_PRECISION]
c_lreal_p = ctypes.POINTER(c_lreal)
c_lreal_pp = ctypes.POINTER(c_lreal_p)
