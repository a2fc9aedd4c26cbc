"""Records -> Report: what each query loaded, what the code used, and the fix.

Never edits the records; builds a new ``Report``. The rules that keep a
suggestion *correct* (applying it must not break the code that ran):

* ``columns`` (``with_entities(...)`` / ``select(...)``) only for a query that
  loaded one entity class and whose instances were only read, column by
  column, from outside the model: no reads inside the model's own methods or
  properties (or through SQLAlchemy descriptors such as synonyms and hybrids),
  no writes or deletes, no relationship reads. A ``Row`` carries the selected
  columns under the same attribute names, so ``e.email_address`` keeps working.
* otherwise ``load_only`` with every column read or written, the columns each
  relationship read needs (``relationship.local_columns``: the foreign key of a
  many-to-one, the referenced key of a one-to-many), the primary key and the
  polymorphic discriminator; only when it saves memory, since ``load_only``
  adds a per-instance ``callables`` dict.
* nothing when nothing was read (we cannot prove what the code needed), when
  everything loaded was read, or for anything but the user's own SELECT.
"""

from __future__ import annotations

import logging
import os
import typing as t
import weakref
from types import CodeType

import sqlalchemy as sa

from .memory import deferred_overhead_bytes, filled_collection_bytes, row_bytes
from .record import EntityRecord, ProfileRecord, QueryRecord
from .report import EntityReport, Location, QueryReport, Report, Suggestion, Totals

logger = logging.getLogger("flask_querymem")

_SA_DIR = os.path.dirname(sa.__file__)

SELECT_HINT = (
    "run it with session.execute(...): its rows keep the attribute names (row.name); "
    "session.scalars(...) would return only the first column"
)


def _nested_codes(code: CodeType, out: set[CodeType]) -> None:
    out.add(code)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            _nested_codes(const, out)


def _functions_of(value: t.Any) -> t.Iterator[t.Any]:
    """Functions behind a class attribute: plain, static/class methods, property
    and hybrid accessors, cached properties."""
    if hasattr(value, "__code__"):
        yield value
    for name in (
        "__func__",
        "fget",
        "fset",
        "fdel",
        "func",
        "expr",
        "custom_comparator",
        "update_expr",
    ):
        inner = getattr(value, name, None) if not isinstance(value, type) else None
        if inner is not None and hasattr(inner, "__code__"):
            yield inner


def model_code_objects(cls: type) -> frozenset[CodeType]:
    """Code objects of the model's own methods and properties (its MRO), nested
    functions and comprehensions included: a read from any of them is a read
    from inside the model."""
    codes: set[CodeType] = set()
    for klass in cls.__mro__:
        if klass is object or klass.__module__.startswith("sqlalchemy"):
            continue
        for value in list(vars(klass).values()):
            try:
                for fn in _functions_of(value):
                    _nested_codes(fn.__code__, codes)
            except Exception:  # an exotic descriptor: ignore it
                continue
    return frozenset(codes)


class _ClassInfo:
    """What analysis needs to know about a mapped class (via ``sqlalchemy.inspect``)."""

    def __init__(self, cls: type) -> None:
        mapper: sa.orm.Mapper[t.Any] = sa.inspect(cls)
        self.name = cls.__name__
        self.column_keys = [p.key for p in mapper.column_attrs]
        self.relationship_keys = set(mapper.relationships.keys())
        self.pk_keys = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
        self.extra_keys: list[str] = []
        for col in (mapper.polymorphic_on, mapper.version_id_col):
            if col is not None:
                try:
                    self.extra_keys.append(mapper.get_property_by_column(col).key)
                except Exception:  # a SQL expression discriminator: not a column attribute
                    pass
        self.relationship_columns: dict[str, set[str]] = {}
        for rel in mapper.relationships:
            keys = set()
            for col in rel.local_columns:
                try:
                    keys.add(mapper.get_property_by_column(col).key)
                except Exception:  # column not mapped on this class: load_only can't help
                    keys.add("<unmapped>")
            self.relationship_columns[rel.key] = keys
        self.codes = model_code_objects(cls)


# Walking a model's classes for code objects costs ~1.5 ms: do it once per class
# (weakly keyed: classes made and dropped at runtime, as in tests, are not kept).
_class_infos: weakref.WeakKeyDictionary[type, _ClassInfo] = weakref.WeakKeyDictionary()


def _class_info(cls: type) -> _ClassInfo:
    info = _class_infos.get(cls)
    if info is None:
        info = _class_infos[cls] = _ClassInfo(cls)
    return info


class _Usage:
    def __init__(self) -> None:
        self.columns: set[str] = set()
        self.relationships: set[str] = set()
        self.other: set[str] = set()
        self.written: set[str] = set()
        self.internal = False


def _usage(
    q: QueryRecord, cls: type, info: _ClassInfo, extra_reads: t.Iterable[tuple[type, str, t.Any]]
) -> _Usage:
    u = _Usage()
    cols = set(info.column_keys)
    own = [(rcls, key, code) for (rcls, key, _), code in q.reads.items()]
    for rcls, key, code in [*own, *extra_reads]:
        if rcls is not cls:
            continue
        if key in cols:
            u.columns.add(key)
        elif key in info.relationship_keys:
            u.relationships.add(key)
        else:
            u.other.add(key)
        if code is None or code in info.codes or code.co_filename.startswith(_SA_DIR):
            u.internal = True
    for wcls, key in q.writes:
        if wcls is cls:
            u.written.add(key)
    return u


def _mean(values: t.Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else 0.0


def _entity_bytes(ent: EntityRecord) -> tuple[float, dict[str, float]]:
    """Mean bytes per instance and mean bytes per column value."""
    samples = ent.usable_samples()
    if not samples:
        return 0.0, {}
    per_instance = _mean(s.overhead + sum(s.values.values()) for s in samples)
    keys = set().union(*(s.values for s in samples))
    per_value = {k: _mean(s.values.get(k, 0) for s in samples) for k in keys}
    return per_instance, per_value


def _attr_list(name: str, keys: t.Iterable[str]) -> list[str]:
    return [f"{name}.{k}" for k in keys]


def _suggest(
    q: QueryRecord, infos: dict[type, _ClassInfo], usages: dict[type, _Usage]
) -> tuple[Suggestion | None, str | None]:
    if (
        q.kind != "select"
        or q.style not in ("query", "select", "scalars")
        or q.shape not in ("entity", "multi")
    ):
        return None, None
    loaded = [e for e in q.entities.values() if e.count > 0]
    if len(loaded) != 1 or len(q.entities) != 1:
        # eager-loaded or polymorphic extra classes: a projection would change
        # what the options apply to; say nothing rather than something wrong.
        return None, None
    ent = loaded[0]
    info, use = infos[ent.cls], usages[ent.cls]
    if not (use.columns or use.relationships or use.other or use.written):
        return None, "no mapped attribute of these instances was read while profiling"
    loaded_cols = ent.columns_loaded
    per_instance, per_value = _entity_bytes(ent)
    current = per_instance * ent.count
    needs_instances = (
        q.shape != "entity"
        or q.style == "scalars"
        or (q.has_loader_options and q.style != "query")
        or use.internal
        or use.written
        or use.relationships
        or use.other
    )
    order = info.column_keys
    if not needs_instances:
        if loaded_cols <= use.columns:
            return None, None
        cols = [k for k in order if k in use.columns]
        projected = ent.count * row_bytes(len(cols), sum(per_value.get(k, 0.0) for k in cols))
        if projected >= current:
            return None, None
        names = ", ".join(_attr_list(info.name, cols))
        if q.style == "query":
            code, hint = f".with_entities({names})", None
        else:
            code, hint = f"select({names})", SELECT_HINT
        return Suggestion(
            "columns",
            _attr_list(info.name, cols),
            code,
            int(projected),
            int(current - projected),
            hint,
        ), None
    # load_only: keep everything the code touched, plus what loading needs.
    needed = (
        set(use.columns) | (use.written & set(order)) | set(info.pk_keys) | set(info.extra_keys)
    )
    for rel in use.relationships:
        needed |= info.relationship_columns.get(rel, set())
    if "<unmapped>" in needed or use.other - {"<deleted>"}:
        return None, None  # something we can't express as columns: say nothing
    deferred = [k for k in loaded_cols if k not in needed]
    if not deferred:
        return None, None
    per_after = (
        per_instance
        - sum(per_value.get(k, 0.0) for k in deferred)
        + deferred_overhead_bytes(len(deferred))
    )
    projected = per_after * ent.count
    if projected >= current:
        return (
            None,
            "load_only would not save memory here: the unused columns are smaller than "
            "its per-instance cost",
        )
    cols = [k for k in order if k in needed]
    names = ", ".join(_attr_list(info.name, cols))
    return (
        Suggestion(
            "load_only",
            _attr_list(info.name, cols),
            f".options(load_only({names}))",
            int(projected),
            int(current - projected),
        ),
        None,
    )


def _collection_bytes(rec: ProfileRecord) -> dict[tuple[int, type], int]:
    """Memory of collections that selectin/subquery loads filled on earlier
    instances, keyed by (parent query index, parent class).

    Those collections are created after the parents' ``load`` event, so the
    parents' samples cannot see them; the child queries (one per batch of
    parents) tell how many members went where.
    """
    members: dict[tuple[int, type, str], int] = {}
    for q in rec.queries:
        if q.parent_index is None or q.kind != "relationship_load":
            continue
        parent = rec.queries[q.parent_index]
        children = [e for e in q.entities.values() if e.count]
        for pcls, pent in parent.entities.items():
            if not pent.count:
                continue
            pmapper: sa.orm.Mapper[t.Any] = sa.inspect(pcls)
            for rel in pmapper.relationships:
                if rel.uselist and any(issubclass(c.cls, rel.mapper.class_) for c in children):
                    key = (parent.index, pcls, rel.key)
                    members[key] = members.get(key, 0) + sum(c.count for c in children)
                    break
    out: dict[tuple[int, type], int] = {}
    for (index, pcls, _key), n_members in members.items():
        n_parents = rec.queries[index].entities[pcls].count
        out[(index, pcls)] = out.get((index, pcls), 0) + n_parents * filled_collection_bytes(
            n_members / n_parents
        )
    return out


def analyse(rec: ProfileRecord) -> Report:
    """Build the report for one finished profile."""
    infos: dict[type, _ClassInfo] = {}

    def info_for(cls: type) -> _ClassInfo:
        if cls not in infos:
            infos[cls] = _class_info(cls)
        return infos[cls]

    # Reads made after a refresh (expired attributes, deferred columns) carry the
    # refreshing query's runid; count them for every query that loaded that class
    # too, so a suggestion never drops a column the code read later.
    refresh_reads: list[tuple[type, str, t.Any]] = []
    for q in rec.queries:
        if any(e.refreshed for e in q.entities.values()):
            refresh_reads.extend((rcls, key, code) for (rcls, key, _), code in q.reads.items())

    collections = _collection_bytes(rec)
    queries: list[QueryReport] = []
    totals = Totals(queries=len(rec.queries))
    for q in rec.queries:
        entities: list[EntityReport] = []
        usages: dict[type, _Usage] = {}
        q_bytes = 0
        for cls, ent in q.entities.items():
            try:
                info = info_for(cls)
            except Exception:
                logger.exception("flask-querymem: cannot inspect %r", cls)
                continue
            use = usages[cls] = _usage(q, cls, info, refresh_reads)
            per_instance, _ = _entity_bytes(ent)
            est = int(per_instance * ent.count) + collections.get((q.index, cls), 0)
            q_bytes += est
            entities.append(
                EntityReport(
                    model=info.name,
                    count=ent.count,
                    columns_loaded=[k for k in info.column_keys if k in ent.columns_loaded],
                    columns_read=sorted(use.columns),
                    columns_written=sorted(use.written & set(info.column_keys)),
                    relationships_read=sorted(use.relationships),
                    estimated_bytes=est,
                )
            )
        try:
            suggestion, note = _suggest(q, infos, usages)
        except Exception:
            logger.exception("flask-querymem: could not build a suggestion for query %d", q.index)
            suggestion, note = None, None
        loc = Location(**q.location) if q.location else None
        queries.append(
            QueryReport(
                index=q.index,
                sql=q.sql,
                location=loc,
                kind=q.kind or "other",
                duration_ms=round(q.duration_ms, 3),
                entities=entities,
                estimated_bytes=q_bytes,
                suggestion=suggestion,
                statements=q.statements,
                note=note,
            )
        )
        totals.instances += sum(e.count for e in entities)
        totals.estimated_bytes += q_bytes
        if suggestion is not None:
            totals.estimated_savings_bytes += suggestion.estimated_savings_bytes
    return Report(queries=queries, totals=totals, errors=list(rec.errors))
