"""Where the package's data folders are: `grammar/`, `templates/`, `models/`.

In a source checkout (and an editable install) they sit at the repository's top level, as the
design card lays out; a regular install ships grammar/ and templates/ inside the package.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"eprop-gen data folder '{name}' is missing from {PACKAGE_DIR}")
