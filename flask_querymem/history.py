"""Profiled requests kept for later: the record, and a small store interface.

A record is plain data (the core's ``Report`` plus the extension's own
measurements) with an id, and converts to and from a JSON-able dict, so a
history page, a file store or a test can keep and re-render it later. The
store is an interface so that another backend can replace the default
in-memory ring buffer without touching the extension.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
import typing as t

from .report import Report

if t.TYPE_CHECKING:
    from .replay import RequestSnapshot

__all__ = ["HistoryStore", "MemoryHistory", "RequestProfile", "new_id"]


# One lock for every analysis: re-entrant, because analysing one request's
# profile reads (and so analyses) the other reports of its history to
# reconcile with them; one for all, so two threads doing that cannot deadlock.
_ANALYSIS_LOCK = threading.RLock()


def new_id() -> str:
    """32 random hex digits, as ``uuid.uuid4().hex`` but without building a UUID."""
    return os.urandom(16).hex()


@dataclasses.dataclass
class RequestProfile:
    """One profiled request: the core report plus what the extension measured itself.

    ``rss_bytes`` is what ``rss_method`` says: ``"peak"`` (peak RSS growth
    during the request) or ``"delta"`` (RSS after - before). ``overlapping``
    counts other measured requests that ran at the same time: the process-wide
    figures (RSS, tracemalloc) are then not this request's alone.
    """

    method: str
    path: str
    started_at: float
    id: str = dataclasses.field(default_factory=new_id)
    #: The analysed report; read it through :attr:`report`, which analyses on demand.
    _report: Report | None = dataclasses.field(default=None, repr=False)
    status_code: int | None = None
    duration_ms: float | None = None
    measure: str = "rss"
    rss_bytes: int | None = None
    rss_method: str | None = None
    rss_error: str | None = None
    tracemalloc_peak_bytes: int | None = None
    tracemalloc_retained_bytes: int | None = None
    overlapping: int = 0
    error: str | None = None
    # The request itself, to replay it: see ``request_data``.
    _request_data: dict[str, t.Any] | None = dataclasses.field(default=None, repr=False)
    # Or, until read, the snapshot it is made from (``keep_request``).
    _request_snapshot: RequestSnapshot | None = dataclasses.field(
        default=None, repr=False, compare=False
    )
    # The totals, or how to take them (``set_pending``): see ``summary``.
    _summary: dict[str, int] | None = dataclasses.field(default=None, repr=False, compare=False)
    _summarise: t.Callable[[], dict[str, int]] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )
    # The analysis still to run (``set_pending``): deferred until someone reads
    # the report, so a page whose panel is never opened never pays for it.
    _pending: t.Callable[[], Report] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    # Called on each read of an analysed report: analyses the requests that
    # ended since, so that their evidence reaches this report (reconciliation).
    _catch_up: t.Callable[[], None] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    @property
    def request_data(self) -> dict[str, t.Any] | None:
        """The request itself, to replay it (``replay.CapturedRequest.to_dict()``);
        None when it was not kept (a body over ``replay.MAX_BODY_BYTES``). Made
        from the request's snapshot when first read (a replay, the history's
        JSON), not on every request."""
        snapshot = self._request_snapshot
        if snapshot is not None:
            self._request_data = snapshot.captured().to_dict()
            self._request_snapshot = None
        return self._request_data

    @request_data.setter
    def request_data(self, value: dict[str, t.Any] | None) -> None:
        self._request_snapshot = None
        self._request_data = value

    def keep_request(self, snapshot: RequestSnapshot | None) -> None:
        """Keep ``snapshot`` (None: the request was not kept)."""
        self._request_data = None
        self._request_snapshot = snapshot

    @property
    def report(self) -> Report | None:
        """The report, analysed now if it was not yet (once, thread-safe)."""
        self.analyse_now()
        if self._report is not None and self._catch_up is not None:
            self._catch_up()
        return self._report

    @report.setter
    def report(self, value: Report | None) -> None:
        with _ANALYSIS_LOCK:
            self._pending = None
            self._report = value

    @property
    def summary(self) -> dict[str, int] | None:
        """Totals of the request (``queries``, ``instances``, ``estimated_bytes``)
        without the analysis: what the toolbar's one-line summary shows. Taken
        when first asked for (an HTML page's toolbar; a JSON response never asks)."""
        if self._summary is None:
            report = self._report
            if report is not None:
                return report.totals.summary()
            summarise, self._summarise = self._summarise, None
            if summarise is not None:
                self._summary = summarise()
        return self._summary

    def analyse_now(self) -> None:
        """Run the pending analysis, if any, and nothing else (no catching up)."""
        if self._report is None and self._pending is not None:
            with _ANALYSIS_LOCK:
                pending, self._pending = self._pending, None
                if self._report is None and pending is not None:
                    self._report = pending()

    @property
    def analysed(self) -> bool:
        """Whether :attr:`report` is available without running the analysis."""
        return self._pending is None

    @property
    def analysed_report(self) -> Report | None:
        """The report if it was analysed already, else None (never analyses)."""
        return self._report

    def set_pending(
        self,
        analyse: t.Callable[[], Report],
        catch_up: t.Callable[[], None] | None = None,
        summarise: t.Callable[[], dict[str, int]] | None = None,
    ) -> None:
        """Analyse with ``analyse()`` when the report is first read; call
        ``catch_up()`` on every read of it (the extension: analyse the other
        requests of the history that are still pending)."""
        with _ANALYSIS_LOCK:
            self._report = None
            self._pending = analyse
            self._catch_up = catch_up
            self._summarise = summarise

    def measurements(self) -> dict[str, t.Any]:
        """The non-report figures as a plain dict, which is what renderers take."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not f.name.startswith("_")
        }

    def to_dict(self) -> dict[str, t.Any]:
        data = self.measurements()
        data["request_data"] = self.request_data
        data["report"] = self.report.to_dict() if self.report is not None else None
        return data

    @classmethod
    def from_dict(cls, data: t.Mapping[str, t.Any]) -> RequestProfile:
        """Inverse of :meth:`to_dict`; keys it does not know are ignored."""
        names = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        known = {k: v for k, v in data.items() if k in names}
        report = data.get("report")
        return cls(
            **known,
            _report=Report.from_dict(report) if report else None,
            _request_data=data.get("request_data"),
        )


class HistoryStore(t.Protocol):
    """Where finished profiles go. Implementations must be thread-safe."""

    def add(self, record: RequestProfile) -> None: ...

    def get(self, record_id: str) -> RequestProfile | None: ...

    def records(self) -> list[RequestProfile]:
        """Oldest first."""
        ...


class MemoryHistory:
    """The last ``size`` records, in memory (the default store, one per app)."""

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._records: collections.deque[RequestProfile] = collections.deque(
            maxlen=max(int(size), 0)
        )

    def add(self, record: RequestProfile) -> None:
        with self._lock:
            self._records.append(record)

    def get(self, record_id: str) -> RequestProfile | None:
        with self._lock:
            return next((r for r in self._records if r.id == record_id), None)

    def records(self) -> list[RequestProfile]:
        with self._lock:
            return list(self._records)

    def __len__(self) -> int:
        return len(self._records)
