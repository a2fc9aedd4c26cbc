"""The Flask-DebugToolbar panel: shows the request's report, rendered by render/html.py.

Flask-DebugToolbar imports this module by its dotted path (``DEBUG_TB_PANELS``,
filled in by ``QueryMem.init_app``), so importing the toolbar here costs nothing
in apps that do not use it.

Facts about the host (Flask-DebugToolbar 0.16) this class relies on:

* panels are built per request; ``name`` must be unique because the DOM id and
  the activation cookie derive from it;
* the base class spells the switch attribute ``user_enable`` but the toolbar
  template reads ``user_activate``: set it explicitly;
* ``title()`` and ``content()`` are inserted unescaped: everything goes
  through our autoescaping environment (never the toolbar's shared one);
  ``nav_subtitle()`` is autoescaped, so it returns ``Markup`` (for its entity);
* the toolbar encodes the whole page to UTF-8 at the end: what we add is ASCII;
* ``process_response`` is called only for HTML responses, just before the
  toolbar renders the panels; that is where we make sure the profile is finished.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import typing as t

from flask import current_app, url_for
from flask_debugtoolbar.panels import DebugPanel

from .config import PANEL_ENDPOINT, VERIFY_ENDPOINT
from .render import html
from .report import SCHEMA

if t.TYPE_CHECKING:
    from werkzeug import Request, Response

    from .extension import QueryMem
    from .history import RequestProfile
    from .report import Report

logger = logging.getLogger("flask_querymem")


def _extension() -> QueryMem | None:
    return t.cast("QueryMem | None", current_app.extensions.get("querymem"))


_FIELDS: dict[type, tuple[str, ...]] = {}


def _plain(value: t.Any) -> t.Any:
    """``dataclasses.asdict`` for a report, without its deep copy of every
    leaf value (the report's leaves are str, numbers and None): the same dict,
    several times faster. Containers are new, as asdict makes them."""
    tp = type(value)
    if tp is str or tp is int or tp is float or tp is bool or value is None:
        return value
    names = _FIELDS.get(tp)
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[tp] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if tp is list:
        return [_plain(v) for v in value]
    if tp is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    if tp is tuple:
        return tuple(_plain(v) for v in value)
    if isinstance(value, (list, tuple, dict)) or dataclasses.is_dataclass(value):
        return dataclasses.asdict(_Box(value))["value"]  # exactly what asdict makes of it
    return copy.deepcopy(value)


@dataclasses.dataclass
class _Box:
    value: t.Any


def report_dict(report: t.Any) -> dict[str, t.Any]:
    """``Report.to_dict()``, faster (what the panel renders from)."""
    d: dict[str, t.Any] = {"schema": SCHEMA}
    d.update(_plain(report))
    return d


def render_subtitle(profile: RequestProfile) -> str:
    """The toolbar's one-line summary of a finished request profile.

    From the analysed report when there is one (with the avoidable memory),
    else from the totals taken as the request ended: the analysis is left for
    when the panel is opened (``QUERYMEM_PANEL_LAZY``).
    """
    if profile.analysed:
        report = profile.report
        return "no report" if report is None else html.nav_subtitle(report_dict(report))
    if profile.summary is None:
        return "no report"
    return html.nav_subtitle({"totals": profile.summary})


def render_profile(profile: RequestProfile) -> str:
    """The panel's body for a finished request profile (analysed now if needed)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    report = profile.report
    if report is None:
        return html.render_message(
            "The profiler produced no report for this request.",
            profile.error or "Stopping the profiler failed.",
            hint="Errors are logged on the 'flask_querymem' logger.",
        )
    config = app.config
    return html.render_panel(
        report_dict(report),
        measurements=profile.measurements(),
        min_savings_bytes=int(config["QUERYMEM_MIN_SAVINGS_BYTES"]),
        track_reads=bool(config["QUERYMEM_TRACK_READS"]),
        base_dir=os.path.dirname(app.root_path),
        verify=_verify_buttons(profile, report),
    )


def _verify_buttons(profile: RequestProfile, report: Report) -> dict[str, t.Any] | None:
    """The Verify buttons' endpoint, and why a replay must be rolled back (if so)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if profile.request_data is None:
        return None
    if VERIFY_ENDPOINT not in app.view_functions:
        return None
    from .replay import refusal

    return {
        "url": url_for(VERIFY_ENDPOINT, record_id=profile.id),
        "rollback": refusal(profile.method, report, rollback=False),
    }


class QueryMemPanel(DebugPanel):
    """Per-query memory of the current request, heaviest first, with fixes to copy."""

    name = "QueryMem"
    has_content = True
    # Always on while QueryMem is active: the point is to see the waste at a
    # glance, without first finding a switch and reloading. (0.16.0's base
    # class defines ``user_enable``; the template reads ``user_activate``.)
    user_activate = False

    _profile: RequestProfile | None = None
    _finished = False

    # -- lifecycle -------------------------------------------------------------

    def process_response(self, request: Request, response: Response) -> None:
        try:
            self._finish(response)
        except Exception:
            logger.exception("flask-querymem: panel could not finish the profile (ignored)")

    def _finish(self, response: Response | None = None) -> RequestProfile | None:
        if self._finished:
            return self._profile
        self._finished = True
        ext = _extension()
        if ext is None:
            return None
        self._profile = ext.finish_request(response)
        return self._profile

    # -- what the toolbar shows ------------------------------------------------

    def nav_title(self) -> str:
        return "QueryMem"

    _subtitle: str | None = None

    def nav_subtitle(self) -> str:
        # the toolbar's template asks twice (``{% if panel.nav_subtitle() %}``)
        if self._subtitle is None:
            self._subtitle = self._nav_subtitle()
        return self._subtitle

    def _nav_subtitle(self) -> str:
        try:
            profile = self._finish()
            if profile is None:
                return "inactive" if _extension() is None or not self._is_active() else "no report"
            if not self._lazy():
                profile.report  # noqa: B018 - rendered inline: analysed now, subtitle included
            return render_subtitle(profile)
        except Exception:
            logger.exception("flask-querymem: panel subtitle failed (ignored)")
            return "error"

    def title(self) -> str:
        return "QueryMem: memory loaded by each query"

    def url(self) -> str:
        return ""

    def content(self) -> str:
        try:
            return self._content()
        except Exception as exc:
            logger.exception("flask-querymem: panel rendering failed (ignored)")
            return html.render_failure(exc)

    def _is_active(self) -> bool:
        ext = _extension()
        return bool(ext and ext.is_active(current_app._get_current_object()))  # type: ignore[attr-defined]

    def _content(self) -> str:
        ext = _extension()
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        if ext is None:
            return html.render_message(
                "QueryMem is not initialised on this app.",
                "The panel is listed in DEBUG_TB_PANELS but the extension was never set up.",
                hint="Call QueryMem(app) (or qm.init_app(app)); it adds this panel itself.",
            )
        if not ext.is_active(app):
            return html.render_message(
                "QueryMem is inactive for this app.",
                f"Reason: {ext.inactive_reason(app)}.",
                hint="Set QUERYMEM_ENABLED = True to profile anyway.",
            )
        profile = self._finish()
        if profile is None:
            return html.render_message(
                "This request was not profiled.",
                "Profiling did not start for it: it was skipped, or starting the profiler failed.",
                hint="Errors are logged on the 'flask_querymem' logger.",
            )
        if self._lazy():
            return html.render_lazy(url_for(PANEL_ENDPOINT, record_id=profile.id))
        return render_profile(profile)

    @staticmethod
    def _lazy() -> bool:
        """Whether the body is fetched when the panel is opened (it needs the history)."""
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        return bool(
            app.config["QUERYMEM_PANEL_LAZY"]
            and int(app.config["QUERYMEM_HISTORY_SIZE"]) > 0
            and PANEL_ENDPOINT in app.view_functions
        )
