"""Our engine's time-driven e-prop mode (``eg.time_driven``) on the bsshslm set-ups.

``run_engine_time(cfg, weights, input_spikes, targets, masks=None, delays=None, threads=1)``
builds the network of ``numpy_time.simulate_reference`` (= NEST's ``nest_time.run_nest``) in our
engine and returns an ``EngineTimeRun`` whose ``result`` is a ``TimeResult`` evaluated with
literally the code the reference uses (``time_tasks.evaluate``), so the two compare field by
field.

Mapping of the reference onto our API (dt = 1 ms, U = cfg.seq_len, LW = cfg.lw)
-------------------------------------------------------------------------------
* Inputs: the parrots are one spike source; a parrot spike with stamp s (``parrot_stamps``,
  including every parrot's forced final spike at final_time + 1) is our spike at time s*dt, which
  arrives (delay 1) with stamp s.
* Recurrent neurons: ONE population of ``eprop_iaf_adapt_bsshslm_2020`` when cfg.n_adaptive > 0
  (adapt_beta per neuron: 0 for the first n_rec - n_adaptive, which is numerically NEST's regular
  neuron), else ``eprop_iaf_bsshslm_2020``; E_L = 0 (the reference works relative to E_L).  Other
  surrogates than the models' piecewise_linear are chosen at compile time.
* Readouts: ``eprop_readout_bsshslm_2020`` (C_m = 1, E_L = 0).  Target row m is the reference's
  target_at(m + 1): the reference's readout in step n compares y(u[n-1]) with target_at(n).
* Connections, in the reference's creation order: in -> rec, rec -> rec (no autapses), rec -> out
  (eg.Explicit over the masks, with the reference's delays), feedback B, and LAST the forced final
  update: a 1-neuron source at final_time*dt with a static synapse of weight FINAL_WEIGHT onto
  every recurrent neuron (the reference adds FINAL_WEIGHT to their input in step final_time).
* eta: the reference sets eta before phase B of step n = i * batch_size * U (iteration i); our
  engine runs phase B of step n at the start of step n, so the run is split there and
  ``set_optimizer`` called in between (only when eta changes, as NEST's SetDefaults counts only
  changes).
* Readout recording: ``y`` after step m (the logit for cross-entropy).  The reference records in
  step n the readout signal f(y[n-1]) (identity for MSE; for cross-entropy the softmax
  exp(y_k) / (sum_{j != k} exp(y_j) + exp(y_k)), the normaliser summed in readout order as the
  reference does) and the target target_at(n), both zeroed outside the learning window
  (n - 4) % U < U - LW (C++ %).  Those (n_out, total_steps) arrays go through ``evaluate``.
* Recurrent spikes: our spike time t is update step t/dt - 1.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

import eprop_gen as eg
from eprop_gen.engine import adam, gradient_descent

from . import numpy_time as nt
from .matrices import dense, explicit
from .time_tasks import TimeConfig, TimeResult, evaluate

FINAL_WEIGHT = nt.FINAL_WEIGHT
REC_OFFSET = nt.S_REC  # first step of a recurrent interval: (n - 2) % U == 0

_MODEL_CACHE: dict = {}


def compiled(name: str, surrogate: str | None = None):
    key = (name, surrogate)
    if key not in _MODEL_CACHE:
        path = eg.models.path(name)
        if surrogate is None or surrogate == "piecewise_linear":
            _MODEL_CACHE[key] = eg.compile_model(path)
        else:
            _MODEL_CACHE[key] = eg.compile_model(path, surrogate=surrogate)
    return _MODEL_CACHE[key]


def recurrent_model_name(cfg: TimeConfig) -> str:
    return "eprop_iaf_adapt_bsshslm_2020" if cfg.n_adaptive > 0 else "eprop_iaf_bsshslm_2020"


def recurrent_params(cfg: TimeConfig) -> dict:
    p = dict(C_m=cfg.C_m, E_L=0.0, I_e=0.0, t_ref=cfg.t_ref, tau_m=cfg.tau_m, V_th=cfg.V_th,
             regular_spike_arrival=1.0 if cfg.regular_spike_arrival else 0.0,
             surrogate_gradient_height=cfg.surrogate_height,
             surrogate_gradient_width=cfg.surrogate_width,
             tau_m_readout=cfg.kappa_tau, c_reg=cfg.c_reg, f_target=cfg.f_target,
             flush_event_send_interval=float(cfg.flush_steps))
    if cfg.n_adaptive > 0:
        beta = np.zeros(cfg.n_rec)
        beta[cfg.n_rec - cfg.n_adaptive:] = cfg.adapt_beta
        p.update(adapt_beta=beta, adapt_tau=cfg.adapt_tau)
    return p


def readout_params(cfg: TimeConfig) -> dict:
    return dict(C_m=1.0, E_L=0.0, I_e=0.0, tau_m=cfg.tau_m_out,
                regular_spike_arrival=1.0 if cfg.regular_spike_arrival_out else 0.0)


def optimizer_of(cfg: TimeConfig, eta: float):
    make = adam if cfg.optimizer == "adam" else gradient_descent
    return make(eta=float(eta), batch_size=cfg.batch_size, optimize_each_step=False,
                beta_1=cfg.beta_1, beta_2=cfg.beta_2, epsilon=cfg.epsilon, w_min=cfg.Wmin,
                w_max=cfg.Wmax)


def source_spikes(cfg: TimeConfig, input_spikes: np.ndarray, stamps: dict | None = None):
    """(times, senders) of the parrot source: stamp s -> time s*dt (dt = 1)."""
    stamps = nt.parrot_stamps(cfg, input_spikes) if stamps is None else stamps
    times, senders = [], []
    for s in sorted(stamps):
        for i in stamps[s]:
            times.append(float(s))
            senders.append(int(i))
    return np.asarray(times, float), np.asarray(senders, np.int64)


def per_step_targets(cfg: TimeConfig, targets: np.ndarray) -> np.ndarray:
    """Row m = y* of our readout row m = the reference's target_at(m + 1)."""
    at = nt.target_function(cfg, targets)
    return np.array([at(m + 1) for m in range(cfg.total_steps)], dtype=float).reshape(
        cfg.total_steps, cfg.n_out)


def in_window(cfg: TimeConfig, n: int) -> bool:
    """The reference records readout/target of step n only inside the learning window."""
    return nt.cpp_mod(n - 4, cfg.seq_len) >= cfg.seq_len - cfg.lw


def softmax_like_reference(v: np.ndarray) -> np.ndarray:
    """yu_k / (sum_{j != k} yu_j + yu_k), yu = exp(v), the normaliser summed in readout order."""
    yu = np.exp(v + 0.0)
    k = len(yu)
    norm = np.zeros(k)
    for i in range(k):
        for j in range(k):
            if j != i:
                norm[i] += 1.0 * yu[j]
    with np.errstate(invalid="ignore", divide="ignore"):
        return yu / (norm + yu)


def reference_shaped(cfg: TimeConfig, y: np.ndarray, targets: np.ndarray):
    """Our recorded y (total_steps, n_out) -> the reference's (readout, target), each
    (n_out, total_steps): step n holds f(y[n-1]) and target_at(n) inside the window, else 0."""
    at = nt.target_function(cfg, targets)
    readout = np.zeros((cfg.n_out, cfg.total_steps))
    target = np.zeros((cfg.n_out, cfg.total_steps))
    for n in range(1, cfg.total_steps):
        if not in_window(cfg, n):
            continue
        v = np.asarray(y[n - 1], float)
        readout[:, n] = softmax_like_reference(v) if cfg.loss == "cross_entropy" else v
        target[:, n] = at(n)
    return readout, target


def masks_of(cfg: TimeConfig, masks: dict | None) -> dict:
    """The reference's masks: all True unless given, never an autapse."""
    masks = masks or {}
    m_in = (np.ones((cfg.n_rec, cfg.n_in), bool) if masks.get("in") is None
            else np.asarray(masks["in"], bool))
    m_rec = (np.ones((cfg.n_rec, cfg.n_rec), bool) if masks.get("rec") is None
             else np.asarray(masks["rec"], bool).copy())
    np.fill_diagonal(m_rec, False)
    m_out = (np.ones((cfg.n_out, cfg.n_rec), bool) if masks.get("out") is None
             else np.asarray(masks["out"], bool))
    return {"in": m_in, "rec": m_rec, "out": m_out}


@dataclasses.dataclass
class EngineTimeRun:
    result: TimeResult
    net: object
    projections: tuple
    y: np.ndarray  # recorded y, (total_steps, n_out)
    seconds: float


def run_engine_time(cfg: TimeConfig, weights: dict, input_spikes: np.ndarray, targets: np.ndarray,
                    masks: dict | None = None, delays: dict | None = None, threads: int = 1,
                    history_steps: int | None = None, stamps: dict | None = None) -> EngineTimeRun:
    """The reference's network (``numpy_time.simulate_reference``) in our time-driven engine."""
    masks = masks_of(cfg, masks)
    delays = delays or {}
    total = cfg.total_steps
    schedule = eg.time_driven(update_interval=float(cfg.seq_len),
                              learning_window=None if cfg.learning_window is None
                              else float(cfg.learning_window),
                              offset=REC_OFFSET, reset_neurons=True,
                              average_gradient=bool(cfg.average_gradient))
    net = eg.Network(dt=1.0, threads=threads, history_steps=history_steps,
                     learning=schedule)
    rec_model = compiled(recurrent_model_name(cfg), cfg.surrogate)
    out_model = compiled("eprop_readout_bsshslm_2020")

    times, senders = source_spikes(cfg, input_spikes, stamps)
    inputs = net.add_spike_source(cfg.n_in, times=times, senders=senders, name="parrots")
    rec = net.add_population(rec_model, cfg.n_rec, params=recurrent_params(cfg), name="rec")
    out = net.add_population(out_model, cfg.n_out, params=readout_params(cfg), name="out")

    etas = cfg.eta_schedule
    opt = optimizer_of(cfg, etas[0])
    p_in = net.connect(inputs, rec, "spikes",
                       explicit(masks["in"], weights["W_in"], delays.get("in")), plasticity=opt)
    p_rec = net.connect(rec, rec, "spikes",
                        explicit(masks["rec"], weights["W_rec"], delays.get("rec")), plasticity=opt)
    p_out = net.connect(rec, out, "spikes",
                        explicit(masks["out"], weights["W_out"], delays.get("out")), plasticity=opt)
    net.connect_feedback(out, rec, np.asarray(weights["B"], float))
    net.add_target(out, per_step_targets(cfg, targets), loss=cfg.loss)
    forced = net.add_spike_source(1, times=[float(cfg.final_time)], name="final update")
    net.connect(forced, rec, "spikes", eg.FixedIndegree(1), weight=FINAL_WEIGHT)  # created last
    net.record(out, ("y",))

    projections = (p_in, p_rec, p_out)
    start = time.perf_counter()
    it_steps = cfg.batch_size * cfg.seq_len
    done, eta = 0, etas[0]
    for i in range(1, cfg.n_iter):
        if etas[i] != eta:
            net.simulate(float(i * it_steps - done))
            done = i * it_steps
            eta = etas[i]
            for p in projections:
                p.set_optimizer(optimizer_of(cfg, eta))
    net.simulate(float(total - done))
    seconds = time.perf_counter() - start

    y = np.asarray(net.recording(out)["y"], float).reshape(total, cfg.n_out)
    readout, target = reference_shaped(cfg, y, targets)
    losses, errors, yw, ytw = evaluate(readout, target, cfg)
    spike_times, spike_senders = net.spikes(rec)
    steps = np.rint(np.asarray(spike_times) / 1.0).astype(np.int64) - 1
    spikes = np.zeros((total, cfg.n_rec), dtype=bool)
    spikes[steps, np.asarray(spike_senders, np.int64)] = True
    final = {"in": dense(p_in, (cfg.n_rec, cfg.n_in)), "rec": dense(p_rec, (cfg.n_rec, cfg.n_rec)),
             "out": dense(p_out, (cfg.n_out, cfg.n_rec))}
    return EngineTimeRun(TimeResult(losses, errors, yw, ytw, spikes, final), net, projections, y,
                         seconds)


# ---------------------------------------------------------------------------------------------
# comparison helpers


def max_rel_dev(a, b) -> float:
    """Largest |a - b| / max(|a|, |b|) (|a - b| where both are 0), as test_eprop_engine."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = np.maximum(np.abs(a), np.abs(b))
    dev = np.abs(a - b)
    with np.errstate(invalid="ignore"):
        rel = np.where(scale > 0, dev / np.where(scale > 0, scale, 1.0), dev)
    # nan (e.g. log(0) in a cross-entropy loss) on one side only counts as infinite
    both_nan = np.isnan(a) & np.isnan(b)
    rel = np.where(both_nan, 0.0, np.where(np.isnan(rel), np.inf, rel))
    return float(np.max(rel, initial=0.0))


def deviations(x: TimeResult, y: TimeResult) -> dict:
    out = {"losses": max_rel_dev(x.losses, y.losses), "readout": max_rel_dev(x.readout, y.readout)}
    for k in ("in", "rec", "out"):
        out["W_" + k] = max_rel_dev(x.weights[k], y.weights[k])
    return out


def bitwise_equal(x: TimeResult, y: TimeResult) -> bool:
    return (np.array_equal(x.losses, y.losses) and np.array_equal(x.readout, y.readout)
            and np.array_equal(x.rec_spikes, y.rec_spikes)
            and all(np.array_equal(x.weights[k], y.weights[k]) for k in ("in", "rec", "out")))
