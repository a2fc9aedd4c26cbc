"""measure.py: peak RSS, tracemalloc and overlap detection, without Flask."""

from __future__ import annotations

import logging
import tracemalloc
import typing as t

import pytest

from flask_querymem import measure
from flask_querymem.measure import RequestMeasurement

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def nothing_left_in_flight() -> t.Iterator[None]:
    yield
    assert measure._in_flight.running == 0, "a measurement was left running"


@pytest.fixture()
def fresh_method(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let rss_method() decide again (it is cached per process)."""
    monkeypatch.setattr(measure, "_method", None)


def needs_peak() -> None:
    if measure.rss_method() != measure.RSS_PEAK:
        pytest.skip("/proc/self/clear_refs is not writable here: the peak method is unavailable")


def allocate_and_free(nbytes: int) -> None:
    block = b"x" * nbytes  # touched, so it is resident
    assert len(block) == nbytes
    del block


def test_peak_rss_counts_memory_freed_before_the_end() -> None:
    """Issue 10: RSS after - before missed what the view freed before returning."""
    needs_peak()
    m = RequestMeasurement("rss")
    allocate_and_free(40 * MIB)
    reading = m.stop()
    assert reading.rss_method == "peak"
    assert reading.rss_error is None
    assert reading.rss_bytes is not None and reading.rss_bytes >= 35 * MIB
    assert reading.overlapping == 0


def test_stop_is_idempotent() -> None:
    m = RequestMeasurement("rss")
    first = m.stop()
    assert m.stop() is first


def test_measure_none_reads_nothing() -> None:
    reading = RequestMeasurement("none").stop()
    assert reading == measure.Reading()


def test_without_clear_refs_it_falls_back_to_after_minus_before(
    fresh_method: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused() -> None:
        raise PermissionError(13, "Permission denied", "/proc/self/clear_refs")

    monkeypatch.setattr(measure, "_reset_peak_rss", refused)
    caplog.set_level(logging.INFO, logger="flask_querymem")
    assert measure.rss_method() == measure.RSS_DELTA
    reading = RequestMeasurement("rss").stop()
    assert reading.rss_method == "delta"
    assert isinstance(reading.rss_bytes, int)
    assert any("measuring RSS after - before" in r.getMessage() for r in caplog.records)


def test_overlapping_measurements_are_counted() -> None:
    alone = RequestMeasurement("rss").stop()
    assert alone.overlapping == 0

    first = RequestMeasurement("rss")
    second = RequestMeasurement("rss")  # started while the first runs
    third_reading = None
    second_reading = second.stop()
    third = RequestMeasurement("rss")  # started after the second ended, during the first
    third_reading = third.stop()
    first_reading = first.stop()
    assert first_reading.overlapping == 2
    assert second_reading.overlapping == 1
    assert third_reading.overlapping == 1
    assert RequestMeasurement("rss").stop().overlapping == 0


def test_tracemalloc_peak_survives_a_request_starting_during_it() -> None:
    """Issue 7 item 9: the second request's reset_peak erased the first one's 20 MB peak."""
    was_tracing = tracemalloc.is_tracing()
    first = RequestMeasurement("tracemalloc")
    allocate_and_free(20 * MIB)
    second = RequestMeasurement("tracemalloc")
    second.stop()
    reading = first.stop()
    assert reading.tracemalloc_peak_bytes is not None
    assert reading.tracemalloc_peak_bytes >= 20 * MIB
    assert reading.overlapping == 1
    assert tracemalloc.is_tracing() == was_tracing


def test_peak_rss_survives_a_request_starting_during_it() -> None:
    needs_peak()
    first = RequestMeasurement("rss")
    allocate_and_free(40 * MIB)
    RequestMeasurement("rss").stop()  # would reset VmHWM if it were alone
    reading = first.stop()
    assert reading.rss_bytes is not None and reading.rss_bytes >= 35 * MIB
    assert reading.overlapping == 1


def test_a_request_reading_gives_a_figure_and_its_method() -> None:
    """The reading is cheap enough for every request: benchmarks/rss_cost.py
    measures it (goal < 0.5 ms; memory_profiler's sampling took 4.5-5.6 ms)."""
    reading = RequestMeasurement("rss").stop()
    assert reading.rss_error is None
    assert reading.rss_bytes is not None and reading.rss_bytes >= 0
    assert reading.rss_method
