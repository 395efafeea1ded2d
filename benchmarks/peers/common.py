"""Shared by the peer runners (no simulator imports here; numpy only, any numpy version >= 1.23)."""
from __future__ import annotations

import argparse
import json
import resource
import sys

import numpy as np


def argument_parser(description: str) -> argparse.ArgumentParser:
    """The options every runner takes; a runner may add its own before parsing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("network", help="input file written by make_network.py")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--learning", action="store_true", help="e-prop on (otherwise static synapses)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure R times (fresh network each time), report the fastest (noisy machines)")
    return parser


def parse_args(description: str) -> argparse.Namespace:
    return argument_parser(description).parse_args()


def load(path) -> dict:
    with np.load(path) as f:
        return {key: (f[key].item() if f[key].ndim == 0 else f[key]) for key in f.files}


def delay_steps(net: dict) -> int:
    """The delay of every input, recurrent and readout synapse in steps of dt (files without the key: 1)."""
    return int(net.get("delay_steps", 1))


def refuse_learning_delay(net: dict, runner: str, why: str) -> None:
    """Exit with a clear message: this runner's learning network needs delays of one step."""
    if delay_steps(net) != 1:
        raise SystemExit(f"{runner}: learning with delays of {delay_steps(net)} steps is not supported ({why}); "
                         "run the file without --learning, or make it with --delay-steps 1")


def window(net: dict) -> tuple[float, float]:
    """The measured interval (t0, t1] in ms: after the warm-up, t_ms long."""
    t0 = float(net["t_warmup_ms"])
    return t0, t0 + float(net["t_ms"])


def synaptic_events(net: dict, rec_senders: np.ndarray) -> int:
    """Synaptic events (one spike crossing one synapse) caused by the spikes emitted in the measured interval:
    each input spike × its input's out-degree (n in network W: all-to-all) + each recurrent spike × its
    out-degree (recurrent + readout synapses).
    `rec_senders`: 0-based indices of the recurrent neurons' spikes in the measured interval."""
    t0, t1 = window(net)
    times = net["input_times"]
    measured_inputs = net["input_senders"][(times > t0) & (times <= t1)]
    in_out_degree = np.bincount(net["in_sources"], minlength=net["n_in"])
    n = net["n"]
    out_degree = np.bincount(net["rec_sources"], minlength=n) + np.bincount(net["out_sources"], minlength=n)
    return int(in_out_degree[measured_inputs].sum()) + int(out_degree[rec_senders].sum())


def activity_stats(net: dict, rec_times: np.ndarray, rec_senders: np.ndarray) -> dict:
    """Rate (Hz) and synchrony of the recurrent spikes in the measured interval. `sync_corr_5ms`: mean
    pairwise spike-count correlation in 5 ms bins estimated from the population count,
    (var/mean of the population count - 1) / (n - 1): ~0 asynchronous, -> 1 fully synchronous."""
    t0, t1 = window(net)
    n = int(net["n"])
    rate = len(rec_times) / n / ((t1 - t0) * 1e-3)
    counts = np.histogram(rec_times, bins=np.arange(t0, t1 + 1e-9, 5.0))[0]
    fano = counts.var() / counts.mean() if counts.mean() > 0 else float("nan")
    return {"rec_rate_hz": round(rate, 3), "sync_corr_5ms": round(float((fano - 1.0) / (n - 1)), 5)}


def synapse_count(net: dict) -> int:
    """The network's synapses: input, recurrent and readout (not the n·n_out feedback connections)."""
    return len(net["in_sources"]) + len(net["rec_sources"]) + len(net["out_sources"])


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Resident set size of this process now in MB (VmRSS; ru_maxrss where /proc is missing)."""
    current = _status_mb("VmRSS")
    return current if current is not None else peak_rss_mb()


def memory_fields(rss_before_synapses_mb: float, synapses: int, rss_after_mb: float | None = None,
                  peak_after_mb: float | None = None) -> dict:
    """Memory per synapse, measured in one process: the growth of the resident set from just before the
    first synapse is created (populations built, the input file loaded) to after the measured run,
    divided by the number of synapses. `bytes_per_synapse` uses the resident set after the run (what the
    network holds: synapses, their learning state, whatever else grows with them), `peak_bytes_per_synapse`
    the peak (adds what construction needed transiently). Both include the n·n_out feedback connections
    and whatever grows per neuron after the synapses exist (e-prop history archives, which grow with the
    longest replay window, recorded spikes): they are the memory the network needs per synapse, not the
    size of a synapse alone (run.py's in-degree sweep gives the marginal cost, the slope over K)."""
    rss_after = rss_mb() if rss_after_mb is None else rss_after_mb
    peak = peak_rss_mb() if peak_after_mb is None else peak_after_mb
    per_synapse = 1024.0 ** 2 / max(synapses, 1)
    return {"synapses": synapses, "rss_before_synapses_mb": round(rss_before_synapses_mb, 1),
            "rss_mb": round(rss_after, 1), "peak_rss_mb": round(peak, 1),
            "bytes_per_synapse": round((rss_after - rss_before_synapses_mb) * per_synapse, 1),
            "peak_bytes_per_synapse": round((peak - rss_before_synapses_mb) * per_synapse, 1)}


def peak_rss_mb() -> float:
    """Peak resident set size of this process image in MB: VmHWM of /proc/self/status (Linux).

    Not getrusage().ru_maxrss: Linux carries ru_maxrss across fork + exec, so a runner started by a
    parent that holds a large network would report the parent's peak (verified: a child of an 800 MB
    parent reports 790 MB). Elsewhere, ru_maxrss is the fallback."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    scale = 1024.0 ** 2 if sys.platform == "darwin" else 1024.0      # bytes on macOS, kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def emit(row: dict) -> None:
    """The runner's result: exactly one JSON line on stdout."""
    sys.stdout.write(json.dumps(row) + "\n")
    sys.stdout.flush()
