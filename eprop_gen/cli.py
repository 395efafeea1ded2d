"""The `eprop-gen` command line. Every user mistake ends in one clear message and exit status 1."""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import click

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
    click.echo(str(error), err=True)
    sys.exit(1)


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


@main.command(name="models")
def list_models() -> None:
    """List the models shipped with eprop-gen (usable by name in check/compile)."""
    for name in shipped.names():
        first = shipped.path(name).read_text().splitlines()[0].lstrip("# ")
        click.echo(f"{name:20s} {first}")


@main.command()
@click.option("-i", "--iterations", default=30, show_default=True, help="Training iterations (sequences).")
@click.option("--threads", default=2, show_default=True, help="OpenMP threads.")
@click.option("--seed", default=1, show_default=True)
def demo(iterations: int, threads: int, seed: int) -> None:
    """Train a recurrent spiking network (300 eprop_iaf neurons, the shipped NEST-equivalent model)
    with event-driven e-prop on sine-wave pattern generation, offline, and print the loss falling."""
    from .demo import run_demo
    try:
        run_demo(iterations=iterations, threads=threads, seed=seed, echo=click.echo)
    except EpropGenError as e:
        _fail(e)


if __name__ == "__main__":
    main()
