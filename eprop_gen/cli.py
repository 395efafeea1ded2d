"""The `eprop-gen` command line. Every user mistake ends in one clear message and exit status 1."""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import click
from importlib.resources import as_file

from . import models as shipped
from .errors import EpropGenError


def _model_path(model: str) -> Path:
    """A model file, or the name of a model shipped with eprop-gen."""
    path = Path(model)
    if path.is_file():
        return path
    if path.suffix == "" and model in shipped.names():
        return shipped.path(model)
    hint = f" (shipped models: {', '.join(shipped.names())})" if path.suffix == "" else ""
    raise EpropGenError(f"{model}: no such model file{hint}")


def _fail(error: Exception) -> None:
    if _speaks():
        click.echo(str(error), err=True)
    sys.exit(1)


def _speaks() -> bool:
    """Under mpirun every rank meets the same configuration error: rank 0 alone reports it."""
    from .engine.distributed import launched_rank
    return launched_rank() == 0


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eprop-gen")
def main() -> None:
    """Compile spiking-neuron models (.eprop files) into exact, parallel simulators."""


SURROGATE_OPTION = click.option("--surrogate", type=click.Choice(
    ["piecewise_linear", "exponential", "fast_sigmoid_derivative", "arctan_derivative"]),
    help="Use this surrogate-gradient function instead of the one the model declares.")


@main.command()
@click.argument("model")
@SURROGATE_OPTION
def check(model: str, surrogate: str | None) -> None:
    """Parse and check MODEL (a .eprop file or a shipped model name); print what was understood:
    states, parameters, which equations are solved exactly and which numerically, singular cases,
    the derived e-prop eligibility and the declared learning rule."""
    from .compiler import check_source, read_model
    try:
        checked = check_source(*read_model(_model_path(model)), surrogate=surrogate)
    except EpropGenError as e:
        _fail(e)
    click.echo(checked.summary)


@main.command(name="compile")
@click.argument("model")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Also copy the generated C++ and the shared library into this folder.")
@click.option("--force", is_flag=True, help="Rebuild even if the cache has this model; overwrite files in -o.")
@SURROGATE_OPTION
def compile_command(model: str, output: Path | None, force: bool, surrogate: str | None) -> None:
    """Solve, generate C++, compile and cache MODEL; print where the source and library are.

    A second call with nothing changed is a cache hit (the key covers the generated source, the
    compiler and its version, the flags and the platform)."""
    from .compiler import compile_model
    try:
        start = time.perf_counter()
        compiled = compile_model(_model_path(model), force=force, surrogate=surrogate)
        elapsed = time.perf_counter() - start
        source, library = compiled.source_path, compiled.library_path
        if output is not None:
            source, library = _export(compiled.source_path.parent, output, force)
    except EpropGenError as e:
        _fail(e)
    click.echo(f"model {compiled.name}: compiled in {elapsed:.2f} s")
    click.echo(f"  generated C++: {source}")
    click.echo(f"  library:       {library}")


def _export(build_dir: Path, output: Path, force: bool) -> tuple[Path, Path]:
    files = [f for f in sorted(build_dir.iterdir()) if f.is_file() and not f.name.startswith(".")]
    clashes = [output / f.name for f in files if (output / f.name).exists()]
    if clashes and not force:
        raise EpropGenError(f"{output}: would overwrite {', '.join(str(c) for c in clashes)}; "
                            "use --force to replace them")
    output.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, output / f.name)
    library = next(output / f.name for f in files if f.suffix in (".so", ".dylib", ".dll"))
    return output / "model.cpp", library


@main.command()
@click.argument("model")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="NET.toml: a training configuration with an [hls] section (docs/design/hls.md).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The project folder to write.")
@click.option("--steps", type=int, help="Steps the test bench replays (default: one sample of the task).")
@click.option("--force", is_flag=True, help="Write into a folder that is not empty (files of the same names are replaced).")
def hls(model: str, config: Path, output: Path, steps: int | None, force: bool) -> None:
    """Write a Vitis HLS project of a network of MODEL (the recurrent population) described by
    NET.toml: firmware/ (top function, ap_fixed types from [hls.precision]), a C++ test bench with
    reference data from the CPU fixed-point simulator, build_prj.tcl for Vitis HLS and csim.sh,
    which compiles and runs the test bench with g++ (no vendor tools; exit code 0: pass)."""
    from .hls.config import load_net_config
    from .hls.project import write_project
    try:
        if output.exists() and any(output.iterdir()) and not force:
            raise EpropGenError(f"{output}: not empty; use --force to write into it (files of the same "
                                "names are replaced)")
        net = load_net_config(config, model=str(_model_path(model)) if Path(model).suffix == ".eprop" else model)
        folder = write_project(net, output, steps=steps)
    except EpropGenError as e:
        _fail(e)
    click.echo(f"HLS project of {net.network.recurrent.model}: {folder}")
    click.echo(f"  C simulation (g++, no vendor tools): {folder / 'csim.sh'}")
    click.echo(f"  Vitis HLS: cd {folder} && vitis_hls -f build_prj.tcl")


@main.command(name="models")
def list_models() -> None:
    """List the models shipped with eprop-gen (usable by name in check/compile)."""
    for name in shipped.names():
        first = shipped.path(name).read_text().splitlines()[0].lstrip("# ")
        click.echo(f"{name:20s} {first}")


def _fail_usage(error: Exception) -> None:
    """A bad configuration or output folder: one line, exit status 2 (as click's usage errors)."""
    if _speaks():
        click.echo(f"error: {error}", err=True)
    sys.exit(2)


def _report_run(result, echo) -> None:
    last = result.metrics[-1] if result.metrics else None
    if last is not None:
        first = result.metrics[0]
        accuracy = f", accuracy {last['accuracy']:.3f}" if last["accuracy"] is not None else ""
        echo(f"loss {first['loss']:.4g} (iteration {first['iteration']}) -> {last['loss']:.4g} "
             f"(iteration {last['iteration']}){accuracy}")
    if result.test is not None:
        accuracy = f", accuracy {result.test['accuracy']:.3f}" if result.test["accuracy"] is not None else ""
        echo(f"test set ({result.test['samples']} samples): loss {result.test['loss']:.4g}{accuracy}")
    echo(f"written to {result.folder}/: metrics.json, weights.npz, checkpoint.npz, learning_curve.png, sample.png")


RUN_OPTIONS = [
    click.option("--out", type=click.Path(file_okay=False, path_type=Path),
                 help="Run folder (default: runs/<config name>); never overwritten without --resume."),
    click.option("--data", help="Folder with the task's data set (N-MNIST: NMNIST/Train, NMNIST/Test)."),
]


def _with(options):
    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@_with(RUN_OPTIONS)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--iterations", type=int, help="Override [training] iterations.")
@click.option("--threads", type=int, help="Override [training] threads.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(config: Path, out: Path | None, data: str | None, resume: bool, iterations: int | None,
          threads: int | None, quiet: bool) -> None:
    """Train the network CONFIG (a TOML file, see examples/*.toml and docs/training.md) describes,
    with a progress bar; write metrics.json, weights.npz, a checkpoint and plots to --out."""
    from .train import ConfigError, RunFolderError
    from .train import train as run
    overrides = {"training": {k: v for k, v in (("iterations", iterations), ("threads", threads)) if v is not None}}
    try:
        result = run(config, out=out, resume=resume, data=data, progress=not quiet, echo=click.echo,
                     overrides=overrides)
    except (ConfigError, RunFolderError) as e:
        _fail_usage(e)
    except EpropGenError as e:
        _fail(e)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: continue with --resume (the last checkpoint is kept)", err=True)
        sys.exit(130)
    if _speaks():
        _report_run(result, click.echo)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="weights.npz of a run (eprop-gen train writes it).")
@click.option("--data", help="Folder with the task's data set.")
@click.option("--samples", default=1000, show_default=True, help="Test samples to evaluate.")
def evaluate(config: Path, weights: Path, data: str | None, samples: int) -> None:
    """Test-set loss and accuracy of saved weights on the task of CONFIG (learning off)."""
    from .train import ConfigError, RunFolderError
    from .train import evaluate as run
    try:
        result = run(config, weights, data=data, samples=samples)
    except (ConfigError, RunFolderError) as e:
        _fail_usage(e)
    except EpropGenError as e:
        _fail(e)
    accuracy = f"  accuracy {result['accuracy']:.4f}" if result["accuracy"] is not None else ""
    click.echo(f"{result['samples']} test samples: loss {result['loss']:.6g}{accuracy}")


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default: eprop-gen-demo, or -2, -3, ... if that exists).")
@click.option("-i", "--iterations", type=int, help="Training iterations (default 120).")
@click.option("--threads", default=2, show_default=True, help="OpenMP threads.")
def demo(out: Path | None, iterations: int | None, threads: int) -> None:
    """Train a recurrent spiking network (300 eprop_iaf neurons, the shipped NEST-equivalent model)
    with event-driven e-prop on sine-wave pattern generation, offline, in about a minute; print the
    loss falling and where the plots are."""
    from importlib.resources import files
    from .train import train as run
    folder = out if out is not None else _fresh_folder(Path("eprop-gen-demo"))
    overrides = {"training": {"threads": threads, **({"iterations": iterations} if iterations else {})}}
    click.echo("sine-wave pattern generation: 50 Poisson inputs -> 300 recurrent eprop_iaf neurons -> 1 readout, "
               f"500 ms per sample, event-driven e-prop, {threads} thread(s)")

    def report(record: dict) -> None:
        if record["iteration"] == 0 or (record["iteration"] + 1) % 10 == 0:
            click.echo(f"  iteration {record['iteration'] + 1:3d}: loss {record['loss']:9.3f}")

    try:
        with as_file(files("eprop_gen.train") / "demo.toml") as config:
            result = run(config, out=folder, progress=False, echo=click.echo, overrides=overrides,
                         on_iteration=report)
    except EpropGenError as e:
        _fail(e)
    first, last = result.metrics[0]["loss"], result.metrics[-1]["loss"]
    click.echo(f"loss fell from {first:.2f} to {last:.2f} ({first / last:.1f}x lower)")
    click.echo(f"plots: {result.folder / 'learning_curve.png'}, {result.folder / 'sample.png'}")
    click.echo("next: eprop-gen train examples/evidence_accumulation_short.toml | docs/training.md")


def _fresh_folder(base: Path) -> Path:
    candidate, k = base, 1
    while candidate.exists():
        k += 1
        candidate = base.with_name(f"{base.name}-{k}")
    return candidate


if __name__ == "__main__":
    main()
