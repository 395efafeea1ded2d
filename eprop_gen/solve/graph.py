"""Reachability in the dependency graph between states (which state drives which)."""
from __future__ import annotations

from typing import Hashable, Iterable, Mapping


def reachable(edges: Mapping[Hashable, Iterable[Hashable]], starts: Iterable[Hashable]) -> set:
    """Every node reachable from `starts` along `edges`, the starts included."""
    seen = set(starts)
    todo = list(seen)
    while todo:
        for k in edges[todo.pop()]:
            if k not in seen:
                seen.add(k)
                todo.append(k)
    return seen
