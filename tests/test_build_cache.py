"""build_library: content-hash cache, corruption recovery, concurrent builds, readable errors."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from eprop_gen.build import (BuildResult, LibraryLoadError, build_library, default_cache_dir,
                             load_library)
from eprop_gen.errors import BuildError, EpropGenError

HEADER = "#pragma once\ninline int twice(int x) { return 2 * x; }\n"


def sources(answer: int = 21, token: str = "") -> dict[str, str]:
    # `token` makes a source unique to one test, so no library path is shared between tests
    # (a process never dlopens two different files under the same path).
    cpp = textwrap.dedent(f"""\
        // {token}
        #include "helper.h"
        extern "C" int answer(void) {{ return twice({answer}); }}
        extern "C" int has_openmp(void) {{
        #ifdef _OPENMP
            return 1;
        #else
            return 0;
        #endif
        }}
        """)
    return {"model.cpp": cpp, "helper.h": HEADER}


def call_answer(result: BuildResult) -> int:
    lib = load_library(result.library_path, result.key)
    lib.answer.restype = ctypes.c_int
    return lib.answer()


def test_repeat_build_is_a_cache_hit_without_recompiling(tmp_path):
    src = sources(token=uuid.uuid4().hex)
    first = build_library(src, name="m", openmp=False, cache_dir=tmp_path)
    assert not first.cache_hit
    assert first.source_dir == tmp_path / f"m-{first.key[:16]}"
    assert (first.source_dir / "model.cpp").read_text() == src["model.cpp"]   # readable C++
    assert (first.source_dir / "helper.h").read_text() == HEADER
    stamp = first.library_path.stat().st_mtime_ns
    started = time.perf_counter()
    second = build_library(src, name="m", openmp=False, cache_dir=tmp_path)
    elapsed = time.perf_counter() - started
    assert second.cache_hit and second == BuildResult(first.library_path, first.source_dir,
                                                      first.key, cache_hit=True)
    assert second.library_path.stat().st_mtime_ns == stamp
    assert elapsed < 0.5
    assert call_answer(second) == 42


def test_changed_source_or_flags_is_a_miss(tmp_path):
    token = uuid.uuid4().hex
    base = build_library(sources(21, token), name="m", openmp=False, cache_dir=tmp_path)
    other_source = build_library(sources(22, token), name="m", openmp=False, cache_dir=tmp_path)
    other_flags = build_library(sources(21, token), name="m", openmp=False, cache_dir=tmp_path,
                                extra_flags=["-DEXTRA=1"])
    assert not other_source.cache_hit and not other_flags.cache_hit
    assert len({base.key, other_source.key, other_flags.key}) == 3
    assert call_answer(other_source) == 44


def test_key_does_not_depend_on_the_cache_folder(tmp_path):
    token = uuid.uuid4().hex
    a = build_library(sources(token=token), name="m", openmp=False, cache_dir=tmp_path / "a")
    b = build_library(sources(token=token), name="m", openmp=False, cache_dir=tmp_path / "b")
    assert a.key == b.key and not b.cache_hit


def test_openmp_build_defines_openmp(tmp_path):
    result = build_library(sources(token=uuid.uuid4().hex), name="m", openmp=True,
                           cache_dir=tmp_path)
    lib = load_library(result.library_path, result.key)
    lib.has_openmp.restype = ctypes.c_int
    assert lib.has_openmp() == 1
    serial = build_library(sources(token=uuid.uuid4().hex), name="m", openmp=False,
                           cache_dir=tmp_path)
    lib = load_library(serial.library_path, serial.key)
    lib.has_openmp.restype = ctypes.c_int
    assert lib.has_openmp() == 0


def test_corrupted_library_is_rebuilt(tmp_path):
    src = sources(token=uuid.uuid4().hex)
    first = build_library(src, name="m", openmp=False, cache_dir=tmp_path)
    data = bytearray(first.library_path.read_bytes())
    data[100:400] = b"\xff" * 300
    # a new file replaces the old (never rewrite a file a process may have mapped)
    damaged = first.library_path.with_name("damaged")
    damaged.write_bytes(bytes(data))
    os.replace(damaged, first.library_path)
    with pytest.warns(RuntimeWarning, match="unusable"):
        again = build_library(src, name="m", openmp=False, cache_dir=tmp_path)
    assert not again.cache_hit and again.key == first.key
    assert again.library_path.read_bytes() != bytes(data)
    assert call_answer(again) == 42
    assert build_library(src, name="m", openmp=False, cache_dir=tmp_path).cache_hit


def test_force_always_rebuilds(tmp_path):
    src = sources(token=uuid.uuid4().hex)
    build_library(src, name="m", openmp=False, cache_dir=tmp_path)
    forced = build_library(src, name="m", openmp=False, cache_dir=tmp_path, force=True)
    assert not forced.cache_hit
    assert build_library(src, name="m", openmp=False, cache_dir=tmp_path).cache_hit


def test_library_with_another_key_is_refused(tmp_path):
    result = build_library(sources(token=uuid.uuid4().hex), name="m", openmp=False,
                           cache_dir=tmp_path)
    with pytest.raises(LibraryLoadError, match="build key"):
        load_library(result.library_path, "0" * 64)
    with pytest.raises(LibraryLoadError, match="cannot load"):
        load_library(tmp_path / "missing.so", result.key)


def test_compile_error_names_the_file_and_shows_compiler_output(tmp_path):
    broken = {"model.cpp": "int main( {\n  return undefined_name;\n}\n"}
    with pytest.raises(BuildError) as info:
        build_library(broken, name="broken", openmp=False, cache_dir=tmp_path)
    message = str(info.value)
    assert isinstance(info.value, EpropGenError)
    failed_file = next(line.strip() for line in message.splitlines()
                       if line.strip().endswith("model.cpp"))
    assert Path(failed_file).read_text() == broken["model.cpp"]    # the user can open it
    assert "error" in message and "model.cpp:1" in message          # the compiler's own words
    assert not list(tmp_path.glob(".tmp-*"))                          # no leftovers


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EPROP_GEN_CACHE", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("EPROP_GEN_CACHE")
    checkout = Path(__file__).resolve().parents[1] / "generated"
    expected = checkout if os.access(checkout, os.W_OK) else Path.home() / ".cache" / "eprop-gen"
    assert default_cache_dir() == expected


def test_concurrent_builds_of_the_same_library_are_safe(tmp_path):
    src = sources(token=uuid.uuid4().hex)
    script = textwrap.dedent(f"""\
        import sys
        from eprop_gen.build import build_and_load
        result, lib = build_and_load({src!r}, name="m", openmp=False, cache_dir={str(tmp_path)!r})
        print(result.key, result.cache_hit)
        """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
             for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    keys = {out.split()[0] for out, _ in outputs}
    hits = sorted(out.split()[1] for out, _ in outputs)
    assert len(keys) == 1 and hits.count("False") == 1     # exactly one process compiled
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == \
        [f"m-{keys.pop()[:16]}"]


def test_without_openmp_the_build_warns_and_is_serial(tmp_path, monkeypatch):
    # A compiler that rejects -fopenmp, as e.g. Apple clang without libomp does.
    wrapper = tmp_path / "no-openmp-c++"
    wrapper.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = "-fopenmp" ] && '
                       '{ echo "no OpenMP here" >&2; exit 1; }; done\nexec g++ "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CXX", str(wrapper))
    with pytest.warns(RuntimeWarning, match="OpenMP not available with .*no-openmp-c\\+\\+; "
                                            "building a serial engine"):
        result = build_library(sources(token=uuid.uuid4().hex), name="m", openmp=True,
                               cache_dir=tmp_path / "cache")
    lib = load_library(result.library_path, result.key)
    lib.has_openmp.restype = ctypes.c_int
    assert lib.has_openmp() == 0


def test_missing_compiler_is_a_build_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.raises(BuildError, match="was not found"):
        build_library(sources(), name="m", openmp=False, cache_dir=tmp_path)
