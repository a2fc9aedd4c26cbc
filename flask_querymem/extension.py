"""The Flask extension: profile each request and hand the report to the toolbar panel.

``QueryMem(app)`` (or ``qm.init_app(app)``) decides once, at init time, whether it
is active: in debug mode with Flask-DebugToolbar enabled, unless
``QUERYMEM_ENABLED`` says otherwise. When inactive it registers no hook, and
the core installs its SQLAlchemy listeners and attribute instrumentation only
on the first profile, so none of it exists: production pays nothing.

When active, a request is profiled from the first ``before_request`` function
to the end of the response. The profile is stopped by whichever comes first:

* the panel's ``process_response`` (the toolbar calls it for HTML responses
  right before rendering the panels, whatever order the extensions were
  initialised in, so the report is always complete when the panel renders);
* our ``after_request`` (JSON and other non-HTML responses);
* our ``teardown_request`` (a view that raised; always runs, so an active
  profile never leaks into the next request of the thread).

Finished profiles are kept on ``flask.g`` for the panel and in a short
per-app history (``QueryMem.history()``, a ``history.HistoryStore``) for JSON
requests and the CLI. They hold plain data only (the core's ``Report``, or the
records it is analysed from: classes and code objects), never ORM instances.

Most reports are never looked at, so a request ends by stopping the listeners
only: its report is analysed when it is first read (``RequestProfile.report``),
and the panel's body is fetched from ``GET /_querymem/panel/<history id>``
when the panel is opened (``QUERYMEM_PANEL_LAZY``). A request of more than
``EAGER_ANALYSIS_EXECUTIONS`` statements is analysed at once: its record would
outweigh its report.

Verification by replay (``replay.py``): each profiled request keeps what is
needed to send it again; while active, the extension registers a small JSON
endpoint (``POST /_querymem/verify/<history id>``) that the panel's **Verify**
button calls. It replays the request with the suggestion applied, stores the
result in the history record's report and returns it. Unknown history ids are
refused (404). With ``QUERYMEM_VERIFY = "auto"``, GET requests that wrote
nothing are verified right after they ran.

The other concerns live next door: ``config.py`` (defaults and constants),
``toolbar.py`` (what we know about Flask-DebugToolbar), ``measure.py`` (RSS and
tracemalloc), ``history.py`` (the kept records).

Setup mistakes are reported loudly (``RuntimeError``, log warnings); failures
inside the hooks are logged on ``flask_querymem`` and swallowed, so profiling
can never break a request. The user's own exceptions pass through untouched.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import typing as t
import weakref

import flask
from flask import Flask, current_app, g, jsonify, request

from . import toolbar
from .config import (
    DEFAULT_CONFIG,
    MEASURE_CHOICES,
    PANEL_ENDPOINT,
    PANEL_PATH,
    PANEL_RULE,
    SKIP_ENVIRON_KEY,
    VERIFY_CHOICES,
    VERIFY_ENDPOINT,
    VERIFY_RULE,
)
from .history import HistoryStore, MemoryHistory, RequestProfile
from .measure import RequestMeasurement

if t.TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from .profiler import Profiler
    from .report import Report

__all__ = [
    "DEFAULT_CONFIG",
    "PANEL_PATH",
    "SKIP_ENVIRON_KEY",
    "QueryMem",
    "RequestProfile",
    "get_request_profile",
]

logger = logging.getLogger("flask_querymem")

#: A request that ran more statements than this is analysed when it ends, not
#: when its report is first read: its record keeps every execution (an N+1 page
#: of 1,001 lazy loads kept 1.2 MiB until analysed, 26% of what its entities
#: hold), while its report groups the executions of each statement into one
#: entry. Below it, the record is about the report's size and waits.
EAGER_ANALYSIS_EXECUTIONS = 100

_G_RUNNING = "_querymem_running"
_G_REPORT = "_querymem_report"

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


@dataclasses.dataclass
class _Running:
    profiler: Profiler
    profile: RequestProfile
    t0: float
    measurement: RequestMeasurement


@dataclasses.dataclass
class _AppState:
    active: bool
    reason: str
    history: HistoryStore
    checked_toolbar: bool = False
    app_roots: tuple[str, ...] | None = None  # decided on the first request, then reused


def _guarded(fallback_arg: bool = False) -> t.Callable[[F], F]:
    """Log and swallow our own errors in a hook; return its first argument if asked.

    Why: a profiler must never be the reason a request fails.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
            try:
                return fn(*args, **kwargs)
            except Exception:
                logger.exception("flask-querymem: error in %s (ignored)", fn.__name__)
                return args[1] if fallback_arg and len(args) > 1 else None

        return t.cast(F, wrapper)

    return decorate


class QueryMem:
    """Profile every request's SQLAlchemy queries and show them in Flask-DebugToolbar.

    ::

        app = Flask(__name__)
        DebugToolbarExtension(app)
        QueryMem(app)          # or: qm = QueryMem(); qm.init_app(app)

    Extensions can be initialised in any order. Works with Flask-SQLAlchemy and
    with plain SQLAlchemy sessions (the core profiles every Session).
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._states: weakref.WeakKeyDictionary[Flask, _AppState] = weakref.WeakKeyDictionary()
        if app is not None:
            self.init_app(app)

    # ------------------------------------------------------------------ setup

    def init_app(self, app: Flask) -> None:
        """Read the config, decide whether to be active, and register hooks if so."""
        if "querymem" in app.extensions:
            raise RuntimeError(
                "A 'QueryMem' instance has already been registered on this Flask app."
                " Import and use that instance instead."
            )
        for key, value in DEFAULT_CONFIG.items():
            app.config.setdefault(key, value)

        measure = app.config["QUERYMEM_MEASURE"]
        if measure is None:
            measure = app.config["QUERYMEM_MEASURE"] = "none"
        if measure not in MEASURE_CHOICES:
            choices = ", ".join(map(repr, MEASURE_CHOICES))
            raise ValueError(f"QUERYMEM_MEASURE = {measure!r} is not one of {choices}.")
        verify = app.config["QUERYMEM_VERIFY"]
        if verify is None or verify is False:
            verify = app.config["QUERYMEM_VERIFY"] = "off"
        if verify not in VERIFY_CHOICES:
            choices = ", ".join(map(repr, VERIFY_CHOICES))
            raise ValueError(f"QUERYMEM_VERIFY = {verify!r} is not one of {choices}.")
        if isinstance(app.config["QUERYMEM_IGNORE_MODULES"], str):
            app.config["QUERYMEM_IGNORE_MODULES"] = (app.config["QUERYMEM_IGNORE_MODULES"],)

        active, reason, level = self._decide(app)
        history = MemoryHistory(int(app.config["QUERYMEM_HISTORY_SIZE"]))
        self._states[app] = _AppState(active, reason, history)
        app.extensions["querymem"] = self

        from .cli import querymem_cli

        app.cli.add_command(querymem_cli)

        if not active:
            logger.log(level, "flask-querymem is inactive for app %r: %s.", app.name, reason)
            return

        toolbar.add_panel(app)
        if toolbar.enabled_in_config(app) and not app.config.get("SECRET_KEY"):
            logger.warning(
                "flask-querymem: SECRET_KEY is not set. Flask-DebugToolbar refuses to start"
                " without it, so the QueryMem panel cannot be shown. Set app.config['SECRET_KEY']."
            )

        # First, so the profile covers the other before_request functions too.
        app.before_request_funcs.setdefault(None, []).insert(0, self._before_request)
        app.after_request(self._after_request)
        app.teardown_request(self._teardown_request)
        app.add_url_rule(
            VERIFY_RULE, endpoint=VERIFY_ENDPOINT, view_func=self._verify_view, methods=["POST"]
        )
        app.add_url_rule(PANEL_RULE, endpoint=PANEL_ENDPOINT, view_func=self._panel_view)

    def _decide(self, app: Flask) -> tuple[bool, str, int]:
        """(active, why, log level). Debug off is the normal production case: info only."""
        enabled = app.config["QUERYMEM_ENABLED"]
        if enabled is not None:
            return bool(enabled), f"QUERYMEM_ENABLED = {enabled!r}", logging.INFO
        if not app.debug:
            return (
                False,
                "the app is not in debug mode (set QUERYMEM_ENABLED = True to profile anyway)",
                logging.INFO,
            )
        if toolbar.default_panels(app) is None:
            return (
                False,
                "Flask-DebugToolbar is not installed (pip install Flask-DebugToolbar),"
                " so there is no toolbar to show the panel in",
                logging.WARNING,
            )
        if not toolbar.enabled_in_config(app):
            return (
                False,
                "Flask-DebugToolbar is disabled (DEBUG_TB_ENABLED = False)",
                logging.WARNING,
            )
        return True, "debug mode with Flask-DebugToolbar", logging.DEBUG

    # ------------------------------------------------------------------ queries

    def _state(self, app: Flask | None) -> _AppState | None:
        if app is None:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        return self._states.get(app)

    def is_active(self, app: Flask | None = None) -> bool:
        """Whether requests of ``app`` (default: the current app) are profiled.

        Decided once, in ``init_app``, like the toolbar decides whether it runs.
        """
        state = self._state(app)
        return bool(state and state.active)

    def inactive_reason(self, app: Flask | None = None) -> str:
        """Why ``app`` is (not) profiled, in words fit for a log line or the panel."""
        state = self._state(app)
        return state.reason if state else "QueryMem.init_app(app) was not called for this app"

    def history(self, app: Flask | None = None) -> list[RequestProfile]:
        """The last ``QUERYMEM_HISTORY_SIZE`` profiled requests of ``app``, oldest first.

        Why: JSON and other non-HTML responses never show the toolbar, so this is
        where their profiles can be looked at (a history page, the CLI, a test).
        """
        state = self._state(app)
        return state.history.records() if state else []

    def history_store(self, app: Flask | None = None) -> HistoryStore | None:
        """The store behind :meth:`history` (look a record up by ``id``, or replace it)."""
        state = self._state(app)
        return state.history if state else None

    def set_history_store(self, store: HistoryStore, app: Flask | None = None) -> None:
        """Keep ``app``'s profiles in ``store`` instead of the in-memory default."""
        state = self._state(app)
        if state is None:
            raise RuntimeError("QueryMem.init_app(app) was not called for this app")
        state.history = store

    # ------------------------------------------------------------------ hooks

    @_guarded()
    def _before_request(self) -> None:
        # g outlives a request when the caller pushed the app context itself.
        g_ = g._get_current_object()
        g_.pop(_G_REPORT, None)
        req: flask.Request = request._get_current_object()  # type: ignore[attr-defined]
        if req.environ.get(SKIP_ENVIRON_KEY) or toolbar.is_toolbar_request(req):
            return
        if req.endpoint in (VERIFY_ENDPOINT, PANEL_ENDPOINT):
            return
        if g_.get(_G_RUNNING) is not None:
            return
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        state = self._state(app)
        if state is None or not state.active:
            return
        if not state.checked_toolbar:
            state.checked_toolbar = True
            toolbar.check_running(app)
        if state.app_roots is None:
            from .location import app_roots_for

            state.app_roots = app_roots_for(app)

        from .profiler import Profiler
        from .replay import RequestSnapshot

        config = app.config
        measure = config["QUERYMEM_MEASURE"]
        profile = RequestProfile(
            method=req.method, path=req.path, started_at=time.time(), measure=measure
        )
        profile.keep_request(RequestSnapshot.take(req))
        measurement = RequestMeasurement(measure)
        try:
            profiler = Profiler(
                track_reads=bool(config["QUERYMEM_TRACK_READS"]),
                ignore_modules=tuple(config["QUERYMEM_IGNORE_MODULES"]),
                app_roots=state.app_roots,
                min_suggest_bytes=int(config["QUERYMEM_MIN_SUGGEST_BYTES"]),
            ).start()
        except Exception:
            measurement.stop()
            raise
        g_.setdefault(_G_RUNNING, _Running(profiler, profile, time.perf_counter(), measurement))

    @_guarded(fallback_arg=True)
    def _after_request(self, response: Response) -> Response:
        self.finish_request(response)
        return response

    @_guarded()
    def _teardown_request(self, exc: BaseException | None) -> None:
        self.finish_request(None, exc)

    def finish_request(
        self, response: Response | None = None, exc: BaseException | None = None
    ) -> RequestProfile | None:
        """Stop this request's profile if it is running; return the finished profile.

        Idempotent: the panel, ``after_request`` and ``teardown_request`` all call
        it and only the first one does the work. Never raises.
        """
        running: _Running | None = g.pop(_G_RUNNING, None)
        if running is None:
            return get_request_profile()
        profile = running.profile
        try:
            # Measured before the analysis runs: the figures are the request's.
            try:
                reading = running.measurement.stop()
            finally:
                profile.duration_ms = (time.perf_counter() - running.t0) * 1000.0
                running.profiler.collect()
            if response is not None:
                profile.status_code = response.status_code
            elif exc is not None:
                profile.status_code = 500
            profile.rss_bytes = reading.rss_bytes
            profile.rss_method = reading.rss_method
            profile.rss_error = reading.rss_error
            profile.tracemalloc_peak_bytes = reading.tracemalloc_peak_bytes
            profile.tracemalloc_retained_bytes = reading.tracemalloc_retained_bytes
            profile.overlapping = reading.overlapping
        except Exception as internal:
            logger.exception("flask-querymem: could not finish the request profile (ignored)")
            profile.error = f"{type(internal).__name__}: {internal}"
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        state = self._state(app)
        profile.set_pending(
            functools.partial(self._analyse, state, profile, running.profiler),
            functools.partial(self._catch_up, state) if state is not None else None,
            running.profiler.summary,
        )
        if response is not None and app.config.get("QUERYMEM_VERIFY") == "auto":
            self._auto_verify(app, profile)
        if running.profiler.collected_executions > EAGER_ANALYSIS_EXECUTIONS:
            profile.analyse_now()
        g.setdefault(_G_REPORT, profile)
        if state is not None:
            state.history.add(profile)
        return profile

    @classmethod
    def _analyse(
        cls, state: _AppState | None, profile: RequestProfile, profiler: Profiler
    ) -> Report:
        """Analyse a finished request's profile: when its report is first read
        (the panel opened, the history or the CLI asked), not on every request."""
        report = profiler.analyse()
        if state is not None:
            cls._reconcile(state, profile, report)
        return report

    @staticmethod
    def _catch_up(state: _AppState) -> None:
        """Analyse the requests of the history still pending (each reconciles
        with the others as it is analysed): before a report is shown, every
        request of the history has had its say on it."""
        for p in state.history.records():
            if not p.analysed:
                p.report  # noqa: B018 - analyses it

    @staticmethod
    def _reconcile(state: _AppState, profile: RequestProfile, report: Report) -> None:
        """A suggestion belongs to a source line: one that another request of the
        history shows to be unsafe for that line is withdrawn, both ways.

        Only the reports analysed already take part. The others reconcile with
        this one when they are analysed in turn, which happens before any
        report is shown (``_catch_up`` runs on every read of a report)."""
        from .analysis.reconcile import reconcile

        try:
            label = f"{profile.method} {profile.path}"
            earlier = [
                (f"{p.method} {p.path}", other)
                for p in state.history.records()
                if p is not profile and (other := p.analysed_report) is not None
            ]
            reconcile(report, earlier)
            for _other_label, other in earlier:
                reconcile(other, [(label, report)])
        except Exception:
            logger.exception("flask-querymem: could not reconcile with the history (ignored)")

    # ------------------------------------------------------------------ verification

    def _auto_verify(self, app: Flask, profile: RequestProfile) -> None:
        """QUERYMEM_VERIFY = "auto": replay a GET that wrote nothing, now."""
        from .replay import CapturedRequest, refusal, verify_request

        report = profile.report
        if report is None or profile.request_data is None or profile.status_code != 200:
            return
        if refusal(profile.method, report, rollback=False) is not None:
            return  # writing or non-GET requests are only replayed when asked
        if not any(q.suggestion for q in report.queries):
            return
        try:
            verify_request(app, CapturedRequest.from_dict(profile.request_data), report)
        except Exception:
            logger.exception("flask-querymem: automatic verification failed (ignored)")

    def verify_record(
        self,
        record_id: str,
        *,
        indexes: t.Collection[int] | None = None,
        rollback: bool = False,
        app: Flask | None = None,
    ) -> list[dict[str, t.Any]] | None:
        """Replay the history record ``record_id`` to verify its suggestions.

        Returns one result per verified suggestion, or None when the id is
        unknown. The results are also stored in the record's report.
        """
        from .render.view import verification_view
        from .replay import CapturedRequest, verify_request

        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        store = self.history_store(app)
        record = store.get(record_id) if store is not None else None
        if record is None:
            return None
        if record.report is None:
            return []
        if record.request_data is None:
            raise LookupError("the request was not kept for replay (its body was too large)")
        targets = verify_request(
            app,
            CapturedRequest.from_dict(record.request_data),
            record.report,
            rollback=rollback,
            indexes=indexes,
        )
        results = []
        for target in targets:
            result = dict(target.suggestion.verification or {})
            view = verification_view(result)
            results.append(
                {
                    "indexes": sorted(
                        {i for q in target.queries for i in (q.index, *q.example_indexes)}
                    ),
                    "code": target.suggestion.code,
                    "verification": result,
                    "label": view.label if view else "",
                    "failed": bool(view and view.failed),
                    "verified": bool(view and view.verified),
                }
            )
        return results

    def _verify_view(self, record_id: str) -> t.Any:
        """``POST /_querymem/verify/<record_id>?query=3&rollback=1``: the Verify button."""
        raw = request.args.get("query", "")
        try:
            indexes = [int(i) for i in raw.split(",") if i.strip()] or None
        except ValueError:
            return jsonify(error=f"query={raw!r} is not a list of query indexes"), 400
        rollback = request.args.get("rollback") in ("1", "true", "yes")
        try:
            results = self.verify_record(record_id, indexes=indexes, rollback=rollback)
        except LookupError as exc:
            return jsonify(error=str(exc)), 409
        if results is None:
            return jsonify(error=f"unknown history id {record_id!r}"), 404
        return jsonify(id=record_id, results=results)

    def _panel_view(self, record_id: str) -> t.Any:
        """``GET /_querymem/panel/<record_id>``: the panel's body, when it is opened.

        JSON (``html``: the body, ``subtitle``: the toolbar's one-line summary,
        now with the avoidable memory), not an HTML page: the toolbar would try
        to insert itself into an HTML response."""
        from .panel import render_profile, render_subtitle

        store = self.history_store()
        record = store.get(record_id) if store is not None else None
        if record is None:
            from .render import html

            size = current_app.config["QUERYMEM_HISTORY_SIZE"]
            body = html.render_message(
                "This request is no longer in the history.",
                f"QueryMem keeps the last {size} profiled requests (QUERYMEM_HISTORY_SIZE).",
                hint="Reload the page to profile it again.",
            )
            return jsonify(error=f"unknown history id {record_id!r}", html=body), 404
        try:
            return jsonify(html=render_profile(record), subtitle=str(render_subtitle(record)))
        except Exception as exc:
            logger.exception("flask-querymem: panel rendering failed (ignored)")
            from .render import html

            return jsonify(error=f"{type(exc).__name__}: {exc}", html=html.render_failure(exc)), 500


def get_request_profile() -> RequestProfile | None:
    """The finished profile of the current request, if any (needs a request context)."""
    return t.cast("RequestProfile | None", g.get(_G_REPORT))
