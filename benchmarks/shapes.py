"""What the QueryMem panel costs on every kind of page: paired CPU and wall ratios.

Each page shape is a Flask + Flask-SQLAlchemy view on a seeded SQLite file,
requested through Flask's test client:

* ``overhead``: overhead.py's own view (its ``bench_item`` table, query and
  template) at ``--overhead-size`` entities; report only;
* ``items10``, ``items1k``, ``items10k``: the same view at 10, 1,000 and
  10,000 entities (one query; the template reads 2 of the 9 columns);
* ``nplus1``: 1,000 authors, each one's ``books`` lazy-loaded in the template
  (1 + 1,000 queries);
* ``distinct100``: 100 statements of 100 different SQL shapes, 3 rows each;
* ``reads10k``: 10,000 entities, each of the 9 columns read 10 times in Python;
* ``wide10k``: a 30-column model, 10,000 entities, 2 columns in the template;
* ``jsonapi``: a JSON list page: 25 books and their authors (24 lazy loads),
  serialized with marshmallow (a hand-written serializer if it is missing).

Configurations, each in its own worker process (QueryMem installs its
SQLAlchemy listeners process-wide on the first profile, so a process that ran
D would make everything else in it pay for them too):

* A: no extensions; C: ``QueryMem(app)`` installed but inactive (debug off);
* B: Flask-DebugToolbar; D: B plus QueryMem and its panel, every request profiled;
* B and D come twice: with the toolbar's default panels (``default``) and with
  its SQLAlchemy panel alone (``lean``).

Method (this machine has 2 shared, noisy cores):

* every worker imports the same modules and runs with the same
  ``PYTHONHASHSEED``; each builds one app per shape (so QueryMem's history is
  per shape), warms it up, and then serves batches of k requests on command;
* one worker runs at a time. A round runs one batch in each configuration, the
  two sides of each ratio back to back, alternating which goes first (B D, then
  D B, ...), and gives one paired ratio D/B per toolbar set (and C/A where
  measured). Reported: median and quartiles of the paired ratios, per request
  CPU time (``time.process_time``: what the process itself spent, which the
  neighbours' load barely moves) and wall time (``time.perf_counter``);
* the goals are judged on the CPU figures; the wall ones are printed beside them;
* memory: one request per configuration under tracemalloc, after the warm-up
  (QueryMem's 20-entry history not full). QueryMem's share = (D kept - B kept) /
  what the page's entities hold (tracemalloc, loaded in A).

    python benchmarks/shapes.py                  # about 7.5 minutes
    python benchmarks/shapes.py --quick          # under a minute, rough figures
    python benchmarks/shapes.py --only nplus1 --rounds 20
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
import typing as t

import sqlalchemy as sa
from _common import (
    ItemColumns,
    fmt_bytes,
    fmt_quartiles,
    git_commit,
    print_header,
    print_table,
    quartiles,
    retained_bytes,
    url_or_temp,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

HERE = os.path.dirname(os.path.abspath(__file__))
LEAN_PANELS = ["flask_debugtoolbar.panels.sqlalchemy.SQLAlchemyDebugPanel"]
TOOLBAR_SETS = ("default", "lean")
CONFIGS = {
    "A": "no extensions",
    "C": "QueryMem installed, inactive (debug off)",
    "B:default": "Flask-DebugToolbar, its default panels",
    "D:default": "B:default + QueryMem panel",
    "B:lean": "Flask-DebugToolbar, SQLAlchemy panel only",
    "D:lean": "B:lean + QueryMem panel",
}
GOAL_C_A = 1.02
GOAL_KEPT = 0.01
KEPT_MIN_INSTANCES = 1000  # the memory goal is judged on pages loading this many


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    label: str
    size: int  # entities (items, authors, statements) at --scale 1
    ratio_goal: float | None = None  # D/B, CPU; None: report only
    added_cpu_ms_goal: float | None = None
    added_wall_ms_goal: float | None = None
    c_a: bool = False  # also time A and C on this page (C/A is pooled over these)
    scaled: bool = True


SHAPES = [
    Shape("overhead", "overhead.py's view (1 query, 2 columns read)", 100_000),
    Shape("items10", "10 entities, 1 query", 10, 1.10, 0.5, 1.0, c_a=True, scaled=False),
    Shape("items1k", "1,000 entities, 2 columns read in Jinja", 1_000, 1.10, 3.0, c_a=True),
    Shape("items10k", "10,000 entities", 10_000, 1.05),
    Shape("nplus1", "1,000 lazy loads (N+1)", 1_000, 1.10),
    Shape("distinct100", "100 distinct query shapes", 100, 1.10),
    Shape("reads10k", "10,000 entities x 9 columns x 10 reads", 10_000, 1.25),
    Shape("wide10k", "30-column model, 10,000 entities", 10_000, 1.10),
    Shape("jsonapi", "JSON API: 25 rows + 24 lazy loads", 25, 1.10, c_a=True, scaled=False),
]
SHAPE_BY_NAME = {s.name: s for s in SHAPES}

TEMPLATES = {
    "authors.html": """<!doctype html>
<html><head><title>Authors</title></head>
<body>
<ul>
{% for a in authors %}<li>{{ a.name }}: {{ a.books|length }} books</li>
{% endfor %}</ul>
</body>
</html>
""",
    "total.html": """<!doctype html>
<html><head><title>Totals</title></head>
<body><p>{{ count }} items, checksum {{ total }}</p></body>
</html>
""",
    "wide.html": """<!doctype html>
<html><head><title>Wide</title></head>
<body>
<ul>
{% for row in rows %}<li>{{ row.c01 }} ({{ row.c02 }})</li>
{% endfor %}</ul>
</body>
</html>
""",
}


def serializer_name() -> str:
    try:
        import marshmallow
    except ImportError:
        return "hand-written (marshmallow is not installed)"
    return f"marshmallow {getattr(marshmallow, '__version__', '')}".strip()


# --- models and data -----------------------------------------------------------


def wide_columns() -> dict[str, t.Any]:
    """29 columns besides the key: strings, integers, floats, datetimes, booleans."""
    kinds = [sa.String(60), sa.Integer(), sa.Float(), sa.DateTime(), sa.Boolean()]
    return {f"c{i:02d}": mapped_column(kinds[(i - 1) % len(kinds)]) for i in range(1, 30)}


def wide_value(i: int, col: int, epoch: dt.datetime) -> t.Any:
    kind = (col - 1) % 5
    if kind == 0:
        return f"value {col} of row {i}"
    if kind == 1:
        return i * col
    if kind == 2:
        return i / (col + 1)
    if kind == 3:
        return epoch + dt.timedelta(minutes=i + col)
    return (i + col) % 2 == 0


class Models(t.NamedTuple):
    db: t.Any
    Item: t.Any
    Author: t.Any
    Book: t.Any
    Wide: t.Any


def make_models() -> Models:
    from flask_sqlalchemy import SQLAlchemy

    class Base(DeclarativeBase):
        pass

    db = SQLAlchemy(model_class=Base)

    class Item(ItemColumns, db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "bench_item"  # overhead.py's table, seeded by overhead.seed

    class Author(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "bench_shape_author"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(120))
        country: Mapped[str] = mapped_column(sa.String(60))
        bio: Mapped[str] = mapped_column(sa.Text)
        books: Mapped[list[Book]] = relationship(back_populates="author", order_by="Book.id")

    class Book(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "bench_shape_book"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(sa.String(200))
        year: Mapped[int]
        isbn: Mapped[str] = mapped_column(sa.String(20))
        author_id: Mapped[int] = mapped_column(sa.ForeignKey("bench_shape_author.id"), index=True)
        author: Mapped[Author] = relationship(back_populates="books")

    attrs: dict[str, t.Any] = {
        "__tablename__": "bench_shape_wide",
        "id": mapped_column(sa.Integer, primary_key=True),
        **wide_columns(),
    }
    wide = type("Wide", (db.Model,), attrs)
    return Models(db, Item, Author, Book, wide)


def own_tables(models: Models) -> list[sa.Table]:
    return [m.__table__ for m in (models.Book, models.Author, models.Wide)]


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Entity counts of every shape at this run's --scale."""

    by_shape: dict[str, int]

    def __getitem__(self, name: str) -> int:
        return self.by_shape[name]

    def to_json(self) -> str:
        return json.dumps(self.by_shape)


def sizes_for(scale: float, overhead_size: int) -> Sizes:
    out = {}
    for s in SHAPES:
        base = overhead_size if s.name == "overhead" else s.size
        out[s.name] = base if not s.scaled else max(2, int(round(base * scale)))
    return Sizes(out)


def seed(url: str, sizes: Sizes) -> None:
    from overhead import seed as seed_items  # overhead.py's exact table and data

    n_items = max(sizes[n] for n in ("overhead", "items10", "items1k", "items10k", "reads10k"))
    seed_items(url, max(n_items, 60))
    models = make_models()
    tables = own_tables(models)
    engine = sa.create_engine(url)
    rng = random.Random(11)
    epoch = dt.datetime(2023, 1, 1, 8, 0, 0)
    n_authors = max(sizes["nplus1"], 25)
    try:
        for table in tables:
            table.drop(engine, checkfirst=True)
        models.db.metadata.create_all(engine, tables=tables)
        authors = [
            {
                "id": i,
                "name": f"Author {i}",
                "country": rng.choice(["Iceland", "Chile", "Kenya", "Japan"]),
                "bio": "A writer of some renown. " * rng.randrange(1, 6),
            }
            for i in range(1, n_authors + 1)
        ]
        # Books 1-25 are the JSON page: 24 distinct authors (book 25 is author 1's
        # second book, already in the identity map), so 24 lazy loads. Then every
        # author gets 2 books in all.
        owners = list(range(1, 25)) + [1]
        count = {a: owners.count(a) for a in set(owners)}
        for a in range(1, n_authors + 1):
            owners += [a] * (2 - count.get(a, 0))
        books = [
            {
                "id": i,
                "title": f"The {rng.choice(['Quiet', 'Long', 'Red', 'Last'])} Book {i}",
                "year": 1950 + i % 70,
                "isbn": f"978-{i:010d}",
                "author_id": a,
            }
            for i, a in enumerate(owners, start=1)
        ]
        wide = [
            {"id": i, **{f"c{c:02d}": wide_value(i, c, epoch) for c in range(1, 30)}}
            for i in range(1, sizes["wide10k"] + 1)
        ]
        with engine.begin() as conn:
            conn.execute(models.Author.__table__.insert(), authors)
            conn.execute(models.Book.__table__.insert(), books)
            for lo in range(0, len(wide), 5_000):
                conn.execute(models.Wide.__table__.insert(), wide[lo : lo + 5_000])
    finally:
        engine.dispose()


def drop(url: str) -> None:
    from overhead import drop as drop_items

    models = make_models()
    engine = sa.create_engine(url)
    try:
        for table in own_tables(models):
            table.drop(engine, checkfirst=True)
    finally:
        engine.dispose()
    drop_items(url)


# --- the pages -----------------------------------------------------------------


def distinct_statements(item_cls: t.Any, count: int) -> list[t.Any]:
    """``count`` SELECTs of distinct SQL: a different (filter, order) column pair each."""
    cols = [
        getattr(item_cls, c)
        for c in (
            "id",
            "name",
            "email",
            "city",
            "phone",
            "street",
            "created_at",
            "updated_at",
            "notes",
        )
    ]
    out = []
    for i in range(count):
        where, order = cols[i % len(cols)], cols[(i // len(cols) + i) % len(cols)]
        desc = (i // (len(cols) * len(cols))) % 2 == 1
        out.append(
            sa.select(item_cls)
            .where(item_cls.id < 50, where.is_not(None))
            .order_by(order.desc() if desc else order, item_cls.id)
            .limit(3)
        )
    return out


def book_serializer() -> t.Callable[[list[t.Any]], list[dict[str, t.Any]]]:
    try:
        from marshmallow import Schema, fields
    except ImportError:

        def dump(books: list[t.Any]) -> list[dict[str, t.Any]]:
            return [
                {
                    "id": b.id,
                    "title": b.title,
                    "year": b.year,
                    "isbn": b.isbn,
                    "author": {
                        "id": b.author.id,
                        "name": b.author.name,
                        "country": b.author.country,
                    },
                }
                for b in books
            ]

        return dump

    class AuthorSchema(Schema):
        id = fields.Int()
        name = fields.Str()
        country = fields.Str()

    class BookSchema(Schema):
        id = fields.Int()
        title = fields.Str()
        year = fields.Int()
        isbn = fields.Str()
        author = fields.Nested(AuthorSchema)

    schema = BookSchema(many=True)
    return lambda books: t.cast("list[dict[str, t.Any]]", schema.dump(books))


def make_view(shape: str, models: Models, n: int) -> t.Callable[[], t.Any]:
    """The page's view function."""
    from flask import jsonify, render_template

    db, item = models.db, models.Item

    if shape in ("overhead", "items10", "items1k", "items10k"):

        def items_view() -> t.Any:  # overhead.py's view, verbatim
            rows = db.session.scalars(sa.select(item).order_by(item.id).limit(n)).all()
            return render_template("items.html", items=rows)

        return items_view
    if shape == "nplus1":
        author = models.Author

        def authors_view() -> t.Any:
            rows = db.session.scalars(sa.select(author).order_by(author.id).limit(n)).all()
            return render_template("authors.html", authors=rows)

        return authors_view
    if shape == "distinct100":
        statements = distinct_statements(item, n)

        def distinct_view() -> t.Any:
            found: list[t.Any] = []
            for stmt in statements:
                found.extend(db.session.scalars(stmt).all())
            return render_template("items.html", items=found)

        return distinct_view
    if shape == "reads10k":

        def reads_view() -> t.Any:
            rows = db.session.scalars(sa.select(item).order_by(item.id).limit(n)).all()
            total = 0
            for it in rows:
                for _ in range(10):
                    total += (
                        it.id
                        + len(it.name)
                        + len(it.email)
                        + len(it.city)
                        + len(it.phone)
                        + len(it.street)
                        + it.created_at.day
                        + it.updated_at.day
                        + len(it.notes)
                    )
            return render_template("total.html", count=len(rows), total=total)

        return reads_view
    if shape == "wide10k":
        wide = models.Wide

        def wide_view() -> t.Any:
            rows = db.session.scalars(sa.select(wide).order_by(wide.id).limit(n)).all()
            return render_template("wide.html", rows=rows)

        return wide_view
    if shape == "jsonapi":
        book = models.Book
        dump = book_serializer()

        def books_api() -> t.Any:
            rows = db.session.scalars(sa.select(book).order_by(book.id).limit(n)).all()
            return jsonify({"items": dump(rows), "count": len(rows)})

        return books_api
    raise ValueError(shape)


def load_entities(shape: str, models: Models, n: int) -> list[t.Any]:
    """What the page's entities are, loaded the way the page loads them (for memory)."""
    db = models.db
    if shape == "nplus1":
        rows = db.session.scalars(sa.select(models.Author).order_by(models.Author.id).limit(n))
        authors = list(rows)
        for a in authors:
            a.books  # noqa: B018 - the lazy load the template does
        return authors
    if shape == "jsonapi":
        books = list(db.session.scalars(sa.select(models.Book).order_by(models.Book.id).limit(n)))
        for b in books:
            b.author  # noqa: B018
        return books
    if shape == "distinct100":
        found: list[t.Any] = []
        for stmt in distinct_statements(models.Item, n):
            found.extend(db.session.scalars(stmt).all())
        return found
    cls = models.Wide if shape == "wide10k" else models.Item
    return list(db.session.scalars(sa.select(cls).order_by(cls.id).limit(n)))


# --- one configuration (a worker process) ----------------------------------------


def import_everything() -> None:
    """Same modules in every worker, so their heaps (and GC schedules) are alike.
    Importing flask-querymem installs nothing: its listeners come with the first profile."""
    import flask_debugtoolbar  # noqa: F401
    import flask_debugtoolbar.panels.sqlalchemy  # noqa: F401
    import jinja2  # noqa: F401

    import flask_querymem.analysis  # noqa: F401
    import flask_querymem.extension  # noqa: F401
    import flask_querymem.panel  # noqa: F401
    import flask_querymem.profiler  # noqa: F401

    try:
        import marshmallow  # noqa: F401
    except ImportError:
        pass


class Worker:
    def __init__(self, config: str, url: str, sizes: Sizes) -> None:
        import_everything()
        self.config = config
        self.url = url
        self.sizes = sizes
        self.models = make_models()
        self.apps: dict[str, tuple[t.Any, t.Any, t.Any]] = {}  # shape: (app, client, qm)

    def app_for(self, shape: str) -> tuple[t.Any, t.Any, t.Any]:
        if shape not in self.apps:
            self.apps[shape] = self.build(shape)
        return self.apps[shape]

    def build(self, shape: str) -> tuple[t.Any, t.Any, t.Any]:
        import jinja2
        from flask import Flask
        from overhead import TEMPLATE

        kind, _, toolbar_set = self.config.partition(":")
        app = Flask(f"shapes_{shape}_{kind}_{toolbar_set}", root_path=HERE)
        app.jinja_loader = jinja2.DictLoader(  # type: ignore[assignment]
            {"items.html": TEMPLATE, **TEMPLATES}
        )
        app.config.update(SQLALCHEMY_DATABASE_URI=self.url, SECRET_KEY="benchmark-only")
        toolbar = kind in ("B", "D")
        if toolbar:
            app.debug = True
            app.config.update(SQLALCHEMY_RECORD_QUERIES=True, DEBUG_TB_INTERCEPT_REDIRECTS=False)
            if toolbar_set == "lean":
                app.config["DEBUG_TB_PANELS"] = list(LEAN_PANELS)
        self.models.db.init_app(app)
        if toolbar:
            from flask_debugtoolbar import DebugToolbarExtension

            DebugToolbarExtension(app)
        qm = None
        if kind in ("C", "D"):
            from flask_querymem import QueryMem

            if kind == "C":
                app.config["QUERYMEM_ENABLED"] = False
            qm = QueryMem(app)
        app.add_url_rule("/page", "page", make_view(shape, self.models, self.sizes[shape]))
        return app, app.test_client(), qm

    def request(self, shape: str) -> bytes:
        _, client, _ = self.app_for(shape)
        response = client.get("/page")
        body, status = response.data, response.status_code
        response.close()
        if status != 200:
            raise RuntimeError(f"{self.config} {shape}: GET /page returned {status}")
        return t.cast(bytes, body)

    # operations (JSON in, JSON out)

    def op_warm(self, shape: str, k: int) -> dict[str, t.Any]:
        started = time.perf_counter()
        for _ in range(k):
            self.request(shape)
        return {"seconds": (time.perf_counter() - started) / k}

    def op_time(self, shape: str, k: int) -> dict[str, t.Any]:
        self.app_for(shape)
        gc.collect()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(k):
            self.request(shape)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        return {"cpu": cpu / k, "wall": wall / k}

    def op_memory(self, shape: str) -> dict[str, t.Any]:
        self.app_for(shape)
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            self.request(shape)
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return {"peak": peak - base, "retained": current - base}

    def op_entities(self, shape: str) -> dict[str, t.Any]:
        """Bytes the page's entities hold, and how many instances it loads."""
        app, _, _ = self.app_for(shape)
        db, n = self.models.db, self.sizes[shape]
        with app.app_context():
            load_entities(shape, self.models, n)  # compile and connect first
            db.session.expunge_all()
            rows, held = retained_bytes(lambda: load_entities(shape, self.models, n))
            count = len(db.session.identity_map)
            del rows
            db.session.remove()
        return {"bytes": held, "instances": count}

    def op_check(self, shape: str) -> dict[str, t.Any]:
        app, _, qm = self.app_for(shape)
        body = self.request(shape).decode("utf-8")
        info: dict[str, t.Any] = {
            "toolbar": 'id="flDebug"' in body,
            "querymem_panel": "flDebugQueryMemPanel" in body,
            "json": body.lstrip().startswith("{"),
            "listeners": False,
        }
        if "flask_querymem.tracking" in sys.modules:
            from flask_querymem import tracking

            info["listeners"] = tracking.is_installed()
        if qm is not None:
            info["active"] = qm.is_active(app)
            history = qm.history(app)
            report = history[-1].report if history else None
            if report is not None:
                totals = getattr(report, "totals", None)
                ents = [e for q in report.queries for e in q.entities]
                info["queries"] = getattr(totals, "queries", len(report.queries))
                info["query_groups"] = len(report.queries)
                info["instances"] = getattr(totals, "instances", sum(e.count for e in ents))
                info["read"] = sorted({f"{e.model}.{c}" for e in ents for c in e.columns_read})
                sugg = [q.suggestion.code for q in report.queries if q.suggestion]
                info["suggestion"] = sugg[0] if sugg else None
        return info

    def handle(self, op: str, kwargs: dict[str, t.Any]) -> dict[str, t.Any]:
        return t.cast("dict[str, t.Any]", getattr(self, "op_" + op)(**kwargs))


def worker_main(config: str, url: str, sizes: Sizes) -> int:
    """Answer one JSON command per stdin line on the real stdout."""
    channel = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the channel
    worker = Worker(config, url, sizes)
    channel.write(json.dumps({"ready": config}) + "\n")
    channel.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        try:
            reply = worker.handle(cmd["op"], cmd.get("kwargs", {}))
        except Exception as exc:  # reported to the driver, which stops
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        channel.write(json.dumps(reply) + "\n")
        channel.flush()
    return 0


class WorkerProcess:
    def __init__(self, config: str, url: str, sizes: Sizes) -> None:
        env = dict(os.environ, PYTHONHASHSEED="0")
        cmd = [sys.executable, *(["-W", "error"] if sys.warnoptions == ["error"] else [])]
        cmd += [os.path.abspath(__file__), "--worker", config, "--database-url", url]
        cmd += ["--worker-sizes", sizes.to_json()]
        self.config = config
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def _read(self) -> dict[str, t.Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.config} exited with {self.proc.wait()}")
        reply = t.cast("dict[str, t.Any]", json.loads(line))
        if "error" in reply:
            raise RuntimeError(f"worker {self.config}: {reply['error']}")
        return reply

    def send(self, op: str, **kwargs: t.Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, "kwargs": kwargs}) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, t.Any]:
        return self._read()

    def call(self, op: str, **kwargs: t.Any) -> dict[str, t.Any]:
        self.send(op, **kwargs)
        return self._read()

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def in_pairs(
    workers: dict[str, WorkerProcess], names: list[str], op: str, **kw: t.Any
) -> dict[str, dict[str, t.Any]]:
    """Run ``op`` on two workers at a time (2 cores): only for untimed operations."""
    out = {}
    for i in range(0, len(names), 2):
        pair = names[i : i + 2]
        for name in pair:
            workers[name].send(op, **kw)
        for name in pair:
            out[name] = workers[name].receive()
    return out


# --- the driver ----------------------------------------------------------------


@dataclasses.dataclass
class ShapeResult:
    shape: Shape
    n: int
    k: int = 1
    rounds: int = 0
    samples: dict[str, list[dict[str, float]]] = dataclasses.field(default_factory=dict)
    memory: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    entities: dict[str, int] = dataclasses.field(default_factory=dict)
    checks: dict[str, dict[str, t.Any]] = dataclasses.field(default_factory=dict)

    def ratios(self, x: str, y: str, what: str) -> list[float]:
        return [a[what] / b[what] for a, b in zip(self.samples[x], self.samples[y])]

    def added_ms(self, x: str, y: str, what: str) -> list[float]:
        return [(a[what] - b[what]) * 1000 for a, b in zip(self.samples[x], self.samples[y])]

    def median_ms(self, x: str, what: str) -> float:
        return statistics.median(s[what] for s in self.samples[x]) * 1000

    def kept_share(self, toolbar_set: str) -> tuple[int, float]:
        kept = self.memory[f"D:{toolbar_set}"]["retained"]
        kept -= self.memory[f"B:{toolbar_set}"]["retained"]
        return kept, max(kept, 0) / max(self.entities["bytes"], 1)


def check_configs(res: ShapeResult) -> list[str]:
    """Problems with what each configuration is, seen from a response."""
    problems = []
    json_page = res.checks["B:lean"]["json"]
    for name, c in res.checks.items():
        kind = name[0]
        want_toolbar = kind in "BD" and not json_page
        want = (want_toolbar, kind == "D" and not json_page, kind == "D")
        seen = (c["toolbar"], c["querymem_panel"], c["listeners"])
        if seen != want:
            problems.append(f"{name}: toolbar/panel/listeners {seen}, expected {want}")
        if kind == "D" and not c.get("active"):
            problems.append(f"{name}: QueryMem is not active")
        if kind == "C" and c.get("active"):
            problems.append(f"{name}: QueryMem is active")
    return problems


def measure_shape(
    workers: dict[str, WorkerProcess], shape: Shape, n: int, args: argparse.Namespace
) -> ShapeResult:
    res = ShapeResult(shape, n)
    started_all = time.perf_counter()
    names = [c for c in CONFIGS if shape.c_a or c[0] in "BD"]
    pairs = [(f"D:{s}", f"B:{s}") for s in TOOLBAR_SETS] + ([("C", "A")] if shape.c_a else [])
    # warm up (compiled statements, templates, QueryMem's per-class caches): --warmup
    # requests, or 2 when a request takes long (the first one builds the app; the
    # request, the last one being the check)
    first = in_pairs(workers, names, "warm", shape=shape.name, k=1)
    if args.warmup > 2 and max(w["seconds"] for w in first.values()) < 0.3:
        in_pairs(workers, names, "warm", shape=shape.name, k=args.warmup - 2)
    res.checks = in_pairs(workers, names, "check", shape=shape.name)
    phases = {"warm-up": time.perf_counter()}
    problems = check_configs(res)
    if problems:
        raise RuntimeError(f"{shape.name}: " + "; ".join(problems))
    if args.memory:
        res.entities = workers["A"].call("entities", shape=shape.name)
        mem_names = [f"{k}:{s}" for s in TOOLBAR_SETS for k in "BD"]
        res.memory = in_pairs(workers, mem_names, "memory", shape=shape.name)
        phases["memory"] = time.perf_counter()
    # a sample is a batch of k requests lasting about --sample-seconds
    one = workers["B:lean"].call("time", shape=shape.name, k=1)["wall"]
    res.k = max(1, min(1000, math.ceil(args.sample_seconds / max(one, 1e-6))))
    res.samples = {name: [] for name in names}
    started = time.perf_counter()
    r = 0
    while True:
        if args.rounds is not None:
            if r >= args.rounds:
                break
        elif r >= args.min_rounds and (
            r >= args.max_rounds or time.perf_counter() - started >= args.seconds_per_shape
        ):
            break
        for x, y in pairs:  # the two sides of a ratio back to back, alternating
            for name in (x, y) if r % 2 == 0 else (y, x):
                res.samples[name].append(workers[name].call("time", shape=shape.name, k=res.k))
        r += 1
    res.rounds = r
    phases["timing"] = time.perf_counter()
    if args.verbose:
        marks = [started_all, *phases.values()]
        print(
            f"  {shape.name}: "
            + ", ".join(f"{name} {b - a:.1f} s" for name, a, b in zip(phases, marks, marks[1:]))
        )
    return res


def describe(res: ShapeResult) -> str:
    d = res.checks["D:lean"]
    parts = [
        f"{d.get('queries', '?')} queries ({d.get('query_groups', '?')} groups)",
        f"{d.get('instances', '?')} instances",
    ]
    read = d.get("read") or []
    if read:
        parts.append("read " + (", ".join(read) if len(read) <= 4 else f"{len(read)} columns"))
    if d.get("suggestion"):
        parts.append(f"suggests {d['suggestion']}")
    return "; ".join(parts)


@dataclasses.dataclass
class Goal:
    what: str
    values: list[float]
    target: float
    unit: str = ""

    @property
    def median(self) -> float:
        return quartiles(self.values)[1]

    @property
    def met(self) -> bool:
        return self.median <= self.target

    def text(self) -> str:
        q1, q2, q3 = quartiles(self.values)
        note = ""
        if not self.met and q1 <= self.target:
            note = ", first quartile below the goal"
        return (
            f"{self.what}: {q2:.2f}{self.unit} (quartiles {q1:.2f}..{q3:.2f}) > "
            f"{self.target}{self.unit}{note}"
        )


def report(results: list[ShapeResult], args: argparse.Namespace, elapsed: float) -> None:
    print()
    print("per request: D/B = toolbar with QueryMem / toolbar alone, median (quartiles) of the")
    print("paired per-round ratios; +ms = D - B per request; CPU = time.process_time")
    rows = []
    goals: list[Goal] = []
    for res in results:
        s = res.shape
        for ts in TOOLBAR_SETS:
            d, b = f"D:{ts}", f"B:{ts}"
            cpu_r, wall_r = res.ratios(d, b, "cpu"), res.ratios(d, b, "wall")
            cpu_ms, wall_ms = res.added_ms(d, b, "cpu"), res.added_ms(d, b, "wall")
            goal_txt = "report"
            if s.ratio_goal is not None:
                goals.append(Goal(f"{s.name} {ts}: D/B CPU", cpu_r, s.ratio_goal))
                goal_txt = f"<={s.ratio_goal:.2f}"
            if s.added_cpu_ms_goal is not None:
                goals.append(Goal(f"{s.name} {ts}: added CPU", cpu_ms, s.added_cpu_ms_goal, " ms"))
                goal_txt += f", +{s.added_cpu_ms_goal:g} ms CPU"
            if s.added_wall_ms_goal is not None:
                goals.append(
                    Goal(f"{s.name} {ts}: added wall", wall_ms, s.added_wall_ms_goal, " ms")
                )
                goal_txt += f", +{s.added_wall_ms_goal:g} ms wall"
            rows.append(
                (
                    s.name,
                    ts,
                    f"{res.rounds}x{res.k}",
                    f"{res.median_ms(b, 'cpu'):.1f}",
                    f"{res.median_ms(d, 'cpu'):.1f}",
                    fmt_quartiles(cpu_r),
                    fmt_quartiles(cpu_ms, 1 if res.n > 100 else 2),
                    fmt_quartiles(wall_r),
                    fmt_quartiles(wall_ms, 1 if res.n > 100 else 2),
                    goal_txt,
                )
            )
    print_table(
        [
            "shape",
            "toolbar",
            "rounds",
            "B cpu ms",
            "D cpu ms",
            "D/B cpu",
            "+cpu ms",
            "D/B wall",
            "+wall ms",
            "goal",
        ],
        rows,
    )
    c_a_res = [r for r in results if r.shape.c_a]
    noise: float | None = None
    if c_a_res:
        c_a_cpu = [x for r in c_a_res for x in r.ratios("C", "A", "cpu")]
        c_a_wall = [x for r in c_a_res for x in r.ratios("C", "A", "wall")]
        where = ", ".join(r.shape.name for r in c_a_res)
        print(
            f"\nC/A (QueryMem installed but inactive / plain app), pooled over {where}: "
            f"CPU {fmt_quartiles(c_a_cpu, 3)}, wall {fmt_quartiles(c_a_wall, 3)} "
            f"over {len(c_a_cpu)} pairs (goal <= {GOAL_C_A})"
        )
        for r in c_a_res:
            print(
                f"  {r.shape.name}: A {r.median_ms('A', 'cpu'):.2f} ms, "
                f"C {r.median_ms('C', 'cpu'):.2f} ms CPU; C/A CPU "
                f"{fmt_quartiles(r.ratios('C', 'A', 'cpu'), 3)}"
            )
        goals.append(Goal("C/A CPU, pooled", c_a_cpu, GOAL_C_A))
        # C installs nothing (debug off): how far its quartiles stray from 1 is
        # what this run's machine does to a ratio by itself.
        q1, _, q3 = quartiles(c_a_cpu)
        noise = max(abs(q1 - 1.0), abs(q3 - 1.0))
        print(
            f"noise: C/A (a configuration that installs nothing) spans {q1:.3f}..{q3:.3f}: "
            f"a D/B within {noise:.1%} of its goal is within this run's noise"
        )

    if args.memory:
        print(
            "\nmemory (tracemalloc, one request after warm-up): what the page's entities hold "
            "(loaded in A);\nkept after the request, B and D; QueryMem's share = (D kept - B "
            f"kept) / entities; judged on pages with >= {KEPT_MIN_INSTANCES} instances"
        )
        mrows = []
        judged: list[float] = []
        for res in results:
            for ts in TOOLBAR_SETS:
                kept, share = res.kept_share(ts)
                if res.entities["instances"] >= KEPT_MIN_INSTANCES:
                    judged.append(share)
                mrows.append(
                    (
                        res.shape.name,
                        ts,
                        res.entities["instances"],
                        fmt_bytes(res.entities["bytes"]),
                        fmt_bytes(res.memory[f"D:{ts}"]["peak"] - res.memory[f"B:{ts}"]["peak"]),
                        fmt_bytes(res.memory[f"B:{ts}"]["retained"]),
                        fmt_bytes(res.memory[f"D:{ts}"]["retained"]),
                        fmt_bytes(kept),
                        f"{share:.3%}",
                    )
                )
        print_table(
            [
                "shape",
                "toolbar",
                "instances",
                "entities hold",
                "D-B peak",
                "B kept",
                "D kept",
                "QueryMem kept",
                "share",
            ],
            mrows,
        )
        if judged:
            goals.append(
                Goal(
                    "QueryMem kept / entities (worst page)",
                    [max(judged) * 100],
                    GOAL_KEPT * 100,
                    "%",
                )
            )

    print(f"\ndone in {elapsed:.0f} s")
    ratio_rows = [
        (statistics.median(res.ratios(f"D:{ts}", f"B:{ts}", "cpu")), res.shape.name, ts)
        for res in results
        for ts in TOOLBAR_SETS
    ]
    worst = max(ratio_rows)
    unmet = [g for g in goals if not g.met]
    for g in unmet:
        print(f"  unmet: {g.text()}")
    print(
        f"summary: worst ratio {worst[0]:.2f} ({worst[1]}, {worst[2]}); goals met: "
        f"{len(goals) - len(unmet)}/{len(goals)}"
        + (f"; noise (C/A quartiles) ±{noise:.1%}" if noise is not None else "")
        + ("; unmet: " + "; ".join(g.what for g in unmet) if unmet else "")
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Cost of the QueryMem panel on every kind of page: paired CPU and wall "
        "ratios 'toolbar with QueryMem / toolbar alone', with the toolbar's default panels "
        "and with its SQLAlchemy panel alone.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a rough pass in under a minute: fewer and shorter samples, "
        "overhead.py's view at 10,000 entities",
    )
    p.add_argument(
        "--rounds",
        type=int,
        help="exactly this many rounds per shape (default: as many as fit in "
        "--seconds-per-shape, between --min-rounds and --max-rounds)",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=[s.name for s in SHAPES],
        metavar="NAME",
        help="measure only this shape (repeatable): " + ", ".join(s.name for s in SHAPES),
    )
    p.add_argument(
        "--seconds-per-shape",
        type=float,
        help="timing budget per shape (default: 40, --quick: 2.5)",
    )
    p.add_argument("--min-rounds", type=int, help="default: 6, --quick: 2")
    p.add_argument("--max-rounds", type=int, default=60, help="default: %(default)s")
    p.add_argument(
        "--sample-seconds",
        type=float,
        help="a sample repeats the request until about this long (default: 0.25, --quick: 0.1)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="requests per configuration before measuring (default: %(default)s)",
    )
    p.add_argument(
        "--overhead-size",
        type=int,
        help="entities in overhead.py's view (default: 100000, --quick: 10000)",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the entity counts (not items10 and jsonapi) by this; "
        "the smoke test uses 0.01 (default: %(default)s)",
    )
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure memory with tracemalloc (default: yes, but not with --quick)",
    )
    p.add_argument("--verbose", action="store_true", help="print how long each phase took")
    p.add_argument(
        "--database-url",
        help="SQLAlchemy URL (default: a SQLite file in a "
        "temporary folder); creates and drops bench_item and bench_shape_* tables",
    )
    p.add_argument("--worker", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    p.add_argument("--worker-sizes", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    if args.seconds_per_shape is None:
        args.seconds_per_shape = 2.5 if quick else 40.0
    if args.min_rounds is None:
        args.min_rounds = 2 if quick else 6
    if args.sample_seconds is None:
        args.sample_seconds = 0.1 if quick else 0.25
    if args.overhead_size is None:
        args.overhead_size = 10_000 if quick else 100_000
    if args.memory is None:
        args.memory = not quick
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        sizes = Sizes(json.loads(args.worker_sizes))
        return worker_main(args.worker, args.database_url, sizes)
    if (args.rounds is not None and args.rounds < 1) or args.scale <= 0:
        print("--rounds and --scale must be positive", file=sys.stderr)
        return 2
    sizes = sizes_for(args.scale, args.overhead_size)
    shapes = [s for s in SHAPES if not args.only or s.name in args.only]

    url, tmp = url_or_temp(args.database_url, "shapes.sqlite")
    print_header(url, "shapes: {url}; Flask test client; one worker process per configuration")
    print(f"flask-querymem at {git_commit(HERE)}; JSON page serializer: {serializer_name()}")
    budget = (
        f"{args.rounds} rounds"
        if args.rounds is not None
        else f"{args.min_rounds}-{args.max_rounds} rounds in about {args.seconds_per_shape:g} s"
    )
    print(f"per shape: {budget}; a sample = k requests lasting about {args.sample_seconds:g} s")
    for name, text in CONFIGS.items():
        print(f"  {name}: {text}")
    print()

    started = time.perf_counter()
    seed(url, sizes)
    workers: dict[str, WorkerProcess] = {}
    results: list[ShapeResult] = []
    try:
        for name in CONFIGS:
            workers[name] = WorkerProcess(name, url, sizes)
        for w in workers.values():
            w.receive()  # ready
        for shape in shapes:
            t0 = time.perf_counter()
            res = measure_shape(workers, shape, sizes[shape.name], args)
            results.append(res)
            cpu = statistics.median(res.ratios("D:lean", "B:lean", "cpu"))
            cpu_d = statistics.median(res.ratios("D:default", "B:default", "cpu"))
            print(
                f"{shape.name:<12} {shape.label} [n={res.n}]: {describe(res)}; "
                f"D/B CPU lean {cpu:.2f}, default {cpu_d:.2f} "
                f"({res.rounds} rounds, {time.perf_counter() - t0:.0f} s)"
            )
            sys.stdout.flush()
    finally:
        for w in workers.values():
            w.close()
        drop(url)
        if tmp is not None:
            tmp.cleanup()
    report(results, args, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
