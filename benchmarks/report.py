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
                       "hand-written time-driven e-prop; on the static row: static synapses. delay: of every "
                       "synapse, in steps of dt = 1 ms (`run.py --delay-steps`; W: 1; more: static only)."),
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
DT_MS = 1.0                                          # the resolution of every workload (make_network, make_nmnist)
MPI_TITLE = "One network across MPI ranks (issue 10)"
MPI_TEXT = ("eprop-gen alone, as one network across R ranks (`mpirun -n R`, `run.py --ranks`), each with T "
            "threads, next to one process (1 × T) measured in the same run. A learning network exchanges every "
            "step; one without learning whose delays are all D steps (delay column) delivers its spikes in "
            "batches of D steps and exchanges once per batch. comm share = the slowest rank's wall "
            "seconds in the exchanges (waiting for the other ranks included) / the timed wall seconds; "
            "bytes/step = bytes sent by all ranks per step: per exchange each rank's counts (8 B per population "
            "and kind of event), 4 B per spike (an int32 id; in batches an int32 (id, step offset) pair, 8 B) "
            "and, with learning, its readouts' errors; exchanges/step = exchanges per step of the busiest rank; "
            "synapse MB = connectivity + synapse state "
            "(`Network.memory()`), total MB = all its parts (neurons, connectivity, synapse state, windows, "
            "history), each rank's, separated by /. Neuron state, input rings and the window bookkeeping are "
            "not divided across ranks yet (full size on every rank); the e-prop history is since commit "
            "`dd37d8c` (rows measured before it hold the whole history on every rank: W 10k time-driven 2 × 1 "
            "had 602 MB per rank). Spike ids are int32 since commit `3b31be1` (int64 before: the "
            "event-driven W rows of commit `99641d5` sent 133 B/step at N = 1000 and 613 at N = 10000 on 2 × 1).")


def ranks_of(row: dict) -> int:
    """Rows measured before `ranks` existed ran in one process."""
    return row.get("ranks") or 1


def delay_of(row: dict) -> int:
    """Rows measured before `delay_steps` existed had delays of one step."""
    return row.get("delay_steps") or 1


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


EXTRA_COLUMN = {"nmnist": ("input Hz", "input_rate_hz"), "rate-sweep": ("input weight mean", "input_weight_mean"),
                "W": ("delay", "delay_steps")}
COLUMN_DEFAULTS = {"delay_steps": 1}                  # rows measured before the field existed


def _extra(row: dict, key: str):
    return row.get(key, COLUMN_DEFAULTS.get(key))
ENGINE_ORDER = ("event-driven", "time-driven", "static")


def _order(row: dict, extra: str | None) -> tuple:
    return (row.get("neurons") or 0, row.get("k") or 0, _extra(row, extra) or 0 if extra else 0,
            ENGINE_ORDER.index(row["engine"]) if row["engine"] in ENGINE_ORDER else 9, row["threads"], ranks_of(row))


def table(rows: list[dict], workload: str) -> list[str]:
    """Markdown table of one workload's rows, ordered by network, engine and threads."""
    header, extra = EXTRA_COLUMN.get(workload, (None, None))
    head = f"| N | K | {header + ' | ' if header else ''}engine | thr | sim ms | eprop-gen s/sim-s | NEST | Brian2 | " \
           "rate Hz (eprop-gen / NEST / Brian2) | syn. events/s (eprop-gen) | bytes/synapse (eprop-gen / NEST / " \
           "Brian2) | peak RSS MB (eprop-gen / NEST / Brian2) | notes |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in sorted(rows, key=lambda row: _order(row, extra)):
        lines.append(f"| {r.get('neurons')} | {r.get('k') if r.get('k') is not None else 'random'} | "
                     f"{_num(_extra(r, extra), 4) + ' | ' if extra else ''}{r['engine']} | {r['threads']} | "
                     f"{_num(r.get('sim_ms'), 5)} | {_cost(r, '')} | {_cost(r, 'nest_')} | {_cost(r, 'brian2_')} | "
                     f"{_per_simulator(r, 'rec_rate_hz', _num)} | {_events(r.get('syn_events_per_s'))} | "
                     f"{_per_simulator(r, 'bytes_per_synapse', _mb)} | {_per_simulator(r, 'peak_rss_mb', _mb)} | "
                     f"{_notes(r)} |")
    return lines


def _per_rank_mb(values) -> str:
    return " / ".join(f"{v / 2 ** 20:.3g}" for v in values) if values else "–"


def _mpi_order(row: dict) -> tuple:
    return (row.get("learning_precision", "float64"), row.get("workload"), row.get("neurons") or 0, row.get("k") or 0,
            ENGINE_ORDER.index(row["engine"]) if row["engine"] in ENGINE_ORDER else 9, delay_of(row),
            ranks_of(row) * row["threads"], -ranks_of(row))


def network(row: dict) -> tuple:
    """What makes two rows the same network (all but ranks and threads)."""
    return (row.get("workload"), row.get("neurons"), row.get("k"), row["engine"],
            row.get("learning_precision", "float64"), row.get("input_weight_mean"), row.get("input_rate_hz"),
            delay_of(row))


def mpi_rows(rows: list[dict]) -> list[dict]:
    """Rows of the networks (workload, N, K, engine, precision, delay) measured on more than one rank, with
    their one-process rows that carry the per-rank figures (measured with --ranks)."""
    spread = {network(r) for r in rows if ranks_of(r) > 1}
    return [r for r in rows if network(r) in spread and (ranks_of(r) > 1 or "memory_per_rank" in r)]


def mpi_table(rows: list[dict]) -> list[str]:
    """Markdown table of the MPI rows: cost, communication and memory per rank."""
    head = ("| workload | N | K | engine | delay | ranks × threads | sim ms | wall s per sim s | comm share | "
            "bytes/step | exchanges/step | synapse MB per rank | total MB per rank | peak RSS MB per rank | rate Hz | "
            "notes |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in sorted(rows, key=_mpi_order):
        memory = r.get("memory_per_rank") or []
        share = r.get("comm_share")
        notes = [f"{r['learning_precision']} learning state"] if r.get("learning_precision", "float64") != "float64" else []
        notes += [f"{key}: {r[key]}" for key in ("skipped", "error") if r.get(key)]
        lines.append(f"| {r['workload']} | {r.get('neurons')} | {r.get('k') if r.get('k') is not None else 'random'} | "
                     f"{r['engine']} | {delay_of(r)} | {ranks_of(r)} × {r['threads']} | "
                     f"{_num(r.get('sim_ms'), 5)} | {_cost(r, '')} | "
                     f"{f'{share:.1%}' if isinstance(share, (int, float)) else '–'} | {_num(r.get('bytes_per_step'))} | "
                     f"{_num(r.get('exchanges_per_step')) if ranks_of(r) > 1 else '–'} | "
                     f"{_per_rank_mb(r.get('synapse_bytes_per_rank'))} | "
                     f"{_per_rank_mb([sum(m.values()) for m in memory])} | "
                     f"{' / '.join(_mb(v) for v in r.get('peak_rss_mb_per_rank') or [r.get('peak_rss_mb')])} | "
                     f"{_num(r.get('rec_rate_hz'))} | {'; '.join(notes).replace('|', chr(92) + '|')} |")
    return lines


def _comm_figures(row: dict) -> str:
    share, comm_s, per_step = row.get("comm_share"), row.get("comm_s"), row.get("exchanges_per_step")
    exchanges = per_step * row["sim_ms"] / DT_MS if per_step and row.get("sim_ms") else None
    return (f"exchanges/step {_num(per_step)}, bytes/step {_num(row.get('bytes_per_step'))}, comm share "
            f"{f'{share:.1%}' if isinstance(share, (int, float)) else '–'}"
            + (f" ({comm_s / exchanges * 1e3:.2g} ms per exchange)" if comm_s is not None and exchanges else "")
            + f", {_cost(row, '')} s per sim s")


def delay_findings(rows: list[dict]) -> list[str]:
    """One line per network measured on the same ranks × threads with several delays: its communication per
    delay, from the rows (so it always says what the table says), with the one-process cost on as many cores."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if ranks_of(r) > 1 and r.get("wall_s_per_sim_s") is not None:
            groups.setdefault((network(r)[:-1], ranks_of(r), r["threads"]), []).append(r)
    lines = []
    for same in sorted(groups.values(), key=lambda rs: _mpi_order(rs[0])):
        if len({delay_of(r) for r in same}) < 2:
            continue
        parts = []
        for r in sorted(same, key=delay_of):
            cores = ranks_of(r) * r["threads"]
            alone = [q for q in rows if network(q) == network(r) and ranks_of(q) == 1 and q["threads"] == cores]
            parts.append(f"delay {delay_of(r)}: {_comm_figures(r)}"
                         + (f" (1 × {cores}: {_cost(alone[-1], '')})" if alone else ""))
        r = same[0]
        lines.append(f"- {r['workload']} {r['engine']}, N = {r.get('neurons')}, {ranks_of(r)} × {r['threads']}: "
                     + "; ".join(parts) + ".")
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
        mine = [r for r in rows if r.get("workload") == workload and ranks_of(r) == 1]
        if not mine:
            continue
        runs = sorted({f"{r.get('date')}, commit `{r.get('commit')}`" for r in mine})
        lines += [f"## {title}", "", text + f" Measured {'; '.join(runs)}.", ""]
        lines += table(mine, workload) + [""]
        for n in sorted({r.get("neurons") for r in mine}) if workload == "k-sweep" else []:
            text = marginal_memory([r for r in mine if r.get("neurons") == n])       # one N: per-neuron memory drops out
            lines += [f"N = {n}: " + text, ""] if text else []
        if workload in PLOTS:
            lines += [f"![{title}]({PLOTS[workload]})", ""]
    spread = mpi_rows(rows)
    if spread:
        runs = sorted({f"{r.get('date')}, commit `{r.get('commit')}`" for r in spread})
        lines += [f"## {MPI_TITLE}", "", MPI_TEXT + f" Measured {'; '.join(runs)}.", ""]
        findings = delay_findings(spread)
        lines += ["The same network with other delays (from the table):", "", *findings, ""] if findings else []
        lines += mpi_table(spread) + [""]
    return "\n".join(lines)


def console_line(row: dict) -> str:
    """One line per measured row while run.py runs."""
    where = f"N={row['neurons']}" + (f" K={row['k']}" if row.get("k") else "")
    if row.get("input_weight_mean") is not None:
        where += f" in_mu={row['input_weight_mean']}"
    if delay_of(row) != 1:
        where += f" delay={delay_of(row)}"
    return (f"{row['workload']:10s} {where:24s} ranks={ranks_of(row)} thr={row['threads']} {row['engine']:12s} s/sim-s: "
            f"eprop-gen {_cost(row, ''):>7s}  nest {_cost(row, 'nest_'):>7s}  brian2 {_cost(row, 'brian2_'):>7s}"
            f"  rate {_num(row.get('rec_rate_hz'))} Hz  B/syn {_mb(row.get('bytes_per_synapse'))}"
            + (f"  comm {row['comm_share']:.1%} {_num(row.get('bytes_per_step'))} B/step "
               f"{_num(row.get('exchanges_per_step'))} exch/step" if ranks_of(row) > 1 and "comm_share" in row else ""))


def write(data: dict, folder: Path) -> None:
    """results/README.md and the plots."""
    import plots
    (folder / "README.md").write_text(markdown(data) + "\n")
    for workload, name in PLOTS.items():                # one process, delays of one step only (others: the tables)
        plots.draw(workload, [r for r in data.get("rows", []) if r.get("workload") == workload and ranks_of(r) == 1
                              and delay_of(r) == 1], folder / name)
    print(f"written {folder / 'README.md'} and the plots")


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results" / "latest.json"
    write(json.loads(path.read_text()), path.parent)


if __name__ == "__main__":
    main()
