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
    unverified: list[str] = field(default_factory=list)  # evidence we could not gather
    why: list[str] = field(default_factory=list)  # load_only: why not a projection


def _attrs(info: ClassInfo, keys: t.Iterable[str]) -> list[str]:
    return [f"{info.name}.{k}" for k in keys]


def _row_members() -> frozenset[str]:
    try:
        from sqlalchemy.engine.row import Row

        return frozenset(n for n in dir(Row) if not n.startswith("__"))
    except Exception:  # pragma: no cover
        return frozenset({"count", "index", "t", "tuple", "_mapping", "_fields", "_asdict"})


#: Attribute names a Row answers itself (row.count is tuple.count): a column of
#: that name cannot be read from a Row the way it was read from the instance.
ROW_MEMBERS = _row_members()


def object_reasons(use: Usage, info: ClassInfo) -> list[str]:
    """Why the instances are needed as objects (a Row cannot stand in), or []."""
    reasons: list[str] = []
    cols = set(info.column_keys)
    for what in sorted(use.object_uses):
        reasons.append(
            f"{what}"
            if " " in what
            else f"used .{what}"
            if not what.startswith("__")
            else f"{what} of the instance"
        )
    for name in sorted(use.static_names - cols):
        if name in info.relationship_keys:
            reasons.append(f"relationship .{name}")
        elif name in info.proxied:
            reasons.append(f"reads .{name} (not a column)")
        else:
            reasons.append(f"uses .{name}")
    for name in sorted(use.static_stores - cols):
        reasons.append(f"sets .{name}")
    reasons.extend(f"the instance is {e}" for e in use.escapes)
    if use.relationships:
        reasons.append("reads relationships " + ", ".join(sorted(use.relationships)))
    if use.written or use.static_stores & cols:
        reasons.append("writes " + ", ".join(sorted(use.written | (use.static_stores & cols))))
    if use.other:
        reasons.append("reads " + ", ".join(sorted(use.other)))
    if use.internal:
        reasons.append("its columns are read inside the model or by SQLAlchemy")
    if use.rows:
        reasons.append("the result rows hold the entity (execute(select(...)))")
    return reasons


def decide(
    groups: t.Sequence[Group], info: ClassInfo | None, use: Usage | None, loaded: set[str]
) -> tuple[Decision | None, str | None]:
    """The line-level decision, or a note saying why there is none.

    A column projection is made only from positive evidence: every use of the
    instances that was observed is a column read, and every consumer could be
    analysed. Anything else keeps the instances (``load_only``), which only
    changes when columns are loaded, never what the code gets back; and when
    even that cannot be shown to be harmless, there is no suggestion.
    """
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
    features: set[str] = set()
    for q in firsts:
        features |= q.features
    entities = {q.entity_cls for q in firsts if q.entity_cls is not None}
    if entities and entities != {info.cls}:
        return None, (
            "the query selects a polymorphic base and these rows are a subclass: a projection "
            "naming the subclass would filter out the other classes"
        )
    if "aliased" in features:
        return None, (
            "the query selects an alias, subquery or CTE of the model: load_only() would have "
            "to name that alias; no suggestion"
        )
    if "distinct" in features:
        return None, (
            "the query uses DISTINCT: fewer columns change which rows are distinct (and on "
            "PostgreSQL ORDER BY must name selected columns); no suggestion"
        )
    if not use.anything and not use.static_names:
        return None, "no mapped attribute of these instances was read while profiling"
    style = next(iter(styles))
    entries = {q.entry for q in firsts}
    has_options = any(q.has_loader_options for q in firsts)
    order = [k for k in info.column_keys if k not in info.expression_keys]
    cols = set(order)
    read_cols = use.columns | (use.static_names & cols)
    dict_uses = [e for e in use.escapes if "vars()" in e or "__dict__" in e] + [
        n for n in use.static_names if n == "__dict__"
    ]
    if dict_uses:
        return None, (
            "the code reads the instance's __dict__ (vars()): a projection or load_only() "
            "would change what it finds there; no suggestion"
        )
    reasons = object_reasons(use, info)
    shape_reasons: list[str] = []
    if shapes != {"entity"}:
        shape_reasons.append("several entities per row")
    if style == "scalars":
        shape_reasons.append("a helper needs entities back (.scalars())")
    if has_options and style != "query":
        shape_reasons.append("loader options cannot stay on a column select()")
    if style == "query" and "joins" in features and not use.dedup_only:
        shape_reasons.append(
            "the legacy Query joins other tables: it returns each entity once, a projection "
            "would return a row per joined row"
        )
    if any(q.changed_in_place for g in groups for q in g.queries):
        shape_reasons.append(
            "the instances got new values after loading (reloaded after a commit, or a bulk "
            "UPDATE): a Row keeps the values it was loaded with"
        )
    if "expression" in features:
        shape_reasons.append("with_expression() values are not columns")
    if entries & {"scalar", "scalar_one", "scalar_one_or_none"} and style == "query":
        shape_reasons.append("Query.scalar() returns the first column of a projection")
    kept = [k for k in order if k in read_cols]
    if set(kept) & ROW_MEMBERS:
        shape_reasons.append(
            "a column is named like a Row member ("
            + ", ".join(sorted(set(kept) & ROW_MEMBERS))
            + ")"
        )
    unverified = list(use.unanalysed)
    if not reasons and not shape_reasons and not use.unanalysed:
        if loaded & cols <= read_cols:
            return None, "every loaded column was read"
        unverified += [f"the result is {e}" for e in use.list_escapes]
        return Decision("columns", kept, style=style, unverified=unverified), None
    # load_only: keep everything the code touched, plus what loading needs.
    needed = (
        read_cols
        | (use.written & cols)
        | (use.static_stores & cols)
        | set(info.pk_keys)
        | set(info.extra_keys)
    )
    for rel in use.relationships | (use.static_names & info.relationship_keys):
        needed |= info.relationship_columns.get(rel, set())
    for name in use.other | (use.static_names & set(info.proxied)) | use.object_uses:
        needed |= info.proxied.get(name, set())
    if "<unmapped>" in needed:
        return None, (
            "a relationship the code read needs a column this class does not map: no suggestion"
        )
    unknown_other = use.other - {"<deleted>"} - set(info.proxied)
    if unknown_other:
        return None, (
            "the code used attributes that a column list cannot express "
            f"({', '.join(sorted(unknown_other))}): no suggestion"
        )
    deferred = [k for k in order if k in loaded and k not in needed]
    if not deferred:
        return None, "every loaded column is needed by the code" + (
            f" (the instances are needed as objects: {reasons[0]})" if reasons else ""
        )
    keys = [k for k in order if k in needed]
    why = (reasons + shape_reasons)[:3]
    return Decision("load_only", keys, deferred, style=style, unverified=unverified, why=why), None


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
        if decision.why:
            hint = "keeps the instances; a column projection would not do: " + "; ".join(
                decision.why
            )
    before = after_line = None
    loc = group.first.location
    if loc and not str(loc.get("function", "")).startswith("template"):
        before = source_line(str(loc["file"]), int(loc["line"]))
        if before is not None:
            derived = derive_after(
                before,
                kind=decision.kind,
                style=decision.style,
                code=code,
                model=info.name,
                names=names,
            )
            if derived is None:
                before = None
            else:
                after_line, code = derived
    return Suggestion(
        kind=decision.kind,
        columns=_attrs(info, decision.keys),
        code=code,
        estimated_bytes=int(after),
        estimated_savings_bytes=int(current) - int(after),
        hint=hint,
        imports=imports,
        source_before=before,
        source_after=after_line,
        callers=callers,
        evidence="incomplete" if decision.unverified else "complete",
        unverified=list(decision.unverified),
        model_path=f"{info.cls.__module__}:{info.cls.__qualname__}",
        keys=list(decision.keys),
    )
