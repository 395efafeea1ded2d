"""Run NEST 3.10's bsshslm e-prop models (black box, through PyNEST) on given arrays.

``run_nest(cfg, weights, input_spikes, targets, masks=None) -> TimeResult``

Builds the network of the bsshslm example scripts (spec §7.2 sine-wave regression / §7.3 evidence
accumulation) with 1 thread:

  spike_generator -> parrot_neuron (static, 1 ms)
  parrot -> rec, rec -> rec (no autapses), rec -> readout: eprop_synapse_bsshslm_2020, 1 ms
  readout -> rec: eprop_learning_signal_connection_bsshslm_2020 (weight B)
  step_rate_generator -> readout: rate_connection_delayed, receptor 2 (target)
  cross-entropy only: readout -> other readouts, rate_connection_delayed, receptor 1, weight 1
  a final spike_generator (weight 1000, the highest node id) forcing the final update (§8.6)

Recurrent neurons: the first n_rec - n_adaptive are eprop_iaf_bsshslm_2020, the rest
eprop_iaf_adapt_bsshslm_2020 (created in this order, as in the evidence example).

The run is split into one ``Simulate(batch_size * seq_len)`` per iteration, preceded by
``SetDefaults`` of the optimizer with that iteration's eta (splitting changes no number, spec
§2.2), then one call for the readout offset, the extension step and the final update.
The readout multimeter records every step; ``time_tasks.evaluate`` cuts the examples' window.

``masks`` (optional): dict with boolean "in" (n_rec, n_in), "rec" (n_rec, n_rec), "out"
(n_out, n_rec); only True entries are connected (the rec diagonal is never connected).
Final weights of absent connections are reported as 0.
"""

from __future__ import annotations

import numpy as np

from .time_tasks import OFFSET_GEN, TOTAL_OFFSET, TimeConfig, TimeResult, evaluate

SYN = "eprop_synapse_bsshslm_2020"


def _rec_params(cfg: TimeConfig, adaptive: bool) -> dict:
    p = {
        "C_m": cfg.C_m, "c_reg": cfg.c_reg, "E_L": 0.0, "f_target": cfg.f_target,
        "flush_event_send_interval": float(cfg.flush_steps), "I_e": 0.0,
        "regular_spike_arrival": cfg.regular_spike_arrival,
        "surrogate_gradient_function": cfg.surrogate,
        "surrogate_gradient_height": cfg.surrogate_height,
        "surrogate_gradient_width": cfg.surrogate_width, "t_ref": cfg.t_ref,
        "tau_m": cfg.tau_m, "V_m": 0.0, "V_th": cfg.V_th,
    }
    if adaptive:
        p.update({"adapt_tau": cfg.adapt_tau, "adapt_beta": cfg.adapt_beta, "adaptation": 0.0})
    return p


def _out_params(cfg: TimeConfig) -> dict:
    return {
        "C_m": 1.0, "E_L": 0.0, "I_e": 0.0, "loss": cfg.loss,
        "regular_spike_arrival": cfg.regular_spike_arrival_out, "tau_m": cfg.tau_m_out,
        "V_m": 0.0,
    }


def _optimizer_params(cfg: TimeConfig) -> dict:
    p = {"type": cfg.optimizer, "batch_size": cfg.batch_size, "Wmin": cfg.Wmin, "Wmax": cfg.Wmax}
    if cfg.optimizer == "adam":
        p.update({"beta_1": cfg.beta_1, "beta_2": cfg.beta_2, "epsilon": cfg.epsilon})
    return p


def input_spike_times(input_spikes: np.ndarray) -> list:
    """Per input neuron the generator times (ms, float32 as in the examples)."""
    n_seq, u, n_in = input_spikes.shape
    timeline = (np.arange(n_seq * u, dtype=np.float64) + OFFSET_GEN).reshape(n_seq, u)
    return [timeline[input_spikes[:, :, i]].astype(np.float32).astype(np.float64)
            for i in range(n_in)]


def _target_generator_params(cfg: TimeConfig, targets: np.ndarray) -> list:
    if targets.ndim == 3:  # one value per step (sine example)
        times = np.arange(cfg.task_steps, dtype=np.float64) + TOTAL_OFFSET
        return [{"amplitude_times": times, "amplitude_values": targets[:, :, k].ravel().astype(float)}
                for k in range(cfg.n_out)]
    times = np.arange(cfg.n_seq, dtype=np.float64) * cfg.seq_len + TOTAL_OFFSET
    return [{"amplitude_times": times, "amplitude_values": targets[:, k].astype(float)}
            for k in range(cfg.n_out)]


def _connect_plastic(nest, pre, post, weights, mask, cfg, autapses=True):
    """eprop synapses pre -> post; weights [post, pre]; dense like the examples, else by arrays."""
    base = {"synapse_model": SYN, "delay": 1.0, "tau_m_readout": cfg.kappa_tau}
    w = np.asarray(weights, dtype=np.float64)
    if mask is None:
        conn = {"rule": "all_to_all", "allow_autapses": autapses}
        nest.Connect(pre, post, conn, dict(base, weight=w))
        return
    m = np.asarray(mask, dtype=bool).copy()
    if not autapses:
        np.fill_diagonal(m, False)
    post_idx, pre_idx = np.nonzero(m)  # row-major: grouped by target, like all_to_all
    pre_ids = np.asarray(pre.tolist())[pre_idx]
    post_ids = np.asarray(post.tolist())[post_idx]
    nest.Connect(pre_ids, post_ids, "one_to_one",
                 dict(base, weight=w[post_idx, pre_idx], delay=np.ones(len(pre_ids))))


def _dense_weights(nest, pre, post) -> np.ndarray:
    conns = nest.GetConnections(pre, post)
    out = np.zeros((len(post), len(pre)))
    if len(conns) == 0:
        return out
    c = conns.get(["source", "target", "weight"])
    src = np.asarray(c["source"]) - pre[0].global_id
    tgt = np.asarray(c["target"]) - post[0].global_id
    out[tgt, src] = c["weight"]
    return out


def run_nest(cfg: TimeConfig, weights: dict, input_spikes: np.ndarray, targets: np.ndarray,
             masks: dict | None = None) -> TimeResult:
    import nest

    masks = masks or {}
    u = cfg.seq_len
    nest.ResetKernel()
    nest.verbosity = nest.VerbosityLevel.FATAL
    nest.set(resolution=1.0, total_num_virtual_procs=1, print_time=False,
             eprop_update_interval=float(u), eprop_learning_window=float(cfg.lw),
             eprop_reset_neurons_on_update=True)

    n_reg = cfg.n_rec - cfg.n_adaptive
    gen_in = nest.Create("spike_generator", cfg.n_in)
    parrots = nest.Create("parrot_neuron", cfg.n_in)
    rec = nest.Create("eprop_iaf_bsshslm_2020", n_reg, _rec_params(cfg, False)) if n_reg else None
    if cfg.n_adaptive:
        ad = nest.Create("eprop_iaf_adapt_bsshslm_2020", cfg.n_adaptive, _rec_params(cfg, True))
        rec = ad if rec is None else rec + ad
    out = nest.Create("eprop_readout_bsshslm_2020", cfg.n_out, _out_params(cfg))
    gen_target = nest.Create("step_rate_generator", cfg.n_out)
    mm = nest.Create("multimeter", {"interval": 1.0, "record_from": ["readout_signal", "target_signal"]})
    sr = nest.Create("spike_recorder")

    nest.SetDefaults(SYN, {"optimizer": _optimizer_params(cfg), "average_gradient": cfg.average_gradient})
    static = {"synapse_model": "static_synapse", "delay": 1.0}
    nest.Connect(gen_in, parrots, "one_to_one", static)
    _connect_plastic(nest, parrots, rec, weights["W_in"], masks.get("in"), cfg)
    _connect_plastic(nest, rec, rec, weights["W_rec"], masks.get("rec"), cfg, autapses=False)
    _connect_plastic(nest, rec, out, weights["W_out"], masks.get("out"), cfg)
    nest.Connect(out, rec, "all_to_all",
                 {"synapse_model": "eprop_learning_signal_connection_bsshslm_2020", "delay": 1.0,
                  "weight": np.asarray(weights["B"], dtype=np.float64)})
    nest.Connect(gen_target, out, "one_to_one",
                 {"synapse_model": "rate_connection_delayed", "delay": 1.0, "receptor_type": 2})
    if cfg.loss == "cross_entropy":
        nest.Connect(out, out, {"rule": "all_to_all", "allow_autapses": False},
                     {"synapse_model": "rate_connection_delayed", "delay": 1.0,
                      "receptor_type": 1, "weight": 1.0})
    nest.Connect(rec, sr)
    nest.Connect(mm, out)

    for i, times in enumerate(input_spike_times(input_spikes)):
        gen_in[i].set(spike_times=times)
    gen_target.set(_target_generator_params(cfg, targets))
    gen_final = nest.Create("spike_generator", 1, {"spike_times": [float(cfg.final_time)]})
    nest.Connect(gen_final, parrots + rec, "all_to_all", {"weight": 1000.0, "delay": 1.0})

    opt = _optimizer_params(cfg)
    for eta in cfg.eta_schedule:
        nest.SetDefaults(SYN, {"optimizer": dict(opt, eta=float(eta))})
        nest.Simulate(float(cfg.batch_size * u))
    nest.Simulate(float(cfg.total_steps - cfg.task_steps))

    ev = mm.get("events")
    steps = np.rint(ev["times"]).astype(int) - 1  # value of update step n carries time n+1
    y = np.zeros((cfg.n_out, cfg.total_steps))
    yt = np.zeros((cfg.n_out, cfg.total_steps))
    k = np.asarray(ev["senders"]) - out[0].global_id
    y[k, steps] = ev["readout_signal"]
    yt[k, steps] = ev["target_signal"]
    losses, errors, yw, ytw = evaluate(y, yt, cfg)

    se = sr.get("events")
    spikes = np.zeros((cfg.total_steps, cfg.n_rec), dtype=bool)
    spikes[np.rint(se["times"]).astype(int) - 1, np.asarray(se["senders"]) - rec[0].global_id] = True

    final = {"in": _dense_weights(nest, parrots, rec), "rec": _dense_weights(nest, rec, rec),
             "out": _dense_weights(nest, rec, out)}
    return TimeResult(losses, errors, yw, ytw, spikes, final)
