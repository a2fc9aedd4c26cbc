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
per-app history (``QueryMem.history()``) for JSON requests and the CLI. They
hold plain data only (the core's ``Report``), never ORM instances.

Setup mistakes are reported loudly (``RuntimeError``, log warnings); failures
inside the hooks are logged on ``flask_querymem`` and swallowed, so profiling
can never break a request. The user's own exceptions pass through untouched.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import threading
import time
import tracemalloc
import typing as t
import weakref

from flask import Flask, current_app, g, request

if t.TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from .profiler import Profiler
    from .report import Report

__all__ = ["PANEL_PATH", "QueryMem", "RequestProfile", "get_request_profile"]

logger = logging.getLogger("flask_querymem")

#: Dotted path Flask-DebugToolbar imports the panel from (``DEBUG_TB_PANELS``).
PANEL_PATH = "flask_querymem.panel.QueryMemPanel"
#: WSGI environ key that makes the extension leave a request alone (the CLI
#: profiles such requests itself; two profiles of one request would nest).
SKIP_ENVIRON_KEY = "flask_querymem.skip"

MEASURE_CHOICES = ("rss", "tracemalloc", "none")

_G_RUNNING = "_querymem_running"
_G_REPORT = "_querymem_report"
_SKIPPED_ENDPOINTS = frozenset({"static", "_debug_toolbar.static"})

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


#: Config defaults (documented in the README's configuration table).
DEFAULT_CONFIG: t.Mapping[str, t.Any] = {
    # None: active in debug mode with Flask-DebugToolbar enabled.
    "QUERYMEM_ENABLED": None,
    "QUERYMEM_TRACK_READS": True,
    "QUERYMEM_MIN_SAVINGS_BYTES": 1024 * 1024,
    "QUERYMEM_IGNORE_MODULES": (),
    "QUERYMEM_MEASURE": "rss",
    "QUERYMEM_HISTORY_SIZE": 20,
}


@dataclasses.dataclass
class RequestProfile:
    """One profiled request: the core report plus what the extension measured itself.

    Plain data, cheap to keep: the history holds the last few of these.
    """

    method: str
    path: str
    started_at: float
    report: Report | None = None
    status_code: int | None = None
    duration_ms: float | None = None
    measure: str = "rss"
    rss_increment_bytes: int | None = None
    rss_error: str | None = None
    tracemalloc_peak_bytes: int | None = None
    tracemalloc_retained_bytes: int | None = None
    error: str | None = None

    def measurements(self) -> dict[str, t.Any]:
        """The non-report figures as a plain dict, which is what renderers take."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "report"
        }


@dataclasses.dataclass
class _Running:
    profiler: Profiler
    profile: RequestProfile
    t0: float
    rss_before_mib: float | None
    tracemalloc_baseline: int | None


@dataclasses.dataclass
class _AppState:
    active: bool
    reason: str
    history: collections.deque[RequestProfile]
    checked_toolbar: bool = False


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


def _rss_mib() -> float:
    """Resident set size of this process in MiB, the way memory_profiler reports it.

    ``memory_usage(-1, interval=0, timeout=None)`` samples once (~0.2 ms): the
    same call the classic by-hand investigation wrapped around the query.
    """
    from memory_profiler import memory_usage  # type: ignore[import-untyped]

    sample = memory_usage(-1, interval=0, timeout=None)
    return float(sample[0] if isinstance(sample, list) else sample)


class _Tracemalloc:
    """Share tracemalloc between overlapping requests; stop it only if we started it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._started_here = False

    def begin(self) -> int:
        with self._lock:
            if self._users == 0 and not tracemalloc.is_tracing():
                tracemalloc.start()
                self._started_here = True
            self._users += 1
            current, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            return current

    def end(self, baseline: int) -> tuple[int, int]:
        """Return (peak allocated since begin, still allocated) in bytes."""
        with self._lock:
            current, peak = tracemalloc.get_traced_memory()
            self._users -= 1
            if self._users == 0 and self._started_here:
                tracemalloc.stop()
                self._started_here = False
            return max(peak - baseline, 0), max(current - baseline, 0)


_tracemalloc = _Tracemalloc()


def _toolbar_default_panels(app: Flask) -> list[str] | None:
    """The panel list Flask-DebugToolbar uses when the user sets none (None: not installed)."""
    try:
        from flask_debugtoolbar import DebugToolbarExtension
    except ImportError:
        return None
    try:
        defaults = DebugToolbarExtension()._default_config(app)
        return list(defaults["DEBUG_TB_PANELS"])
    except Exception:  # private API changed: fall back to the 0.16 list
        logger.debug("flask-querymem: could not read the toolbar's default panels", exc_info=True)
        return [
            "flask_debugtoolbar.panels.versions.VersionDebugPanel",
            "flask_debugtoolbar.panels.timer.TimerDebugPanel",
            "flask_debugtoolbar.panels.headers.HeaderDebugPanel",
            "flask_debugtoolbar.panels.request_vars.RequestVarsDebugPanel",
            "flask_debugtoolbar.panels.config_vars.ConfigVarsDebugPanel",
            "flask_debugtoolbar.panels.template.TemplateDebugPanel",
            "flask_debugtoolbar.panels.sqlalchemy.SQLAlchemyDebugPanel",
            "flask_debugtoolbar.panels.logger.LoggingPanel",
            "flask_debugtoolbar.panels.route_list.RouteListDebugPanel",
            "flask_debugtoolbar.panels.profiler.ProfilerDebugPanel",
            "flask_debugtoolbar.panels.g.GDebugPanel",
        ]


def _toolbar_installed_on(app: Flask) -> bool:
    # DebugToolbarExtension does not register itself in app.extensions; its
    # blueprint is registered only when it actually started (enabled, SECRET_KEY).
    return "debugtoolbar" in app.blueprints


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
        if isinstance(app.config["QUERYMEM_IGNORE_MODULES"], str):
            app.config["QUERYMEM_IGNORE_MODULES"] = (app.config["QUERYMEM_IGNORE_MODULES"],)

        active, reason, level = self._decide(app)
        size = int(app.config["QUERYMEM_HISTORY_SIZE"])
        self._states[app] = _AppState(active, reason, collections.deque(maxlen=max(size, 0)))
        app.extensions["querymem"] = self

        from .cli import querymem_cli

        app.cli.add_command(querymem_cli)

        if not active:
            logger.log(level, "flask-querymem is inactive for app %r: %s.", app.name, reason)
            return

        self._add_panel(app)
        if app.config.get("DEBUG_TB_ENABLED", app.debug) and not app.config.get("SECRET_KEY"):
            logger.warning(
                "flask-querymem: SECRET_KEY is not set. Flask-DebugToolbar refuses to start"
                " without it, so the QueryMem panel cannot be shown. Set app.config['SECRET_KEY']."
            )

        # First, so the profile covers the other before_request functions too.
        app.before_request_funcs.setdefault(None, []).insert(0, self._before_request)
        app.after_request(self._after_request)
        app.teardown_request(self._teardown_request)

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
        if _toolbar_default_panels(app) is None:
            return (
                False,
                "Flask-DebugToolbar is not installed (pip install Flask-DebugToolbar),"
                " so there is no toolbar to show the panel in",
                logging.WARNING,
            )
        if not app.config.get("DEBUG_TB_ENABLED", app.debug):
            return (
                False,
                "Flask-DebugToolbar is disabled (DEBUG_TB_ENABLED = False)",
                logging.WARNING,
            )
        return True, "debug mode with Flask-DebugToolbar", logging.DEBUG

    @staticmethod
    def _add_panel(app: Flask) -> None:
        """Append the panel to the user's DEBUG_TB_PANELS, or to the toolbar's defaults.

        The toolbar reads DEBUG_TB_PANELS on every request (it builds the panels
        per request), so this works whether it was initialised before or after us.
        """
        panels = app.config.get("DEBUG_TB_PANELS")
        if panels is None:
            panels = _toolbar_default_panels(app)
            if panels is None:
                return
        if PANEL_PATH in panels:
            return
        if isinstance(panels, tuple):
            app.config["DEBUG_TB_PANELS"] = (*panels, PANEL_PATH)
        else:
            app.config["DEBUG_TB_PANELS"] = [*panels, PANEL_PATH]

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
        return list(state.history) if state else []

    # ------------------------------------------------------------------ hooks

    @staticmethod
    def _check_toolbar(app: Flask) -> None:
        """First request: say why the panel would not show, instead of showing nothing."""
        if not _toolbar_installed_on(app):
            logger.warning(
                "flask-querymem is profiling app %r but Flask-DebugToolbar is not running on"
                " it: call DebugToolbarExtension(app), and check DEBUG_TB_ENABLED and"
                " SECRET_KEY. Until then profiles are only kept in QueryMem.history(app).",
                app.name,
            )
        elif PANEL_PATH not in (app.config.get("DEBUG_TB_PANELS") or ()):
            logger.warning(
                "flask-querymem: DEBUG_TB_PANELS was replaced after QueryMem.init_app and no"
                " longer lists %r; add it to show the QueryMem panel.",
                PANEL_PATH,
            )

    @_guarded()
    def _before_request(self) -> None:
        # g outlives a request when the caller pushed the app context itself.
        g.pop(_G_REPORT, None)
        if request.environ.get(SKIP_ENVIRON_KEY):
            return
        if request.endpoint in _SKIPPED_ENDPOINTS or request.blueprint == "debugtoolbar":
            return
        if g.get(_G_RUNNING) is not None:
            return
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        state = self._state(app)
        if state is None or not state.active:
            return
        if not state.checked_toolbar:
            state.checked_toolbar = True
            self._check_toolbar(app)

        from .profiler import Profiler

        config = app.config
        measure = config["QUERYMEM_MEASURE"]
        profile = RequestProfile(
            method=request.method, path=request.path, started_at=time.time(), measure=measure
        )
        rss_before: float | None = None
        if measure != "none":
            try:
                rss_before = _rss_mib()
            except Exception as exc:  # memory_profiler missing or psutil failure
                profile.rss_error = f"{type(exc).__name__}: {exc}"
        baseline = _tracemalloc.begin() if measure == "tracemalloc" else None
        try:
            profiler = Profiler(
                track_reads=bool(config["QUERYMEM_TRACK_READS"]),
                ignore_modules=tuple(config["QUERYMEM_IGNORE_MODULES"]),
            ).start()
        except Exception:
            if baseline is not None:
                _tracemalloc.end(baseline)
            raise
        running = _Running(profiler, profile, time.perf_counter(), rss_before, baseline)
        g.setdefault(_G_RUNNING, running)

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
            if running.tracemalloc_baseline is not None:
                peak, retained = _tracemalloc.end(running.tracemalloc_baseline)
                profile.tracemalloc_peak_bytes = peak
                profile.tracemalloc_retained_bytes = retained
            profile.report = running.profiler.stop()
            profile.duration_ms = (time.perf_counter() - running.t0) * 1000.0
            if response is not None:
                profile.status_code = response.status_code
            elif exc is not None:
                profile.status_code = 500
            if running.rss_before_mib is not None:
                try:
                    after = _rss_mib()
                    profile.rss_increment_bytes = int(
                        round((after - running.rss_before_mib) * 1024 * 1024)
                    )
                except Exception as rss_exc:
                    profile.rss_error = f"{type(rss_exc).__name__}: {rss_exc}"
        except Exception as internal:
            logger.exception("flask-querymem: could not finish the request profile (ignored)")
            profile.error = f"{type(internal).__name__}: {internal}"
        g.setdefault(_G_REPORT, profile)
        state = self._state(current_app._get_current_object())  # type: ignore[attr-defined]
        if state is not None:
            state.history.append(profile)
        return profile


def get_request_profile() -> RequestProfile | None:
    """The finished profile of the current request, if any (needs a request context)."""
    return t.cast("RequestProfile | None", g.get(_G_REPORT))
