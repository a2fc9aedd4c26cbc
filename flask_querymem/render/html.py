"""HTML rendering of a report: a pure view model plus the package's own templates.

Why a view model: the toolbar panel, and later a history page, must render only
from the plain report dict (``Report.to_dict()``) and the extension's own
measurements, so that old reports can be re-rendered and nothing here touches
SQLAlchemy. Everything that needs deciding (grouping N+1 repeats, ordering,
which columns were wasted, what is highlighted) happens in small pure functions
that are unit-tested on dicts; the templates only print.

Why our own Jinja environment: Flask-DebugToolbar inserts ``content()`` unescaped,
so we render with an autoescaping environment we own, loading templates shipped
in ``flask_querymem/templates/querymem``. The toolbar's shared environment is
left alone (wrapping its loader per request leaks and ends in RecursionError).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import typing as t

import jinja2

__all__ = [
    "ColumnView",
    "EntityView",
    "PanelView",
    "QueryGroup",
    "SuggestionView",
    "build_panel_view",
    "format_bytes",
    "group_queries",
    "nav_subtitle",
    "render_message",
    "render_panel",
]

_KIB = 1024
_MIB = 1024 * 1024
_GIB = 1024 * 1024 * 1024


def format_bytes(value: int | float | None) -> str:
    """``1536`` -> ``"1.5 KiB"``: binary units with one decimal, as memory tools print."""
    if value is None:
        return "n/a"
    sign = "-" if value < 0 else ""
    n = abs(float(value))
    if n < _KIB:
        return f"{sign}{int(n)} B"
    if n < _MIB:
        return f"{sign}{n / _KIB:.1f} KiB"
    if n < _GIB:
        return f"{sign}{n / _MIB:.1f} MiB"
    return f"{sign}{n / _GIB:.1f} GiB"


def format_ms(value: float | None) -> str:
    """Milliseconds with a precision that keeps sub-millisecond queries readable."""
    if value is None:
        return "n/a"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


@dataclasses.dataclass(frozen=True)
class ColumnView:
    """One loaded column of an entity, and whether the code used it."""

    name: str
    read: bool
    written: bool

    @property
    def unused(self) -> bool:
        return not (self.read or self.written)


@dataclasses.dataclass(frozen=True)
class EntityView:
    """One model loaded by a query (summed over a group of repeated queries)."""

    model: str
    count: int
    columns: tuple[ColumnView, ...]
    relationships_read: tuple[str, ...]
    estimated_bytes: int

    @property
    def unused_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.unused)


@dataclasses.dataclass(frozen=True)
class SuggestionView:
    """The copy-pasteable projection for a query (savings summed over repeats)."""

    kind: str
    code: str
    columns: tuple[str, ...]
    estimated_bytes: int
    estimated_savings_bytes: int
    highlighted: bool
    hint: str | None = None


@dataclasses.dataclass(frozen=True)
class QueryGroup:
    """One table row: a query, or the ×N repeats of one query from one place."""

    indexes: tuple[int, ...]
    location: t.Mapping[str, t.Any] | None
    location_label: str
    location_title: str
    function: str
    kind: str
    sql: str
    duration_ms: float
    entities: tuple[EntityView, ...]
    estimated_bytes: int
    suggestion: SuggestionView | None
    note: str | None
    bar_percent: float

    @property
    def repeat(self) -> int:
        return len(self.indexes)

    @property
    def instances(self) -> int:
        return sum(e.count for e in self.entities)


@dataclasses.dataclass(frozen=True)
class PanelView:
    """Everything the panel template prints, already decided."""

    groups: tuple[QueryGroup, ...]
    query_count: int
    instance_count: int
    estimated_bytes: int
    estimated_savings_bytes: int
    biggest_win: QueryGroup | None
    track_reads: bool
    min_savings_bytes: int
    measurements: t.Mapping[str, t.Any]
    errors: tuple[str, ...] = ()


def _shorten(path: str, base_dir: str | None) -> str:
    """Path relative to ``base_dir`` when inside it; otherwise from ``site-packages``."""
    if not path:
        return "?"
    if base_dir:
        try:
            rel = os.path.relpath(path, base_dir)
        except ValueError:  # other drive on Windows
            rel = path
        if not rel.startswith(".."):
            return rel
    marker = "site-packages" + os.sep
    if marker in path:
        return path.split(marker, 1)[1]
    return path


def _location_key(location: t.Mapping[str, t.Any] | None) -> tuple[str, int, str] | None:
    if not location:
        return None
    return (
        str(location.get("file", "")),
        int(location.get("line", 0) or 0),
        str(location.get("function", "")),
    )


def _merge_entities(queries: t.Sequence[t.Mapping[str, t.Any]]) -> tuple[EntityView, ...]:
    """Sum entities per model across repeats; a column counts as used if any repeat used it."""
    order: list[str] = []
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    loaded: dict[str, list[str]] = {}
    read: dict[str, set[str]] = {}
    written: dict[str, set[str]] = {}
    rels: dict[str, list[str]] = {}
    for query in queries:
        for entity in query.get("entities") or ():
            model = str(entity.get("model", "?"))
            if model not in counts:
                order.append(model)
                counts[model] = 0
                sizes[model] = 0
                loaded[model] = []
                read[model] = set()
                written[model] = set()
                rels[model] = []
            counts[model] += int(entity.get("count", 0) or 0)
            sizes[model] += int(entity.get("estimated_bytes", 0) or 0)
            for col in entity.get("columns_loaded") or ():
                if col not in loaded[model]:
                    loaded[model].append(str(col))
            read[model].update(str(c) for c in entity.get("columns_read") or ())
            written[model].update(str(c) for c in entity.get("columns_written") or ())
            for rel in entity.get("relationships_read") or ():
                if rel not in rels[model]:
                    rels[model].append(str(rel))
    return tuple(
        EntityView(
            model=model,
            count=counts[model],
            columns=tuple(
                ColumnView(name=c, read=c in read[model], written=c in written[model])
                for c in loaded[model]
            ),
            relationships_read=tuple(rels[model]),
            estimated_bytes=sizes[model],
        )
        for model in order
    )


def _merge_suggestion(
    queries: t.Sequence[t.Mapping[str, t.Any]], min_savings_bytes: int
) -> SuggestionView | None:
    suggestions = [q["suggestion"] for q in queries if q.get("suggestion")]
    if not suggestions:
        return None
    first = suggestions[0]
    savings = sum(int(s.get("estimated_savings_bytes", 0) or 0) for s in suggestions)
    return SuggestionView(
        kind=str(first.get("kind", "")),
        code=str(first.get("code", "")),
        columns=tuple(str(c) for c in first.get("columns") or ()),
        estimated_bytes=sum(int(s.get("estimated_bytes", 0) or 0) for s in suggestions),
        estimated_savings_bytes=savings,
        highlighted=savings > 0 and savings >= min_savings_bytes,
        hint=str(first["hint"]) if first.get("hint") else None,
    )


def group_queries(
    queries: t.Sequence[t.Mapping[str, t.Any]],
    *,
    min_savings_bytes: int = 0,
    base_dir: str | None = None,
) -> list[QueryGroup]:
    """Group repeats (same location, kind and SQL: N+1 lazy loads) and sort heaviest first.

    A page that lazy-loads 500 relationships should show one row "×500" with the
    summed memory, not 500 rows. Queries without a location are grouped only
    with identical SQL of the same kind. Order: estimated bytes, then time, then
    first appearance, all descending except appearance.
    """
    buckets: dict[tuple[t.Any, ...], list[t.Mapping[str, t.Any]]] = {}
    for query in queries:
        key = (_location_key(query.get("location")), query.get("kind"), query.get("sql"))
        buckets.setdefault(key, []).append(query)

    raw: list[dict[str, t.Any]] = []
    for members in buckets.values():
        first = members[0]
        location = first.get("location") or None
        file = str(location.get("file", "")) if location else ""
        line = location.get("line") if location else None
        short = _shorten(file, base_dir) if location else "(unknown location)"
        raw.append(
            {
                "indexes": tuple(int(q.get("index", i)) for i, q in enumerate(members)),
                "location": location,
                "location_label": f"{short}:{line}" if location else short,
                "location_title": f"{file}:{line}" if location else "",
                "function": str(location.get("function", "")) if location else "",
                "kind": str(first.get("kind", "other")),
                "sql": str(first.get("sql", "")),
                "duration_ms": sum(float(q.get("duration_ms", 0.0) or 0.0) for q in members),
                "entities": _merge_entities(members),
                "estimated_bytes": sum(int(q.get("estimated_bytes", 0) or 0) for q in members),
                "suggestion": _merge_suggestion(members, min_savings_bytes),
                "note": next((str(q["note"]) for q in members if q.get("note")), None),
            }
        )
    raw.sort(key=lambda g: (-g["estimated_bytes"], -g["duration_ms"], min(g["indexes"])))
    heaviest = max((g["estimated_bytes"] for g in raw), default=0)
    return [
        QueryGroup(
            **g,
            bar_percent=round(100.0 * g["estimated_bytes"] / heaviest, 1) if heaviest else 0.0,
        )
        for g in raw
    ]


def build_panel_view(
    report: t.Mapping[str, t.Any],
    *,
    measurements: t.Mapping[str, t.Any] | None = None,
    min_savings_bytes: int = 0,
    track_reads: bool = True,
    base_dir: str | None = None,
) -> PanelView:
    """Turn ``Report.to_dict()`` plus the extension's measurements into a :class:`PanelView`."""
    queries = list(report.get("queries") or ())
    groups = group_queries(queries, min_savings_bytes=min_savings_bytes, base_dir=base_dir)
    totals = report.get("totals") or {}
    with_savings = [g for g in groups if g.suggestion and g.suggestion.estimated_savings_bytes > 0]
    biggest = max(
        with_savings,
        key=lambda g: g.suggestion.estimated_savings_bytes if g.suggestion else 0,
        default=None,
    )
    return PanelView(
        groups=tuple(groups),
        query_count=int(totals.get("queries", len(queries))),
        instance_count=int(totals.get("instances", sum(g.instances for g in groups))),
        estimated_bytes=int(totals.get("estimated_bytes", sum(g.estimated_bytes for g in groups))),
        estimated_savings_bytes=int(
            totals.get(
                "estimated_savings_bytes",
                sum(g.suggestion.estimated_savings_bytes for g in with_savings if g.suggestion),
            )
        ),
        biggest_win=biggest,
        track_reads=track_reads,
        min_savings_bytes=min_savings_bytes,
        measurements=dict(measurements or {}),
        errors=tuple(str(e) for e in report.get("errors") or ()),
    )


def nav_subtitle(report: t.Mapping[str, t.Any] | None) -> str:
    """The toolbar's one-line summary: ``"12 queries · 230.0 MiB · 200.0 MiB avoidable"``."""
    if report is None:
        return "no report"
    totals = report.get("totals") or {}
    count = int(totals.get("queries", len(report.get("queries") or ())))
    parts = [f"{count} {'query' if count == 1 else 'queries'}"]
    estimated = int(totals.get("estimated_bytes", 0) or 0)
    if estimated:
        parts.append(format_bytes(estimated))
    savings = int(totals.get("estimated_savings_bytes", 0) or 0)
    if savings:
        parts.append(f"{format_bytes(savings)} avoidable")
    return " · ".join(parts)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("flask_querymem", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["bytes"] = format_bytes
    env.filters["ms"] = format_ms
    env.filters["num"] = "{:,}".format
    return env


def render_panel(
    report: t.Mapping[str, t.Any],
    *,
    measurements: t.Mapping[str, t.Any] | None = None,
    min_savings_bytes: int = 0,
    track_reads: bool = True,
    base_dir: str | None = None,
) -> str:
    """Render the panel body for one request's report dict (escaped, self-contained HTML)."""
    view = build_panel_view(
        report,
        measurements=measurements,
        min_savings_bytes=min_savings_bytes,
        track_reads=track_reads,
        base_dir=base_dir,
    )
    return _environment().get_template("querymem/panel.html").render(view=view)


def render_message(title: str, detail: str, *, hint: str | None = None) -> str:
    """Render an explanation instead of an empty table (inactive, no report, error)."""
    return (
        _environment()
        .get_template("querymem/message.html")
        .render(title=title, detail=detail, hint=hint)
    )
