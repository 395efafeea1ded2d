"""The conductor: parse -> check -> solve -> plan -> render -> build -> load. The order lives here only."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy as sp

from . import build
from .check import check_model, surrogate_expression
from .compiled import CompiledModel
from .errors import EpropGenError
from .ir import SURROGATE_FUNCTIONS, ModelIR, Surrogate
from .parse import parse_model
from .paths import PACKAGE_DIR, resource_dir
from .plan import KernelPlan, plan_kernel
from .precision import LEARNING_FLAGS
from .render import ABI_VERSION, render_model
from .report import summarize
from .solve import Solution, solve_model


@dataclass(frozen=True)
class Checked:
    ir: ModelIR
    solution: Solution
    summary: str


def read_model(model: str | os.PathLike) -> tuple[str, str]:
    """(source text, file name) from a path, or from model text itself (anything with a newline)."""
    if isinstance(model, str) and "\n" in model:
        return model, "<string>"
    path = Path(model)
    if not path.is_file():
        raise EpropGenError(f"{path}: no such model file")
    return path.read_text(), str(path)


def check_source(source: str, file: str = "<string>", surrogate: str | None = None) -> Checked:
    """Front end only. `surrogate` replaces the model's surrogate-gradient function (as NEST's
    surrogate_gradient_function parameter does, but at compile time)."""
    ir = check_model(parse_model(source, file))
    if surrogate is not None:
        ir = with_surrogate(ir, surrogate)
    solution = solve_model(ir)
    return Checked(ir, solution, summarize(solution))


def with_surrogate(ir: ModelIR, function: str) -> ModelIR:
    if function not in SURROGATE_FUNCTIONS:
        raise EpropGenError(f"unknown surrogate gradient function '{function}'; "
                            f"known: {', '.join(SURROGATE_FUNCTIONS)}")
    if ir.spike is None or ir.spike.surrogate is None:
        raise EpropGenError(f"model '{ir.name}' declares no surrogate gradient to replace")
    old = ir.spike.surrogate
    new = Surrogate(function, old.distance, old.height, old.width,
                    surrogate_expression(function, old.distance, old.height, old.width))
    return dataclasses.replace(ir, spike=dataclasses.replace(ir.spike, surrogate=new))


def compile_model(model: str | os.PathLike, *, cache_dir: Path | None = None, force: bool = False,
                  extra_flags: tuple[str, ...] = (), surrogate: str | None = None) -> CompiledModel:
    """Compile a model file (or model text) into a loaded simulator kernel; cached by content.
    `surrogate` picks another surrogate-gradient function than the file declares."""
    source, file = read_model(model)
    cache = Path(cache_dir) if cache_dir is not None else build.default_cache_dir()
    plan, initial, summary = _planned(source, file, cache, force, surrogate)
    result, library = build.build_and_load(render_model(plan), name=plan.name, openmp=False,
                                           include_dirs=(), extra_flags=tuple(extra_flags) + LEARNING_FLAGS,
                                           cache_dir=cache, force=force)
    return CompiledModel(
        name=plan.name, states=plan.states, params=plan.params,
        param_defaults=dict(initial["defaults"]), spike_ports=plan.spike_ports,
        current_ports=plan.current_ports, n_coeff=plan.n_coeff, spiking=plan.spiking,
        propagator_states=plan.propagator_states,
        initial_state=_initial_state_function(initial["states"], plan.params),
        library_path=result.library_path, source_path=result.source_dir / "model.cpp",
        library=library, summary=summary, observables=plan.observables, archived=plan.archived,
        learning_ports={r.port: (r.eps_size, len(r.traces)) for r in plan.replays},
        block_entries={r.port: r.blocks.entries if r.blocks else 0 for r in plan.replays},
        presynaptic={r.port: (r.presynaptic, r.presynaptic_parameters) for r in plan.replays},
        regularisation_per_interval=any(r.regularisation_per_interval for r in plan.replays),
        flush_interval=(_initial_state_function([("flush", initial["flush"])], plan.params)
                        if initial.get("flush") is not None else None),
        replay_cutoff=(_initial_state_function([("cutoff", initial["cutoff"])], plan.params)
                       if initial.get("cutoff") is not None else None),
    )


def _planned(source: str, file: str, cache: Path, force: bool,
             surrogate: str | None) -> tuple[KernelPlan, dict, str]:
    """The symbolic stages take seconds; their result is cached by the model text, the options and
    the compiler's own code, so an unchanged model reaches the (also cached) build in milliseconds."""
    key = hashlib.sha256("\0".join([ABI_VERSION, file, source, str(surrogate),
                                    _compiler_fingerprint()]).encode()).hexdigest()
    path = cache / "plans" / f"{key[:32]}.pickle"
    if path.is_file() and not force:
        try:
            with path.open("rb") as fh:
                return pickle.load(fh)
        except Exception:       # a damaged cache entry is recomputed, never trusted
            pass
    checked = check_source(source, file, surrogate)
    ir = checked.ir
    initial = {"defaults": {p.name: p.default for p in ir.parameters},
               "states": [(s.name, s.initial) for s in ir.states],
               "flush": ir.learning.flush if ir.learning is not None else None,
               "cutoff": ir.learning.cutoff if ir.learning is not None else None}
    value = (plan_kernel(checked.solution), initial, checked.summary)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        pickle.dump(value, fh)
    os.replace(tmp, path)
    return value


# The stages whose code decides what a model becomes; a change to any of them invalidates the plans.
_PIPELINE_FILES = ("compiler.py", "ir.py", "parse.py", "check.py", "plan.py", "plan_learning.py", "plan_blocks.py",
                   "report.py", "solve/__init__.py",
                   "solve/propagators.py", "solve/graph.py", "solve/eligibility.py")


def _compiler_fingerprint() -> str:
    h = hashlib.sha256()
    files = [PACKAGE_DIR / f for f in _PIPELINE_FILES] + [resource_dir("grammar") / "eprop.lark"]
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _initial_state_function(states: list[tuple[str, sp.Expr]], params: tuple[str, ...]):
    symbols = [sp.Symbol(p, real=True) for p in params]
    functions = [(name, sp.lambdify(symbols, expr, modules="numpy")) for name, expr in states]

    def initial_state(values):
        args = [np.asarray(values[p], dtype=np.float64) for p in params]
        n = max((a.size for a in args), default=1)
        return {name: np.broadcast_to(np.asarray(f(*args), dtype=np.float64), (n,)).copy()
                for name, f in functions}

    return initial_state
