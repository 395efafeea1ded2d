"""Precise spike timing with e-prop (Traub, Butz, Baayen and Otte, ICANN 2020): one neuron, driven by a
frozen Poisson pattern of 200 inputs, learns to fire at 40 ms and 80 ms of every 100 ms trial from
an e-prop learning signal (the van Rossum error of its spike train; eprop_gen/tasks/precise_timing.py).

Three neurons learn the same task: the STDP-aware LIF (eprop_iaf_stdp) and the Izhikevich neuron
(eprop_izhikevich), whose eligibility goes through the reset (`reset_gradient: kept`), and plain LIF
e-prop (eprop_iaf, Bellec et al. 2020), whose eligibility carries on through a postsynaptic spike.
Plain LIF runs at the STDP-aware LIF's learning rate and at a third of it.

    python examples/precise_timing.py [--iterations 300] [--seeds 4] [--out precise_timing.png]

Prints, per model, how many seeds learned the timing (spike-time error below 1 ms, averaged over the
last 20 iterations), after how many iterations the error first fell below 1 ms, and the final error;
writes the error per iteration and the spike times of the first seed to a PNG. About 30 s."""
import argparse
import dataclasses

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from eprop_gen.tasks.precise_timing import MODELS, make_precise_timing_task, train_precise_timing  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--iterations", type=int, default=300)
parser.add_argument("--seeds", type=int, default=4)
parser.add_argument("--out", default="precise_timing.png")
args = parser.parse_args()

task = make_precise_timing_task()
setups = [MODELS["stdp_lif"], MODELS["izhikevich"], MODELS["lif"],
          dataclasses.replace(MODELS["lif"], label=MODELS["lif"].label + ", eta / 3", eta=MODELS["lif"].eta / 3)]
results = {s.label: [train_precise_timing(task, s, args.iterations, seed=seed) for seed in range(args.seeds)]
           for s in setups}

print(f"target spikes at {', '.join(f'{t:g}' for t in task.target_times)} ms; {args.iterations} iterations, "
      f"{args.seeds} seeds (initial weights)")
print(f"{'model':44s} {'eta':>8s} {'learned':>8s} {'first < 1 ms':>13s} {'final error (ms)':>17s}")
for setup in setups:
    runs = results[setup.label]
    final = [float(np.mean(r.errors[-20:])) for r in runs]
    firsts = [r.first_below() for r in runs if r.first_below() is not None]
    first = f"{int(np.median(firsts))}" if firsts else "never"
    print(f"{setup.label:44s} {setup.eta:8.1e} {sum(f < 1.0 for f in final):4d} / {len(runs):<3d}"
          f"{first:>13s} {np.median(final):17.3f}   (median over seeds)")

fig, (ax_error, ax_spikes) = plt.subplots(2, 1, figsize=(8, 8))
for setup in setups:
    errors = np.array([r.errors for r in results[setup.label]])
    line, = ax_error.plot(np.median(errors, axis=0), label=setup.label)
    ax_error.fill_between(np.arange(errors.shape[1]), errors.min(axis=0), errors.max(axis=0),
                          color=line.get_color(), alpha=0.15)
    spikes = results[setup.label][0].spikes
    iteration = np.concatenate([np.full(len(s), k) for k, s in enumerate(spikes)])
    ax_spikes.scatter(iteration, np.concatenate(spikes), s=2, color=line.get_color(), label=setup.label)
ax_error.axhline(1.0, color="grey", lw=0.8, ls="--")
ax_error.set(yscale="log", xlabel="iteration", ylabel="spike-time error (ms)",
             title="median over seeds (band: min to max)")
ax_error.legend(fontsize=8)
for t in task.target_times:
    ax_spikes.axhline(t, color="grey", lw=0.8, ls="--")
ax_spikes.axhspan(0, task.warm_up, color="grey", alpha=0.1)
ax_spikes.set(xlabel="iteration", ylabel="output spike times (ms)", ylim=(0, task.duration),
              title="first seed: spike times per iteration (dashed: targets; shaded: warm-up, not scored)")
fig.tight_layout()
fig.savefig(args.out, dpi=120)
print("plot:", args.out)
