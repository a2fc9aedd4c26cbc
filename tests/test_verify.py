"""verify(): each suggestion proven by running the code again with it applied.

Runs on the database under test (SQLite by default, PostgreSQL/MariaDB with
QUERYMEM_TEST_DATABASE_URL), in a namespace of its own.
"""

from __future__ import annotations

import itertools
import os
import typing as t
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import flask_querymem
from flask_querymem import tracking
from flask_querymem.verify import Plan, Verifier, compare_outputs, run_replay

from .flask_helpers import isolated_database
from .models import Base, EmailAddress, User, seed, send_history

HERE = os.path.abspath(__file__)
ROWS = 4000


class ArticleBase(DeclarativeBase):
    pass


class Article(ArticleBase):
    """Wide rows: what a projection or load_only() is for."""

    __tablename__ = "qmv_article"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    author: Mapped[str] = mapped_column(sa.String(100))
    body: Mapped[str] = mapped_column(sa.Text)
    summary: Mapped[str] = mapped_column(sa.Text)

    @property
    def headline(self) -> str:
        return f"{self.title} by {self.author}"


def line_of(text: str) -> int:
    source = Path(HERE).read_text().splitlines()
    lines = [i for i, s in enumerate(source, 1) if text in s and "line_of(" not in s]
    assert len(lines) == 1, (text, lines)
    return lines[0]


@pytest.fixture(scope="module")
def engine(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[sa.Engine]:
    with isolated_database(database_url, str(tmp_path_factory.mktemp("verifydb"))) as iso:
        eng = iso.create_engine()
        Base.metadata.create_all(eng)
        seed(eng, n_emails=ROWS)
        ArticleBase.metadata.create_all(eng)
        with eng.begin() as conn:
            conn.execute(
                sa.insert(Article),
                [
                    {
                        "id": i,
                        "title": f"Article {i}",
                        "author": f"Author {i % 7}",
                        "body": f"body {i} " + "lorem ipsum " * 80,
                        "summary": f"summary {i} " + "dolor " * 30,
                    }
                    for i in range(1, 2001)
                ],
            )
        try:
            yield eng
        finally:
            eng.dispose()


@pytest.fixture(autouse=True)
def nothing_left_behind() -> t.Iterator[None]:
    yield
    assert tracking.current() is None, "a profile was left active"
    from flask_querymem import verify as verify_module

    assert verify_module._current.get() is None
    assert verify_module._patched == {}, "a dialect was left patched"


def only_suggestion(report: flask_querymem.Report) -> t.Any:
    with_suggestion = [q for q in report.queries if q.suggestion is not None]
    assert len(with_suggestion) == 1, report.to_text()
    return with_suggestion[0]


# --------------------------------------------------------------------------- units of work


def bounced(engine: sa.Engine) -> dict[str, bool]:
    with Session(engine) as s:
        articles = (
            s.query(Article)
            .join(send_history, send_history.c.email_id == Article.id)
            .filter(send_history.c.bounce == 1)
            .order_by(Article.id.desc())
            .all()  # THE BOUNCE QUERY (the frame's line is the call's)
        )
        return {f"{a.title} ({a.author})": True for a in articles}


def scalars_style(engine: sa.Engine) -> list[str]:
    with Session(engine) as s:
        rows = s.scalars(select(EmailAddress).order_by(EmailAddress.id)).all()  # SCALARS
        return [f"{e.email_address}: {e.note}" for e in rows]


def dump_score(objs: t.Iterable[t.Any]) -> list[t.Any]:
    # reads a column straight from the instance __dict__: no attribute descriptor runs
    return [vars(o).get("score") for o in objs]


def reads_through_vars(engine: sa.Engine) -> list[t.Any]:
    with Session(engine) as s:
        emails = s.query(EmailAddress).order_by(EmailAddress.id).all()  # VARS QUERY
        shown = [(e.email_address, e.note) for e in emails]
        return [shown, dump_score(emails)]


def headlines(engine: sa.Engine) -> list[t.Any]:
    with Session(engine) as s:
        articles = s.query(Article).order_by(Article.id).all()  # LOAD_ONLY QUERY
        return [(a.id, a.headline) for a in articles]


_counter = itertools.count(10_000)


def reads_and_writes(engine: sa.Engine) -> list[t.Any]:
    with Session(engine) as s:
        emails = s.query(EmailAddress).order_by(EmailAddress.id).all()  # WRITING UNIT
        shown = [(e.email_address, e.note) for e in emails]
        s.add(User(id=next(_counter), name="added by the unit of work", bio="b"))
        s.commit()
        return [shown, s.query(User).count()]


def with_a_token(engine: sa.Engine, broken: bool = False) -> dict[str, t.Any]:
    with Session(engine) as s:
        emails = s.query(EmailAddress).order_by(EmailAddress.id).all()  # TOKEN QUERY
        out: dict[str, t.Any] = {
            "csrf": uuid.uuid4().hex,
            "emails": [(e.email_address, e.note) for e in emails],
        }
        if broken:
            out["score"] = dump_score(emails[:1])
        return out


def users_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(User)).scalar_one())


# --------------------------------------------------------------------------- tests


def test_a_projection_is_verified_with_a_measured_saving_close_to_the_estimate(
    engine: sa.Engine,
) -> None:
    report = flask_querymem.verify(bounced, engine)
    q = only_suggestion(report)
    assert q.location.line == line_of("# THE BOUNCE QUERY")
    sug = q.suggestion
    assert sug.code == ".with_entities(Article.title, Article.author)"
    v = sug.verification
    assert v["status"] == "verified", v
    assert v["detail"] is None
    before, after = v["measured_bytes_before"], v["measured_bytes_after"]
    measured = before - after
    estimated = sug.estimated_savings_bytes
    print(f"\nbounce: measured saving {measured:,} B, estimated {estimated:,} B")
    assert estimated > 1_000_000
    assert abs(measured - estimated) <= 0.35 * estimated, (measured, estimated)
    # the JSON and the text say it too
    again = flask_querymem.Report.from_json(report.to_json())
    assert only_suggestion(again).suggestion.verification == v
    assert "verified: measured saving" in report.to_text()


def test_a_2_0_style_projection_gets_rows_as_the_fixed_line_would(engine: sa.Engine) -> None:
    report = flask_querymem.verify(scalars_style, engine)
    q = only_suggestion(report)
    assert q.location.line == line_of("# SCALARS")
    assert q.suggestion.code == "select(EmailAddress.email_address, EmailAddress.note)"
    assert ".execute(" in (q.suggestion.source_after or "")
    assert q.suggestion.verification["status"] == "verified", q.suggestion.verification


def test_a_column_read_through_vars_is_caught_by_the_replay(engine: sa.Engine) -> None:
    report = flask_querymem.verify(reads_through_vars, engine)
    q = only_suggestion(report)
    assert q.location.line == line_of("# VARS QUERY")
    v = q.suggestion.verification
    assert v["status"] in ("differs", "error"), v
    assert v["status"] != "verified"
    assert "vars()" in v["detail"]
    text = report.to_text()
    assert "not offered" in text and "failed verification" in text


def test_a_load_only_suggestion_is_verified(engine: sa.Engine) -> None:
    report = flask_querymem.verify(headlines, engine)
    q = only_suggestion(report)
    assert q.location.line == line_of("# LOAD_ONLY QUERY")
    sug = q.suggestion
    assert sug.kind == "load_only", sug
    assert "Article.title" in sug.columns and "Article.body" not in sug.columns
    v = sug.verification
    assert v["status"] == "verified", v
    measured = v["measured_bytes_before"] - v["measured_bytes_after"]
    estimated = sug.estimated_savings_bytes
    print(f"\nload_only: measured saving {measured:,} B, estimated {estimated:,} B")
    # Alone: +0.3%. After tests/catalogue in the same process the load_only run's peak
    # comes out ~300 B per instance lower (no per-instance callables?): only the sign
    # is asserted here; the projection test above holds the 35% bound.
    assert measured > 0.5 * estimated, (measured, estimated)


def test_a_writing_function_is_not_replayed_unless_rolled_back(engine: sa.Engine) -> None:
    start = users_count(engine)
    report = flask_querymem.verify(reads_and_writes, engine)
    assert users_count(engine) == start + 1, "only the profiled run wrote"
    assert any(q.kind == "write" for q in report.queries)
    v = only_suggestion(report).suggestion.verification
    assert v["status"] == "skipped"
    assert "wrote to the database" in v["detail"] and "rollback=True" in v["detail"]
    assert v["measured_bytes_before"] is None
    assert "unverified: not replayed: the original run wrote" in report.to_text()

    start = users_count(engine)
    report = Verifier(rollback=True).verify(reads_and_writes, engine)
    assert users_count(engine) == start + 1, "every replay was rolled back"
    v = only_suggestion(report).suggestion.verification
    assert v["status"] == "verified", v
    assert "rolled back" in v["detail"]


def test_a_write_on_an_autocommit_connection_is_refused(engine: sa.Engine) -> None:
    auto = engine.execution_options(isolation_level="AUTOCOMMIT")

    def unit() -> int:
        with auto.connect() as conn:
            conn.execute(sa.update(User).where(User.id == 1).values(name="changed"))
            return 1

    start = users_count(engine)
    out = run_replay(unit, None, roots=(os.path.dirname(HERE),))
    assert out.replay.refused and "autocommit" in out.replay.refused
    assert out.error is not None
    with engine.connect() as conn:
        assert conn.execute(sa.select(User.name).where(User.id == 1)).scalar_one() == "user 1"
    assert users_count(engine) == start


def test_a_non_deterministic_result_is_compared_on_its_stable_parts(engine: sa.Engine) -> None:
    report = flask_querymem.verify(with_a_token, engine)
    v = only_suggestion(report).suggestion.verification
    assert v["status"] == "verified", v
    assert v["detail"].startswith("not deterministic: compared ")
    compared, total = (int(n.replace(",", "")) for n in v["detail"].split()[3:6:2])
    assert 0 < total - compared <= 64, v["detail"]  # about the 32 hex digits of the token

    report = flask_querymem.verify(with_a_token, engine, broken=True)
    v = only_suggestion(report).suggestion.verification
    assert v["status"] in ("differs", "error"), v


def test_compare_outputs_masks_what_differed_between_the_originals() -> None:
    a = {"token": "abc123", "rows": [("x", 1), ("y", 2)]}
    b = {"token": "def456", "rows": [("x", 1), ("y", 2)]}
    same, detail = compare_outputs(a, b, {"token": "0f0f0f", "rows": [("x", 1), ("y", 2)]})
    assert same and detail is not None and detail.startswith("not deterministic: compared")
    same, detail = compare_outputs(a, b, {"token": "0f0f0f", "rows": [("x", 1), ("y", 3)]})
    assert not same and detail is not None and "differs at byte" in detail
    # deterministic: == first, then structure (a Row and a tuple alike), first difference named
    assert compare_outputs([("x", 1)], [("x", 1)], [["x", 1]]) == (True, None)
    same, detail = compare_outputs([("x", 1)], [("x", 1)], [("x", None)])
    assert not same and detail == "[0][1]: 1 != None"


def test_only_the_named_line_is_rewritten(engine: sa.Engine) -> None:
    def two_lines() -> tuple[t.Any, t.Any]:
        with Session(engine) as s:
            first = s.query(EmailAddress).filter(EmailAddress.id < 3).all()  # LINE A
            second = s.query(EmailAddress).filter(EmailAddress.id < 3).all()  # LINE B
            return first, second

    plan = Plan(HERE, line_of("# LINE B"), f"{EmailAddress.__module__}:EmailAddress", "columns",
                ("email_address",))  # fmt: skip
    out = run_replay(two_lines, plan, roots=(os.path.dirname(HERE),), measure=False)
    assert out.error is None and plan.applied == 1
    first, second = out.value
    assert all(isinstance(e, EmailAddress) for e in first)
    assert [tuple(r) for r in second] == [("user1@example.com",), ("user2@example.com",)]


def test_verify_takes_any_callable_and_the_submodule_is_callable(engine: sa.Engine) -> None:
    import functools

    import flask_querymem.verify as verify_module

    assert callable(verify_module)
    assert "verify" in flask_querymem.__all__
    report = verify_module(functools.partial(scalars_style, engine))
    assert only_suggestion(report).suggestion.verification["status"] == "verified"

    class Job:
        def __call__(self) -> list[str]:
            return scalars_style(engine)

    report = flask_querymem.verify(Job())
    assert only_suggestion(report).suggestion.verification["status"] == "verified"


def test_a_function_that_raises_propagates_like_profile(engine: sa.Engine) -> None:
    def boom() -> None:
        with Session(engine) as s:
            s.query(EmailAddress).all()
        raise KeyError("boom")

    with pytest.raises(KeyError):
        flask_querymem.verify(boom)


def test_nothing_to_verify_runs_once(engine: sa.Engine) -> None:
    calls = []

    def nothing() -> int:
        calls.append(1)
        with Session(engine) as s:
            return len(s.execute(select(EmailAddress.id)).all())

    report = flask_querymem.verify(nothing)
    assert calls == [1]
    assert all(q.suggestion is None for q in report.queries)


def test_a_shared_session_cannot_verify_load_only(engine: sa.Engine) -> None:
    with Session(engine) as s:
        kept: list[t.Any] = []

        def unit() -> list[t.Any]:
            articles = s.query(Article).order_by(Article.id).all()  # SHARED SESSION
            kept.extend(articles)  # the instances outlive the run: the identity map keeps them
            return [(a.id, a.headline) for a in articles]

        report = flask_querymem.verify(unit)
    v = only_suggestion(report).suggestion.verification
    assert v["status"] == "skipped" and "session an earlier run used" in v["detail"], v


def test_a_token_sharing_a_first_character_by_chance_is_masked_whole() -> None:
    """Two runs' random tokens that happen to share their first (or last)
    character must not make that character part of what is compared."""
    from flask_querymem.verify import compare_outputs

    first = "<p>generated 3f2a9c</p>user 1,user 2"
    second = "<p>generated 3e81b0</p>user 1,user 2"
    same, detail = compare_outputs(first, second, "<p>generated 7d04aa</p>user 1,user 2")
    assert same, detail
    same, detail = compare_outputs(first, second, "<p>generated 7d04aa</p>user 1,user 3")
    assert not same and detail is not None and "differs" in detail


def test_a_request_snapshot_keeps_only_text_and_replays_the_same_request() -> None:
    """Taken on every profiled request (cheap); the replayable request is made
    from it only when read, and is the request as it came in."""
    from flask import Flask, request

    from flask_querymem.history import RequestProfile
    from flask_querymem.replay import CapturedRequest, RequestSnapshot

    app = Flask(__name__)
    taken: list[t.Any] = []

    @app.post("/orders/<int:n>")
    def order(n: int) -> str:
        taken.append((RequestSnapshot.take(request), CapturedRequest.from_request(request)))
        return "ok"

    client = app.test_client()
    response = client.post(
        "/orders/7?sort=desc&q=%C3%A9",
        data=b'{"qty": 2}',
        headers={"Content-Type": "application/json", "X-Trace": "abc"},
        environ_base={"SCRIPT_NAME": "/shop", "wsgi.errors": object()},
        base_url="https://example.test/shop/",
    )
    assert response.status_code == 200
    ((snapshot, direct),) = taken
    assert snapshot is not None and direct is not None
    assert all(type(v) is str for v in snapshot.environ.values())
    captured = snapshot.captured()
    assert captured == direct
    assert (captured.method, captured.path, captured.query_string) == (
        "POST",
        "/orders/7",
        "sort=desc&q=%C3%A9",
    )
    assert captured.body == b'{"qty": 2}'
    assert captured.base_url == "https://example.test/"  # host_url, as before
    assert ("X-Trace", "abc") in captured.headers
    assert ("Content-Type", "application/json") in captured.headers

    profile = RequestProfile(method="POST", path="/orders/7", started_at=0.0)
    profile.keep_request(snapshot)
    assert profile.request_data == captured.to_dict()  # made when read
    again = RequestProfile.from_dict(profile.to_dict())
    assert again.request_data == captured.to_dict()
    assert CapturedRequest.from_dict(again.request_data) == captured
