"""Suggestions stay correct for Flask-SQLAlchemy's helpers, which need entities back."""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, load_only, mapped_column

from flask_querymem import profile


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Book(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "qmt_book"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(100))
    blurb: Mapped[str] = mapped_column(sa.Text)


@pytest.fixture()
def app(database_url: str) -> t.Iterator[Flask]:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    db.init_app(app)
    with app.app_context():
        db.drop_all()
        db.create_all()
        db.session.execute(
            sa.insert(Book),
            [{"id": i, "title": f"Book {i}", "blurb": "long blurb " * 40} for i in range(1, 41)],
        )
        db.session.commit()
        yield app
        db.session.remove()
        db.drop_all()


def test_paginate_select_gets_no_column_projection(app: Flask) -> None:
    with app.test_request_context("/?page=1"), profile() as report:
        page = db.paginate(sa.select(Book).order_by(Book.id), per_page=10)
        titles = [b.title for b in page.items]
    assert titles[0] == "Book 1" and len(titles) == 10
    sel = [q for q in report.queries if q.entities]
    assert len(sel) == 1
    s = sel[0].suggestion
    # db.paginate() calls .scalars(): select(Book.title) would page over strings
    assert s is None or s.kind == "load_only", s
    if s is not None:
        page2 = db.paginate(
            eval("sa.select(Book).order_by(Book.id)" + s.code),  # noqa: S307
            per_page=10,
        )
        assert load_only  # used by the eval above
        assert [b.title for b in page2.items] == titles


def test_model_query_with_entities_suggestion_works_with_paginate(app: Flask) -> None:
    with app.test_request_context("/?page=1"), profile() as report:
        page = Book.query.order_by(Book.id).paginate(per_page=10)
        titles = [b.title for b in page.items]
    s = [q for q in report.queries if q.entities][0].suggestion
    assert s is not None and s.code == ".with_entities(Book.title)"
    with app.test_request_context("/?page=1"):
        page2 = eval("Book.query.order_by(Book.id)" + s.code).paginate(per_page=10)  # noqa: S307
        assert [b.title for b in page2.items] == titles


def test_select_suggestion_carries_a_hint(app: Flask) -> None:
    with profile() as report:
        titles = [b.title for b in db.session.scalars(sa.select(Book).order_by(Book.id))]
    (q,) = report.queries
    assert q.suggestion is not None and q.suggestion.code == "select(Book.title)"
    assert q.suggestion.hint and "session.execute" in q.suggestion.hint
    assert "session.execute" in report.to_text()
    rows = db.session.execute(sa.select(Book.title).order_by(Book.id)).all()
    assert [r.title for r in rows] == titles
