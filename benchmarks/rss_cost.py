"""Cost of the per-request memory reading (``QUERYMEM_MEASURE = "rss"``).

``python benchmarks/rss_cost.py [--runs N]`` starts and stops the reading N times
(what the extension does once per request) and prints min / median / max in
milliseconds, idle and with two busy Python threads in the process. The goal
(issue 10): under 0.5 ms per request; memory_profiler's sampling took 4.5-5.6 ms
on a busy machine. Timings belong here, not in unit tests (shared machines).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

from flask_querymem import measure
from flask_querymem.measure import RequestMeasurement


def costs(runs: int) -> list[float]:
    """CPU milliseconds of this thread per start+stop (wall time would count the
    waits for the GIL while other threads run, which cost the request nothing)."""
    out = []
    for _ in range(runs):
        t0 = time.thread_time()
        RequestMeasurement("rss").stop()
        out.append((time.thread_time() - t0) * 1000.0)
    return out


def line(label: str, values: list[float]) -> str:
    return (
        f"{label:<24} min {min(values):.3f} ms  median {statistics.median(values):.3f} ms  "
        f"max {max(values):.3f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    print(f"method: {measure.rss_method()}")
    idle = costs(args.runs)
    print(line("idle", idle))
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    threads = [threading.Thread(target=spin) for _ in range(2)]
    for th in threads:
        th.start()
    try:
        busy = costs(args.runs)
    finally:
        stop.set()
        for th in threads:
            th.join()
    print(line("two busy threads", busy))
    worst = statistics.median(busy)
    verdict = "met" if worst < 0.5 else "NOT met"
    print(f"summary: median {worst:.3f} ms CPU per request (goal < 0.5 ms): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
