"""What flask-querymem costs a Flask app: time per request and memory, four configurations.

A Flask + Flask-SQLAlchemy app whose view loads N ``Item`` entities (9 columns)
and renders two of them per row in an HTML template (``</body>`` included, so
Flask-DebugToolbar injects itself), requested through Flask's test client (or,
with ``--server``, a werkzeug WSGI server over HTTP). Four configurations:

* A: no extensions (production);
* B: Flask-DebugToolbar with its SQLAlchemy panel (``--panels default``: all
  of the toolbar's default panels);
* C: ``QueryMem(app)`` installed but disabled (production config: debug off);
* D: B plus ``QueryMem(app)``: its panel on, every request profiled.

Method:

* each configuration runs in its own worker process, because the core installs
  SQLAlchemy listeners globally on the first profile: in one process, D would
  make A, B and C pay for them too (``--in-process`` shows that variant). All
  workers import the same modules and use the same ``PYTHONHASHSEED``, so their
  heaps (and with them the garbage collector's schedule) are alike;
* only one worker runs at a time; the two sides of each judged ratio run back
  to back (A C B D, then C A D B, ...), and a ratio is the median of the
  per-round ratios: this machine's speed drifts by tens of percent within
  seconds, and adjacent samples see the same speed. Quartiles are printed too;
* the largest size gets ``--rounds`` rounds, smaller ones keep going for
  ``--min-seconds``; ``--gc off`` disables the collector during timed requests;
* memory: one request per configuration and size under tracemalloc (peak during
  the request; kept = still allocated after it and ``gc.collect()``), before the
  timing rounds, while QueryMem's history of the last 20 requests is not full.

Targets: C/A <= 1.02; D/B <= 1.25 at 100,000 entities; memory QueryMem keeps
after a request (D kept - B kept) <= 1% of what the request's entities held.

    python benchmarks/overhead.py
    python benchmarks/overhead.py --gc off
    python benchmarks/overhead.py --sizes 1000,10000 --rounds 5 --server
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
import typing as t

import sqlalchemy as sa
from _common import (
    ItemColumns,
    fmt_bytes,
    machine_description,
    print_table,
    redact_url,
    retained_bytes,
    temp_sqlite_url,
)
from sqlalchemy.orm import DeclarativeBase

CONFIGS = {
    "A": "no extensions",
    "B": "Flask-DebugToolbar, SQLAlchemy panel",
    "C": "QueryMem installed, disabled (debug off)",
    "D": "Flask-DebugToolbar + QueryMem panel",
}
PANEL_SETS = {
    "sqlalchemy": ["flask_debugtoolbar.panels.sqlalchemy.SQLAlchemyDebugPanel"],
    "default": None,  # the toolbar's own default list
}
RATIOS = [("C", "A"), ("D", "B"), ("D", "A")]
TARGET_C_A = 1.02
TARGET_D_B = 1.25
TARGET_D_B_SIZE = 100_000
TARGET_RETAINED = 0.01

TEMPLATE = """<!doctype html>
<html><head><title>Items</title></head>
<body>
<ul>
{% for item in items %}<li>{{ item.name }} &lt;{{ item.email }}&gt;</li>
{% endfor %}</ul>
</body>
</html>
"""


# --- the app -------------------------------------------------------------------


def make_db() -> tuple[t.Any, type]:
    """A Flask-SQLAlchemy instance and its own ``Item`` model.

    Each configuration gets its own model class (same table), so attribute
    instrumentation added for D never touches the classes A, B and C use.
    """
    from flask_sqlalchemy import SQLAlchemy

    class Base(DeclarativeBase):
        pass

    db = SQLAlchemy(model_class=Base)

    class Item(ItemColumns, db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "bench_item"

    return db, Item


def build_app(config: str, url: str, panels: str) -> tuple[t.Any, t.Any, type, t.Any]:
    """(app, db, Item, QueryMem instance or None) for configuration A, B, C or D."""
    import jinja2
    from flask import Flask, render_template

    db, item_cls = make_db()
    app = Flask(f"bench_{config}", root_path=os.path.dirname(os.path.abspath(__file__)))
    app.jinja_loader = jinja2.DictLoader({"items.html": TEMPLATE})  # type: ignore[assignment]
    app.config.update(SQLALCHEMY_DATABASE_URI=url, SECRET_KEY="benchmark-only")
    toolbar = config in "BD"
    if toolbar:
        app.debug = True
        app.config.update(SQLALCHEMY_RECORD_QUERIES=True, DEBUG_TB_INTERCEPT_REDIRECTS=False)
        if PANEL_SETS[panels] is not None:
            app.config["DEBUG_TB_PANELS"] = list(PANEL_SETS[panels])  # type: ignore[arg-type]
    db.init_app(app)
    if toolbar:
        from flask_debugtoolbar import DebugToolbarExtension

        DebugToolbarExtension(app)
    qm = None
    if config in "CD":
        from flask_querymem import QueryMem

        if config == "C":
            app.config["QUERYMEM_ENABLED"] = False
        qm = QueryMem(app)

    @app.get("/items/<int:n>")
    def items(n: int) -> str:
        rows = db.session.scalars(sa.select(item_cls).order_by(item_cls.id).limit(n)).all()
        return render_template("items.html", items=rows)

    return app, db, item_cls, qm


def seed(url: str, rows: int) -> None:
    db, item_cls = make_db()
    table = item_cls.__table__  # type: ignore[attr-defined]
    engine = sa.create_engine(url)
    rng = random.Random(rows)
    epoch = dt.datetime(2023, 1, 1, 8, 0, 0)
    try:
        table.drop(engine, checkfirst=True)
        table.create(engine)
        with engine.begin() as conn:
            for lo in range(1, rows + 1, 10_000):
                conn.execute(
                    table.insert(),
                    [
                        {
                            "id": i,
                            "name": f"Customer {i}",
                            "email": f"customer{i}@example.com",
                            "city": rng.choice(["Springfield", "Shelbyville", "Ogdenville"]),
                            "phone": f"+1-555-{i:07d}",
                            "street": f"{rng.randrange(1, 999)} Main Street",
                            "created_at": epoch + dt.timedelta(minutes=i),
                            "updated_at": epoch + dt.timedelta(minutes=i, seconds=rng.random()),
                            "notes": "notes nobody reads in this view " * rng.randrange(1, 5),
                        }
                        for i in range(lo, min(lo + 10_000, rows + 1))
                    ],
                )
    finally:
        engine.dispose()


def drop(url: str) -> None:
    _, item_cls = make_db()
    engine = sa.create_engine(url)
    try:
        item_cls.__table__.drop(engine, checkfirst=True)  # type: ignore[attr-defined]
    finally:
        engine.dispose()


# --- one configuration ---------------------------------------------------------


def import_everything() -> None:
    """Import every module any configuration uses, in every configuration.

    Why: about half of a 100k-entity request is the cyclic garbage collector, and
    how often it runs a full collection depends on how many objects the process
    already holds. Workers with the same imports hold nearly the same heap, so A
    and C (or B and D) differ only by what the extension does per request.
    Importing flask-querymem installs nothing (its listeners come with the first
    profile), which ``op_check`` verifies.
    """
    import flask_debugtoolbar  # noqa: F401
    import flask_debugtoolbar.panels.sqlalchemy  # noqa: F401

    import flask_querymem.analysis  # noqa: F401
    import flask_querymem.extension  # noqa: F401
    import flask_querymem.panel  # noqa: F401
    import flask_querymem.profiler  # noqa: F401


class Worker:
    """One configuration's app and the operations the driver asks for."""

    def __init__(self, config: str, url: str, panels: str, server: bool) -> None:
        import_everything()
        self.config = config
        self.app, self.db, self.item_cls, self.qm = build_app(config, url, panels)
        self.client = self.app.test_client()
        self._server: t.Any = None
        self._port = 0
        if server:
            from werkzeug.serving import make_server

            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            self._server = make_server("127.0.0.1", 0, self.app, threaded=False)
            self._port = self._server.socket.getsockname()[1]
            threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def request(self, n: int) -> bytes:
        path = f"/items/{n}"
        if self._server is None:
            response = self.client.get(path)
            body = response.data
            status = response.status_code
            response.close()
        else:
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=600)
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                status = resp.status
            finally:
                conn.close()
        if status != 200:
            raise RuntimeError(f"{self.config}: GET {path} returned {status}")
        return body

    # operations (JSON in, JSON out)

    def op_warm(self, n: int, k: int = 2) -> dict[str, t.Any]:
        for _ in range(k):
            self.request(n)
        return {}

    def op_time(self, n: int, k: int, collector: bool = True) -> dict[str, t.Any]:
        gc.collect()
        if not collector:
            gc.disable()
        try:
            started = time.perf_counter()
            for _ in range(k):
                self.request(n)
            return {"seconds": (time.perf_counter() - started) / k}
        finally:
            gc.enable()

    def op_memory(self, n: int) -> dict[str, t.Any]:
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            self.request(n)
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return {"peak": peak - base, "retained": current - base}

    def op_querymem_kept(self, n: int) -> dict[str, t.Any]:
        """Bytes allocated with a flask_querymem frame on the stack and alive after a request.

        Unlike "D kept - B kept", this leaves out what other libraries cache (the
        toolbar's Pygments styles, SQLAlchemy's memoized attributes), but it misses
        memory QueryMem keeps alive without allocating it, which D - B would show.
        """
        gc.collect()
        tracemalloc.start(40)
        try:
            before = tracemalloc.take_snapshot()
            self.request(n)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        kept = 0
        by_line: dict[str, int] = {}
        for stat in after.compare_to(before, "traceback"):
            frames = [f for f in stat.traceback if "flask_querymem" in f.filename]
            if frames and stat.size_diff:
                kept += stat.size_diff
                where = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}"
                by_line[where] = by_line.get(where, 0) + stat.size_diff
        top = sorted(by_line.items(), key=lambda kv: -kv[1])[:3]
        return {"bytes": kept, "top": top}

    def op_entities(self, n: int) -> dict[str, t.Any]:
        """What the view's entities hold (tracemalloc, the accuracy benchmark's method)."""
        item_cls, db = self.item_cls, self.db
        with self.app.app_context():
            stmt = sa.select(item_cls).order_by(item_cls.id).limit(n)
            db.session.scalars(stmt).all()  # compile and connect first
            db.session.expunge_all()
            rows, held = retained_bytes(lambda: db.session.scalars(stmt).all())
            count = len(rows)
            del rows
            db.session.remove()
        return {"bytes": held, "count": count}

    def op_check(self, n: int) -> dict[str, t.Any]:
        """What this configuration really is, seen from a response and the profiler."""
        html = self.request(n).decode("utf-8")
        info: dict[str, t.Any] = {
            "toolbar": 'id="flDebug"' in html,
            "querymem_panel": "flDebugQueryMemPanel" in html,
            "listeners_installed": False,
            "request_hooks": sum(
                len(funcs)
                for registry in (
                    self.app.before_request_funcs,
                    self.app.after_request_funcs,
                    self.app.teardown_request_funcs,
                )
                for funcs in registry.values()
            ),
        }
        if "flask_querymem.tracking" in sys.modules:
            from flask_querymem import tracking

            info["listeners_installed"] = tracking.is_installed()
        if self.qm is not None:
            info["querymem_active"] = self.qm.is_active(self.app)
            history = self.qm.history(self.app)
            if history and history[-1].report is not None:
                report = history[-1].report
                ents = [e for q in report.queries for e in q.entities]
                sugg = [q.suggestion.code for q in report.queries if q.suggestion]
                info["profiled_instances"] = sum(e.count for e in ents)
                info["columns_read"] = sorted({c for e in ents for c in e.columns_read})
                info["estimated_bytes"] = report.totals.estimated_bytes
                info["suggestion"] = sugg[0] if sugg else None
        return info

    def handle(self, op: str, kwargs: dict[str, t.Any]) -> dict[str, t.Any]:
        return t.cast(dict[str, t.Any], getattr(self, "op_" + op)(**kwargs))


def worker_main(config: str, url: str, panels: str, server: bool) -> int:
    """Worker process: answer one JSON command per stdin line on the real stdout."""
    channel = sys.stdout
    sys.stdout = sys.stderr  # anything else printed must not corrupt the channel
    worker = Worker(config, url, panels, server)
    channel.write(json.dumps({"ready": config}) + "\n")
    channel.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        try:
            reply = worker.handle(cmd["op"], cmd.get("kwargs", {}))
        except Exception as exc:  # report to the driver, which stops
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        channel.write(json.dumps(reply) + "\n")
        channel.flush()
    return 0


class WorkerProcess:
    """The driver's handle on a worker process."""

    def __init__(self, config: str, url: str, panels: str, server: bool) -> None:
        env = dict(os.environ, PYTHONHASHSEED="0")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", config]
        cmd += ["--database-url", url, "--panels", panels] + (["--server"] if server else [])
        self.config = config
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def wait_ready(self) -> None:
        self._read()

    def _read(self) -> dict[str, t.Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.config} exited with {self.proc.wait()}")
        reply = t.cast(dict[str, t.Any], json.loads(line))
        if "error" in reply:
            raise RuntimeError(f"worker {self.config}: {reply['error']}")
        return reply

    def send(self, op: str, kwargs: dict[str, t.Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, "kwargs": kwargs}) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, t.Any]:
        return self._read()

    def handle(self, op: str, kwargs: dict[str, t.Any]) -> dict[str, t.Any]:
        self.send(op, kwargs)
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


# --- the driver ----------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time and memory per request of a Flask app in four configurations: "
        "A plain, B Flask-DebugToolbar, C QueryMem disabled, D toolbar + QueryMem.",
    )
    p.add_argument(
        "--sizes",
        default="1000,10000,100000",
        help="comma-separated entity counts per request (default: %(default)s)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=6,
        help="interleaved rounds at the largest size, and at least that many at the "
        "others (default: %(default)s)",
    )
    p.add_argument(
        "--min-seconds",
        type=float,
        default=10.0,
        help="sizes below the largest keep adding rounds until this many seconds have "
        "passed (default: %(default)s)",
    )
    p.add_argument(
        "--batch-entities",
        type=int,
        default=1_000,
        help="a timed sample repeats the request until about this many entities were "
        "loaded, so small requests are not all timer noise (default: %(default)s)",
    )
    p.add_argument(
        "--database-url",
        help="SQLAlchemy URL (default: a SQLite file in a temporary folder); the benchmark "
        "creates and drops its bench_item table",
    )
    p.add_argument(
        "--panels",
        choices=sorted(PANEL_SETS),
        default="sqlalchemy",
        help="toolbar panels in B and D: the SQLAlchemy panel alone, or the toolbar's "
        "defaults (templates, logging, ...); D adds QueryMem's panel (default: %(default)s)",
    )
    p.add_argument(
        "--server",
        action="store_true",
        help="serve each app with a real WSGI server (werkzeug) and request it over HTTP "
        "instead of the test client",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="build the four apps in this process instead of one worker process each "
        "(then QueryMem's global listeners, once installed by D, also run in A, B and C)",
    )
    p.add_argument(
        "--gc",
        choices=("on", "off"),
        default="on",
        help="off: disable the garbage collector during each timed batch (after a "
        "collection). At 100k entities about half of a request is the collector, whose "
        "cost jumps with when full collections happen to run; 'off' leaves the work the "
        "configurations themselves do (default: %(default)s)",
    )
    p.add_argument("--verbose", action="store_true", help="print every timed sample")
    p.add_argument("--worker", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.database_url, args.panels, args.server)
    try:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        print(f"--sizes: expected comma-separated integers, got {args.sizes!r}", file=sys.stderr)
        return 2
    if not sizes or min(sizes) < 1 or args.rounds < 1:
        print("--sizes and --rounds must be positive", file=sys.stderr)
        return 2

    tmp = None
    url = args.database_url
    if not url:
        url, tmp = temp_sqlite_url("overhead.sqlite")
    engine = sa.create_engine(url)
    mode = "in one process" if args.in_process else "one worker process per configuration"
    client = "werkzeug WSGI server over HTTP" if args.server else "Flask test client"
    print(f"overhead: {redact_url(url)}; {client}; {mode}")
    print(f"machine: {machine_description(engine)}")
    engine.dispose()
    print(
        f"toolbar panels in B and D: {args.panels}; garbage collector during timing: "
        f"{args.gc}; at least {args.rounds} interleaved rounds per size"
    )
    for name, text in CONFIGS.items():
        print(f"  {name}: {text}")
    print()

    seed(url, max(sizes))
    workers: dict[str, t.Any] = {}
    try:
        for name in CONFIGS:
            if args.in_process:
                workers[name] = Worker(name, url, args.panels, args.server)
            else:
                workers[name] = WorkerProcess(name, url, args.panels, args.server)
        for w in workers.values():  # the processes start up in parallel
            if isinstance(w, WorkerProcess):
                w.wait_ready()
        return run(workers, sizes, args)
    finally:
        for w in workers.values():
            if isinstance(w, WorkerProcess):
                w.close()
        drop(url)
        if tmp is not None:
            tmp.cleanup()


def call(worker: t.Any, op: str, **kwargs: t.Any) -> dict[str, t.Any]:
    reply = t.cast(dict[str, t.Any], worker.handle(op, kwargs))
    if "error" in reply:
        raise RuntimeError(f"worker {worker.config}: {reply['error']}")
    return reply


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def fmt_iqr(values: list[float]) -> str:
    q1, q2, q3 = quartiles(values)
    return f"{q2:.3f} ({q1:.2f}-{q3:.2f})"


def verdict(values: list[float], target: float) -> str:
    """met / MISSED, or unresolved when the quartiles straddle the target and 1.00."""
    q1, q2, _ = quartiles(values)
    if q2 <= target:
        return "met"
    if q1 <= target:
        return "unresolved: its quartiles reach below the target (machine noise)"
    return "MISSED"


def check_configs(workers: dict[str, t.Any], n: int, in_process: bool) -> bool:
    checks = {name: call(workers[name], "check", n=n) for name in CONFIGS}
    print("what each configuration is (seen from a response):")
    for name, c in checks.items():
        parts = [
            f"toolbar {'yes' if c['toolbar'] else 'no'}",
            f"QueryMem panel {'yes' if c['querymem_panel'] else 'no'}",
            f"QueryMem listeners installed {'yes' if c['listeners_installed'] else 'no'}",
            f"request hooks {c['request_hooks']}",
        ]
        if "querymem_active" in c:
            parts.append(f"QueryMem active {'yes' if c['querymem_active'] else 'no'}")
        if c.get("profiled_instances") is not None:
            parts.append(
                f"profiled {c['profiled_instances']} instances, read {c['columns_read']}, "
                f"suggests {c['suggestion']}"
            )
        print(f"  {name}: " + "; ".join(parts))
    print()
    expected = {
        "A": (False, False, False),
        "B": (True, False, False),
        "C": (False, False, False),
        "D": (True, True, True),
    }
    if in_process:
        print("  (in one process, D's listeners are installed for A, B and C as well)\n")
    ok = True
    for name, c in checks.items():
        seen = (c["toolbar"], c["querymem_panel"], c["listeners_installed"])
        if in_process:  # only toolbar and panel tell the configurations apart
            seen, want = seen[:2], expected[name][:2]
        else:
            want = expected[name]
        if seen != want:
            print(f"configuration {name} is not what it should be: {c}", file=sys.stderr)
            ok = False
    return ok


def measure_memory(
    workers: dict[str, t.Any], sizes: list[int]
) -> tuple[dict[int, dict[str, dict[str, int]]], dict[int, int]]:
    """Peak and retained bytes of one request per configuration and size.

    tracemalloc figures do not depend on CPU contention, so with worker
    processes two configurations are measured at a time (the machine has 2 cores).
    """
    names = list(CONFIGS)
    memory: dict[int, dict[str, dict[str, int]]] = {n: {} for n in sizes}
    entities: dict[int, int] = {}
    for n in sizes:
        entities[n] = call(workers["A"], "entities", n=n)["bytes"]
        for pair in (names[:2], names[2:]):
            if all(isinstance(workers[x], WorkerProcess) for x in pair):
                for x in pair:
                    workers[x].send("memory", {"n": n})
                for x in pair:
                    memory[n][x] = workers[x].receive()
            else:
                for x in pair:
                    memory[n][x] = call(workers[x], "memory", n=n)
    return memory, entities


def time_requests(
    workers: dict[str, t.Any], sizes: list[int], args: argparse.Namespace
) -> dict[int, dict[str, list[float]]]:
    """Interleaved samples: each round runs one batch per configuration.

    The largest size gets ``--rounds`` rounds; smaller (cheaper) sizes keep going
    until ``--min-seconds`` have passed as well, since this machine's speed
    drifts within seconds and more pairs make the paired ratios steadier.
    """
    names = list(CONFIGS)
    samples = {n: {name: [] for name in names} for n in sizes}
    for n in sizes:
        k = max(1, args.batch_entities // n)
        started = time.perf_counter()
        r = 0
        while r < args.rounds or (
            n < max(sizes) and time.perf_counter() - started < args.min_seconds
        ):
            # The two sides of each judged ratio run back to back, first one then
            # the other: A C B D, then C A D B, ...
            order = ["A", "C", "B", "D"] if r % 2 == 0 else ["C", "A", "D", "B"]
            for name in order:
                reply = call(workers[name], "time", n=n, k=k, collector=args.gc == "on")
                samples[n][name].append(reply["seconds"])
            r += 1
        if args.verbose:
            took = time.perf_counter() - started
            print(f"  {n} entities: {r} rounds x {k} requests in {took:.0f} s")
    return samples


def run(workers: dict[str, t.Any], sizes: list[int], args: argparse.Namespace) -> int:
    names = list(CONFIGS)
    started = time.perf_counter()
    # warm up: compile statements and templates, install QueryMem's hooks, fill
    # one-off caches (the memory requests then warm up the larger sizes before they
    # are timed); 4 requests leave QueryMem's 20-entry history far from full
    for name in names:
        call(workers[name], "warm", n=min(sizes), k=4)
    if not check_configs(workers, min(sizes), args.in_process):
        return 1

    # memory: before the timing rounds, so QueryMem's history is not full yet
    memory, entities = measure_memory(workers, sizes)
    samples = time_requests(workers, sizes, args)

    medians = {n: {name: statistics.median(samples[n][name]) for name in names} for n in sizes}
    # Paired ratios: the two samples of a pair ran one after the other, so they saw
    # the same machine speed; the median of the per-round ratios is the figure.
    paired = {
        n: {(x, y): [a / b for a, b in zip(samples[n][x], samples[n][y])] for x, y in RATIOS}
        for n in sizes
    }
    if args.verbose:
        for n in sizes:
            for name in names:
                ms = ", ".join(f"{s * 1000:.1f}" for s in samples[n][name])
                print(f"  {n} {name}: {ms} ms")
        print()

    print("time per request: median; ratios: median of per-round paired ratios (quartiles)")
    print_table(
        ["entities", "rounds", "A", "B", "C", "D", "C/A", "D/B", "D/A"],
        [
            (
                n,
                len(samples[n]["A"]),
                *(f"{medians[n][name] * 1000:.1f} ms" for name in names),
                *(fmt_iqr(paired[n][pair]) for pair in RATIOS),
            )
            for n in sizes
        ],
    )
    print()

    print("memory per request (tracemalloc: peak during the request, kept after it)")
    print_table(
        ["entities", "entities hold", *(f"{x} peak" for x in names), *(f"{x} kept" for x in names)],
        [
            (
                n,
                fmt_bytes(entities[n]),
                *(fmt_bytes(memory[n][name]["peak"]) for name in names),
                *(fmt_bytes(memory[n][name]["retained"]) for name in names),
            )
            for n in sizes
        ],
    )
    kept = {n: memory[n]["D"]["retained"] - memory[n]["B"]["retained"] for n in sizes}
    kept_share = {n: max(kept[n], 0) / entities[n] for n in sizes}
    for n in sizes:
        print(
            f"  {n}: QueryMem kept {fmt_bytes(kept[n])} (D kept - B kept) = "
            f"{kept_share[n]:.3%} of the {fmt_bytes(entities[n])} the entities held"
        )
    own = call(workers["D"], "querymem_kept", n=min(sizes))
    where = ", ".join(f"{line} {fmt_bytes(size)}" for line, size in own["top"])
    print(
        f"  allocated by flask_querymem code and alive after a request: "
        f"{fmt_bytes(own['bytes'])} (mostly {where}); the history keeps "
        f"QUERYMEM_HISTORY_SIZE (20) entries"
    )
    print()

    # C runs exactly A's code per request, at every size: pool its pairs.
    c_a_all = [x for n in sizes for x in paired[n][("C", "A")]]
    c_a = statistics.median(c_a_all)
    big = max(sizes)
    d_b_all = paired[big][("D", "B")]
    d_b = statistics.median(d_b_all)
    d_a = statistics.median(paired[big][("D", "A")])
    worst_kept = max(kept_share.values())
    ok_kept = "met" if worst_kept <= TARGET_RETAINED else "MISSED"
    d_b_note = "" if big == TARGET_D_B_SIZE else f" (the target is set for {TARGET_D_B_SIZE})"
    print(f"done in {time.perf_counter() - started:.0f} s")
    print(
        f"summary: C/A {c_a:.3f} over {len(c_a_all)} pairs (target <= {TARGET_C_A}: "
        f"{verdict(c_a_all, TARGET_C_A)}); D/B at {big} = {d_b:.3f} (target <= {TARGET_D_B}: "
        f"{verdict(d_b_all, TARGET_D_B)}){d_b_note}; D/A at {big} = {d_a:.3f}; QueryMem kept "
        f"max {worst_kept:.2%} of the entities (target <= {TARGET_RETAINED:.0%}: {ok_kept}); "
        f"gc {args.gc}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
