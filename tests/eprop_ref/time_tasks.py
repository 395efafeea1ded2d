"""Task set-ups of NEST 3.10's time-driven ("bsshslm", Bellec et al. 2020) e-prop examples.

Shared by the NEST runner (``nest_time.py``) and the numpy reference (``numpy_time.py``):

* ``TimeConfig`` -- every parameter of one network/run (sizes, schedule, neuron, optimizer);
  ``sine_config`` / ``evidence_config`` give the full-size values of spec §7.2 / §7.3.
* ``sine_task`` / ``evidence_task`` -- the random arrays, drawn exactly as the NEST example
  scripts draw them (legacy ``np.random`` stream seeded once, same calls in the same order,
  float32 weights, spikes at sequence step 0 removed).
* ``TimeResult`` and the loss functions the examples apply to the recorded readout signals, so
  both implementations evaluate their recordings with literally the same code.

Array conventions (used everywhere in eprop_ref's time-driven modules):
  W_in (n_rec, n_in), W_rec (n_rec, n_rec), W_out (n_out, n_rec): entry [post, pre];
  B (n_rec, n_out): feedback weight readout k -> recurrent j;
  input_spikes (n_seq, seq_len, n_in) bool, sequence step i of sequence g is the spike time
  g*seq_len + 1 + i ms of the spike generator;
  targets (n_seq, seq_len, n_out) float (per-step target, the sine set-up) or (n_seq, n_out)
  (one value per sequence, the evidence-accumulation set-up).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np

# Time shifts of the bsshslm examples (all in steps; dt = 1 ms throughout).
OFFSET_GEN = 1  # spike generators can only emit from time 1 on
TOTAL_OFFSET = 4  # offset_gen + delay_in_rec + delay_rec_out + delay_out_norm
EXTENSION_SIM = 1


@dataclass(frozen=True)
class TimeConfig:
    """All parameters of one bsshslm run.  Units as in NEST (ms, mV, pF, Hz)."""

    n_in: int
    n_rec: int
    n_out: int
    seq_len: int  # eprop_update_interval in steps
    n_iter: int
    batch_size: int = 1  # sequences per iteration == optimizer batch_size (interval units)
    learning_window: Optional[int] = None  # steps; None -> seq_len
    n_adaptive: int = 0  # the LAST n_adaptive recurrent neurons are eprop_iaf_adapt_bsshslm_2020
    loss: str = "mean_squared_error"  # or "cross_entropy"
    # optimizer (common properties of eprop_synapse_bsshslm_2020)
    optimizer: str = "gradient_descent"  # or "adam"
    eta: float = 1e-4  # constant learning rate, unless etas (one per iteration) is given
    etas: Optional[tuple] = None
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    Wmin: float = -100.0
    Wmax: float = 100.0
    average_gradient: bool = False
    # recurrent neurons
    C_m: float = 1.0
    tau_m: float = 30.0
    V_th: float = 0.03
    t_ref: float = 0.0
    c_reg: float = 300.0
    f_target: float = 10.0  # Hz
    surrogate: str = "piecewise_linear"
    surrogate_height: float = 10.0
    surrogate_width: float = 0.03
    regular_spike_arrival: bool = False
    adapt_tau: float = 2000.0
    adapt_beta: float = 0.0
    flush_interval: Optional[int] = None  # steps; None -> seq_len (as the examples)
    # readouts
    tau_m_out: float = 30.0
    regular_spike_arrival_out: bool = False
    tau_m_readout: Optional[float] = None  # synapse parameter (kappa of ebar); None -> tau_m_out
    # forced final update: time (ms) of the spike that drives all inputs and recurrent neurons
    final_spike_time: Optional[int] = None  # None -> n_seq*seq_len + 3 (sine example)
    extra_steps: int = 0  # steps simulated after the usual end (room for delayed final spikes)

    @property
    def n_seq(self) -> int:
        return self.n_iter * self.batch_size

    @property
    def lw(self) -> int:
        return self.seq_len if self.learning_window is None else self.learning_window

    @property
    def task_steps(self) -> int:
        return self.n_seq * self.seq_len

    @property
    def final_time(self) -> int:
        return self.task_steps + 3 if self.final_spike_time is None else self.final_spike_time

    @property
    def total_steps(self) -> int:
        """Steps simulated: the task, the readout offset + extension, and the final update."""
        return max(self.task_steps + TOTAL_OFFSET + EXTENSION_SIM, self.final_time + 2) + self.extra_steps

    @property
    def eta_schedule(self) -> tuple:
        etas = (self.eta,) * self.n_iter if self.etas is None else tuple(self.etas)
        assert len(etas) == self.n_iter, "one eta per iteration"
        return etas

    @property
    def flush_steps(self) -> int:
        return self.seq_len if self.flush_interval is None else self.flush_interval

    @property
    def kappa_tau(self) -> float:
        return self.tau_m_out if self.tau_m_readout is None else self.tau_m_readout

    def with_(self, **kw) -> "TimeConfig":
        return replace(self, **kw)


@dataclass
class TimeResult:
    """What a run returns (NEST or numpy), all as numpy arrays."""

    losses: np.ndarray  # (n_iter,)
    errors: Optional[np.ndarray]  # (n_iter,) classification error (cross-entropy only)
    readout: np.ndarray  # (n_out, n_seq, seq_len) readout_signal y, as used by the loss
    target: np.ndarray  # (n_out, n_seq, seq_len) target_signal y*
    rec_spikes: np.ndarray  # (total_steps, n_rec) bool, [n, j]: neuron j spiked in update step n
    weights: dict = field(default_factory=dict)  # "in", "rec", "out": final dense matrices [post, pre]


# ---------------------------------------------------------------------------------------------
# configurations of the two examples


def sine_config(**overrides) -> TimeConfig:
    """Spec §7.2: eprop_supervised_regression_sine-waves_bsshslm_2020.py at full size."""
    v_th = 0.03
    base = TimeConfig(
        n_in=100, n_rec=100, n_out=1, seq_len=1000, n_iter=200, batch_size=1,
        loss="mean_squared_error", optimizer="gradient_descent", eta=1e-4,
        average_gradient=False, C_m=1.0, tau_m=30.0, V_th=v_th, t_ref=0.0, c_reg=300.0,
        f_target=10.0, surrogate="piecewise_linear", surrogate_height=0.3 / v_th,
        surrogate_width=1.0 * abs(v_th), regular_spike_arrival=False, tau_m_out=30.0,
        regular_spike_arrival_out=False,
    )
    return base.with_(**overrides)


def evidence_config(**overrides) -> TimeConfig:
    """Spec §7.3: eprop_supervised_classification_evidence-accumulation_bsshslm_2020.py.

    Sequence length 7*150 + 1050 + 150 = 2250, learning window 150 (the recall).  Use
    ``evidence_seq_len`` to get seq_len for reduced task sizes.
    """
    v_th = 0.6
    tau_m, adapt_tau = 20.0, 2000.0
    beta = 1.7 * ((1.0 - np.exp(-1.0 / adapt_tau)) / (1.0 - np.exp(-1.0 / tau_m)))
    base = TimeConfig(
        n_in=40, n_rec=100, n_out=2, seq_len=2250, learning_window=150, n_iter=50,
        batch_size=32, n_adaptive=50, loss="cross_entropy", optimizer="adam", eta=5e-3,
        beta_1=0.9, beta_2=0.999, epsilon=1e-8, average_gradient=True, C_m=1.0, tau_m=tau_m,
        V_th=v_th, t_ref=5.0, c_reg=300.0, f_target=10.0, surrogate="piecewise_linear",
        surrogate_height=0.3 / v_th, surrogate_width=1.0 * abs(v_th),
        regular_spike_arrival=True, adapt_tau=adapt_tau, adapt_beta=float(beta),
        tau_m_out=20.0, regular_spike_arrival_out=False,
    )
    cfg = base.with_(**overrides)
    if cfg.final_spike_time is None:
        # the example forces the final spike at n_seq*U + total_offset + extension_sim + 1
        cfg = cfg.with_(final_spike_time=cfg.task_steps + TOTAL_OFFSET + EXTENSION_SIM + 1)
    return cfg


# ---------------------------------------------------------------------------------------------
# task generators (random draws in the examples' order)


def _float32_normal_weights(rs, n_pre, n_post, scale):
    # the examples draw (n_pre, n_post), transpose to [post, pre], scale in float64, then cast
    return np.array(rs.randn(n_pre, n_post).T / scale, dtype=np.float32)


def superimposed_sines(rs, seq_len: int, periods: Sequence[int]) -> np.ndarray:
    """Target of the sine example: amplitudes then phases are drawn, sines summed, normalised."""
    n = len(periods)
    amplitudes = rs.uniform(low=0.5, high=2.0, size=n)
    phases = rs.uniform(low=0.0, high=2.0 * np.pi, size=n)
    sines = [
        a * np.sin(np.linspace(phi, phi + 2.0 * np.pi * (seq_len // t), seq_len))
        for a, phi, t in zip(amplitudes, phases, periods)
    ]
    total = sum(sines)
    total -= total[0]
    total /= max(np.abs(total).max(), 1e-6)
    return total


def sine_task(cfg: TimeConfig, seed: int = 1, spike_prob: float = 0.05,
              periods: Sequence[int] = (1000, 500, 333, 200)):
    """Weights, frozen input and target of the sine example.

    Returns (weights, input_spikes, targets) with weights = dict(W_in, W_rec, W_out, B) as
    float32 arrays; input_spikes (n_seq, U, n_in) is the same frozen pattern in every sequence;
    targets (n_seq, U, n_out) float64 (every readout gets the same target, as in the example).
    For short sequences pass shorter periods (the example's periods give a zero target if
    seq_len < 200).
    """
    rs = np.random.RandomState(seed)
    n_in, n_rec, n_out, u = cfg.n_in, cfg.n_rec, cfg.n_out, cfg.seq_len
    w_in = _float32_normal_weights(rs, n_in, n_rec, np.sqrt(n_in))
    w_rec = _float32_normal_weights(rs, n_rec, n_rec, np.sqrt(n_rec))
    np.fill_diagonal(w_rec, 0.0)  # no autapses
    w_out = _float32_normal_weights(rs, n_rec, n_out, np.sqrt(n_rec))
    b = np.array(rs.randn(n_rec, n_out) / np.sqrt(n_rec), dtype=np.float32)
    pattern = rs.rand(u, n_in) < spike_prob
    pattern[0, :] = False  # the example removes spikes at sequence step 0
    target = superimposed_sines(rs, u, periods)
    inputs = np.broadcast_to(pattern, (cfg.n_seq, u, n_in)).copy()
    targets = np.broadcast_to(target[None, :, None], (cfg.n_seq, u, n_out)).copy()
    weights = dict(W_in=w_in, W_rec=w_rec, W_out=w_out, B=b)
    return weights, inputs, targets


@dataclass(frozen=True)
class EvidenceShape:
    """Sizes of the evidence-accumulation input (spec §7.3 defaults)."""

    n_cues: int = 7
    cue: int = 100
    spacing: int = 50
    bg_noise: int = 1050
    recall: int = 150
    n_symbols: int = 4
    prob_group: float = 0.3
    spike_prob: float = 0.04

    @property
    def seq_len(self) -> int:
        return self.n_cues * (self.cue + self.spacing) + self.bg_noise + self.recall


def glorot_uniform(rs, fan_in, fan_out):
    scale = 1.0 / max(1.0, (fan_in + fan_out) / 2.0)
    limit = np.sqrt(3.0 * scale)
    return rs.uniform(low=-limit, high=limit, size=(fan_in, fan_out))


def evidence_batch(rs, batch_size: int, n_in: int, shape: EvidenceShape):
    """One iteration's input spikes (batch, U, n_in) and target cues (batch,), drawn in order."""
    n_pop = n_in // shape.n_symbols
    probs_choice = np.array([shape.prob_group, 1 - shape.prob_group], dtype=np.float32)
    idx = rs.choice([0, 1], batch_size)
    probs = np.zeros((batch_size, 2), dtype=np.float32)
    probs[:, 0] = probs_choice[idx]
    probs[:, 1] = probs_choice[1 - idx]
    cues = np.zeros((batch_size, shape.n_cues), dtype=int)
    for b in range(batch_size):
        cues[b, :] = rs.choice([0, 1], shape.n_cues, p=probs[b])
    u = shape.seq_len
    spike_probs = np.zeros((batch_size, u, n_in))
    for b in range(batch_size):
        for c in range(shape.n_cues):
            start = c * (shape.cue + shape.spacing) + shape.spacing
            pop = cues[b, c] * n_pop
            spike_probs[b, start:start + shape.cue, pop:pop + n_pop] = shape.spike_prob
    spike_probs[:, -shape.recall:, 2 * n_pop:3 * n_pop] = shape.spike_prob
    spike_probs[:, :, 3 * n_pop:] = shape.spike_prob / 4.0
    spikes = spike_probs > rs.rand(spike_probs.size).reshape(spike_probs.shape)
    spikes[:, 0, :] = False  # removed in the example: would be dropped at interval step 0
    target_cues = (np.sum(cues, axis=1) > int(shape.n_cues / 2)).astype(int)
    return spikes, target_cues


def evidence_task(cfg: TimeConfig, shape: EvidenceShape = EvidenceShape(), seed: int = 1):
    """Weights, input spikes and one-hot targets of the evidence-accumulation example.

    The example draws all weights first, then one batch per iteration (training, validation and
    test phases alike), so drawing the n_iter batches up front gives the same arrays.
    Returns (weights, input_spikes (n_seq, U, n_in), targets (n_seq, n_out)).
    """
    assert shape.seq_len == cfg.seq_len, "cfg.seq_len must equal shape.seq_len"
    rs = np.random.RandomState(seed)
    n_in, n_rec, n_out = cfg.n_in, cfg.n_rec, cfg.n_out
    w_in = _float32_normal_weights(rs, n_in, n_rec, np.sqrt(n_in))
    w_rec = _float32_normal_weights(rs, n_rec, n_rec, np.sqrt(n_rec))
    np.fill_diagonal(w_rec, 0.0)
    w_out = np.array(glorot_uniform(rs, n_rec, n_out).T, dtype=np.float32)
    b = np.array(rs.randn(n_rec, n_out), dtype=np.float32)
    spikes, targets = [], []
    for _ in range(cfg.n_iter):
        s, cues = evidence_batch(rs, cfg.batch_size, n_in, shape)
        one_hot = np.zeros((cfg.batch_size, n_out))
        one_hot[np.arange(cfg.batch_size), cues] = 1.0
        spikes.append(s)
        targets.append(one_hot)
    weights = dict(W_in=w_in, W_rec=w_rec, W_out=w_out, B=b)
    return weights, np.concatenate(spikes), np.concatenate(targets)


# ---------------------------------------------------------------------------------------------
# recordings -> per-iteration numbers, exactly as the example scripts evaluate them


def sequence_windows(per_step: np.ndarray, cfg: TimeConfig) -> np.ndarray:
    """(n_out, total_steps) per-update-step readout values -> (n_out, n_seq, U).

    The multimeter window of the examples is (4, 4 + task] ms: update steps 4 ... task+3, so
    sequence g, step i is update step g*U + 4 + i.
    """
    t0 = TOTAL_OFFSET
    return per_step[:, t0:t0 + cfg.task_steps].reshape(per_step.shape[0], cfg.n_seq, cfg.seq_len)


def mse_losses(readout: np.ndarray, target: np.ndarray, cfg: TimeConfig) -> np.ndarray:
    """Sine example: 0.5 * mean over readouts and batch of the per-sequence sum of squares."""
    shape = (cfg.n_out, cfg.n_iter, cfg.batch_size, cfg.seq_len)
    y, yt = readout.reshape(shape), target.reshape(shape)
    return 0.5 * np.mean(np.sum((y - yt) ** 2, axis=3), axis=(0, 2))


def cross_entropy_losses_and_errors(readout: np.ndarray, target: np.ndarray, cfg: TimeConfig):
    """Evidence-accumulation example, evaluated per iteration (batch) on the last LW steps.

    loss = -mean over batch AND window steps of sum_k y*_k log y_k (the code averages over time,
    spec §7.3's text says sum); error = 1 - accuracy of argmax_k mean_t y_k.
    """
    losses, errors = [], []
    for it in range(cfg.n_iter):
        sl = slice(it * cfg.batch_size, (it + 1) * cfg.batch_size)
        y = readout[:, sl, -cfg.lw:][:, None]
        yt = target[:, sl, -cfg.lw:][:, None]
        loss = -np.mean(np.sum(yt * np.log(y), axis=0), axis=(1, 2))
        pred = np.argmax(np.mean(y, axis=3), axis=0)
        true = np.argmax(np.mean(yt, axis=3), axis=0)
        losses.append(loss[0])
        errors.append(1.0 - np.mean(true == pred, axis=1)[0])
    return np.array(losses), np.array(errors)


def evaluate(readout_steps: np.ndarray, target_steps: np.ndarray, cfg: TimeConfig):
    """Per-step recordings (n_out, total_steps) -> (losses, errors, readout, target)."""
    y = sequence_windows(readout_steps, cfg)
    yt = sequence_windows(target_steps, cfg)
    if cfg.loss == "cross_entropy":
        losses, errors = cross_entropy_losses_and_errors(y, yt, cfg)
    else:
        losses, errors = mse_losses(y, yt, cfg), None
    return losses, errors, y, yt
