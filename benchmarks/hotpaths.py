"""The profiler's hot paths in isolation: per loaded entity, per attribute read, per profile.

``overhead.py`` times whole requests, where the garbage collector and this
machine's drifting speed make differences of a few percent hard to see. This
script times the three places flask-querymem adds work, each with and without
it, with the garbage collector off during a timed run and the *fastest* of
3 x ``--repeat`` runs kept (timeit's rule: noise only ever adds time). Variants
alternate run by run, so each variant's fastest run comes from the same stretch
of time as the others'.

* load: ``session.scalars(select(Item)).all()`` of ``--rows`` entities: without
  any flask-querymem listener, inside ``profile(track_reads=False)``, inside
  ``profile()`` (the per-instance ``load`` listener and its sampling);
* read: two attributes per entity, in a Python loop and in a Jinja template:
  plain SQLAlchemy descriptors (a second class on the same table, never
  profiled), flask-querymem's descriptors with no profile active ("idle": they
  stay on a class once it was profiled), and while profiling (the per-read sink);
* profile: a whole ``with profile()`` around a 1-row and a 200-row query: the
  fixed cost of starting, stopping and analysing one profile;
* lazy: an N+1 loop, ``--rows / 10`` parents each lazy-loading its one child
  and reading two of the child's columns: per lazy load (the statement
  listeners, the first loaded instance of each execution) and per read of an
  instance that one of those executions loaded (executions of one statement
  from one place record a read site once);
* sizing: ``memory.measure_instance`` of a loaded ``Item``, the work done for
  each instance the sampler sizes.

    python benchmarks/hotpaths.py
    python benchmarks/hotpaths.py --rows 50000 --repeat 21
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import sys
import time
import typing as t

import jinja2
import sqlalchemy as sa
from _common import ItemColumns, machine_description, print_table, redact_url, url_or_temp
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

import flask_querymem
from flask_querymem import tracking


class Base(DeclarativeBase):
    pass


class Item(ItemColumns, Base):
    """The same 9 columns as overhead.py's model."""

    __tablename__ = "bench_hot_item"


class PlainBase(DeclarativeBase):
    """A registry of its own: flask-querymem watches every class of a registry
    one of whose classes a profile loaded, so a class of ``Base`` would get
    its descriptors too, and "without" would time flask-querymem's."""


class ItemPlain(PlainBase):
    """Item's table under a class of another registry that no profile ever
    loads, so its descriptors stay SQLAlchemy's own while Item's are
    flask-querymem's."""

    __table__ = Item.__table__


class Parent(Base):
    __tablename__ = "bench_hot_parent"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(60))
    children: Mapped[list[Child]] = relationship(back_populates="parent", lazy="select")


class Child(Base):
    __tablename__ = "bench_hot_child"

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(sa.ForeignKey("bench_hot_parent.id"))
    title: Mapped[str] = mapped_column(sa.String(80))
    code: Mapped[str] = mapped_column(sa.String(20))
    parent: Mapped[Parent] = relationship(back_populates="children")


TEMPLATE = "{% for item in items %}<li>{{ item.name }} &lt;{{ item.email }}&gt;</li>\n{% endfor %}"


def seed(engine: sa.Engine, rows: int) -> None:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    epoch = dt.datetime(2023, 1, 1)
    with engine.begin() as conn:
        for lo in range(1, rows + 1, 10_000):
            conn.execute(
                sa.insert(Item),
                [
                    {
                        "id": i,
                        "name": f"Customer {i}",
                        "email": f"customer{i}@example.com",
                        "city": "Springfield",
                        "phone": f"+1-555-{i:07d}",
                        "street": f"{i % 999} Main Street",
                        "created_at": epoch + dt.timedelta(minutes=i),
                        "updated_at": epoch + dt.timedelta(minutes=i, seconds=7),
                        "notes": "notes nobody reads " * (1 + i % 4),
                    }
                    for i in range(lo, min(lo + 10_000, rows + 1))
                ],
            )
        parents = lazy_parents(rows)
        conn.execute(
            sa.insert(Parent), [{"id": i, "name": f"Parent {i}"} for i in range(1, parents + 1)]
        )
        conn.execute(
            sa.insert(Child),
            [
                {"id": i, "parent_id": i, "title": f"Child number {i}", "code": f"C-{i:08d}"}
                for i in range(1, parents + 1)
            ],
        )


def lazy_parents(rows: int) -> int:
    """Parents of the N+1 loop (each lazy-loads one child)."""
    return max(20, rows // 10)


def timed(fn: t.Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes with the garbage collector off."""
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started
    finally:
        gc.enable()


class Bench:
    """The measurements. Variants of one measurement alternate within each repeat,
    so the fastest run of each comes from the same stretch of time."""

    def __init__(self, session: Session, rows: int) -> None:
        self.session = session
        self.rows = rows
        self.template = jinja2.Environment(autoescape=True).from_string(TEMPLATE)
        self.best: dict[str, float] = {}

    def keep(self, name: str, seconds: float) -> None:
        self.best[name] = min(self.best.get(name, seconds), seconds)

    def load(self, cls: type = Item, n: int | None = None) -> list[t.Any]:
        stmt = sa.select(cls).order_by(cls.id).limit(n or self.rows)  # type: ignore[attr-defined]
        return list(self.session.scalars(stmt).all())

    def timed_load(self, name: str) -> None:
        self.load(n=1)  # same statement (the limit is a parameter): rebuilds caches
        self.session.expunge_all()
        self.keep(name, timed(self.load))
        self.session.expunge_all()

    @staticmethod
    def loop(objs: list[t.Any]) -> None:
        for o in objs:
            o.name  # noqa: B018 - the read is what is timed
            o.email  # noqa: B018

    def render(self, objs: list[t.Any]) -> None:
        self.template.render(items=objs)

    def small_query(self, n: int) -> None:
        objs = self.session.scalars(sa.select(Item).order_by(Item.id).limit(n)).all()
        [o.name for o in objs]
        self.session.expunge_all()

    def small_profile(self, n: int) -> None:
        with flask_querymem.profile():
            self.small_query(n)

    def run_loads(self) -> None:
        for _ in range(3):
            tracking.uninstall()  # no listener at all: a production process
            self.timed_load("load plain")
            with flask_querymem.profile(track_reads=False):
                self.timed_load("load profiled, no reads")
            with flask_querymem.profile():
                self.timed_load("load profiled")

    def run_reads(self, plain: list[t.Any]) -> None:
        """``plain``: ItemPlain instances (SQLAlchemy's own descriptors)."""
        what_fns = (("loop", self.loop), ("template", self.render))
        with flask_querymem.profile():
            tracked = self.load()  # Item instances of a query of this profile
            for _ in range(3):
                for what, fn in what_fns:
                    self.keep(f"read {what} plain", timed(lambda: fn(plain)))  # noqa: B023
                    self.keep(f"read {what} profiled", timed(lambda: fn(tracked)))  # noqa: B023
        # no profile active anywhere: flask-querymem's descriptors stay on the class
        for _ in range(3):
            for what, fn in what_fns:
                self.keep(f"read {what} plain", timed(lambda: fn(plain)))  # noqa: B023
                self.keep(f"read {what} idle", timed(lambda: fn(tracked)))  # noqa: B023
        tracked.clear()
        self.session.expunge_all()

    def lazy_loop(self, parents: list[t.Any]) -> None:
        for p in parents:
            for c in p.children:  # one lazy load per parent
                c.title  # noqa: B018 - the reads are what is timed
                c.code  # noqa: B018

    def lazy_reads(self, parents: list[t.Any]) -> None:
        for p in parents:
            for c in p.children:  # loaded already: reads only
                c.title  # noqa: B018
                c.code  # noqa: B018

    def lazy_round(self, name: str, profiled: bool) -> None:
        """Parents loaded untimed; the loop's lazy loads timed, then its reads again."""

        def run() -> None:
            parents = list(self.session.scalars(sa.select(Parent).order_by(Parent.id)))
            self.keep(f"lazy {name}", timed(lambda: self.lazy_loop(parents)))
            self.keep(f"lazy reads {name}", timed(lambda: self.lazy_reads(parents)))
            parents.clear()
            self.session.expunge_all()

        if profiled:
            with flask_querymem.profile():
                run()
        else:
            tracking.uninstall()  # no listener, plain descriptors
            run()

    def run_lazy(self) -> None:
        for _ in range(3):
            self.lazy_round("plain", False)
            self.lazy_round("profiled", True)

    def run_profiles(self) -> None:
        for _ in range(3):
            for n in (1, 200):
                self.keep(f"profile {n} plain", timed(lambda: self.small_query(n)))  # noqa: B023
                self.keep(f"profile {n} profiled", timed(lambda: self.small_profile(n)))  # noqa: B023


def instrumentation_bytes(columns: int = 30) -> float:
    """Memory flask-querymem's attribute tracking adds per mapped column of a
    class, once per process (the descriptor's class and its ``__get__``)."""
    import tracemalloc

    from flask_querymem import attributes

    class WideBase(DeclarativeBase):
        pass

    body: dict[str, t.Any] = {
        "__tablename__": "bench_hot_wide",
        "id": mapped_column(sa.Integer, primary_key=True),
    }
    body.update({f"c{i}": mapped_column(sa.String(20)) for i in range(columns)})
    wide = type("Wide", (WideBase,), body)
    sa.orm.configure_mappers()  # the descriptors get their impl
    manager = sa.inspect(wide).class_manager
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        attributes.instrument_manager(manager)
        gc.collect()
        added = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return added / len(manager)


def sizing_us(session: Session, repeat: int) -> float:
    """Time to size one loaded ``Item`` (``memory.measure_instance``, what the
    sampler does for each sampled instance), fastest of ``repeat`` runs."""
    from flask_querymem import memory

    items = session.scalars(sa.select(ItemPlain).limit(100)).all()
    states = [sa.inspect(item) for item in items]
    mapper = states[0].mapper
    keys = tuple(p.key for p in mapper.column_attrs)
    shared = memory.shared_value_keys(mapper)
    measure = memory.measure_instance
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(20):
                for st in states:
                    measure(st, st.dict, keys, (), shared)
            best = min(best, (time.perf_counter() - t0) / (20 * len(states)))
    finally:
        gc.enable()
    return best * 1e6


def bench(engine: sa.Engine, rows: int, repeat: int) -> dict[str, float]:
    """Fastest time of each measurement, in seconds."""
    with Session(engine) as session:
        b = Bench(session, rows)
        plain = b.load(ItemPlain)
        b.small_profile(200)  # first profile: installs listeners, instruments Item
        for _ in range(repeat):
            b.run_loads()
            b.run_reads(plain)
            b.run_profiles()
            b.run_lazy()
        b.best["sizing"] = sizing_us(session, 3 * repeat) / 1e6
    tracking.uninstall()
    return b.best


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time flask-querymem's per-entity, per-read and per-profile costs in "
        "isolation (fastest of several runs, garbage collector off).",
    )
    p.add_argument("--rows", type=int, default=20_000, help="entities (default: %(default)s)")
    p.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="repeats; each runs every measurement 3 times (default: %(default)s)",
    )
    p.add_argument(
        "--database-url",
        help="SQLAlchemy URL (default: a SQLite file in a temporary folder); the benchmark "
        "creates and drops its bench_hot_item table",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rows < 200 or args.repeat < 1:
        print("--rows must be at least 200 and --repeat at least 1", file=sys.stderr)
        return 2
    url, tmp = url_or_temp(args.database_url, "hotpaths.sqlite")
    engine = sa.create_engine(url)
    print(f"hotpaths: {redact_url(url)}, {args.rows} entities, fastest of {3 * args.repeat} runs")
    print(f"machine: {machine_description(engine)}")
    print()
    try:
        seed(engine, args.rows)
        best = bench(engine, args.rows, args.repeat)
    finally:
        Base.metadata.drop_all(engine)
        engine.dispose()
        if tmp is not None:
            tmp.cleanup()

    n = args.rows
    parents = lazy_parents(n)
    us = 1e6

    def per(name: str, count: float) -> float:
        return best[name] / count * us

    rows = []
    for label, base, variant, count, unit in [
        ("load, per entity, track_reads=False", "load plain", "load profiled, no reads", n, "us"),
        ("load, per entity", "load plain", "load profiled", n, "us"),
        ("read in a loop, per read (idle)", "read loop plain", "read loop idle", 2 * n, "ns"),
        ("read in a loop, per read", "read loop plain", "read loop profiled", 2 * n, "ns"),
        (
            "read in a template, per read (idle)",
            "read template plain",
            "read template idle",
            2 * n,
            "ns",
        ),
        (
            "read in a template, per read",
            "read template plain",
            "read template profiled",
            2 * n,
            "ns",
        ),
        ("lazy load in an N+1 loop, per load", "lazy plain", "lazy profiled", parents, "us"),
        (
            "read of lazy-loaded instances, per read",
            "lazy reads plain",
            "lazy reads profiled",
            2 * parents,
            "ns",
        ),
        ("profile of a 1-row query", "profile 1 plain", "profile 1 profiled", 1, "ms"),
        ("profile of a 200-row query", "profile 200 plain", "profile 200 profiled", 1, "ms"),
    ]:
        scale = {"us": 1.0, "ns": 1000.0, "ms": 1e-3}[unit]
        a = per(base, count) * scale
        b = per(variant, count) * scale
        rows.append(
            (label, f"{a:.2f} {unit}", f"{b:.2f} {unit}", f"{b - a:+.2f} {unit}", f"{b / a:.2f}x")
        )
    print_table(["measurement", "without", "with flask-querymem", "added", "ratio"], rows)

    load_added = per("load profiled", n) - per("load plain", n)
    read_added = (per("read template profiled", 2 * n) - per("read template plain", 2 * n)) * 1000
    idle_added = (per("read template idle", 2 * n) - per("read template plain", 2 * n)) * 1000
    fixed = (best["profile 1 profiled"] - best["profile 1 plain"]) * 1000
    lazy_added = per("lazy profiled", parents) - per("lazy plain", parents)
    print()
    print(
        f"instrumentation, once per process: {instrumentation_bytes():,.0f} bytes per tracked "
        "column (tracemalloc; a 30-column model's descriptors)"
    )
    print(
        f"sizing, per sampled instance: {best['sizing'] * us:.2f} us "
        "(memory.measure_instance of a 9-column Item)"
    )
    print(
        f"summary: while profiling, +{load_added:.2f} us per loaded entity, "
        f"+{read_added:.0f} ns per attribute read in a template ({idle_added:+.0f} ns when "
        f"idle), +{lazy_added:.1f} us per lazy load, +{fixed:.2f} ms per profile of a 1-row query"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
