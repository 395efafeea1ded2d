"""The built-in sine-wave task learns through the public API (what `eprop-gen demo` runs)."""
from click.testing import CliRunner

from eprop_gen.cli import main
from eprop_gen.tasks import make_sine_wave_task, train_sine_wave


def test_sine_wave_task_learns():
    task = make_sine_wave_task(n_in=50, n_rec=300, steps=500, seed=1)
    losses = train_sine_wave(task, iterations=20, threads=2)
    assert losses[-1] * 5 <= losses[0], losses
    assert min(losses[10:]) < min(losses[:5])


def test_demo_command_prints_the_falling_loss():
    result = CliRunner().invoke(main, ["demo", "-i", "5"])
    assert result.exit_code == 0, result.output
    assert "iteration   5: loss" in result.output and "loss fell from" in result.output
