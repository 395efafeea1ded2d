"""`eprop-gen train / evaluate / demo` end to end, on every shipped task at a tiny size: the files a
run writes, a falling loss, --resume continuing exactly where it stopped, and bad configurations
ending in one line and exit status 2 (no traceback)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from eprop_gen.cli import main
from eprop_gen.train import train
from nmnist_files import write_nmnist

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = {
    "sine_wave.toml": {"task": {"steps": 200, "n_in": 20}, "recurrent": {"n": 40},
                       "training": {"iterations": 10, "threads": 1}, "optimizer": {"eta": 8e-5}},
    "sine_wave_time_driven.toml": {"task": {"steps": 200, "n_in": 50}, "recurrent": {"n": 60},
                                   "training": {"iterations": 20, "threads": 1}, "optimizer": {"eta": 1e-2}},
    "evidence_accumulation_short.toml": {"training": {"iterations": 6, "batch_size": 4, "threads": 1,
                                                      "test_samples": 8}},
}


def _check_run_folder(folder: Path, iterations: int, accuracy: bool):
    for name in ("config.toml", "metrics.json", "weights.npz", "checkpoint.npz", "learning_curve.png", "sample.png"):
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert [m["iteration"] for m in metrics["iterations"]] == list(range(iterations))
    for m in metrics["iterations"]:
        assert set(m) == {"iteration", "loss", "accuracy", "spikes", "wall_s"}
        assert np.isfinite(m["loss"]) and m["spikes"] >= 0 and m["wall_s"] > 0
        assert (m["accuracy"] is not None) == accuracy
    assert metrics["config"]["training"]["iterations"] == iterations
    with np.load(folder / "weights.npz") as w:
        assert {"input_weights", "recurrent_weights", "readout_weights"} <= set(w.files)
    return metrics["iterations"]


@pytest.mark.parametrize("config", ["sine_wave.toml", "sine_wave_time_driven.toml"])
def test_sine_wave_trains_and_the_loss_falls(config, tmp_path):
    overrides = TINY[config]
    if "time" in config:
        overrides = {**overrides, "recurrent": {"n": 60, "params": _with_flush(config, 200.0)}}
    result = train(EXAMPLES / config, out=tmp_path / "run", progress=False, overrides=overrides)
    metrics = _check_run_folder(tmp_path / "run", overrides["training"]["iterations"], accuracy=False)
    losses = [m["loss"] for m in metrics]
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses
    assert result.test is None


def _with_flush(config, flush_ms):
    import tomllib
    params = tomllib.loads((EXAMPLES / config).read_text())["recurrent"]["params"]
    return {**params, "flush_event_send_interval": flush_ms}


def test_evidence_accumulation_trains_with_accuracy_and_a_test_set(tmp_path):
    result = train(EXAMPLES / "evidence_accumulation_short.toml", out=tmp_path / "run", progress=False,
                   overrides=TINY["evidence_accumulation_short.toml"])
    metrics = _check_run_folder(tmp_path / "run", 6, accuracy=True)
    assert all(0.0 <= m["accuracy"] <= 1.0 for m in metrics)
    assert result.test["samples"] == 8 and 0.0 <= result.test["accuracy"] <= 1.0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test"] == result.test


def test_nmnist_trains_on_files_in_the_real_format(tmp_path):
    """Generated N-MNIST files (tests/nmnist_files.py) read by tonic: a few epochs over 20 samples."""
    write_nmnist(tmp_path / "data", n_train=20, n_test=10)
    overrides = {"task": {"download": False, "steps": 100, "window": 10},
                 "training": {"iterations": 12, "batch_size": 10, "threads": 1, "test_samples": 10},
                 "recurrent": {"n": 40}, "optimizer": {"eta": 2e-5}}
    run = train(EXAMPLES / "nmnist.toml", out=tmp_path / "run", data=str(tmp_path / "data"), progress=False,
                overrides=overrides)
    metrics = _check_run_folder(tmp_path / "run", 12, accuracy=True)
    losses = [m["loss"] for m in metrics]
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses
    assert run.test["samples"] == 10


def test_resume_continues_exactly_where_the_run_stopped(tmp_path):
    config = EXAMPLES / "evidence_accumulation_short.toml"
    tiny = {"training": {"iterations": 6, "batch_size": 3, "threads": 1}}
    whole = train(config, out=tmp_path / "whole", progress=False, overrides=tiny)
    part = {"training": {"iterations": 3, "batch_size": 3, "threads": 1}}
    train(config, out=tmp_path / "resumed", progress=False, overrides=part)
    result = CliRunner().invoke(main, ["train", str(config), "--out", str(tmp_path / "resumed"), "--resume",
                                       "--iterations", "6", "--threads", "1", "--quiet"])
    assert result.exit_code == 2, result.output      # batch_size differs from the saved run ...
    assert "another configuration" in result.output
    result = train(config, out=tmp_path / "resumed", resume=True, progress=False, overrides=tiny)
    assert [m["loss"] for m in result.metrics] == [m["loss"] for m in whole.metrics]
    with np.load(tmp_path / "whole" / "weights.npz") as a, np.load(tmp_path / "resumed" / "weights.npz") as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def test_an_existing_run_folder_is_never_overwritten(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["train", str(EXAMPLES / "sine_wave.toml"), "--out", str(folder), "--quiet"])
    assert result.exit_code == 2
    assert "exists and is not empty" in result.output and "--resume" in result.output
    assert "Traceback" not in result.output
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


BAD = [
    ("[task]\nname = 'sine_wave'\n[recurrent]\nmodel = 'eprop_iaf'\nn = 10\n[readout]\nmodel = 'eprop_readout'\n"
     "[training]\niteratons = 3\n", "[training] unknown key 'iteratons' (did you mean 'iterations'?)"),
    ("[task]\nname = 'sine_wave'\n[recurrent]\nmodel = 'eprop_iaf'\nn = 10\n[readout]\nmodel = 'eprop_readout'\n"
     "[optimizer]\neta = 'fast'\n", "[optimizer] eta: expected a number, got 'fast'"),
    ("[task]\nname = 'sine_wave'\n[recurrent]\nmodel = 'mine.eprop'\nn = 10\n[readout]\nmodel = 'eprop_readout'\n",
     "model file"),
    ("[task]\nname = 'sine_wave'\n[recurrent]\nmodel = 'eprop_iaf'\nn = 0\n[readout]\nmodel = 'eprop_readout'\n",
     "[recurrent] n: must be >= 1, got 0"),
    ("[task]\nname = 'sine_wave'\n[recurrent]\nmodel = 'eprop_iaf'\nn = 10\n[readout]\nmodel = 'eprop_readout'\n"
     "[connections]\nrecurrent = { density = 0.0 }\n", "[connections.recurrent] density: expected a number in (0, 1]"),
    ("[task]\nname = 'sine_wave'\n[recurrent]\nmodel = 'eprop_iaf'\nn = 10\nparams = { tau = 3.0 }\n"
     "[readout]\nmodel = 'eprop_readout'\n", "[recurrent.params] tau: not a parameter of model 'eprop_iaf'"),
    ("[task]\nname = 'sine_wave'\n[recurrent]\nmodel = 'eprop_iaf'\nn = 10\n"
     "params = { V_th = [[4, 0.1], [4, 0.2]] }\n[readout]\nmodel = 'eprop_readout'\n",
     "[recurrent.params] V_th: the counts add up to 8, but the population has 10 neurons"),
    ("[task]\nname = 'mnist'\n[recurrent]\nmodel = 'eprop_iaf'\nn = 10\n[readout]\nmodel = 'eprop_readout'\n",
     "[task] name: expected one of sine_wave, evidence_accumulation, nmnist"),
    ("[task]\nname = 'nmnist'\ndata = 'nowhere'\n[recurrent]\nmodel = 'eprop_iaf'\nn = 10\n[readout]\n"
     "model = 'eprop_readout'\n", "[task] data:"),
    ("[task\nname = 1", "not valid TOML"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_bad_configurations_end_in_one_line_and_status_2(text, message, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = CliRunner().invoke(main, ["train", str(config), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert str(config) in lines[0] and message in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_evaluate_reports_the_test_set_of_saved_weights(tmp_path):
    config = EXAMPLES / "evidence_accumulation_short.toml"
    train(config, out=tmp_path / "run", progress=False, overrides={"training": {"iterations": 2, "batch_size": 4,
                                                                              "threads": 1}})
    result = CliRunner().invoke(main, ["evaluate", str(config), "--weights", str(tmp_path / "run" / "weights.npz"),
                                       "--samples", "8"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("8 test samples: loss ") and "accuracy" in result.output


def test_demo_trains_offline_and_says_where_the_plots_are(tmp_path):
    result = CliRunner().invoke(main, ["demo", "-i", "10", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "iteration  10: loss" in result.output and "loss fell from" in result.output
    assert (tmp_path / "demo" / "learning_curve.png").is_file()
    assert str(tmp_path / "demo" / "sample.png") in result.output
