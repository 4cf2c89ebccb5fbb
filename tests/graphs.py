"""One cycle finder for the tests that prove a graph has none (imports, template resources)."""

from __future__ import annotations

from collections.abc import Collection, Mapping


def find_cycle(edges: Mapping[str, Collection[str]]) -> list[str] | None:
    """The first cycle of a depth-first walk in sorted order (``[a, …, a]``), or None.

    Every target must also be a node of ``edges``.
    """
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None
