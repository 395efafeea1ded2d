"""The `eprop-gen` command line: help, check, compile (with its caches and -o), models."""
from __future__ import annotations

import ctypes
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from eprop_gen import models
from eprop_gen.cli import main
from eprop_gen.compiler import check_source

COMMANDS = ("check", "compile", "models", "demo", "train", "evaluate")
FAST_MODEL = "leaky_readout"        # the cheapest shipped model to solve and compile


def run(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env)


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory) -> Path:
    """A private cache, so that the first compile really solves and builds."""
    return tmp_path_factory.mktemp("eprop-gen-cache")


@pytest.fixture(scope="module")
def first_and_second_compile(fresh_cache):
    env = {"EPROP_GEN_CACHE": str(fresh_cache)}
    out = []
    for _ in range(2):
        start = time.perf_counter()
        result = run("compile", FAST_MODEL, env=env)
        out.append((result, time.perf_counter() - start))
    return out


def _paths(output: str) -> tuple[Path, Path]:
    source = re.search(r"generated C\+\+:\s+(\S+)", output)
    library = re.search(r"library:\s+(\S+)", output)
    assert source and library, output
    return Path(source[1]), Path(library[1])


# ----------------------------------------------------------------------------------- help

def test_main_help():
    result = run("--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", result.output, re.M), command


def test_short_help_option_and_version():
    assert run("-h").output == run("--help").output
    result = run("--version")
    assert result.exit_code == 0 and "0.1.0" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0, result.output
    assert re.match(rf"Usage: \S+ {command}( |$)", result.output.splitlines()[0]), result.output
    assert "Traceback" not in result.output


def test_compile_help_documents_output_and_force():
    out = run("compile", "--help").output
    assert "-o, --output" in out and "--force" in out


def test_unknown_command_fails_cleanly():
    result = run("frobnicate")
    assert result.exit_code != 0
    assert "frobnicate" in result.output and "Traceback" not in result.output


def test_console_script_runs_in_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "eprop_gen.cli", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "Usage:" in proc.stdout


# ----------------------------------------------------------------------------------- models

def test_models_lists_every_shipped_model_with_its_description():
    result = run("models")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [l.split()[0] for l in lines] == models.names()
    for line, name in zip(lines, models.names()):
        first = models.path(name).read_text().splitlines()[0].lstrip("# ")
        assert line.split(None, 1)[1] == first


# ------------------------------------------------------------------------------------ check

@pytest.mark.parametrize("name", ["iaf_psc_exp", "izhikevich", "leaky_readout"])
def test_check_shipped_model_by_name_prints_the_summary(name):
    result = run("check", name)
    assert result.exit_code == 0, result.output
    path = models.path(name)
    assert result.stdout.rstrip("\n") == check_source(path.read_text(), str(path)).summary
    assert result.stdout.startswith(f"model {name}  ({path})")
    assert "parameters:" in result.stdout and "state:" in result.stdout


def test_check_summary_says_what_is_solved_how():
    exp = run("check", "iaf_psc_exp").stdout
    assert "solved exactly (propagator exp(A*h), any h): V_m, I_syn_ex, I_syn_in" in exp
    assert "singular case tau_syn_ex == tau_m" in exp or "singular case tau_m == tau_syn_ex" in exp
    izh = run("check", "izhikevich").stdout
    assert re.search(r"solved numerically \(RK4, 10 substep\(s\) per step\): v, u", izh)


def test_check_model_file_path(tmp_path):
    path = tmp_path / "mine.eprop"
    path.write_text(models.path("iaf_psc_delta").read_text())
    result = run("check", str(path))
    assert result.exit_code == 0
    assert f"({path})" in result.stdout.splitlines()[0]


def test_check_unknown_model_name_lists_the_shipped_ones():
    result = run("check", "iaf_psc_nonexistent")
    assert result.exit_code == 1
    assert "iaf_psc_nonexistent: no such model file" in result.stderr
    for name in models.names():
        assert name in result.stderr
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------- compile

def test_compile_prints_paths_that_exist(first_and_second_compile, fresh_cache):
    result, _ = first_and_second_compile[0]
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"model {FAST_MODEL}: compiled in ")
    source, library = _paths(result.stdout)
    assert source.name == "model.cpp" and source.is_file()
    assert library.is_file() and library.suffix in (".so", ".dylib", ".dll")
    # built into the private cache, and the source is the generated kernel for this model
    assert fresh_cache in library.parents and fresh_cache in source.parents
    assert f"eg_{FAST_MODEL}_update" in source.read_text()
    lib = ctypes.CDLL(str(library))
    assert hasattr(lib, f"eg_{FAST_MODEL}_propagator")


def test_second_compile_is_a_fast_cache_hit(first_and_second_compile):
    (first, t_first), (second, t_second) = first_and_second_compile
    assert second.exit_code == 0
    assert _paths(second.stdout) == _paths(first.stdout)
    reported = [float(re.search(r"compiled in ([\d.]+) s", r.stdout)[1]) for r in (first, second)]
    assert reported[1] < 0.5, reported
    assert reported[1] < reported[0] / 3, reported
    assert t_second < t_first


def test_compile_force_rebuilds_the_same_library(first_and_second_compile, fresh_cache):
    first, _ = first_and_second_compile[0]
    _, library = _paths(first.stdout)
    before = library.stat().st_mtime_ns
    result = run("compile", FAST_MODEL, "--force", env={"EPROP_GEN_CACHE": str(fresh_cache)})
    assert result.exit_code == 0, result.output
    assert _paths(result.stdout)[1] == library
    assert library.stat().st_mtime_ns >= before


def test_compile_output_copies_source_and_library_and_refuses_to_overwrite(
        first_and_second_compile, fresh_cache, tmp_path):
    env = {"EPROP_GEN_CACHE": str(fresh_cache)}
    cached_source, cached_library = _paths(first_and_second_compile[0][0].stdout)
    out = tmp_path / "out"
    result = run("compile", FAST_MODEL, "-o", str(out), env=env)
    assert result.exit_code == 0, result.output
    source, library = _paths(result.stdout)
    assert source == out / "model.cpp" and library == out / cached_library.name
    assert source.read_bytes() == cached_source.read_bytes()
    assert library.read_bytes() == cached_library.read_bytes()

    # a second export into the same folder must not silently replace the files
    source.write_text("// edited by the user\n")
    again = run("compile", FAST_MODEL, "-o", str(out), env=env)
    assert again.exit_code == 1
    assert "would overwrite" in again.stderr and "--force" in again.stderr
    assert str(out / "model.cpp") in again.stderr
    assert "Traceback" not in again.output
    assert source.read_text() == "// edited by the user\n"

    forced = run("compile", FAST_MODEL, "-o", str(out), "--force", env=env)
    assert forced.exit_code == 0, forced.output
    assert source.read_bytes() == cached_source.read_bytes()


def test_compile_output_into_a_new_nested_folder(first_and_second_compile, fresh_cache, tmp_path):
    out = tmp_path / "a" / "b"
    result = run("compile", FAST_MODEL, "--output", str(out), env={"EPROP_GEN_CACHE": str(fresh_cache)})
    assert result.exit_code == 0, result.output
    assert (out / "model.cpp").is_file()
    assert any(p.suffix == ".so" for p in out.iterdir())


def test_compile_invalid_model_fails_with_the_model_error(tmp_path):
    bad = Path(__file__).parent / "invalid" / "unknown_name.eprop"
    result = run("compile", str(bad), env={"EPROP_GEN_CACHE": str(tmp_path)})
    assert result.exit_code == 1
    assert "error[E104]: undefined name 'tau_sin'" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.output
    assert not list(tmp_path.glob("*/*.so"))        # nothing was built
