"""Catalogue fixtures (a database reseeded per run) and the closing summary."""

from __future__ import annotations

import typing as t
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from .harness import RESULTS, Backend, summary_lines


@pytest.fixture(scope="session")
def backend(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Backend]:
    """SQLite (a file of its own) or PostgreSQL (a schema of its own, dropped after)."""
    dialect = sa.engine.make_url(database_url).get_backend_name()
    if dialect == "sqlite":
        folder = tmp_path_factory.mktemp("catalogue_db")
        be = Backend("sqlite:///" + str(folder / "catalogue.sqlite"))
        be.create()
        yield be
        be.drop()
    elif dialect == "postgresql":
        schema = "qmcat_" + uuid.uuid4().hex[:8]
        admin = sa.create_engine(database_url)
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        be = Backend(database_url, connect_args={"options": f"-csearch_path={schema}"})
        try:
            be.create()
            yield be
        finally:
            be.drop()
            with admin.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
    else:
        pytest.skip(f"the scenario catalogue runs on SQLite and PostgreSQL, not {dialect}")


@pytest.fixture(scope="session")
def scenario_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each scenario (and each applied version) is written as a module."""
    return tmp_path_factory.mktemp("catalogue_src")


def pytest_terminal_summary(terminalreporter: t.Any) -> None:
    if RESULTS:
        terminalreporter.write_sep("=", "querymem scenario catalogue")
        for line in summary_lines():
            terminalreporter.write_line(line)
