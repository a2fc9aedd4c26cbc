"""Group the executions of one statement from one place, so that reports grow
with distinct statements, not with executions (5,000 lazy loads are one row)."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

from ..record import QueryRecord

#: Execution indexes kept per group as examples.
MAX_EXAMPLES = 5


@dataclass
class Group:
    key: tuple[t.Any, ...]
    first: QueryRecord
    queries: list[QueryRecord] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)

    @property
    def line_key(self) -> tuple[t.Any, ...]:
        """The source line (file, line) whose executions share one suggestion; a
        statement without a location is a line of its own."""
        loc = self.first.location
        return (str(loc["file"]), int(loc["line"])) if loc else self.key


def group_key(q: QueryRecord) -> tuple[t.Any, ...]:
    loc = q.location
    where = (loc["file"], loc["line"], loc["function"]) if loc else None
    return (q.kind, q.sql, where)


def group_queries(queries: t.Sequence[QueryRecord]) -> list[Group]:
    """Groups in the order of their first execution."""
    groups: dict[tuple[t.Any, ...], Group] = {}
    for index, q in enumerate(queries):
        key = group_key(q)
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(key, q)
        g.queries.append(q)
        if len(g.indexes) < MAX_EXAMPLES:
            g.indexes.append(index)
    return list(groups.values())
