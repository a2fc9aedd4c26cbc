"""The profiling engine: ``profile()`` for code blocks, ``Profiler`` for hooks.

A profile covers every SQLAlchemy Session used in the current context
(``contextvars``): the thread, asyncio task or greenlet that started it, so
queries of other threads are never mixed in. Nothing is installed until the
first profile starts.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import typing as t

from . import tracking
from .record import ProfileRecord
from .report import Report

logger = logging.getLogger("flask_querymem")

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


class Profiler:
    """Start/stop form of :func:`profile`, for hooks that begin and end in
    different functions (a Flask ``before_request``/``after_request`` pair).

    ``stop()`` must run in the same context as ``start()``; it never raises.
    """

    def __init__(self, track_reads: bool = True, ignore_modules: t.Iterable[str] = ()) -> None:
        if isinstance(ignore_modules, str):
            ignore_modules = (ignore_modules,)
        self.track_reads = bool(track_reads)
        self.ignore_modules = tuple(ignore_modules)
        self._record: ProfileRecord | None = None
        self._token: contextvars.Token[ProfileRecord | None] | None = None
        self.report: Report | None = None

    @property
    def active(self) -> bool:
        return self._record is not None

    def start(self) -> Profiler:
        if self._record is not None:
            raise RuntimeError(
                "this Profiler is already running; call stop() first or use a new Profiler"
            )
        rec = ProfileRecord(track_reads=self.track_reads, ignore_modules=self.ignore_modules)
        self._token = tracking.activate(rec)
        self._record = rec
        self.report = None
        return self

    def stop(self) -> Report:
        """Deactivate and analyse. Returns an empty report (and logs) on internal errors."""
        rec, token = self._record, self._token
        if rec is None:
            return self.report if self.report is not None else Report()
        self._record = self._token = None
        try:
            tracking.deactivate(rec, token)
        except Exception:
            logger.exception("flask-querymem: error while stopping the profile (ignored)")
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
    """

    def __init__(self, track_reads: bool = True, ignore_modules: t.Iterable[str] = ()) -> None:
        if callable(track_reads) and not isinstance(track_reads, bool):
            raise TypeError("profile must be called: use @profile() or `with profile() as report:`")
        self._kwargs = {"track_reads": track_reads, "ignore_modules": ignore_modules}
        self._profiler: Profiler | None = None
        self.report = Report()

    def __enter__(self) -> Report:
        self._profiler = Profiler(**self._kwargs)  # type: ignore[arg-type]
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
        @functools.wraps(fn)
        def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
            with profile(**self._kwargs) as report:  # type: ignore[arg-type]
                try:
                    return fn(*args, **kwargs)
                finally:
                    wrapper.last_report = report  # type: ignore[attr-defined]

        return t.cast(F, wrapper)
