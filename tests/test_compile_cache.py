"""compile_model's cache, end to end: hit on repeat, miss on a changed model or flag, rebuild when corrupted."""
import os
import time

import numpy as np
import pytest

import eprop_gen as eg

MODEL = """\
neuron cache_probe:
    parameters:
        tau = 5.0 ms
    state:
        x = 1.0
    equations:
        x' = -x / tau
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EPROP_GEN_CACHE", str(tmp_path))
    return tmp_path


def library_mtime(model):
    return os.stat(model.library_path).st_mtime_ns


def test_repeat_is_a_cache_hit(cache):
    first = eg.compile_model(MODEL)
    start = time.perf_counter()
    second = eg.compile_model(MODEL)
    assert time.perf_counter() - start < 2.0
    assert second.library_path == first.library_path
    assert library_mtime(second) == library_mtime(first)        # not rebuilt
    assert str(first.library_path).startswith(str(cache))


def test_changed_model_or_flag_is_a_miss(cache):
    base = eg.compile_model(MODEL)
    changed = eg.compile_model(MODEL.replace("x' = -x / tau", "x' = -2 * x / tau"))
    flagged = eg.compile_model(MODEL, extra_flags=("-O2",))
    assert len({base.library_path.parent, changed.library_path.parent, flagged.library_path.parent}) == 3
    # the changed model really computes something else: exp(-2h/tau) instead of exp(-h/tau)
    assert base.propagator({}, 1.0)[0, 0] == pytest.approx(np.exp(-1 / 5.0), rel=1e-15)
    assert changed.propagator({}, 1.0)[0, 0] == pytest.approx(np.exp(-2 / 5.0), rel=1e-15)


def test_corrupted_library_is_rebuilt(cache):
    first = eg.compile_model(MODEL)
    path = first.library_path
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])    # flip every bit
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(bytes(data))
    os.replace(tmp, path)       # a new file: never scribble over a library this process has loaded
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        again = eg.compile_model(MODEL)
    assert again.library_path == path
    assert path.read_bytes() != bytes(data)
    assert again.propagator({"tau": 2.0}, 0.5)[0, 0] == pytest.approx(np.exp(-0.25), rel=1e-15)


def test_plan_cache_key_covers_every_planning_module():
    """The symbolic stages' results are cached under a fingerprint of their code: every module of
    the parse -> check -> solve -> plan stages must be part of it, or a changed stage would reuse
    stale plans (plan_blocks.py once was missing)."""
    from pathlib import Path

    from eprop_gen import compiler
    package = Path(compiler.__file__).parent
    stages = {"parse.py", "check.py", "ir.py", "report.py"} | {p.name for p in package.glob("plan*.py")}
    stages |= {f"solve/{p.name}" for p in (package / "solve").glob("*.py")}
    assert stages <= set(compiler._PIPELINE_FILES), sorted(stages - set(compiler._PIPELINE_FILES))
