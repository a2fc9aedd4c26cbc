"""Suggestions: a projection for the queries of one source line, made only from
positive evidence that it keeps the code working.

A suggestion belongs to the *source line*, not to one execution: a helper that
runs a query for several views is one line, and a projection there must suit
every caller seen. So the decision is taken once per line, over the merged
usage of every execution of it, and each group at that line shows it with its
own estimated numbers.

Rules (see the README, "When is a suggestion made?"):

* ``columns`` (``with_entities(...)`` / ``select(...)``) only for a line whose
  queries loaded one entity class and whose instances were only read, column
  by column, from outside the model: no reads inside the model's own methods
  or properties (or through SQLAlchemy descriptors such as synonyms and
  hybrids), no writes or deletes, no relationship reads. A ``Row`` carries the
  selected columns under the same attribute names, so ``e.email_address``
  keeps working.
* otherwise ``load_only`` with every column read or written, the columns each
  relationship read needs (``relationship.local_columns``), the primary key
  and the polymorphic discriminator; only when it saves memory.
* nothing when nothing was read, when everything loaded was used, when the
  saving is below ``min_suggest_bytes``, or for anything but the user's own
  SELECT; and a note that says why.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

from ..memory import deferred_overhead_bytes, row_bytes
from ..report import Suggestion
from .grouping import Group
from .models import ClassInfo
from .sizing import EntitySize
from .source import derive_after, source_line
from .usage import Usage

SELECT_HINT = (
    "run it with session.execute(...): its rows keep the attribute names (row.name); "
    "session.scalars(...) would return only the first column"
)
IMPORT_LOAD_ONLY = "from sqlalchemy.orm import load_only"
IMPORT_SELECT = "from sqlalchemy import select"


@dataclass
class Decision:
    """What to suggest for a source line (numbers come per group)."""

    kind: str  # "columns" | "load_only"
    keys: list[str]  # attribute keys kept, in mapper order
    deferred: list[str] = field(default_factory=list)  # load_only: keys left out
    style: str = "query"


def _attrs(info: ClassInfo, keys: t.Iterable[str]) -> list[str]:
    return [f"{info.name}.{k}" for k in keys]


def decide(
    groups: t.Sequence[Group], info: ClassInfo | None, use: Usage | None, loaded: set[str]
) -> tuple[Decision | None, str | None]:
    """The line-level decision, or a note saying why there is none."""
    # Statements at this line that load no entities (the count query of a
    # paginate() call) are left as they are: the projection is about the others.
    firsts = [g.first for g in groups if g.first.shape in ("entity", "multi")] or [
        g.first for g in groups
    ]
    if any(q.kind != "select" for q in firsts):
        return None, None
    styles = {q.style for q in firsts}
    shapes = {q.shape for q in firsts}
    if styles == {"get"}:
        return None, (
            "loaded by primary key (Session.get): select(...) is no drop-in replacement "
            "for it, and one row costs little"
        )
    if not shapes <= {"entity", "multi"}:
        return None, None  # column and Core results: nothing to project
    if len(styles) != 1 or not styles <= {"query", "select", "scalars"}:
        return None, "this line runs queries of different forms: no single fix fits them all"
    classes = {cls for g in groups for q in g.queries for cls, e in q.entities.items() if e.count}
    if not classes:
        return None, "no rows were loaded while profiling"
    if len(classes) != 1 or info is None or use is None:
        return None, (
            "this line loads more than one class (several entities, eager loads or "
            "polymorphic subclasses): no suggestion, a projection would change what they load"
        )
    if not use.anything:
        return None, "no mapped attribute of these instances was read while profiling"
    style = next(iter(styles))
    has_options = any(q.has_loader_options for q in firsts)
    needs_instances = (
        shapes != {"entity"}
        or style == "scalars"
        or (has_options and style != "query")
        or use.internal
        or bool(use.written)
        or bool(use.relationships)
        or bool(use.other)
    )
    order = info.column_keys
    if not needs_instances:
        if loaded <= use.columns:
            return None, "every loaded column was read"
        return Decision("columns", [k for k in order if k in use.columns], style=style), None
    needed = (
        set(use.columns) | (use.written & set(order)) | set(info.pk_keys) | set(info.extra_keys)
    )
    for rel in use.relationships:
        needed |= info.relationship_columns.get(rel, set())
    if "<unmapped>" in needed or use.other - {"<deleted>"}:
        return None, (
            "the code used attributes that a column list cannot express "
            f"({', '.join(sorted(use.other - {'<deleted>'})) or 'a relationship'}): no suggestion"
        )
    deferred = [k for k in order if k in loaded and k not in needed]
    if not deferred:
        return None, "every loaded column is needed by the code"
    keys = [k for k in order if k in needed]
    return Decision("load_only", keys, deferred, style=style), None


def estimate(decision: Decision, count: int, size: EntitySize) -> tuple[float, float]:
    """(current bytes, bytes after the suggestion) for ``count`` instances."""
    current = size.per_instance * count
    if decision.kind == "columns":
        after = count * row_bytes(
            len(decision.keys), sum(size.per_value.get(k, 0.0) for k in decision.keys)
        )
    else:
        after = count * (
            size.per_instance
            - sum(size.per_value.get(k, 0.0) for k in decision.deferred)
            + deferred_overhead_bytes(len(decision.deferred))
        )
    return current, after


def build(
    decision: Decision, info: ClassInfo, group: Group, current: float, after: float, callers: int
) -> Suggestion:
    names = ", ".join(_attrs(info, decision.keys))
    hint = None
    if decision.kind == "columns":
        if decision.style == "query":
            code, imports = f".with_entities({names})", []
        else:
            code, imports, hint = f"select({names})", [IMPORT_SELECT], SELECT_HINT
    else:
        code, imports = f".options(load_only({names}))", [IMPORT_LOAD_ONLY]
    before = after_line = None
    loc = group.first.location
    if loc and not str(loc.get("function", "")).startswith("template"):
        before = source_line(str(loc["file"]), int(loc["line"]))
        if before is not None:
            after_line = derive_after(
                before, kind=decision.kind, style=decision.style, code=code, model=info.name
            )
            if after_line is None:
                before = None
    return Suggestion(
        kind=decision.kind,
        columns=_attrs(info, decision.keys),
        code=code,
        estimated_bytes=int(after),
        estimated_savings_bytes=int(current - after),
        hint=hint,
        imports=imports,
        source_before=before,
        source_after=after_line,
        callers=callers,
        model_path=f"{info.cls.__module__}:{info.cls.__qualname__}",
        keys=list(decision.keys),
    )
