"""Projections: the synapses from one population to a spike port of another, as Network.connect
returns them (CSR by source; under MPI this rank's share, read whole through collective calls)."""
from __future__ import annotations

import ctypes

import numpy as np

from . import distributed, learning, native
from .connectivity import Synapses
from .native import REAL, pointer
from .plasticity import Optimizer
from .populations import AnyPopulation, Population


class Projection:
    """Synapses from one population to a spike port of another (returned by Network.connect).

    A plastic projection (connect(..., plasticity=...)) learns: `weights` then reads the current
    weights, each as of its synapse's last replay (NEST: a weight changes only when its synapse
    receives an event, a spike or a flush event of its silent source; with optimize_each_step a
    flush applies the per-step updates up to its time, spec §4.6)."""

    def __init__(self, index: int, source: AnyPopulation, target: Population, port: str,
                 synapses: Synapses, plasticity: Optimizer | None = None, update_interval: int = 0,
                 samples: bool = False):
        self.index, self.source, self.target, self.port = index, source, target, port
        self.port_index = target.model.spike_ports.index(port)
        self._syn = synapses
        self._plastic = None
        if plasticity is not None:
            self._plastic = learning.PlasticState(self, synapses.weights, plasticity, update_interval,
                                                  samples)
            synapses.weights = self._plastic.synapses.weight   # one array: read, set, learned

    def __repr__(self):
        kind = "plastic " if self._plastic else ""
        return (f"Projection({self.source.name!r} -> {self.target.name!r}.{self.port}, "
                f"{self._syn.targets.size} {kind}synapses)")

    @property
    def plasticity(self) -> Optimizer | None:
        """The optimizer of a plastic projection, None for a static one."""
        return self._plastic.optimizer if self._plastic else None

    def set_optimizer(self, optimizer: Optimizer) -> None:
        """Change the optimizer's parameters between simulate calls (same type). As in NEST, each
        synapse's next optimisation still uses the eta of its previous one (spec §5)."""
        if self._plastic is None:
            raise ValueError(f"set_optimizer: {self!r} is not plastic")
        self._plastic.set_optimizer(optimizer)

    def __len__(self):
        return self._order().total if self._distributed else int(self._syn.targets.size)

    # CSR order: sources ascending, then targets ascending, then draw order. Copies. Under MPI
    # every rank reads the whole projection (a collective call: every rank must make it).
    @property
    def sources(self) -> np.ndarray:
        return self._whole(self._syn.sources)

    @property
    def targets(self) -> np.ndarray:
        return self._whole(self._syn.targets.copy())

    @property
    def weights(self) -> np.ndarray:
        return self._whole(self._syn.weights.copy())

    @property
    def delays(self) -> np.ndarray:
        return self._whole(self._syn.delays.copy())

    def set_weights(self, weights) -> None:
        """Replace all weights (CSR order, as in `weights`), or set them all to one scalar."""
        values = np.asarray(weights, dtype=REAL)
        if values.ndim != 0 and values.shape != (len(self),):
            raise ValueError(f"set_weights: expected {len(self)} weights, got shape {values.shape}")
        self._syn.weights[:] = self._order().own(values) if self._distributed and values.ndim else values

    @property
    def _distributed(self) -> bool:
        return self.target.network.ranks.distributed

    def _order(self) -> distributed.SynapseOrder:
        """Under MPI: where this rank's synapses stand in the whole projection (drawn once)."""
        if getattr(self, "_synapse_order", None) is None:
            self._synapse_order = distributed.SynapseOrder(self.target.network.ranks, self._syn.sources,
                                                           self._syn.targets)
        return self._synapse_order

    def _whole(self, column: np.ndarray) -> np.ndarray:
        return self._order().gather(column) if self._distributed else column

    def _engine_struct(self, keep: list, settle_steps: int = 0) -> native.EgProjection:
        s = self._syn
        keep += [s.row_ptr, s.targets, s.weights, s.delays]
        plastic = self._plastic
        return native.EgProjection(
            source=self.source.index, target=self.target.index, port=self.port_index,
            uniform_delay=s.uniform_delay, row_ptr=pointer(s.row_ptr, ctypes.c_int64),
            target_id=pointer(s.targets, native.c_target_id),
            weight=pointer(s.weights if plastic is None else None, native.c_real),   # plastic: their own
            delay=pointer(s.delays, native.c_delay),
            plastic=ctypes.addressof(plastic.synapses.view) if plastic else None,
            replay_event=plastic.replay_event if plastic else None,
            interval=plastic.interval if plastic else None,
            batch_optimizer=ctypes.addressof(plastic.synapses.optimizer) if plastic else None,
            eligibility_size=plastic.eligibility_size if plastic else 0,
            n_traces=plastic.n_traces if plastic else 0,
            max_delay=s.max_delay, settle_steps=settle_steps)
