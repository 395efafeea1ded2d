"""Run NEST 3.10's event-driven e-prop on the sine-wave set-up (spec 7.1), as a black box.

``run_nest_event(task, config) -> EventResult`` builds the network of the NEST example
``eprop_supervised_regression_sine-waves.py`` from the arrays of a ``sine_task.SineTask`` (so any
other simulator can be fed the same numbers) and the parameters of a ``numpy_event.EventConfig``,
simulates it with one thread, and returns the same ``EventResult`` as the numpy reference:

* ``loss``: per iteration, computed like the example from the readout multimeter window
  (2, 2 + task] ms, i.e. readout steps 2 .. task+1;
* ``readout`` / ``target``: ``readout_signal`` and ``target_signal`` (n_out, task) of those steps;
* ``spike_steps``: per recurrent neuron, the emission steps (spike_recorder time - 1 ms) of the
  whole simulation, including the forced final spike;
* ``W_in`` (n_rec, n_in), ``W_rec`` (n_rec, n_rec), ``W_out`` (n_out, n_rec): final weights of
  every ``eprop_synapse`` as dense (n_post, n_pre) matrices (0 where not connected), read after
  the forced final update spike at task + 1 ms (spec 7).

Network and timing as in the example: spike_generator -> parrot_neuron (static, 1 ms) ->
recurrent (``eprop_synapse``, 1 ms; only where ``task.mask_in`` / ``task.mask_rec``) -> readout
(``eprop_synapse``); readout -> recurrent ``eprop_learning_signal_connection`` with B; target
``step_rate_generator`` (receptor 2, amplitude_times arange(task) + 2) and learning-window
generator (receptor 1, 1.0 from 2 ms); final-update spike_generator (created last, static,
weight 1000) into parrots and recurrent neurons; ``Simulate(task + 5)``.  ``config.eta_changes``
splits the simulation and calls ``SetDefaults`` for eta in between (spec 5: eta lag).

Masked connections are created one by one with ``Connect`` on id arrays (``connect_arrays``),
in ascending (source, target) order; creation order does not change any number (spec 2.2).
"""
from __future__ import annotations

import math

import numpy as np

from .numpy_event import ADAPTIVE, PSC_DELTA, EventConfig, EventResult, loss_per_iteration

FINAL_SPIKE_WEIGHT = 1000.0


def _nest():
    import nest
    return nest


def recurrent_params(cfg: EventConfig) -> dict:
    """NEST status dict of the recurrent neurons (infinite cutoff/flush left at their default)."""
    p = {"C_m": cfg.C_m, "E_L": cfg.E_L, "V_m": cfg.E_L, "V_th": cfg.V_th, "tau_m": cfg.tau_m,
         "t_ref": cfg.t_ref, "I_e": cfg.I_e, "c_reg": cfg.c_reg, "f_target": cfg.f_target,
         "kappa": cfg.kappa, "kappa_reg": cfg.kappa_reg,
         "surrogate_gradient_function": cfg.surrogate_function,
         "surrogate_gradient_height": cfg.surrogate_height,
         "surrogate_gradient_width": cfg.surrogate_width}
    if not math.isinf(cfg.cutoff):
        p["eprop_isi_trace_cutoff"] = cfg.cutoff
    if not math.isinf(cfg.flush_interval):
        p["flush_event_send_interval"] = cfg.flush_interval
    if cfg.model in ADAPTIVE:
        p.update(adapt_beta=cfg.adapt_beta, adapt_tau=cfg.adapt_tau, adaptation=0.0)
    if cfg.model in PSC_DELTA:
        p["V_reset"] = cfg.V_reset
    return p


def readout_params(cfg: EventConfig) -> dict:
    p = {"C_m": cfg.C_m_out, "E_L": cfg.E_L_out, "V_m": cfg.E_L_out, "I_e": 0.0,
         "tau_m": cfg.tau_m_out}
    if not math.isinf(cfg.cutoff_out):
        p["eprop_isi_trace_cutoff"] = cfg.cutoff_out
    return p


def optimizer_params(cfg: EventConfig) -> dict:
    p = {"type": cfg.optimizer, "batch_size": int(cfg.batch_size), "eta": cfg.eta,
         "optimize_each_step": bool(cfg.optimize_each_step), "Wmin": cfg.Wmin, "Wmax": cfg.Wmax}
    if cfg.optimizer == "adam":
        p.update(beta_1=cfg.beta_1, beta_2=cfg.beta_2, epsilon=cfg.epsilon)
    return p


def _connect_masked(nest, pre, post, W, mask):
    """One eprop_synapse per True entry of mask[j, i] (i -> j), weight W[j, i], delay 1 step."""
    post_idx, pre_idx = np.nonzero(mask)
    order = np.lexsort((post_idx, pre_idx))           # ascending source, then target
    post_idx, pre_idx = post_idx[order], pre_idx[order]
    pre_ids, post_ids = np.asarray(pre.tolist()), np.asarray(post.tolist())
    nest.Connect(pre_ids[pre_idx], post_ids[post_idx], conn_spec="one_to_one",
                 syn_spec={"synapse_model": "eprop_synapse",
                           "weight": W[post_idx, pre_idx].astype(np.float64),
                           "delay": np.ones(len(pre_idx))})


def _dense_weights(nest, pre, post) -> np.ndarray:
    c = nest.GetConnections(pre, post).get(["source", "target", "weight"])
    W = np.zeros((len(post), len(pre)))
    W[np.asarray(c["target"]) - post[0].global_id, np.asarray(c["source"]) - pre[0].global_id] = c["weight"]
    return W


def _simulate_with_eta_changes(nest, cfg: EventConfig, n_steps: int) -> None:
    t = 0
    for step, eta in sorted(cfg.eta_changes):
        if step > t:
            nest.Simulate(float(step - t))
            t = step
        nest.SetDefaults("eprop_synapse", {"optimizer": {"eta": eta}})
    nest.Simulate(float(n_steps - t))


def run_nest_event(task, cfg: EventConfig) -> EventResult:
    """Simulate ``task`` with NEST (1 thread); see the module docstring for what is returned."""
    nest = _nest()
    T = task.task_steps
    nest.ResetKernel()
    nest.verbosity = nest.VerbosityLevel.ERROR
    nest.set(resolution=cfg.dt, total_num_virtual_procs=1, print_time=False)
    nest.SetDefaults("eprop_synapse", {"optimizer": optimizer_params(cfg)})

    gen_in = nest.Create("spike_generator", task.n_in)
    parrots = nest.Create("parrot_neuron", task.n_in)
    rec = nest.Create(cfg.model, task.n_rec, recurrent_params(cfg))
    out = nest.Create("eprop_readout", task.n_out, readout_params(cfg))
    gen_target = nest.Create("step_rate_generator", task.n_out)
    gen_window = nest.Create("step_rate_generator")
    mm_out = nest.Create("multimeter", {"interval": cfg.dt,
                                        "record_from": ["readout_signal", "target_signal"],
                                        "start": 2.0, "stop": 2.0 + T})
    sr_rec = nest.Create("spike_recorder")

    static = {"synapse_model": "static_synapse", "delay": cfg.dt}
    nest.Connect(gen_in, parrots, "one_to_one", static)
    _connect_masked(nest, parrots, rec, task.W_in, task.mask_in)
    _connect_masked(nest, rec, rec, task.W_rec, task.mask_rec)
    _connect_masked(nest, rec, out, task.W_out, np.ones(task.W_out.shape, bool))
    nest.Connect(out, rec, "all_to_all", {"synapse_model": "eprop_learning_signal_connection",
                                          "delay": cfg.dt, "weight": task.B})
    nest.Connect(gen_target, out, "one_to_one", {"synapse_model": "rate_connection_delayed",
                                                 "delay": cfg.dt, "receptor_type": 2})
    nest.Connect(gen_window, out, "all_to_all", {"synapse_model": "rate_connection_delayed",
                                                 "delay": cfg.dt, "receptor_type": 1})
    nest.Connect(rec, sr_rec, "all_to_all", static)
    nest.Connect(mm_out, out, "all_to_all", static)

    for i, g in enumerate(gen_in):
        g.set(spike_times=np.asarray(task.input_spike_times[i], dtype=np.float64))
    amp_times = np.arange(0.0, float(T), 1.0) + 2.0
    targets = task.target_over_task()
    for k, g in enumerate(gen_target):
        g.set(amplitude_times=amp_times, amplitude_values=targets[k])
    gen_window.set(amplitude_times=[2.0], amplitude_values=[1.0])
    gen_final = nest.Create("spike_generator", 1, {"spike_times": [float(T + 1)]})
    nest.Connect(gen_final, parrots + rec, "all_to_all", {"weight": FINAL_SPIKE_WEIGHT})

    _simulate_with_eta_changes(nest, cfg, T + 5)

    ev = mm_out.get("events")
    y, yt = _per_sender(ev, "readout_signal", out), _per_sender(ev, "target_signal", out)
    sev = sr_rec.get("events")
    spike_steps = [np.sort(np.rint(sev["times"][sev["senders"] == gid]).astype(np.int64) - 1)
                   for gid in rec.tolist()]
    return EventResult(loss=loss_per_iteration(y, yt, task.n_iter), readout=y, target=yt,
                       spike_steps=spike_steps, W_in=_dense_weights(nest, parrots, rec),
                       W_rec=_dense_weights(nest, rec, rec), W_out=_dense_weights(nest, rec, out))


def _per_sender(ev, key, nodes) -> np.ndarray:
    rows = []
    for gid in nodes.tolist():
        sel = ev["senders"] == gid
        order = np.argsort(ev["times"][sel], kind="stable")
        rows.append(np.asarray(ev[key])[sel][order])
    return np.array(rows)
