"""Independent numpy reference: forward pass of a tiny e-prop network and its exact gradient by
reverse-mode backpropagation through time (BPTT).

Written by hand from the model equations (``eprop_gen/models/*.eprop``) and from the per-step order
of the generated C++ kernels (``CompiledModel.source_path``); it shares no code with the compiler's
eligibility derivation, which is the point: ``tests/test_gradient_check.py`` compares the engine's
e-prop gradient with the gradient computed here.

Network
    input spike source (n_in) --W_in--> learning population (n, one model) --W_out--> readouts
    (n_out, ``eprop_readout``: a leaky integrator, y = V_m); optionally recurrent weights W_rec
    (population -> itself). All delays are one step.

Timing (the engine's, docs/python-api.md "Timing conventions"), step n = 0 .. T-1:
    * an input spike with time t ms (delay 1) is added to the port state in step t/dt; ``x[n, i]``
      counts the spikes of input i added in step n;
    * a spike of the population emitted in step n is added to its recurrent targets and to the
      readouts in step n + 1;
    * one step of a learning neuron (the order of the generated kernel):
        1. refractory count: if r > 0, r -= 1; the neuron may spike in this step iff r == 0 after it;
        2. propagate the states over the step (exact propagator, or RK4 substeps);
        3. adaptation jump of the previous step's spike (``adaptation: a += 1``);
        4. add this step's spike input to the port state (V += sum of weights);
        5. psi = surrogate(dist) if it may spike else 0; z = threshold holds (and it may spike);
        6. if z: apply the reset, r = round(t_ref / dt);
    * readout k: V_k[n] = alpha_out V_k[n-1] + sum_j W_out[k, j] z_j[n-1]; y_k[n] = V_k[n].

Loss and gradients
    E = sum_{n=0}^{T-1} sum_k 1/2 lambda_k[n] (y_k[n] - y*_k[n])^2 (lambda: an optional learning
    window, 1 by default). The forward pass is the spiking network
    itself; for the backward pass a spike z = H(dist) has the pseudo-derivative dz/d(dist) := psi
    (the value the model computes, 0 while refractory); the refractory count carries no gradient.
    The reset h_post = R(h_in, z) is differentiated according to ``reset_gradient``:
      * ``"stopped"``: dh_post/dh_in = identity, no path through z;
      * ``"kept"``:    dh_post/dh_in = dR/dh_in with z held fixed in a spike step (a state set to a
                       constant gets 0, ``u += d`` and ``V -= theta`` pass with 1), identity otherwise;
      * ``"full"``:    kept, plus the path through the spike in every step:
                       (R(h_in) - h_in) * psi * d(dist)/dh_in (R applied as if the neuron spiked;
                       with z = H(dist) and h_post = h_in + z (R(h_in) - h_in) this is dh_post/dz).
    The adaptation jump's path through z (a += z) is always differentiated (Bellec's second
    eligibility component). With ``truncate_recurrent=True`` the recurrent input (a neuron's spikes
    arriving at other neurons) is a constant for the gradient: dE/dz_j flows only directly into the
    readouts (and through j's own reset/adaptation). That is the e-prop truncation; for a network
    without W_rec it changes nothing.

Arithmetic mirrors the generated kernels (same formulas, libm ``exp``/``expm1`` through ``math``, the
same operation order), so the spikes are the engine's exactly and the states agree to round-off.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RESET_MODES = ("stopped", "kept", "full")


def _llround(x: float) -> int:
    """C's llround (halves away from zero), as the kernels round t_ref / dt."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def _piecewise_linear(distance: np.ndarray, height: float, width: float) -> np.ndarray:
    """NEST's piecewise-linear surrogate gamma * max(0, 1 - |d| / w) (the generated form)."""
    return height * np.maximum(0.0, 1.0 - np.abs(distance) / width)


# ------------------------------------------------------------------------------------------------
# Models. Each describes one learning neuron model vectorised over the population:
#   states (n, S); port: the index of the state the spike port adds to;
#   propagate(h) -> (h_next, J) with J[i] = d h_next[i] / d h[i] (n, S, S);
#   jump (S,): the adaptation jump per spike of the previous step;
#   surrogate(h) -> psi before refractory gating; fires(h) -> bool; ddist(h) -> (n, S);
#   reset(h) -> the post-reset state (as if spiking); reset_jacobian(h) -> dR/dh with z fixed.
# ------------------------------------------------------------------------------------------------
class _Model:
    states: tuple[str, ...] = ()
    port = 0
    refractory_steps = 0

    def __init__(self, params: dict, dt: float):
        self.p = dict(params)
        self.dt = float(dt)
        self.jump = np.zeros(len(self.states))

    def initial(self, n: int) -> np.ndarray:
        raise NotImplementedError


class _LIF(_Model):
    """eprop_iaf: V' = -(V - E_L)/tau_m + I_e/C_m, reset V -= V_th - E_L (written E_L + V - V_th)."""
    states = ("V_m",)

    def __init__(self, params, dt):
        super().__init__(params, dt)
        p, h = self.p, self.dt
        self.P_V = math.exp(-h / p["tau_m"])
        x = h / p["tau_m"]
        self.P_I = (-p["tau_m"] * math.expm1(-x) / p["C_m"] if x >= 0
                    else p["tau_m"] * math.exp(-x) * math.expm1(x) / p["C_m"])
        drive = p["C_m"] * p["E_L"] + p["I_e"] * p["tau_m"]
        self.P_1 = (-drive * math.expm1(-x) / p["C_m"] if x >= 0
                    else drive * math.exp(-x) * math.expm1(x) / p["C_m"])
        self.refractory_steps = _llround(p.get("t_ref", 0.0) / h)

    def initial(self, n):
        return np.full((n, 1), float(self.p["E_L"]))

    def propagate(self, h):
        out = h.copy()
        out[:, 0] = (self.P_V * h[:, 0] + self.P_I * 0.0) + self.P_1 * 1.0
        J = np.zeros((h.shape[0], 1, 1))
        J[:, 0, 0] = self.P_V
        return out, J

    def dist(self, h):
        return h[:, 0] - self.p["V_th"]

    def surrogate(self, h):
        return _piecewise_linear(h[:, 0] - self.p["V_th"], self.p["surrogate_gradient_height"],
                                 self.p["surrogate_gradient_width"])

    def fires(self, h):
        return h[:, 0] >= self.p["V_th"]

    def ddist(self, h):
        return np.ones((h.shape[0], 1))

    def reset(self, h):
        out = h.copy()
        out[:, 0] = (self.p["E_L"] + h[:, 0]) - self.p["V_th"]
        return out

    def reset_jacobian(self, h):
        return np.ones((h.shape[0], 1, 1))


class _LIFReset(_LIF):
    """eprop_iaf_stdp: eprop_iaf with the reset V = V_reset (derivative 0 with z held)."""

    def reset(self, h):
        out = h.copy()
        out[:, 0] = self.p["V_reset"]
        return out

    def reset_jacobian(self, h):
        return np.zeros((h.shape[0], 1, 1))


class _LIFAdapt(_LIF):
    """eprop_iaf_adapt: threshold V_th + beta a, a' = -a/adapt_tau, a += 1 one step after a spike."""
    states = ("V_m", "adaptation")

    def __init__(self, params, dt):
        super().__init__(params, dt)
        self.P_a = math.exp(-self.dt / self.p["adapt_tau"])
        self.jump = np.array([0.0, 1.0])

    def initial(self, n):
        h = np.zeros((n, 2))
        h[:, 0] = self.p["E_L"]
        return h

    def propagate(self, h):
        out = np.empty_like(h)
        out[:, 0] = (self.P_V * h[:, 0] + self.P_I * 0.0) + self.P_1 * 1.0
        out[:, 1] = self.P_a * h[:, 1]
        J = np.zeros((h.shape[0], 2, 2))
        J[:, 0, 0], J[:, 1, 1] = self.P_V, self.P_a
        return out, J

    def dist(self, h):
        return h[:, 0] - self.p["V_th"] - self.p["adapt_beta"] * h[:, 1]

    def surrogate(self, h):
        # the kernel's |-V + V_th + beta a| (the same number as |V - V_th - beta a|)
        d = (-h[:, 0] + self.p["V_th"]) + self.p["adapt_beta"] * h[:, 1]
        return _piecewise_linear(d, self.p["surrogate_gradient_height"], self.p["surrogate_gradient_width"])

    def fires(self, h):
        return h[:, 0] >= self.p["V_th"] + self.p["adapt_beta"] * h[:, 1]

    def ddist(self, h):
        d = np.empty((h.shape[0], 2))
        d[:, 0], d[:, 1] = 1.0, -self.p["adapt_beta"]
        return d

    def reset_jacobian(self, h):
        J = np.zeros((h.shape[0], 2, 2))
        J[:, 0, 0] = J[:, 1, 1] = 1.0
        return J


class _Izhikevich(_Model):
    """eprop_izhikevich: v' = 0.04 v^2 + 5 v + 140 - u + I_e, u' = a (b v - u), classic RK4 with
    `substeps` substeps per step (the kernel's stage formulas); reset v = c, u += d; no refractory.
    The Jacobian of the step is the exact derivative of the RK4 map (tangents through the stages)."""
    states = ("v", "u")

    def __init__(self, params, dt, substeps: int = 2):
        super().__init__(params, dt)
        self.substeps = substeps

    def initial(self, n):
        h = np.empty((n, 2))
        h[:, 0], h[:, 1] = self.p.get("v0", -65.0), self.p.get("u0", -13.0)
        return h

    def _rhs(self, v, u, tv, tu):
        """f(v, u) and its tangent along (tv, tu) (tv, tu: (n, 2) columns of the Jacobian)."""
        p = self.p
        fv = (((p["I_e"] + 0.0) - u) + 0.04 * (v * v)) + 5 * v + 140
        fu = p["a"] * (p["b"] * v - u)
        dfv = (0.08 * v + 5.0)[:, None] * tv - tu
        dfu = p["a"] * (p["b"] * tv - tu)
        return fv, fu, dfv, dfu

    def propagate(self, h):
        n = h.shape[0]
        v, u = h[:, 0].copy(), h[:, 1].copy()
        Jv = np.tile([1.0, 0.0], (n, 1))        # d v / d(v0, u0)
        Ju = np.tile([0.0, 1.0], (n, 1))        # d u / d(v0, u0)
        hs = self.dt / self.substeps
        for _ in range(self.substeps):
            k1v, k1u, d1v, d1u = self._rhs(v, u, Jv, Ju)
            t2v, t2u = v + 0.5 * hs * k1v, u + 0.5 * hs * k1u
            k2v, k2u, d2v, d2u = self._rhs(t2v, t2u, Jv + 0.5 * hs * d1v, Ju + 0.5 * hs * d1u)
            t3v, t3u = v + 0.5 * hs * k2v, u + 0.5 * hs * k2u
            k3v, k3u, d3v, d3u = self._rhs(t3v, t3u, Jv + 0.5 * hs * d2v, Ju + 0.5 * hs * d2u)
            t4v, t4u = v + 1.0 * hs * k3v, u + 1.0 * hs * k3u
            k4v, k4u, d4v, d4u = self._rhs(t4v, t4u, Jv + 1.0 * hs * d3v, Ju + 1.0 * hs * d3u)
            v = v + hs / 6.0 * (k1v + 2.0 * k2v + 2.0 * k3v + k4v)
            u = u + hs / 6.0 * (k1u + 2.0 * k2u + 2.0 * k3u + k4u)
            Jv = Jv + hs / 6.0 * (d1v + 2.0 * d2v + 2.0 * d3v + d4v)
            Ju = Ju + hs / 6.0 * (d1u + 2.0 * d2u + 2.0 * d3u + d4u)
        out = np.stack([v, u], axis=1)
        return out, np.stack([Jv, Ju], axis=1)       # J[i, row = output state, col = input state]

    def dist(self, h):
        return h[:, 0] - self.p["V_th"]

    def surrogate(self, h):
        # centred on V_psi (the upswing's onset), not the cut-off; as the kernel: |V_psi - v|
        return _piecewise_linear(self.p["V_psi"] - h[:, 0], self.p["surrogate_gradient_height"],
                                 self.p["surrogate_gradient_width"])

    def fires(self, h):
        return h[:, 0] >= self.p["V_th"]

    def ddist(self, h):
        d = np.zeros((h.shape[0], 2))
        d[:, 0] = 1.0
        return d

    def reset(self, h):
        out = np.empty_like(h)
        out[:, 0] = self.p["c"]
        out[:, 1] = self.p["d"] + h[:, 1]
        return out

    def reset_jacobian(self, h):
        J = np.zeros((h.shape[0], 2, 2))
        J[:, 1, 1] = 1.0
        return J


MODELS = {
    "eprop_iaf": _LIF,
    "eprop_iaf_adapt": _LIFAdapt,
    "eprop_iaf_stdp": _LIFReset,
    "eprop_izhikevich": _Izhikevich,
}


def make_model(name: str, params: dict, dt: float, **options) -> _Model:
    """The reference model `name` (a key of MODELS) with the complete parameter dict `params`."""
    return MODELS[name](params, dt, **options)


# ------------------------------------------------------------------------------------------------
# Forward pass
# ------------------------------------------------------------------------------------------------
@dataclass
class Trajectory:
    """Everything the backward pass needs, per step n = 0 .. T-1 (population index j, readout k)."""
    model: _Model
    x: np.ndarray            # (T, n_in) input spikes added in step n
    W_in: np.ndarray         # (n, n_in)
    W_rec: np.ndarray | None  # (n, n) or None
    W_out: np.ndarray        # (n_out, n)
    alpha_out: float
    h_start: np.ndarray      # (T, n, S) state entering step n (after step n-1's reset)
    h_in: np.ndarray         # (T, n, S) state after propagation, jump and input, before the reset
    h: np.ndarray            # (T, n, S) state after step n (what the engine records)
    J_prop: np.ndarray       # (T, n, S, S) d(propagated state) / d(h_start) of step n
    psi: np.ndarray          # (T, n) pseudo-derivative (0 while refractory)
    z: np.ndarray            # (T, n) spikes (0/1)
    y: np.ndarray            # (T, n_out) readout output

    def spike_times(self, dt: float):
        """(times_ms, senders) ordered by time then id, as ``Network.spikes`` returns them."""
        steps, senders = np.nonzero(self.z)
        return (steps + 1) * dt, senders


def forward(model: _Model, x: np.ndarray, W_in: np.ndarray, W_out: np.ndarray, alpha_out: float,
            W_rec: np.ndarray | None = None, readout_const: float = 0.0) -> Trajectory:
    """Run the network for T = len(x) steps from the initial state (see the module docstring).

    x: (T, n_in) counts of input spikes integrated in step n (input time t ms -> step t/dt).
    alpha_out: the readouts' exp(-dt/tau_m); readout_const their constant per-step term (0 for
    E_L = I_e = 0). Spike input sums are taken in ascending source order (inputs, then recurrent).
    """
    T, n_in = x.shape
    n, n_out = W_in.shape[0], W_out.shape[0]
    S = len(model.states)
    h = model.initial(n)
    refractory = np.zeros(n, dtype=np.int64)
    z_prev = np.zeros(n)
    V_out = np.zeros(n_out)
    out = dict(h_start=np.zeros((T, n, S)), h_in=np.zeros((T, n, S)), h=np.zeros((T, n, S)),
               J_prop=np.zeros((T, n, S, S)), psi=np.zeros((T, n)), z=np.zeros((T, n)),
               y=np.zeros((T, n_out)))
    for step in range(T):
        out["h_start"][step] = h
        refractory[refractory > 0] -= 1
        can_spike = refractory == 0
        hp, J = model.propagate(h)
        out["J_prop"][step] = J
        hp = hp + model.jump[None, :] * z_prev[:, None]
        current = np.zeros(n)
        for i in np.nonzero(x[step])[0]:
            current = current + W_in[:, i] * x[step, i]
        if W_rec is not None:
            for l in np.nonzero(z_prev)[0]:
                current = current + W_rec[:, l]
        h_in = hp.copy()
        h_in[:, model.port] += current
        psi = np.where(can_spike, model.surrogate(h_in), 0.0)
        z = can_spike & model.fires(h_in)
        h = np.where(z[:, None], model.reset(h_in), h_in)
        refractory[z] = model.refractory_steps
        out["h_in"][step], out["h"][step], out["psi"][step], out["z"][step] = h_in, h, psi, z
        V_out = (alpha_out * V_out + 0.0) + readout_const
        for j in np.nonzero(z_prev)[0]:
            V_out = V_out + W_out[:, j]
        out["y"][step] = V_out
        z_prev = z.astype(float)
    return Trajectory(model=model, x=np.asarray(x, float), W_in=W_in, W_rec=W_rec, W_out=W_out,
                      alpha_out=alpha_out, **out)


# ------------------------------------------------------------------------------------------------
# Backward pass
# ------------------------------------------------------------------------------------------------
def gradients(traj: Trajectory, target: np.ndarray, reset_gradient: str = "stopped",
              truncate_recurrent: bool = False,
              window: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """dE/dW of E = sum_n sum_k 1/2 lambda_k[n] (y_k[n] - y*_k[n])^2 by reverse-mode BPTT.

    target: (T, n_out) y*; window: lambda, (T,) or (T, n_out), 1 if None (the engine's
    ``add_learning_window``: the error is (y - y*) lambda). Returns {"W_in", "W_out"} and, with
    recurrent weights, "W_rec" (its diagonal is whatever the formula gives; the engine has no
    autapses, compare the off-diagonal entries).
    Adjoints: a_out[n] = dE/dV_out[n]; adj_h[n] = dE/dh[n] (state after step n); adj_in[n] =
    dE/dh_in[n] (before the reset of step n, = dE/d(propagated state) since the jump and the input
    add); g_z[n] = dE/dz[n] (total, through readouts, recurrent targets, own adaptation and reset).
    """
    if reset_gradient not in RESET_MODES:
        raise ValueError(f"reset_gradient must be one of {RESET_MODES}, got {reset_gradient!r}")
    m = traj.model
    T, n = traj.z.shape
    S = len(m.states)
    err = traj.y - np.asarray(target, float).reshape(traj.y.shape)
    if window is not None:
        window = np.asarray(window, float)
        err = err * (window[:, None] if window.ndim == 1 else window)
    a_out = np.zeros_like(err)
    for step in range(T - 1, -1, -1):
        a_out[step] = err[step] + (traj.alpha_out * a_out[step + 1] if step + 1 < T else 0.0)
    # readout weights: V_out[n] gets W_out[k, j] z_j[n-1]
    dW_out = a_out[1:].T @ traj.z[:-1]
    dW_in = np.zeros_like(traj.W_in)
    dW_rec = None if traj.W_rec is None else np.zeros_like(traj.W_rec)
    adj_h = np.zeros((n, S))           # dE/dh[step]
    adj_in_next = np.zeros((n, S))     # dE/dh_in[step + 1]
    for step in range(T - 1, -1, -1):
        h_in, z, psi = traj.h_in[step], traj.z[step].astype(bool), traj.psi[step]
        g_z = np.zeros(n)
        if step + 1 < T:
            g_z += traj.W_out.T @ a_out[step + 1]
            if traj.W_rec is not None and not truncate_recurrent:
                g_z += traj.W_rec.T @ adj_in_next[:, m.port]
            g_z += adj_in_next @ m.jump                     # own adaptation jump in step + 1
        if reset_gradient == "full":
            g_z += np.sum((m.reset(h_in) - h_in) * adj_h, axis=1)
        if reset_gradient == "stopped":
            adj_in = adj_h.copy()
        else:
            kept = np.einsum("nij,ni->nj", m.reset_jacobian(h_in), adj_h)
            adj_in = np.where(z[:, None], kept, adj_h)
        adj_in += (g_z * psi)[:, None] * m.ddist(h_in)
        dW_in += np.outer(adj_in[:, m.port], traj.x[step])
        if dW_rec is not None and step > 0:
            dW_rec += np.outer(adj_in[:, m.port], traj.z[step - 1])
        adj_h = np.einsum("nij,ni->nj", traj.J_prop[step], adj_in)   # to the state after step - 1
        adj_in_next = adj_in
    out = {"W_in": dW_in, "W_out": dW_out}
    if dW_rec is not None:
        out["W_rec"] = dW_rec
    return out



def forward_mode_gradients(traj: Trajectory, target: np.ndarray, reset_gradient: str = "stopped",
                           truncate_recurrent: bool = False,
                           window: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The same derivatives as ``gradients`` by forward mode: one tangent of the whole trajectory
    per weight (all weights at once), pushed through the same linearised step (d z = psi d dist,
    the reset as `reset_gradient` says, recurrent spikes constant if `truncate_recurrent`), and
    dE = sum_n lambda (y - y*) dy. A check of the reverse pass's transpositions (slow: O(#weights))."""
    if reset_gradient not in RESET_MODES:
        raise ValueError(f"reset_gradient must be one of {RESET_MODES}, got {reset_gradient!r}")
    m = traj.model
    T, n = traj.z.shape
    S, n_in, n_out = len(m.states), traj.W_in.shape[1], traj.W_out.shape[0]
    err = traj.y - np.asarray(target, float).reshape(traj.y.shape)
    if window is not None:
        window = np.asarray(window, float)
        err = err * (window[:, None] if window.ndim == 1 else window)
    shapes = {"W_in": (n, n_in), "W_out": (n_out, n)}
    if traj.W_rec is not None:
        shapes["W_rec"] = (n, n)
    sizes = {k: a * b for k, (a, b) in shapes.items()}
    D = sum(sizes.values())
    start, first = {}, 0
    for k in shapes:
        start[k], first = first, first + sizes[k]
    dh = np.zeros((D, n, S))
    dz_prev = np.zeros((D, n))
    dV = np.zeros((D, n_out))
    dE = np.zeros(D)
    z_prev = np.zeros(n)
    for step in range(T):
        dhp = np.einsum("nij,dnj->dni", traj.J_prop[step], dh) + dz_prev[:, :, None] * m.jump[None, None, :]
        dI = np.zeros((D, n))
        for q in range(sizes["W_in"]):                       # direction W_in[j, i]
            j, i = divmod(q, n_in)
            dI[start["W_in"] + q, j] += traj.x[step, i]
        if traj.W_rec is not None:
            for q in range(sizes["W_rec"]):                  # direction W_rec[j, l]
                j, l = divmod(q, n)
                dI[start["W_rec"] + q, j] += z_prev[l]
            if not truncate_recurrent:
                dI += dz_prev @ traj.W_rec.T
        dh_in = dhp.copy()
        dh_in[:, :, m.port] += dI
        h_in, z = traj.h_in[step], traj.z[step].astype(bool)
        dz = traj.psi[step][None, :] * np.einsum("ni,dni->dn", m.ddist(h_in), dh_in)
        if reset_gradient == "stopped":
            dh = dh_in
        else:
            kept = np.einsum("nij,dnj->dni", m.reset_jacobian(h_in), dh_in)
            dh = np.where(z[None, :, None], kept, dh_in)
            if reset_gradient == "full":
                dh = dh + dz[:, :, None] * (m.reset(h_in) - h_in)[None, :, :]
        dV = traj.alpha_out * dV + dz_prev @ traj.W_out.T
        for q in range(sizes["W_out"]):                      # direction W_out[k, j]
            k, j = divmod(q, n)
            dV[start["W_out"] + q, k] += z_prev[j]
        dE += dV @ err[step]
        dz_prev, z_prev = dz, traj.z[step]
    return {k: dE[start[k]:start[k] + sizes[k]].reshape(shapes[k]) for k in shapes}
