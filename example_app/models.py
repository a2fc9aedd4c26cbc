"""The example's schema: a mailing list (the classic bounce report) and a small shop.

``EmailAddress`` has nine columns on purpose: the bounce report needs one of
them, and loading all nine for tens of thousands of rows is the memory problem
flask-querymem is built to show.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import sqlalchemy.orm as sa_orm
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class EmailAddress(db.Model):
    __tablename__ = "email_address"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_address: Mapped[str] = mapped_column(sa.String(255), unique=True)
    first_name: Mapped[str] = mapped_column(sa.String(80))
    last_name: Mapped[str] = mapped_column(sa.String(80))
    source: Mapped[str] = mapped_column(sa.String(40))
    signup_ip: Mapped[str] = mapped_column(sa.String(45))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime)
    verified: Mapped[bool] = mapped_column(sa.Boolean)
    notes: Mapped[str] = mapped_column(sa.Text)


send_history = sa.Table(
    "send_history",
    db.metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email_address_id", sa.ForeignKey("email_address.id"), index=True, nullable=False),
    sa.Column("campaign", sa.String(80), nullable=False),
    sa.Column("sent_at", sa.DateTime, nullable=False),
    sa.Column("bounce", sa.Integer, nullable=False, index=True),
)


class Customer(db.Model):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    email: Mapped[str] = mapped_column(sa.String(255))
    city: Mapped[str] = mapped_column(sa.String(80), index=True)
    phone: Mapped[str] = mapped_column(sa.String(40))
    street: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime)
    last_contacted_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, nullable=True)
    notes: Mapped[str] = mapped_column(sa.Text)

    orders: Mapped[list[Order]] = sa_orm.relationship(back_populates="customer")


class Order(db.Model):
    __tablename__ = "shop_order"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customer.id"), index=True)
    total_cents: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(20))
    placed_at: Mapped[dt.datetime] = mapped_column(sa.DateTime)
    shipping_address: Mapped[str] = mapped_column(sa.String(200))

    customer: Mapped[Customer] = sa_orm.relationship(back_populates="orders")
