"""Run the peer runners over a grid and print a markdown table (how the README's table was made).

    python benchmarks/peers/validate.py [--sizes 1000 10000] [--threads 1 2] [--simulators nest brian2]
                                        [--seed 1] [--jsonl results.jsonl] [--workdir DIR]

One input file per size (make_network.py, written once into --workdir, default a temporary folder),
every configuration in its own subprocess: NEST with this python, Brian2 with the python of its venv
(venv.py creates it on first use). Each runner's JSON line is appended to --jsonl if given.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def runner_command(simulator: str) -> list[str]:
    if simulator == "nest":
        return [sys.executable, str(HERE / "nest_w.py")]
    if simulator == "brian2":
        python = subprocess.run([sys.executable, str(HERE / "venv.py"), "brian2"], check=True,
                                capture_output=True, text=True).stdout.strip().splitlines()[-1]
        return [python, str(HERE / "brian2_w.py")]
    raise ValueError(simulator)


def probe() -> float:
    """A crude load indicator: how long this CPU takes for a fixed pure-Python loop (best of 3)."""
    best = float("inf")
    for _ in range(3):
        start, total = time.perf_counter(), 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--simulators", nargs="+", default=["nest", "brian2"], choices=["nest", "brian2"])
    parser.add_argument("--learning", choices=["both", "on", "off"], default="both")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="passed to the runners: fastest of R measurements")
    parser.add_argument("--jsonl")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="peers_"))
    workdir.mkdir(parents=True, exist_ok=True)
    learning = {"both": [True, False], "on": [True], "off": [False]}[args.learning]
    commands = {sim: runner_command(sim) for sim in args.simulators}
    print(f"machine probe (pure-Python loop of 1e7 additions, best of 3, s; compare runs): {probe():.2f}")
    print("| simulator | learning | N | threads | wall s / sim s | build s | peak RSS MB | rate Hz | sync | "
          "syn events / s | run wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for n in args.sizes:
        network = workdir / f"w_n{n}_s{args.seed}.npz"
        if not network.exists():
            subprocess.run([sys.executable, str(HERE / "make_network.py"), "--n", str(n), "--seed", str(args.seed),
                            "--out", str(network)], check=True, stdout=subprocess.DEVNULL)
        for learn in learning:
            for sim in args.simulators:
                for threads in args.threads:
                    cmd = commands[sim] + [str(network), "--threads", str(threads), "--repeat", str(args.repeat)]
                    cmd += ["--learning"] if learn else []
                    start = time.perf_counter()
                    done = subprocess.run(cmd, capture_output=True, text=True)
                    elapsed = time.perf_counter() - start
                    if done.returncode != 0:
                        tail = done.stderr.strip().splitlines()[-3:]
                        print(f"| {sim} | {learn} | {n} | {threads} | failed: {' / '.join(tail)} |", flush=True)
                        continue
                    row = json.loads(done.stdout.strip().splitlines()[-1])
                    row["run_wall_s"] = round(elapsed, 1)
                    if args.jsonl:
                        with open(args.jsonl, "a") as f:
                            f.write(json.dumps(row) + "\n")
                    print(f"| {sim} | {'e-prop' if learn else 'static'} | {n} | {threads} | "
                          f"{row['wall_s_per_sim_s']:.4g} | {row['build_s']:.3g} | {row['peak_rss_mb']:.0f} | "
                          f"{row['rec_rate_hz']:.2f} | {row['sync_corr_5ms']:.3f} | {row['syn_events_per_s']:.3g} | "
                          f"{elapsed:.0f} |", flush=True)
    print(f"machine probe: {probe():.2f}")


if __name__ == "__main__":
    main()
