"""PNG plots of cost (wall s per simulated s) against recurrent rate, in-degree K and size N (report.write)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")                       # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

# (label, engine of the row, prefix of the simulator's fields, matplotlib format)
SERIES = (
    ("eprop-gen event-driven e-prop", "event-driven", "", "o-C0"),
    ("eprop-gen time-driven e-prop", "time-driven", "", "s-C1"),
    ("NEST 3.10 event-driven e-prop", "event-driven", "nest_", "^--C2"),
    ("Brian2 2.9 hand-written time-driven e-prop", "event-driven", "brian2_", "v--C3"),
    ("eprop-gen static", "static", "", "o:C7"),
    ("NEST static", "static", "nest_", "^:C8"),
    ("Brian2 static", "static", "brian2_", "v:C9"),
)
X_AXIS = {  # workload: (x label, x of a row for a simulator prefix)
    "rate-sweep": ("recurrent rate (Hz, measured)", lambda row, prefix: row.get(prefix + "rec_rate_hz")),
    "k-sweep": ("recurrent in-degree K", lambda row, prefix: row.get("k")),
    "W": ("neurons N (K = 100)", lambda row, prefix: row.get("neurons")),
}


def points(rows: list[dict], workload: str, engine: str, prefix: str) -> tuple[list, list]:
    """(x, cost) of one series, sorted by x; rows without a measurement are left out."""
    x_of = X_AXIS[workload][1]
    pairs = sorted((x_of(r, prefix), r[prefix + "wall_s_per_sim_s"]) for r in rows
                   if r["engine"] == engine and r.get(prefix + "wall_s_per_sim_s") and x_of(r, prefix))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def draw(workload: str, rows: list[dict], path: Path) -> None:
    """One plot of a workload's rows at the fewest threads measured (other thread counts: the table)."""
    if not rows:
        return
    threads = min(r["threads"] for r in rows)
    rows = [r for r in rows if r["threads"] == threads]
    if workload != "W":                     # a sweep at one N: the N with the most rows (ties: the newest)
        count = {r["neurons"]: sum(q["neurons"] == r["neurons"] for q in rows) for r in rows}
        newest = {r["neurons"]: i for i, r in enumerate(rows)}
        n = max(count, key=lambda m: (count[m], newest[m]))
        rows = [r for r in rows if r["neurons"] == n]
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    for label, engine, prefix, style in SERIES:
        x, y = points(rows, workload, engine, prefix)
        if x:
            ax.plot(x, y, style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(X_AXIS[workload][0])
    ax.set_ylabel("wall s per simulated s")
    context = {"rate-sweep": f"N = {rows[0]['neurons']}, K = 100", "k-sweep": f"N = {rows[0]['neurons']}",
               "W": "network W"}[workload]
    dates = sorted({r.get("date", "?") for r in rows})
    ax.set_title(f"{context}, {threads} thread{'s' if threads > 1 else ''} ({', '.join(dates)})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))     # outside: never hides a point
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
