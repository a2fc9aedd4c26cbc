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

Then the checks of issue 8 (``--items``, see docs/estimates.md), each an
estimate against tracemalloc with the same method:

1. ``load_only``: the estimate of a query's load_only form (what
   ``suggest.estimate`` computes from the full query's samples) against running
   that load_only query; and the cost of deferring one short column;
2. sampling: a result whose newest 30% of rows carry a 3 KB payload, ordered
   newest last and newest first (the whole result's estimate);
3. ``Enum`` and ``uuid.UUID`` columns: the entities and three projections;
4. ``yield_per``: what a stream holds at once (``sizing.stream_held_bytes``)
   against tracemalloc's peak while iterating without keeping the instances.

Target: every estimate within 10% of the measurement.

    python benchmarks/accuracy.py                       # SQLite, 10k and 100k rows
    python benchmarks/accuracy.py --rows 2000 --database-url postgresql+psycopg2://...
    python benchmarks/accuracy.py --shapes '' --items 1,2    # only those checks
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import decimal
import enum
import gc
import random
import sys
import time
import tracemalloc
import typing as t
import uuid

import sqlalchemy as sa
from _common import (
    fmt_bytes,
    fmt_pct,
    machine_description,
    print_table,
    redact_url,
    retained_bytes,
    url_or_temp,
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
from flask_querymem import tracking
from flask_querymem.analysis import suggest
from flask_querymem.analysis.sizing import entity_size, stream_held_bytes
from flask_querymem.record import EntityRecord, ProfileRecord, QueryRecord

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


class Account(Base):
    """Item 1 (load_only) and 4 (yield_per): six columns besides the key."""

    __tablename__ = "bench_acc_account"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(120))
    name: Mapped[str] = mapped_column(sa.String(80))
    city: Mapped[str] = mapped_column(sa.String(60))
    bio: Mapped[str] = mapped_column(sa.Text)
    code: Mapped[str] = mapped_column(sa.String(20))
    visits: Mapped[int]


class Event(Base):
    """Item 2: the newest rows carry a payload, the others none."""

    __tablename__ = "bench_acc_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    payload: Mapped[t.Optional[str]] = mapped_column(sa.Text)  # noqa: UP045 - SQLAlchemy


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


STATUSES = ("active", "disabled", "pending-review")


class Tagged(Base):
    """Item 3: an Enum of a Python enum, an Enum of strings, a UUID."""

    __tablename__ = "bench_acc_tagged"
    id: Mapped[int] = mapped_column(primary_key=True)
    color: Mapped[Color] = mapped_column(sa.Enum(Color, name="bench_acc_color"))
    status: Mapped[str] = mapped_column(sa.Enum(*STATUSES, name="bench_acc_status"))
    token: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    label: Mapped[str] = mapped_column(sa.String(40))


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


def seed_accounts(conn: sa.Connection, n: int, rng: random.Random) -> None:
    _insert(
        conn,
        Account,
        (
            {
                "id": i,
                "email": f"account{i}@example.com",
                "name": f"{_words(rng, 1).title()} {_words(rng, 1).title()} {i}",
                "city": f"{_words(rng, 1).title()} {i % 97}",
                "bio": _words(rng, rng.randrange(10, 40)),
                "code": f"AC-{i:08d}",
                "visits": 1000 + rng.randrange(10**6),
            }
            for i in range(1, n + 1)
        ),
    )


PAYLOAD_SHARE = 0.3  # of the rows: the newest carry a payload


def seed_events(conn: sa.Connection, n: int, rng: random.Random) -> None:
    payload = "event payload, " * 200  # 3000 characters
    first_with = n - int(n * PAYLOAD_SHARE) + 1
    _insert(
        conn,
        Event,
        (
            {
                "id": i,
                "kind": f"kind-{rng.randrange(7)}-event",
                "payload": payload + str(i) if i >= first_with else None,
            }
            for i in range(1, n + 1)
        ),
    )


def seed_tagged(conn: sa.Connection, n: int, rng: random.Random) -> None:
    _insert(
        conn,
        Tagged,
        (
            {
                "id": i,
                "color": rng.choice(list(Color)),
                "status": rng.choice(STATUSES),
                "token": uuid.UUID(int=rng.getrandbits(128)),
                "label": f"label {_words(rng, 2)} {i}",
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


# --- the checks of issue 8 ------------------------------------------------------


@dataclasses.dataclass
class Check:
    item: int
    name: str
    rows: int
    measured: int
    estimated: int

    @property
    def error(self) -> float:
        return (self.estimated - self.measured) / self.measured if self.measured else 0.0


def recorded(run: t.Callable[[], object]) -> ProfileRecord:
    """The raw records of a profile around ``run``: what the analysis sizes from."""
    rec = ProfileRecord()
    tracking.activate(rec)
    try:
        run()
    finally:
        tracking.deactivate(rec)
    return rec


def loaded(rec: ProfileRecord, cls: type) -> tuple[QueryRecord, EntityRecord]:
    q = next(q for q in rec.queries if cls in q.entities)
    return q, q.entities[cls]


def measured_result(engine: sa.Engine, run: t.Callable[[Session], list[t.Any]]) -> int:
    """Bytes the result of ``run`` retains, the statement compiled and cached first."""
    with Session(engine) as session:
        run(session)
        session.expunge_all()
        # PyMySQL keeps the last result's raw rows until the next statement
        result, retained = retained_bytes(lambda: _then_select_1(session, run(session)))
        del result
    return retained


def _then_select_1(session: Session, result: T) -> T:
    session.execute(sa.text("SELECT 1")).all()
    return result


LOAD_ONLY_KEEP = {
    "load_only 1 of 6 columns": ("email",),
    "load_only 3 of 6 columns": ("email", "name", "city"),
    "load_only 5 of 6 columns": ("email", "name", "city", "code", "visits"),
}


def check_load_only(engine: sa.Engine, rows: int) -> list[Check]:
    with Session(engine) as session:
        rec = recorded(lambda: session.query(Account).all())
    _, ent = loaded(rec, Account)
    size = entity_size(ent)
    full = measured_result(engine, lambda s: s.query(Account).all())
    columns = [p.key for p in sa.inspect(Account).column_attrs]
    out = []
    cases = [(name, keep) for name, keep in LOAD_ONLY_KEEP.items()]
    cases.append(("defer 1 short column (city)", ("email", "name", "bio", "code", "visits")))
    for name, keep in cases:
        deferred = [k for k in columns if k != "id" and k not in keep]
        decision = suggest.Decision("load_only", ["id", *keep], deferred)
        current, after = suggest.estimate(decision, ent.count, size)
        attrs = [getattr(Account, k) for k in keep]
        measured = measured_result(
            engine, lambda s, a=attrs: s.query(Account).options(load_only(*a)).all()
        )
        out.append(Check(1, name, rows, measured, int(after)))
        if name.startswith("defer"):
            out.append(
                Check(
                    1, "  its cost over the full query", rows, measured - full, int(after - current)
                )
            )
    return out


def check_sampling(engine: sa.Engine, rows: int) -> list[Check]:
    out = []
    for name, order in (
        (f"payload on the newest {PAYLOAD_SHARE:.0%}, newest last", Event.id),
        (f"payload on the newest {PAYLOAD_SHARE:.0%}, newest first", Event.id.desc()),
    ):

        def run(s: Session, order: t.Any = order) -> list[t.Any]:
            return s.query(Event).order_by(order).all()

        with Session(engine) as session, flask_querymem.profile() as report:
            run(session)
        estimated = sum(q.estimated_bytes for q in report.queries)
        out.append(Check(2, name, rows, measured_result(engine, run), estimated))
    return out


def check_enum_uuid(engine: sa.Engine, rows: int) -> list[Check]:
    def run(s: Session) -> list[t.Any]:
        return list(s.scalars(sa.select(Tagged)).all())

    with Session(engine) as session:
        rec = recorded(lambda: run(session))
    _, ent = loaded(rec, Tagged)
    size = entity_size(ent)
    out = [
        Check(
            3,
            "entities (2 Enum, 1 Uuid)",
            rows,
            measured_result(engine, run),
            int(ent.count * size.per_instance),
        )
    ]
    for keys in (("color", "status"), ("token",), ("id", "color", "status", "token", "label")):
        decision = suggest.Decision("columns", list(keys), style="select")
        _, after = suggest.estimate(decision, ent.count, size)
        cols = [getattr(Tagged, k) for k in keys]
        measured = measured_result(engine, lambda s, c=cols: list(s.execute(sa.select(*c)).all()))
        out.append(Check(3, f"select({', '.join(keys)})", rows, measured, int(after)))
    return out


def check_stream(engine: sa.Engine, rows: int) -> list[Check]:
    batch = max(20, rows // 50)

    def stream(session: Session) -> int:
        n = 0
        for account in session.scalars(sa.select(Account).execution_options(yield_per=batch)):
            n += len(account.email)  # uses each instance, keeps none
        return n

    with Session(engine) as session:
        rec = recorded(lambda: stream(session))
    q, ent = loaded(rec, Account)
    with Session(engine) as session:
        stream(session)  # compile and cache the statement
        session.expunge_all()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            stream(session)
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
    total = int(ent.count * entity_size(ent).per_instance)
    print(
        f"  ... yield_per({batch}) x {rows}: total streamed (estimated) {fmt_bytes(total)}, "
        f"held at once: measured peak {fmt_bytes(peak)}",
        flush=True,
    )
    return [Check(4, f"yield_per({batch}) held at once", rows, peak, stream_held_bytes(q, batch))]


ITEMS: dict[int, tuple[str, tuple[type, ...], t.Callable[[sa.Engine, int], list[Check]]]] = {
    1: ("load_only cost", (Account,), check_load_only),
    2: ("sampling over the whole result", (Event,), check_sampling),
    3: ("Enum and UUID values", (Tagged,), check_enum_uuid),
    4: ("yield_per: held at once", (Account,), check_stream),
}
SEEDS: dict[type, t.Callable[[sa.Connection, int, random.Random], None]] = {
    Account: seed_accounts,
    Event: seed_events,
    Tagged: seed_tagged,
}


def run_checks(engine: sa.Engine, items: list[int], rows: int) -> list[Check]:
    models = list(dict.fromkeys(m for i in items for m in ITEMS[i][1]))
    tables = [m.__table__ for m in models]  # type: ignore[attr-defined]
    Base.metadata.drop_all(engine, tables=tables)
    Base.metadata.create_all(engine, tables=tables)
    out: list[Check] = []
    try:
        with engine.begin() as conn:
            for m in models:
                SEEDS[m](conn, rows, random.Random(rows))
        for i in items:
            started = time.perf_counter()
            out += ITEMS[i][2](engine, rows)
            print(
                f"  ... item {i} ({ITEMS[i][0]}) x {rows}: {time.perf_counter() - started:.1f} s",
                flush=True,
            )
    finally:
        Base.metadata.drop_all(engine, tables=tables)
        if engine.dialect.name == "postgresql":  # the Enum types of Tagged
            with engine.begin() as conn:
                conn.execute(sa.text("DROP TYPE IF EXISTS bench_acc_color, bench_acc_status"))
    return out


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
        help="comma-separated subset of: %(default)s ('' for none)",
    )
    p.add_argument(
        "--items",
        default=",".join(str(i) for i in ITEMS),
        help="comma-separated checks of issue 8 to run ('' for none): "
        + "; ".join(f"{i} = {name}" for i, (name, _, _) in ITEMS.items())
        + " (default: %(default)s)",
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
    names = [n for n in args.shapes.split(",") if n.strip()]
    unknown = [n for n in names if n not in by_name]
    if unknown or not row_counts:
        print(f"unknown shape(s) {unknown}; choose from {sorted(by_name)}", file=sys.stderr)
        return 2
    shapes = [by_name[n] for n in names]
    try:
        items = [int(x) for x in args.items.split(",") if x.strip()]
    except ValueError:
        items = [-1]
    if any(i not in ITEMS for i in items):
        print(f"--items: choose from {sorted(ITEMS)}, got {args.items!r}", file=sys.stderr)
        return 2
    if not shapes and not items:
        print("nothing to run: no shapes and no items", file=sys.stderr)
        return 2

    url, tmp = url_or_temp(args.database_url, "accuracy.sqlite")
    engine = sa.create_engine(url)
    print(f"accuracy: {redact_url(url)}")
    print(f"machine: {machine_description(engine)}")
    for shape in shapes:
        print(f"  {shape.name}: {shape.description}")
    print()

    results: list[Result] = []
    checks: list[Check] = []
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
            if items:
                checks += run_checks(engine, items, rows)
    finally:
        engine.dispose()
        if tmp is not None:
            tmp.cleanup()

    if results:
        print_results(results)
    if checks:
        print()
        print_table(
            ["item", "check", "rows", "measured", "estimated", "error"],
            [
                (
                    c.item,
                    c.name,
                    c.rows,
                    fmt_bytes(c.measured),
                    fmt_bytes(c.estimated),
                    fmt_pct(c.error),
                )
                for c in checks
            ],
        )

    errors = [(abs(r.error), r.error, f"{r.shape} x {r.rows} entities") for r in results]
    errors += [
        (abs(e), e, f"{r.shape} x {r.rows} projection")
        for r in results
        if (e := r.proj_error) is not None
    ]
    errors += [
        (abs(c.error), c.error, f"item {c.item}: {c.name.strip()} x {c.rows}") for c in checks
    ]
    worst = max(errors)
    met = all(abs_e <= TARGET for abs_e, _, _ in errors)
    print()
    print(
        f"summary: worst error {fmt_pct(worst[1])} ({worst[2]}) over {len(errors)} estimates; "
        f"target within {TARGET:.0%}: {'met' if met else 'MISSED'}"
    )
    return 0


def print_results(results: list[Result]) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
