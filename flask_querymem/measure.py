"""Measured memory of one request: peak RSS growth and, opt-in, tracemalloc.

These are measurements, next to the estimates of ``analysis``: they count the
whole process, so every figure says exactly what it is.

RSS, two methods, chosen once per process:

* ``"peak"`` (Linux): at the start, write ``5`` to ``/proc/self/clear_refs``,
  which resets the kernel's peak RSS (``VmHWM``) to the current RSS, and read
  ``VmRSS``; at the end read ``VmHWM``. The difference is the most the process
  grew while the request ran, even if the view freed its objects before
  returning. Costs a few microseconds (three small ``/proc`` reads and writes);
  the ``memory_profiler`` sampling used before cost 0.2 ms idle and 4.5-5.6 ms
  on a busy machine, because its sampling loop calls ``time.sleep(0)``.
* ``"delta"`` (elsewhere, or when ``clear_refs`` is not writable): RSS after
  minus RSS before (psutil), labelled as such: objects the request freed
  before it ended are not counted.

Both ``VmHWM`` and tracemalloc's peak are process-wide, and resetting them is
too. Requests measured at the same time would reset each other's peak (a 20 MB
peak was once reported as 144 B), so a measurement that starts while another
is running never resets the peak (its figure can then only be too high, never
silently too low), and every measurement counts the others that overlapped it
(``Reading.overlapping``) so the panel can say the figure is unreliable.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import tracemalloc
import typing as t

__all__ = [
    "RSS_DELTA",
    "RSS_PEAK",
    "Reading",
    "RequestMeasurement",
    "rss_method",
]

logger = logging.getLogger("flask_querymem")

#: ``Reading.rss_method`` values.
RSS_PEAK = "peak"
RSS_DELTA = "delta"

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclasses.dataclass
class Reading:
    """What one request's measurement found (plain data, kept in the history)."""

    rss_bytes: int | None = None
    rss_method: str | None = None  # RSS_PEAK | RSS_DELTA
    rss_error: str | None = None
    tracemalloc_peak_bytes: int | None = None
    tracemalloc_retained_bytes: int | None = None
    #: Other measured requests that ran during this one (0: the figures are this request's).
    overlapping: int = 0


class _InFlight:
    """Counts measured requests in flight; tells each one how many overlapped it.

    Every request whose measured interval intersects ours either was running
    when ours started or started before ours ended, so "running at our start"
    plus "started since ours" counts them all, exactly once.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.started = 0

    def enter(self) -> tuple[int, int]:
        """Return (others running now, our sequence number); call under ``lock``."""
        others = self.running
        self.running += 1
        self.started += 1
        return others, self.started

    def leave(self, others_at_start: int, sequence: int) -> int:
        """Return how many other measured requests overlapped ours; call under ``lock``."""
        self.running -= 1
        return others_at_start + (self.started - sequence)


_in_flight = _InFlight()


# --------------------------------------------------------------------------- RSS


class _ProcFiles:
    """``/proc/self`` files kept open and read with ``pread`` from offset 0 (the
    kernel regenerates them on each read): a third of the cost of opening them
    on every request. Reopened after a fork (``/proc/self`` was the parent's)."""

    def __init__(self) -> None:
        self.pid = -1
        self.fds: dict[str, int] = {}
        self.lock = threading.Lock()

    def fd(self, name: str, flags: int) -> int:
        pid = os.getpid()
        if pid != self.pid:
            with self.lock:
                if pid != self.pid:
                    self.fds = {}  # the parent's descriptors are left to the parent
                    self.pid = pid
        fd = self.fds.get(name)
        if fd is None:
            with self.lock:
                fd = self.fds.get(name)
                if fd is None:
                    fd = self.fds[name] = os.open(f"/proc/self/{name}", flags | os.O_CLOEXEC)
        return fd


_proc = _ProcFiles()


def _read_statm_rss() -> int:
    return int(os.pread(_proc.fd("statm", os.O_RDONLY), 256, 0).split()[1]) * _PAGE_SIZE


def _read_vmhwm() -> int:
    data = os.pread(_proc.fd("status", os.O_RDONLY), 16384, 0)
    start = data.find(b"VmHWM:")
    if start < 0:
        raise OSError("no VmHWM line in /proc/self/status")
    return int(data[start + 6 : data.index(b"kB", start)]) * 1024


def _reset_peak_rss() -> None:
    os.pwrite(_proc.fd("clear_refs", os.O_WRONLY), b"5", 0)


_psutil_process: t.Any = None


def _psutil_rss() -> int:
    global _psutil_process
    import psutil  # type: ignore[import-untyped]

    proc = _psutil_process
    if proc is None or proc.pid != os.getpid():
        proc = _psutil_process = psutil.Process()
    return int(proc.memory_info().rss)


_method: str | None = None


def rss_method() -> str:
    """``"peak"`` where the kernel's peak RSS can be reset (Linux), else ``"delta"``."""
    global _method
    if _method is None:
        try:
            _reset_peak_rss()
            _read_vmhwm()
            _read_statm_rss()
            _method = RSS_PEAK
        except (OSError, ValueError, IndexError) as exc:
            logger.info(
                "flask-querymem: peak RSS is not available (%s); measuring RSS after - before",
                exc,
            )
            _method = RSS_DELTA
    return _method


# --------------------------------------------------------------------------- tracemalloc


class _Tracemalloc:
    """Share tracemalloc between measurements; stop it only if we started it."""

    def __init__(self) -> None:
        self.users = 0
        self.started_here = False

    def begin(self) -> int:
        """Start (or join) tracing; call under ``_in_flight.lock``. Returns the baseline."""
        if self.users == 0 and not tracemalloc.is_tracing():
            tracemalloc.start()
            self.started_here = True
        current, _ = tracemalloc.get_traced_memory()
        if self.users == 0:
            # Only when nobody else is measuring: resetting the process-wide
            # peak under another request would erase that request's peak.
            tracemalloc.reset_peak()
        self.users += 1
        return current

    def end(self, baseline: int) -> tuple[int, int]:
        """(peak since begin, still held) in bytes; call under ``_in_flight.lock``."""
        current, peak = tracemalloc.get_traced_memory()
        self.users -= 1
        if self.users == 0 and self.started_here:
            tracemalloc.stop()
            self.started_here = False
        return max(peak - baseline, 0), max(current - baseline, 0)


_tracemalloc = _Tracemalloc()


# --------------------------------------------------------------------------- one request


class RequestMeasurement:
    """Measure one request: ``RequestMeasurement(measure)`` at its start, ``stop()`` at its end.

    ``measure`` is ``QUERYMEM_MEASURE``: ``"rss"``, ``"tracemalloc"`` (RSS as
    well) or ``"none"``. Never raises from ``stop()``; a failed reading is
    reported in ``Reading.rss_error``.
    """

    def __init__(self, measure: str) -> None:
        self.measure = measure
        self.reading = Reading()
        self._stopped = measure == "none"
        self._others = 0
        self._sequence = 0
        self._rss_before: int | None = None
        self._tracemalloc_baseline: int | None = None
        if self._stopped:
            return
        method = rss_method()
        self.reading.rss_method = method
        with _in_flight.lock:
            self._others, self._sequence = _in_flight.enter()
            try:
                if method == RSS_PEAK:
                    if self._others == 0:
                        _reset_peak_rss()
                    self._rss_before = _read_statm_rss()
                else:
                    self._rss_before = _psutil_rss()
            except Exception as exc:
                self.reading.rss_error = f"{type(exc).__name__}: {exc}"
            if measure == "tracemalloc":
                try:
                    self._tracemalloc_baseline = _tracemalloc.begin()
                except BaseException:
                    _in_flight.leave(self._others, self._sequence)
                    self._stopped = True
                    raise

    def stop(self) -> Reading:
        """End the measurement (idempotent) and return the reading."""
        if self._stopped:
            return self.reading
        self._stopped = True
        reading = self.reading
        with _in_flight.lock:
            try:
                if self._tracemalloc_baseline is not None:
                    peak, held = _tracemalloc.end(self._tracemalloc_baseline)
                    reading.tracemalloc_peak_bytes = peak
                    reading.tracemalloc_retained_bytes = held
                if self._rss_before is not None:
                    try:
                        if reading.rss_method == RSS_PEAK:
                            reading.rss_bytes = max(_read_vmhwm() - self._rss_before, 0)
                        else:
                            reading.rss_bytes = _psutil_rss() - self._rss_before
                    except Exception as exc:
                        reading.rss_error = f"{type(exc).__name__}: {exc}"
            finally:
                reading.overlapping = _in_flight.leave(self._others, self._sequence)
        return reading
