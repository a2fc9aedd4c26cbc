"""HTML rendering of a report: the shared view model plus the package's own templates.

The toolbar panel, and later a history page, render only from the plain report
dict (``Report.to_dict()``) and the extension's own measurements, through the
view model in ``render/view.py`` (shared with the text report), so old reports
can be re-rendered and nothing here touches SQLAlchemy. The templates only
print.

Why our own Jinja environment: Flask-DebugToolbar inserts ``content()`` unescaped,
so we render with an autoescaping environment we own, loading templates shipped
in ``flask_querymem/templates/querymem``. The toolbar's shared environment is
left alone (wrapping its loader per request leaks and ends in RecursionError).

Why ASCII only: the toolbar encodes the whole page to UTF-8 at the end; one
non-ASCII character makes CPython reserve a larger buffer for a large page, so
everything we emit is ASCII (non-ASCII data becomes character references,
which HTML decodes in text and attribute values; our script and style are
ASCII).
"""

from __future__ import annotations

import functools
import typing as t

import jinja2
from markupsafe import Markup, escape

from .view import (
    ColumnView,
    EntityView,
    PanelView,
    QueryGroup,
    SuggestionView,
    build_panel_view,
    format_bytes,
    format_ms,
    group_queries,
    plural,
)

__all__ = [
    "ColumnView",
    "EntityView",
    "PanelView",
    "QueryGroup",
    "SuggestionView",
    "build_panel_view",
    "format_bytes",
    "format_ms",
    "group_queries",
    "nav_subtitle",
    "render_message",
    "render_panel",
]


def nav_subtitle(report: t.Mapping[str, t.Any] | None) -> str:
    """The toolbar's one-line summary: ``"12 queries &middot; 230.0 MiB &middot; ..."``.

    Returned as ``Markup`` (the toolbar autoescapes it), with ``&middot;`` as an
    entity so the page stays ASCII.
    """
    if report is None:
        return "no report"
    totals = report.get("totals") or {}
    count = int(totals.get("queries", len(report.get("queries") or ())) or 0)
    parts = [plural(count, "query", "queries")]
    estimated = int(totals.get("estimated_bytes", 0) or 0)
    if estimated:
        parts.append(format_bytes(estimated))
    savings = int(totals.get("estimated_savings_bytes", 0) or 0)
    if savings:
        parts.append(f"{format_bytes(savings)} avoidable")
    return Markup(" &middot; ").join(escape(p) for p in parts)


def _ascii(html: str) -> str:
    return html.encode("ascii", "xmlcharrefreplace").decode("ascii")


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("flask_querymem", "templates"),
        # the templates ship with the package: no stat() of their files per render
        auto_reload=False,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["bytes"] = format_bytes
    env.filters["ms"] = format_ms
    env.filters["num"] = "{:,}".format
    env.globals["plural"] = plural
    return env


@functools.cache
def _template(name: str) -> jinja2.Template:
    return _environment().get_template(name)


def render_panel(
    report: t.Mapping[str, t.Any],
    *,
    measurements: t.Mapping[str, t.Any] | None = None,
    min_savings_bytes: int = 0,
    track_reads: bool = True,
    base_dir: str | None = None,
    verify: t.Mapping[str, t.Any] | None = None,
) -> str:
    """Render the panel body for one request's report dict (escaped, self-contained HTML).

    ``verify``: ``{"url": the verify endpoint of this request, "rollback": None, or why
    a replay must be rolled back}`` to show a Verify button on each suggestion.
    """
    view = build_panel_view(
        report,
        measurements=measurements,
        min_savings_bytes=min_savings_bytes,
        track_reads=track_reads,
        base_dir=base_dir,
        verify=verify,
    )
    return _ascii(_template("querymem/panel.html").render(view=view))


_SRC = "\x00src\x00"


@functools.cache
def _lazy_parts() -> tuple[str, str]:
    """The place-holder rendered once, around its one variable part."""
    before, after = _ascii(_template("querymem/lazy.html").render(src=_SRC)).split(_SRC)
    return before, after


def render_lazy(src: str) -> str:
    """The panel's place-holder: its body is fetched from ``src`` when opened.

    The same on every page but for ``src``: rendered once (it is on every page)."""
    before, after = _lazy_parts()
    return before + _ascii(str(escape(src))) + after


def render_failure(exc: BaseException) -> str:
    """The panel body when rendering it failed (the traceback went to the log)."""
    return render_message(
        "The QueryMem panel could not be rendered.",
        f"{type(exc).__name__}: {exc}",
        hint="The full traceback is in the 'flask_querymem' log.",
    )


def render_message(title: str, detail: str, *, hint: str | None = None) -> str:
    """Render an explanation instead of an empty table (inactive, no report, error)."""
    return _ascii(_template("querymem/message.html").render(title=title, detail=detail, hint=hint))
