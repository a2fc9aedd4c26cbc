"""Plain-text report, in the spirit of memory_profiler's line table.

Shares the panel's view model (``render/view.py``): one line per statement and
place with ``×N`` for its executions, in the order first issued. Locations are
printed whole, at the end of their line, never cut; they are relative to
``base_dir`` only when the caller gives one.
"""

from __future__ import annotations

import typing as t

from .view import format_bytes, format_ms, group_queries, plural

if t.TYPE_CHECKING:
    from ..report import Report

__all__ = ["render"]

_INDENT = " " * 5


def render(report: Report, *, base_dir: str | None = None, sql_width: int = 70) -> str:
    """The report as text. ``base_dir``: print locations relative to it (default: absolute)."""
    tot = report.totals
    groups = group_queries(report.to_dict()["queries"], base_dir=base_dir)
    unsized = sum(g.executions for g in groups if not g.sized)
    lines = [
        f"flask-querymem: {plural(tot.queries, 'query', 'queries')}, "
        f"{plural(tot.instances, 'ORM instance')}, "
        f"~{format_bytes(tot.estimated_bytes)} estimated"
        + (f" ({plural(unsized, 'query', 'queries')} not sized)" if unsized else "")
        + f", ~{format_bytes(tot.estimated_savings_bytes)} avoidable",
        "(memory figures are estimates: sys.getsizeof over a sample of the loaded instances)",
        "",
        f"{'#':>3}  {'kind':<17} {'ms':>8} {'instances':>10} {'est. memory':>12}  location",
    ]
    groups.sort(key=lambda g: min(g.indexes) if g.indexes else 0)
    for g in groups:
        loc = f"{g.location_label} {g.function}".rstrip() if g.location else "(unknown location)"
        kind = g.kind + (f" ×{g.executions}" if g.executions > 1 else "")
        first = min(g.indexes) if g.indexes else 0
        lines.append(
            f"{first:>3}  {kind:<17} {format_ms(g.duration_ms):>8} "
            f"{g.instances:>10} {g.memory_label:>12}  {loc}"
        )
        if g.called_from:
            lines.append(f"{_INDENT}{g.called_from}")
        if g.context:
            lines.append(f"{_INDENT}{g.context}")
        if g.streamed:
            lines.append(f"{_INDENT}streamed: at most {format_bytes(g.held_bytes)} held at once")
        sql = " ".join(g.sql.split())
        lines.append(f"{_INDENT}SQL: {sql[:sql_width]}{'…' if len(sql) > sql_width else ''}")
        for e in g.entities:
            if not e.count:
                continue
            read = [c.name for c in e.columns if c.read]
            needed = [c.name for c in e.columns if c.needed and not (c.read or c.written)]
            written = [c.name for c in e.columns if c.written]
            unused = e.unused_columns
            line = (
                f"{_INDENT}{e.model}×{e.count}: read {len(read)}/{len(e.columns)} columns"
                f" [{', '.join(read)}]"
            )
            if written:
                line += f"; written: {', '.join(written)}"
            if needed:
                line += f"; needed by relationships: {', '.join(needed)}"
            if unused:
                line += f"; unused: {', '.join(unused)}"
            lines.append(line)
            if e.relationships_read:
                lines.append(
                    f"{_INDENT}{e.model} relationships read: {', '.join(e.relationships_read)}"
                )
        s = g.suggestion
        if s and s.offered:
            for imp in s.imports:
                lines.append(f"{_INDENT}import:  {imp}")
            lines.append(
                f"{_INDENT}suggest: {s.code}  (~{format_bytes(s.estimated_bytes)}, "
                f"saves ~{format_bytes(s.estimated_savings_bytes)})"
            )
            if s.source_before and s.source_after:
                lines.append(f"{_INDENT}  before: {s.source_before.strip()}")
                lines.append(f"{_INDENT}  after:  {s.source_after.strip()}")
            if s.verification:
                lines.append(f"{_INDENT}  {s.verification.label}")
            if s.unverified_label:
                lines.append(f"{_INDENT}  {s.unverified_label}")
            if s.callers > 1:
                lines.append(
                    f"{_INDENT}  this line runs from {s.callers} call chains:"
                    " the change applies to all of them"
                )
            if s.hint:
                lines.append(f"{_INDENT}  ({s.hint})")
        elif s and s.verification:
            lines.append(f"{_INDENT}not offered: {s.code}: {s.verification.label}")
        if g.note and not (s and s.offered):
            lines.append(f"{_INDENT}note: {g.note}")
    if report.errors:
        lines.append("")
        lines.append(
            "internal errors (ignored, see the flask_querymem log): " + ", ".join(report.errors)
        )
    return "\n".join(lines) + "\n"
