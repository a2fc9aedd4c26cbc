"""Models and seed data of the scenario catalogue (tables prefixed ``qmc_``).

Shaped like the models of real Flask apps: behaviour that reads no column
(``kind()``, ``css_class``), methods behind ``functools.wraps`` decorators or
delegating to module helpers, a mutable JSON column, single-table inheritance,
a composite, column names that collide with ``Row`` members, a
``MappedAsDataclass`` model and a Flask-SQLAlchemy model (``Member.query``).
Big text columns make every projection worth suggesting.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import typing as t

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    MappedAsDataclass,
    composite,
    mapped_column,
    query_expression,
    relationship,
)

BIG = "lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 10
CITIES = ("Paris", "Oslo", "Lima", "Kyoto")
T0 = datetime.datetime(2024, 1, 1, 12, 0, 0)
JsonType = sa.JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    pass


class DCBase(MappedAsDataclass, DeclarativeBase):
    metadata = Base.metadata


db = SQLAlchemy(model_class=Base)

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def logged(fn: F) -> F:
    """A decorator as apps write them (audit, caching, permission checks)."""

    @functools.wraps(fn)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        return fn(*args, **kwargs)

    return t.cast(F, wrapper)


def describe(obj: t.Any) -> str:
    """A module-level helper a model method delegates to."""
    return f"{obj.name} <{obj.email}>"


def plain(obj: t.Any) -> str:
    """A helper that reads nothing."""
    return "plain"


class User(Base):
    __tablename__ = "qmc_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(60))
    email: Mapped[str] = mapped_column(sa.String(120))
    city: Mapped[str] = mapped_column(sa.String(60))
    score: Mapped[int]
    active: Mapped[bool]
    created_at: Mapped[datetime.datetime]
    bio: Mapped[str] = mapped_column(sa.Text)
    prefs: Mapped[dict[str, t.Any]] = mapped_column(MutableDict.as_mutable(JsonType))
    posts: Mapped[list[Post]] = relationship(back_populates="author", order_by="Post.id")
    rank_expr: Mapped[t.Optional[int]] = query_expression()  # noqa: UP045 - SQLAlchemy

    def kind(self) -> str:
        return "member"

    @property
    def css_class(self) -> str:
        return "user-row"

    @logged
    def badge(self) -> str:
        return "star"

    @logged
    def initials(self) -> str:
        return self.name[:2].upper()

    def label(self) -> str:
        return describe(self)

    def flavour(self) -> str:
        return plain(self)

    @property
    def display_name(self) -> str:
        return f"{self.name} ({self.city})"

    def to_dict(self) -> dict[str, t.Any]:
        return {"id": self.id, "name": self.name}


class Post(Base):
    __tablename__ = "qmc_post"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("qmc_user.id"))
    title: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(20))
    views: Mapped[int]
    body: Mapped[str] = mapped_column(sa.Text)
    author: Mapped[User] = relationship(back_populates="posts")


class Staff(Base):
    __tablename__ = "qmc_staff"
    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(20))
    name: Mapped[str] = mapped_column(sa.String(60))
    salary: Mapped[int]
    notes: Mapped[str] = mapped_column(sa.Text)
    __mapper_args__ = {"polymorphic_on": "type", "polymorphic_identity": "staff"}

    def title(self) -> str:
        return "Staff"


class Manager(Staff):
    team: Mapped[t.Optional[str]] = mapped_column(sa.String(40))  # noqa: UP045 - SQLAlchemy
    __mapper_args__ = {"polymorphic_identity": "manager"}

    def title(self) -> str:
        return "Manager"


class Engineer(Staff):
    language: Mapped[t.Optional[str]] = mapped_column(sa.String(40))  # noqa: UP045
    __mapper_args__ = {"polymorphic_identity": "engineer"}

    def title(self) -> str:
        return "Engineer"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Shape(Base):
    __tablename__ = "qmc_shape"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(sa.String(40))
    x1: Mapped[int]
    y1: Mapped[int]
    payload: Mapped[str] = mapped_column(sa.Text)
    start: Mapped[Point] = composite("x1", "y1")


class Gadget(Base):
    """Column names that are also ``Row`` members."""

    __tablename__ = "qmc_gadget"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(40))
    t: Mapped[str] = mapped_column(sa.String(20))
    count: Mapped[int]
    index: Mapped[int]
    tuple: Mapped[str] = mapped_column(sa.String(20))
    _mapping: Mapped[str] = mapped_column("mapping", sa.String(20))
    _fields: Mapped[str] = mapped_column("fields", sa.String(20))
    blob: Mapped[str] = mapped_column(sa.Text)


class Book(DCBase):
    __tablename__ = "qmc_book"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(100))
    author: Mapped[str] = mapped_column(sa.String(60))
    summary: Mapped[str] = mapped_column(sa.Text)


class Member(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "qmc_member"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(60))
    email: Mapped[str] = mapped_column(sa.String(120))
    karma: Mapped[int]
    active: Mapped[bool]
    about: Mapped[str] = mapped_column(sa.Text)

    def kind(self) -> str:
        return "member"


def seed_rows() -> dict[str, list[dict[str, t.Any]]]:
    """Rows per table, in insertion order (parents first)."""
    users = [
        {
            "id": i,
            "name": f"user{i:02d}",
            "email": f"user{i:02d}@example.com",
            "city": CITIES[i % 4],
            "score": (i * 7) % 50,
            "active": i % 3 != 0,
            "created_at": T0 + datetime.timedelta(days=i),
            "bio": BIG + str(i),
            "prefs": {"theme": "dark" if i % 2 else "light", "n": i},
        }
        for i in range(1, 31)
    ]
    posts = [
        {
            "id": i,
            "author_id": 1 + (i * 7) % 30,
            "title": f"post {i}",
            "status": "published" if i % 3 else "draft",
            "views": (i * 13) % 100,
            "body": BIG + str(i),
        }
        for i in range(1, 61)
    ]
    staff = [
        {
            "id": i,
            "type": ("staff", "manager", "engineer")[i % 3],
            "name": f"staff{i:02d}",
            "salary": 1000 * i,
            "notes": BIG,
            "team": f"team{i % 2}" if i % 3 == 1 else None,
            "language": "python" if i % 3 == 2 else None,
        }
        for i in range(1, 25)
    ]
    shapes = [
        {"id": i, "label": f"shape{i}", "x1": i, "y1": i * 2, "payload": BIG} for i in range(1, 21)
    ]
    gadgets = [
        {
            "id": i,
            "name": f"gadget{i}",
            "t": f"t{i}",
            "count": i * 2,
            "index": i * 3,
            "tuple": f"tup{i}",
            "mapping": f"map{i}",
            "fields": f"fld{i}",
            "blob": BIG,
        }
        for i in range(1, 21)
    ]
    books = [
        {"id": i, "title": f"book {i}", "author": f"author {i % 5}", "summary": BIG}
        for i in range(1, 21)
    ]
    members = [
        {
            "id": i,
            "username": f"member{i:02d}",
            "email": f"m{i}@example.org",
            "karma": i * 3 % 40,
            "active": i % 4 != 0,
            "about": BIG,
        }
        for i in range(1, 41)
    ]
    return {
        "qmc_user": users,
        "qmc_post": posts,
        "qmc_staff": staff,
        "qmc_shape": shapes,
        "qmc_gadget": gadgets,
        "qmc_book": books,
        "qmc_member": members,
    }
