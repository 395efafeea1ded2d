"""Time-driven e-prop (Bellec et al. 2020; NEST's *_bsshslm_2020 models): a recurrent network learns
to draw a sine pattern, one weight update per sequence. Runs in a few seconds:

    python examples/time_driven_sine.py

The same network with the event-driven engine is `eprop-gen demo`; only the `learning=` schedule and
the models differ."""
import numpy as np

import eprop_gen as eg

SEQ = 200                    # steps (ms) per sequence = update interval
ITERATIONS = 60
N_IN, N_REC = 50, 100

rng = np.random.default_rng(1)
pattern = rng.random((SEQ, N_IN)) < 0.05
pattern[0] = False           # arrivals in an interval's first step are dropped (as in NEST)
t = np.arange(SEQ)
target = 0.5 * np.sin(2 * np.pi * t / SEQ) + 0.3 * np.sin(2 * np.pi * t / (SEQ / 3))

net = eg.Network(dt=1.0, threads=1, seed=1, learning=eg.time_driven(update_interval=float(SEQ)))
rec_model = eg.compile_model(eg.models.path("eprop_iaf_bsshslm_2020"))
out_model = eg.compile_model(eg.models.path("eprop_readout_bsshslm_2020"))
step, sender = np.nonzero(np.tile(pattern, (ITERATIONS, 1)))
inputs = net.add_spike_source(N_IN, times=step + 2.0, senders=sender)   # sequence k starts at k*SEQ + 2
rec = net.add_population(rec_model, N_REC, params=dict(
    C_m=1.0, E_L=0.0, V_th=0.03, tau_m=30.0, t_ref=0.0, regular_spike_arrival=0.0,
    surrogate_gradient_height=10.0, surrogate_gradient_width=0.03, c_reg=300.0, f_target=10.0,
    tau_m_readout=30.0, flush_event_send_interval=float(SEQ)))
out = net.add_population(out_model, 1, params=dict(C_m=1.0, E_L=0.0, tau_m=30.0, regular_spike_arrival=0.0))
optimizer = eg.adam(eta=1e-2)
for source, target_pop, shape, scale in ((inputs, rec, (N_REC, N_IN), 1 / np.sqrt(N_IN)),
                                         (rec, rec, (N_REC, N_REC), 1 / np.sqrt(N_REC)),
                                         (rec, out, (1, N_REC), 1 / np.sqrt(N_REC))):
    W = rng.normal(size=shape) * scale
    if source is target_pop:
        np.fill_diagonal(W, 0.0)
    rows, cols = np.nonzero(W)
    net.connect(source, target_pop, "spikes", eg.Explicit(cols, rows, weights=W[rows, cols]), plasticity=optimizer)
net.connect_feedback(out, rec, rng.normal(size=(N_REC, 1)))
# the readout's interval starts at step 3: its row m compares y[m] with the target of sequence step m - 3
net.add_target(out, np.r_[np.zeros(3), np.tile(target, ITERATIONS)])
net.record(out, ("y",))

def loss_of(k):
    y = net.recording(out)["y"][k * SEQ + 3:(k + 1) * SEQ + 3, 0]
    return 0.5 * float(np.sum((y - target) ** 2))


losses = []
for k in range(ITERATIONS):
    net.simulate(float(SEQ) + (3.0 if k == ITERATIONS - 1 else 0.0))   # the readout lags 3 steps
    if k >= 1:
        losses.append(loss_of(k - 1))
        if (k - 1) % 5 == 0:
            print(f"iteration {k - 1:3d}  loss {losses[-1]:9.4f}")
losses.append(loss_of(ITERATIONS - 1))
print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} ({losses[0] / losses[-1]:.1f}x lower)")
