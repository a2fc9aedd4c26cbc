"""One source line, many profiles (issue 8): a helper serving two pages gets no
projection that would break the other page."""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flask_querymem import profile
from flask_querymem.analysis.reconcile import reconcile

from .models import EmailAddress


def active_emails(session: Session) -> list[EmailAddress]:
    return session.query(EmailAddress).filter(EmailAddress.is_active).all()  # SHARED LINE


def test_a_projection_another_profile_would_break_is_withdrawn(seeded_engine: sa.Engine) -> None:
    with Session(seeded_engine) as s, profile(min_suggest_bytes=0) as addresses_page:
        addresses = [e.email_address for e in active_emails(s)]
    with Session(seeded_engine) as s, profile(min_suggest_bytes=0) as names_page:
        names = [e.full_name for e in active_emails(s)]  # a property of the model
    assert len(addresses) == len(names) > 0
    (q,) = addresses_page.queries
    assert q.suggestion is not None and q.suggestion.kind == "columns"
    (other,) = names_page.queries
    assert other.instance_uses, "the property use must be recorded"
    before = addresses_page.totals.estimated_savings_bytes

    reconcile(addresses_page, [("GET /names", names_page)])
    assert q.suggestion is None
    assert q.note is not None and "GET /names" in q.note
    assert addresses_page.totals.estimated_savings_bytes == before - before


def test_profiles_that_agree_keep_the_projection_and_count_callers(
    seeded_engine: sa.Engine,
) -> None:
    with Session(seeded_engine) as s, profile(min_suggest_bytes=0) as first:
        [e.email_address for e in active_emails(s)]
    with Session(seeded_engine) as s, profile(min_suggest_bytes=0) as second:
        {e.email_address for e in active_emails(s)}
    reconcile(first, [("GET /other", second)])
    (q,) = first.queries
    assert q.suggestion is not None and q.suggestion.kind == "columns"
    assert q.suggestion.callers == 2  # two call sites of the helper, one per profile


def test_the_extension_reconciles_across_its_request_history(
    database_url: str, tmp_path: t.Any
) -> None:
    from .flask_helpers import seeded_querymem_app

    with seeded_querymem_app(database_url, str(tmp_path)) as (app, db, ext):

        @app.route("/addresses")
        def addresses() -> str:
            return ",".join(e.email_address for e in active_emails(db.session))

        @app.route("/names")
        def names() -> str:
            return ",".join(e.full_name for e in active_emails(db.session))

        client = app.test_client()
        assert client.get("/addresses").status_code == 200
        with app.app_context():
            (first,) = ext.history(app)
        assert first.report is not None
        assert first.report.queries[0].suggestion is not None  # alone, it is safe
        assert client.get("/names").status_code == 200
        assert client.get("/addresses").status_code == 200
        with app.app_context():
            history = ext.history(app)
        # the helper line serves /names too, which needs instances: no projection,
        # neither in the new report nor, withdrawn afterwards, in the first one
        for record in (history[0], history[2]):
            assert record.report is not None
            (q,) = record.report.queries
            assert q.suggestion is None or q.suggestion.kind == "load_only"
            assert q.suggestion is not None or "GET /names" in (q.note or "")
