"""Shared fixtures: the database under test comes from QUERYMEM_TEST_DATABASE_URL.

Unset -> a SQLite file in a temporary folder. Set to a server URL that cannot be
reached -> every database test is skipped with the reason (never faked).
"""

from __future__ import annotations

import os
import typing as t
import uuid

import pytest
import sqlalchemy as sa

ENV_VAR = "QUERYMEM_TEST_DATABASE_URL"


def _server_reachable(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "skip with reason"
        return f"{ENV_VAR}={url!r} is not reachable: {exc.__class__.__name__}: {exc}"[:300]
    finally:
        engine.dispose()
    return None


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get(ENV_VAR)
    if not url:
        return "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.sqlite")
    problem = _server_reachable(url)
    if problem:
        pytest.skip(problem)
    return url


@pytest.fixture()
def engine(database_url: str) -> t.Iterator[sa.Engine]:
    """An engine whose tables are dropped after the test (each test makes its own)."""
    eng = sa.create_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture()
def table_prefix() -> str:
    """Unique per test so parallel CI runs against one server never collide."""
    return "qm_" + uuid.uuid4().hex[:8] + "_"
