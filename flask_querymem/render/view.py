"""The view model every renderer shares: a report dict in, typed rows out.

Built from the plain report dict (``Report.to_dict()``), never from SQLAlchemy
objects, so old reports (the history) can be re-rendered and the HTML panel
and the text report say the same things. Everything that needs deciding
(ordering, which columns were wasted, what is highlighted, what counts as the
biggest win, how a measurement is labelled) happens here in small pure
functions; templates and the text renderer only print.

Repeats: the engine reports one ``QueryReport`` per statement and place, with
``executions``. Reports from before that (one entry per execution) are grouped
here by (location, kind, SQL), summing ``executions``; on grouped reports every
key is already unique and the grouping changes nothing.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
import typing as t

__all__ = [
    "CallerView",
    "ColumnView",
    "EntityView",
    "MeasurementView",
    "PanelView",
    "QueryGroup",
    "SuggestionView",
    "VerificationView",
    "build_panel_view",
    "format_bytes",
    "format_ms",
    "group_queries",
    "measurement_rows",
    "plural",
    "verification_view",
]

_KIB = 1024
_MIB = 1024 * 1024
_GIB = 1024 * 1024 * 1024

#: Shown instead of a byte figure for a result whose memory was not estimated.
NOT_SIZED = "not sized"


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


def plural(count: int, singular: str, many: str | None = None) -> str:
    """``plural(1, "query", "queries")`` -> ``"1 query"``."""
    word = singular if count == 1 else (many or singular + "s")
    return f"{count:,} {word}"


def _int(value: t.Any, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def shorten_path(path: str, base_dir: str | None) -> str:
    """Relative to ``base_dir`` when given and inside it, or from ``site-packages``.

    Without ``base_dir`` the path is returned as it is (never relative to an
    implicit current directory).
    """
    if not path:
        return "?"
    if not base_dir:
        return path
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


# --------------------------------------------------------------------------- rows


@dataclasses.dataclass(frozen=True)
class ColumnView:
    """One loaded column of an entity, and whether the code used it.

    ``needed``: a foreign key a relationship read needs. Used, though the code
    never read it directly; a projection must keep it.
    """

    name: str
    read: bool
    written: bool
    needed: bool = False

    @property
    def unused(self) -> bool:
        return not (self.read or self.written or self.needed)

    @property
    def status(self) -> str:
        if self.written:
            return "written"
        if self.read:
            return "read"
        if self.needed:
            return "needed by a relationship read (foreign key)"
        return "loaded but never read"


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

    @property
    def used_count(self) -> int:
        return len(self.columns) - len(self.unused_columns)


@dataclasses.dataclass(frozen=True)
class VerificationView:
    """The result of re-running the request with the suggestion applied."""

    status: str  # verified | differs | error | skipped
    detail: str | None
    measured_savings_bytes: int | None

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    @property
    def failed(self) -> bool:
        return self.status in ("differs", "error")

    @property
    def label(self) -> str:
        """*verified (measured saving)*, *failed verification: why* or *unverified: why*."""
        if self.verified:
            text = "verified"
            if self.measured_savings_bytes is not None:
                text += f": measured saving {format_bytes(self.measured_savings_bytes)}"
            return text + (f" ({self.detail})" if self.detail else "")
        if self.failed:
            return "failed verification" + (f": {self.detail}" if self.detail else "")
        if self.status == "skipped":
            return "unverified: not replayed" + (f": {self.detail}" if self.detail else "")
        return f"verification {self.status}" + (f": {self.detail}" if self.detail else "")


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
    imports: tuple[str, ...] = ()
    source_before: str | None = None
    source_after: str | None = None
    callers: int = 1
    evidence: str = "complete"
    unverified: tuple[str, ...] = ()
    verification: VerificationView | None = None

    @property
    def offered(self) -> bool:
        """False when a re-run with the suggestion applied showed it is wrong."""
        return not (self.verification and self.verification.failed)

    @property
    def copy_text(self) -> str:
        """What the copy button copies: the imports the code needs, then the code."""
        return "\n".join((*self.imports, self.code))

    @property
    def unverified_label(self) -> str | None:
        if self.evidence == "complete" and not self.unverified:
            return None
        reasons = "; ".join(self.unverified) or "some uses of the instances could not be observed"
        return f"unverified: {reasons}"


@dataclasses.dataclass(frozen=True)
class CallerView:
    """An outer application frame of a query's location: "called from views.py:12 index"."""

    label: str
    title: str
    function: str

    @property
    def text(self) -> str:
        return f"{self.label} {self.function}".rstrip()


@dataclasses.dataclass(frozen=True)
class QueryGroup:
    """One table row: a statement from one place, with how many times it ran."""

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
    executions: int = 1
    sized: bool = True
    streamed: bool = False
    held_bytes: int | None = None
    callers: tuple[CallerView, ...] = ()
    context: str | None = None

    @property
    def repeat(self) -> int:
        return self.executions

    @property
    def instances(self) -> int:
        return sum(e.count for e in self.entities)

    @property
    def memory_label(self) -> str:
        """The estimate, or "not sized" (never "0 B" for a result that was not estimated)."""
        return format_bytes(self.estimated_bytes) if self.sized else NOT_SIZED

    @property
    def called_from(self) -> str | None:
        if not self.callers:
            return None
        return "called from " + ", from ".join(c.text for c in self.callers)


# --------------------------------------------------------------------------- grouping


def _location_key(location: t.Mapping[str, t.Any] | None) -> tuple[str, int, str] | None:
    if not location:
        return None
    return (
        str(location.get("file", "")),
        _int(location.get("line")),
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
    needed: dict[str, set[str]] = {}
    rels: dict[str, list[str]] = {}
    for query in queries:
        for entity in query.get("entities") or ():
            model = str(entity.get("model", "?"))
            if model not in counts:
                order.append(model)
                counts[model] = sizes[model] = 0
                loaded[model], rels[model] = [], []
                read[model], written[model], needed[model] = set(), set(), set()
            counts[model] += _int(entity.get("count"))
            sizes[model] += _int(entity.get("estimated_bytes"))
            for col in entity.get("columns_loaded") or ():
                if str(col) not in loaded[model]:
                    loaded[model].append(str(col))
            read[model].update(str(c) for c in entity.get("columns_read") or ())
            written[model].update(str(c) for c in entity.get("columns_written") or ())
            needed[model].update(str(c) for c in entity.get("columns_needed") or ())
            for rel in entity.get("relationships_read") or ():
                if str(rel) not in rels[model]:
                    rels[model].append(str(rel))
    return tuple(
        EntityView(
            model=model,
            count=counts[model],
            columns=tuple(
                ColumnView(
                    name=c,
                    read=c in read[model],
                    written=c in written[model],
                    needed=c in needed[model],
                )
                for c in loaded[model]
            ),
            relationships_read=tuple(rels[model]),
            estimated_bytes=sizes[model],
        )
        for model in order
    )


def verification_view(data: t.Mapping[str, t.Any] | None) -> VerificationView | None:
    """A ``suggestion.verification`` dict as a view (None when there is none)."""
    return _verification(data)


def _verification(data: t.Mapping[str, t.Any] | None) -> VerificationView | None:
    if not data or not data.get("status"):
        return None
    before, after = data.get("measured_bytes_before"), data.get("measured_bytes_after")
    saving = _int(before) - _int(after) if before is not None and after is not None else None
    detail = data.get("detail")
    return VerificationView(str(data["status"]), str(detail) if detail else None, saving)


def _merge_suggestion(
    queries: t.Sequence[t.Mapping[str, t.Any]], min_savings_bytes: int
) -> SuggestionView | None:
    suggestions = [q["suggestion"] for q in queries if q.get("suggestion")]
    if not suggestions:
        return None
    first = suggestions[0]
    savings = sum(_int(s.get("estimated_savings_bytes")) for s in suggestions)
    verification = _verification(first.get("verification"))
    failed = bool(verification and verification.failed)
    before, after = first.get("source_before"), first.get("source_after")
    if before and after:  # shown one above the other: drop their common indentation
        before, after = textwrap.dedent(f"{before}\n{after}").split("\n", 1)
    return SuggestionView(
        kind=str(first.get("kind", "")),
        code=str(first.get("code", "")),
        columns=tuple(str(c) for c in first.get("columns") or ()),
        estimated_bytes=sum(_int(s.get("estimated_bytes")) for s in suggestions),
        estimated_savings_bytes=savings,
        highlighted=not failed and savings > 0 and savings >= min_savings_bytes,
        hint=str(first["hint"]) if first.get("hint") else None,
        imports=tuple(str(i) for i in first.get("imports") or ()),
        source_before=str(before).rstrip() if before else None,
        source_after=str(after).rstrip() if after else None,
        callers=_int(first.get("callers"), 1),
        evidence=str(first.get("evidence") or "complete"),
        unverified=tuple(str(r) for r in first.get("unverified") or ()),
        verification=verification,
    )


def _callers(
    location: t.Mapping[str, t.Any] | None, base_dir: str | None
) -> tuple[CallerView, ...]:
    if not location:
        return ()
    out = []
    for caller in location.get("callers") or ():
        file = str(caller.get("file", ""))
        line = caller.get("line")
        out.append(
            CallerView(
                label=f"{shorten_path(file, base_dir)}:{line}",
                title=f"{file}:{line}",
                function=str(caller.get("function", "")),
            )
        )
    return tuple(out)


def _indexes(query: t.Mapping[str, t.Any], position: int) -> list[int]:
    examples = [_int(i) for i in query.get("example_indexes") or ()]
    first = _int(query.get("index"), position)
    return examples if first in examples else [first, *examples]


def group_queries(
    queries: t.Sequence[t.Mapping[str, t.Any]],
    *,
    min_savings_bytes: int = 0,
    base_dir: str | None = None,
) -> list[QueryGroup]:
    """One row per statement and place, heaviest first.

    A page that lazy-loads 500 relationships is one row "×500" with the summed
    memory. ``executions`` of every member are summed, so reports grouped by
    the engine and reports with one entry per execution give the same rows.
    Queries without a location are grouped only with identical SQL of the same
    kind. Order: estimated bytes, then time, descending; then first appearance.
    """
    buckets: dict[tuple[t.Any, ...], list[tuple[int, t.Mapping[str, t.Any]]]] = {}
    for position, query in enumerate(queries):
        key = (_location_key(query.get("location")), query.get("kind"), query.get("sql"))
        buckets.setdefault(key, []).append((position, query))

    raw: list[dict[str, t.Any]] = []
    for numbered in buckets.values():
        members = [q for _, q in numbered]
        first = members[0]
        location = first.get("location") or None
        file = str(location.get("file", "")) if location else ""
        line = location.get("line") if location else None
        short = shorten_path(file, base_dir) if location else "(unknown location)"
        indexes: list[int] = []
        for position, query in numbered:
            indexes.extend(i for i in _indexes(query, position) if i not in indexes)
        held = [q.get("held_bytes") for q in members if q.get("held_bytes") is not None]
        context = location.get("context") if location else None
        raw.append(
            {
                "indexes": tuple(indexes),
                "location": location,
                "location_label": f"{short}:{line}" if location else short,
                "location_title": f"{file}:{line}" if location else "",
                "function": str(location.get("function", "")) if location else "",
                "kind": str(first.get("kind", "other")),
                "sql": str(first.get("sql", "")),
                "duration_ms": sum(float(q.get("duration_ms", 0.0) or 0.0) for q in members),
                "entities": _merge_entities(members),
                "estimated_bytes": sum(_int(q.get("estimated_bytes")) for q in members),
                "suggestion": _merge_suggestion(members, min_savings_bytes),
                "note": next((str(q["note"]) for q in members if q.get("note")), None),
                "executions": sum(max(_int(q.get("executions"), 1), 1) for q in members),
                "sized": all(q.get("sized", True) is not False for q in members),
                "streamed": any(q.get("streamed") for q in members),
                "held_bytes": max(_int(h) for h in held) if held else None,
                "callers": _callers(location, base_dir),
                "context": str(context) if context else None,
            }
        )
    raw.sort(key=lambda g: (-g["estimated_bytes"], -g["duration_ms"], min(g["indexes"] or [0])))
    heaviest = max((g["estimated_bytes"] for g in raw if g["sized"]), default=0)
    return [
        QueryGroup(
            **g,
            bar_percent=round(100.0 * g["estimated_bytes"] / heaviest, 1)
            if heaviest and g["sized"]
            else 0.0,
        )
        for g in raw
    ]


# --------------------------------------------------------------------------- measurements


@dataclasses.dataclass(frozen=True)
class MeasurementView:
    """One measured figure, labelled with exactly what it is."""

    key: str
    label: str
    value: str | None  # None: not measured
    how: str
    note: str | None = None
    unreliable: str | None = None


def measurement_rows(m: t.Mapping[str, t.Any]) -> tuple[MeasurementView, ...]:
    """The RSS and tracemalloc rows of the totals table, from ``RequestProfile.measurements()``."""
    measure = m.get("measure", "rss")
    overlapping = _int(m.get("overlapping"))
    unreliable = (
        f"unreliable: {plural(overlapping, 'other request')} measured at the same time"
        " (the figure is process-wide)"
        if overlapping
        else None
    )
    rows: list[MeasurementView] = []
    if measure != "none":
        rss = m.get("rss_bytes")
        method = m.get("rss_method")
        error = m.get("rss_error")
        if method == "peak":
            label, how = (
                "Peak RSS growth during the request",
                "measured: peak RSS (VmHWM) - RSS at the start",
            )
            note = "whole process"
        else:
            label, how = "RSS after − before", "measured"
            note = "objects freed by then are not counted"
        value = None
        if rss is not None and not error:
            value = ("+" if rss >= 0 else "") + format_bytes(rss)
        elif error:
            note = f"not measured: {error}"
        else:
            note = "not measured"
        rows.append(MeasurementView("rss", label, value, how, note, unreliable if value else None))
    peak = m.get("tracemalloc_peak_bytes")
    if peak is not None:
        held = m.get("tracemalloc_retained_bytes")
        rows.append(
            MeasurementView(
                "tracemalloc",
                "Python memory (tracemalloc)",
                f"{format_bytes(peak)} allocated at peak,"
                f" {format_bytes(held)} still held at the end",
                "measured with tracemalloc",
                None,
                unreliable,
            )
        )
    else:
        rows.append(
            MeasurementView(
                "tracemalloc",
                "Python memory (tracemalloc)",
                None,
                "",
                'off — set QUERYMEM_MEASURE = "tracemalloc" to measure it (slows requests)',
            )
        )
    return tuple(rows)


# --------------------------------------------------------------------------- the panel


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
    #: Why there is no biggest win although queries ran (None: there is one, or no query).
    no_win: str | None = None
    unsized_count: int = 0
    measured: tuple[MeasurementView, ...] = ()
    #: The Verify buttons: ``{"url": ..., "rollback": reason or None}``; None: no button
    #: (the request was not kept for replay, or this is not a live panel).
    verify: t.Mapping[str, t.Any] | None = None


def _no_win_reason(groups: t.Sequence[QueryGroup], min_savings_bytes: int) -> str | None:
    offered = [
        g.suggestion
        for g in groups
        if g.suggestion and g.suggestion.offered and g.suggestion.estimated_savings_bytes > 0
    ]
    if not offered:
        return "No projection to suggest for this request."
    return (
        f"No suggestion saves at least {format_bytes(min_savings_bytes)}"
        f" (QUERYMEM_MIN_SAVINGS_BYTES); {plural(len(offered), 'smaller one')}"
        f" {'is' if len(offered) == 1 else 'are'} in the table below."
    )


def biggest_win(groups: t.Sequence[QueryGroup], min_savings_bytes: int) -> QueryGroup | None:
    """The offered suggestion saving the most, if it saves at least ``min_savings_bytes``."""
    candidates = [
        g
        for g in groups
        if g.suggestion
        and g.suggestion.offered
        and g.suggestion.estimated_savings_bytes > 0
        and g.suggestion.estimated_savings_bytes >= min_savings_bytes
    ]
    return max(
        candidates,
        key=lambda g: g.suggestion.estimated_savings_bytes if g.suggestion else 0,
        default=None,
    )


def build_panel_view(
    report: t.Mapping[str, t.Any],
    *,
    measurements: t.Mapping[str, t.Any] | None = None,
    min_savings_bytes: int = 0,
    track_reads: bool = True,
    base_dir: str | None = None,
    verify: t.Mapping[str, t.Any] | None = None,
) -> PanelView:
    """Turn ``Report.to_dict()`` plus the extension's measurements into a :class:`PanelView`."""
    queries = list(report.get("queries") or ())
    groups = group_queries(queries, min_savings_bytes=min_savings_bytes, base_dir=base_dir)
    totals = report.get("totals") or {}
    win = biggest_win(groups, min_savings_bytes)
    with_savings = [g for g in groups if g.suggestion and g.suggestion.estimated_savings_bytes > 0]
    return PanelView(
        groups=tuple(groups),
        query_count=_int(totals.get("queries"), sum(g.executions for g in groups)),
        instance_count=_int(totals.get("instances"), sum(g.instances for g in groups)),
        estimated_bytes=_int(totals.get("estimated_bytes"), sum(g.estimated_bytes for g in groups)),
        estimated_savings_bytes=_int(
            totals.get("estimated_savings_bytes"),
            sum(g.suggestion.estimated_savings_bytes for g in with_savings if g.suggestion),
        ),
        biggest_win=win,
        track_reads=track_reads,
        min_savings_bytes=min_savings_bytes,
        measurements=dict(measurements or {}),
        errors=tuple(str(e) for e in report.get("errors") or ()),
        no_win=None if win or not groups else _no_win_reason(groups, min_savings_bytes),
        unsized_count=sum(g.executions for g in groups if not g.sized),
        measured=measurement_rows(measurements) if measurements is not None else (),
        verify=dict(verify) if verify else None,
    )
