"""Shared fixtures: the database under test comes from QUERYMEM_TEST_DATABASE_URL.

Unset -> a SQLite file in a temporary folder. Set to a server URL that cannot be
reached -> every database test is skipped with the reason (never faked).
"""

from __future__ import annotations

import importlib.metadata
import os
import typing as t
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

ENV_VAR = "QUERYMEM_TEST_DATABASE_URL"


def _flask_sqlalchemy_problem() -> str | None:
    """Why the Flask-SQLAlchemy 3.1 tests cannot run here (None: they can).

    CI runs the core tests once more on the oldest SQLAlchemy the metadata
    allows (2.0.0), which Flask-SQLAlchemy 3.1 (it needs 2.0.16) does not
    support: the modules that need it are left out of that run, and the header
    says so.
    """
    try:
        version = importlib.metadata.version("flask-sqlalchemy")
    except importlib.metadata.PackageNotFoundError:
        return "Flask-SQLAlchemy is not installed"
    major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if major_minor < (3, 1):
        return f"Flask-SQLAlchemy {version} is older than 3.1"
    return None


_FSA_PROBLEM = _flask_sqlalchemy_problem()
#: Test modules that need Flask-SQLAlchemy 3.1 (its DeclarativeBase model_class).
_NEEDS_FSA = [
    "catalogue",
    "test_benchmarks_smoke.py",
    "test_browser.py",
    "test_cli.py",
    "test_example_app.py",
    "test_extension.py",
    "test_flask_sqlalchemy_helpers.py",
    "test_verify.py",
]
collect_ignore = _NEEDS_FSA if _FSA_PROBLEM else []


def pytest_report_header(config: pytest.Config) -> str | None:
    if _FSA_PROBLEM:
        return f"left out ({_FSA_PROBLEM}): " + ", ".join(_NEEDS_FSA)
    return None


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


@pytest.fixture(scope="module")
def seeded_engine(database_url: str) -> t.Iterator[sa.Engine]:
    """The core models (tests/models.py), created and seeded once per module."""
    from .models import Base, seed

    engine = sa.create_engine(database_url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    seed(engine)
    yield engine
    Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture()
def session(seeded_engine: sa.Engine) -> t.Iterator[Session]:
    with Session(seeded_engine) as s:
        yield s
