"""render: KernelPlan -> C++ source files, through the jinja2 templates in templates/cpp/."""
from __future__ import annotations

import dataclasses
import functools

import jinja2

from .paths import resource_dir
from .plan import KernelPlan

# Bump when the C interface between kernels and engine changes (it is part of every cache key).
ABI_VERSION = "eprop-gen-abi-4"
SUPPORT_FILES = ("eg_runtime.h", "eg_math.h")
LEARNING_FILES = ("eg_eprop.h", "eg_optimizer.h")


@functools.lru_cache(maxsize=None)
def _environment(target: str) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(resource_dir("templates") / target)),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)


def render_model(plan: KernelPlan) -> dict[str, str]:
    """file name -> text: the model's kernel and the headers it includes."""
    env = _environment("cpp")
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
    files = {"model.cpp": env.get_template("model.cpp.j2").render(**fields, abi=ABI_VERSION)}
    for replay in plan.replays:
        files[f"replay_{replay.port}.cpp"] = env.get_template("replay.cpp.j2").render(
            **dataclasses.asdict(replay), source_file=plan.source_file)
    for name in SUPPORT_FILES + (LEARNING_FILES if plan.replays else ()):
        files[name] = (resource_dir("templates") / "cpp" / name).read_text()
    return files
