"""PNG plots of a training run (eprop_gen/train/plots.py): valid files, edge cases, atomic writes."""
from __future__ import annotations

import importlib.util
import re
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]
PLOTS = REPO / "eprop_gen" / "train" / "plots.py"


def _load_plots():
    """plots.py by path: it imports nothing from eprop_gen, so the test neither waits for the whole
    package (sympy, the compiler) nor depends on eprop_gen/train/__init__.py."""
    spec = importlib.util.spec_from_file_location("_eprop_gen_train_plots_under_test", PLOTS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plots = _load_plots()
plot_learning_curve, plot_sample = plots.plot_learning_curve, plots.plot_sample


def assert_png(path: Path) -> np.ndarray:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 0 and image.shape[1] > 0 and image.shape[2] in (3, 4)
    return image


def assert_no_temporaries(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert not leftovers, leftovers


def curve(n: int, accuracy: bool = True, start: int = 1) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(start, start + n):
        row = {"iteration": i, "loss": float(np.exp(-i / 20) + 0.05 * rng.random())}
        if accuracy:
            row["accuracy"] = min(1.0, i / n)
        rows.append(row)
    return rows


def sample_data(n_out: int = 2, steps: int = 300, n_in: int = 20, n_rec: int = 50, n_spikes: int = 2000,
                seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    t = np.arange(1, steps + 1, dtype=float)
    labels = np.repeat(np.arange(n_out), -(-steps // n_out))[:steps]
    return dict(dt=1.0,
                input_times=np.sort(rng.uniform(0, steps, n_spikes // 4)),
                input_senders=rng.integers(0, n_in, n_spikes // 4), n_in=n_in,
                rec_times=np.sort(rng.uniform(0, steps, n_spikes)),
                rec_senders=rng.integers(0, n_rec, n_spikes), n_rec=n_rec,
                readout_times=t, readout=rng.normal(size=(steps, n_out)).cumsum(axis=0) * 0.05,
                target=np.eye(n_out)[labels], window=(t > steps - 50).astype(float))


# ---------------------------------------------------------------------------------------------
# Learning curve
# ---------------------------------------------------------------------------------------------

def test_learning_curve_with_accuracy_writes_a_png_into_a_new_folder(tmp_path):
    out = tmp_path / "run" / "plots" / "curve.png"
    written = plot_learning_curve(curve(80), out)
    assert written == out and isinstance(written, Path)
    assert_png(out)
    assert_no_temporaries(out.parent)


@pytest.mark.parametrize("metrics", [
    curve(1),                                                        # one iteration, with accuracy
    curve(12, accuracy=False),                                       # no accuracy at all
    [{"iteration": 1, "loss": 0.7, "accuracy": None},                # accuracy None / missing / present
     {"iteration": 2, "loss": 0.5}, {"iteration": 3, "loss": 0.4, "accuracy": 0.6}],
    [{"iteration": 2, "loss": 0.3}, {"iteration": 1, "loss": -0.2},  # unsorted, loss <= 0 (linear axis),
     {"iteration": 3, "loss": float("nan")}, {"iteration": 4, "loss": None}],  # nan and None gaps
    [],                                                              # nothing recorded yet
], ids=["one", "no-accuracy", "partial-accuracy", "odd-losses", "empty"])
def test_learning_curve_edge_cases(tmp_path, metrics):
    out = plot_learning_curve(metrics, str(tmp_path / "curve.png"))   # a str path works too
    assert out == tmp_path / "curve.png"
    assert_png(out)
    assert_no_temporaries(tmp_path)


# ---------------------------------------------------------------------------------------------
# One sample
# ---------------------------------------------------------------------------------------------

def test_sample_plot_with_two_readouts_and_a_window(tmp_path):
    out = plot_sample(tmp_path / "deep" / "sample.png", title="evidence accumulation, sample 0", **sample_data(2))
    assert out == tmp_path / "deep" / "sample.png"
    assert_png(out)
    assert_no_temporaries(out.parent)


def test_sample_plot_with_ten_readouts_and_many_spikes(tmp_path):
    # N-MNIST-like: 10 classes, ~1e5 recurrent spikes must still draw quickly.
    out = plot_sample(tmp_path / "nmnist.png", **sample_data(10, steps=1000, n_in=200, n_rec=400, n_spikes=100_000))
    assert_png(out)
    assert_no_temporaries(tmp_path)


def test_sample_plot_with_empty_rasters_no_window_and_one_readout(tmp_path):
    steps = 40
    t = np.arange(1, steps + 1) * 0.1
    out = plot_sample(tmp_path / "empty.png", dt=0.1, input_times=[], input_senders=[], n_in=5,
                      rec_times=np.array([]), rec_senders=np.array([], dtype=int), n_rec=0,
                      readout_times=t, readout=np.sin(t), target=np.cos(t))        # (T,) traces
    assert_png(out)
    assert_no_temporaries(tmp_path)


def test_sample_plot_with_no_samples_at_all(tmp_path):
    out = plot_sample(tmp_path / "nothing.png", dt=1.0, input_times=[], input_senders=[], n_in=0,
                      rec_times=[], rec_senders=[], n_rec=0, readout_times=[], readout=np.zeros((0, 3)),
                      target=np.zeros((0, 3)), window=np.zeros(0))
    assert_png(out)


@pytest.mark.parametrize("change", [
    dict(target=np.zeros((300, 3))),                  # target and readout differ
    dict(readout=np.zeros((299, 2))),                 # readout has the wrong T
    dict(window=np.zeros(10)),                        # window has the wrong T
    dict(rec_senders=np.zeros(5, dtype=int)),         # times and senders differ
])
def test_sample_plot_rejects_mismatched_shapes_and_writes_nothing(tmp_path, change):
    data = sample_data(2) | change
    with pytest.raises(ValueError):
        plot_sample(tmp_path / "bad.png", **data)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Atomic writes, no global matplotlib state
# ---------------------------------------------------------------------------------------------

def test_overwrite_replaces_the_file_and_a_failed_write_keeps_the_old_one(tmp_path, monkeypatch):
    out = tmp_path / "curve.png"
    first = assert_png(plot_learning_curve(curve(1, accuracy=False), out))   # one iteration, no accuracy
    second = assert_png(plot_learning_curve(curve(3), out))     # taller figure with an accuracy panel
    assert second.shape[0] > first.shape[0]
    assert_no_temporaries(tmp_path)
    before = out.read_bytes()

    from matplotlib.figure import Figure

    def broken_savefig(self, fh, **kwargs):
        fh.write(PNG_MAGIC + b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot_learning_curve(curve(30), out)
    assert out.read_bytes() == before
    assert_no_temporaries(tmp_path)


def test_concurrent_writers_to_one_path_leave_one_valid_png(tmp_path):
    out = tmp_path / "curve.png"
    errors = []

    def write(k):
        try:
            plot_learning_curve(curve(5 + k), out)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert_png(out)
    assert_no_temporaries(tmp_path)


def test_plots_use_neither_pyplot_nor_the_global_backend(tmp_path):
    backend = dict.__getitem__(matplotlib.rcParams, "backend")       # read without resolving it
    pyplot = sys.modules.get("matplotlib.pyplot")
    open_figures = pyplot.get_fignums() if pyplot else None
    plot_learning_curve(curve(2), tmp_path / "c.png")
    assert_png(tmp_path / "c.png")
    assert dict.__getitem__(matplotlib.rcParams, "backend") == backend
    if pyplot is None:
        assert "matplotlib.pyplot" not in sys.modules
    else:                                                              # loaded by someone else: no new figure
        assert pyplot.get_fignums() == open_figures
    source = PLOTS.read_text()
    assert not re.search(r"^\s*(from|import)\s.*pyplot", source, re.MULTILINE)
    assert "matplotlib.use(" not in source
