"""The example pages: each one shows a different thing the QueryMem panel finds.

Open a page, then click "QueryMem" in the toolbar on the right.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, jsonify, render_template, request
from werkzeug.wrappers import Response

from .models import Customer, EmailAddress, db, send_history
from .seed import CITIES

bp = Blueprint("example", __name__)

PAGES = [
    (
        "example.bounces",
        "Email bounce report",
        "The classic: loads every column of every bounced address to use one of them.",
    ),
    (
        "example.customers",
        "Customer list",
        "A list rendered in a template: the template reads two columns of nine.",
    ),
    (
        "example.customer_orders",
        "Orders per customer",
        "An N+1 loop: one lazy load per customer, grouped as one row in the panel.",
    ),
    (
        "example.contact_customers",
        "Mark customers as contacted",
        "Updates rows: loads whole customers to write one column.",
    ),
    (
        "example.bounces_projected",
        "Email bounce report, projected",
        "The fixed version of the bounce report: nothing to suggest.",
    ),
    (
        "example.api_bounces",
        "Bounce report as JSON",
        "A JSON view: profiled too, but the toolbar only shows on HTML pages.",
    ),
]


def bounced_addresses() -> dict[str, bool]:
    """The classic bounce report, exactly as it was written before profiling."""
    emails = (
        db.session.query(EmailAddress)
        .join(send_history, send_history.c.email_address_id == EmailAddress.id)
        .filter(send_history.c.bounce == 1)
        .all()
    )
    return {e.email_address: True for e in emails}


@bp.route("/")
def index() -> str:
    return render_template("index.html", pages=PAGES)


@bp.route("/bounces")
def bounces() -> str:
    bounced = bounced_addresses()
    return render_template(
        "bounces.html", title="Email bounce report", count=len(bounced), sample=sorted(bounced)[:20]
    )


@bp.route("/bounces/projected")
def bounces_projected() -> str:
    rows = (
        db.session.query(EmailAddress.email_address)
        .join(send_history, send_history.c.email_address_id == EmailAddress.id)
        .filter(send_history.c.bounce == 1)
        .all()
    )
    bounced = {row.email_address: True for row in rows}
    return render_template(
        "bounces.html",
        title="Email bounce report, projected",
        count=len(bounced),
        sample=sorted(bounced)[:20],
    )


@bp.route("/customers")
def customers() -> str:
    rows = db.session.execute(db.select(Customer).order_by(Customer.id).limit(500)).scalars().all()
    # The template reads only name and city: the attribute reads happen while
    # rendering, which the profile covers.
    return render_template("customers.html", customers=rows)


@bp.route("/customers/orders")
def customer_orders() -> str:
    rows = db.session.execute(db.select(Customer).order_by(Customer.id).limit(50)).scalars().all()
    summary = [
        (customer.name, len(customer.orders), sum(o.total_cents for o in customer.orders))
        for customer in rows
    ]
    return render_template("orders.html", summary=summary)


@bp.route("/customers/contact", methods=["GET", "POST"])
def contact_customers() -> str:
    updated = None
    city = request.form.get("city", CITIES[0])
    if request.method == "POST":
        now = dt.datetime.now()
        rows = db.session.execute(db.select(Customer).where(Customer.city == city)).scalars().all()
        for customer in rows:
            customer.last_contacted_at = now
        db.session.commit()
        updated = len(rows)
    return render_template("contact.html", cities=CITIES, city=city, updated=updated)


@bp.route("/api/bounces")
def api_bounces() -> Response:
    bounced = bounced_addresses()
    return jsonify(count=len(bounced), sample=sorted(bounced)[:5])
