"""The tasks `eprop-gen train` runs, behind one interface: a batch of samples for iteration k (input
spikes, per-step target and learning window), and the loss/accuracy of the readout's output.

Times are relative to the batch: sample j occupies steps [j*steps, (j+1)*steps) and its input spikes
lie in [j*steps + 1, (j+1)*steps - 1] ms, so that no input crosses into the next sample. Every batch
is a function of (seed, iteration) alone: a resumed run sees the same data as an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..tasks.evidence import EvidenceShape, make_evidence_samples
from .config import Config, ConfigError, check_value, task_options


@dataclass(frozen=True, eq=False)
class Batch:
    times: np.ndarray          # ms from the batch start
    senders: np.ndarray
    target: np.ndarray         # (batch * steps, n_out)
    window: np.ndarray         # (batch * steps,) 1 where the error counts
    labels: np.ndarray | None  # classification tasks: (batch,)


class Task:
    """name, n_in, n_out, steps, loss ("mean_squared_error" / "cross_entropy"), classification."""
    name = ""
    loss = "mean_squared_error"
    classification = False

    def batch(self, iteration: int, batch_size: int) -> Batch:
        raise NotImplementedError

    def test_batches(self, n_samples: int, batch_size: int):
        """Held-out batches (the same samples every time)."""
        raise NotImplementedError

    def score(self, y: np.ndarray, batch: Batch) -> tuple[float, float | None]:
        """(loss, accuracy or None) of readout outputs y (batch * steps, n_out)."""
        steps, n = self.steps, batch.window.size // self.steps
        y = y.reshape(n, steps, -1)
        target = batch.target.reshape(n, steps, -1)
        window = batch.window.reshape(n, steps) > 0
        if self.loss == "cross_entropy":
            z = y - y.max(axis=-1, keepdims=True)
            p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
            per_step = -np.sum(target * np.log(p + 1e-12), axis=-1)
            output = p
        else:
            per_step = 0.5 * np.sum((y - target) ** 2, axis=-1)
            output = y
        loss = float(np.mean(np.sum(per_step * window, axis=1)))
        if not self.classification:
            return loss, None
        mean_output = np.stack([output[j][window[j]].mean(axis=0) for j in range(n)])
        return loss, float(np.mean(mean_output.argmax(axis=1) == batch.labels))


def make_task(config: Config, data: str | None = None) -> Task:
    name = config.task["name"]
    if name == "sine_wave":
        return SineWave(config)
    if name == "evidence_accumulation":
        return EvidenceAccumulation(config)
    return NMNIST(config, data)


class SineWave(Task):
    """NEST's sine-wave pattern generation: a frozen Poisson pattern, the same sample in every
    iteration; the target is a sum of four sines (periods steps, steps/2, steps/3, steps/5)."""
    name = "sine_wave"

    def __init__(self, config: Config):
        o = task_options(config, dict(steps=1000, n_in=100, input_probability=0.05, amplitude=1.0,
                                      seed=1))
        check_value(config, o["steps"] >= 10, "task", "steps", "must be >= 10")
        check_value(config, o["n_in"] >= 1, "task", "n_in", "must be >= 1")
        check_value(config, 0 < o["input_probability"] <= 1, "task", "input_probability", "must be in (0, 1]")
        self.steps, self.n_in, self.n_out = o["steps"], o["n_in"], 1
        rng = np.random.default_rng(o["seed"])
        pattern = rng.random((self.steps, self.n_in)) < o["input_probability"]
        pattern[0] = pattern[-1] = False                     # inside [1, steps - 1]
        self.step, self.sender = np.nonzero(pattern)
        t = np.arange(self.steps)
        target = sum(rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
                     for period in (self.steps, self.steps / 2, self.steps / 3, self.steps / 5))
        self.target = o["amplitude"] * target / max(np.abs(target).max(), 1e-12)

    def batch(self, iteration: int, batch_size: int) -> Batch:
        offsets = np.repeat(np.arange(batch_size) * self.steps, self.step.size)
        return Batch(np.tile(self.step, batch_size) + offsets.astype(float), np.tile(self.sender, batch_size),
                     np.tile(self.target, batch_size)[:, None], np.ones(batch_size * self.steps), None)

    def test_batches(self, n_samples: int, batch_size: int):
        for start in range(0, n_samples, batch_size):
            yield self.batch(0, min(batch_size, n_samples - start))


class EvidenceAccumulation(Task):
    """NEST's evidence accumulation: cues left/right, a delay, a recall cue; which side had more?"""
    name = "evidence_accumulation"
    loss = "cross_entropy"
    classification = True

    def __init__(self, config: Config):
        default = EvidenceShape()
        o = task_options(config, dict(n_cues=default.n_cues, cue=default.cue, spacing=default.spacing,
                                      delay=default.delay, recall=default.recall, cue_rate=default.cue_rate,
                                      background_rate=default.background_rate, seed=1))
        for key in ("n_cues", "cue", "recall"):
            check_value(config, o[key] >= 1, "task", key, "must be >= 1")
        self.seed = o.pop("seed")
        self.shape = EvidenceShape(**o)
        self.steps, self.n_in, self.n_out = self.shape.steps, 40, 2

    def _batch(self, rng, batch_size: int) -> Batch:
        data = make_evidence_samples(self.shape, batch_size, rng)
        return Batch(data.times, data.senders, data.target, data.window, data.labels)

    def batch(self, iteration: int, batch_size: int) -> Batch:
        return self._batch(np.random.default_rng([self.seed, iteration]), batch_size)

    def test_batches(self, n_samples: int, batch_size: int):
        rng = np.random.default_rng([self.seed, 2 ** 31])          # never a training iteration
        for start in range(0, n_samples, batch_size):
            yield self._batch(rng, min(batch_size, n_samples - start))


class NMNIST(Task):
    """N-MNIST through tonic (eprop_gen.tasks.nmnist): NEST's network input of 1196 pixels (dead
    pixels removed), 300 steps per sample, the error in the last 10 steps, one-hot targets (MSE)."""
    name = "nmnist"
    classification = True

    def __init__(self, config: Config, data: str | None):
        from ..tasks import nmnist
        o = task_options(config, dict(data=None, download=False, steps=nmnist.STEPS, window=nmnist.WINDOW,
                                      denoise_us=0.0, spatial_factor=1.0, blocklist="nest", train_samples=0,
                                      seed=1))
        folder = data if data is not None else o["data"]
        if folder is None:
            raise ConfigError(f"{config.file}: [task] data: N-MNIST needs a folder (or --data PATH); with "
                              f"download = true tonic fetches the data set into it")
        folder = Path(folder).expanduser()
        if not folder.is_absolute() and data is None:
            folder = config.folder / folder
        check_value(config, 1 <= o["window"] <= o["steps"], "task", "window", "must be in [1, steps]")
        check_value(config, o["blocklist"] in ("nest", "none"), "task", "blocklist", 'must be "nest" or "none"')
        options = dict(denoise_us=o["denoise_us"] or None,
                       spatial_factor=None if o["spatial_factor"] == 1.0 else o["spatial_factor"],
                       blocklist=None if o["blocklist"] == "none" else "nest")
        try:
            self.train_set = nmnist.open_nmnist(folder, train=True, download=o["download"], **options)
            self.test_set = nmnist.open_nmnist(folder, train=False, download=o["download"], **options)
        except (FileNotFoundError, OSError) as e:
            raise ConfigError(f"{config.file}: [task] data: {e}") from None
        self.nmnist, self.seed = nmnist, o["seed"]
        self.steps, self.window = o["steps"], o["window"]
        self.n_in, self.n_out = self.train_set.input_layout.n_in, nmnist.N_CLASSES
        n = len(self.train_set)
        self.n_train = min(n, o["train_samples"]) if o["train_samples"] else n

    def _batch(self, dataset, indices) -> Batch:
        times, senders, labels = [], [], []
        for j, index in enumerate(indices):
            events, label = dataset[int(index)]
            t, s = self.nmnist.sample_spikes(events, dataset.input_layout, self.steps - 2, j * self.steps)
            times.append(t)                       # steps - 2: inside [1, steps - 1] of the sample
            senders.append(s)
            labels.append(int(label))
        labels = np.asarray(labels)
        return Batch(np.concatenate(times), np.concatenate(senders),
                     self.nmnist.one_hot_targets(labels, self.steps),
                     self.nmnist.learning_window(len(labels), self.steps, self.window), labels)

    def batch(self, iteration: int, batch_size: int) -> Batch:
        first = iteration * batch_size
        epoch, start = divmod(first, self.n_train)
        order = self.nmnist.sample_order(len(self.train_set), self.seed + epoch, True, self.n_train)
        indices = [order[(start + j) % self.n_train] if start + j < self.n_train else
                   self.nmnist.sample_order(len(self.train_set), self.seed + epoch + 1, True,
                                            self.n_train)[start + j - self.n_train]
                   for j in range(batch_size)]
        return self._batch(self.train_set, indices)

    def test_batches(self, n_samples: int, batch_size: int):
        n = min(n_samples, len(self.test_set))
        for start in range(0, n, batch_size):
            yield self._batch(self.test_set, range(start, min(n, start + batch_size)))
