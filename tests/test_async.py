"""AsyncSession: the profile follows the task's context into SQLAlchemy's greenlet,
and a query's location is the user's ``await`` line, not nothing.

SQLAlchemy runs the ORM of an ``AsyncSession`` in a greenlet spawned by
``greenlet_spawn``; the stack of that greenlet ends there, so the location walk
goes on in the parent greenlet, suspended under the user's coroutine.
Runs on SQLite (aiosqlite) and, when ``QUERYMEM_TEST_DATABASE_URL`` is
PostgreSQL, on asyncpg too.
"""

from __future__ import annotations

import asyncio
import os
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flask_querymem import Report, profile

from .flask_helpers import isolated_database
from .models import Base, User, seed

pytest.importorskip("greenlet", reason="greenlet is needed for SQLAlchemy's asyncio support")

HERE = os.path.abspath(__file__)
ROOTS = (os.path.dirname(HERE),)


def line_of(text: str) -> int:
    lines = [
        i
        for i, s in enumerate(Path(HERE).read_text().splitlines(), 1)
        if text in s and "line_of(" not in s
    ]
    assert len(lines) == 1, (text, lines)
    return lines[0]


async def user_names(session: t.Any) -> list[str]:
    """A shared async helper: its query names the coroutine that awaited it."""
    users = (await session.scalars(sa.select(User).order_by(User.id))).all()  # HELPER AWAIT
    return [u.name for u in users]


async def run_queries(engine: t.Any) -> tuple[list[str], list[str], Report]:
    from sqlalchemy.ext.asyncio import AsyncSession

    async with AsyncSession(engine) as session:
        with profile(app_roots=ROOTS) as report:
            users = (await session.scalars(sa.select(User).order_by(User.id))).all()  # AWAIT
            names = [u.name for u in users]
            again = await user_names(session)  # OUTER AWAIT
    return names, again, report


def check_report(names: list[str], again: list[str], report: Report) -> None:
    assert len(names) == 20 and again == names
    first, second = report.queries
    assert first.entities[0].model == "User" and first.entities[0].count == 20
    assert first.entities[0].columns_read == ["name"]
    assert first.suggestion is not None and first.suggestion.code == "select(User.name)"

    # the location is the await line, across the greenlet boundary
    assert first.location is not None, "no location: the walk stopped at the greenlet"
    assert (first.location.file, first.location.line) == (HERE, line_of("# AWAIT"))
    assert first.location.function == "run_queries"
    assert second.location is not None
    assert (second.location.file, second.location.line) == (HERE, line_of("# HELPER AWAIT"))
    assert second.location.callers[0].line == line_of("# OUTER AWAIT")
    assert second.location.callers[0].function == "run_queries"


def _seed(sync_engine: sa.Engine) -> None:
    Base.metadata.create_all(sync_engine)
    seed(sync_engine)
    with Session(sync_engine) as s:
        assert s.scalar(sa.select(sa.func.count(User.id))) == 20


def test_async_session_on_sqlite(tmp_path: object) -> None:
    pytest.importorskip("aiosqlite", reason="aiosqlite is needed for the SQLite AsyncSession test")
    from sqlalchemy.ext.asyncio import create_async_engine

    path = f"{tmp_path}/async.sqlite"
    sync_engine = sa.create_engine(f"sqlite:///{path}")
    _seed(sync_engine)
    sync_engine.dispose()

    async def main() -> tuple[list[str], list[str], Report]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        try:
            return await run_queries(engine)
        finally:
            await engine.dispose()

    check_report(*asyncio.run(main()))


def test_async_session_on_postgresql(database_url: str, tmp_path: object) -> None:
    url = sa.make_url(database_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip(f"asyncpg test: the test database is not PostgreSQL ({url.drivername})")
    pytest.importorskip("asyncpg", reason="asyncpg is needed for the PostgreSQL AsyncSession test")
    from sqlalchemy.ext.asyncio import create_async_engine

    with isolated_database(database_url, str(tmp_path)) as iso:
        sync_engine = iso.create_engine()
        try:
            _seed(sync_engine)
        finally:
            sync_engine.dispose()
        # the isolated schema: psycopg2 gets "-csearch_path=NAME", asyncpg server_settings
        options = iso.engine_options["connect_args"]["options"]
        schema = options.split("=", 1)[1]
        async_url = sa.make_url(iso.url).set(drivername="postgresql+asyncpg")

        async def main() -> tuple[list[str], list[str], Report]:
            engine = create_async_engine(
                async_url, connect_args={"server_settings": {"search_path": schema}}
            )
            try:
                return await run_queries(engine)
            finally:
                await engine.dispose()

        check_report(*asyncio.run(main()))
