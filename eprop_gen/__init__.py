"""eprop-gen: compile spiking-neuron models into exact, parallel simulators.

    import eprop_gen as eg
    model = eg.compile_model(eg.models.path("iaf_psc_exp"))
    net = eg.Network(dt=0.1, threads=2, seed=1)
"""
from . import models
from .compiled import CompiledModel
from .compiler import check_source, compile_model
from .engine import (Explicit, FixedIndegree, Network, Normal, Optimizer, PairwiseBernoulli, EventDriven, TimeDriven,
                     Uniform, adam, event_driven, gradient_descent, time_driven)
from .errors import BuildError, EpropGenError, ModelError

__version__ = "0.1.0"
__all__ = ["compile_model", "check_source", "CompiledModel", "Network", "FixedIndegree", "PairwiseBernoulli",
           "Explicit", "Normal", "Uniform", "Optimizer", "gradient_descent", "adam",
           "EventDriven", "TimeDriven", "event_driven", "time_driven", "ModelError", "BuildError",
           "EpropGenError", "models", "__version__"]
