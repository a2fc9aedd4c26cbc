"""The classic case: a bounce report that loads whole EmailAddress rows for one column.

Seeds an ``EmailAddress`` table (9 columns: id, address, names, timestamps,
flags, a short note) and a ``send_history`` table, then selects the bounced
addresses (``--rows``, default 150,000) twice: as full entities and as
``EmailAddress.email_address`` only. For each form it prints

* memory_profiler's RSS increment for the line (measured in a fresh child
  process, so earlier runs' freed memory cannot hide it; noisy by nature),
* tracemalloc's retained bytes (``.all()`` kept alive, after ``gc.collect()``),
* flask-querymem's estimate (the entities' ``estimated_bytes``; for the
  projection, the suggestion's ``estimated_bytes``),

then the full/projected ratio measured vs estimated. Finally it applies
flask-querymem's own suggestion to the query and checks that it is the
projected form (same SQL, same rows).

    python benchmarks/seed_table.py
    python benchmarks/seed_table.py --rows 20000 --database-url postgresql+psycopg2://...
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import subprocess
import sys
import time
import typing as t

import sqlalchemy as sa
from _common import (
    fmt_bytes,
    fmt_pct,
    fmt_ratio,
    machine_description,
    print_table,
    redact_url,
    retained_bytes,
    rss_increment_bytes,
    url_or_temp,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import flask_querymem

BATCH = 10_000
FORMS = ("full", "projected")


class Base(DeclarativeBase):
    pass


class EmailAddress(Base):
    __tablename__ = "bench_email_address"
    id: Mapped[int] = mapped_column(primary_key=True)
    email_address: Mapped[str] = mapped_column(sa.String(255))
    first_name: Mapped[str] = mapped_column(sa.String(80))
    last_name: Mapped[str] = mapped_column(sa.String(80))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    is_active: Mapped[bool]
    is_verified: Mapped[bool]
    note: Mapped[str] = mapped_column(sa.String(200))


send_history = sa.Table(
    "bench_send_history",
    Base.metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email_address_id", sa.ForeignKey("bench_email_address.id"), nullable=False),
    sa.Column("campaign", sa.String(40), nullable=False),
    sa.Column("bounce", sa.Integer, nullable=False),
)

FIRST = ["Ada", "Alan", "Grace", "Linus", "Guido", "Barbara", "Edsger", "Frances", "Ken", "Radia"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "van Rossum", "Liskov", "Dijkstra", "Allen"]
DOMAINS = ["example.com", "example.org", "mail.test", "inbox.test"]
NOTES = ["", "imported", "signed up at checkout", "newsletter, weekly", "unsubscribed once"]
EPOCH = dt.datetime(2023, 1, 1, 8, 0, 0)


def seed(engine: sa.Engine, bounced: int) -> int:
    """``bounced`` addresses with a bounced send, plus a quarter as many without."""
    rng = random.Random(bounced)
    total = bounced + bounced // 4
    flags = [1] * bounced + [0] * (total - bounced)
    rng.shuffle(flags)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        for lo in range(1, total + 1, BATCH):
            hi = min(lo + BATCH, total + 1)
            emails = []
            sends = []
            for i in range(lo, hi):
                first, last = rng.choice(FIRST), rng.choice(LAST)
                emails.append(
                    {
                        "id": i,
                        "email_address": f"{first}.{last}.{i}@{rng.choice(DOMAINS)}".lower(),
                        "first_name": first,
                        "last_name": last,
                        "created_at": EPOCH + dt.timedelta(minutes=7 * i),
                        "updated_at": EPOCH + dt.timedelta(minutes=7 * i, seconds=rng.random()),
                        "is_active": rng.random() < 0.9,
                        "is_verified": rng.random() < 0.7,
                        "note": rng.choice(NOTES),
                    }
                )
                sends.append(
                    {
                        "id": i,
                        "email_address_id": i,
                        "campaign": rng.choice(["spring-sale", "summer-news", "welcome"]),
                        "bounce": flags[i - 1],
                    }
                )
            conn.execute(sa.insert(EmailAddress), emails)
            conn.execute(send_history.insert(), sends)
    return total


def bounced_query(session: Session) -> t.Any:
    """The report's query, as it is usually written."""
    return (
        session.query(EmailAddress)
        .join(send_history, send_history.c.email_address_id == EmailAddress.id)
        .filter(send_history.c.bounce == 1)
    )


def form_query(session: Session, form: str) -> t.Any:
    query = bounced_query(session)
    if form == "projected":
        query = query.with_entities(EmailAddress.email_address)
    return query


# --- memory_profiler RSS, in a fresh process per form -----------------------------


def rss_child(url: str, form: str) -> None:
    """Entry point of the child process: one RSS increment, printed as JSON."""
    engine = sa.create_engine(url)
    with Session(engine) as session:
        form_query(session, form).limit(10).all()  # connect, import and compile first
        session.expunge_all()
        rows, increment = rss_increment_bytes(lambda: form_query(session, form).all())
        print(json.dumps({"form": form, "rows": len(rows), "rss_increment": increment}))
    engine.dispose()


def measure_rss(url: str, form: str) -> int | None:
    cmd = [sys.executable, __file__, "--database-url", url, "--rss-child", form]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        print(f"  RSS child for {form!r} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["rss_increment"])


# --- main ----------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="The classic bounce report: full EmailAddress entities vs the "
        "email_address column alone, measured (memory_profiler RSS, tracemalloc) and "
        "estimated by flask-querymem.",
    )
    p.add_argument(
        "--rows",
        type=int,
        default=150_000,
        help="bounced addresses to select (default: %(default)s)",
    )
    p.add_argument(
        "--database-url",
        help="SQLAlchemy URL, e.g. postgresql+psycopg2://user@host/db (default: a SQLite file "
        "in a temporary folder); the benchmark creates and drops its bench_* tables",
    )
    p.add_argument(
        "--no-rss",
        action="store_true",
        help="skip the memory_profiler RSS measurements (they start one process per form)",
    )
    p.add_argument("--keep", action="store_true", help="keep the seeded tables afterwards")
    p.add_argument("--rss-child", choices=FORMS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rss_child:
        rss_child(args.database_url, args.rss_child)
        return 0
    if args.rows < 1:
        print("--rows must be at least 1", file=sys.stderr)
        return 2

    url, tmp = url_or_temp(args.database_url, "seed_table.sqlite")
    engine = sa.create_engine(url)
    print(f"seed_table: {redact_url(url)}, {args.rows} bounced addresses")
    print(f"machine: {machine_description(engine)}")
    try:
        started = time.perf_counter()
        total = seed(engine, args.rows)
        print(f"seeded {total} addresses in {time.perf_counter() - started:.1f} s\n")
        return run(engine, url, args)
    finally:
        if not args.keep:
            Base.metadata.drop_all(engine)
        engine.dispose()
        if tmp is not None:
            tmp.cleanup()


def run(engine: sa.Engine, url: str, args: argparse.Namespace) -> int:
    # 1. flask-querymem's view of the usual code (this also warms the statement cache)
    with Session(engine) as session, flask_querymem.profile() as report:
        emails = bounced_query(session).all()
        bounced = {e.email_address for e in emails}
    del emails
    (query,) = [q for q in report.queries if q.entities]
    (entity,) = query.entities
    suggestion = query.suggestion
    if len(bounced) != args.rows or suggestion is None:
        print(f"unexpected profile: {len(bounced)} rows, suggestion {suggestion}", file=sys.stderr)
        print(report.to_text(), file=sys.stderr)
        return 1
    estimated = {"full": entity.estimated_bytes, "projected": suggestion.estimated_bytes}

    # 2. tracemalloc: what each form's result retains
    retained: dict[str, int] = {}
    for form in FORMS:
        with Session(engine) as session:
            form_query(session, form).limit(10).all()  # compile the statement first
            session.expunge_all()
            rows, retained[form] = retained_bytes(lambda: form_query(session, form).all())  # noqa: B023
            assert len(rows) == args.rows
            del rows

    # 3. memory_profiler: RSS increment of the line, one fresh process per form
    rss: dict[str, int | None] = {f: None for f in FORMS}
    if not args.no_rss:
        for form in FORMS:
            rss[form] = measure_rss(url, form)

    # 4. flask-querymem's suggestion, applied to the query
    with Session(engine) as session:
        suggested = eval("bounced_query(session)" + suggestion.code)  # noqa: S307 - under test
        projected = form_query(session, "projected")
        same_sql = str(suggested) == str(projected)
        same_rows = {r.email_address for r in suggested.all()} == bounced
    is_projected = same_sql and same_rows

    print_table(
        [
            "form",
            "rows",
            "RSS increment",
            "tracemalloc retained",
            "flask-querymem estimate",
            "error",
        ],
        [
            (
                form,
                args.rows,
                fmt_bytes(rss[form]),
                fmt_bytes(retained[form]),
                fmt_bytes(estimated[form]),
                fmt_pct((estimated[form] - retained[form]) / retained[form]),
            )
            for form in FORMS
        ],
    )
    ratio_tm = retained["full"] / retained["projected"]
    ratio_est = estimated["full"] / estimated["projected"]
    rss_full, rss_proj = rss["full"], rss["projected"]
    ratio_rss = rss_full / rss_proj if rss_full and rss_proj and rss_proj > 0 else None
    print()
    print(
        f"full/projected: measured {fmt_ratio(ratio_tm)} (tracemalloc), "
        f"{fmt_ratio(ratio_rss)} (RSS); estimated {fmt_ratio(ratio_est)}"
    )
    print(f"columns read while profiling: {entity.columns_read} of {len(entity.columns_loaded)}")
    print(f"flask-querymem suggests: {suggestion.code}")
    print(
        f"suggestion applied == projected form: {'yes' if is_projected else 'NO'} "
        f"(same SQL: {same_sql}, same rows: {same_rows})"
    )
    print()
    dialect = engine.dialect.name
    print(
        f"summary: {dialect} {args.rows} rows: full {fmt_bytes(retained['full'])} vs projected "
        f"{fmt_bytes(retained['projected'])} = {fmt_ratio(ratio_tm)} measured, "
        f"{fmt_ratio(ratio_est)} estimated (RSS {fmt_ratio(ratio_rss)}); "
        f"suggestion is the projection: {'yes' if is_projected else 'NO'}"
    )
    return 0 if is_projected else 1


if __name__ == "__main__":
    sys.exit(main())
