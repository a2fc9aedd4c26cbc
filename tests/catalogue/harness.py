"""Run a scenario, apply each suggestion exactly as given, re-run, compare.

A scenario is the body of a real module (written to a ``.py`` file, so the
profiler's locations and ``source_before`` point into it) that defines
``run(ctx)`` and returns what the consuming code produced. ``{Q}`` marks where
a ``.with_entities(...)`` / ``.options(...)`` suggestion goes: right after the
query expression; it is rendered as "" for the original run.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import decimal
import importlib.util
import inspect
import itertools
import re
import sys
import typing as t
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

import flask_querymem
from flask_querymem.report import Report, Suggestion

from . import models

MARK = "{Q}"
HEADER = """\
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.catalogue.models import (
    Book, Engineer, Gadget, Manager, Member, Point, Post, Shape, Staff, User, db,
)
"""


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    body: str  # module body after HEADER; defines run(ctx); may hold {Q} marks
    expect_suggestion: bool = False
    tags: tuple[str, ...] = ()

    @property
    def template(self) -> str:
        return HEADER + "\n" + inspect.cleandoc(self.body) + "\n"


@dataclasses.dataclass
class Ctx:
    """What a scenario's ``run`` gets: a fresh session, the engine, the Flask app."""

    session: Session
    engine: sa.Engine
    app: Flask
    dialect: str


# --------------------------------------------------------------------------- backend


class Backend:
    """One database, reseeded before every run (delete + insert in one transaction)."""

    def __init__(self, url: str, connect_args: dict[str, t.Any] | None = None) -> None:
        self.url = url
        self.connect_args = connect_args or {}
        self.engine = sa.create_engine(url, connect_args=self.connect_args)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _fast_sqlite)
        self.app = Flask("querymem_catalogue")
        self.app.config.update(
            SQLALCHEMY_DATABASE_URI=url,
            SQLALCHEMY_ENGINE_OPTIONS={"connect_args": self.connect_args},
        )
        models.db.init_app(self.app)
        if self.dialect == "sqlite":
            with self.app.app_context():
                sa.event.listen(models.db.engine, "connect", _fast_sqlite)
        self.tables = list(models.Base.metadata.sorted_tables)
        self.rows = models.seed_rows()

    def create(self) -> None:
        models.Base.metadata.drop_all(self.engine)
        models.Base.metadata.create_all(self.engine)

    def drop(self) -> None:
        models.Base.metadata.drop_all(self.engine)
        with self.app.app_context():
            models.db.engine.dispose()
        self.engine.dispose()

    def reseed(self) -> None:
        with self.engine.begin() as conn:
            for table in reversed(self.tables):
                conn.execute(table.delete())
            for table in self.tables:
                rows = self.rows.get(table.name)
                if not rows:
                    continue
                keys = [c.name for c in table.columns]
                conn.execute(table.insert(), [{k: r.get(k) for k in keys} for r in rows])
                if self.dialect == "postgresql":
                    conn.execute(
                        sa.text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :n)"),
                        {"t": table.name, "n": max(r["id"] for r in rows)},
                    )

    def state(self) -> dict[str, list[t.Any]]:
        """Every row of every table, sorted: the database's content after a run."""
        with self.engine.connect() as conn:
            return {
                table.name: sorted((tuple(r) for r in conn.execute(sa.select(table))), key=repr)
                for table in self.tables
            }


def _fast_sqlite(dbapi_conn: t.Any, _record: t.Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous=OFF")
    cur.close()


# --------------------------------------------------------------------------- running


@dataclasses.dataclass
class Outcome:
    output: t.Any
    error: BaseException | None
    state: dict[str, list[t.Any]]
    report: Report
    path: str


_counter = itertools.count()


def _profile_kwargs(folder: Path) -> dict[str, t.Any]:
    # newer engines take the application's folders; the scenario file is the app
    params = inspect.signature(flask_querymem.profile).parameters
    return {"app_roots": (str(folder),)} if "app_roots" in params else {}


def run_source(backend: Backend, source: str, folder: Path, stem: str) -> Outcome:
    """Write ``source`` as a module, run its ``run(ctx)`` under ``profile()`` on a
    freshly seeded database; return its output (or exception) and the database."""
    backend.reseed()
    path = folder / f"{stem}.py"
    path.write_text(source)
    modname = f"querymem_catalogue_{stem}_{next(_counter)}"
    output: t.Any = None
    error: BaseException | None = None
    with flask_querymem.profile(**_profile_kwargs(folder)) as report:
        try:
            spec = importlib.util.spec_from_file_location(modname, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module
            spec.loader.exec_module(module)
            with Session(backend.engine) as session:
                ctx = Ctx(session, backend.engine, backend.app, backend.dialect)
                output = module.run(ctx)
                output = _materialise(output)
        except Exception as exc:  # the applied version may break: that is the finding
            error = exc
        finally:
            sys.modules.pop(modname, None)
            with backend.app.app_context():
                models.db.session.remove()
    return Outcome(output, error, backend.state(), report, str(path))


def _materialise(value: t.Any) -> t.Any:
    """Turn generators and other one-shot iterables into lists while the session is open."""
    if isinstance(value, (str, bytes, dict, list, tuple, set, frozenset, Row)) or value is None:
        return value
    if hasattr(value, "__next__"):
        return list(value)
    return value


# --------------------------------------------------------------------------- applying


class Unpasteable(Exception):
    """The suggestion cannot be applied mechanically to this source."""


def _statement_lines(source: str, line: int) -> tuple[int, int]:
    """1-based first/last line of the innermost statement holding ``line``
    (only the header of a compound statement)."""
    best: tuple[int, int] | None = None
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.stmt):
            continue
        start, end = node.lineno, node.end_lineno or node.lineno
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            end = body[0].lineno - 1  # compound: header only
        if start <= line <= end and (best is None or end - start < best[1] - best[0]):
            best = (start, end)
    if best is None:
        raise Unpasteable(f"no statement at line {line}")
    return best


def apply(template: str, sug: Suggestion, line: int) -> str:
    """The scenario's source with ``sug`` applied exactly as given (raises Unpasteable).

    1. ``source_before``/``source_after``: replace that line (the reported one,
       else the only line with that text);
    2. ``code`` starting with ".": insert it at the ``{Q}`` mark of the
       statement on the reported line;
    3. ``select(...)``: replace the only ``select(<Model>)`` of that statement,
       and follow the hint when it says to run it with ``session.execute``.
    Then the suggestion's ``imports`` go to the top of the module.
    """
    original = template.replace(MARK, "")
    if sug.source_before and sug.source_after:
        lines = original.split("\n")
        before = sug.source_before.strip()
        if 0 < line <= len(lines) and lines[line - 1].strip() == before:
            idx = line - 1
        else:
            hits = [i for i, text in enumerate(lines) if text.strip() == before]
            if len(hits) != 1:
                raise Unpasteable(f"source_before {before!r} found {len(hits)} times")
            idx = hits[0]
        indent = lines[idx][: len(lines[idx]) - len(lines[idx].lstrip())]
        after = sug.source_after
        lines[idx] = after if after.startswith(indent) and indent else indent + after.lstrip()
        new = "\n".join(lines)
    else:
        start, end = _statement_lines(original, line)
        tlines = template.split("\n")
        span = "\n".join(tlines[start - 1 : end])
        if sug.code.startswith("."):
            if span.count(MARK) != 1:
                raise Unpasteable(f"{span.count(MARK)} insertion points on lines {start}-{end}")
            span = span.replace(MARK, sug.code)
        elif sug.code.startswith("select("):
            model = sug.columns[0].split(".")[0] if sug.columns else ""
            target = f"select({model})"
            if span.count(target) != 1:
                raise Unpasteable(
                    f"{target} found {span.count(target)} times on lines {start}-{end}"
                )
            span = span.replace(target, sug.code)
            if sug.hint and "session.execute" in sug.hint:
                n_scalars = span.count("session.scalars(")
                if n_scalars == 1:
                    span = span.replace("session.scalars(", "session.execute(")
                elif n_scalars or "session.execute(" not in span:
                    raise Unpasteable("the hint's session.execute cannot be applied here")
        else:
            raise Unpasteable(f"unknown code shape {sug.code!r}")
        tlines[start - 1 : end] = span.split("\n")
        new = "\n".join(tlines).replace(MARK, "")
    missing = [imp for imp in sug.imports if imp.strip() not in new.split("\n")]
    if missing:
        new = "\n".join(missing) + "\n" + new
    return new


# --------------------------------------------------------------------------- comparing


_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


def normalise(value: t.Any) -> t.Any:
    """A structural form of an output: rows and tuples alike, ORM instances by
    class and identity, object addresses in text blanked."""
    if isinstance(value, str):
        return _ADDRESS.sub("0x?", value)
    if isinstance(value, (int, float, decimal.Decimal, datetime.datetime, bytes)):
        return value
    if value is None:
        return None
    if isinstance(value, Row):
        return ("<seq>", [normalise(v) for v in value])
    if isinstance(value, (list, tuple)):
        return ("<seq>", [normalise(v) for v in value])
    if isinstance(value, dict):
        return ("<map>", sorted((repr(normalise(k)), normalise(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return ("<set>", sorted(repr(normalise(v)) for v in value))
    state = getattr(value, "_sa_instance_state", None)
    if state is not None:
        return ("<instance>", type(value).__name__, state.identity)
    return ("<other>", type(value).__name__, normalise(repr(value)))


def same_output(a: t.Any, b: t.Any) -> bool:
    try:
        if a == b and type(a) is type(b):
            return True
    except Exception:  # noqa: BLE001 - a comparison that raises falls back to structure
        pass
    return bool(normalise(a) == normalise(b))


# --------------------------------------------------------------------------- verdicts


@dataclasses.dataclass
class Trial:
    scenario: str
    query_line: int
    code: str
    verdict: str  # "safe" | "exception" | "output" | "database" | "unpasteable"
    detail: str = ""

    def __str__(self) -> str:
        return f"line {self.query_line}: {self.code} -> {self.verdict} {self.detail}".strip()


@dataclasses.dataclass
class Result:
    scenario: str
    suggestions: int
    trials: list[Trial]
    original: Outcome

    @property
    def bad(self) -> list[Trial]:
        return [tr for tr in self.trials if tr.verdict != "safe"]


def check(backend: Backend, sc: Scenario, folder: Path) -> Result:
    """Run ``sc``, then each suggestion applied; classify every suggestion."""
    template = sc.template
    orig = run_source(backend, template.replace(MARK, ""), folder, sc.name)
    if orig.error is not None:
        raise AssertionError(f"scenario {sc.name} itself fails: {orig.error!r}") from orig.error
    mine = [
        q
        for q in orig.report.queries
        if q.suggestion is not None and q.location is not None and q.location.file == orig.path
    ]
    trials: list[Trial] = []
    for n, q in enumerate(mine):
        sug = q.suggestion
        assert sug is not None and q.location is not None
        line = q.location.line
        try:
            applied = apply(template, sug, line)
        except Unpasteable as exc:
            trials.append(Trial(sc.name, line, sug.code, "unpasteable", str(exc)))
            continue
        got = run_source(backend, applied, folder, f"{sc.name}__applied{n}")
        if got.error is not None:
            verdict, detail = "exception", f"{type(got.error).__name__}: {got.error}"[:300]
            fix = _missing_import(got.error, applied)
            if fix is not None:  # tell whether the projection itself would hold
                again = run_source(backend, fix, folder, f"{sc.name}__imported{n}")
                ok = (
                    again.error is None
                    and same_output(orig.output, again.output)
                    and again.state == orig.state
                )
                detail += " (import missing; with it: " + ("safe)" if ok else "still breaks)")
        elif not same_output(orig.output, got.output):
            verdict = "output"
            detail = _difference(orig.output, got.output)
        elif got.state != orig.state:
            verdict, detail = "database", _state_diff(orig.state, got.state)
        else:
            verdict, detail = "safe", ""
        trials.append(Trial(sc.name, line, sug.code, verdict, detail))
    return Result(sc.name, len(mine), trials, orig)


_IMPORTS = {
    "load_only": "from sqlalchemy.orm import load_only",
    "select": "from sqlalchemy import select",
}


def _missing_import(error: BaseException, source: str) -> str | None:
    if isinstance(error, NameError) and error.name in _IMPORTS:
        return _IMPORTS[error.name] + "\n" + source
    return None


def _difference(a: t.Any, b: t.Any) -> str:
    """Where two outputs first differ: ``…before… became …after…``."""
    ra, rb = repr(a), repr(b)
    i = next((n for n, (x, y) in enumerate(zip(ra, rb)) if x != y), min(len(ra), len(rb)))
    lo = max(0, i - 12)
    return f"{ra[lo : i + 24]} became {rb[lo : i + 24]}"


def _state_diff(a: dict[str, list[t.Any]], b: dict[str, list[t.Any]]) -> str:
    tables = [name for name in a if a[name] != b.get(name)]
    return "tables differ: " + ", ".join(tables)


# --------------------------------------------------------------------------- summary

RESULTS: dict[str, Result] = {}
VERDICTS = ("exception", "output", "database", "unpasteable")


def summary_lines() -> list[str]:
    results = list(RESULTS.values())
    trials = [tr for r in results for tr in r.trials]
    lines = [
        f"scenarios: {len(results)}, with a suggestion: {sum(1 for r in results if r.suggestions)}",
        f"suggestions made: {len(trials)}, safe: {sum(1 for tr in trials if tr.verdict == 'safe')}",
    ]
    for verdict in VERDICTS:
        names = sorted({tr.scenario for tr in trials if tr.verdict == verdict})
        count = sum(1 for tr in trials if tr.verdict == verdict)
        lines.append(f"  {verdict}: {count}" + (f" ({', '.join(names)})" if names else ""))
    errors = sorted(r.scenario for r in results if r.original.report.errors)
    if errors:
        lines.append(f"profiles with internal engine errors: {len(errors)} ({', '.join(errors)})")
    return lines
