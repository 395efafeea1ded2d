"""Network W (issue 9) in Brian2 2.9 C++ standalone, from an input file of make_network.py; one JSON line.

    $(python benchmarks/peers/venv.py brian2) benchmarks/peers/brian2_w.py network.npz [--threads T] [--learning]

Runs with the python of the Brian2 venv (Brian2 2.9.0 does not import with numpy >= 2.4). Without
--learning: LIF neurons as NEST's iaf_psc_delta (exact decay, input discarded and voltage clamped
while refractory, reset to V_reset), delta synapses, 2 leaky readouts; the file's `delay_steps` D as a
synaptic delay of (D − 1)·dt on every synapse (the schedule already delays by one step). With --learning
(delays of one step only): time-driven e-prop written as per-synapse state updated every step (what a
Brian2 user writes by hand): recurrent neurons as NEST's eprop_iaf (reset by subtracting V_th, no
clamp while refractory, pseudo-derivative psi = height·max(0, 1 - |v - V_th|/width), 0 while
refractory), and on every input, recurrent and readout synapse each step
    zbar <- alpha·zbar (+1 on a presynaptic spike),  ebar <- kappa·ebar + psi_post·zbar,
    g <- g + L_post·ebar            (readout synapses: g <- g + err_post·zbar)
with the learning signal L_j = sum_k B_jk (y_k - target) a summed variable of feedback synapses
readout -> neuron; the weights get w <- clip(w - eta·g, -100, 100) once at the end (inside the timed part).

Memory per synapse (common.memory_fields): the binary's VmRSS just before the first synapse is created
(after loading its arrays) and VmRSS / VmHWM at the end, read inside it.

Timing: the whole network (warm-up run, then measured run) is one standalone binary. `build_s` is the
Python model construction + Brian2 code generation + compilation (cold, in a fresh temporary project
folder). `wall_s_per_sim_s` is measured inside the binary with std::chrono::steady_clock around the
measured run only (after the warm-up run, excluding loading arrays and creating synapses), plus the
final weight update with learning. Peak RSS: the binary's own VmHWM (/proc/self/status), read
inside it at the end (getrusage's ru_maxrss would include the Python parent's RSS, inherited over
fork + exec, and RUSAGE_CHILDREN in Python the compiler's peak). Threads:
--threads 1 compiles without OpenMP (openmp_threads = 0); T > 1 sets openmp_threads = T.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import numpy as np  # noqa: E402

BENCH_FILE = "bench_timing.txt"
# C++ inserted into the binary's main(): a field of /proc/self/status in kB (-1 if missing)
STATUS_KB = """auto _bench_status_kb = [](const char* field) {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::string(field).size()));
    return -1L;
};"""


def build(b2, net: dict, learning: bool):
    """Declare network W in Brian2 (device already set); returns the spike monitor of the neurons."""
    ms = b2.ms
    n, n_in, n_out, dt = net["n"], net["n_in"], net["n_out"], net["dt"]
    b2.defaultclock.dt = dt * ms
    ns = {"tau_m": net["tau_m"] * ms, "tau_out": net["tau_out"] * ms, "V_th": net["V_th"],
          "V_reset": net["V_reset"], "alpha": float(np.exp(-dt / net["tau_m"])),
          "alpha_out": float(np.exp(-dt / net["tau_out"])), "kappa": net["kappa"],
          "height": net["surrogate_height"], "width": net["surrogate_width"], "eta": net["eta"],
          "target": net["target"], "w_min": -100.0, "w_max": 100.0}

    # delays of delay_steps: a spike detected in step t is delivered in step t + 1 + delay (schedule below)
    delay = {"delay": (common.delay_steps(net) - 1) * dt * ms} if common.delay_steps(net) > 1 else {}
    inputs = b2.SpikeGeneratorGroup(n_in, net["input_senders"].astype(np.int64), net["input_times"] * ms,
                                    name="inputs")
    if learning:
        G = b2.NeuronGroup(n, """dv/dt = -v / tau_m : 1
                                 psi : 1
                                 L : 1""",
                           threshold="v >= V_th", reset="v -= V_th", refractory=net["t_ref"] * ms,
                           method="exact", namespace=ns, name="rec")
        # pseudo-derivative of eprop_iaf (piecewise linear, zero while refractory), once per step
        G.run_regularly("psi = height * clip(1 - abs(v - V_th) / width, 0, 1) * int(not_refractory)",
                        when="after_thresholds", name="rec_psi")
        R = b2.NeuronGroup(n_out, """dy/dt = -y / tau_out : 1
                                     err = y - target : 1""", method="exact", namespace=ns, name="readout")
        hidden = """w : 1
                    zbar : 1
                    ebar : 1
                    g : 1"""
        on_pre = "v_post += w\nzbar += 1"
        step_hidden = """ebar = kappa * ebar + psi_post * zbar
                         g += L_post * ebar
                         zbar = alpha * zbar"""
        S_in = b2.Synapses(inputs, G, hidden, on_pre=on_pre, namespace=ns, name="s_in")
        S_rec = b2.Synapses(G, G, hidden, on_pre=on_pre, namespace=ns, name="s_rec")
        S_out = b2.Synapses(G, R, "w : 1\nzbar : 1\ng : 1", on_pre="y_post += w\nzbar += 1", namespace=ns,
                            name="s_out")
        plastic = [(S_in, step_hidden), (S_rec, step_hidden),
                   (S_out, "g += err_post * zbar\nzbar = alpha_out * zbar")]
    else:
        G = b2.NeuronGroup(n, "dv/dt = -v / tau_m : 1 (unless refractory)",
                           threshold="v >= V_th", reset="v = V_reset", refractory=net["t_ref"] * ms,
                           method="exact", namespace=ns, name="rec")
        R = b2.NeuronGroup(n_out, "dy/dt = -y / tau_out : 1", method="exact", namespace=ns, name="readout")
        on_pre = "v_post += w * int(not_refractory_post)"   # iaf_psc_delta discards input while refractory
        S_in = b2.Synapses(inputs, G, "w : 1", on_pre=on_pre, namespace=ns, name="s_in", **delay)
        S_rec = b2.Synapses(G, G, "w : 1", on_pre=on_pre, namespace=ns, name="s_rec", **delay)
        S_out = b2.Synapses(G, R, "w : 1", on_pre="y_post += w", namespace=ns, name="s_out", **delay)
        plastic = []

    # resident set just before the first synapse is created (arrays loaded, groups allocated): the baseline
    # of the memory per synapse (common.memory_fields)
    b2.device.insert_code("main", STATUS_KB + "\nconst long _bench_rss_before_kb = _bench_status_kb(\"VmRSS:\");")
    for syn, key in ((S_in, "in"), (S_rec, "rec"), (S_out, "out")):
        syn.connect(i=net[key + "_sources"].astype(np.int64), j=net[key + "_targets"].astype(np.int64))
        syn.w = net[key + "_weights"].astype(np.float64)
    extra = [S_in, S_rec, S_out]
    if learning:
        for syn, code in plastic:
            syn.run_regularly(code, when="end", name=syn.name + "_eprop")
        fb = b2.Synapses(R, G, "B : 1\nL_post = B * err_pre : 1 (summed)", namespace=ns, name="feedback")
        k_idx, j_idx = np.meshgrid(np.arange(n_out), np.arange(n), indexing="xy")
        fb.connect(i=k_idx.ravel(), j=j_idx.ravel())
        fb.B = net["B"].astype(np.float64)[j_idx.ravel(), k_idx.ravel()]
        extra.append(fb)
    monitor = b2.SpikeMonitor(G, name="rec_spikes")
    network = b2.Network(inputs, G, R, monitor, *extra)
    # NEST's order within a step: decay, add the spikes that arrive, threshold, reset. Brian2's default
    # (thresholds before synapses) would add input after the threshold test and decay it once before the
    # next one (~10% weaker input, 4 Hz instead of 6.5). Spikes detected in step t are delivered in step
    # t+1 (one-step delay, as NEST's delay dt), input generator spikes at t arrive at t+dt (as NEST's parrots);
    # with delay_steps D > 1, a synaptic delay of (D - 1)·dt on top: arrival at t + D·dt.
    network.schedule = ["start", "groups", "synapses", "thresholds", "resets", "end"]
    return network, monitor, [syn for syn, _ in plastic]


def main() -> None:
    keep = os.environ.get("BRIAN2_W_PROJECT")        # debugging: build there and keep the generated project
    args = common.parse_args(__doc__.splitlines()[0])
    net = common.load(args.network)
    if args.learning:
        common.refuse_learning_delay(net, "brian2_w.py", "the hand-written e-prop assumes delay = dt, as NEST's")
    t_total = time.perf_counter()
    try:
        import brian2 as b2
    except Exception as error:                     # e.g. numpy >= 2.4 in this python
        raise SystemExit(f"brian2_w.py: cannot import brian2 ({error!r}); run it with the python printed by "
                         "`python benchmarks/peers/venv.py brian2`")

    project = os.path.abspath(keep) if keep else tempfile.mkdtemp(prefix="brian2_w_")
    try:
        b2.set_device("cpp_standalone", directory=project, build_on_run=False)
        b2.prefs.devices.cpp_standalone.openmp_threads = args.threads if args.threads > 1 else 0
        b2.prefs.codegen.cpp.headers += ["<chrono>", "<sys/resource.h>", "<fstream>"]
        b2.prefs.logging.console_log_level = "WARNING"
        network, monitor, plastic = build(b2, net, args.learning)
        ms = b2.ms
        network.run(net["t_warmup_ms"] * ms)
        b2.device.insert_code("main", "auto _bench_t0 = std::chrono::steady_clock::now();")
        network.run(net["t_ms"] * ms)
        for syn in plastic:                     # gradient descent with the accumulated gradient
            syn.w = "clip(w - eta * g, w_min, w_max)"
        b2.device.insert_code("main", f"""
            const double _bench_wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - _bench_t0).count();
            const long _bench_rss_after_kb = _bench_status_kb("VmRSS:");
            long _bench_hwm_kb = _bench_status_kb("VmHWM:");   // peak RSS (ru_maxrss is inherited over exec)
            if (_bench_hwm_kb < 0) {{ struct rusage _bench_ru; getrusage(RUSAGE_SELF, &_bench_ru); _bench_hwm_kb = _bench_ru.ru_maxrss; }}
            std::ofstream _bench_out(brian::results_dir + "{BENCH_FILE}");
            _bench_out.precision(17);
            _bench_out << _bench_wall << " " << _bench_hwm_kb << " " << _bench_rss_before_kb << " "
                       << _bench_rss_after_kb << std::endl;""")
        construct_s = time.perf_counter() - t_total
        start = time.perf_counter()
        b2.device.build(directory=project, compile=True, run=False, with_output=False)
        codegen_compile_s = time.perf_counter() - start
        walls, binaries, memory = [], [], None
        for _ in range(max(1, args.repeat)):     # each repetition: the whole binary again (same network, input)
            start = time.perf_counter()
            b2.device.run(directory=project, with_output=False)
            binaries.append(time.perf_counter() - start)
            with open(os.path.join(b2.device.results_dir, BENCH_FILE)) as f:
                wall_text, rss_kb, before_kb, after_kb = f.read().split()
            walls.append(float(wall_text))
            memory = memory or common.memory_fields(float(before_kb) / 1024, common.synapse_count(net),
                                                    float(after_kb) / 1024, float(rss_kb) / 1024)
        wall, binary_s = min(walls), min(binaries)
        times = np.asarray(monitor.t / ms)
        senders = np.asarray(monitor.i[:])
        t0, t1 = common.window(net)
        measured = (times > t0) & (times <= t1)
        times, senders = times[measured], senders[measured]
        weight_change = {}
        if args.learning:                          # sanity: learning really changed the weights
            weight_change = {"mean_abs_dw_in": float(np.mean(np.abs(np.asarray(plastic[0].w[:]) - net["in_weights"])))}
    finally:
        if not keep:
            shutil.rmtree(project, ignore_errors=True)

    syn_events = common.synaptic_events(net, senders)
    sim_s = net["t_ms"] * 1e-3
    common.emit({
        "simulator": "brian2", "version": b2.__version__, "n": net["n"], "threads": args.threads,
        "learning": args.learning, "wall_s_per_sim_s": round(wall / sim_s, 5),
        "build_s": round(construct_s + codegen_compile_s, 3),
        "engine": "time-driven (hand-written)" if args.learning else "static", "k": net["k"],
        **memory, **common.activity_stats(net, times, senders),
        "syn_events_per_s": round(syn_events / wall, 1), "syn_events": syn_events,
        "codegen_compile_s": round(codegen_compile_s, 3), "binary_s": round(binary_s, 3),
        "wall_s_per_sim_s_all": [round(w / sim_s, 5) for w in walls],
        "python_peak_rss_mb": round(common.peak_rss_mb(), 1), **weight_change,
        "timed": "steady_clock inside the standalone binary around the measured run (+ final weight update), "
                 "after the warm-up run",
    })


if __name__ == "__main__":
    main()
