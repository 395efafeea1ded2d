"""`eprop-gen train`: build the network a configuration describes, train it batch by batch, and
write the run's folder:

    config.toml      the configuration as given          metrics.json   per-iteration metrics + resolved config
    weights.npz      the trained weights (per projection) checkpoint.npz the whole network state, for --resume
    learning_curve.png, sample.png                       plots (eprop_gen.train.plots)

Schedule of one iteration (batch_size samples of `steps` steps, see tasks.py): the input spikes of
the next batch are added ahead (the time-driven readout lags the input by a few steps, so an
iteration's span starts before its inputs), target and learning window of this batch are set with
its start time, the network runs batch_size * steps steps, the readout's output gives loss and
accuracy. Event-driven: eg.event_driven(sample_duration=steps), one optimizer step per batch.
Time-driven: eg.time_driven(update_interval=steps), recurrent intervals from step 2, readout from 3.

Under mpirun every rank runs this code on its share of the network (engine/distributed.py); the
reads of the whole network are collective, rank 0 alone writes the folder and prints, and an
unexpected error on one rank ends every rank with its message (nothing already saved is replaced
by a partial result: files are written whole and then renamed).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import models
from ..compiler import compile_model
from ..engine import Explicit, Network, adam, event_driven, gradient_descent, time_driven
from ..engine import distributed
from ..engine.state import load_network_state, network_state
from ..errors import EpropGenError
from .config import Config, ConfigError, load_config, resolved
from .tasks import Batch, Task, make_task

TIME_DRIVEN_OFFSET = 2          # recurrent intervals start 2 steps after the input's sample start
PROJECTIONS = ("input", "recurrent", "readout")


class RunFolderError(EpropGenError):
    """The output folder cannot be used (exists without --resume, or does not match)."""


@dataclass
class Built:
    net: Network
    task: Task
    inputs: object
    recurrent: object
    readout: object
    projections: dict          # name -> Projection
    lead: int                  # steps the readout's rows trail the sample start (0 / 3)
    input_shift: int           # steps the inputs trail the sample start (0 / 2)


# ---------------------------------------------------------------------------------------------
# building the network

def _model(config: Config, name: str):
    path = Path(name)
    if path.suffix == ".eprop":
        path = path if path.is_absolute() else config.folder / path
        if not path.is_file():
            raise ConfigError(f"{config.file}: model file {path} does not exist")
        return compile_model(path)
    if name not in models.names():
        raise ConfigError(f"{config.file}: unknown model '{name}' (shipped: {', '.join(models.names())}; "
                          f"or give a .eprop file)")
    return compile_model(models.path(name))


def _params(config: Config, section: str, params: dict, model, n: int) -> dict:
    out = {}
    for key, value in params.items():
        if key not in model.params:
            raise ConfigError(f"{config.file}: [{section}.params] {key}: not a parameter of model "
                              f"'{model.name}' (parameters: {', '.join(model.params)})")
        out[key] = (np.concatenate([np.full(count, float(v)) for count, v in value])
                    if isinstance(value, list) else float(value))
    return out


def _weights(rng, n_target: int, n_source: int, c, no_autapses: bool):
    mask = rng.random((n_target, n_source)) < c.density
    if no_autapses:
        np.fill_diagonal(mask, False)
    W = rng.normal(size=(n_target, n_source)) / np.sqrt(n_source) * c.weight_scale
    targets, sources = np.nonzero(mask)
    return Explicit(sources, targets, weights=W[targets, sources], delays=np.full(targets.size, c.delay))


def _optimizer(config: Config, eta: float | None = None):
    o = config.optimizer
    make = adam if o.type == "adam" else gradient_descent
    extra = dict(beta_1=o.beta_1, beta_2=o.beta_2, epsilon=o.epsilon) if o.type == "adam" else {}
    return make(eta=o.eta if eta is None else eta, batch_size=config.training.batch_size,
                w_min=o.w_min, w_max=o.w_max, **extra)


def build(config: Config, data: str | None = None, eta: float | None = None,
          threads: int | None = None) -> Built:
    task = make_task(config, data)
    t = config.training
    time_mode = t.engine == "time"
    schedule = (time_driven(update_interval=float(task.steps), offset=TIME_DRIVEN_OFFSET) if time_mode
                else event_driven(sample_duration=float(task.steps)))
    net = Network(dt=1.0, threads=threads or t.threads, seed=t.seed, learning=schedule)
    rec_model, out_model = _model(config, config.recurrent.model), _model(config, config.readout.model)
    for section, model in (("recurrent", rec_model), ("readout", out_model)):
        if "spikes" not in model.learning_ports:
            raise ConfigError(f"{config.file}: [{section}] model: '{model.name}' has no learning rule on "
                              f"a port 'spikes' (use an eprop_* model)")
    if out_model.spiking or "y" not in out_model.observables:
        raise ConfigError(f"{config.file}: [readout] model: '{out_model.name}' is not a readout (no output:)")
    n_rec = config.recurrent.n
    inputs = net.add_spike_source(task.n_in, name="input")
    rec = net.add_population(rec_model, n_rec, name="recurrent",
                             params=_params(config, "recurrent", config.recurrent.params, rec_model, n_rec))
    out = net.add_population(out_model, task.n_out, name="readout",
                             params=_params(config, "readout", config.readout.params, out_model, task.n_out))
    rng = np.random.default_rng([t.seed, 7])
    opt = _optimizer(config, eta)
    c = config.connections
    projections = {
        "input": net.connect(inputs, rec, "spikes", _weights(rng, n_rec, task.n_in, c["input"], False), plasticity=opt),
        "recurrent": net.connect(rec, rec, "spikes", _weights(rng, n_rec, n_rec, c["recurrent"], True), plasticity=opt),
        "readout": net.connect(rec, out, "spikes", _weights(rng, task.n_out, n_rec, c["readout"], False), plasticity=opt),
    }
    net.connect_feedback(out, rec, rng.normal(size=(n_rec, task.n_out)) * config.feedback_scale)
    net.record(out, ("y",))
    lead = TIME_DRIVEN_OFFSET + 1 if time_mode else 0
    return Built(net, task, inputs, rec, out, projections, lead, TIME_DRIVEN_OFFSET if time_mode else 0)


# ---------------------------------------------------------------------------------------------
# running batches

def _batch_steps(built: Built, batch_size: int) -> int:
    return batch_size * built.task.steps


def _add_inputs(built: Built, batch: Batch, origin: int) -> None:
    built.inputs.add_spikes(batch.times + origin + built.input_shift, batch.senders)


def _run_batch(built: Built, batch: Batch, origin: int, first: bool) -> np.ndarray:
    """Set target and window from `origin` on, simulate the batch, return the readout's rows."""
    net, n = built.net, batch.window.size
    start = float(origin + built.lead)
    net.add_target(built.readout, batch.target, loss=built.task.loss, start=start)
    net.add_learning_window(built.readout, np.repeat(batch.window[:, None], built.task.n_out, axis=1), start=start)
    net.simulate(float(n + (built.lead if first else 0)))
    y = net.recording(built.readout, clear=True)["y"]
    return y[-n:]


def _save_weights(built: Built, path: Path) -> None:
    arrays = {}
    for name, proj in built.projections.items():      # (collective under MPI)
        arrays.update({f"{name}_sources": proj.sources, f"{name}_targets": proj.targets,
                       f"{name}_weights": proj.weights, f"{name}_delays": proj.delays})
    if built.net.ranks.rank == 0:
        _atomic_npz(path, arrays)


def _load_weights(built: Built, path: Path) -> None:
    try:
        with np.load(path) as saved:
            for name, proj in built.projections.items():
                if not (np.array_equal(saved[f"{name}_sources"], proj.sources)
                        and np.array_equal(saved[f"{name}_targets"], proj.targets)):
                    raise RunFolderError(f"{path}: the {name} connections differ from this configuration's")
                proj.set_weights(saved[f"{name}_weights"])
    except (OSError, KeyError, ValueError) as e:
        raise RunFolderError(f"{path}: cannot read weights ({e})") from None


def _atomic_npz(path: Path, arrays: dict) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _atomic_json(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# train / evaluate

@dataclass
class RunResult:
    folder: Path
    metrics: list
    test: dict | None


def train(config_path, out: Path | None = None, resume: bool = False, data: str | None = None,
          progress: bool = True, echo: Callable[[str], None] = print, overrides: dict | None = None,
          on_iteration: Callable[[dict], None] | None = None) -> RunResult:
    """Train as `config_path` says (see the module doc); `on_iteration(record)` after each one."""
    ranks = distributed.Ranks.of(distributed.world())
    if not ranks.distributed:
        return _train(config_path, out, resume, data, progress, echo, overrides, on_iteration, ranks)
    try:
        return _train(config_path, out, resume, data, progress and ranks.rank == 0,
                      echo if ranks.rank == 0 else (lambda *_: None), overrides, on_iteration, ranks)
    except EpropGenError:
        raise                  # a configuration or folder problem: the same on every rank
    except BaseException as error:
        ranks.abort(f"training failed: {type(error).__name__}: {error}")


def _train(config_path, out, resume, data, progress, echo, overrides, on_iteration, ranks) -> RunResult:
    root = ranks.rank == 0
    config = load_config(config_path, overrides)
    folder = Path(out) if out is not None else Path("runs") / config.file.stem
    metrics_path, checkpoint_path = folder / "metrics.json", folder / "checkpoint.npz"
    if folder.exists() and any(folder.iterdir()) and not resume:
        raise RunFolderError(f"{folder}: exists and is not empty; pass --resume to continue that run or "
                             f"choose another --out (nothing is overwritten)")
    if ranks.distributed:
        ranks.comm.Barrier()            # every rank has looked at the folder before rank 0 writes
    built = build(config, data)
    settings = resolved(config)
    metrics: list = []
    start = 0
    inputs_added = 0                    # batches whose input spikes are in the network
    if resume and checkpoint_path.is_file():
        saved = json.loads(metrics_path.read_text())
        if not _same_run(saved.get("config"), settings):
            raise RunFolderError(f"{folder}: was trained with another configuration (only iterations, "
                                 f"threads and checkpoint_every may change); use the same file or another --out")
        with np.load(checkpoint_path) as checkpoint:
            state = dict(checkpoint)
        start = int(state.pop("iteration"))
        inputs_added = int(state.pop("inputs_added"))
        load_network_state(built.net, state)
        metrics = saved["iterations"][:start]
        echo(f"resuming {folder} at iteration {start}")
    elif resume and folder.exists() and any(folder.iterdir()):
        raise RunFolderError(f"{folder}: has no checkpoint to resume from")
    if root:
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "config.toml").exists():
            shutil.copyfile(config.file, folder / "config.toml")

    t, steps = config.training, _batch_steps(built, config.training.batch_size)
    bar = _progress(t.iterations, start, progress)
    batch = sample = None
    try:
        for k in range(start, t.iterations):
            wall = time.perf_counter()
            batch = batch if batch is not None else built.task.batch(k, t.batch_size)
            if inputs_added <= k:
                _add_inputs(built, batch, k * steps)
                inputs_added = k + 1
            # ahead: the time-driven span starts before its inputs, so the next batch's first input
            # spikes fall into this iteration's last steps — also after the last iteration, so that a
            # run is the start of any longer one (--resume with more iterations)
            upcoming = built.task.batch(k + 1, t.batch_size) if k + 1 < t.iterations or built.lead else None
            if upcoming is not None:
                _add_inputs(built, upcoming, (k + 1) * steps)
                inputs_added = k + 2
            first_step = built.net.step
            y = _run_batch(built, batch, k * steps, first=k == 0)
            loss, accuracy = built.task.score(y, batch)
            times, _ = built.net.spikes(built.recurrent)
            record = {"iteration": k, "loss": loss, "accuracy": accuracy,
                      "spikes": int(np.sum(times > first_step * built.net.dt)),
                      "wall_s": time.perf_counter() - wall}
            metrics.append(record)
            if k + 1 == t.iterations:
                sample = _sample_of(built, batch, y, k * steps)
            batch = upcoming
            built.net.forget_spikes()
            if root:
                _atomic_json(metrics_path, {"config": settings, "iterations": metrics})
            if (k + 1) % t.checkpoint_every == 0 or k + 1 == t.iterations:
                state = network_state(built.net)          # (collective under MPI: the whole network)
                if root:
                    _atomic_npz(checkpoint_path, {"iteration": np.int64(k + 1),
                                                  "inputs_added": np.int64(inputs_added), **state})
            bar.update(1)
            bar.set_postfix(_postfix(record))
            if on_iteration is not None:
                on_iteration(record)
    finally:
        bar.close()
    # The last batch's optimizer step is taken at the first step after it (event-driven samples):
    # run that step (after the checkpoint, which a longer resumed run continues from). Time-driven
    # weights change at a synapse's next spike, so the last interval's update is not in weights.npz.
    built.net.simulate(built.net.dt)
    _save_weights(built, folder / "weights.npz")
    test = None
    if t.test_samples:
        if ranks.distributed:
            ranks.comm.Barrier()        # weights.npz is written before any rank reads it
        test = evaluate_built(config, folder / "weights.npz", data, t.test_samples)
        if root:
            _atomic_json(metrics_path, {"config": settings, "iterations": metrics, "test": test})
    if root:
        _plots(folder, metrics, sample)
    return RunResult(folder, metrics, test)


def _same_run(saved: dict | None, settings: dict) -> bool:
    """The saved resolved configuration equals this one, up to what a resumed run may change."""
    if saved is None:
        return False
    def core(c):
        c = json.loads(json.dumps(c))
        for key in ("iterations", "threads", "checkpoint_every"):
            c.get("training", {}).pop(key, None)
        return c
    return core(saved) == core(settings)


def evaluate_built(config: Config, weights: Path, data: str | None, samples: int) -> dict:
    """Test-set loss and accuracy of saved weights (learning off: eta = 0)."""
    built = build(config, data, eta=0.0)
    _load_weights(built, weights)
    batch_size = config.training.batch_size
    losses, accuracies, origin, first = [], [], 0, True
    batches = list(built.task.test_batches(samples, batch_size))
    for j, batch in enumerate(batches):
        if first:
            _add_inputs(built, batch, origin)
        if j + 1 < len(batches):
            _add_inputs(built, batches[j + 1], origin + batch.window.size)
        y = _run_batch(built, batch, origin, first)
        loss, accuracy = built.task.score(y, batch)
        n = batch.window.size // built.task.steps
        losses.append(loss * n)
        accuracies.append(None if accuracy is None else accuracy * n)
        origin += batch.window.size
        first = False
        built.net.forget_spikes()
    total = sum(b.window.size // built.task.steps for b in batches)
    return {"samples": total, "loss": sum(losses) / total,
            "accuracy": None if accuracies[0] is None else sum(accuracies) / total}


def evaluate(config_path, weights: Path, data: str | None = None, samples: int = 100) -> dict:
    return evaluate_built(load_config(config_path), Path(weights), data, samples)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, disable=not enabled, unit="it", dynamic_ncols=True,
                desc="training")


def _postfix(record: dict) -> dict:
    out = {"loss": f"{record['loss']:.4g}"}
    if record["accuracy"] is not None:
        out["acc"] = f"{record['accuracy']:.3f}"
    return out


def _sample_of(built: Built, batch: Batch, y: np.ndarray, origin: int) -> dict:
    """The first sample of a batch for the sample plot, in ms from its start."""
    steps, dt = built.task.steps, built.net.dt
    times, senders = built.net.spikes(built.recurrent)
    relative = times - origin * dt
    keep = (relative > 0) & (relative <= steps * dt + built.input_shift * dt)
    first = batch.times < steps
    return dict(dt=dt, input_times=(batch.times[first] + built.input_shift) * dt,
                input_senders=batch.senders[first], n_in=built.task.n_in,
                rec_times=relative[keep], rec_senders=senders[keep], n_rec=built.recurrent.n,
                readout_times=(np.arange(1, steps + 1) + built.lead) * dt, readout=y[:steps],
                target=batch.target[:steps], window=batch.window[:steps],
                title=f"{built.task.name}: first sample of the last batch")


def _plots(folder: Path, metrics: list, sample: dict | None) -> None:
    from . import plots
    if metrics:
        plots.plot_learning_curve(metrics, folder / "learning_curve.png")
    if sample is not None:
        plots.plot_sample(folder / "sample.png", **sample)
