"""float32 learning state (eprop_gen/precision.py, EPROP_GEN_LEARNING_PRECISION=float32): the learning
arrays really are float32, and a short training run gives the float64 run's spikes and weight changes
to float32 rounding. Each precision runs in its own process (the choice is process-wide)."""
import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = r"""
import json
import numpy as np
import eprop_gen as eg
rng = np.random.default_rng(3)
net = eg.Network(dt=1.0, seed=1)
steps = 300
times = np.nonzero(rng.random((steps, 20)) < 0.05)
inputs = net.add_spike_source(20, times=times[0] + 1.0, senders=times[1])
rec = net.add_population(eg.compile_model(eg.models.path("eprop_iaf")), 30,
                         params=dict(C_m=1.0, E_L=0.0, V_th=0.03, tau_m=30.0, t_ref=0.0,
                                     surrogate_gradient_height=10.0, surrogate_gradient_width=0.03,
                                     eprop_isi_trace_cutoff=100.0))
out = net.add_population(eg.compile_model(eg.models.path("eprop_readout")), 1,
                         params=dict(C_m=1.0, E_L=0.0, tau_m=30.0))
opt = eg.gradient_descent(eta=1e-4, optimize_each_step=False)
w_in = rng.normal(0, 0.03 / np.sqrt(20), (30, 20)).astype(np.float32).astype(float)   # the same start in both precisions
p_in = net.connect(inputs, rec, "spikes", eg.Explicit(*np.nonzero(np.ones((20, 30))), weights=w_in.T.ravel()),
                   plasticity=opt)
p_out = net.connect(rec, out, "spikes", eg.Explicit(np.arange(30), np.zeros(30, int), weights=rng.normal(0, 0.1, 30).astype(np.float32).astype(float)),
                    plasticity=opt)
net.connect_feedback(out, rec, rng.normal(0, 1, (30, 1)))
net.add_target(out, np.sin(np.arange(steps) / 20.0))
w0 = {"in": p_in.weights.astype(float).tolist(), "out": p_out.weights.astype(float).tolist()}
net.simulate(float(steps))
t, s = net.spikes(rec)
print(json.dumps({"dtype": str(p_in._plastic.synapses.eps.dtype), "w0": w0,
                  "w": {"in": p_in.weights.astype(float).tolist(), "out": p_out.weights.astype(float).tolist()},
                  "spikes": [t.tolist(), s.tolist()]}))
"""


def run(precision: str) -> dict:
    env = {**os.environ, "EPROP_GEN_LEARNING_PRECISION": precision}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_float32_learning_state_follows_float64():
    double, single = run("float64"), run("float32")
    assert double["dtype"] == "float64" and single["dtype"] == "float32"
    assert double["spikes"] == single["spikes"] and len(double["spikes"][0]) > 0
    for k in ("in", "out"):
        change64 = np.subtract(double["w"][k], double["w0"][k])
        change32 = np.subtract(single["w"][k], double["w0"][k])
        dev = np.max(np.abs(change32 - change64)) / np.max(np.abs(change64))
        print(f"{k}: largest deviation of a float32 weight change / largest change {dev:.2g}")
        assert np.max(np.abs(change64)) > 0
        assert dev < 1e-4          # float32 rounding (2^-24 ~ 6e-8 per stored value; seen ~2e-6)


def test_unknown_precision_is_refused():
    env = {**os.environ, "EPROP_GEN_LEARNING_PRECISION": "float16"}
    done = subprocess.run([sys.executable, "-c", "import eprop_gen"], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "EPROP_GEN_LEARNING_PRECISION must be one of float64, float32, got 'float16'" in done.stderr
