"""Virtual environments for the peer simulators whose pins clash with ours.

    python benchmarks/peers/venv.py brian2      # prints the venv's python (creates it if missing)

Brian2 2.9.0 does not import with numpy >= 2.4 (our environment's numpy), so it runs from its own
venv, created once from the package index in ``benchmarks/peers/.venv-brian2/`` (git-ignored) with
``brian2==2.9.0`` and ``numpy<2.4``. The venv counts as complete when its stamp file exists; a broken
or half-built venv is rebuilt from scratch. Importable: ``from venv import interpreter`` (module name
clashes with the stdlib ``venv``, so use ``runpy``/subprocess, or ``benchmarks.peers.venv``).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SPECS = {
    # name: (venv folder, requirements, import check)
    "brian2": (".venv-brian2",
               ["brian2==2.9.0", "numpy<2.4", "setuptools", "cython"],
               "import brian2, numpy; print(brian2.__version__, numpy.__version__)"),
}


def _python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def interpreter(name: str, quiet: bool = True) -> Path:
    """Path of the python of venv `name`, creating the venv from the package index if needed."""
    folder_name, requirements, check = SPECS[name]
    folder = HERE / folder_name
    stamp = folder / ".complete"
    python = _python(folder)
    if stamp.exists() and python.exists():
        return python
    if folder.exists():
        shutil.rmtree(folder)
    out = subprocess.DEVNULL if quiet else None
    # stdlib venv (the module is shadowed by this file when run from this folder, hence -I)
    subprocess.run([sys.executable, "-I", "-m", "venv", str(folder)], check=True, stdout=out)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True,
                   stdout=out)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *requirements], check=True, stdout=out)
    done = subprocess.run([str(python), "-c", check], check=True, capture_output=True, text=True)
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
