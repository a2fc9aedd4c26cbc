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
import threading
import typing as t
import uuid

from .report import Report

__all__ = ["HistoryStore", "MemoryHistory", "RequestProfile", "new_id"]


def new_id() -> str:
    return uuid.uuid4().hex


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
    report: Report | None = None
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
    #: The request itself, to replay it (``replay.CapturedRequest.to_dict()``);
    #: None when it was not kept (a body over ``replay.MAX_BODY_BYTES``).
    request_data: dict[str, t.Any] | None = None

    def measurements(self) -> dict[str, t.Any]:
        """The non-report figures as a plain dict, which is what renderers take."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("report", "request_data")
        }

    def to_dict(self) -> dict[str, t.Any]:
        data = self.measurements()
        data["request_data"] = self.request_data
        data["report"] = self.report.to_dict() if self.report is not None else None
        return data

    @classmethod
    def from_dict(cls, data: t.Mapping[str, t.Any]) -> RequestProfile:
        """Inverse of :meth:`to_dict`; keys it does not know are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        report = known.pop("report", None)
        return cls(**known, report=Report.from_dict(report) if report else None)


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
