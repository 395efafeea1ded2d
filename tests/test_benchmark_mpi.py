"""benchmarks/run.py and report.py with MPI rows (issue 10): keys, configurations, commands, the MPI table.
No simulation, no MPI: fast."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import report  # noqa: E402
import run  # noqa: E402


def test_rows_without_ranks_count_as_one_rank(tmp_path):
    old = {"workload": "W", "engine": "event-driven", "threads": 1, "neurons": 1000, "k": 100, "wall_s_per_sim_s": 1.0}
    two = {**old, "ranks": 2, "wall_s_per_sim_s": 2.0}
    path = tmp_path / "latest.json"
    path.write_text(json.dumps({"rows": [old, two]}))
    assert run.row_key(old) == run.row_key({**old, "ranks": 1})
    new_one = {**old, "ranks": 1, "wall_s_per_sim_s": 3.0}
    merged = run.merged(path, [new_one])
    assert sorted(r["wall_s_per_sim_s"] for r in merged) == [2.0, 3.0]     # ranks 1 replaced, ranks 2 kept


def test_configurations_leave_out_oversubscription(monkeypatch):
    monkeypatch.setattr(run.os, "cpu_count", lambda: 2)
    args = argparse.Namespace(threads=[1, 2], ranks=[1, 2], oversubscribe=False)
    assert run.configurations(args) == [(1, 1), (1, 2), (2, 1)]
    args.oversubscribe = True
    assert (2, 2) in run.configurations(args)


def test_command_under_mpirun():
    command = run.simulator_command("eprop-gen", "event-driven", Path("net.npz"), 1, ranks=2)
    assert command[1:3] == ["-n", "2"] and command[0].endswith("mpirun")
    assert command[-2:] == ["1", "--learning"]
    assert "mpirun" not in run.simulator_command("eprop-gen", "event-driven", Path("net.npz"), 1)[0]


def test_mpi_table_and_sections():
    memory = {"neurons": 10, "connectivity": 2 ** 20, "synapse_state": 2 ** 20, "windows": 0, "history": 0}
    base = {"workload": "W", "engine": "event-driven", "neurons": 1000, "k": 100, "sim_ms": 1000.0,
            "wall_s_per_sim_s": 0.2, "date": "d", "commit": "c"}
    rows = [{**base, "threads": 1, "ranks": 1, "comm_share": 0.0, "bytes_per_step": 0.0,
             "memory_per_rank": [memory], "synapse_bytes_per_rank": [2 ** 21]},
            {**base, "threads": 1, "ranks": 2, "comm_share": 0.5, "bytes_per_step": 133.0,
             "memory_per_rank": [memory, memory], "synapse_bytes_per_rank": [2 ** 20, 2 ** 20]},
            {**base, "threads": 2}]                                          # an old row: ranks 1, no per-rank figures
    assert len(report.mpi_rows(rows)) == 2
    text = report.markdown({"rows": rows})
    assert report.MPI_TITLE in text and "| 2 × 1 |" in text and "50.0%" in text and "| 1 / 1 |" in text
    w_table = text.split(report.MPI_TITLE)[0]
    assert "| 2 × 1 |" not in w_table and w_table.count("| event-driven | 1 |") == 1   # W table: one process only
