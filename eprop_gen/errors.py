"""One error type for everything a user can get wrong, with positions that point into *their* file.

Format (what compilers have taught users to read):

    models/lif.eprop:14:31: error[E104]: undefined name 'tau_sin'
       v' = -(v - v_rest)/tau_m + I/tau_sin
                                    ^^^^^^^ did you mean 'tau_syn'?
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True, order=True)
class Span:
    """A place in a source file; line and column are 1-based, end_col is exclusive."""
    line: int
    col: int
    end_col: int
    file: str = "<string>"


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span | None
    hint: str = ""

    def render(self, source_lines: Sequence[str] | None) -> str:
        if self.span is None:
            head = f"error[{self.code}]: {self.message}"
            return head + (f"\n  hint: {self.hint}" if self.hint else "")
        s = self.span
        head = f"{s.file}:{s.line}:{s.col}: error[{self.code}]: {self.message}"
        if not source_lines or not (1 <= s.line <= len(source_lines)):
            return head + (f"\n  hint: {self.hint}" if self.hint else "")
        raw = source_lines[s.line - 1].rstrip("\n")
        text = raw.expandtabs(4)
        # columns count characters of the raw line; the caret goes under the tab-expanded text
        start = len(raw[:s.col - 1].expandtabs(4))
        end = len(raw[:max(s.end_col, s.col + 1) - 1].expandtabs(4))
        width = max(1, min(end, len(text) + 1) - start)
        caret = " " * start + "^" * width
        tail = f" {self.hint}" if self.hint else ""
        return f"{head}\n    {text}\n    {caret}{tail}"


class EpropGenError(Exception):
    """Base of every error eprop-gen reports to a user (the CLI prints it and exits 1)."""


class ModelError(EpropGenError):
    """A model file is wrong. Carries every diagnostic found, sorted by position."""

    def __init__(self, diagnostics: Iterable[Diagnostic], source: str | None = None):
        self.diagnostics = tuple(sorted(diagnostics, key=_position))
        self.source_lines = source.splitlines() if source is not None else None
        super().__init__(self.render())

    def render(self) -> str:
        parts = [d.render(self.source_lines) for d in self.diagnostics]
        n = len(parts)
        if n > 1:
            parts.append(f"{n} errors")
        return "\n".join(parts)


class BuildError(EpropGenError):
    """The system compiler rejected generated code, or no compiler could be run."""


def _position(d: Diagnostic) -> tuple:
    return (0, "", 0, 0) if d.span is None else (1, d.span.file, d.span.line, d.span.col)


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A hint naming the closest known name, or '' when nothing is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""
