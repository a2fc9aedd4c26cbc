"""The per-statement and per-read shortcuts of tracking.py give the same evidence.

* executions of one statement from one place (an N+1 loop) share one record
  of reads: a read site is recorded once for all of them, and a class loaded
  by them only skips sites already recorded; a read seen for one instance in
  many (a conditional read) is still seen;
* executions of different statements from one place keep their reads apart;
* ``_sa_compat.statement_kind`` answers what the public ``ORMExecuteState``
  properties answer.
"""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, selectinload

from flask_querymem import _sa_compat as compat
from flask_querymem import profile

from .models import Address, User


def _lazy_report(report: t.Any, cls_name: str) -> t.Any:
    (q,) = [
        q
        for q in report.queries
        if q.kind == "lazy_load" and any(e.model.endswith(cls_name) for e in q.entities)
    ]
    return q


def test_n_plus_1_reads_are_shared_and_a_read_of_one_row_in_many_is_seen(
    session: Session,
) -> None:
    with profile() as report:
        addresses = session.scalars(sa.select(Address).order_by(Address.id)).all()
        for i, a in enumerate(addresses):
            a.user.name  # noqa: B018 - one lazy load per distinct user
            if i == len(addresses) - 3:
                a.user.bio  # noqa: B018 - read for one row only
    q = _lazy_report(report, "User")
    assert q.executions == 20  # one per user (20 users)
    (ent,) = q.entities
    assert ent.count == 20
    assert set(ent.columns_read) == {"name", "bio"}


def test_reads_stay_apart_for_different_statements_from_one_place(session: Session) -> None:
    stmts = [
        sa.select(User).where(User.id < 5).order_by(User.id),
        sa.select(User).where(User.id > 15).order_by(User.id),
    ]
    with profile() as report:
        for i in range(4):
            for u in session.scalars(stmts[i % 2]).all():
                if i % 2:
                    u.bio  # noqa: B018
                else:
                    u.name  # noqa: B018
            session.expunge_all()
    selects = [q for q in report.queries if q.kind == "select"]
    assert len(selects) == 2
    read = {q.sql.split("WHERE", 1)[1]: q.entities[0].columns_read for q in selects}
    assert sorted(read.values()) == [["bio"], ["name"]]


def test_reads_after_the_class_had_many_queries_are_still_recorded(session: Session) -> None:
    """A class first loaded by one group, then by another statement: sites
    skipped while it had one group are looked at again."""
    with profile() as report:
        users = session.scalars(sa.select(User).where(User.id <= 10).order_by(User.id)).all()
        for u in users:
            u.name  # noqa: B018
        more = session.scalars(sa.select(User).where(User.id > 10).order_by(User.id)).all()
        for u in (*users, *more):
            u.name  # noqa: B018
    selects = [q for q in report.queries if q.kind == "select"]
    assert len(selects) == 2
    assert all(q.entities[0].columns_read == ["name"] for q in selects)


def test_statement_kind_matches_the_public_properties(seeded_engine: sa.Engine) -> None:
    seen: list[tuple[str, str, bool]] = []

    def listener(orm_state: t.Any) -> None:
        kind, lazy_from = compat.statement_kind(orm_state)
        public, public_from = compat._public_statement_kind(orm_state)
        seen.append((kind, public, lazy_from is public_from))

    event.listen(Session, "do_orm_execute", listener)
    try:
        with Session(seeded_engine) as s:
            users = s.scalars(sa.select(User).order_by(User.id).limit(3)).all()
            users[0].addresses  # noqa: B018 - lazy load
            s.scalars(sa.select(User).options(selectinload(User.addresses)).limit(2)).all()
            s.expire(users[1], ["name"])
            users[1].name  # noqa: B018 - column load
            s.execute(sa.update(User).where(User.id == -1).values(name="x"))
            s.execute(sa.text("SELECT 1"))
            s.rollback()
    finally:
        event.remove(Session, "do_orm_execute", listener)
    kinds = [k for k, _, _ in seen]
    assert {"select", "lazy_load", "relationship_load", "column_load", "write"} <= set(kinds)
    assert all(kind == public and same for kind, public, same in seen), seen


def test_entity_bytes_is_entity_size_per_instance() -> None:
    """The toolbar summary's per-instance bytes are the analysis' own, for warm-up
    only, warm-up plus cells, and doubled strides."""
    import random

    from flask_querymem.analysis.sizing import entity_bytes, entity_size
    from flask_querymem.memory import InstanceSize
    from flask_querymem.record import EntityRecord

    rng = random.Random(7)
    for n in (1, 5, 8, 9, 40, 1000, 5000):
        ent = EntityRecord(object)
        for _ in range(n):
            ent.count += 1
            if ent.count >= ent.next_sample:
                values = {k: float(rng.randint(16, 400)) for k in ("a", "b", "c")}
                if rng.random() < 0.3:
                    del values["c"]  # a column not loaded on every instance
                ent.add_sample(InstanceSize(float(rng.randint(900, 1100)), values))
        assert entity_bytes(ent) == pytest.approx(entity_size(ent).per_instance, rel=1e-12)


def test_a_large_result_keeps_only_its_mean_sample_and_the_same_estimate(
    session: t.Any, monkeypatch: t.Any
) -> None:
    """The record waits for a lazy analysis: its samples are settled to their mean
    when the profile ends, and what the analysis reads of them does not move."""
    from flask_querymem import tracking
    from flask_querymem.analysis.sizing import entity_size
    from flask_querymem.profiler import Profiler
    from flask_querymem.record import ProfileRecord

    from .models import EmailAddress

    def run() -> t.Any:
        session.expunge_all()
        profiler = Profiler(min_suggest_bytes=0).start()
        rows = session.scalars(sa.select(EmailAddress)).all()
        assert {r.email_address for r in rows}
        profiler.collect()
        rec = profiler._collected
        assert rec is not None
        (ent,) = rec.queries[-1].entities.values()
        return rec, ent

    _, settled = run()
    assert len(settled.samples) == 1 and not settled.warmup_samples

    monkeypatch.setattr(tracking, "SETTLE_SAMPLES", 10**9)
    rec, kept = run()
    assert len(kept.samples) + len(kept.warmup_samples) > 16
    before = entity_size(kept)
    monkeypatch.setattr(tracking, "SETTLE_SAMPLES", 16)
    tracking._settle_samplers(ProfileRecord(queries=rec.queries))
    assert len(kept.samples) == 1 and not kept.warmup_samples
    after = entity_size(kept)
    assert after.per_instance == pytest.approx(before.per_instance, rel=1e-12)
    assert after.per_value.keys() == before.per_value.keys()
    for key, value in before.per_value.items():
        assert after.per_value[key] == pytest.approx(value, rel=1e-12)
    # a query still shared with an active profile keeps its samples
    monkeypatch.setattr(tracking, "SETTLE_SAMPLES", 10**9)
    rec, shared = run()
    monkeypatch.setattr(tracking, "SETTLE_SAMPLES", 16)
    tracking._settle_samplers(ProfileRecord(queries=rec.queries), {rec.queries[-1].qid})
    assert len(shared.samples) > 1


def test_each_tracked_descriptor_reads_through_its_own_code_and_returns_the_same_values(
    session: Session,
) -> None:
    """One ``__get__`` code object per descriptor (attributes._own_get): CPython
    specialises each read for one type, whichever process it is. Values read
    while profiling and idle are SQLAlchemy's, and every column read is seen."""
    from sqlalchemy.orm.attributes import InstrumentedAttribute

    with profile() as report:
        users = session.scalars(sa.select(User).order_by(User.id)).all()
        seen = [(u.id, u.name, u.bio) for u in users]
    # by identity: copies of one code object compare equal
    codes = {id(type(d).__get__.__code__) for d in (User.id, User.name, User.bio)}
    assert len(codes) == 3
    assert id(InstrumentedAttribute.__get__.__code__) not in codes
    assert [(u.id, u.name, u.bio) for u in users] == seen  # idle: same values
    expected = [
        tuple(r) for r in session.execute(sa.select(User.id, User.name, User.bio).order_by(User.id))
    ]
    assert seen == expected
    (q,) = [q for q in report.queries if q.entities]
    assert set(q.entities[0].columns_read) == {"id", "name", "bio"}
