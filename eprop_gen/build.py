"""Compile generated C++ into shared libraries, cached by a hash of all that shapes the binary.

A cache entry is one folder `<cache_dir>/<name>-<key[:16]>/` holding the sources exactly as
compiled (so a user can read the generated C++), the library `lib<name>.so`, and the library's
sha256 (to notice a damaged file without running it). Builds happen in a private temporary folder
inside `cache_dir` and are moved into place under an exclusive `flock`, so any number of processes
may build the same thing at once.

Every library also exports `const char* eg_build_key(void)`; `load_library` compares it with the
key we expect, so a stale or foreign library is never used by mistake.
"""
from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from .errors import BuildError

# Bump whenever the binary interface between Python and the compiled code changes in a way the
# sources alone do not show (ctypes struct layouts, calling conventions, the key source below).
ABI_VERSION = "eprop-gen-abi-1"

BASE_FLAGS = ("-O3", "-std=c++17", "-fPIC", "-shared")
OPENMP_FLAG = "-fopenmp"
COMPILED_SUFFIXES = (".cpp", ".cc", ".cxx")
KEY_SOURCE_NAME = "_eg_build_key.cpp"      # added at build time; not part of the key
CHECKSUM_SUFFIX = ".sha256"
COMPILER_OUTPUT_TAIL_LINES = 40

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class LibraryLoadError(BuildError):
    """A compiled library could not be loaded, or it is not the build we expected."""


@dataclass(frozen=True)
class BuildResult:
    library_path: Path
    source_dir: Path
    key: str
    cache_hit: bool


# ---------------------------------------------------------------------------------------------
# public API

def build_library(sources: Mapping[str, str], *, name: str, openmp: bool,
                  include_dirs: Sequence[str | os.PathLike] = (),
                  extra_flags: Sequence[str] = (),
                  cache_dir: Path | None = None, force: bool = False) -> BuildResult:
    """Compile `sources` (file name -> text) into `lib<name>.so`, or reuse an identical build.

    A cached library is reused only if its bytes match the recorded checksum and it loads with the
    expected build key; otherwise it is rebuilt once (with a warning). `force` always rebuilds.
    """
    _check_name(name)
    for file_name in sources:
        _check_file_name(file_name)
    compiler = find_compiler()
    use_openmp = bool(openmp) and openmp_available(tuple(compiler))
    flags = compile_flags(use_openmp, include_dirs, extra_flags)
    key = build_key(sources, compiler, flags, use_openmp)

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"cannot create the build cache folder {root}: {exc.strerror}; "
                         f"set EPROP_GEN_CACHE to a writable folder") from None
    entry = root / f"{name}-{key[:16]}"
    library = entry / library_file_name(name)

    with _exclusive_lock(root / f".{entry.name}.lock"):
        if not force:
            problem = _cached_entry_problem(library, key)
            if problem is None:
                return BuildResult(library, entry, key, cache_hit=True)
            if entry.exists():
                warnings.warn(f"eprop-gen: cached library {library} is unusable ({problem}); "
                              f"rebuilding it", RuntimeWarning, stacklevel=2)
        _compile_into_cache(root, entry, sources, name, compiler, flags, key)

    problem = _cached_entry_problem(library, key)
    if problem is not None:
        raise BuildError(f"freshly built library {library} is unusable: {problem}")
    return BuildResult(library, entry, key, cache_hit=False)


def load_library(path: str | os.PathLike, key: str) -> ctypes.CDLL:
    """Load a library built by `build_library` and check that it is the build with `key`."""
    try:
        lib = ctypes.CDLL(str(path))
        get_key = lib.eg_build_key
    except (OSError, AttributeError) as exc:
        raise LibraryLoadError(f"cannot load {path}: {exc}") from None
    get_key.argtypes = []
    get_key.restype = ctypes.c_char_p
    found = (get_key() or b"").decode("ascii", "replace")
    if found != key:
        raise LibraryLoadError(f"{path} has build key {found[:16]}..., expected {key[:16]}...")
    return lib


def build_and_load(sources: Mapping[str, str], **options) -> tuple[BuildResult, ctypes.CDLL]:
    """`build_library` followed by `load_library` (the usual pair)."""
    result = build_library(sources, **options)
    return result, load_library(result.library_path, result.key)


def default_cache_dir() -> Path:
    """$EPROP_GEN_CACHE, else `generated/` of a writable source checkout, else ~/.cache/eprop-gen.
    """
    env = os.environ.get("EPROP_GEN_CACHE")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[1] / "generated"
    if checkout.is_dir() and os.access(checkout, os.W_OK | os.X_OK):
        return checkout
    return Path.home() / ".cache" / "eprop-gen"


def find_compiler() -> list[str]:
    """The C++ compiler command: $CXX (may carry arguments, e.g. 'ccache g++'), else c++ or g++."""
    env = os.environ.get("CXX", "").strip()
    if env:
        command = shlex.split(env)
        resolved = shutil.which(command[0])
        if resolved is None:
            raise BuildError(f"the compiler named by $CXX ({env!r}) was not found")
        return [resolved, *command[1:]]
    for candidate in ("c++", "g++"):
        resolved = shutil.which(candidate)
        if resolved is not None:
            return [resolved]
    raise BuildError("no C++ compiler found (tried $CXX, c++, g++); install g++ or set CXX")


def compile_flags(openmp: bool, include_dirs: Sequence[str | os.PathLike] = (),
                  extra_flags: Sequence[str] = ()) -> list[str]:
    flags = list(BASE_FLAGS)
    if openmp:
        flags.append(OPENMP_FLAG)
    flags += [f"-I{Path(d).resolve()}" for d in include_dirs]
    flags += [str(f) for f in extra_flags]
    return flags


def build_key(sources: Mapping[str, str], compiler: Sequence[str], flags: Sequence[str],
              openmp: bool) -> str:
    """sha256 over everything that determines the binary (and nothing that does not)."""
    h = hashlib.sha256()

    def feed(label: str, text: str) -> None:
        # length-prefixed so that no two different inputs produce the same byte stream
        data = text.encode("utf-8")
        h.update(f"{label}:{len(data)}:".encode("ascii"))
        h.update(data)

    feed("abi", ABI_VERSION)
    for file_name in sorted(sources):
        feed("file", file_name)
        feed("text", sources[file_name])
    feed("compiler", "\0".join(compiler))
    feed("compiler-version", compiler_version(tuple(compiler)))
    feed("flags", "\0".join(flags))
    feed("openmp", "on" if openmp else "off")
    feed("platform", f"{sys.platform}/{platform.machine()}")
    return h.hexdigest()


def library_file_name(name: str) -> str:
    return f"lib{name}.so"


@functools.lru_cache(maxsize=None)
def compiler_version(compiler: tuple[str, ...]) -> str:
    try:
        run = subprocess.run([*compiler, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"cannot run the C++ compiler {' '.join(compiler)}: {exc}") from None
    if run.returncode != 0:
        raise BuildError(f"'{' '.join(compiler)} --version' failed:\n"
                         f"{_tail(run.stdout + run.stderr)}")
    return run.stdout


@functools.lru_cache(maxsize=None)
def openmp_available(compiler: tuple[str, ...]) -> bool:
    """Whether `compiler -fopenmp` builds and links an OpenMP program. The answer is remembered in
    the cache folder per compiler identity, so a new process does not pay a probe compile."""
    identity = hashlib.sha256("\0".join([*compiler, compiler_version(compiler)]).encode()).hexdigest()
    memo = default_cache_dir() / f".openmp-{identity[:16]}"
    try:
        ok = memo.read_text().strip() == "yes"
    except OSError:
        ok = _probe_openmp(compiler)
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.write_text("yes" if ok else "no")
        except OSError:
            pass                  # a read-only cache only costs the probe next time
    if not ok:
        warnings.warn(f"OpenMP not available with {' '.join(compiler)}; building a serial engine",
                      RuntimeWarning, stacklevel=3)
    return ok


def _probe_openmp(compiler: tuple[str, ...]) -> bool:
    probe = "#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
    with tempfile.TemporaryDirectory(prefix="eprop-gen-omp-probe-") as tmp:
        (Path(tmp) / "probe.cpp").write_text(probe)
        try:
            run = subprocess.run([*compiler, OPENMP_FLAG, "probe.cpp", "-o", "probe"], cwd=tmp,
                                 capture_output=True, text=True, timeout=120)
            ok = run.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
    return ok


# ---------------------------------------------------------------------------------------------
# internals

def _check_name(name: str) -> None:
    if not _NAME_PATTERN.match(name):
        raise ValueError(f"library name {name!r} must be letters, digits, '_', '.', '-'")


def _check_file_name(file_name: str) -> None:
    if (not _NAME_PATTERN.match(file_name) or file_name == KEY_SOURCE_NAME):
        raise ValueError(f"source file name {file_name!r} must be a plain file name "
                         f"(no folders) other than {KEY_SOURCE_NAME}")


@contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    # The lock file is never deleted: removing it would let two processes lock different inodes.
    with open(lock_path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cached_entry_problem(library: Path, key: str) -> str | None:
    """None if `library` is a complete, intact build with `key`; else what is wrong with it."""
    checksum = library.with_name(library.name + CHECKSUM_SUFFIX)
    if not library.is_file():
        return "missing"
    if not checksum.is_file():
        return "no checksum (interrupted build?)"
    # Compare bytes before dlopen: a damaged file must never be mapped into the process.
    if checksum.read_text().strip() != _file_sha256(library):
        return "checksum mismatch (file damaged)"
    try:
        load_library(library, key)
    except LibraryLoadError as exc:
        return str(exc)
    return None


def _key_source(key: str) -> str:
    return ('// Added by eprop_gen.build: identifies this build (not part of the cache key).\n'
            f'extern "C" const char* eg_build_key(void) {{ return "{key}"; }}\n')


def _compile_into_cache(root: Path, entry: Path, sources: Mapping[str, str], name: str,
                        compiler: Sequence[str], flags: Sequence[str], key: str) -> None:
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        work.chmod(0o755)      # mkdtemp makes it private; the published folder should be readable
        for file_name, text in sources.items():
            (work / file_name).write_text(text)
        (work / KEY_SOURCE_NAME).write_text(_key_source(key))
        compiled = sorted(f for f in sources if f.endswith(COMPILED_SUFFIXES)) + [KEY_SOURCE_NAME]
        library_name = library_file_name(name)
        command = [*compiler, *flags, *compiled, "-o", library_name]
        _run_compiler(command, work, root, entry, sources)
        (work / "build_command.txt").write_text(shlex.join(command) + "\n")
        checksum = _file_sha256(work / library_name)
        (work / (library_name + CHECKSUM_SUFFIX)).write_text(checksum + "\n")
        _move_into_place(work, entry, root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _run_compiler(command: list[str], work: Path, root: Path, entry: Path,
                  sources: Mapping[str, str]) -> None:
    try:
        run = subprocess.run(command, cwd=work, capture_output=True, text=True)
    except OSError as exc:
        raise BuildError(f"cannot run the C++ compiler {command[0]}: {exc}") from None
    if run.returncode == 0:
        return
    # Keep the failing sources where the user can open them; the message points there.
    failed = entry.with_name(entry.name + ".failed")
    shutil.rmtree(failed, ignore_errors=True)
    shutil.copytree(work, failed)
    main_files = [failed / f for f in sorted(sources) if f.endswith(COMPILED_SUFFIXES)]
    listing = "\n".join(f"  {p}" for p in main_files) or f"  {failed}"
    raise BuildError(
        f"C++ compilation of '{entry.name}' failed (exit code {run.returncode}).\n"
        f"generated source:\n{listing}\n"
        f"command (run in {failed}):\n  {shlex.join(command)}\n"
        f"compiler output (last {COMPILER_OUTPUT_TAIL_LINES} lines):\n"
        f"{_tail(run.stdout + run.stderr)}")


def _move_into_place(work: Path, entry: Path, root: Path) -> None:
    """Atomically publish `work` as `entry`, moving any previous (damaged or forced) entry away."""
    if entry.exists():
        graveyard = Path(tempfile.mkdtemp(prefix=".old-", dir=root))
        os.replace(entry, graveyard / entry.name)
        shutil.rmtree(graveyard, ignore_errors=True)
    os.replace(work, entry)


def _tail(text: str, lines: int = COMPILER_OUTPUT_TAIL_LINES) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(no output)"
