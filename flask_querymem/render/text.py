"""Plain-text report, in the spirit of memory_profiler's line table."""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    from ..report import Report


def format_bytes(n: float) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def render(report: Report, sql_width: int = 70) -> str:
    tot = report.totals
    lines = [
        f"flask-querymem: {tot.queries} queries, {tot.instances} ORM instances, "
        f"~{format_bytes(tot.estimated_bytes)} estimated, "
        f"~{format_bytes(tot.estimated_savings_bytes)} avoidable",
        "(memory figures are estimates: sys.getsizeof over a sample of the loaded instances)",
        "",
        f"{'#':>3}  {'location':<34} {'kind':<17} {'ms':>8} {'instances':>10} "
        f"{'est. memory':>12}  entities / suggestion",
    ]
    for q in report.queries:
        loc = f"{q.location.short()} {q.location.function}" if q.location else "?"
        ents = ", ".join(f"{e.model}×{e.count}" for e in q.entities) or "-"
        lines.append(
            f"{q.index:>3}  {loc[:34]:<34} {q.kind:<17} {q.duration_ms:>8.2f} {q.instances:>10} "
            f"{format_bytes(q.estimated_bytes):>12}  {ents}"
        )
        sql = " ".join(q.sql.split())
        lines.append(f"{'':>5}SQL: {sql[:sql_width]}{'…' if len(sql) > sql_width else ''}")
        for e in q.entities:
            if e.count:
                unused = e.columns_unused
                lines.append(
                    f"{'':>5}{e.model}: read {len(e.columns_read)}/{len(e.columns_loaded)} columns "
                    f"[{', '.join(e.columns_read)}]"
                    + (f"; unused: {', '.join(unused)}" if unused else "")
                )
        if q.suggestion:
            s = q.suggestion
            lines.append(
                f"{'':>5}suggest: {s.code}  (~{format_bytes(s.estimated_bytes)}, "
                f"saves ~{format_bytes(s.estimated_savings_bytes)})"
            )
        elif q.note:
            lines.append(f"{'':>5}note: {q.note}")
    if report.errors:
        lines.append("")
        lines.append(
            "internal errors (ignored, see the flask_querymem log): " + ", ".join(report.errors)
        )
    return "\n".join(lines) + "\n"
