"""The core profiler: attribution, reads, suggestions, and never breaking the host."""

from __future__ import annotations

import gc
import json
import threading
import typing as t
import weakref

import jinja2
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload, load_only, selectinload

from flask_querymem import Report, profile, tracking

from .models import Address, EmailAddress, Employee, Engineer, User, send_history


def bounced_query(session: Session) -> t.Any:
    return (
        session.query(EmailAddress)
        .join(send_history, send_history.c.email_id == EmailAddress.id)
        .filter(send_history.c.bounce == 1)
    )


def only(report: Report, kind: str = "select") -> t.Any:
    qs = [q for q in report.queries if q.kind == kind]
    assert len(qs) == 1, report.to_text()
    return qs[0]


def test_email_bounce_case_suggests_with_entities(session: Session) -> None:
    with profile() as report:
        emails = bounced_query(session).all()
        result = {e.email_address: True for e in emails}
    assert len(result) == 200
    q = only(report)
    assert q.location is not None and q.location.file == __file__
    assert q.location.function == "test_email_bounce_case_suggests_with_entities"
    (ent,) = q.entities
    assert ent.model == "EmailAddress" and ent.count == 200
    assert ent.columns_loaded == [
        "id",
        "email_address",
        "first_name",
        "last_name",
        "created_at",
        "updated_at",
        "is_active",
        "score",
        "note",
    ]
    assert ent.columns_read == ["email_address"]
    assert ent.columns_written == [] and ent.relationships_read == []
    s = q.suggestion
    assert s is not None and s.kind == "columns"
    assert s.columns == ["EmailAddress.email_address"]
    assert s.code == ".with_entities(EmailAddress.email_address)"
    assert 0 < s.estimated_bytes < ent.estimated_bytes / 3
    assert s.estimated_savings_bytes == q.estimated_bytes - s.estimated_bytes
    assert report.totals.queries == 1 and report.totals.instances == 200
    assert report.totals.estimated_savings_bytes == s.estimated_savings_bytes
    assert "JOIN qmt_send_history" in q.sql and q.sql.lstrip().startswith("SELECT")
    assert q.duration_ms >= 0

    # Applying the suggestion keeps the code working and gives the same answer.
    rows = eval("bounced_query(session)" + s.code).all()  # noqa: S307 - the suggestion is the test subject
    assert {e.email_address: True for e in rows} == result


def test_select_style_suggests_select(session: Session) -> None:
    with profile() as report:
        users = session.scalars(sa.select(User).order_by(User.id)).all()
        names = [u.name for u in users]
    assert len(names) == 20
    q = only(report)
    assert q.suggestion is not None
    assert q.suggestion.code == "select(User.name)"
    assert q.entities[0].columns_read == ["name"]
    stmt = eval(q.suggestion.code, {"select": sa.select, "User": User})  # noqa: S307
    rows = session.execute(stmt.order_by(User.id)).all()
    assert [r.name for r in rows] == names


def test_template_reading_two_columns(session: Session) -> None:
    env = jinja2.Environment(
        loader=jinja2.DictLoader(
            {
                "list.html": "<ul>\n{% for u in users %}\n<li>{{ u.name }} ({{ u.id }})</li>\n"
                "{% endfor %}\n</ul>",
                "lazy.html": "{% for u in users %}\n\n{{ u.addresses|length }}{% endfor %}",
            }
        )
    )
    with profile() as report:
        html = env.get_template("list.html").render(
            users=session.query(User).order_by(User.id).all()
        )
    assert "<li>user 1 (1)</li>" in html
    q = only(report)
    assert q.entities[0].columns_read == ["id", "name"]
    assert q.suggestion is not None and q.suggestion.code == ".with_entities(User.id, User.name)"

    session.expunge_all()
    with profile() as report:
        users = session.query(User).order_by(User.id).all()
        env.get_template("lazy.html").render(users=users)
    (lazy_group,) = [q for q in report.queries if q.kind == "lazy_load"]
    assert lazy_group.executions == 20 and report.totals.queries == 21
    lazy = [lazy_group]
    # a query issued from a template points at the template file and line
    assert lazy[0].location is not None
    assert lazy[0].location.file == "lazy.html" and lazy[0].location.line == 3


def test_write_means_instances_are_needed(session: Session) -> None:
    with profile() as report:
        emails = session.query(EmailAddress).filter(EmailAddress.id <= 5).all()
        for e in emails:
            e.note = e.email_address.upper()
        session.flush()
    q = report.queries[0]
    ent = q.entities[0]
    assert ent.columns_written == ["note"]
    assert ent.columns_read == ["email_address"]
    # no "columns" projection for instances the code modifies
    assert q.suggestion is None or q.suggestion.kind == "load_only"
    if q.suggestion is not None:
        assert {"EmailAddress.email_address", "EmailAddress.note", "EmailAddress.id"} <= set(
            q.suggestion.columns
        )
    writes = [w for w in report.queries if w.kind == "write"]
    assert len(writes) >= 1 and "UPDATE qmt_email_address" in writes[0].sql
    assert writes[0].entities == [] and writes[0].suggestion is None
    session.rollback()


def test_model_property_means_instances_are_needed(session: Session) -> None:
    with profile() as report:
        names = [e.full_name for e in bounced_query(session).all()]
    assert names[0] == "First1 Last1"
    q = only(report)
    assert q.entities[0].columns_read == ["first_name", "last_name"]
    # note is big enough to pay for load_only's per-instance cost
    s = q.suggestion
    assert s is not None and s.kind == "load_only", report.to_text()
    assert (
        s.code
        == ".options(load_only(EmailAddress.id, EmailAddress.first_name, EmailAddress.last_name))"
    )
    session.expunge_all()
    applied = eval("bounced_query(session)" + s.code).all()  # noqa: S307
    assert [e.full_name for e in applied] == names


def test_to_dict_method_inside_model_is_internal(session: Session) -> None:
    with profile() as report:
        data = [e.to_dict() for e in session.query(EmailAddress).limit(10).all()]
    assert data[0] == {"id": 1, "email_address": "user1@example.com"}
    s = only(report).suggestion
    assert s is None or s.kind == "load_only"


def test_relationship_read_and_lazy_loads(session: Session) -> None:
    with profile() as report:
        users = session.query(User).order_by(User.id).all()
        counts = {u.name: len(u.addresses) for u in users}
    assert sum(counts.values()) == 60
    sel = only(report)
    assert sel.entities[0].relationships_read == ["addresses"]
    assert sel.entities[0].columns_read == ["name"]
    # 20 lazy loads of one statement from one place: one grouped entry
    (lazy,) = [q for q in report.queries if q.kind == "lazy_load"]
    assert lazy.executions == 20 and lazy.statements == 20
    assert lazy.example_indexes == [1, 2, 3, 4, 5]
    assert lazy.entities[0].model == "Address" and lazy.entities[0].count == 60
    assert lazy.location is not None and lazy.location.file == __file__
    # the relationship needs the primary key (the FK on Address points at it)
    s = sel.suggestion
    assert s is not None and s.kind == "load_only"
    assert s.columns == ["User.id", "User.name"]
    session.expunge_all()
    users2 = eval("session.query(User).order_by(User.id)" + s.code).all()  # noqa: S307
    assert {u.name: len(u.addresses) for u in users2} == counts


def test_many_to_one_read_keeps_foreign_key(session: Session) -> None:
    with profile() as report:
        addresses = session.query(Address).order_by(Address.id).all()
        owners = [(a.city, a.user.name) for a in addresses]
    sel = report.queries[0]
    assert sel.entities[0].relationships_read == ["user"]
    s = sel.suggestion
    # the FK column the lazy load needs is in any suggestion
    assert s is None or "Address.user_id" in s.columns
    assert len(owners) == 60


def test_everything_read_means_no_suggestion(session: Session) -> None:
    with profile() as report:
        rows = [(a.id, a.user_id, a.street, a.city) for a in session.query(Address).all()]
    assert len(rows) == 60
    q = only(report)
    assert q.entities[0].columns_read == ["city", "id", "street", "user_id"]
    assert q.suggestion is None


def test_nothing_read_means_no_suggestion(session: Session) -> None:
    with profile() as report:
        n = len(session.query(Address).all())
    assert n == 60
    q = only(report)
    assert q.suggestion is None and q.note and "no mapped attribute" in q.note


def test_core_and_text_statements(session: Session, seeded_engine: sa.Engine) -> None:
    with profile() as report:
        session.execute(sa.text("SELECT count(*) FROM qmt_user")).scalar()
        with seeded_engine.connect() as conn:
            conn.execute(sa.select(send_history.c.id).limit(3)).all()
        session.execute(sa.select(User.name)).all()
    assert [q.kind for q in report.queries] == ["select", "select", "select"]
    for q in report.queries:
        assert q.entities == [] and q.suggestion is None and q.estimated_bytes == 0
    assert "count(*)" in report.queries[0].sql
    assert report.totals.instances == 0


def test_joined_table_inheritance(session: Session) -> None:
    with profile() as report:
        names = [e.name for e in session.query(Engineer).all()]
    assert len(names) == 10
    q = only(report)
    ent = q.entities[0]
    assert ent.model == "Engineer" and ent.count == 10
    assert set(ent.columns_loaded) == {"id", "type", "name", "language", "notes"}
    assert ent.columns_read == ["name"]
    assert q.suggestion is not None and q.suggestion.code == ".with_entities(Engineer.name)"

    session.expunge_all()
    with profile() as report:
        staff = session.query(Employee).order_by(Employee.id).all()
        kinds = [type(e).__name__ for e in staff]
    assert kinds.count("Engineer") == 10
    q = only(report)
    assert {e.model for e in q.entities} == {"Employee", "Engineer"}
    assert q.suggestion is None  # polymorphic load: a projection would lose the subclasses


def test_joinedload_and_selectinload(session: Session) -> None:
    with profile() as report:
        users = session.query(User).options(joinedload(User.addresses)).all()
        total = sum(len(u.addresses) for u in users)
    assert total == 60
    q = only(report)
    counts = {e.model: e.count for e in q.entities}
    assert counts == {"User": 20, "Address": 60}
    assert q.suggestion is None

    session.expunge_all()
    with profile() as report:
        users = session.scalars(sa.select(User).options(selectinload(User.addresses))).all()
        streets = [a.street for u in users for a in u.addresses]
    assert len(streets) == 60
    kinds = [q.kind for q in report.queries]
    assert kinds == ["select", "relationship_load"]
    rel = report.queries[1]
    assert rel.entities[0].model == "Address" and rel.entities[0].count == 60
    assert rel.entities[0].columns_read == ["street"]


def test_identity_map_hits_are_not_counted_twice(session: Session) -> None:
    with profile() as report:
        first = session.query(User).all()
        again = session.query(User).all()
        names = [u.name for u in again]
    assert len(first) == len(names) == 20
    q0, q1 = report.queries
    assert q0.entities[0].count == 20
    assert q1.entities == [] or q1.entities[0].count == 0
    assert report.totals.instances == 20
    # the reads belong to the query that created the instances
    assert q0.entities[0].columns_read == ["name"]


def test_deferred_column_read_after_load_only(session: Session) -> None:
    with profile() as report:
        users = session.query(User).options(load_only(User.name)).order_by(User.id).limit(3).all()
        bios = [u.bio for u in users]
    assert len(bios) == 3
    kinds = [(q.kind, q.executions) for q in report.queries]
    assert kinds == [("select", 1), ("column_load", 3)]
    # the column read after the load counts for the original query: never "unused"
    sel = report.queries[0]
    assert "bio" in sel.entities[0].columns_read


def test_user_exception_passes_through_and_report_is_filled(session: Session) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with profile() as report:
            session.query(User).all()
            raise Boom()
    assert report.totals.queries == 1
    assert tracking.current() is None


def test_internal_error_is_logged_not_raised(
    session: Session, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*a: object, **k: object) -> None:
        raise RuntimeError("bug in flask-querymem")

    monkeypatch.setattr(tracking, "measure_instance", broken)
    with profile() as report:
        names = [u.name for u in session.query(User).all()]
    assert len(names) == 20
    # one log record for the failure site, the 20 failures counted in the report
    assert report.errors == ["load (20 times)"]
    records = [r for r in caplog.records if "bug in flask-querymem" in (r.exc_text or "")]
    assert len(records) == 1
    assert "SQLAlchemy " + sa.__version__ in records[0].getMessage()


def test_two_threads_profile_independently(seeded_engine: sa.Engine) -> None:
    results: dict[str, Report] = {}
    barrier = threading.Barrier(2)

    def work(name: str, model: type, col: str) -> None:
        with Session(seeded_engine) as s, profile() as report:
            barrier.wait()
            for _ in range(3):
                objs = s.query(model).all()
                [getattr(o, col) for o in objs]
                s.expunge_all()
                barrier.wait(timeout=10)
        results[name] = report

    threads = [
        threading.Thread(target=work, args=("users", User, "name")),
        threading.Thread(target=work, args=("addresses", Address, "city")),
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    (users,) = results["users"].queries
    (addresses,) = results["addresses"].queries
    assert [e.model for e in users.entities] == ["User"] and users.executions == 3
    assert [e.model for e in addresses.entities] == ["Address"] and addresses.executions == 3
    assert results["users"].queries[0].entities[0].columns_read == ["name"]
    assert results["addresses"].queries[0].entities[0].columns_read == ["city"]


def test_queries_outside_profile_are_not_recorded(session: Session) -> None:
    session.query(User).all()
    with profile() as report:
        pass
    session.query(User).all()
    assert report.queries == []


def test_instances_are_freed_after_the_block(seeded_engine: sa.Engine) -> None:
    s = Session(seeded_engine)
    with profile() as report:
        users = s.query(User).all()
        [u.name for u in users]
        refs = [weakref.ref(u) for u in users]
    s.close()
    del users
    gc.collect()
    assert all(r() is None for r in refs)
    assert report.totals.instances == 20
    # the report is plain data: it survives a JSON round trip unchanged
    again = Report.from_json(json.dumps(report.to_dict()))
    assert again.to_dict() == report.to_dict()


def test_to_dict_schema(session: Session) -> None:
    with profile() as report:
        [e.email_address for e in session.query(EmailAddress).order_by(EmailAddress.id).limit(5)]
    d = report.to_dict()
    assert d["schema"] == "querymem/1"
    assert set(d["totals"]) >= {
        "queries",
        "instances",
        "estimated_bytes",
        "estimated_savings_bytes",
    }
    q = d["queries"][0]
    assert set(q) >= {
        "index",
        "sql",
        "location",
        "kind",
        "duration_ms",
        "entities",
        "estimated_bytes",
        "suggestion",
    }
    assert set(q["location"]) >= {"file", "line", "function", "callers", "context"}
    assert set(q["entities"][0]) >= {
        "model",
        "count",
        "columns_loaded",
        "columns_read",
        "columns_written",
        "relationships_read",
        "estimated_bytes",
    }
    assert set(q["suggestion"]) >= {
        "kind",
        "columns",
        "code",
        "estimated_bytes",
        "estimated_savings_bytes",
    }
    json.dumps(d)
    text = report.to_text()
    assert "EmailAddress×5" in text and ".with_entities(EmailAddress.email_address)" in text


def test_profile_without_brackets_is_explained() -> None:
    with pytest.raises(TypeError, match="must be called"):
        profile(lambda: None)  # type: ignore[arg-type]


def test_decorator_form(session: Session) -> None:
    @profile()
    def job() -> int:
        return len([u.name for u in session.query(User).all()])

    assert job() == 20
    assert job.last_report().totals.instances == 20  # type: ignore[attr-defined]


def test_uninstall_restores_everything(session: Session) -> None:
    with profile():
        [u.name for u in session.query(User).all()]
    assert tracking.is_installed()
    assert type(User.__dict__["name"]).__name__ == "TrackedAttribute"
    tracking.uninstall()
    assert not tracking.is_installed()
    assert type(User.__dict__["name"]) is sa.orm.InstrumentedAttribute
    assert not sa.event.contains(Session, "do_orm_execute", tracking._on_do_orm_execute)
    # and it comes back on the next profile
    with profile() as report:
        [u.name for u in session.query(User).all()]
    assert report.queries[0].entities[0].columns_read == ["name"]


def test_session_get_gets_no_projection(session: Session) -> None:
    with profile() as report:
        user = session.get(User, 3)
        assert user is not None
        name = user.name
    assert name == "user 3"
    q = only(report)
    assert q.entities[0].count == 1 and q.entities[0].columns_read == ["name"]
    assert q.suggestion is None  # "select(User.name)" is no replacement for session.get()


def test_deleted_instances_are_needed(session: Session) -> None:
    with profile() as report:
        doomed = [a for a in session.query(Address).all() if a.city == "Springfield"][:2]
        for a in doomed:
            session.delete(a)
        session.flush()
    sel = report.queries[0]
    assert sel.entities[0].columns_read == ["city"]
    # instances handed to session.delete() are needed: no Row projection
    assert sel.suggestion is None or sel.suggestion.kind == "load_only"
    assert any(q.kind == "write" and "DELETE FROM qmt_address" in q.sql for q in report.queries)
    session.rollback()


def test_select_with_loader_option_gets_no_column_projection(session: Session) -> None:
    with profile() as report:
        users = session.scalars(sa.select(User).options(selectinload(User.addresses))).all()
        names = [u.name for u in users]
    assert len(names) == 20
    sel = report.queries[0]
    # select(User.name).options(selectinload(...)) raises ArgumentError: never suggest it
    assert sel.suggestion is None or sel.suggestion.kind == "load_only"
    if sel.suggestion is not None:
        session.expunge_all()
        stmt = eval(  # noqa: S307
            "sa.select(User).options(selectinload(User.addresses))" + sel.suggestion.code
        )
        assert [u.name for u in session.scalars(stmt)] == names
    # the collections the selectin load filled count for the users that hold them
    rel = report.queries[1]
    assert rel.kind == "relationship_load"
    users_only = sel.entities[0].estimated_bytes
    with profile() as plain:
        session.expunge_all()
        session.scalars(sa.select(User)).all()
    assert users_only > plain.queries[0].entities[0].estimated_bytes + 20 * 700
