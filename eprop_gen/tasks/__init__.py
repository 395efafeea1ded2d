"""Learning tasks built on the engine (sine-wave pattern generation now; more with the training issue)."""
from .sine_wave import SineWaveTask, make_sine_wave_task, train_sine_wave

__all__ = ["SineWaveTask", "make_sine_wave_task", "train_sine_wave"]
