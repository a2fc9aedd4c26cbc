"""Awkward models and data: odd column names, big and nested values, synonyms, hybrids."""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, load_only, mapped_column, synonym

from flask_querymem import profile
from flask_querymem.memory import value_bytes


class Base(DeclarativeBase):
    pass


class Odd(Base):
    __tablename__ = "qmt odd table"
    id: Mapped[int] = mapped_column(primary_key=True)
    # attribute key differs from the column name (with a space and a quote in it)
    user_name: Mapped[str] = mapped_column("user name's", sa.String(50))
    payload: Mapped[dict[str, t.Any]] = mapped_column(sa.JSON)
    blob: Mapped[bytes] = mapped_column(sa.LargeBinary)
    empty: Mapped[str | None] = mapped_column(sa.String(10), nullable=True)
    alias = synonym("user_name")

    @hybrid_property
    def shout(self) -> str:
        return self.user_name.upper()


@pytest.fixture()
def session(database_url: str) -> t.Iterator[Session]:
    engine = sa.create_engine(database_url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    nested: dict[str, t.Any] = {"a": [{"b": list(range(50))}] * 5, "html": "<script>x</script>"}
    with Session(engine) as s:
        s.add_all(
            Odd(id=i, user_name=f"n{i}", payload=nested, blob=b"\x00" * 5000, empty=None)
            for i in range(1, 51)
        )
        s.commit()
    with Session(engine) as s:
        yield s
    Base.metadata.drop_all(engine)
    engine.dispose()


def test_column_key_differs_from_column_name(session: Session) -> None:
    with profile() as report:
        names = [o.user_name for o in session.query(Odd).all()]
    (q,) = report.queries
    assert q.entities[0].columns_read == ["user_name"]
    assert q.suggestion is not None and q.suggestion.code == ".with_entities(Odd.user_name)"
    session.expunge_all()
    rows = eval("session.query(Odd)" + q.suggestion.code).all()  # noqa: S307
    assert [r.user_name for r in rows] == names
    # 5000-byte blobs and nested JSON are counted: far more than a bare instance
    assert q.entities[0].estimated_bytes > 50 * 5000


def test_synonym_and_hybrid_reads_need_instances(session: Session) -> None:
    with profile() as report:
        objs = session.query(Odd).all()
        out = [(o.alias, o.shout) for o in objs]
    assert out[0] == ("n1", "N1")
    (q,) = report.queries
    assert q.entities[0].columns_read == ["user_name"]
    # a Row has neither .alias nor .shout: only load_only (or nothing) is correct
    s = q.suggestion
    assert s is None or s.kind == "load_only"
    if s is not None:
        session.expunge_all()
        assert load_only  # used by the eval below
        again = eval("session.query(Odd)" + s.code).all()  # noqa: S307
        assert [(o.alias, o.shout) for o in again] == out


def test_value_bytes_is_bounded_on_deep_and_shared_values() -> None:
    assert value_bytes(None) == 0 and value_bytes(True) == 0 and value_bytes(7) == 0
    assert value_bytes("") == 0 and value_bytes("x") == 0
    assert value_bytes("hello world") > 0
    deep: t.Any = []
    for _ in range(10_000):
        deep = [deep]
    assert value_bytes(deep) > 0  # no RecursionError
    huge = list(range(1_000_000))
    assert value_bytes(huge) < 10_000_000  # bounded walk, never a full scan
