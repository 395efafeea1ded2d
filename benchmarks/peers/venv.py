"""Virtual environments for the peer simulators whose pins clash with ours.

    python benchmarks/peers/venv.py brian2      # prints the venv's python (creates it if missing)

Brian2 2.9.0 does not import with numpy >= 2.4 (our environment's numpy), so it runs from its own
venv, created once from the package index (PyPI) in ``benchmarks/peers/.venv-brian2/`` (git-ignored)
with ``brian2==2.9.0``, ``numpy<2.4``, setuptools and cython. The venv counts as complete when its
stamp file ``.complete`` exists (it holds the imported Brian2 and numpy versions); a half-built venv
is removed and built again. Creation takes ~30 s and is serialised by a lock file, so concurrent
callers wait instead of building twice. Needs the ``venv`` module of this Python and a C++ compiler
(for Brian2's standalone mode, at run time, not here).

From Python: ``subprocess.run([sys.executable, "benchmarks/peers/venv.py", "brian2"], ...)`` and take
the last line of stdout (this file's name shadows the stdlib ``venv`` inside this folder, which is why
it creates environments with ``python -I -m venv``).
"""
from __future__ import annotations

import argparse
import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SPECS = {
    # name: (venv folder, requirements, import check)
    "brian2": (".venv-brian2",
               ["brian2==2.9.0", "numpy<2.4", "setuptools", "cython"],
               "import brian2, numpy; print('brian2', brian2.__version__, 'numpy', numpy.__version__)"),
}


def _python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _run(cmd: list[str], quiet: bool) -> None:
    done = subprocess.run(cmd, capture_output=quiet, text=True)
    if done.returncode != 0:
        if quiet:
            sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"venv.py: failed ({done.returncode}): {' '.join(cmd)}")


def interpreter(name: str, quiet: bool = True) -> Path:
    """Path of the python of venv `name`, creating the venv from the package index if needed."""
    folder_name, requirements, check = SPECS[name]
    folder = HERE / folder_name
    python = _python(folder)
    stamp = folder / ".complete"
    if stamp.exists() and python.exists():
        return python
    with open(HERE / f"{folder_name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)                    # another process may be building it right now
        if stamp.exists() and python.exists():
            return python
        if folder.exists():
            shutil.rmtree(folder)
        # -I: isolated, so this file cannot shadow the stdlib venv module
        _run([sys.executable, "-I", "-m", "venv", str(folder)], quiet)
        _run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], quiet)
        _run([str(python), "-m", "pip", "install", "--quiet", *requirements], quiet)
        done = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"venv.py: the new venv cannot import its packages: {folder}")
        stamp.write_text(done.stdout)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(SPECS))
    parser.add_argument("--verbose", action="store_true", help="show pip's output while creating")
    args = parser.parse_args()
    print(interpreter(args.name, quiet=not args.verbose))


if __name__ == "__main__":
    main()
