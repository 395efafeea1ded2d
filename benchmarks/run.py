"""Performance benchmark: network W (issue 9) in eprop-gen, NEST 3.10 and Brian2 2.9, same run.

    python benchmarks/run.py [--quick] [--sizes 1000 10000] [--threads 1 2] [--no-nest] [--no-brian2]

One input file per size (benchmarks/peers/make_network.py: connectivity, weights and input spikes
drawn once from the seed) is handed to every simulator's runner, each in its own process (Brian2 from
its own virtual environment, created from the package index on first use). Prints a table of wall
seconds per simulated second (learning on: event-driven e-prop; off: static synapses) and writes
benchmarks/results/latest.json. --quick: N = 1000, 1 thread (Brian2's code generation and compilation,
20-40 s per configuration, is most of its time).

Not yet (issue 9): the N-MNIST workload, rate and in-degree sweeps with plots, N = 100k / 1M,
bytes per synapse, float32 mode.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
RUNNERS = {"eprop-gen": "eprop_gen_w.py", "nest": "nest_w.py", "brian2": "brian2_w.py"}
FIELDS = ("wall_s_per_sim_s", "syn_events_per_s", "peak_rss_mb", "rec_rate_hz", "build_s")


def interpreter(engine: str) -> str:
    if engine != "brian2":
        return sys.executable
    done = subprocess.run([sys.executable, str(PEERS / "venv.py"), "brian2"], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def run_one(engine: str, network: Path, threads: int, learning: bool) -> dict | None:
    command = [interpreter(engine), str(PEERS / RUNNERS[engine]), str(network), "--threads", str(threads)]
    if learning:
        command.append("--learning")
    done = subprocess.run(command, capture_output=True, text=True, cwd=PEERS)
    if done.returncode != 0:
        print(f"  {engine} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}",
              file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
    return done.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-nest", action="store_true")
    parser.add_argument("--no-brian2", action="store_true")
    args = parser.parse_args()
    sizes, threads = ([1000], [1]) if args.quick else (args.sizes, args.threads)
    engines = ["eprop-gen"] + ([] if args.no_nest else ["nest"]) + ([] if args.no_brian2 else ["brian2"])
    sys.path.insert(0, str(PEERS))
    from make_network import make_network
    import numpy as np
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in sizes:
            network = Path(folder) / f"w{n}.npz"
            np.savez(network, **make_network(n, seed=1))
            for learning in (True, False):
                for t in threads:
                    row = {"workload": "W-eprop" if learning else "W-static", "neurons": n, "threads": t}
                    for engine in engines:
                        result = run_one(engine, network, t, learning)
                        prefix = "" if engine == "eprop-gen" else engine.replace("-", "") + "_"
                        if result is not None:
                            row.update({prefix + k: result.get(k) for k in FIELDS})
                    row["engine"] = "event-driven" if learning else "static"
                    rows.append(row)
                    print(_line(row), flush=True)
    out = HERE / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"date": datetime.date.today().isoformat(), "machine": platform.platform(),
                               "processor": platform.processor(), "commit": commit(), "rows": rows}, indent=1))
    print(f"written {out}")


def _line(row: dict) -> str:
    def f(key):
        value = row.get(key)
        return f"{value:8.3f}" if isinstance(value, (int, float)) else "       -"
    return (f"{row['workload']:9s} N={row['neurons']:<7d} threads={row['threads']}  s/sim-s: eprop-gen {f('wall_s_per_sim_s')}"
            f"  nest {f('nest_wall_s_per_sim_s')}  brian2 {f('brian2_wall_s_per_sim_s')}")


if __name__ == "__main__":
    main()
