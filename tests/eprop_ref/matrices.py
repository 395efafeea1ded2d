"""Weight matrices [post, pre] <-> our projections (shared by the engine harnesses)."""
from __future__ import annotations

import numpy as np

import eprop_gen as eg


def dense(proj, shape) -> np.ndarray:
    """A projection's weights as a dense [post, pre] matrix (0 where there is no synapse)."""
    W = np.zeros(shape)
    W[proj.targets, proj.sources] = proj.weights
    return W


def explicit(mask: np.ndarray, W: np.ndarray, delays=None):
    """The synapses where mask is True, with the weights (and delays) of the [post, pre] matrices."""
    targets, sources = np.nonzero(mask)
    return eg.Explicit(sources, targets, weights=np.asarray(W, float)[targets, sources],
                       delays=None if delays is None else np.asarray(delays)[targets, sources])
