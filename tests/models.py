"""Models for the core profiler tests (table names prefixed so they never clash)."""

from __future__ import annotations

import datetime
import decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


send_history = sa.Table(
    "qmt_send_history",
    Base.metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email_id", sa.ForeignKey("qmt_email_address.id"), index=True),
    sa.Column("bounce", sa.Integer, nullable=False),
)


class EmailAddress(Base):
    __tablename__ = "qmt_email_address"
    id: Mapped[int] = mapped_column(primary_key=True)
    email_address: Mapped[str] = mapped_column(sa.String(200))
    first_name: Mapped[str] = mapped_column(sa.String(60))
    last_name: Mapped[str] = mapped_column(sa.String(60))
    created_at: Mapped[datetime.datetime]
    updated_at: Mapped[datetime.datetime]
    is_active: Mapped[bool]
    score: Mapped[decimal.Decimal] = mapped_column(sa.Numeric(10, 2))
    note: Mapped[str] = mapped_column(sa.String(1000))

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def to_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in ("id", "email_address")}


class User(Base):
    __tablename__ = "qmt_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(60))
    bio: Mapped[str] = mapped_column(sa.Text)
    addresses: Mapped[list[Address]] = relationship(back_populates="user", order_by="Address.id")


class Address(Base):
    __tablename__ = "qmt_address"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("qmt_user.id"))
    street: Mapped[str] = mapped_column(sa.String(100))
    city: Mapped[str] = mapped_column(sa.String(60))
    user: Mapped[User] = relationship(back_populates="addresses")


class Employee(Base):
    __tablename__ = "qmt_employee"
    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(20))
    name: Mapped[str] = mapped_column(sa.String(60))
    __mapper_args__ = {"polymorphic_on": "type", "polymorphic_identity": "employee"}


class Engineer(Employee):
    __tablename__ = "qmt_engineer"
    id: Mapped[int] = mapped_column(sa.ForeignKey("qmt_employee.id"), primary_key=True)
    language: Mapped[str] = mapped_column(sa.String(30))
    notes: Mapped[str] = mapped_column(sa.Text)
    __mapper_args__ = {"polymorphic_identity": "engineer"}


NOW = datetime.datetime(2024, 1, 2, 3, 4, 5)


def seed(engine: sa.Engine, n_emails: int = 400, n_users: int = 20) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(EmailAddress),
            [
                {
                    "id": i,
                    "email_address": f"user{i}@example.com",
                    "first_name": f"First{i}",
                    "last_name": f"Last{i}",
                    "created_at": NOW,
                    "updated_at": NOW,
                    "is_active": bool(i % 3),
                    "score": decimal.Decimal(i) / 4,
                    # wide enough that load_only() (~600 B per instance) pays off
                    "note": "a note that nobody reads " * (20 + i % 5),
                }
                for i in range(1, n_emails + 1)
            ],
        )
        conn.execute(
            send_history.insert(),
            [{"id": i, "email_id": i, "bounce": 1 if i % 2 else 0} for i in range(1, n_emails + 1)],
        )
        conn.execute(
            sa.insert(User),
            [{"id": i, "name": f"user {i}", "bio": "bio " * 300} for i in range(1, n_users + 1)],
        )
        conn.execute(
            sa.insert(Address),
            [
                {
                    "id": i,
                    "user_id": 1 + i % n_users,
                    "street": f"{i} Main St",
                    "city": "Springfield",
                }
                for i in range(1, 3 * n_users + 1)
            ],
        )
        conn.execute(sa.insert(Employee), [{"id": 1, "type": "employee", "name": "Ann"}])
        for i in range(2, 12):
            conn.execute(sa.insert(Employee), [{"id": i, "type": "engineer", "name": f"Eng {i}"}])
            conn.execute(
                sa.text(
                    "INSERT INTO qmt_engineer (id, language, notes) VALUES (:id, :lang, :notes)"
                ),
                {"id": i, "lang": "python", "notes": "n" * 200},
            )
