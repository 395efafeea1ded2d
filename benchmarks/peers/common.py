"""Shared by the peer runners (no simulator imports here; numpy only, any numpy version >= 1.23)."""
from __future__ import annotations

import argparse
import json
import resource
import sys

import numpy as np


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("network", help="input file written by make_network.py")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--learning", action="store_true", help="e-prop on (otherwise static synapses)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure R times (fresh network each time), report the fastest (noisy machines)")
    return parser.parse_args()


def load(path) -> dict:
    with np.load(path) as f:
        return {key: (f[key].item() if f[key].ndim == 0 else f[key]) for key in f.files}


def window(net: dict) -> tuple[float, float]:
    """The measured interval (t0, t1] in ms: after the warm-up, t_ms long."""
    t0 = float(net["t_warmup_ms"])
    return t0, t0 + float(net["t_ms"])


def synaptic_events(net: dict, rec_senders: np.ndarray) -> int:
    """Synaptic events (one spike crossing one synapse) caused by the spikes emitted in the measured interval:
    input spikes × n (all-to-all) + each recurrent spike × its out-degree (recurrent + readout synapses).
    `rec_senders`: 0-based indices of the recurrent neurons' spikes in the measured interval."""
    t0, t1 = window(net)
    times = net["input_times"]
    n_input_spikes = int(np.count_nonzero((times > t0) & (times <= t1)))
    out_degree = np.bincount(net["rec_sources"], minlength=net["n"]) + net["n_out"]
    return n_input_spikes * int(net["n"]) + int(out_degree[rec_senders].sum())


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


def peak_rss_mb() -> float:
    """Peak resident set size of this process image in MB: VmHWM of /proc/self/status (Linux).

    Not getrusage().ru_maxrss: Linux carries ru_maxrss across fork + exec, so a runner started by a
    parent that holds a large network would report the parent's peak (verified: a child of an 800 MB
    parent reports 790 MB). Elsewhere, ru_maxrss is the fallback."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    scale = 1024.0 ** 2 if sys.platform == "darwin" else 1024.0      # bytes on macOS, kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def emit(row: dict) -> None:
    """The runner's result: exactly one JSON line on stdout."""
    sys.stdout.write(json.dumps(row) + "\n")
    sys.stdout.flush()
