"""The sine-wave pattern-generation task of NEST 3.10's event-driven e-prop example.

Reproduces the arrays of ``eprop_supervised_regression_sine-waves.py`` (spec section 7.1)
exactly: the same random draws, in the same order, from ``numpy.random.RandomState(seed)``
(identical to the example's ``np.random.seed(seed)`` + global draws), with the same float32
handling.  The result is plain numpy data, so the same numbers can be fed to NEST, to the numpy
references and to eprop-gen.

API
---
``task_from_arrays(W_in, W_rec, W_out, B, input_spike_times, target, seq=, n_iter=,
mask_in=None, mask_rec=None) -> SineTask``
    The same container for arrays from elsewhere (e.g. another simulator's own draws).
``make_sine_task(...) -> SineTask``
    Weights, input spike times and target.  Options:
    ``scaling`` -- how the example's scale factor s_f = 1 - kappa is applied to the weights:
        ``"example"`` (the example script: W_out*s_f always; W_in, W_rec, B *s_f for
        ``eprop_iaf``; B/s_f for the psc_delta models), ``"test"`` (NEST's
        ``test_eprop_plasticity``: as "example" but ``eprop_iaf_adapt`` is scaled like
        ``eprop_iaf``), or ``"none"``.
    ``dtype_weights`` -- ``np.float32`` as in the example (the scaling is then done in float32,
        NumPy's weak-scalar rule), or ``np.float64``.
    ``p_conn_in`` / ``p_conn_rec`` -- optional connection probabilities; masks are drawn from a
        *separate* generator (``mask_seed``) after the example's draws, so the dense task's numbers
        never change.  Masked-out weights are set to 0 and are not connected.
``example_parameters(model, seq) -> dict``
    The neuron/readout/optimizer values the example uses for ``model`` (keys are the field names
    of ``numpy_event.EventConfig``), including eta*s_f**2 and the psc_delta c_reg/V_th/V_reset.
``scale_factor(kappa=0.97) -> float``

Conventions (all matrices are (n_post, n_pre), entry [j, i] is the weight i -> j):
``W_in`` (n_rec, n_in), ``W_rec`` (n_rec, n_rec) with zero diagonal, ``W_out`` (n_out, n_rec),
``B`` (n_rec, n_out) (feedback weight from readout k to neuron j at [j, k]), all float64 arrays
holding the (possibly float32-rounded) values NEST receives.  ``input_spike_times[i]`` are the
spike-generator times in ms of input i (float64 arrays holding the example's float32 values;
a spike at sequence step t of iteration k is at 1 + k*seq + t ms).  ``target`` (n_out, seq) is
the float64 target of one sequence, repeated in every iteration and applied from step 2 on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SINE_PERIODS = (1000, 500, 333, 200)      # periods in steps of the four superimposed sines
INPUT_SPIKE_PROB = 0.05                   # frozen Poisson input: spike probability per step
OFFSET_GEN = 1                            # generator signals start at 1 ms
TARGET_OFFSET = 2                         # offset_gen + delay_in_rec: first target/readout step
PSC_DELTA_MODELS = ("eprop_iaf_psc_delta", "eprop_iaf_psc_delta_adapt")
RECURRENT_MODELS = ("eprop_iaf", "eprop_iaf_adapt") + PSC_DELTA_MODELS


@dataclass(frozen=True)
class SineTask:
    """Arrays of one sine-wave task (see module docstring for shapes and units)."""

    W_in: np.ndarray
    W_rec: np.ndarray
    W_out: np.ndarray
    B: np.ndarray
    mask_in: np.ndarray            # bool (n_rec, n_in): connection exists
    mask_rec: np.ndarray           # bool (n_rec, n_rec): connection exists (diagonal False)
    input_spike_times: tuple       # n_in float64 arrays, ms
    target: np.ndarray             # (n_out, seq)
    seq: int
    n_iter: int

    @property
    def n_in(self) -> int:
        return self.W_in.shape[1]

    @property
    def n_rec(self) -> int:
        return self.W_rec.shape[0]

    @property
    def n_out(self) -> int:
        return self.W_out.shape[0]

    @property
    def task_steps(self) -> int:
        return self.seq * self.n_iter

    def target_over_task(self) -> np.ndarray:
        """(n_out, n_iter*seq): the target applied at readout steps 2 .. task+1.

        ``target`` is either one sequence (n_out, seq), repeated every iteration, or the whole
        task (n_out, n_iter*seq)."""
        if self.target.shape[1] == self.task_steps:
            return self.target
        return np.tile(self.target, (1, self.n_iter))


def task_from_arrays(W_in, W_rec, W_out, B, input_spike_times, target, *, seq: int, n_iter: int,
                     mask_in=None, mask_rec=None) -> SineTask:
    """A task from arbitrary arrays (shapes as in the module docstring).

    Default masks connect everything except the recurrent diagonal; masked-out weights are zeroed.
    """
    W_in, W_rec = np.asarray(W_in, np.float64), np.asarray(W_rec, np.float64)
    n_rec, n_in = W_in.shape
    mask_in = np.ones((n_rec, n_in), bool) if mask_in is None else np.asarray(mask_in, bool)
    mask_rec = ~np.eye(n_rec, dtype=bool) if mask_rec is None else np.asarray(mask_rec, bool)
    if np.any(np.diag(mask_rec)):
        raise ValueError("no autapses: the diagonal of mask_rec must be False")
    target = np.atleast_2d(np.asarray(target, np.float64))
    if target.shape[1] not in (seq, seq * n_iter):
        raise ValueError("target must have seq or seq*n_iter columns")
    return SineTask(W_in=W_in * mask_in, W_rec=W_rec * mask_rec,
                    W_out=np.asarray(W_out, np.float64), B=np.asarray(B, np.float64),
                    mask_in=mask_in, mask_rec=mask_rec,
                    input_spike_times=tuple(np.asarray(t, np.float64) for t in input_spike_times),
                    target=target, seq=seq, n_iter=n_iter)


def scale_factor(kappa: float = 0.97) -> float:
    """The example's s_f = 1 - kappa (compensates the missing (1-alpha) and (1-kappa) factors)."""
    return 1.0 - kappa


def _draw_weights(rs: np.random.RandomState, n_in: int, n_rec: int, n_out: int, dtype):
    """Draws 1-4 of spec 7.1 in the example's order and dtype (before model-specific scaling)."""
    W_in = np.array(rs.randn(n_in, n_rec).T / np.sqrt(n_in), dtype=dtype)
    W_rec = np.array(rs.randn(n_rec, n_rec).T / np.sqrt(n_rec), dtype=dtype)
    np.fill_diagonal(W_rec, 0.0)                         # no autapses
    W_out = np.array(rs.randn(n_rec, n_out).T / np.sqrt(n_rec), dtype=dtype)
    B = np.array(rs.randn(n_rec, n_out) / np.sqrt(n_rec), dtype=dtype)
    return W_in, W_rec, W_out, B


def _apply_scaling(model: str, scaling: str, sf: float, W_in, W_rec, W_out, B):
    """Scale in the arrays' own dtype, like the example (float32 arrays stay float32)."""
    if scaling == "none":
        return W_in, W_rec, W_out, B
    if scaling not in ("example", "test"):
        raise ValueError(f"unknown scaling {scaling!r}")
    W_out = W_out * sf
    iaf_like = ("eprop_iaf",) if scaling == "example" else ("eprop_iaf", "eprop_iaf_adapt")
    if model in iaf_like:
        W_in, W_rec, B = W_in * sf, W_rec * sf, B * sf
    elif model in PSC_DELTA_MODELS:
        B = B / sf
    return W_in, W_rec, W_out, B


def _draw_input_spike_times(rs, n_in: int, seq: int, n_iter: int, prob: float, dtype_spikes):
    """Frozen Poisson pattern (draw 5), repeated every iteration, times in ms as float32."""
    bools = (rs.rand(seq, n_in) < prob).swapaxes(0, 1)
    starts = np.arange(0.0, float(n_iter * seq), float(seq)) + OFFSET_GEN
    steps = np.arange(0.0, float(seq), 1.0)
    times = []
    for row in bools:
        t = np.hstack([steps[row] + start for start in starts]).astype(dtype_spikes)
        times.append(np.asarray(t, dtype=np.float64))
    return tuple(times)


def superimposed_sines(rs, seq: int, periods=SINE_PERIODS) -> np.ndarray:
    """Draw 6: amplitudes, then phases; sum of sines, minus the first value, max-normalised."""
    amplitudes = rs.uniform(low=0.5, high=2.0, size=len(periods))
    phases = rs.uniform(low=0.0, high=2.0 * np.pi, size=len(periods))
    sines = [A * np.sin(np.linspace(phi, phi + 2.0 * np.pi * (seq // T), seq))
             for A, phi, T in zip(amplitudes, phases, periods)]
    s = sum(sines)
    s -= s[0]
    s /= max(np.abs(s).max(), 1e-6)
    return s


def _draw_masks(n_in: int, n_rec: int, p_in, p_rec, mask_seed: int):
    rng = np.random.default_rng(mask_seed)
    mask_in = np.ones((n_rec, n_in), bool) if p_in is None else rng.random((n_rec, n_in)) < p_in
    mask_rec = np.ones((n_rec, n_rec), bool) if p_rec is None else rng.random((n_rec, n_rec)) < p_rec
    np.fill_diagonal(mask_rec, False)
    return mask_in, mask_rec


def make_sine_task(model: str = "eprop_iaf", *, n_in: int = 100, n_rec: int = 100, n_out: int = 1,
                   seq: int = 1000, n_iter: int = 200, seed: int = 1, kappa: float = 0.97,
                   scaling: str = "example", dtype_weights=np.float32, dtype_spikes=np.float32,
                   input_spike_prob: float = INPUT_SPIKE_PROB, periods=SINE_PERIODS,
                   p_conn_in: float | None = None, p_conn_rec: float | None = None,
                   mask_seed: int = 12345) -> SineTask:
    """The example's task arrays for ``model`` (see module docstring)."""
    if model not in RECURRENT_MODELS:
        raise ValueError(f"unknown recurrent model {model!r}")
    rs = np.random.RandomState(seed)
    W_in, W_rec, W_out, B = _draw_weights(rs, n_in, n_rec, n_out, dtype_weights)
    W_in, W_rec, W_out, B = _apply_scaling(model, scaling, scale_factor(kappa), W_in, W_rec, W_out, B)
    input_times = _draw_input_spike_times(rs, n_in, seq, n_iter, input_spike_prob, dtype_spikes)
    target = superimposed_sines(rs, seq, periods)
    mask_in, mask_rec = _draw_masks(n_in, n_rec, p_conn_in, p_conn_rec, mask_seed)
    f64 = lambda a: np.asarray(a, dtype=np.float64)          # noqa: E731  (exact promotion)
    return SineTask(W_in=f64(W_in) * mask_in, W_rec=f64(W_rec) * mask_rec, W_out=f64(W_out),
                    B=f64(B), mask_in=mask_in, mask_rec=mask_rec, input_spike_times=input_times,
                    target=np.tile(target, (n_out, 1)), seq=seq, n_iter=n_iter)


def example_parameters(model: str, seq: int = 1000, kappa: float = 0.97) -> dict:
    """Neuron, readout and optimizer values of the example for ``model``.

    Keys are ``numpy_event.EventConfig`` field names.  Note: the example sets adapt_beta = 0 for
    ``eprop_iaf_adapt`` (its adaptation is then inert); NEST's own test uses 0.0174 / 2000 ms.
    """
    sf = scale_factor(kappa)
    p = dict(model=model, C_m=1.0, E_L=0.0, V_th=0.03, tau_m=30.0, t_ref=0.0, I_e=0.0,
             c_reg=300.0 / seq, f_target=10.0, kappa=kappa, kappa_reg=kappa,
             surrogate_function="piecewise_linear", surrogate_height=10.0,
             surrogate_width=1.0 / 33.3, cutoff=100.0, flush_interval=float(seq),
             tau_m_out=30.0, C_m_out=1.0, cutoff_out=100.0,
             optimizer="gradient_descent", eta=1e-4 * sf ** 2, batch_size=1,
             optimize_each_step=False, Wmin=-100.0, Wmax=100.0)
    if model == "eprop_iaf_adapt":
        p["adapt_beta"] = 0.0
    if model in PSC_DELTA_MODELS:
        p.update(V_reset=-0.5, c_reg=2.0 / seq / sf ** 2, V_th=0.5)
    return p
