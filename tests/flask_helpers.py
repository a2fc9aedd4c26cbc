"""Helpers for the extension, panel, example-app and browser tests.

``isolated_database`` gives each test its own namespace on the server named by
``database_url`` (the example app has fixed table names, so table prefixes are
not an option): a fresh SQLite file, a PostgreSQL schema, or a MariaDB/MySQL
database, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import typing as t
import urllib.request
import uuid

import sqlalchemy as sa

PANEL_DOM_ID = "flDebugQueryMemPanel"


class IsolatedDatabase(t.NamedTuple):
    url: str
    engine_options: dict[str, t.Any]

    def flask_config(self) -> dict[str, t.Any]:
        return {
            "SQLALCHEMY_DATABASE_URI": self.url,
            "SQLALCHEMY_ENGINE_OPTIONS": self.engine_options,
        }

    def create_engine(self) -> sa.Engine:
        return sa.create_engine(self.url, **self.engine_options)

    @property
    def standalone_url(self) -> str:
        """One URL carrying everything (for a subprocess that only takes a URL)."""
        options = self.engine_options.get("connect_args", {}).get("options")
        if not options:
            return self.url
        url = sa.make_url(self.url).update_query_dict({"options": options})
        return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def isolated_database(database_url: str, tmp_dir: str) -> t.Iterator[IsolatedDatabase]:
    """Yield a URL (plus engine options) where fixed table names cannot collide."""
    url = sa.make_url(database_url)
    name = "qmx_" + uuid.uuid4().hex[:10]
    backend = url.get_backend_name()
    if backend == "sqlite":
        yield IsolatedDatabase(f"sqlite:///{os.path.join(tmp_dir, name + '.sqlite')}", {})
        return
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        if backend == "postgresql":
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
            options = {"connect_args": {"options": f"-csearch_path={name}"}}
            try:
                yield IsolatedDatabase(url.render_as_string(hide_password=False), options)
            finally:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        elif backend in ("mysql", "mariadb"):
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
            try:
                yield IsolatedDatabase(
                    url.set(database=name).render_as_string(hide_password=False), {}
                )
            finally:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f"DROP DATABASE `{name}`")
        else:  # unknown server: share it and hope the tables are dropped by the test
            yield IsolatedDatabase(url.render_as_string(hide_password=False), {})
    finally:
        admin.dispose()


def panel_content(page: str, app: t.Any = None) -> str:
    """The QueryMem panel's content block out of a page with the toolbar injected.

    With ``QUERYMEM_PANEL_LAZY`` (the default) the page holds a place-holder:
    the body is then fetched from the panel endpoint through ``app``, as the
    panel's JavaScript does when the panel is opened, and put in its place."""
    start = page.find(f'id="{PANEL_DOM_ID}-content"')
    assert start >= 0, "the QueryMem panel content is not in the page"
    end = page.find('class="flDebugPanelContentParent"', page.find(">", start))
    content = page[start : end if end >= 0 else len(page)]
    match = re.search(r'id="qmLazyBody" data-querymem-src="([^"]+)"', content)
    if match is None or app is None:  # inline, or the place-holder itself is wanted
        return content
    src = html.unescape(match.group(1))
    if isinstance(app, str):
        data = json.loads(fetch(app + src))
    else:
        data = app.test_client().get(src).get_json()
    assert data and "html" in data, data
    return content[: match.start()] + t.cast(str, data["html"])


def nav_entry(page: str) -> str:
    """The QueryMem entry of the toolbar's panel list (title and subtitle)."""
    match = re.search(rf'<li id="{PANEL_DOM_ID}">(.*?)</li>', page, re.S)
    assert match, "the QueryMem panel is not in the toolbar's list"
    return match.group(1)


def text_of(fragment: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed (for readable assertions)."""
    no_script = re.sub(r"<(script|style)\b.*?</\1>", " ", fragment, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", no_script)).split())


def run_query_here(session: t.Any, statement: t.Any) -> list[t.Any]:
    """Stand-in for an app's database utility module (QUERYMEM_IGNORE_MODULES tests)."""
    return list(session.execute(statement).scalars().all())


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def flask_command() -> list[str]:
    """The ``flask`` script next to this interpreter (what the README tells people to run)."""
    script = os.path.join(os.path.dirname(sys.executable), "flask")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "flask"]


@contextlib.contextmanager
def example_server(
    database_url: str, rows: int, log_path: str, timeout: float = 120.0
) -> t.Iterator[str]:
    """Run ``flask --app example_app run --debug`` from the repository root; yield its URL.

    The server runs in its own session so it and its reloader child are stopped
    together, by the process group of the process started here.
    """
    port = free_port()
    env = dict(os.environ)
    env.update(
        QUERYMEM_EXAMPLE_DATABASE_URL=database_url,
        QUERYMEM_EXAMPLE_ROWS=str(rows),
        PYTHONUNBUFFERED="1",
    )
    for key in ("FLASK_APP", "FLASK_DEBUG", "FLASK_RUN_PORT", "FLASK_RUN_HOST"):
        env.pop(key, None)
    command = [*flask_command(), "--app", "example_app", "run", "--debug", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"the example server exited:\n{_read(log_path)}")
                try:
                    with urllib.request.urlopen(base + "/", timeout=5) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"the example server did not start:\n{_read(log_path)}")
                time.sleep(0.2)
            yield base
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()[-4000:]


def fetch(url: str, data: bytes | None = None) -> str:
    with urllib.request.urlopen(url, data=data, timeout=60) as response:
        return t.cast(bytes, response.read()).decode("utf-8")


@contextlib.contextmanager
def seeded_querymem_app(database_url: str, tmp_dir: str) -> t.Iterator[tuple[t.Any, t.Any, t.Any]]:
    """(app, db, QueryMem) over the core models (tests/models.py), seeded in an
    isolated database: a debug app with QueryMem active, no measurement and
    every suggestion (``QUERYMEM_MIN_SUGGEST_BYTES = 0``). Skipped without
    Flask-SQLAlchemy. Add the routes, then request them."""
    import pytest
    from flask import Flask

    from flask_querymem import QueryMem

    from .models import Base, seed

    sqlalchemy_ext = pytest.importorskip(
        "flask_sqlalchemy", reason="Flask-SQLAlchemy is needed for the extension test"
    )
    with isolated_database(database_url, tmp_dir) as iso:
        app = Flask(__name__)
        app.config.update(
            SECRET_KEY="x",
            DEBUG=True,
            QUERYMEM_ENABLED=True,
            QUERYMEM_MEASURE="none",
            QUERYMEM_MIN_SUGGEST_BYTES=0,
            **iso.flask_config(),
        )
        db = sqlalchemy_ext.SQLAlchemy(model_class=Base)
        db.init_app(app)
        ext = QueryMem(app)
        with app.app_context():
            Base.metadata.create_all(db.engine)
            seed(db.engine)
        try:
            yield app, db, ext
        finally:
            with app.app_context():
                Base.metadata.drop_all(db.engine)
                db.engine.dispose()
