"""Models shipped with eprop-gen, written in the model language (`*.eprop` beside this file)."""
from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent


def names() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.eprop"))


def path(name: str) -> Path:
    """Path of the shipped model `name` (e.g. 'iaf_psc_exp')."""
    candidate = MODELS_DIR / f"{name}.eprop"
    if not candidate.is_file():
        raise FileNotFoundError(f"no shipped model '{name}'; shipped models: {', '.join(names())}")
    return candidate
