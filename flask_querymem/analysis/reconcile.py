"""One source line, many profiles: a suggestion must suit every caller seen.

Within one profile the engine merges every execution of a line. A helper that
serves several pages is also seen in *other* requests, which the Flask
extension keeps in its history: a column projection suggested for the helper
line while one page reads only ``name`` would break another page that calls
``u.kind()``. ``reconcile`` withdraws such suggestions, using only the plain
reports (no SQLAlchemy), so any store of reports can feed it.
"""

from __future__ import annotations

import typing as t

from ..report import QueryReport, Report


def _line(q: QueryReport) -> tuple[str, int] | None:
    return (q.location.file, q.location.line) if q.location else None


def _callers(q: QueryReport) -> tuple[tuple[str, int], ...]:
    return tuple((c.file, c.line) for c in q.location.callers) if q.location else ()


def reconcile(report: Report, earlier: t.Iterable[tuple[str, Report]]) -> None:
    """Withdraw the column projections of ``report`` that another profile of the
    same source line shows to be unsafe, and count the callers seen across all.

    ``earlier``: (label, report) pairs, e.g. ("GET /users", report) from the history.
    """
    lines = {_line(q): q for q in report.queries if q.suggestion is not None and _line(q)}
    if not lines:
        return
    needed: dict[tuple[str, int], tuple[str, str]] = {}
    callers: dict[tuple[str, int], set[tuple[tuple[str, int], ...]]] = {}
    for q in report.queries:
        key = _line(q)
        if key in lines and key is not None:
            callers.setdefault(key, set()).add(_callers(q))
    for label, other in earlier:
        for q in other.queries:
            key = _line(q)
            if key not in lines or key is None:
                continue
            callers.setdefault(key, set()).add(_callers(q))
            if q.instance_uses and key not in needed:
                needed[key] = (label, q.instance_uses[0])
    for q in report.queries:
        key = _line(q)
        s = q.suggestion
        if s is None or key is None:
            continue
        s.callers = max(s.callers, len(callers.get(key, ())))
        if s.kind == "columns" and key in needed:
            label, why = needed[key]
            report.totals.estimated_savings_bytes -= s.estimated_savings_bytes
            q.suggestion = None
            q.note = (
                f"no projection: this line also serves {label}, where the instances are "
                f"needed as objects ({why})"
            )
