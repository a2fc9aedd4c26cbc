"""Helpers shared by the benchmark scripts: measuring, formatting, the machine.

The scripts are run directly (``python benchmarks/accuracy.py``), so this module
is imported as ``_common`` from the scripts' own folder. Nothing here imports
flask-querymem: measuring must not depend on the thing being measured.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import tracemalloc
import typing as t

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

T = t.TypeVar("T")

MiB = 1024 * 1024


def retained_bytes(fn: t.Callable[[], T]) -> tuple[T, int]:
    """Run ``fn`` under tracemalloc and return (its result, bytes still allocated after it).

    The method of the issue: collect garbage, start tracing, read the traced
    total, run ``fn`` (whose result stays alive: we return it), collect again,
    read the total again. What ``fn`` allocated and freed does not count.
    """
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return result, after - before


def rss_mib() -> float:
    """This process's resident set size in MiB, sampled once by memory_profiler."""
    from memory_profiler import memory_usage

    sample = memory_usage(-1, interval=0, timeout=None)
    return float(sample[0] if isinstance(sample, list) else sample)


def rss_increment_bytes(fn: t.Callable[[], T]) -> tuple[T, int]:
    """memory_profiler's "Increment" for one line: RSS after ``fn`` minus RSS before.

    Noisy by nature (the allocator keeps freed pages, and pymalloc arenas are
    reused), so the scripts measure it in a fresh process and judge accuracy by
    tracemalloc.
    """
    gc.collect()
    before = rss_mib()
    result = fn()
    after = rss_mib()
    return result, int(round((after - before) * MiB))


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n >= MiB:
        return f"{sign}{n / MiB:.1f} MiB"
    if n >= 1024:
        return f"{sign}{n / 1024:.1f} KiB"
    return f"{sign}{n:.0f} B"


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def quartiles(values: t.Sequence[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile) of ``values`` (inclusive method)."""
    if not values:
        raise ValueError("quartiles of no values")
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def fmt_quartiles(values: t.Sequence[float], digits: int = 2) -> str:
    """``median (q1-q3)``, e.g. ``1.07 (1.03-1.12)``; ``-`` for no values."""
    if not values:
        return "-"
    q1, q2, q3 = quartiles(values)
    return f"{q2:.{digits}f} ({q1:.{digits}f}..{q3:.{digits}f})"


def print_table(headers: t.Sequence[str], rows: t.Iterable[t.Sequence[object]]) -> None:
    """A plain left/right aligned text table (numbers right, first column left)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
        ).rstrip()

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        print(line(r))
    sys.stdout.flush()


def temp_sqlite_url(name: str) -> tuple[str, tempfile.TemporaryDirectory[str]]:
    """A SQLite file in a fresh temporary folder (the caller keeps the folder object)."""
    tmp = tempfile.TemporaryDirectory(prefix="querymem-bench-")
    return "sqlite:///" + os.path.join(tmp.name, name), tmp


def url_or_temp(url: str | None, name: str) -> tuple[str, tempfile.TemporaryDirectory[str] | None]:
    """``url`` (``--database-url``), or a SQLite file ``name`` in a fresh temporary
    folder, which the caller keeps (and cleans up) as the second value."""
    if url:
        return url, None
    return temp_sqlite_url(name)


def print_header(url: str, title: str) -> None:
    """The first two lines of a script's output: what it runs on, and the machine."""
    engine = sa.create_engine(url)
    try:
        print(f"{title.format(url=redact_url(url))}")
        print(f"machine: {machine_description(engine)}")
    finally:
        engine.dispose()


def git_commit(path: str | None = None) -> str:
    """Short commit of the checkout holding ``path`` (default: this folder), plus
    ``+dirty`` when tracked files under ``flask_querymem/`` differ from it."""
    where = os.path.abspath(path or os.path.dirname(__file__))
    if not os.path.isdir(where):
        where = os.path.dirname(where)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=where, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        top = git("rev-parse", "--show-toplevel")
        dirty = git(
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            os.path.join(top, "flask_querymem"),
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + (" + uncommitted changes in flask_querymem/" if dirty else "")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> str:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return f"{pages / 1024**3:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        return "RAM unknown"


def database_version(engine: sa.Engine) -> str:
    if engine.dialect.name == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                v = conn.execute(sa.text("SHOW server_version")).scalar()
                return f"PostgreSQL {str(v).split()[0]} ({engine.driver})"
            v = conn.execute(sa.text("SELECT version()")).scalar()
            return f"{engine.dialect.name} {v} ({engine.driver})"
    except Exception as exc:  # noqa: BLE001 - a description only
        return f"{engine.dialect.name} (version unknown: {type(exc).__name__})"


def machine_description(engine: sa.Engine | None = None) -> str:
    """One line: CPU, cores, RAM, OS, Python, SQLAlchemy, database."""
    parts = [
        _cpu_model(),
        f"{os.cpu_count()} cores",
        _ram_gib(),
        f"{platform.system()} {platform.release()}",
        f"CPython {platform.python_version()}",
        f"SQLAlchemy {sa.__version__}",
    ]
    if engine is not None:
        parts.append(database_version(engine))
    return ", ".join(parts)


def redact_url(url: str) -> str:
    """The URL without its password, for printing."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - printing only
        return "<database url>"


class ItemColumns:
    """The 9-column ``Item`` shared by overhead.py and hotpaths.py (a mixin, so
    each script maps it on its own base or Flask-SQLAlchemy model)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    email: Mapped[str] = mapped_column(sa.String(255))
    city: Mapped[str] = mapped_column(sa.String(80))
    phone: Mapped[str] = mapped_column(sa.String(40))
    street: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    notes: Mapped[str] = mapped_column(sa.Text)
