"""Gradient check: the engine's e-prop gradient against exact backpropagation through time.

Set-up (tiny, one sample): frozen random input spikes -> a learning population of model X
(plastic input weights W_in, optionally plastic recurrent weights W_rec without autapses) ->
two ``eprop_readout`` neurons (plastic W_out) trained on sine targets with the mean squared error
E = sum_n sum_k 1/2 (y_k[n] - y*_k[n])^2 over the sample's steps n = 0 .. T-1.

Why the numbers must be equal (not just close): with symmetric feedback B = W_out^T and the
model's eligibility filter kappa set to the readout's decay exp(-dt/tau_m_readout), e-prop's
gradient sum_n L_j[n] ebar_ji[n] (L_j[n] = sum_k B_jk E_k[n+1], ebar = kappa ebar + e) is a
rearrangement of the chain rule: the readout's adjoint dE/dV_k[n] = sum_{m>=n} alpha^{m-n} E_k[m]
is exactly what the kappa filter sums. So
  * without recurrent weights the e-prop gradient of W_in IS the full BPTT gradient;
  * with recurrent weights it is BPTT truncated at the recurrent input (a neuron's spikes reaching
    other neurons are constants for the gradient; dE/dz_j flows only into the readouts and through
    j's own reset and adaptation);
  * the readout weights' gradient is dE/dW_out in both cases.
The reference ``tests/eprop_ref/bptt.py`` runs the same forward pass (same spikes, states to
round-off) and computes these gradients by reverse-mode BPTT written from the model equations,
independently of the compiler's eligibility derivation. The reset is differentiated as the model's
``reset_gradient:`` says (stopped / kept / full, defined in bptt.py); adaptation always through psi.

How the engine's gradient is read: ``eg.event_driven(sample_duration=T*dt)`` with one sample and
gradient descent with batch 1 and eta = 1 (bounds far away): the weights are fixed during the
sample and take one step w -= eta * G at its end (``eg_optimize``: a changed eta is used from the
first optimisation on, no clamping binds), so G = w_before - w_after, exact to the rounding of w.
The same for the time-driven engine (``eg.time_driven(update_interval=T*dt)``, one interval; see
``_run`` for its offsets): its weights change once, at each synapse's first event after the interval.

The readout weights in the event-driven engine (``test_readout_gradient_is_bptt``): W_in and W_rec
receive the learning signal of history row T-2, B E[T-1], i.e. their gradient is that of the loss
over all T steps; W_out's includes the readout error of step T-1 too (a sample's close replays a
readout's windows through its last row: close_sample in engine_learning.h). The failure message
also shows the distance to the gradient of the loss without step T-1 (what the engine computed
before that was fixed).

The spikes are compared first and must be identical: if they differ, the gradients describe
different networks and mean nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

import eprop_gen as eg
from eprop_ref import bptt

N_IN, N_OUT = 8, 2
RTOL = 1e-8


@dataclass(frozen=True)
class Case:
    """One model set-up. `text_mode`: compile the model's text with this `reset_gradient:` (replacing
    `kept`, or added to a `learning:` section without one, whose `cutoff:` is then dropped);
    `reset_gradient`: the mode the reference differentiates (the one the compiled model declares)."""
    model: str
    reset_gradient: str
    dt: float
    steps: int
    n: int
    params: tuple                      # (name, value) overrides of the model's defaults
    tau_out: float                     # readout tau_m (ms); kappa = exp(-dt / tau_out)
    input_prob: float                  # probability of an input spike per input and step
    w_in: tuple = (0.4, 0.3)           # mean, std of W_in
    w_rec_std: float = 0.25
    text_mode: str | None = None
    seed: int = 3


LIF = (("C_m", 1.0), ("E_L", 0.0), ("V_th", 1.0), ("tau_m", 10.0), ("t_ref", 2.0),
       ("surrogate_gradient_width", 0.5))
LIF_RESET = LIF + (("V_reset", -0.3),)
CASES = {
    "eprop_iaf": Case("eprop_iaf", "stopped", 1.0, 150, 4, LIF, 10.0, 0.08),
    "eprop_iaf_adapt": Case("eprop_iaf_adapt", "stopped", 1.0, 150, 4,
                            LIF + (("adapt_beta", 0.3), ("adapt_tau", 30.0)), 10.0, 0.08),
    # subtracting resets differentiated through psi: V -= (V_th - E_L) z
    "eprop_iaf[full]": Case("eprop_iaf", "full", 1.0, 150, 4, LIF, 10.0, 0.08, text_mode="full"),
    "eprop_iaf_adapt[full]": Case("eprop_iaf_adapt", "full", 1.0, 150, 4,
                                  LIF + (("adapt_beta", 0.3), ("adapt_tau", 30.0)), 10.0, 0.08,
                                  text_mode="full"),
    "eprop_iaf_stdp": Case("eprop_iaf_stdp", "kept", 1.0, 150, 4, LIF_RESET, 10.0, 0.08),
    "eprop_iaf_stdp[full]": Case("eprop_iaf_stdp", "full", 1.0, 150, 4, LIF_RESET, 10.0, 0.08,
                                 text_mode="full"),
    "eprop_iaf_stdp[stopped]": Case("eprop_iaf_stdp", "stopped", 1.0, 150, 4, LIF_RESET, 10.0, 0.08,
                                    text_mode="stopped"),
    # dt = 0.1 ms (the quadratic voltage overflows at 1 ms); a small I_e: the spikes come from the input
    "eprop_izhikevich": Case("eprop_izhikevich", "kept", 0.1, 400, 3, (("I_e", 3.0),), 5.0, 0.03,
                             w_in=(9.0, 3.0), w_rec_std=8.0),
}
WORKING = ["eprop_iaf", "eprop_iaf_adapt"]                 # the models' own (stopped) reset gradient
NEW = ["eprop_iaf[full]", "eprop_iaf_adapt[full]", "eprop_iaf_stdp", "eprop_iaf_stdp[full]",
       "eprop_iaf_stdp[stopped]", "eprop_izhikevich"]        # reset_gradient kept / full, RK4 states


@dataclass
class Run:
    """An engine run and what the reference needs to repeat it (reference steps n = 0 .. len(x)-1;
    the learning population's spikes, states and psi are compared over steps 0 .. compare-1, the
    readouts' outputs over all steps; `window` is the loss's lambda per step)."""
    case: Case
    recurrent: bool
    params: dict
    x: np.ndarray
    target: np.ndarray
    window: np.ndarray
    compare: int
    weights: dict
    engine_spikes: tuple
    engine_states: np.ndarray
    engine_psi: np.ndarray
    engine_y: np.ndarray
    engine_grad: dict = field(default_factory=dict)


def _model_text(case: Case) -> str:
    with open(eg.models.path(case.model)) as f:
        text = f.read()
    if case.text_mode is not None:
        if "reset_gradient: kept" in text:
            text = text.replace("reset_gradient: kept", f"reset_gradient: {case.text_mode}")
        else:
            assert "reset_gradient" not in text and text.count("    learning:\n") == 1
            text = text.replace("    learning:\n",
                                f"    learning:\n        reset_gradient: {case.text_mode}\n")
            # a cutoff (inf here anyway) needs a constant per-step matrix, which full does not have
            text = "\n".join(line for line in text.split("\n") if not line.strip().startswith("cutoff:"))
    return text


def _inputs(case: Case):
    """Frozen input spikes at reference steps 1 .. T-1, targets for steps 0 .. T, weights."""
    rng = np.random.default_rng(case.seed)
    T, n = case.steps, case.n
    spikes = rng.random((T - 1, N_IN)) < case.input_prob
    steps, senders = np.nonzero(spikes)
    steps = steps + 1
    W_in = rng.normal(*case.w_in, (n, N_IN))
    W_rec = rng.normal(0.0, case.w_rec_std, (n, n))
    np.fill_diagonal(W_rec, 0.0)
    W_out = rng.normal(0.0, 0.5, (N_OUT, n))
    t = np.arange(T + 1) * case.dt
    target = np.sin(2 * np.pi * t[:, None] / (0.4 * T * case.dt) + np.array([0.0, 1.3]))
    return steps, senders, target, dict(W_in=W_in, W_rec=W_rec, W_out=W_out)


_RUNS: dict = {}


def _run(name: str, recurrent: bool, engine: str = "event") -> Run:
    """The engine's run of a case (cached: several tests read one run).

    engine "event": ``eg.event_driven(sample_duration=T*dt)``, one sample of T steps; reference
    step n = step n; the loss counts steps 0 .. T-1; simulated one step more (the update).
    engine "time": ``eg.time_driven(update_interval=T*dt)`` (offset 2): the learning population's
    interval is steps [2, 2+T) (neurons restart at step 2), the readouts' [3, 3+T); reference step
    n = step n + 2, run for T + 1 steps, loss over steps 1 .. T (the readouts' interval). Input
    spikes for every input at step b + 2 (b = 2 + T) and a static kick that makes every learning
    neuron spike in step b + 1 give each plastic synapse its first event after its interval, where
    the time-driven engine applies the interval's gradient.
    """
    key = (name, recurrent, engine)
    if key in _RUNS:
        return _RUNS[key]
    case = CASES[name]
    T, dt = case.steps, case.dt
    steps, senders, target, W = _inputs(case)
    model = eg.compile_model(_model_text(case))
    readout = eg.compile_model(eg.models.path("eprop_readout"))
    alpha_out = math.exp(-dt / case.tau_out)
    overrides = dict(case.params, kappa=alpha_out)
    params = {**model.param_defaults, **overrides}

    if engine == "event":
        offset, n_ref, window = 0, T, np.ones(T)
        net = eg.Network(dt=dt, learning=eg.event_driven(sample_duration=T * dt))
        input_steps, input_senders = steps, senders
        engine_target = target[:T]
    else:
        offset, n_ref = 2, T + 1
        window = np.r_[0.0, np.ones(T)]
        net = eg.Network(dt=dt, learning=eg.time_driven(update_interval=T * dt, offset=offset))
        b = offset + T
        input_steps = np.r_[steps + offset, np.full(N_IN, b + 2)]
        input_senders = np.r_[senders, np.arange(N_IN)]
        engine_target = np.r_[np.zeros((offset, N_OUT)), target]
    x = np.zeros((n_ref, N_IN))
    np.add.at(x, (steps, senders), 1.0)
    inp = net.add_spike_source(N_IN, times=input_steps * dt, senders=input_senders)
    pop = net.add_population(model, case.n, params=overrides)
    out = net.add_population(readout, N_OUT, params=dict(C_m=1.0, E_L=0.0, I_e=0.0, tau_m=case.tau_out))
    opt = eg.gradient_descent(eta=1.0, batch_size=1, w_min=-1e6, w_max=1e6)

    def explicit(M):
        rows, cols = np.nonzero(M != 0)
        return eg.Explicit(cols, rows, weights=M[rows, cols])

    projections = {"W_in": net.connect(inp, pop, "spikes", explicit(W["W_in"]), plasticity=opt)}
    if recurrent:
        projections["W_rec"] = net.connect(pop, pop, "spikes", explicit(W["W_rec"]), plasticity=opt)
    projections["W_out"] = net.connect(pop, out, "spikes", explicit(W["W_out"]), plasticity=opt)
    net.connect_feedback(out, pop, W["W_out"].T.copy())          # symmetric feedback B = W_out^T
    net.add_target(out, engine_target)
    first = model.states[0]
    net.record(pop, (first, "psi"))
    net.record(out, ("V_m",))
    if engine == "event":
        net.simulate(T * dt + dt)              # + 1 step: the sample's update happens at its end
    else:
        kick = net.add_spike_source(1, times=[(b + 1) * dt])
        net.connect(kick, pop, "spikes", eg.FixedIndegree(1), weight=100.0)
        net.simulate((b + 3) * dt)             # steps 0 .. b + 2: the last events delivered

    t_spk, s_spk = net.spikes(pop)
    step_spk = np.rint(t_spk / dt).astype(int) - 1
    keep = (step_spk >= offset) & (step_spk < offset + T)
    if engine == "time":
        assert not np.any(step_spk < offset), "no spikes before the interval"
        kicked = s_spk[step_spk == b + 1]
        assert np.array_equal(np.unique(kicked), np.arange(case.n)), "every neuron spikes after the interval"
    rec, rec_out = net.recording(pop), net.recording(out)
    grads = {}
    for k, proj in projections.items():
        G = np.zeros_like(W[k])
        G[proj.targets, proj.sources] = W[k][proj.targets, proj.sources] - proj.weights
        grads[k] = G
    run = Run(case, recurrent, params, x, target[:n_ref], window, T,
              W if recurrent else {**W, "W_rec": None},
              ((step_spk[keep] - offset + 1) * dt, s_spk[keep]), rec[first][offset:offset + T],
              rec["psi"][offset:offset + T], rec_out["V_m"][offset:offset + n_ref], grads)
    _RUNS[key] = run
    return run


def _reference(run: Run):
    case = run.case
    model = bptt.make_model(case.model, run.params, case.dt)
    return bptt.forward(model, run.x, run.weights["W_in"], run.weights["W_out"],
                        math.exp(-case.dt / case.tau_out), W_rec=run.weights["W_rec"])


def _gradients(run: Run, traj, **options):
    return bptt.gradients(traj, run.target, run.case.reset_gradient, window=run.window, **options)


def _assert_same_network(run: Run, traj) -> None:
    """Spikes identical; states, psi and readout outputs equal to round-off; every learning
    neuron spikes at least twice, with input spikes before its first spike and between its spikes (so
    that pre-before-post and post-before-pre pairs, and with them the reset modes, are exercised)."""
    n = run.compare
    z = traj.z[:n]
    ref_steps, ref_senders = np.nonzero(z)
    eng_times, eng_senders = run.engine_spikes
    assert eng_times.size == ref_steps.size and np.array_equal(eng_senders, ref_senders) \
        and np.allclose(eng_times, (ref_steps + 1) * run.case.dt, rtol=0, atol=1e-9), \
        f"spikes differ: engine {eng_times.size}, reference {ref_steps.size}"
    h = traj.h[:n, :, 0]
    np.testing.assert_allclose(run.engine_states, h, rtol=0, atol=1e-9 * max(1.0, np.abs(h).max()))
    np.testing.assert_allclose(run.engine_psi, traj.psi[:n], rtol=0, atol=1e-12)
    np.testing.assert_allclose(run.engine_y, traj.y, rtol=0, atol=1e-9 * max(1.0, np.abs(traj.y).max()))
    counts = z.sum(axis=0)
    assert counts.min() >= 2, f"every learning neuron must spike at least twice, got {counts}"
    input_steps = np.nonzero(run.x.sum(axis=1))[0]
    for j in range(z.shape[1]):
        post = np.nonzero(z[:, j])[0]
        assert input_steps.min() < post[0], f"neuron {j}: no input before its first spike"
        assert np.any((input_steps > post[0]) & (input_steps < post[-1])), \
            f"neuron {j}: no input between its first and last spike"


def _assert_gradient(g_engine, g_ref, mask, what, note=""):
    g_engine, g_ref = g_engine[mask], g_ref[mask]
    scale = np.abs(g_ref).max()
    assert scale > 0, f"{what}: the reference gradient is zero (nothing exercised)"
    rel = np.abs(g_engine - g_ref).max() / scale
    np.testing.assert_allclose(g_engine, g_ref, rtol=RTOL, atol=RTOL * scale,
                               err_msg=f"{what}: max relative difference {rel:.3g}{note}")


@pytest.mark.parametrize("name", WORKING + NEW)
@pytest.mark.parametrize("recurrent", [False, True], ids=["feedforward", "recurrent"])
def test_forward_pass_is_the_engines(name, recurrent):
    """The reference's forward pass is the engine's: same spikes, states, psi and outputs."""
    run = _run(name, recurrent)
    _assert_same_network(run, _reference(run))


@pytest.mark.parametrize("name", WORKING + NEW)
def test_feedforward_gradient_is_full_bptt(name):
    """No recurrent weights: the engine's e-prop gradient of W_in is the exact BPTT gradient."""
    run = _run(name, recurrent=False)
    traj = _reference(run)
    _assert_same_network(run, traj)
    ref = _gradients(run, traj)
    _assert_gradient(run.engine_grad["W_in"], ref["W_in"], run.weights["W_in"] != 0, f"{name} W_in")


@pytest.mark.parametrize("name", WORKING + NEW)
def test_recurrent_gradient_is_truncated_bptt(name):
    """Plastic recurrent weights: W_in and W_rec equal BPTT truncated at the recurrent input.
    Also printed (not asserted): how far e-prop is from the full BPTT gradient."""
    run = _run(name, recurrent=True)
    traj = _reference(run)
    _assert_same_network(run, traj)
    truncated = _gradients(run, traj, truncate_recurrent=True)
    full = _gradients(run, traj, truncate_recurrent=False)
    masks = {"W_in": run.weights["W_in"] != 0,
             "W_rec": ~np.eye(run.case.n, dtype=bool) & (run.weights["W_rec"] != 0)}   # no autapses
    for k, mask in masks.items():
        distance = np.abs(run.engine_grad[k][mask] - full[k][mask]).max() / np.abs(full[k][mask]).max()
        print(f"{name} {k}: e-prop vs full BPTT, max relative difference {distance:.3g}")
    for k, mask in masks.items():
        _assert_gradient(run.engine_grad[k], truncated[k], mask, f"{name} {k}")


@pytest.mark.parametrize("name", ["eprop_iaf", "eprop_iaf_adapt", "eprop_izhikevich"])
@pytest.mark.parametrize("recurrent", [False, True], ids=["feedforward", "recurrent"])
def test_readout_gradient_is_bptt(name, recurrent):
    """The readout weights' gradient is dE/dW_out of the same loss E (all T steps of the sample) whose
    gradient W_in and W_rec get: their learning signal of history row T-2 is B E[T-1], so E counts
    the sample's last step, and the readout's error of that step must count for W_out as well."""
    run = _run(name, recurrent)
    traj = _reference(run)
    _assert_same_network(run, traj)
    ref = _gradients(run, traj)
    mask = run.weights["W_out"] != 0
    without_last = np.ones(run.case.steps)
    without_last[-1] = 0.0
    other = bptt.gradients(traj, run.target, run.case.reset_gradient, window=without_last)["W_out"]
    note = (f"; against the loss without the sample's last step (lambda[T-1] = 0) it differs by "
            f"{np.abs(run.engine_grad['W_out'][mask] - other[mask]).max() / np.abs(other[mask]).max():.3g}")
    _assert_gradient(run.engine_grad["W_out"], ref["W_out"], mask, f"{name} W_out", note)


@pytest.mark.parametrize("name", WORKING + NEW)
@pytest.mark.parametrize("recurrent", [False, True], ids=["feedforward", "recurrent"])
def test_time_driven_interval_gradient_is_bptt(name, recurrent):
    """The time-driven engine (one update interval of T steps, neurons restarted at its start):
    the interval's gradient of W_in (and W_rec) is BPTT of the loss over the readouts' interval
    (full BPTT without, truncated BPTT with recurrent weights), and W_out's is dE/dW_out."""
    run = _run(name, recurrent, engine="time")
    traj = _reference(run)
    _assert_same_network(run, traj)
    ref = _gradients(run, traj, truncate_recurrent=True)
    off_diagonal = ~np.eye(run.case.n, dtype=bool)
    masks = {"W_in": run.weights["W_in"] != 0, "W_out": run.weights["W_out"] != 0}
    if recurrent:
        masks["W_rec"] = off_diagonal & (run.weights["W_rec"] != 0)
    for k, mask in masks.items():
        _assert_gradient(run.engine_grad[k], ref[k], mask, f"{name} time-driven {k}")


@pytest.mark.parametrize("name", ["eprop_iaf", "eprop_iaf_adapt", "eprop_iaf_stdp", "eprop_izhikevich"])
def test_reference_reverse_pass_equals_its_forward_mode(name):
    """A check of the reference itself, also where the engine cannot check it (full BPTT through
    the recurrent weights, every reset mode for every model): the reverse pass equals the same
    derivatives computed in forward mode (one tangent per weight), to round-off."""
    for recurrent in (False, True):
        run = _run(name, recurrent)
        traj = _reference(run)
        for mode in bptt.RESET_MODES:
            for truncate in (False, True):
                reverse = bptt.gradients(traj, run.target, mode, truncate_recurrent=truncate)
                forward = bptt.forward_mode_gradients(traj, run.target, mode, truncate_recurrent=truncate)
                for k in reverse:
                    scale = np.abs(forward[k]).max()
                    np.testing.assert_allclose(reverse[k], forward[k], rtol=1e-10, atol=1e-10 * scale,
                                               err_msg=f"{name} {mode} truncate={truncate} {k}")
