"""The text report (``Report.to_text()`` / ``render.text.render``) on hand-built reports."""

from __future__ import annotations

import typing as t

import pytest

from flask_querymem import Report
from flask_querymem.render import text

from .test_panel import n_plus_one_report, query, report, suggestion

LONG = "/srv/a/very/long/project/directory/with/many/levels/app/views/reporting.py"


def render(data: dict[str, t.Any], **kwargs: t.Any) -> str:
    return text.render(Report.from_dict(data), **kwargs)


def test_locations_are_never_cut() -> None:
    q = query(0)
    q["location"]["file"] = LONG
    out = render(report(q))
    assert f"{LONG}:10 bounces" in out


def test_paths_are_relative_only_to_an_explicit_base_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    out = render(report(query(0)))
    assert "/srv/app/views.py:10 bounces" in out  # absolute: no implicit os.getcwd()
    out = render(report(query(0)), base_dir="/srv")
    assert " app/views.py:10 bounces" in out and "/srv/app" not in out
    assert Report.from_dict(report(query(0))).to_text(base_dir="/srv") == out


def test_one_query_is_singular() -> None:
    out = render(report(query(0, count=1)))
    assert out.startswith("flask-querymem: 1 query, 1 ORM instance,")
    assert "1 queries" not in out
    assert render(report(query(0), query(1, line=11))).startswith("flask-querymem: 2 queries,")


def test_relationships_read_are_listed() -> None:
    out = render(n_plus_one_report())
    assert "Customer relationships read: orders" in out


def test_repeats_use_executions() -> None:
    q = query(1, kind="lazy_load", line=42)
    q["executions"] = 50
    out = render(report(q))
    assert "lazy_load ×50" in out
    assert "lazy_load ×5 " in render(n_plus_one_report())


def test_not_sized_and_needed_columns() -> None:
    core = query(0, nbytes=0)
    core["entities"] = []
    core["sized"] = False
    fk = query(1, line=20, loaded=("id", "customer_id", "email_address"))
    fk["entities"][0]["columns_needed"] = ["customer_id"]
    out = render(report(core, fk))
    first_row = next(line for line in out.splitlines() if line.startswith("  0 "))
    assert "not sized" in first_row and " 0 B" not in first_row
    assert "(1 query not sized)" in out
    assert "needed by relationships: customer_id; unused: id" in out


def test_suggestion_with_imports_source_and_evidence() -> None:
    sug = suggestion(".options(load_only(EmailAddress.email_address))", 2048, "load_only")
    sug.update(
        imports=["from sqlalchemy.orm import load_only"],
        source_before="rows = q.all()",
        source_after="rows = q.options(load_only(EmailAddress.email_address)).all()",
        evidence="incomplete",
        unverified=["instances passed to jsonify()"],
    )
    out = render(report(query(0, suggestion=sug)))
    assert "import:  from sqlalchemy.orm import load_only" in out
    assert "before: rows = q.all()" in out
    assert "after:  rows = q.options(load_only(EmailAddress.email_address)).all()" in out
    assert "unverified: instances passed to jsonify()" in out


def test_failed_verification_is_not_suggested() -> None:
    sug = suggestion(".with_entities(EmailAddress.email_address)", 2048)
    sug["verification"] = {"status": "error", "detail": "AttributeError: first_name"}
    out = render(report(query(0, suggestion=sug, note="kept for the template")))
    assert "suggest:" not in out
    assert "not offered: .with_entities(EmailAddress.email_address): failed verification" in out
    assert "note: kept for the template" in out


def test_callers_and_context() -> None:
    q = query(0)
    q["location"]["callers"] = [{"file": "/srv/app/views.py", "line": 12, "function": "index"}]
    q["location"]["context"] = "during response serialization (marshmallow)"
    out = render(report(q), base_dir="/srv")
    assert "called from app/views.py:12 index" in out
    assert "during response serialization (marshmallow)" in out


def test_text_renderer_uses_the_shared_view_model_not_the_html_renderer() -> None:
    import flask_querymem.render.text as module

    origins = {getattr(v, "__module__", None) for v in vars(module).values() if callable(v)}
    assert "flask_querymem.render.view" in origins
    assert "flask_querymem.render.html" not in origins
