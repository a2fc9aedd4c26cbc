"""Every SQLAlchemy difference flask-querymem relies on, per supported release.

CI runs the suite on SQLAlchemy 2.1, the newest 2.0, 2.0.16 (the oldest that
Flask-SQLAlchemy 3.1 accepts) and 2.0.0 (the oldest the metadata allows): on
2.0.0-2.0.29 ``ORMExecuteState.is_from_statement`` does not exist, and reading
it broke every profile (issue 7).
"""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from flask_querymem import _sa_compat as compat
from flask_querymem import profile

from .models import User


class OldExecuteState:
    """An ORMExecuteState as SQLAlchemy 2.0.0-2.0.29 has it: no is_from_statement."""

    def __init__(self, statement: t.Any) -> None:
        self.statement = statement

    def __getattr__(self, name: str) -> t.Any:
        raise AttributeError(name)


def test_is_from_statement_without_the_public_attribute() -> None:
    plain = sa.select(User)
    from_text = sa.select(User).from_statement(sa.text("SELECT * FROM qmt_user"))
    assert compat.is_from_statement(OldExecuteState(plain)) is False
    assert compat.is_from_statement(OldExecuteState(from_text)) is True


def test_version_is_parsed() -> None:
    assert compat.SA_VERSION == sa.__version__
    assert compat.SA_VERSION_INFO[:2] in ((2, 0), (2, 1))


def test_from_statement_query_is_profiled_without_a_suggestion(seeded_engine: sa.Engine) -> None:
    with Session(seeded_engine) as s, profile() as report:
        stmt = sa.select(User).from_statement(sa.text("SELECT * FROM qmt_user ORDER BY id"))
        names = [u.name for u in s.scalars(stmt)]
    assert len(names) == 20
    assert report.errors == []
    (q,) = report.queries
    assert q.entities[0].count == 20 and q.entities[0].columns_read == ["name"]
    assert q.suggestion is None  # a text() statement cannot be projected


def test_selectin_load_is_tied_to_its_parent_query(seeded_engine: sa.Engine) -> None:
    """2.0.0 does not copy execution options to selectin loads: the top-level
    query context ties them to their parent instead."""
    with Session(seeded_engine) as s, profile() as report:
        users = s.scalars(sa.select(User).options(selectinload(User.addresses))).all()
        n = sum(len(u.addresses) for u in users)
    assert n == 60 and report.errors == []
    parent = report.queries[0]
    loaded_alone = sum(e.estimated_bytes for e in parent.entities)
    with Session(seeded_engine) as s, profile() as plain:
        s.scalars(sa.select(User)).all()
    # the filled collections are counted on the parent (about 0.9 KiB per user)
    assert loaded_alone > plain.queries[0].estimated_bytes + 20 * 700


def test_async_greenlet_is_recognised() -> None:
    pytest.importorskip("greenlet")
    from flask_querymem.location import greenlet_parent_frame

    assert greenlet_parent_frame(None) == (None, None)
    import greenlet

    # a plain greenlet (gevent's, eventlet's) is never crossed
    assert greenlet_parent_frame(greenlet.getcurrent()) == (None, None)
