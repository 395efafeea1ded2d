"""`eprop-gen demo`: compile a shipped model and run a sparse recurrent network on it, offline."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from . import models
from .compiler import compile_model
from .engine import FixedIndegree, Network


def poisson_trains(n: int, rate_hz: float, t_ms: float, dt: float, rng: np.random.Generator):
    """Spike times on the dt grid (at most one spike per source and step) and sender ids."""
    steps = int(round(t_ms / dt))
    spikes = rng.random((steps, n)) < rate_hz * dt * 1e-3
    step, sender = np.nonzero(spikes)
    return (step + 1) * dt, sender


def run_demo(neurons: int = 2000, t_ms: float = 1000.0, threads: int = 2, seed: int = 1,
             echo: Callable[[str], None] = print) -> dict:
    dt = 0.1
    start = time.perf_counter()
    model = compile_model(models.path("iaf_psc_exp"))
    echo(f"compiled iaf_psc_exp in {time.perf_counter() - start:.2f} s -> {model.source_path}")

    n_exc = int(0.8 * neurons)
    n_inh = neurons - n_exc
    n_ext = 200
    rng = np.random.default_rng(seed)
    times, senders = poisson_trains(n_ext, 40.0, t_ms, dt, rng)

    net = Network(dt=dt, threads=threads, seed=seed)
    ext = net.add_spike_source(n_ext, times=times, senders=senders, name="poisson")
    exc = net.add_population(model, n_exc, params={"I_e": 300.0}, name="exc")
    inh = net.add_population(model, n_inh, params={"I_e": 300.0}, name="inh")
    k_e, k_i = max(1, n_exc // 10), max(1, n_inh // 10)
    for target in (exc, inh):
        net.connect(ext, target, port="ex", rule=FixedIndegree(50), weight=60.0, delay=1)
        net.connect(exc, target, port="ex", rule=FixedIndegree(k_e, allow_autapses=False), weight=30.0, delay=15)
        net.connect(inh, target, port="in", rule=FixedIndegree(k_i, allow_autapses=False), weight=-300.0, delay=15)
    synapses = (50 + k_e + k_i) * neurons
    echo(f"network: {n_exc} exc + {n_inh} inh iaf_psc_exp, {synapses:,} synapses, "
         f"{n_ext} Poisson inputs at 40 Hz, dt = {dt} ms, {threads} thread(s)")

    start = time.perf_counter()
    net.simulate(t_ms)
    wall = time.perf_counter() - start
    rates = {}
    for pop in (exc, inh):
        _, ids = net.spikes(pop)
        rates[pop.name] = len(ids) / pop.n / (t_ms * 1e-3)
    echo(f"simulated {t_ms:g} ms in {wall:.2f} s wall ({wall / (t_ms * 1e-3):.2f} s per simulated s)")
    echo(f"mean rates: excitatory {rates['exc']:.1f} Hz, inhibitory {rates['inh']:.1f} Hz")
    echo("next: eprop-gen check iaf_psc_alpha | eprop-gen compile MODEL.eprop | docs/language.md")
    return {"rates": rates, "wall_s": wall, "synapses": synapses}
