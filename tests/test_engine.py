"""The engine on what real apps do (issue 7): rows already in the session, nested
profiles, async functions, added report keys, and reports that grow with
distinct statements, not executions. Each test runs on the backend named by
QUERYMEM_TEST_DATABASE_URL (SQLite by default, PostgreSQL and MariaDB in CI)."""

from __future__ import annotations

import asyncio
import json
import threading
import typing as t

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flask_querymem import Report, profile

from .flask_helpers import seeded_querymem_app
from .models import Address, Base, User, seed


def user_list(session: Session) -> list[User]:
    return session.query(User).order_by(User.id).all()


def entity_query(report: Report) -> t.Any:
    (q,) = [q for q in report.queries if q.entities and q.kind == "select"]
    return q


# --- item 2: rows already in the identity map ------------------------------------


def test_a_row_already_in_the_session_does_not_hide_the_columns(session: Session) -> None:
    with profile() as fresh:
        [u.name for u in user_list(session)]
    session.expunge_all()

    current = session.get(User, 1)  # the logged-in user, loaded earlier in the request
    assert current is not None
    with profile() as report:
        names = [u.name for u in user_list(session)]
    assert len(names) == 20
    q, q0 = entity_query(report), entity_query(fresh)
    (ent,), (ent0,) = q.entities, q0.entities
    # the row found in the session costs no new memory: 19 of 20 loaded
    assert ent.count == 19
    assert ent.columns_loaded == ent0.columns_loaded == ["id", "name", "bio"]
    assert ent.columns_read == ["name"]
    assert q.suggestion is not None and q0.suggestion is not None
    assert q.suggestion.code == q0.suggestion.code == ".with_entities(User.name)"
    per_row, per_row0 = ent.estimated_bytes / ent.count, ent0.estimated_bytes / ent0.count
    assert abs(per_row - per_row0) / per_row0 < 0.10


def test_a_read_of_the_row_already_in_the_session_counts(session: Session) -> None:
    current = session.get(User, 1)
    assert current is not None
    with profile() as report:
        # a column read for one row only, and that row was in the session already
        out = [u.bio if u.id == 1 else u.name for u in user_list(session)]
    assert out[0].startswith("bio")
    q = entity_query(report)
    assert "bio" in q.entities[0].columns_read
    assert q.suggestion is None or "User.bio" in q.suggestion.columns


def test_rows_expired_by_a_commit_are_counted_and_sized(session: Session) -> None:
    with profile() as fresh:
        [u.name for u in user_list(session)]
    session.commit()  # expires every loaded row
    with profile() as report:
        names = [u.name for u in user_list(session)]
    assert len(names) == 20
    (ent,), (ent0,) = entity_query(report).entities, entity_query(fresh).entities
    assert ent.count == 20
    assert ent.columns_loaded == ["id", "name", "bio"]
    assert abs(ent.estimated_bytes - ent0.estimated_bytes) / ent0.estimated_bytes < 0.10
    s = entity_query(report).suggestion
    assert s is not None and s.code == ".with_entities(User.name)"


def test_a_row_reloaded_after_a_commit_gets_no_row_projection(session: Session) -> None:
    """A Row keeps the values it was loaded with; an expired instance reloads."""
    with profile() as report:
        users = user_list(session)
        before = [u.name for u in users]
        session.execute(sa.update(User).where(User.id == 1).values(name="renamed"))
        session.commit()
        after = [u.name for u in users]
    assert before[0] == "user 1" and after[0] == "renamed"
    q = report.queries[0]
    assert q.suggestion is None or q.suggestion.kind == "load_only", report.to_text()
    session.execute(sa.update(User).where(User.id == 1).values(name="user 1"))
    session.commit()


# --- item 3: nested profiles -------------------------------------------------------


def test_a_profile_inside_a_profile_sees_its_own_queries(session: Session) -> None:
    with profile() as outer:
        [u.name for u in user_list(session)]
        with profile() as inner:
            cities = [a.city for a in session.query(Address).all()]
        [u.bio for u in session.query(User).filter(User.id < 5).all()]
    assert len(cities) == 60
    assert [e.model for q in outer.queries for e in q.entities] == ["User", "Address", "User"]
    assert [e.model for q in inner.queries for e in q.entities] == ["Address"]
    # reads are seen by both
    (inner_q,) = inner.queries
    outer_q = [q for q in outer.queries if q.entities[0].model == "Address"][0]
    assert inner_q.entities[0].columns_read == outer_q.entities[0].columns_read == ["city"]
    assert outer.totals.queries == 3 and inner.totals.queries == 1


def test_profiles_stopped_out_of_order_keep_working(session: Session) -> None:
    from flask_querymem import Profiler

    outer = Profiler().start()
    inner = Profiler().start()
    [u.name for u in user_list(session)]
    outer_report = outer.stop()  # the outer one first
    [a.city for a in session.query(Address).all()]
    inner_report = inner.stop()
    assert [e.model for q in outer_report.queries for e in q.entities] == ["User"]
    assert [e.model for q in inner_report.queries for e in q.entities] == ["User", "Address"]


def test_profile_inside_a_request_profiled_by_the_extension(
    database_url: str, tmp_path: t.Any
) -> None:
    with seeded_querymem_app(database_url, str(tmp_path)) as (app, db, ext):
        inner_reports: list[Report] = []

        @app.route("/users")
        def users() -> str:
            with profile() as inner:
                names = [u.name for u in db.session.query(User).order_by(User.id).all()]
            inner_reports.append(inner)
            return ",".join(names)

        body = app.test_client().get("/users").get_data(as_text=True)
        assert body.startswith("user 1,user 2")
        (inner,) = inner_reports
        assert [e.model for q in inner.queries for e in q.entities] == ["User"]
        assert inner.queries[0].entities[0].columns_read == ["name"]
        with app.app_context():
            (request_profile,) = ext.history(app)
        assert request_profile.report is not None
        outer_q = entity_query(request_profile.report)
        assert outer_q.entities[0].count == 20
        assert outer_q.entities[0].columns_read == ["name"]


# --- item 4: async functions and last_report per context ----------------------------


def test_profile_decorates_an_async_function(tmp_path: t.Any) -> None:
    pytest.importorskip("aiosqlite")
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    path = f"{tmp_path}/async.sqlite"
    sync_engine = sa.create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(sync_engine)
    seed(sync_engine)
    sync_engine.dispose()

    @profile()
    async def names(engine: t.Any) -> list[str]:
        async with AsyncSession(engine) as s:
            users = (await s.scalars(sa.select(User).order_by(User.id))).all()
            return [u.name for u in users]

    async def main() -> list[str]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        try:
            return await names(engine)
        finally:
            await engine.dispose()

    assert asyncio.iscoroutinefunction(names)
    result = asyncio.run(main())
    assert len(result) == 20
    # asyncio.run() ran the coroutine in a copy of this context: the report is
    # the task's; read it inside the task instead
    report: Report | None = None

    async def main_and_report() -> Report | None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await names(engine)
            return names.last_report()  # type: ignore[attr-defined,no-any-return]
        finally:
            await engine.dispose()

    report = asyncio.run(main_and_report())
    assert report is not None and report.totals.instances == 20
    assert entity_query(report).entities[0].columns_read == ["name"]


def test_last_report_belongs_to_the_calling_thread(seeded_engine: sa.Engine) -> None:
    barrier = threading.Barrier(2)

    @profile()
    def load(model: type, col: str) -> int:
        with Session(seeded_engine) as s:
            objs = s.query(model).all()
            barrier.wait(timeout=10)  # both calls are inside their profile now
            return len([getattr(o, col) for o in objs])

    seen: dict[str, tuple[int, str]] = {}

    def work(name: str, model: type, col: str) -> None:
        n = load(model, col)
        report = load.last_report()  # type: ignore[attr-defined]
        barrier.wait(timeout=10)  # the other thread has finished its call too
        seen[name] = (n, entity_query(report).entities[0].model)

    threads = [
        threading.Thread(target=work, args=("users", User, "name")),
        threading.Thread(target=work, args=("addresses", Address, "city")),
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert seen == {"users": (20, "User"), "addresses": (60, "Address")}
    assert load.last_report() is None  # type: ignore[attr-defined]  # not called here


# --- item 7: added keys --------------------------------------------------------------


def test_from_dict_accepts_added_keys(session: Session) -> None:
    with profile() as report:
        [u.name for u in user_list(session)]
    data = json.loads(report.to_json())
    data["generated_by"] = "a newer flask-querymem"
    data["totals"]["new_total"] = 1
    q = data["queries"][0]
    q["new_field"] = {"x": 1}
    q["location"]["column"] = 7
    q["location"]["callers"] = [{"file": "v.py", "line": 3, "function": "view", "col": 1}]
    q["entities"][0]["new_entity_field"] = []
    q["suggestion"]["new_suggestion_field"] = True
    again = Report.from_dict(data)
    assert again.queries[0].suggestion is not None
    assert again.queries[0].suggestion.code == report.queries[0].suggestion.code  # type: ignore[union-attr]
    assert again.queries[0].location is not None
    assert again.queries[0].location.callers[0].function == "view"
    assert again.totals.instances == 20


# --- item 8: reports grow with distinct statements ------------------------------------


def lazy_page(session: Session, n_users: int) -> tuple[Report, int]:
    session.expunge_all()
    with profile() as report:
        users = session.query(User).order_by(User.id).limit(n_users).all()
        total = sum(len(u.addresses) for u in users)
    return report, total


def test_repeated_lazy_loads_are_one_entry(session: Session) -> None:
    small, n_small = lazy_page(session, 2)
    large, n_large = lazy_page(session, 20)
    assert n_large == 60
    assert len(large.queries) == len(small.queries) == 2
    (lazy,) = [q for q in large.queries if q.kind == "lazy_load"]
    assert lazy.executions == 20 and lazy.entities[0].count == 60
    assert len(lazy.example_indexes) == 5
    assert large.totals.queries == 21 and large.totals.distinct_queries == 2
    # the serialised report does not grow with executions
    assert len(large.to_json()) < 1.2 * len(small.to_json())


def test_a_yield_per_stream_reports_what_it_holds_at_once(session: Session) -> None:
    from .models import EmailAddress

    with profile() as report:
        total = sum(len(e.email_address) for e in session.query(EmailAddress).yield_per(50))
    assert total > 0
    (q,) = report.queries
    assert q.streamed and q.entities[0].count == 400
    # the total streamed stays the estimate; at most about two batches are held at once
    assert q.held_bytes is not None and q.held_bytes < q.estimated_bytes / 3
