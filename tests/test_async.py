"""AsyncSession: the profile follows the task's context into SQLAlchemy's greenlet."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flask_querymem import profile

from .models import Base, User, seed

aiosqlite = pytest.importorskip("aiosqlite", reason="aiosqlite is needed for the AsyncSession test")
pytest.importorskip("greenlet", reason="greenlet is needed for SQLAlchemy's asyncio support")


def test_async_session_is_profiled(tmp_path: object) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    path = f"{tmp_path}/async.sqlite"
    sync_engine = sa.create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(sync_engine)
    seed(sync_engine)
    with Session(sync_engine) as s:
        assert s.scalar(sa.select(sa.func.count(User.id))) == 20
    sync_engine.dispose()

    async def main() -> tuple[list[str], object]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        try:
            async with AsyncSession(engine) as session:
                with profile() as report:
                    users = (await session.scalars(sa.select(User).order_by(User.id))).all()
                    names = [u.name for u in users]
            return names, report
        finally:
            await engine.dispose()

    names, report = asyncio.run(main())
    assert len(names) == 20
    (q,) = report.queries  # type: ignore[attr-defined]
    assert q.entities[0].model == "User" and q.entities[0].count == 20
    assert q.entities[0].columns_read == ["name"]
    assert q.suggestion is not None and q.suggestion.code == "select(User.name)"
