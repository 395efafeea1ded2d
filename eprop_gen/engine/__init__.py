"""The generic simulation engine: a Python network API around one compiled C++/OpenMP step loop."""
from .connectivity import Explicit, FixedIndegree, Normal, PairwiseBernoulli, Uniform
from .learning import EventDriven, TimeDriven, event_driven, time_driven
from .network import Network, Population, SpikeSource
from .projections import Projection
from .plasticity import Optimizer, adam, gradient_descent

__all__ = ["Network", "Population", "SpikeSource", "Projection", "FixedIndegree",
           "PairwiseBernoulli", "Explicit", "Normal", "Uniform", "Optimizer", "gradient_descent",
           "adam", "EventDriven", "TimeDriven", "event_driven", "time_driven"]
