"""The profiling engine: ``profile()`` for code blocks, ``Profiler`` for hooks.

A profile covers every SQLAlchemy Session used in the current context
(``contextvars``): the thread, asyncio task or greenlet that started it, so
queries of other threads are never mixed in. Profiles nest: every active
profile of a context sees every event (the outer one sees all queries, an
inner one those issued while it runs), so ``profile()`` inside a request
profiled by the extension, or inside another ``profile()``, works.
Nothing is installed until the first profile starts.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import typing as t

from . import tracking
from .location import default_roots
from .record import ProfileRecord
from .report import Report

logger = logging.getLogger("flask_querymem")

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


class Profiler:
    """Start/stop form of :func:`profile`, for hooks that begin and end in
    different functions (a Flask ``before_request``/``after_request`` pair).

    ``stop()`` should run in the same context as ``start()``; it never raises.

    ``app_roots``: folders whose files are the application's own code; a
    query's location is the innermost frame under one of them (default: the
    current working directory when the profile starts).
    ``min_suggest_bytes``: no suggestion saving less than this (the estimate's
    error would swallow it).
    """

    def __init__(
        self,
        track_reads: bool = True,
        ignore_modules: t.Iterable[str] = (),
        app_roots: t.Iterable[str] = (),
        min_suggest_bytes: int = 0,
    ) -> None:
        if isinstance(ignore_modules, str):
            ignore_modules = (ignore_modules,)
        if isinstance(app_roots, str):
            app_roots = (app_roots,)
        self.track_reads = bool(track_reads)
        self.ignore_modules = tuple(ignore_modules)
        self.app_roots = tuple(app_roots)
        self.min_suggest_bytes = int(min_suggest_bytes)
        self._record: ProfileRecord | None = None
        self._collected: ProfileRecord | None = None
        self.report: Report | None = None

    @property
    def active(self) -> bool:
        return self._record is not None

    def start(self) -> Profiler:
        if self._record is not None:
            raise RuntimeError(
                "this Profiler is already running; call stop() first or use a new Profiler"
            )
        rec = ProfileRecord(
            track_reads=self.track_reads,
            ignore_modules=self.ignore_modules,
            # decided once, at the start: the working directory may change later
            app_roots=self.app_roots or default_roots(),
            min_suggest_bytes=self.min_suggest_bytes,
        )
        tracking.activate(rec)
        self._record = rec
        self._collected = None
        self.report = None
        return self

    def stop(self) -> Report:
        """Deactivate and analyse. Returns an empty report (and logs) on internal errors."""
        self.collect()
        return self.analyse()

    def collect(self) -> None:
        """Stop recording, without analysing yet (:meth:`analyse` does, later).

        Why: the extension stops every request's profile, but most reports are
        never looked at; the records hold classes and code objects, never the
        application's instances, so they can wait.
        """
        rec = self._record
        if rec is None:
            return
        self._record = None
        try:
            tracking.deactivate(rec)
        except Exception:
            logger.exception("flask-querymem: error while stopping the profile (ignored)")
        self._collected = rec
        self.report = None

    @property
    def collected_executions(self) -> int:
        """Statement executions recorded by what :meth:`collect` stopped (0 once analysed)."""
        rec = self._collected
        return len(rec.queries) if rec is not None else 0

    def summary(self) -> dict[str, int]:
        """Totals of what :meth:`collect` stopped, without the analysis (cheap)."""
        rec = self._collected
        if rec is None:
            return (self.report or Report()).totals.summary()
        try:
            from .analysis import summary

            return summary(rec)
        except Exception:
            logger.exception("flask-querymem: could not total the profile (ignored)")
            return {"queries": len(rec.queries), "instances": 0, "estimated_bytes": 0}

    def analyse(self) -> Report:
        """The report of what :meth:`collect` stopped (analysed once)."""
        rec = self._collected
        if rec is None:
            return self.report if self.report is not None else Report()
        self._collected = None
        try:
            from .analysis import analyse

            self.report = analyse(rec)
        except Exception:
            logger.exception("flask-querymem: could not analyse the profile (ignored)")
            self.report = Report(errors=["analysis failed: see the flask_querymem log"])
        return self.report


class profile:  # noqa: N801 - used like a function: ``with profile() as report``
    """Profile the queries of a block (``with``) or of each call of a function (decorator).

    ``with profile() as report:`` gives a :class:`Report` that is filled in when
    the block ends (also when it raises; the exception passes through).

    As a decorator (``@profile()``) it works on plain and ``async`` functions;
    ``fn.last_report()`` returns the report of the last call made *in the
    calling context* (thread, asyncio task), so concurrent callers never see
    each other's reports.
    """

    def __init__(
        self,
        track_reads: bool = True,
        ignore_modules: t.Iterable[str] = (),
        app_roots: t.Iterable[str] = (),
        min_suggest_bytes: int = 0,
    ) -> None:
        if callable(track_reads) and not isinstance(track_reads, bool):
            raise TypeError("profile must be called: use @profile() or `with profile() as report:`")
        self._kwargs: dict[str, t.Any] = {
            "track_reads": track_reads,
            "ignore_modules": ignore_modules,
            "app_roots": app_roots,
            "min_suggest_bytes": min_suggest_bytes,
        }
        self._profiler: Profiler | None = None
        self.report = Report()

    def __enter__(self) -> Report:
        self._profiler = Profiler(**self._kwargs)
        self.report = Report()
        self._profiler.start()
        return self.report

    def __exit__(self, *exc: object) -> None:
        if self._profiler is None:
            return
        result = self._profiler.stop()
        self._profiler = None
        # fill the object handed out by __enter__, so `report` is usable after the block
        self.report.queries = result.queries
        self.report.totals = result.totals
        self.report.errors = result.errors

    def __call__(self, fn: F) -> F:
        kwargs = self._kwargs
        last: contextvars.ContextVar[Report | None] = contextvars.ContextVar(
            f"flask_querymem_last_report_{getattr(fn, '__qualname__', 'fn')}", default=None
        )

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: t.Any, **kw: t.Any) -> t.Any:
                # The coroutine runs in the awaiting task's context: the profile
                # and `last` are that task's own.
                with profile(**kwargs) as report:
                    try:
                        return await fn(*args, **kw)
                    finally:
                        last.set(report)

            wrapper: t.Any = async_wrapper
        else:

            @functools.wraps(fn)
            def sync_wrapper(*args: t.Any, **kw: t.Any) -> t.Any:
                with profile(**kwargs) as report:
                    try:
                        return fn(*args, **kw)
                    finally:
                        last.set(report)

            wrapper = sync_wrapper
        wrapper.last_report = last.get
        return t.cast(F, wrapper)
