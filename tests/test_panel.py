"""The HTML view model and templates, on report dicts (no database, no toolbar request)."""

from __future__ import annotations

import copy
import typing as t

import pytest
from flask_debugtoolbar.panels import DebugPanel

from flask_querymem import Report
from flask_querymem.panel import QueryMemPanel
from flask_querymem.render import html

from .flask_helpers import text_of

MIB = 1024 * 1024


def query(
    index: int,
    *,
    kind: str = "select",
    sql: str = "SELECT * FROM email_address",
    line: int = 10,
    function: str = "bounces",
    model: str = "EmailAddress",
    count: int = 100,
    loaded: t.Sequence[str] = ("id", "email_address", "first_name", "notes"),
    read: t.Sequence[str] = ("email_address",),
    written: t.Sequence[str] = (),
    relationships: t.Sequence[str] = (),
    nbytes: int = 1000,
    suggestion: dict[str, t.Any] | None = None,
    duration_ms: float = 1.5,
    note: str | None = None,
) -> dict[str, t.Any]:
    return {
        "index": index,
        "sql": sql,
        "location": {"file": "/srv/app/views.py", "line": line, "function": function},
        "kind": kind,
        "duration_ms": duration_ms,
        "entities": [
            {
                "model": model,
                "count": count,
                "columns_loaded": list(loaded),
                "columns_read": list(read),
                "columns_written": list(written),
                "relationships_read": list(relationships),
                "estimated_bytes": nbytes,
            }
        ],
        "estimated_bytes": nbytes,
        "suggestion": suggestion,
        "statements": 1,
        "note": note,
    }


def suggestion(code: str, savings: int, kind: str = "columns") -> dict[str, t.Any]:
    return {
        "kind": kind,
        "columns": ["EmailAddress.email_address"],
        "code": code,
        "estimated_bytes": 100,
        "estimated_savings_bytes": savings,
    }


def report(*queries: dict[str, t.Any], errors: t.Sequence[str] = ()) -> dict[str, t.Any]:
    return {
        "schema": "querymem/1",
        "queries": list(queries),
        "totals": {
            "queries": len(queries),
            "instances": sum(e["count"] for q in queries for e in q["entities"]),
            "estimated_bytes": sum(q["estimated_bytes"] for q in queries),
            "estimated_savings_bytes": sum(
                q["suggestion"]["estimated_savings_bytes"] for q in queries if q["suggestion"]
            ),
        },
        "errors": list(errors),
    }


def n_plus_one_report() -> dict[str, t.Any]:
    lazy = [
        query(
            i,
            kind="lazy_load",
            sql="SELECT * FROM shop_order WHERE ? = shop_order.customer_id",
            line=42,
            function="customer_orders",
            model="Order",
            count=3,
            loaded=("id", "customer_id", "total_cents"),
            read=("total_cents",),
            nbytes=300,
            duration_ms=0.5,
        )
        for i in range(1, 6)
    ]
    main = query(
        0,
        line=40,
        model="Customer",
        count=5,
        loaded=("id", "name", "notes"),
        read=("name",),
        relationships=("orders",),
        nbytes=1000,
        suggestion=suggestion(".options(load_only(Customer.id, Customer.name))", 400, "load_only"),
    )
    return report(main, *lazy)


# --------------------------------------------------------------------------- view model


def test_format_bytes() -> None:
    assert html.format_bytes(None) == "n/a"
    assert html.format_bytes(0) == "0 B"
    assert html.format_bytes(1023) == "1023 B"
    assert html.format_bytes(1536) == "1.5 KiB"
    assert html.format_bytes(230 * MIB) == "230.0 MiB"
    assert html.format_bytes(3 * 1024 * MIB) == "3.0 GiB"
    assert html.format_bytes(-2048) == "-2.0 KiB"


def test_repeated_queries_are_grouped_with_their_count() -> None:
    groups = html.group_queries(n_plus_one_report()["queries"])
    assert len(groups) == 2
    lazy = next(g for g in groups if g.kind == "lazy_load")
    assert lazy.repeat == 5
    assert lazy.indexes == (1, 2, 3, 4, 5)
    assert lazy.estimated_bytes == 1500
    assert lazy.duration_ms == pytest.approx(2.5)
    (order,) = lazy.entities
    assert (order.model, order.count, order.estimated_bytes) == ("Order", 15, 1500)
    assert order.unused_columns == ("id", "customer_id")


def test_groups_are_heaviest_first_with_proportional_bars() -> None:
    groups = html.group_queries(n_plus_one_report()["queries"])
    assert [g.estimated_bytes for g in groups] == [1500, 1000]
    assert [g.bar_percent for g in groups] == [100.0, pytest.approx(66.7)]


def test_same_sql_from_different_lines_is_not_grouped() -> None:
    groups = html.group_queries([query(0, line=1), query(1, line=2), query(2, line=1)])
    assert sorted(g.repeat for g in groups) == [1, 2]


def test_queries_without_location_group_by_sql() -> None:
    a, b = query(0), query(1)
    a["location"] = b["location"] = None
    (group,) = html.group_queries([a, b])
    assert group.repeat == 2
    assert group.location_label == "(unknown location)"


def test_suggestion_savings_are_summed_and_highlighted_from_the_threshold() -> None:
    code = ".with_entities(EmailAddress.email_address)"
    queries = [query(i, suggestion=suggestion(code, 600_000)) for i in range(2)]
    (group,) = html.group_queries(queries, min_savings_bytes=MIB)
    assert group.suggestion is not None
    assert group.suggestion.estimated_savings_bytes == 1_200_000
    assert group.suggestion.highlighted
    (group,) = html.group_queries(queries, min_savings_bytes=2 * MIB)
    assert group.suggestion is not None and not group.suggestion.highlighted


def test_written_and_read_columns_are_used() -> None:
    (group,) = html.group_queries(
        [query(0, loaded=("id", "a", "b", "c"), read=("a",), written=("b",))]
    )
    (entity,) = group.entities
    assert entity.unused_columns == ("id", "c")
    assert [c.name for c in entity.columns if c.written] == ["b"]


def test_paths_are_shortened_against_the_project() -> None:
    (group,) = html.group_queries([query(0)], base_dir="/srv")
    assert group.location_label == "app/views.py:10"
    assert group.location_title == "/srv/app/views.py:10"
    lib = query(0)
    lib["location"]["file"] = "/venv/lib/python3.11/site-packages/pkg/mod.py"
    (group,) = html.group_queries([lib], base_dir="/srv")
    assert group.location_label == "pkg/mod.py:10"


def test_biggest_win_and_totals() -> None:
    view = html.build_panel_view(n_plus_one_report())
    assert view.query_count == 6
    assert view.instance_count == 20
    assert view.estimated_bytes == 2500
    assert view.estimated_savings_bytes == 400
    assert view.biggest_win is not None
    assert view.biggest_win.suggestion is not None
    assert "load_only" in view.biggest_win.suggestion.code


def test_the_view_model_never_edits_the_report() -> None:
    data = n_plus_one_report()
    before = copy.deepcopy(data)
    html.render_panel(data, min_savings_bytes=0)
    assert data == before


def test_nav_subtitle() -> None:
    data = report(
        query(0, nbytes=230 * MIB, suggestion=suggestion(".with_entities(X.y)", 200 * MIB)),
        *(query(i, line=i + 10, nbytes=0) for i in range(1, 12)),
    )
    # an entity, not a literal U+00B7: the toolbar encodes the whole page, which stays ASCII
    assert html.nav_subtitle(data) == "12 queries &middot; 230.0 MiB &middot; 200.0 MiB avoidable"
    assert html.nav_subtitle(report(query(0, nbytes=2048))) == "1 query &middot; 2.0 KiB"
    assert html.nav_subtitle(report()) == "0 queries"
    assert html.nav_subtitle(None) == "no report"


# --------------------------------------------------------------------------- rendering


def test_rendered_panel_shows_what_matters() -> None:
    out = html.render_panel(n_plus_one_report(), min_savings_bytes=0, base_dir="/srv")
    text = text_of(out)
    assert "6 queries loaded 20 ORM instances" in text
    assert "2 rows after grouping repeats" in text
    assert "×5" in text
    assert "Biggest win" in text
    assert ".options(load_only(Customer.id, Customer.name))" in text
    assert "saves ~400 B (estimated)" in text
    assert "relationships read: orders" in text
    assert "1 of 3 loaded columns used" in text
    assert 'class="flDebugTablesorter qmQueries"' in out
    assert 'data-code=".options(load_only(Customer.id, Customer.name))"' in out
    assert '<details class="qmSql"><summary>SQL</summary>' in out
    # no external assets: the panel must work offline
    assert "http://" not in out and "https://" not in out


def test_rendered_panel_escapes_everything_from_the_data() -> None:
    evil = "<script>alert(1)</script>"
    data = report(
        query(
            0,
            sql=f"SELECT '{evil}'",
            model=f"Model{evil}",
            loaded=("id", f"col{evil}"),
            read=(f"col{evil}",),
            relationships=(f"rel{evil}",),
            function=f"view{evil}",
            suggestion=suggestion(f'.with_entities("{evil}")', 10),
            note=evil,
        ),
        errors=[evil],
    )
    data["queries"][0]["location"]["file"] = f"/srv/{evil}.py"
    measurements = {
        "method": "GET",
        "path": f"/{evil}",
        "status_code": 200,
        "duration_ms": 1.0,
        "rss_bytes": 0,
        "rss_error": evil,
    }
    out = html.render_panel(data, measurements=measurements)
    body = out.split("</style>", 1)[1].rsplit('<script type="text/javascript">', 1)[0]
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert '"&lt;script&gt;' not in body  # attribute quoting intact
    assert "&#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in body  # data-code attribute


def test_message_is_escaped() -> None:
    out = html.render_message("<b>t</b>", "<i>d</i>", hint="<u>h</u>")
    assert "<b>t</b>" not in out and "&lt;b&gt;t&lt;/b&gt;" in out
    assert "&lt;i&gt;d&lt;/i&gt;" in out and "&lt;u&gt;h&lt;/u&gt;" in out


def test_empty_report_says_so() -> None:
    assert "This request ran no SQL queries." in text_of(html.render_panel(report()))


def test_internal_errors_are_shown() -> None:
    text = text_of(html.render_panel(report(query(0)), measurements={}))
    assert "internal errors" not in text
    text = text_of(html.render_panel(report(query(0), errors=["analysis failed"])))
    assert "internal errors" in text and "analysis failed" in text


def test_notes_show_when_there_is_no_suggestion() -> None:
    note = "no mapped attribute of these instances was read while profiling"
    assert note in text_of(html.render_panel(report(query(0, note=note))))


def test_track_reads_off_marks_nothing_unused() -> None:
    out = html.render_panel(report(query(0, read=())), track_reads=False)
    assert "loaded but never read" not in out
    assert "Attribute reads are not tracked" in text_of(out)


RSS_PEAK = {"measure": "rss", "rss_bytes": 5 * MIB, "rss_method": "peak"}
RSS_DELTA = {"measure": "rss", "rss_bytes": 5 * MIB, "rss_method": "delta"}
WITH_TRACEMALLOC = {
    "measure": "tracemalloc",
    "rss_bytes": 0,
    "rss_method": "peak",
    "tracemalloc_peak_bytes": 3 * MIB,
    "tracemalloc_retained_bytes": 1024,
}
TRACEMALLOC_TEXT = (
    "3.0 MiB allocated at peak, 1.0 KiB still held at the end measured with tracemalloc"
)


@pytest.mark.parametrize(
    ("measurements", "expected", "absent"),
    [
        (
            RSS_PEAK,
            "Peak RSS growth during the request +5.0 MiB measured: peak RSS (VmHWM)",
            "allocated at peak",
        ),
        (
            RSS_DELTA,
            "RSS after − before +5.0 MiB measured (objects freed by then are not counted)",
            "Peak RSS",
        ),
        (WITH_TRACEMALLOC, TRACEMALLOC_TEXT, None),
        ({"measure": "none"}, 'off — set QUERYMEM_MEASURE = "tracemalloc"', "RSS"),
    ],
)
def test_measurements_are_labelled(
    measurements: dict[str, t.Any], expected: str, absent: str | None
) -> None:
    text = text_of(html.render_panel(report(query(0)), measurements=measurements))
    assert expected in text
    assert "estimated" in text
    if absent:
        assert absent not in text


def test_a_core_report_round_trip_renders() -> None:
    """Our fixture dicts follow the core schema: Report.from_dict accepts them."""
    data = n_plus_one_report()
    again = Report.from_dict(data).to_dict()
    assert html.render_panel(again) == html.render_panel(data)


# --------------------------------------------------------------------------- panel class


def test_panel_class_contract_with_the_toolbar() -> None:
    # 0.16.0's template reads user_activate, the base class defines user_enable
    assert "user_activate" in vars(QueryMemPanel)
    assert QueryMemPanel.user_activate is False
    assert QueryMemPanel.has_content is True
    assert issubclass(QueryMemPanel, DebugPanel)
    # name drives the DOM id and cookie key: must not clash with the toolbar's panels
    builtin = {
        "Versions",
        "Timer",
        "HTTP Headers",
        "Request Vars",
        "Config",
        "Template",
        "SQLAlchemy",
        "Logging",
        "Route List",
        "Profiler",
        "g",
    }
    assert QueryMemPanel.name == "QueryMem"
    assert QueryMemPanel.name not in builtin


# --------------------------------------------------------------------------- issue 10


def test_unsized_result_is_not_sized_never_zero_bytes() -> None:
    core = query(0, sql="SELECT email_address.email_address FROM email_address", nbytes=0)
    core["entities"] = []
    core["sized"] = False
    data = report(core, query(1, line=20))
    (unsized,) = [g for g in html.group_queries(data["queries"]) if not g.sized]
    assert unsized.memory_label == "not sized"
    assert unsized.bar_percent == 0.0
    text = text_of(html.render_panel(data))
    assert "not sized" in text
    assert "1 query not sized" in text
    row = text.split("not sized", 1)[0]
    assert "0 B (estimated)" not in text and not row.rstrip().endswith("0 B")


def test_foreign_key_needed_by_a_relationship_is_used() -> None:
    data = report(
        query(
            0,
            model="Order",
            loaded=("id", "customer_id", "total_cents", "notes"),
            read=("total_cents",),
            relationships=("customer",),
        )
    )
    data["queries"][0]["entities"][0]["columns_needed"] = ["customer_id"]
    (group,) = html.group_queries(data["queries"])
    (entity,) = group.entities
    assert entity.unused_columns == ("id", "notes")
    assert entity.used_count == 2
    out = html.render_panel(data)
    assert 'title="needed by a relationship read (foreign key)">customer_id<' in out
    assert 'qmUnused" title="loaded but never read">customer_id<' not in out
    assert "2 of 4 loaded columns used" in text_of(out)


def test_biggest_win_needs_the_min_savings_and_says_when_nothing_qualifies() -> None:
    data = report(
        query(0, suggestion=suggestion(".with_entities(EmailAddress.email_address)", 500))
    )
    view = html.build_panel_view(data, min_savings_bytes=MIB)
    assert view.biggest_win is None
    assert view.no_win is not None and "1.0 MiB" in view.no_win
    text = text_of(html.render_panel(data, min_savings_bytes=MIB))
    assert "Biggest win" not in text
    assert "No suggestion saves at least 1.0 MiB (QUERYMEM_MIN_SAVINGS_BYTES)" in text
    assert ".with_entities(EmailAddress.email_address)" in text  # still in the table
    assert html.build_panel_view(data, min_savings_bytes=500).biggest_win is not None


def sug_full(**extra: t.Any) -> dict[str, t.Any]:
    data = suggestion(".options(load_only(EmailAddress.email_address))", 2 * MIB, "load_only")
    data["imports"] = ["from sqlalchemy.orm import load_only"]
    data.update(extra)
    return data


def test_imports_are_shown_and_copied_with_the_code() -> None:
    out = html.render_panel(report(query(0, suggestion=sug_full())))
    assert '<code class="qmImports">from sqlalchemy.orm import load_only</code>' in out
    copied = (
        'data-code="from sqlalchemy.orm import load_only\n'
        '.options(load_only(EmailAddress.email_address))"'
    )
    assert out.count(copied) == 2  # biggest win and the row


def test_source_before_after_and_unverified_evidence() -> None:
    sug = sug_full(
        source_before="    emails = db.session.query(EmailAddress).all()",
        source_after="    emails = db.session.query(EmailAddress).options(load_only(...)).all()",
        evidence="incomplete",
        unverified=["instances passed to jsonify()", "getattr with a computed name"],
        callers=3,
    )
    text = text_of(html.render_panel(report(query(0, suggestion=sug))))
    assert "- emails = db.session.query(EmailAddress).all()" in text  # dedented together
    assert "+ emails = db.session.query(EmailAddress).options(load_only(...)).all()" in text
    assert "unverified: instances passed to jsonify(); getattr with a computed name" in text
    assert "this line runs from 3 call chains" in text


def test_verified_suggestion_shows_the_measured_saving() -> None:
    verification = {
        "status": "verified",
        "detail": None,
        "measured_bytes_before": 5 * MIB,
        "measured_bytes_after": 2 * MIB,
    }
    text = text_of(
        html.render_panel(report(query(0, suggestion=sug_full(verification=verification))))
    )
    assert "verified: measured saving 3.0 MiB" in text
    assert "Biggest win" in text


def test_failed_verification_is_not_offered_and_says_why() -> None:
    verification = {"status": "differs", "detail": "the response body changed"}
    note = "a relationship is read in a template"
    data = report(query(0, suggestion=sug_full(verification=verification), note=note))
    view = html.build_panel_view(data)
    assert view.biggest_win is None
    (group,) = view.groups
    assert group.suggestion is not None and not group.suggestion.offered
    assert not group.suggestion.highlighted
    out = html.render_panel(data)
    text = text_of(out)
    assert "Not offered: failed verification: the response body changed" in text
    assert note in text
    assert "qmCopy" not in out.split("</style>", 1)[1].split("<script", 1)[0]


def test_callers_and_context_of_a_location() -> None:
    q = query(0, kind="lazy_load", function="Customer.display_name")
    q["location"]["callers"] = [
        {"file": "/srv/app/views.py", "line": 12, "function": "index"},
        {"file": "/srv/app/cli.py", "line": 3, "function": "main"},
    ]
    q["location"]["context"] = "during response serialization (marshmallow)"
    (group,) = html.group_queries([q], base_dir="/srv")
    assert group.called_from == "called from app/views.py:12 index, from app/cli.py:3 main"
    text = text_of(html.render_panel(report(q), base_dir="/srv"))
    assert "called from app/views.py:12 index, from app/cli.py:3 main" in text
    assert "during response serialization (marshmallow)" in text


def test_every_note_of_a_query_without_suggestion_is_shown() -> None:
    notes = [f"note number {i}" for i in range(3)]
    data = report(*(query(i, line=10 + i, note=notes[i]) for i in range(3)))
    text = text_of(html.render_panel(data))
    assert all(n in text for n in notes)


def test_executions_give_the_repeat_count() -> None:
    grouped = query(1, kind="lazy_load", line=42, count=150, nbytes=15000)
    grouped["executions"] = 50
    grouped["example_indexes"] = [1, 2, 3]
    (group,) = html.group_queries([grouped])
    assert group.repeat == 50
    assert group.indexes == (1, 2, 3)
    assert "×50" in text_of(html.render_panel(report(grouped)))
    # an older report with one entry per execution, some already grouped: executions add up
    a, b = query(1, line=42), query(7, line=42)
    a["executions"], b["executions"] = 2, 3
    (group,) = html.group_queries([a, b])
    assert group.repeat == 5


def test_panel_output_is_ascii() -> None:
    data = n_plus_one_report()
    data["queries"][0]["sql"] = "SELECT 'naïve — ünïcode'"
    out = html.render_panel(data, measurements={"measure": "rss", "rss_method": "delta"})
    assert out.isascii()
    assert "naïve — ünïcode" in text_of(out)


# --------------------------------------------------------------------------- Verify buttons


def test_verify_buttons_call_the_endpoint_with_the_query_indexes() -> None:
    data = report(query(0, suggestion=sug_full()), query(3, line=20))
    out = html.render_panel(data, verify={"url": "/_querymem/verify/abc", "rollback": None})
    assert out.count('class="qmVerify"') == 1  # only the query with a suggestion
    assert 'data-url="/_querymem/verify/abc" data-query="0"' in out
    markup = out.split("<script", 1)[0]
    assert ">Verify</button>" in markup and "data-rollback" not in markup
    assert 'class="qmVerify"' not in html.render_panel(data)  # no endpoint: no button


def test_a_request_that_must_be_rolled_back_says_so_on_its_button() -> None:
    why = 'a POST request is not replayed unless asked <"quoted">'
    out = html.render_panel(
        report(query(0, suggestion=sug_full())), verify={"url": "/v/1", "rollback": why}
    )
    assert 'data-rollback="1"' in out
    assert ">Verify in a rolled-back transaction</button>" in out
    assert "&lt;&#34;quoted&#34;&gt;" in out or "&lt;&quot;quoted&quot;&gt;" in out


def test_a_verified_suggestion_has_no_button_and_a_skipped_one_is_unverified() -> None:
    verified = {"status": "verified", "detail": None, "measured_bytes_before": 3 * MIB,
                "measured_bytes_after": MIB}  # fmt: skip
    out = html.render_panel(
        report(query(0, suggestion=sug_full(verification=verified))),
        verify={"url": "/v/1", "rollback": None},
    )
    assert "qmVerify" not in out.split("<script", 1)[0].split("</style>", 1)[1]
    assert "verified: measured saving 2.0 MiB" in text_of(out)

    skipped = {"status": "skipped", "detail": "the request wrote to the database"}
    text = text_of(html.render_panel(report(query(0, suggestion=sug_full(verification=skipped)))))
    assert "unverified: not replayed: the request wrote to the database" in text
    assert "Biggest win" in text  # unverified is still offered


def test_verified_with_a_detail_keeps_it() -> None:
    v = html.build_panel_view(
        report(
            query(
                0,
                suggestion=sug_full(
                    verification={
                        "status": "verified",
                        "detail": "not deterministic: compared 90 of 100 bytes",
                        "measured_bytes_before": 2048,
                        "measured_bytes_after": 1024,
                    }
                ),
            )
        )
    )
    (group,) = v.groups
    assert group.suggestion is not None and group.suggestion.verification is not None
    assert group.suggestion.verification.label == (
        "verified: measured saving 1.0 KiB (not deterministic: compared 90 of 100 bytes)"
    )
