"""Learning tasks built on the engine: sine-wave pattern generation, evidence accumulation."""
from .evidence import EvidenceShape, make_evidence_samples, train_evidence
from .sine_wave import SineWaveTask, make_sine_wave_task, train_sine_wave

__all__ = ["SineWaveTask", "make_sine_wave_task", "train_sine_wave", "EvidenceShape",
           "make_evidence_samples", "train_evidence"]
