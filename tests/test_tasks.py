"""The built-in sine-wave task learns through the public Python API (continuous event-driven e-prop)."""
from eprop_gen.tasks import make_sine_wave_task, train_sine_wave


def test_sine_wave_task_learns():
    task = make_sine_wave_task(n_in=50, n_rec=300, steps=500, seed=1)
    losses = train_sine_wave(task, iterations=20, threads=2)
    assert losses[-1] * 5 <= losses[0], losses
    assert min(losses[10:]) < min(losses[:5])
