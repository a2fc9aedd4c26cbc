"""Plain-text report, in the spirit of memory_profiler's line table.

Shares the panel's view model (``render.html.group_queries``): repeated queries
from one place (N+1 lazy loads) are one line with ``×N``, in the order issued.
"""

from __future__ import annotations

import os
import typing as t

from .html import format_bytes, format_ms, group_queries

if t.TYPE_CHECKING:
    from ..report import Report


def render(report: Report, sql_width: int = 70) -> str:
    tot = report.totals
    lines = [
        f"flask-querymem: {tot.queries} queries, {tot.instances} ORM instances, "
        f"~{format_bytes(tot.estimated_bytes)} estimated, "
        f"~{format_bytes(tot.estimated_savings_bytes)} avoidable",
        "(memory figures are estimates: sys.getsizeof over a sample of the loaded instances)",
        "",
        f"{'#':>3}  {'location':<34} {'kind':<17} {'ms':>8} {'instances':>10} "
        f"{'est. memory':>12}  entities",
    ]
    groups = group_queries(report.to_dict()["queries"], base_dir=os.getcwd())
    groups.sort(key=lambda g: g.indexes[0])
    for g in groups:
        loc = f"{g.location_label} {g.function}" if g.location else "?"
        ents = ", ".join(f"{e.model}×{e.count}" for e in g.entities) or "-"
        kind = g.kind + (f" ×{g.repeat}" if g.repeat > 1 else "")
        lines.append(
            f"{g.indexes[0]:>3}  {loc[:34]:<34} {kind:<17} {format_ms(g.duration_ms):>8} "
            f"{g.instances:>10} {format_bytes(g.estimated_bytes):>12}  {ents}"
        )
        sql = " ".join(g.sql.split())
        lines.append(f"{'':>5}SQL: {sql[:sql_width]}{'…' if len(sql) > sql_width else ''}")
        for e in g.entities:
            if e.count:
                read = [c.name for c in e.columns if c.read]
                unused = e.unused_columns
                lines.append(
                    f"{'':>5}{e.model}: read {len(read)}/{len(e.columns)} columns "
                    f"[{', '.join(read)}]" + (f"; unused: {', '.join(unused)}" if unused else "")
                )
        if g.suggestion:
            s = g.suggestion
            lines.append(
                f"{'':>5}suggest: {s.code}  (~{format_bytes(s.estimated_bytes)}, "
                f"saves ~{format_bytes(s.estimated_savings_bytes)})"
            )
            if s.hint:
                lines.append(f"{'':>5}        ({s.hint})")
        elif g.note:
            lines.append(f"{'':>5}note: {g.note}")
    if report.errors:
        lines.append("")
        lines.append(
            "internal errors (ignored, see the flask_querymem log): " + ", ".join(report.errors)
        )
    return "\n".join(lines) + "\n"
