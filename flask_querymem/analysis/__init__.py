"""Records -> Report: what each query loaded, what the code used, and the fix.

A pipeline of small passes that never edit the records and build a new
``Report``: group executions (``grouping``), read class facts (``models``),
merge usage (``usage``), size (``sizing``), decide suggestions per source line
(``suggest``).
"""

from __future__ import annotations

import logging
import typing as t

from ..format import plural
from ..record import EntityRecord, ProfileRecord, QueryRecord
from ..report import EntityReport, Location, QueryReport, Report, Totals
from . import suggest
from .grouping import Group, group_queries
from .models import ClassInfo, class_info
from .sizing import (
    EntitySize,
    collection_bytes,
    entity_bytes,
    entity_size,
    merged_size,
    stream_held_bytes,
)
from .usage import Usage, flow_of, usage_of

logger = logging.getLogger("flask_querymem")

__all__ = ["analyse", "summary"]


def _size_key(ent: EntityRecord) -> tuple[int, ...]:
    """Everything ``entity_size`` reads of ``ent``: executions that share their
    samples (tracking's samplers) and count have one size."""
    return (
        id(ent.samples),
        id(ent.warmup_samples),
        id(ent.sample_cells),
        id(ent.sampler),
        ent.count,
    )


class _Sizes:
    """``entity_size`` per sample set and count, computed once.

    Executions of one statement from one place share their samples (tracking's
    samplers): a thousand lazy loads are a handful of distinct sizes, not a
    thousand. The key is everything ``entity_size`` reads; the lists are alive
    while the records are, so their ids are stable meanwhile.
    """

    def __init__(self) -> None:
        self._sizes: dict[tuple[int, ...], EntitySize] = {}

    def __call__(self, ent: EntityRecord) -> EntitySize:
        key = _size_key(ent)
        size = self._sizes.get(key)
        if size is None:
            size = self._sizes[key] = entity_size(ent)
        return size


def summary(rec: ProfileRecord) -> dict[str, int]:
    """The report's totals (queries, instances, estimated bytes) without the rest
    of the analysis: what a toolbar's one-line summary needs on every page."""
    instances = 0
    estimated = 0.0
    per_instance: dict[tuple[int, ...], float] = {}
    for q in rec.queries:
        for ent in q.entities.values():
            if ent.count:
                instances += ent.count
                key = _size_key(ent)
                size = per_instance.get(key)
                if size is None:
                    size = per_instance[key] = entity_bytes(ent)
                estimated += ent.count * size
    estimated += sum(collection_bytes(rec.queries).values())
    return {"queries": len(rec.queries), "instances": instances, "estimated_bytes": int(estimated)}


def _callers_key(q: QueryRecord) -> tuple[t.Any, ...]:
    loc = q.location or {}
    return tuple((c.get("file"), c.get("line")) for c in loc.get("callers") or ())


def analyse(rec: ProfileRecord) -> Report:
    """Build the report for one finished profile."""
    queries = rec.queries
    groups = group_queries(queries)

    infos: dict[type, ClassInfo | None] = {}

    def info_for(cls: type) -> ClassInfo | None:
        if cls not in infos:
            try:
                infos[cls] = class_info(cls)
            except Exception:
                logger.exception("flask-querymem: cannot inspect %r", cls)
                infos[cls] = None
        return infos[cls]

    sizes = _Sizes()

    def size_of(q: QueryRecord, cls: type) -> EntitySize:
        return sizes(q.entities[cls])

    # Reads made after a refresh (expired attributes, deferred columns) carry the
    # refreshing query's runid; count them for every query that loaded that class
    # too, so a suggestion never drops a column the code read later.
    refresh_reads: list[tuple[type, str, t.Any]] = []
    for q in queries:
        if q.kind == "column_load" or any(e.refreshed for e in q.entities.values()):
            refresh_reads.extend((k[0], k[1], code) for k, code in q.reads.items())

    # one decision per source line, over every execution of it
    by_line: dict[tuple[t.Any, ...], list[Group]] = {}
    for g in groups:
        by_line.setdefault(g.line_key, []).append(g)
    decisions: dict[tuple[t.Any, ...], tuple[suggest.Decision | None, str | None]] = {}
    line_usage: dict[tuple[t.Any, ...], tuple[ClassInfo | None, Usage | None]] = {}
    for line, line_groups in by_line.items():
        try:
            classes = {cls for g in line_groups for q in g.queries for cls, e in q.entities.items()}
            info = use = None
            if len(classes) == 1:
                cls = next(iter(classes))
                info = info_for(cls)
                if info is not None:
                    line_queries = [q for g in line_groups for q in g.queries]
                    use = usage_of(line_queries, cls, info, refresh_reads)
                    flow_of(use, line_queries)
            loaded: set[str] = set()
            for g in line_groups:
                for q in g.queries:
                    for e in q.entities.values():
                        loaded |= e.columns_loaded
            line_usage[line] = (info, use)
            decisions[line] = suggest.decide(line_groups, info, use, loaded)
        except Exception:
            logger.exception("flask-querymem: could not decide a suggestion for %s", line)
            decisions[line] = (None, None)

    collections = collection_bytes(queries)
    reports: list[QueryReport] = []
    totals = Totals(queries=len(queries), distinct_queries=len(groups))
    savings_by_line: dict[tuple[t.Any, ...], list[tuple[QueryReport, float, float]]] = {}
    for g in groups:
        entities: list[EntityReport] = []
        g_bytes = 0
        per_class: dict[type, list[tuple[int, EntitySize]]] = {}
        for q in g.queries:
            for cls, ent in q.entities.items():
                per_class.setdefault(cls, []).append((ent.count, size_of(q, cls)))
        for cls, parts in per_class.items():
            info = info_for(cls)
            if info is None:
                continue
            use = usage_of(g.queries, cls, info, refresh_reads)
            count = sum(n for n, _ in parts)
            est = int(sum(n * s.per_instance for n, s in parts))
            est += sum(collections.get((q.qid, cls), 0) for q in g.queries)
            g_bytes += est
            loaded = set().union(
                *(q.entities[cls].columns_loaded for q in g.queries if cls in q.entities)
            )
            needed: set[str] = set()
            for rel in use.relationships:
                needed |= info.relationship_columns.get(rel, set())
            entities.append(
                EntityReport(
                    model=info.name,
                    count=count,
                    columns_loaded=[k for k in info.column_keys if k in loaded],
                    columns_read=sorted(use.columns),
                    columns_written=sorted(use.written & set(info.column_keys)),
                    relationships_read=sorted(use.relationships),
                    estimated_bytes=est,
                    columns_needed=sorted(needed & set(info.column_keys) - use.columns),
                )
            )
        first = g.first
        loc = Location.from_dict(first.location) if first.location else None
        decision, note = decisions.get(g.line_key, (None, None))
        line_info, line_use = line_usage.get(g.line_key, (None, None))
        uses = (
            suggest.object_reasons(line_use, line_info)
            if line_info is not None and line_use is not None
            else []
        )
        report = QueryReport(
            index=g.indexes[0],
            sql=first.sql,
            location=loc,
            kind=first.kind or "other",
            duration_ms=round(sum(q.duration_ms for q in g.queries), 3),
            entities=entities,
            estimated_bytes=g_bytes,
            suggestion=None,
            statements=sum(q.statements for q in g.queries),
            note=note,
            executions=len(g.queries),
            example_indexes=list(g.indexes),
            sized=bool(entities) or first.shape in ("entity", "multi"),
            instance_uses=uses,
        )
        streams = [(q, q.yield_per) for q in g.queries if q.yield_per]
        if streams:
            # estimated_bytes stays the total streamed; held_bytes is the most
            # held at once (a yield_per stream keeps about two batches alive)
            report.streamed = True
            report.held_bytes = max(stream_held_bytes(q, yp or 0) for q, yp in streams)
        reports.append(report)
        if decision is not None:
            info, _ = line_usage[g.line_key]
            if info is not None and info.cls in per_class:
                parts = per_class[info.cls]
                count = sum(n for n, _ in parts)
                current, after = suggest.estimate(decision, count, merged_size(parts))
                savings_by_line.setdefault(g.line_key, []).append((report, current, after))
        totals.instances += sum(e.count for e in entities)
        totals.estimated_bytes += g_bytes

    for line, items in savings_by_line.items():
        decision, _ = decisions[line]
        info, _ = line_usage[line]
        assert decision is not None and info is not None
        saved = sum(cur - aft for _, cur, aft in items)
        if saved <= 0:
            if decision.kind == "load_only":
                note = "load_only() would cost more per instance than the unused columns hold" + (
                    f"; no column projection: {decision.why[0]}" if decision.why else ""
                )
            else:
                note = (
                    "a projection would not save memory here: the unused columns are "
                    "smaller than its own per-row cost"
                )
            for report, _, _ in items:
                report.note = note
            continue
        if saved < rec.min_suggest_bytes:
            for report, _, _ in items:
                report.note = (
                    f"a projection would save only ~{saved:,.0f} B, below the "
                    f"{rec.min_suggest_bytes:,} B threshold (QUERYMEM_MIN_SUGGEST_BYTES): "
                    "smaller than the estimate's error"
                )
            continue
        callers = len({_callers_key(q) for g in by_line[line] for q in g.queries})
        for report, cur, aft in items:
            group = next(g for g in by_line[line] if g.indexes[0] == report.index)
            try:
                report.suggestion = suggest.build(decision, info, group, cur, aft, callers)
                report.note = None
            except Exception:
                logger.exception("flask-querymem: could not build a suggestion")
                continue
            totals.estimated_savings_bytes += report.suggestion.estimated_savings_bytes

    errors = []
    for where, n in rec.failed_sites.items():
        errors.append(where if n <= 1 else f"{where} ({plural(n, 'time')})")
    return Report(queries=reports, totals=totals, errors=errors)
