"""The results table benchmarks/results/README.md and the plots, from benchmarks/results/latest.json.

    python benchmarks/report.py [benchmarks/results/latest.json]

run.py calls write() after every run; run this to regenerate both by hand (e.g. after editing the format).
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIMULATORS = (("eprop-gen", ""), ("NEST", "nest_"), ("Brian2", "brian2_"))
SECTIONS = {
    "W": ("Network W", "N LIF neurons, K = 100 recurrent synapses each, 100 Poisson inputs at 20 Hz to all of "
                       "them, 2 readouts. Peers on the event-driven row: NEST's `eprop_synapse` and Brian2's "
                       "hand-written time-driven e-prop; on the static row: static synapses."),
    "nmnist": ("N-MNIST network (NEST 3.10 tutorial), synthetic Poisson input",
               "1196 inputs, 150 `eprop_iaf`, 10 readouts, 25 % / 1 % / 100 % connection density, samples of "
               "300 ms; every input fires Poisson at the rate in the row."),
    "rate-sweep": ("Rate sweep", "Network W with the mean input weight scaled; the recurrent rate is measured "
                                 "(each simulator's own)."),
    "k-sweep": ("In-degree sweep", "Network W with K recurrent synapses per neuron, recurrent weights scaled so "
                                   "that each neuron's recurrent input keeps its mean and variance (mean × 100/K, "
                                   "sd × √(100/K)); K = N − 1 is all-to-all."),
}
PLOTS = {"rate-sweep": "cost_vs_rate.png", "k-sweep": "cost_vs_k.png", "W": "cost_vs_n.png"}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) / 1024 ** 2            # MemTotal, the first line
    except (OSError, ValueError, IndexError):
        return None


def machine() -> dict:
    return {"machine": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(), "ram_gib": ram_gib(),
            "python": platform.python_version()}


# ---------------------------------------------------------------------------------------------------------
# formatting

def _num(value, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if isinstance(value, (int, float)) else "–"


def _cost(row: dict, prefix: str) -> str:
    for key in ("skipped", "error"):
        if row.get(prefix + key):
            return key
    return _num(row.get(prefix + "wall_s_per_sim_s"))


def _per_simulator(row: dict, key: str, fmt) -> str:
    return " / ".join(fmt(row.get(prefix + key)) for _, prefix in SIMULATORS)


def _notes(row: dict) -> str:
    notes = [f"{name} {key}: {row[prefix + key]}" for name, prefix in SIMULATORS for key in ("skipped", "error")
             if row.get(prefix + key)]
    if row.get("learning_precision", "float64") != "float64":
        notes.insert(0, f"{row['learning_precision']} learning state")
    if row.get("synapse_bytes_per_synapse") is not None:
        notes.insert(0, f"eprop-gen arrays per synapse: {row['synapse_bytes_per_synapse']:.1f} B own + "
                        f"{row['shared_bytes_per_synapse']:.1f} B shared (history, neurons, windows)")
    return "; ".join(notes).replace("|", "\\|")


def _mb(value) -> str:
    return f"{value:.0f}" if isinstance(value, (int, float)) else "–"


def _events(value) -> str:
    return f"{value / 1e6:.3g} M" if isinstance(value, (int, float)) else "–"


EXTRA_COLUMN = {"nmnist": ("input Hz", "input_rate_hz"), "rate-sweep": ("input weight mean", "input_weight_mean")}
ENGINE_ORDER = ("event-driven", "time-driven", "static")


def _order(row: dict, extra: str | None) -> tuple:
    return (row.get("neurons") or 0, row.get("k") or 0, row.get(extra) or 0 if extra else 0,
            ENGINE_ORDER.index(row["engine"]) if row["engine"] in ENGINE_ORDER else 9, row["threads"])


def table(rows: list[dict], workload: str) -> list[str]:
    """Markdown table of one workload's rows, ordered by network, engine and threads."""
    header, extra = EXTRA_COLUMN.get(workload, (None, None))
    head = f"| N | K | {header + ' | ' if header else ''}engine | thr | sim ms | eprop-gen s/sim-s | NEST | Brian2 | " \
           "rate Hz (eprop-gen / NEST / Brian2) | syn. events/s (eprop-gen) | bytes/synapse (eprop-gen / NEST / " \
           "Brian2) | peak RSS MB (eprop-gen / NEST / Brian2) | notes |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in sorted(rows, key=lambda row: _order(row, extra)):
        lines.append(f"| {r.get('neurons')} | {r.get('k') if r.get('k') is not None else 'random'} | "
                     f"{_num(r.get(extra), 4) + ' | ' if extra else ''}{r['engine']} | {r['threads']} | "
                     f"{_num(r.get('sim_ms'), 5)} | {_cost(r, '')} | {_cost(r, 'nest_')} | {_cost(r, 'brian2_')} | "
                     f"{_per_simulator(r, 'rec_rate_hz', _num)} | {_events(r.get('syn_events_per_s'))} | "
                     f"{_per_simulator(r, 'bytes_per_synapse', _mb)} | {_per_simulator(r, 'peak_rss_mb', _mb)} | "
                     f"{_notes(r)} |")
    return lines


def marginal_memory(rows: list[dict]) -> str:
    """Bytes per additional synapse over the in-degree sweep (same N): the least-squares slope of the
    resident growth against the number of synapses, so per-neuron memory (history archives) drops out."""
    import numpy as np
    threads = min(r["threads"] for r in rows)
    parts = []
    for label, engine, prefix in (("eprop-gen event-driven", "event-driven", ""),
                                  ("eprop-gen time-driven", "time-driven", ""), ("NEST", "event-driven", "nest_")):
        pts = [(r[prefix + "synapses"], r[prefix + "bytes_per_synapse"] * r[prefix + "synapses"]) for r in rows
               if r["engine"] == engine and r["threads"] == threads and r.get(prefix + "bytes_per_synapse") is not None]
        if len(pts) >= 2:
            x, y = np.array(pts, dtype=float).T
            parts.append(f"{label} {np.polyfit(x, y, 1)[0]:.0f}")
    return ("Marginal memory per synapse (slope of the resident growth against the synapse count over this sweep, "
            f"{threads} thread): " + ", ".join(parts) + " bytes.") if parts else ""


def markdown(data: dict) -> str:
    rows = data.get("rows", [])
    ram = f", {data['ram_gib']:.1f} GiB RAM" if data.get("ram_gib") else ""
    lines = ["# Benchmark results", "",
             "Written by `benchmarks/run.py` from `latest.json` (regenerate with `python benchmarks/report.py`); "
             "what the workloads and columns are and how memory is measured: [../README.md](../README.md).", "",
             f"- Last run: {data.get('date', '?')}, commit `{data.get('commit', '?')}`: `{data.get('command', '')}`",
             f"- Machine: {data.get('machine', '?')}; {data.get('cpu', '?')}, {data.get('cores', '?')} cores{ram}; "
             f"Python {data.get('python', '?')}",
             "- Cost = wall-clock seconds per simulated second of the measured part (after an untimed warm-up); "
             "`skipped` / `error`: see the notes column.", ""]
    for workload, (title, text) in SECTIONS.items():
        mine = [r for r in rows if r.get("workload") == workload]
        if not mine:
            continue
        runs = sorted({f"{r.get('date')}, commit `{r.get('commit')}`" for r in mine})
        lines += [f"## {title}", "", text + f" Measured {'; '.join(runs)}.", ""]
        lines += table(mine, workload) + [""]
        if workload == "k-sweep" and marginal_memory(mine):
            lines += [marginal_memory(mine), ""]
        if workload in PLOTS:
            lines += [f"![{title}]({PLOTS[workload]})", ""]
    return "\n".join(lines)


def console_line(row: dict) -> str:
    """One line per measured row while run.py runs."""
    where = f"N={row['neurons']}" + (f" K={row['k']}" if row.get("k") else "")
    if row.get("input_weight_mean") is not None:
        where += f" in_mu={row['input_weight_mean']}"
    return (f"{row['workload']:10s} {where:24s} thr={row['threads']} {row['engine']:12s} s/sim-s: "
            f"eprop-gen {_cost(row, ''):>7s}  nest {_cost(row, 'nest_'):>7s}  brian2 {_cost(row, 'brian2_'):>7s}"
            f"  rate {_num(row.get('rec_rate_hz'))} Hz  B/syn {_mb(row.get('bytes_per_synapse'))}")


def write(data: dict, folder: Path) -> None:
    """results/README.md and the plots."""
    import plots
    (folder / "README.md").write_text(markdown(data) + "\n")
    for workload, name in PLOTS.items():
        plots.draw(workload, [r for r in data.get("rows", []) if r.get("workload") == workload], folder / name)
    print(f"written {folder / 'README.md'} and the plots")


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results" / "latest.json"
    write(json.loads(path.read_text()), path.parent)


if __name__ == "__main__":
    main()
