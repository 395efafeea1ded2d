"""The numpy check behind the engine's O(1) replays (eprop_gen/plan_blocks.py): per-neuron block products.

Checks in numpy that a synapse's window [a, e] of eprop_iaf's event-driven rule (state zbar, ebar,
ebar_reg, G; matrices M_m built from the target's psi, L, R) can be computed from per-neuron block
products instead of the step-by-step walk, and how precise two variants are (docs/design/performance.md):
  1. block-local prefix products with an inverse, P_e P_(a-1)^-1 (loses precision with the block size);
  2. inverse-free: suffix products of the completed start block, totals of whole blocks, prefix
     product of the end block (1e-14 at any block size).

    python benchmarks/prototypes/block_replay.py
"""
import numpy as np
rng = np.random.default_rng(0)
T = 4000
alpha, kappa, kr = np.exp(-1/10), 0.97, 0.97
psi = np.where(rng.random(T) < 0.5, 0.0, rng.uniform(0, 0.3, T))
L = rng.normal(0, 1, T); R = rng.normal(0, 0.01, T)
def M(m):
    p, l, r = psi[m], L[m], R[m]
    return np.array([[alpha, 0, 0, 0],
                     [p*alpha, kappa, 0, 0],
                     [(1-kr)*p*alpha, 0, kr, 0],
                     [l*p*alpha + r*(1-kr)*p*alpha, l*kappa, r*kr, 1.0]])
Ms = np.array([M(m) for m in range(T)])
def walk(x, a, e):
    for m in range(a, e + 1):
        zbar = alpha * x[0]; e_ = psi[m] * zbar
        eb = kappa * x[1] + e_; ebr = kr * x[2] + (1 - kr) * e_
        x = np.array([zbar, eb, ebr, x[3] + L[m] * eb + R[m] * ebr])
    return x
for B in (32, 64, 128):
    P = np.empty_like(Ms); Tk = []
    for m in range(T):
        P[m] = Ms[m] if m % B == 0 else Ms[m] @ P[m - 1]
        if m % B == B - 1: Tk.append(P[m])
    def window(x, a, e):
        ka, ke = a // B, e // B
        head = P[a - 1] if a % B else None
        if ka == ke:
            Pi = P[e] if head is None else P[e] @ np.linalg.inv(head)
            return Pi @ x
        first = Tk[ka] if head is None else Tk[ka] @ np.linalg.inv(head)
        x = first @ x
        for k in range(ka + 1, ke):
            x = Tk[k] @ x
        return P[e] @ x
    worst = 0
    for _ in range(300):
        a = int(rng.integers(1, T - 600)); e = a + int(rng.integers(0, 500))
        x0 = np.array([1.0 + rng.random(), rng.random(), rng.random() * 0.1, 0.0])
        ref = walk(x0, a, e); got = window(x0, a, e)
        worst = max(worst, abs(got[3] - ref[3]) / max(abs(ref[3]), 1e-300))
    print("B", B, "max rel error of G", worst)
print("inverse-free: suffix products of completed blocks, prefix products of the end block, walk within one block")
for B in (16, 32, 64, 256):
    P = np.empty_like(Ms); S = np.empty_like(Ms); Tk = []
    for m in range(T):
        P[m] = Ms[m] if m % B == 0 else Ms[m] @ P[m - 1]
        if m % B == B - 1:
            Tk.append(P[m])
            start = m - B + 1
            S[m] = Ms[m]
            for j in range(m - 1, start - 1, -1):
                S[j] = S[j + 1] @ Ms[j]          # M_end ... M_j
    worst = 0
    for _ in range(300):
        a = int(rng.integers(1, T - 600)); e = a + int(rng.integers(0, 500))
        x0 = np.array([1.0 + rng.random(), rng.random(), rng.random() * 0.1, 0.0])
        ref = walk(x0, a, e)
        ka, ke = a // B, e // B
        if ka == ke:
            got = walk(x0, a, e)
        else:
            x = S[a] @ x0
            for k in range(ka + 1, ke):
                x = Tk[k] @ x
            got = P[e] @ x
        worst = max(worst, abs(got[3] - ref[3]) / max(abs(ref[3]), 1e-300))
    print("B", B, "max rel error of G", worst)
