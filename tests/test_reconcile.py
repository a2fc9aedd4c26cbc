"""One source line, many profiles (issue 8): a helper serving two pages gets no
projection that would break the other page."""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flask_querymem import profile
from flask_querymem.analysis.reconcile import reconcile

from .models import Base, EmailAddress, seed


@pytest.fixture(scope="module")
def engine(database_url: str) -> t.Iterator[sa.Engine]:
    eng = sa.create_engine(database_url)
    Base.metadata.drop_all(eng)
    Base.metadata.create_all(eng)
    seed(eng)
    yield eng
    Base.metadata.drop_all(eng)
    eng.dispose()


def active_emails(session: Session) -> list[EmailAddress]:
    return session.query(EmailAddress).filter(EmailAddress.is_active).all()  # SHARED LINE


def test_a_projection_another_profile_would_break_is_withdrawn(engine: sa.Engine) -> None:
    with Session(engine) as s, profile(min_suggest_bytes=0) as addresses_page:
        addresses = [e.email_address for e in active_emails(s)]
    with Session(engine) as s, profile(min_suggest_bytes=0) as names_page:
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


def test_profiles_that_agree_keep_the_projection_and_count_callers(engine: sa.Engine) -> None:
    with Session(engine) as s, profile(min_suggest_bytes=0) as first:
        [e.email_address for e in active_emails(s)]
    with Session(engine) as s, profile(min_suggest_bytes=0) as second:
        {e.email_address for e in active_emails(s)}
    reconcile(first, [("GET /other", second)])
    (q,) = first.queries
    assert q.suggestion is not None and q.suggestion.kind == "columns"
    assert q.suggestion.callers == 2  # two call sites of the helper, one per profile
