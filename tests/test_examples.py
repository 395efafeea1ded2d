"""The examples a newcomer runs must keep working and keep showing what they claim."""
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_adaptation_example_adapts():
    out = run("adaptation.py")
    first, last = map(float, re.search(r"first ISI ([\d.]+) ms -> last ISI ([\d.]+) ms", out).groups())
    assert last > 1.5 * first


def test_singular_example_is_continuous_through_equality():
    out = run("singular_propagator.py")
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+\d", line)]
    ours = {float(r[0]): float(r[1]) for r in rows}
    exact = float(out.rsplit("=", 1)[1])
    near = [v for tau, v in ours.items() if abs(tau - 10.0) < 1e-11]
    assert len(near) == 3                      # just below, at, just above equality
    for value in near:
        assert abs(value - exact) <= 1e-14 * exact


def test_time_driven_example_learns():
    out = run("time_driven_sine.py")
    first, last, factor = map(float, re.search(r"loss ([\d.]+) -> ([\d.]+) \(([\d.]+)x lower\)", out).groups())
    assert factor > 4


def test_training_from_python_example(tmp_path):
    out = run("train_from_python.py", str(tmp_path / "run"), "3")
    assert "iteration   2" in out and "test: 64 samples" in out and "recurrent synapses: 9900" in out
    assert (tmp_path / "run" / "weights.npz").is_file()


def test_precise_timing_example_writes_its_table_and_plot(tmp_path):
    png = tmp_path / "timing.png"
    out = run("precise_timing.py", "--iterations", "30", "--seeds", "1", "--out", str(png))
    rows = {line.split("(eprop_")[1].split(")")[0] for line in out.splitlines() if "(eprop_" in line}
    assert rows == {"iaf_stdp", "izhikevich", "iaf"}
    stdp = next(line for line in out.splitlines() if line.startswith("STDP-aware LIF"))
    assert stdp.split()[7].isdigit()                       # under 1 ms within 30 iterations
    assert png.is_file() and png.stat().st_size > 10_000
