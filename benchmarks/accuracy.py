"""How close flask-querymem's memory estimates are to what tracemalloc measures.

For several model shapes and row counts, run a query the way an app would, once
under ``flask_querymem.profile()`` (which gives the estimate and a suggested
projection) and once under tracemalloc (which gives the bytes the result really
retains), then the same for the suggested projection applied to the query.

Method (same for every measurement): ``gc.collect()``, start tracemalloc, read
the traced total, run the query with ``.all()`` keeping the result alive,
``gc.collect()``, read the total again. The profiled run comes first and also
warms SQLAlchemy's statement cache; profiling changes nothing about what the
result holds, so the two runs are comparable.

Target: every estimate within 10% of the measurement.

    python benchmarks/accuracy.py                       # SQLite, 10k and 100k rows
    python benchmarks/accuracy.py --rows 2000 --database-url postgresql+psycopg2://...
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import decimal
import gc
import random
import sys
import time
import tracemalloc
import typing as t

import sqlalchemy as sa
from _common import (
    fmt_bytes,
    fmt_pct,
    machine_description,
    print_table,
    redact_url,
    retained_bytes,
    temp_sqlite_url,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    joinedload,
    load_only,
    mapped_column,
    relationship,
    selectinload,
)

import flask_querymem

T = t.TypeVar("T")
TARGET = 0.10
BATCH = 5000


class Base(DeclarativeBase):
    pass


# --- models: one per shape (table names prefixed so they never clash) ------------


class NarrowInts(Base):
    __tablename__ = "bench_acc_narrow"
    id: Mapped[int] = mapped_column(primary_key=True)
    small: Mapped[int]  # -5..256: CPython's shared small ints, 0 bytes each
    medium: Mapped[int]  # up to 10**6: 28-byte ints
    large: Mapped[int] = mapped_column(sa.BigInteger)  # up to 2**40: 32-byte ints
    huge: Mapped[int] = mapped_column(sa.BigInteger)  # up to 2**62: 36-byte ints


class WideStrings(Base):
    __tablename__ = "bench_acc_wide"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(20))
    label: Mapped[str] = mapped_column(sa.String(40))
    # s00..s21 are added below: 24 columns in all, short strings (some empty or 1 char)


WIDE_EXTRA = [f"s{i:02d}" for i in range(22)]
for _name in WIDE_EXTRA:
    # Declarative accepts columns assigned after the class statement.
    setattr(WideStrings, _name, mapped_column(_name, sa.String(16)))


class LargeText(Base):
    __tablename__ = "bench_acc_text"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(80))
    body: Mapped[str] = mapped_column(sa.Text)  # 1-4 KB, a few non-ASCII characters


class Temporal(Base):
    __tablename__ = "bench_acc_temporal"
    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    day: Mapped[dt.date]
    at: Mapped[dt.time]
    amount: Mapped[decimal.Decimal] = mapped_column(sa.Numeric(12, 2))
    rate: Mapped[decimal.Decimal] = mapped_column(sa.Numeric(10, 4))
    ratio: Mapped[float] = mapped_column(sa.Float)


class Person(Base):
    __tablename__ = "bench_acc_person"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    name: Mapped[str] = mapped_column(sa.String(80))
    email: Mapped[str] = mapped_column(sa.String(120))
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "person"}


class Manager(Person):
    __tablename__ = "bench_acc_manager"
    id: Mapped[int] = mapped_column(sa.ForeignKey("bench_acc_person.id"), primary_key=True)
    department: Mapped[str] = mapped_column(sa.String(40))
    budget: Mapped[decimal.Decimal] = mapped_column(sa.Numeric(14, 2))
    bio: Mapped[str] = mapped_column(sa.Text)
    __mapper_args__ = {"polymorphic_identity": "manager"}


class Author(Base):
    __tablename__ = "bench_acc_author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(80))
    bio: Mapped[str] = mapped_column(sa.Text)
    books: Mapped[list[Book]] = relationship(back_populates="author", order_by="Book.id")


class Book(Base):
    __tablename__ = "bench_acc_book"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("bench_acc_author.id"), index=True)
    title: Mapped[str] = mapped_column(sa.String(120))
    year: Mapped[int]
    isbn: Mapped[str] = mapped_column(sa.String(20))
    author: Mapped[Author] = relationship(back_populates="books")


# --- data --------------------------------------------------------------------

WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua café naïve"
).split()
EPOCH = dt.datetime(2023, 1, 1, 8, 0, 0)


def _insert(conn: sa.Connection, table: t.Any, rows: t.Iterable[dict[str, t.Any]]) -> None:
    batch: list[dict[str, t.Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            conn.execute(sa.insert(table), batch)
            batch = []
    if batch:
        conn.execute(sa.insert(table), batch)


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _short(rng: random.Random) -> str:
    n = rng.choice((0, 1, 1, 3, 5, 8, 12, 16))
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def seed_narrow(conn: sa.Connection, n: int, rng: random.Random) -> None:
    _insert(
        conn,
        NarrowInts,
        (
            {
                "id": i,
                "small": rng.randrange(0, 200),
                "medium": rng.randrange(300, 10**6),
                "large": rng.randrange(2**31, 2**40),
                "huge": rng.randrange(2**60, 2**62),
            }
            for i in range(1, n + 1)
        ),
    )


def seed_wide(conn: sa.Connection, n: int, rng: random.Random) -> None:
    def rows() -> t.Iterator[dict[str, t.Any]]:
        for i in range(1, n + 1):
            row = {"id": i, "code": f"C-{i:07d}", "label": _words(rng, 3)}
            row.update({k: _short(rng) for k in WIDE_EXTRA})
            yield row

    _insert(conn, WideStrings, rows())


def seed_text(conn: sa.Connection, n: int, rng: random.Random) -> None:
    blob = _words(rng, 4000)  # ~24 KB of text to cut bodies from

    def rows() -> t.Iterator[dict[str, t.Any]]:
        for i in range(1, n + 1):
            size = rng.randrange(1000, 4000)
            start = rng.randrange(0, len(blob) - size)
            yield {
                "id": i,
                "title": f"Document {i}: {_words(rng, 3)}",
                "body": blob[start : start + size],
            }

    _insert(conn, LargeText, rows())


def seed_temporal(conn: sa.Connection, n: int, rng: random.Random) -> None:
    _insert(
        conn,
        Temporal,
        (
            {
                "id": i,
                "created_at": EPOCH + dt.timedelta(seconds=rng.randrange(10**8)),
                "updated_at": EPOCH + dt.timedelta(seconds=rng.randrange(10**8), microseconds=i),
                "day": EPOCH.date() + dt.timedelta(days=rng.randrange(3000)),
                "at": dt.time(rng.randrange(24), rng.randrange(60), rng.randrange(60)),
                "amount": decimal.Decimal(rng.randrange(10**9)) / 100,
                "rate": decimal.Decimal(rng.randrange(10**6)) / 10000,
                "ratio": rng.random(),
            }
            for i in range(1, n + 1)
        ),
    )


def seed_inheritance(conn: sa.Connection, n: int, rng: random.Random) -> None:
    # n managers plus n/10 plain persons (which the Manager query does not load)
    people = n + n // 10
    kinds = ["manager"] * n + ["person"] * (people - n)
    rng.shuffle(kinds)
    _insert(
        conn,
        Person.__table__,
        (
            {
                "id": i,
                "kind": kinds[i - 1],
                "name": f"{_words(rng, 1).title()} {_words(rng, 1).title()} {i}",
                "email": f"person{i}@example.com",
            }
            for i in range(1, people + 1)
        ),
    )
    _insert(
        conn,
        Manager.__table__,
        (
            {
                "id": i,
                "department": rng.choice(["sales", "engineering", "support", "finance"]),
                "budget": decimal.Decimal(rng.randrange(10**8)) / 100,
                "bio": _words(rng, rng.randrange(20, 60)),
            }
            for i in range(1, people + 1)
            if kinds[i - 1] == "manager"
        ),
    )


def seed_joinedload(conn: sa.Connection, n: int, rng: random.Random) -> None:
    # n books (= result rows), four per author
    authors = max(1, n // 4)
    _insert(
        conn,
        Author,
        (
            {"id": i, "name": f"Author {i}", "bio": _words(rng, rng.randrange(10, 40))}
            for i in range(1, authors + 1)
        ),
    )
    _insert(
        conn,
        Book,
        (
            {
                "id": i,
                "author_id": 1 + (i - 1) % authors,
                "title": _words(rng, rng.randrange(2, 8)).capitalize(),
                "year": rng.randrange(1900, 2025),
                "isbn": f"978-{rng.randrange(10**9):09d}",
            }
            for i in range(1, n + 1)
        ),
    )


# --- shapes --------------------------------------------------------------------


@dataclasses.dataclass
class Shape:
    name: str
    description: str
    models: tuple[type, ...]
    seed: t.Callable[[sa.Connection, int, random.Random], None]
    load: t.Callable[[Session], list[t.Any]]  # the app's query, .all()
    use: t.Callable[[list[t.Any]], object]  # what the app reads
    # Applies a suggestion's code to the app's query: (session, code) -> rows
    apply: t.Callable[[Session, str], list[t.Any]] | None


_MODELS = {m.__name__: m for m in (NarrowInts, WideStrings, LargeText, Temporal, Manager, Author)}


def _query_apply(base: t.Callable[[Session], t.Any]) -> t.Callable[[Session, str], list[t.Any]]:
    def apply(session: Session, code: str) -> list[t.Any]:
        query = base(session)
        # The suggestion is the subject of this benchmark: apply it as a user would.
        namespace = {"query": query, "load_only": load_only, **_MODELS}
        return eval("query" + code, namespace).all()  # noqa: S307

    return apply


def _select_apply(session: Session, code: str) -> list[t.Any]:
    stmt = eval(code, {"select": sa.select, "load_only": load_only, **_MODELS})  # noqa: S307
    return list(session.execute(stmt).all())


def _q_temporal(s: Session) -> t.Any:
    return s.query(Temporal).filter(Temporal.id > 0).order_by(Temporal.id)


def _q_text(s: Session) -> t.Any:
    return s.query(LargeText).order_by(LargeText.id)


def _q_manager(s: Session) -> t.Any:
    return s.query(Manager).order_by(Manager.id)


SHAPES = [
    Shape(
        "narrow-ints",
        "5 integer columns, select() style, reads 1",
        (NarrowInts,),
        seed_narrow,
        lambda s: list(s.scalars(sa.select(NarrowInts)).all()),
        lambda objs: sum(o.huge for o in objs),
        _select_apply,
    ),
    Shape(
        "wide-strings",
        "24 short string columns, Query style, reads 2",
        (WideStrings,),
        seed_wide,
        lambda s: s.query(WideStrings).all(),
        lambda objs: [(o.code, o.label) for o in objs],
        _query_apply(lambda s: s.query(WideStrings)),
    ),
    Shape(
        "large-text",
        "a 1-4 KB text column, reads the title",
        (LargeText,),
        seed_text,
        lambda s: _q_text(s).all(),
        lambda objs: [o.title for o in objs],
        _query_apply(_q_text),
    ),
    Shape(
        "datetimes-numerics",
        "datetime, date, time, 2 Numeric, Float; reads 1",
        (Temporal,),
        seed_temporal,
        lambda s: _q_temporal(s).all(),
        lambda objs: sum(o.amount for o in objs),
        _query_apply(_q_temporal),
    ),
    Shape(
        "joined-inheritance",
        "Manager(Person), two tables, reads name",
        (Person, Manager),
        seed_inheritance,
        lambda s: _q_manager(s).all(),
        lambda objs: [o.name for o in objs],
        _query_apply(_q_manager),
    ),
    Shape(
        "joinedload",
        "Author + joinedload(books), 4 books each; rows = books",
        (Author, Book),
        seed_joinedload,
        lambda s: s.query(Author).options(joinedload(Author.books)).order_by(Author.id).all(),
        lambda objs: [(a.name, [b.title for b in a.books]) for a in objs],
        None,  # two classes: the profiler suggests no projection (by design)
    ),
    Shape(
        "selectinload",
        "Author + selectinload(books), select() style; estimate = all its queries",
        (Author, Book),
        seed_joinedload,
        lambda s: list(
            s.scalars(
                sa.select(Author).options(selectinload(Author.books)).order_by(Author.id)
            ).all()
        ),
        lambda objs: [(a.name, [b.title for b in a.books]) for a in objs],
        None,  # a load_only suggestion sizes the authors only: not comparable
    ),
]


@dataclasses.dataclass
class Result:
    shape: str
    rows: int
    instances: int
    measured: int
    estimated: int
    suggestion: str | None = None
    proj_measured: int | None = None
    proj_estimated: int | None = None
    seconds: float = 0.0

    @property
    def error(self) -> float:
        return (self.estimated - self.measured) / self.measured if self.measured else 0.0

    @property
    def proj_error(self) -> float | None:
        if self.proj_measured is None or self.proj_estimated is None or not self.proj_measured:
            return None
        return (self.proj_estimated - self.proj_measured) / self.proj_measured


def print_top_allocations(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int, per: int
) -> None:
    """Where the retained bytes were allocated, by source line, per result row."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        where = f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
        print(
            f"      {stat.size_diff / per:8.1f} B/row  {stat.count_diff / per:5.2f} blocks/row  "
            f"{where}"
        )


def retained_with_snapshots(fn: t.Callable[[], T], top: int, per: int) -> tuple[T, int]:
    """Like ``retained_bytes``, printing the top allocation sites when ``top`` > 0."""
    if top <= 0:
        return retained_bytes(fn)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        start = tracemalloc.get_traced_memory()[0]
        result = fn()
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - start
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    print_top_allocations(before, after, top, per)
    return result, retained


def run_shape(engine: sa.Engine, shape: Shape, rows: int, top: int = 0) -> Result:
    started = time.perf_counter()
    tables = [m.__table__ for m in shape.models]  # type: ignore[attr-defined]
    Base.metadata.drop_all(engine, tables=tables)
    Base.metadata.create_all(engine, tables=tables)
    try:
        with engine.begin() as conn:
            shape.seed(conn, rows, random.Random(rows))

        # 1. the estimate (this run also warms the statement cache)
        with Session(engine) as session, flask_querymem.profile() as report:
            objs = shape.load(session)
            shape.use(objs)
        del objs
        # the query, plus the relationship loads it triggered (selectinload)
        query = [q for q in report.queries if q.entities][0]
        suggestion = query.suggestion
        estimated = sum(q.estimated_bytes for q in report.queries)

        # 2. what the same query's result really retains
        with Session(engine) as session:
            if top:
                print(f"    {shape.name} x {rows}: where the entities' bytes were allocated")
            objs, measured = retained_with_snapshots(lambda: shape.load(session), top, rows)
            instances = len(session.identity_map)
            del objs
        result = Result(shape.name, rows, instances, measured, estimated)

        # 3. the suggested projection, applied to the same query
        if suggestion is not None and shape.apply is not None:
            apply = shape.apply
            result.suggestion = suggestion.code
            with Session(engine) as session:
                apply(session, suggestion.code)  # warm the statement cache
                session.expunge_all()
                projected, result.proj_measured = retained_bytes(
                    lambda: apply(session, suggestion.code)
                )
                del projected
            result.proj_estimated = suggestion.estimated_bytes
    finally:
        Base.metadata.drop_all(engine, tables=tables)
    result.seconds = time.perf_counter() - started
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Compare flask-querymem's memory estimates with tracemalloc measurements "
        "over several model shapes (target: every estimate within 10%%).",
    )
    p.add_argument(
        "--rows",
        default="10000,100000",
        help="comma-separated row counts (default: %(default)s)",
    )
    p.add_argument(
        "--database-url",
        help="SQLAlchemy URL (default: a SQLite file in a temporary folder); the benchmark "
        "creates and drops its own bench_acc_* tables",
    )
    p.add_argument(
        "--top",
        type=int,
        default=0,
        metavar="N",
        help="also print the N source lines that allocated most of each entity result "
        "(tracemalloc snapshots grouped by line; slower)",
    )
    p.add_argument(
        "--shapes",
        default=",".join(s.name for s in SHAPES),
        help="comma-separated subset of: %(default)s",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        row_counts = [int(x) for x in args.rows.split(",") if x.strip()]
    except ValueError:
        print(f"--rows: expected comma-separated integers, got {args.rows!r}", file=sys.stderr)
        return 2
    by_name = {s.name: s for s in SHAPES}
    unknown = [n for n in args.shapes.split(",") if n not in by_name]
    if unknown or not row_counts:
        print(f"unknown shape(s) {unknown}; choose from {sorted(by_name)}", file=sys.stderr)
        return 2
    shapes = [by_name[n] for n in args.shapes.split(",")]

    tmp = None
    url = args.database_url
    if not url:
        url, tmp = temp_sqlite_url("accuracy.sqlite")
    engine = sa.create_engine(url)
    print(f"accuracy: {redact_url(url)}")
    print(f"machine: {machine_description(engine)}")
    for shape in shapes:
        print(f"  {shape.name}: {shape.description}")
    print()

    results: list[Result] = []
    try:
        for rows in row_counts:
            for shape in shapes:
                results.append(run_shape(engine, shape, rows, args.top))
                r = results[-1]
                print(
                    f"  ... {r.shape} x {r.rows}: measured {fmt_bytes(r.measured)}, "
                    f"estimated {fmt_bytes(r.estimated)} ({r.seconds:.1f} s)",
                    flush=True,
                )
    finally:
        engine.dispose()
        if tmp is not None:
            tmp.cleanup()

    print()
    print_table(
        [
            "shape",
            "rows",
            "instances",
            "entities measured",
            "estimated",
            "error",
            "projection measured",
            "estimated",
            "error",
        ],
        [
            (
                r.shape,
                r.rows,
                r.instances,
                fmt_bytes(r.measured),
                fmt_bytes(r.estimated),
                fmt_pct(r.error),
                fmt_bytes(r.proj_measured),
                fmt_bytes(r.proj_estimated),
                fmt_pct(r.proj_error),
            )
            for r in results
        ],
    )
    suggestions = sorted({(r.shape, r.suggestion or "-") for r in results})
    print()
    for name, code in suggestions:
        print(f"  suggestion for {name}: {code}")

    errors = [(abs(r.error), r.error, f"{r.shape} x {r.rows} entities") for r in results]
    errors += [
        (abs(e), e, f"{r.shape} x {r.rows} projection")
        for r in results
        if (e := r.proj_error) is not None
    ]
    worst = max(errors)
    met = all(abs_e <= TARGET for abs_e, _, _ in errors)
    print()
    print(
        f"summary: worst error {fmt_pct(worst[1])} ({worst[2]}) over {len(errors)} estimates; "
        f"target within {TARGET:.0%}: {'met' if met else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
