"""Helpers for the extension, panel, example-app and browser tests.

``isolated_database`` gives each test its own namespace on the server named by
``database_url`` (the example app has fixed table names, so table prefixes are
not an option): a fresh SQLite file, a PostgreSQL schema, or a MariaDB/MySQL
database, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import typing as t
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


def panel_content(page: str) -> str:
    """The QueryMem panel's content block out of a page with the toolbar injected."""
    start = page.find(f'id="{PANEL_DOM_ID}-content"')
    assert start >= 0, "the QueryMem panel content is not in the page"
    end = page.find('class="flDebugPanelContentParent"', page.find(">", start))
    return page[start : end if end >= 0 else len(page)]


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
