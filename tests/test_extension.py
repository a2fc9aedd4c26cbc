"""The QueryMem Flask extension: activation, hooks, toolbar integration, failure modes.

Every test drives a real app through the test client, with Flask-DebugToolbar
and a real database (``database_url``: SQLite, PostgreSQL or MariaDB).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import sys
import threading
import tracemalloc
import typing as t
import uuid
from html import unescape as html_unescape

import pytest
import sqlalchemy as sa
from flask import Flask, jsonify
from flask_debugtoolbar import DebugToolbarExtension
from flask_sqlalchemy import SQLAlchemy
from markupsafe import escape
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

import flask_querymem.extension as extension_module
from flask_querymem import config, location, measure, tracking
from flask_querymem.extension import PANEL_PATH, QueryMem
from flask_querymem.history import MemoryHistory, RequestProfile
from flask_querymem.profiler import Profiler
from flask_querymem.render import html

from .flask_helpers import (
    IsolatedDatabase,
    isolated_database,
    nav_entry,
    panel_content,
    run_query_here,
    text_of,
)


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Contact(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "qmx_contact"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(120))
    name: Mapped[str] = mapped_column(sa.String(120))
    phone: Mapped[str] = mapped_column(sa.String(40))
    city: Mapped[str] = mapped_column(sa.String(80))
    notes: Mapped[str] = mapped_column(sa.Text)


EVIL_MODEL = "Evil<script>alert(1)</script>"
EVIL_COLUMN = "<img src=x onerror=alert(2)>"
EVIL_VALUE = "<script>alert('value')</script>"

Evil = type(
    EVIL_MODEL,
    (db.Model,),
    {
        "__tablename__": "qmx_evil",
        "id": mapped_column(sa.Integer, primary_key=True),
        EVIL_COLUMN: mapped_column(sa.String(60)),
        "body": mapped_column(sa.Text),
    },
)


class PlainBase(DeclarativeBase):
    pass


class Thing(PlainBase):
    __tablename__ = "qmx_thing"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(sa.String(60))
    description: Mapped[str] = mapped_column(sa.Text)


CONTACTS = 30
INIT_STEPS: dict[str, t.Callable[[Flask], object]] = {
    "querymem": QueryMem,
    "toolbar": DebugToolbarExtension,
    "sqlalchemy": db.init_app,
}


def page(body: str) -> str:
    return f"<!doctype html><html><head><title>t</title></head><body>{body}</body></html>"


def register_views(app: Flask) -> None:
    @app.route("/contacts")
    def contacts() -> str:
        rows = db.session.query(Contact).all()
        return page("<ul>" + "".join(f"<li>{escape(c.email)}</li>" for c in rows) + "</ul>")

    @app.route("/json")
    def as_json() -> t.Any:
        rows = db.session.query(Contact).all()
        return jsonify(emails=[c.email for c in rows])

    @app.route("/handled-error")
    def handled_error() -> str:
        db.session.query(Contact).all()
        raise ZeroDivisionError("boom")

    @app.route("/unhandled-error")
    def unhandled_error() -> str:
        db.session.query(Contact).all()
        raise KeyError("boom")

    @app.route("/evil")
    def evil() -> str:
        rows: list[t.Any] = db.session.query(Evil).all()
        return page("".join(f"<p>{escape(getattr(e, EVIL_COLUMN))}</p>" for e in rows))

    @app.route("/via-util")
    def via_util() -> str:
        rows = run_query_here(db.session, sa.select(Contact))
        return page(" ".join(str(escape(c.email)) for c in rows))

    @app.errorhandler(ZeroDivisionError)
    def on_zero(exc: ZeroDivisionError) -> tuple[str, int]:
        return page("<h1>handled by the app</h1>"), 500


def seed(app: Flask) -> None:
    with app.app_context():
        db.create_all()
        if db.session.query(Contact).count():
            return
        db.session.add_all(
            Contact(
                email=f"c{i}@example.com",
                name=f"Contact {i}",
                phone=f"555-{i:04d}",
                city="Springfield",
                notes="n" * 200,
            )
            for i in range(CONTACTS)
        )
        for _ in range(3):
            row = Evil(body=EVIL_VALUE)
            setattr(row, EVIL_COLUMN, EVIL_VALUE)
            db.session.add(row)
        db.session.commit()


@pytest.fixture()
def isolated_db(database_url: str, tmp_path: t.Any) -> t.Iterator[IsolatedDatabase]:
    with isolated_database(database_url, str(tmp_path)) as iso:
        yield iso


AppFactory = t.Callable[..., Flask]


@pytest.fixture()
def make_app(isolated_db: IsolatedDatabase) -> t.Iterator[AppFactory]:
    """Build test apps; disposes their engines before the isolated database is dropped."""
    apps: list[Flask] = []

    def factory(
        order: t.Sequence[str] = ("toolbar", "sqlalchemy", "querymem"),
        seed_data: bool = True,
        **config: t.Any,
    ) -> Flask:
        app = Flask(__name__)
        app.config.update(
            DEBUG=True,
            TESTING=True,
            SECRET_KEY="test-secret",
            DEBUG_TB_INTERCEPT_REDIRECTS=False,
            QUERYMEM_MIN_SAVINGS_BYTES=0,
            QUERYMEM_MIN_SUGGEST_BYTES=0,
            **isolated_db.flask_config(),
        )
        app.config.update(config)
        for step in order:
            INIT_STEPS[step](app)
        register_views(app)
        if seed_data and "sqlalchemy" in order:
            seed(app)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        if "sqlalchemy" in app.extensions:
            with app.app_context():
                for engine in db.engines.values():
                    engine.dispose()


@pytest.fixture(autouse=True)
def no_profile_left_active() -> t.Iterator[None]:
    yield
    assert tracking.current() is None, "a profile was left active after the test"


def get_report(app: Flask) -> dict[str, t.Any]:
    profiles = app.extensions["querymem"].history(app)
    assert profiles, "no profile was recorded"
    report = profiles[-1].report
    assert report is not None
    return t.cast("dict[str, t.Any]", report.to_dict())


# --------------------------------------------------------------------------- setup


@pytest.mark.parametrize("order", list(itertools.permutations(INIT_STEPS)), ids="-".join)
def test_panel_shown_whatever_the_init_order(make_app: AppFactory, order: tuple[str, ...]) -> None:
    app = make_app(order=order)
    assert app.config["DEBUG_TB_PANELS"][-1] == PANEL_PATH
    response = app.test_client().get("/contacts")
    assert response.status_code == 200
    page_html = response.get_data(as_text=True)
    # the toolbar's default panels are kept, ours is added
    assert 'id="flDebugTimerPanel"' in page_html
    assert 'id="flDebugSQLAlchemyPanel"' in page_html
    assert "1 query" in text_of(nav_entry(page_html))
    content = panel_content(page_html, app)
    assert "Contact" in content
    assert f"&times;{CONTACTS}" in content
    assert ".with_entities(Contact.email)" in content


def test_user_panel_list_is_appended_to(make_app: AppFactory) -> None:
    timer = "flask_debugtoolbar.panels.timer.TimerDebugPanel"
    app = make_app(DEBUG_TB_PANELS=[timer])
    assert app.config["DEBUG_TB_PANELS"] == [timer, PANEL_PATH]
    page_html = app.test_client().get("/contacts").get_data(as_text=True)
    assert 'id="flDebugTimerPanel"' in page_html
    assert 'id="flDebugVersionPanel"' not in page_html
    assert "Contact" in panel_content(page_html, app)


def test_panel_listed_once_when_already_configured(make_app: AppFactory) -> None:
    app = make_app(DEBUG_TB_PANELS=(PANEL_PATH,))
    assert app.config["DEBUG_TB_PANELS"] == (PANEL_PATH,)


def test_factory_form_registers_itself(make_app: AppFactory) -> None:
    qm = QueryMem()
    app = make_app(order=("toolbar", "sqlalchemy"))
    qm.init_app(app)
    assert app.extensions["querymem"] is qm
    assert qm.is_active(app)
    page_html = app.test_client().get("/contacts").get_data(as_text=True)
    assert ".with_entities(Contact.email)" in panel_content(page_html, app)


def test_second_init_is_refused(make_app: AppFactory) -> None:
    app = make_app()
    with pytest.raises(RuntimeError, match="already been registered"):
        QueryMem(app)


def test_unknown_measure_is_refused(make_app: AppFactory) -> None:
    with pytest.raises(ValueError, match="QUERYMEM_MEASURE"):
        make_app(QUERYMEM_MEASURE="psutil")


# --------------------------------------------------------------------------- inactive


def test_debug_off_installs_nothing(make_app: AppFactory, caplog: pytest.LogCaptureFixture) -> None:
    tracking.uninstall()
    caplog.set_level(logging.INFO, logger="flask_querymem")
    app = make_app(DEBUG=False)
    qm = app.extensions["querymem"]
    assert not qm.is_active(app)
    assert "not in debug mode" in qm.inactive_reason(app)
    assert PANEL_PATH not in app.config.get("DEBUG_TB_PANELS", ())
    assert not any(getattr(f, "__self__", None) is qm for f in app.before_request_funcs[None])
    response = app.test_client().get("/contacts")
    assert response.status_code == 200
    assert "flDebug" not in response.get_data(as_text=True)
    assert not tracking.is_installed()
    assert qm.history(app) == []
    inactive = [r for r in caplog.records if "inactive" in r.getMessage()]
    assert len(inactive) == 1 and inactive[0].levelno == logging.INFO


def test_enabled_false_overrides_debug(make_app: AppFactory) -> None:
    tracking.uninstall()
    app = make_app(QUERYMEM_ENABLED=False)
    page_html = app.test_client().get("/contacts").get_data(as_text=True)
    assert "flDebugTimerPanel" in page_html  # the toolbar still runs
    assert "flDebugQueryMemPanel" not in page_html
    assert not tracking.is_installed()


def test_toolbar_disabled_is_a_warning(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_querymem")
    app = make_app(DEBUG_TB_ENABLED=False)
    assert not app.extensions["querymem"].is_active(app)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("DEBUG_TB_ENABLED = False" in r.getMessage() for r in warnings)


def test_missing_secret_key_is_explained(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_querymem")
    with pytest.raises(RuntimeError, match="SECRET_KEY"):  # the toolbar's own refusal
        make_app(order=("querymem", "sqlalchemy", "toolbar"), SECRET_KEY=None)
    assert any("SECRET_KEY is not set" in r.getMessage() for r in caplog.records)


def test_forced_on_without_toolbar_warns_and_keeps_history(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_querymem")
    app = make_app(order=("sqlalchemy", "querymem"), DEBUG=False, QUERYMEM_ENABLED=True)
    client = app.test_client()
    client.get("/contacts")
    client.get("/contacts")
    warnings = [r for r in caplog.records if "Flask-DebugToolbar is not running" in r.getMessage()]
    assert len(warnings) == 1  # once per app, not per request
    report = get_report(app)
    assert report["queries"][0]["entities"][0]["model"] == "Contact"
    assert len(app.extensions["querymem"].history(app)) == 2


# --------------------------------------------------------------------------- requests


def test_the_panel_is_analysed_and_rendered_when_opened(make_app: AppFactory) -> None:
    """QUERYMEM_PANEL_LAZY (default): a page carries a place-holder; its report is
    analysed when the panel endpoint is asked for it, and the body is the one the
    panel renders inline with QUERYMEM_PANEL_LAZY = False."""
    app = make_app()
    page_html = app.test_client().get("/contacts").get_data(as_text=True)
    (profile,) = app.extensions["querymem"].history(app)
    assert not profile.analysed  # nothing analysed for a page whose panel is closed
    assert profile.summary is not None and profile.summary["queries"] == 1
    assert profile.summary["instances"] == CONTACTS
    stub = panel_content(page_html)  # no app: the place-holder as it is in the page
    assert "qmRow" not in stub and "Loading the report" in text_of(stub)
    src = re.search(r'data-querymem-src="([^"]+)"', stub)
    assert src is not None and html_unescape(src.group(1)) == f"/_querymem/panel/{profile.id}"
    opened = app.test_client().get(html_unescape(src.group(1)))
    assert opened.status_code == 200 and opened.mimetype == "application/json"
    assert profile.analysed
    assert len(re.findall(r'<tr class="[^"]*\bqmRow\b', opened.get_json()["html"])) == 1
    # the summary taken at the end of the request is the analysed report's total
    assert profile.report is not None
    # (the same weighted means summed in another order: a byte of float rounding)
    assert abs(profile.summary["estimated_bytes"] - profile.report.totals.estimated_bytes) <= 1

    inline = make_app(QUERYMEM_PANEL_LAZY=False)
    inline_page = inline.test_client().get("/contacts").get_data(as_text=True)
    assert "data-querymem-src=" not in inline_page
    (inline_profile,) = inline.extensions["querymem"].history(inline)
    assert inline_profile.analysed
    body = panel_content(inline_page)
    assert "avoidable" in text_of(nav_entry(inline_page))
    fetched = panel_content(page_html, app)

    def rows(fragment: str) -> list[str]:
        return re.findall(r'<tr class="[^"]*qmRow.*?</tr>', fragment, re.S)

    assert rows(body) and rows(body)[0].split("<details")[0] == rows(fetched)[0].split("<details")[
        0
    ].replace(f"/_querymem/verify/{profile.id}", f"/_querymem/verify/{inline_profile.id}")

    gone = app.test_client().get("/_querymem/panel/no-such-id")
    assert gone.status_code == 404
    assert "no longer in the history" in text_of(gone.get_json()["html"])


def test_a_request_of_many_statements_is_analysed_when_it_ends(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its record (one entry per execution) would outweigh its report (one per statement)."""
    app = make_app()
    monkeypatch.setattr(extension_module, "EAGER_ANALYSIS_EXECUTIONS", 0)
    app.test_client().get("/contacts")
    (profile,) = app.extensions["querymem"].history(app)
    assert profile.analysed
    assert profile.analysed_report is not None
    assert profile.analysed_report.totals.queries == 1


def test_a_report_read_later_hears_from_requests_never_opened(make_app: AppFactory) -> None:
    """Reading one report analyses the pending ones of the history first, so the
    reconciliation across requests is the same as if each had been analysed at once."""
    app = make_app()
    client = app.test_client()
    client.get("/contacts")
    client.get("/contacts")
    first, second = app.extensions["querymem"].history(app)
    assert not first.analysed and not second.analysed
    assert first.report is not None
    assert second.analysed


def test_panel_content_for_a_request(make_app: AppFactory) -> None:
    app = make_app()
    page_html = app.test_client().get("/contacts").get_data(as_text=True)
    nav = text_of(nav_entry(page_html))
    report = get_report(app)
    assert nav.startswith("QueryMem 1 query")
    # the avoidable memory needs the analysis: done when the panel is opened
    assert "avoidable" not in nav
    src = re.search(r'data-querymem-src="([^"]+)"', page_html)
    assert src is not None
    opened = app.test_client().get(html_unescape(src.group(1))).get_json()
    subtitle = html_unescape(opened["subtitle"])
    assert subtitle.startswith(nav.removeprefix("QueryMem ") + " · ")
    assert subtitle.endswith(" avoidable")
    content = panel_content(page_html, app)
    text = text_of(content)
    assert f"1 query loaded {CONTACTS} ORM instances" in text
    assert "Biggest win" in text
    assert "memory_profiler" not in text
    assert "Peak RSS growth during the request" in text or "RSS after − before" in text
    (query,) = report["queries"]
    assert query["entities"][0]["count"] == CONTACTS
    assert query["entities"][0]["columns_read"] == ["email"]
    assert query["suggestion"]["code"] == ".with_entities(Contact.email)"
    # unused columns are marked, the read one is not
    for column in ("name", "phone", "city", "notes"):
        assert f'title="loaded but never read">{column}<' in content
    assert 'class="qmCol" title="read">email<' in content
    # sortable with the toolbar's own classes; SQL collapsed in a <details>
    assert 'class="flDebugTablesorter qmQueries"' in content
    assert "flDebugOdd" in content
    assert '<details class="qmSql"><summary>SQL</summary><pre>SELECT' in content
    assert "tests/test_extension.py:" in content
    assert "contacts()" in content


def test_json_view_is_profiled(make_app: AppFactory) -> None:
    app = make_app()
    response = app.test_client().get("/json")
    assert response.status_code == 200
    assert response.is_json
    assert len(response.get_json()["emails"]) == CONTACTS
    assert b"flDebug" not in response.data
    profile = app.extensions["querymem"].history(app)[-1]
    assert profile.status_code == 200
    assert profile.path == "/json"
    assert profile.report is not None
    assert profile.report.to_dict()["queries"][0]["suggestion"]["code"] == (
        ".with_entities(Contact.email)"
    )


def test_handled_error_keeps_the_apps_error_page(make_app: AppFactory) -> None:
    app = make_app()
    response = app.test_client().get("/handled-error")
    assert response.status_code == 500
    page_html = response.get_data(as_text=True)
    assert "handled by the app" in page_html
    assert "Contact" in panel_content(page_html, app)  # the toolbar shows on 500 pages too
    assert tracking.current() is None


def test_unhandled_error_propagates_and_profile_is_stopped(make_app: AppFactory) -> None:
    app = make_app()
    with pytest.raises(KeyError, match="boom"):
        app.test_client().get("/unhandled-error")
    assert tracking.current() is None
    profile = app.extensions["querymem"].history(app)[-1]
    assert profile.path == "/unhandled-error"
    assert profile.status_code == 500
    assert profile.report is not None and profile.report.totals.queries == 1


def test_unhandled_error_without_testing_returns_500(make_app: AppFactory) -> None:
    app = make_app(TESTING=False, DEBUG=True, PROPAGATE_EXCEPTIONS=False)
    response = app.test_client().get("/unhandled-error")
    assert response.status_code == 500
    assert tracking.current() is None


def test_html_in_data_is_escaped(make_app: AppFactory) -> None:
    app = make_app()
    page_html = app.test_client().get("/evil").get_data(as_text=True)
    content = panel_content(page_html, app)
    report = get_report(app)
    entity = report["queries"][0]["entities"][0]
    assert entity["model"] == EVIL_MODEL
    assert EVIL_COLUMN in entity["columns_loaded"]
    # nothing from the data reaches the page as markup
    assert "<script>alert" not in content
    assert "<img src=x" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "&lt;img src=x onerror=alert(2)&gt;" in content
    # ... and the nav entry (the toolbar escapes it) is intact
    assert "<script>alert" not in nav_entry(page_html)


def test_ignore_modules_moves_the_location_to_the_caller(make_app: AppFactory) -> None:
    app = make_app()
    app.test_client().get("/via-util")
    location = get_report(app)["queries"][0]["location"]
    assert location["file"].endswith("flask_helpers.py")

    other = make_app(seed_data=False, QUERYMEM_IGNORE_MODULES=("tests.flask_helpers",))
    other.test_client().get("/via-util")
    location = get_report(other)["queries"][0]["location"]
    assert location["file"].endswith("test_extension.py")
    assert location["function"].endswith("via_util")


def test_track_reads_off(make_app: AppFactory) -> None:
    app = make_app(QUERYMEM_TRACK_READS=False)
    content = panel_content(app.test_client().get("/contacts").get_data(as_text=True), app)
    assert "Attribute reads are not tracked" in text_of(content)
    assert "loaded but never read" not in content


def test_min_savings_controls_highlighting(make_app: AppFactory) -> None:
    app = make_app()
    content = panel_content(app.test_client().get("/contacts").get_data(as_text=True), app)
    assert "qmRow qmHot" in content

    high = make_app(seed_data=False, QUERYMEM_MIN_SAVINGS_BYTES=10**12)
    content = panel_content(high.test_client().get("/contacts").get_data(as_text=True), high)
    assert "qmRow qmHot" not in content
    assert ".with_entities(Contact.email)" in content  # still shown


def test_tracemalloc_measurement_is_opt_in(make_app: AppFactory) -> None:
    was_tracing = tracemalloc.is_tracing()
    app = make_app(QUERYMEM_MEASURE="tracemalloc")
    content = panel_content(app.test_client().get("/contacts").get_data(as_text=True), app)
    profile = app.extensions["querymem"].history(app)[-1]
    assert profile.tracemalloc_peak_bytes and profile.tracemalloc_peak_bytes > 0
    assert "allocated at peak" in text_of(content)
    assert tracemalloc.is_tracing() == was_tracing

    default = make_app(seed_data=False)
    content = panel_content(default.test_client().get("/contacts").get_data(as_text=True), default)
    assert 'QUERYMEM_MEASURE = "tracemalloc"' in text_of(content)


def test_measure_none_skips_rss(make_app: AppFactory) -> None:
    app = make_app(QUERYMEM_MEASURE=None)
    content = panel_content(app.test_client().get("/contacts").get_data(as_text=True), app)
    assert "RSS" not in text_of(content)
    assert app.extensions["querymem"].history(app)[-1].rss_bytes is None


def test_toolbar_and_static_requests_are_not_profiled(make_app: AppFactory) -> None:
    app = make_app()
    client = app.test_client()
    response = client.get("/_debug_toolbar/static/css/toolbar.css")
    assert response.status_code == 200
    response.close()
    assert app.extensions["querymem"].history(app) == []


def test_history_is_bounded(make_app: AppFactory) -> None:
    app = make_app(QUERYMEM_HISTORY_SIZE=2)
    client = app.test_client()
    for path in ("/json", "/contacts", "/json"):
        client.get(path)
    assert [p.path for p in app.extensions["querymem"].history(app)] == ["/contacts", "/json"]


def test_plain_sqlalchemy_session(isolated_db: IsolatedDatabase) -> None:
    engine = isolated_db.create_engine()
    PlainBase.metadata.create_all(engine)
    make_session = sessionmaker(engine)
    with make_session() as session:
        session.add_all(Thing(label=f"t{i}", description="d" * 300) for i in range(12))
        session.commit()

    app = Flask(__name__)
    app.config.update(
        DEBUG=True, SECRET_KEY="s", QUERYMEM_MIN_SAVINGS_BYTES=0, QUERYMEM_MIN_SUGGEST_BYTES=0
    )
    QueryMem(app)
    DebugToolbarExtension(app)

    @app.route("/things")
    def things() -> str:
        with make_session() as session:
            labels = [t_.label for t_ in session.execute(sa.select(Thing)).scalars()]
        return page(", ".join(labels))

    try:
        content = panel_content(app.test_client().get("/things").get_data(as_text=True), app)
        assert "Thing" in content
        assert "&times;12" in content
        assert "select(Thing.label)" in content
    finally:
        PlainBase.metadata.drop_all(engine)
        engine.dispose()


# --------------------------------------------------------------------------- robustness


def test_profiler_failure_does_not_break_the_request(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()

    def broken_start(self: t.Any) -> t.Any:
        raise RuntimeError("profiler exploded")

    monkeypatch.setattr("flask_querymem.profiler.Profiler.start", broken_start)
    response = app.test_client().get("/contacts")
    assert response.status_code == 200
    content = panel_content(response.get_data(as_text=True), app)
    assert "This request was not profiled" in text_of(content)
    assert any("profiler exploded" in (r.exc_text or "") for r in caplog.records)


def test_render_failure_shows_a_message(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()

    def broken_render(*args: t.Any, **kwargs: t.Any) -> str:
        raise RuntimeError("template exploded")

    monkeypatch.setattr("flask_querymem.render.html.render_panel", broken_render)
    response = app.test_client().get("/contacts")
    assert response.status_code == 200
    text = text_of(panel_content(response.get_data(as_text=True), app))
    assert "could not be rendered" in text
    assert "template exploded" in text


def test_panel_without_extension_explains(make_app: AppFactory) -> None:
    app = make_app(order=("toolbar", "sqlalchemy"), DEBUG_TB_PANELS=[PANEL_PATH])
    text = text_of(panel_content(app.test_client().get("/contacts").get_data(as_text=True), app))
    assert "QueryMem is not initialised on this app" in text


def test_panel_listed_but_querymem_inactive_explains(make_app: AppFactory) -> None:
    app = make_app(DEBUG_TB_PANELS=[PANEL_PATH], QUERYMEM_ENABLED=False)
    page_html = app.test_client().get("/contacts").get_data(as_text=True)
    assert "QueryMem is inactive for this app" in text_of(panel_content(page_html, app))
    assert "inactive" in text_of(nav_entry(page_html))


# --------------------------------------------------------------------------- CLI


def test_cli_report_text_and_json(make_app: AppFactory) -> None:
    app = make_app()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["querymem", "report", "/contacts"])
    assert result.exit_code == 0, result.output
    assert "GET /contacts -> 200" in result.stderr
    assert ".with_entities(Contact.email)" in result.stdout
    assert app.extensions["querymem"].history(app) == []  # the extension left it alone

    result = runner.invoke(args=["querymem", "report", "--json", "/contacts"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema"] == "querymem/1"
    assert data["queries"][0]["entities"][0]["count"] == CONTACTS


def test_cli_works_when_the_extension_is_inactive(make_app: AppFactory) -> None:
    app = make_app(DEBUG=False)
    result = app.test_cli_runner().invoke(args=["querymem", "report", "/contacts"])
    assert result.exit_code == 0, result.output
    assert ".with_entities(Contact.email)" in result.stdout


def test_cli_rejects_a_url_without_slash(make_app: AppFactory) -> None:
    app = make_app(seed_data=False)
    result = app.test_cli_runner().invoke(args=["querymem", "report", "contacts"])
    assert result.exit_code == 2
    assert "starting with '/'" in result.output


def test_cli_reports_a_failing_request(make_app: AppFactory) -> None:
    app = make_app(TESTING=False, PROPAGATE_EXCEPTIONS=False)
    result = app.test_cli_runner().invoke(args=["querymem", "report", "/unhandled-error"])
    assert result.exit_code == 1
    assert "GET /unhandled-error -> 500" in result.stderr


def test_hooks_are_first_before_request(make_app: AppFactory) -> None:
    app = make_app(order=("toolbar", "sqlalchemy", "querymem"))
    first = app.before_request_funcs[None][0]
    assert getattr(first, "__func__", None) is extension_module.QueryMem._before_request


def test_toolbar_not_installed_is_a_warning(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_querymem")
    monkeypatch.setitem(sys.modules, "flask_debugtoolbar", None)  # import now fails
    app = make_app(order=("sqlalchemy", "querymem"))
    qm = app.extensions["querymem"]
    assert not qm.is_active(app)
    assert "Flask-DebugToolbar is not installed" in qm.inactive_reason(app)
    assert "DEBUG_TB_PANELS" not in app.config
    assert any(
        r.levelno == logging.WARNING and "not installed" in r.getMessage() for r in caplog.records
    )


def test_panels_replaced_after_init_is_a_warning(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_querymem")
    app = make_app()
    app.config["DEBUG_TB_PANELS"] = ["flask_debugtoolbar.panels.timer.TimerDebugPanel"]
    client = app.test_client()
    client.get("/contacts")
    client.get("/contacts")
    replaced = [r for r in caplog.records if "DEBUG_TB_PANELS was replaced" in r.getMessage()]
    assert len(replaced) == 1


def test_toolbar_jinja_environment_is_left_alone(make_app: AppFactory) -> None:
    """Never wrap the toolbar's shared loader (that leaks until RecursionError)."""
    app = make_app()
    toolbar = next(
        f.__self__  # type: ignore[union-attr]
        for f in app.before_request_funcs[None]
        if isinstance(getattr(f, "__self__", None), DebugToolbarExtension)
    )
    loader = toolbar.jinja_env.loader
    client = app.test_client()
    for _ in range(30):
        page = client.get("/contacts").get_data(as_text=True)
        assert ".with_entities(Contact.email)" in panel_content(page, app)
    assert toolbar.jinja_env.loader is loader


def test_history_defaults_to_the_current_app(make_app: AppFactory) -> None:
    app = make_app()
    app.test_client().get("/json")
    with app.app_context():
        qm = app.extensions["querymem"]
        assert qm.is_active()
        assert [p.path for p in qm.history()] == ["/json"]


# --------------------------------------------------------------------------- the split modules

MIB = 1024 * 1024


def allocate_and_free(nbytes: int) -> None:
    block = b"x" * nbytes  # touched, so it is resident
    assert len(block) == nbytes
    del block


def test_constants_stay_importable_from_extension() -> None:
    assert extension_module.SKIP_ENVIRON_KEY == config.SKIP_ENVIRON_KEY
    assert extension_module.PANEL_PATH == config.PANEL_PATH
    assert extension_module.DEFAULT_CONFIG is config.DEFAULT_CONFIG
    assert config.DEFAULT_CONFIG["QUERYMEM_MIN_SUGGEST_BYTES"] == 64 * 1024


def test_profiler_gets_app_roots_and_min_suggest_bytes(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, t.Any]] = []
    real_init = Profiler.__init__

    def spy(self: Profiler, *args: t.Any, **kwargs: t.Any) -> None:
        seen.append(kwargs)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Profiler, "__init__", spy)
    app = make_app(QUERYMEM_MIN_SUGGEST_BYTES=12345)
    app.test_client().get("/contacts")
    assert seen[-1]["app_roots"] == location.app_roots_for(app)
    assert seen[-1]["min_suggest_bytes"] == 12345


def test_min_suggest_bytes_drops_small_suggestions_with_a_note(make_app: AppFactory) -> None:
    app = make_app(QUERYMEM_MIN_SUGGEST_BYTES=10**9)
    content = panel_content(app.test_client().get("/contacts").get_data(as_text=True), app)
    assert ".with_entities(Contact.email)" not in content
    assert "QUERYMEM_MIN_SUGGEST_BYTES" in text_of(content)  # the engine's note is displayed


def test_history_records_have_ids_and_round_trip(make_app: AppFactory) -> None:
    app = make_app()
    client = app.test_client()
    client.get("/json")
    client.get("/contacts")
    qm = app.extensions["querymem"]
    first, second = qm.history(app)
    assert first.id != second.id
    store = qm.history_store(app)
    assert store is not None and store.get(second.id) is second
    again = RequestProfile.from_dict(json.loads(json.dumps(second.to_dict())))
    assert again == second
    assert RequestProfile.from_dict({**first.to_dict(), "added_later": 1}) == first


def test_history_store_can_be_replaced(make_app: AppFactory) -> None:
    app = make_app()
    qm = app.extensions["querymem"]
    store = MemoryHistory(5)
    qm.set_history_store(store, app)
    app.test_client().get("/json")
    assert [r.path for r in store.records()] == ["/json"]
    assert qm.history(app) == store.records()


def test_page_stays_ascii(make_app: AppFactory) -> None:
    """A literal U+00B7 made the toolbar's final UTF-8 encode reserve a larger buffer."""
    app = make_app()
    page_html = app.test_client().get("/contacts").get_data(as_text=True)
    nav = nav_entry(page_html)
    assert "&middot;" in nav and "\u00b7" not in nav
    assert "&amp;middot;" not in nav
    assert panel_content(page_html, app).isascii()


def test_peak_rss_of_a_view_that_frees_its_objects(make_app: AppFactory) -> None:
    """Issue 10: the RSS figure was sampled after the view freed its objects."""
    if measure.rss_method() != measure.RSS_PEAK:
        pytest.skip("/proc/self/clear_refs is not writable here: the peak method is unavailable")
    app = make_app()

    @app.route("/spike")
    def spike() -> str:
        rows = db.session.query(Contact).all()
        allocate_and_free(40 * MIB)
        return page(" ".join(str(escape(c.email)) for c in rows))

    content = panel_content(app.test_client().get("/spike").get_data(as_text=True), app)
    profile = app.extensions["querymem"].history(app)[-1]
    assert profile.rss_method == "peak"
    assert profile.rss_bytes is not None and profile.rss_bytes >= 35 * MIB
    assert profile.overlapping == 0
    text = text_of(content)
    assert "Peak RSS growth during the request +" in text
    assert "unreliable:" not in text


def test_overlapping_requests_are_flagged_unreliable(make_app: AppFactory) -> None:
    """Issue 7 item 9: tracemalloc's peak is process-wide; a second request reset it."""
    was_tracing = tracemalloc.is_tracing()
    app = make_app(QUERYMEM_MEASURE="tracemalloc")
    first_allocated = threading.Event()
    second_started = threading.Event()

    @app.route("/first")
    def first() -> str:
        rows = db.session.query(Contact).all()
        allocate_and_free(20 * MIB)
        first_allocated.set()
        assert second_started.wait(10)
        return page(" ".join(str(escape(c.email)) for c in rows))

    @app.route("/second")
    def second() -> str:
        second_started.set()
        return page(" ".join(str(escape(c.email)) for c in db.session.query(Contact).all()))

    pages: dict[str, str] = {}

    def get(path: str) -> None:
        pages[path] = app.test_client().get(path).get_data(as_text=True)

    thread = threading.Thread(target=get, args=("/first",))
    thread.start()
    assert first_allocated.wait(10)
    get("/second")  # starts while /first is still running
    thread.join(10)
    assert not thread.is_alive()

    profiles = {p.path: p for p in app.extensions["querymem"].history(app)}
    assert profiles["/first"].overlapping == 1
    assert profiles["/second"].overlapping == 1
    peak = profiles["/first"].tracemalloc_peak_bytes
    assert peak is not None and peak >= 20 * MIB  # not erased by /second's start
    for path in ("/first", "/second"):
        text = text_of(panel_content(pages[path], app))
        assert "unreliable: 1 other request measured at the same time" in text

    alone = app.test_client().get("/second").get_data(as_text=True)
    assert "unreliable:" not in text_of(panel_content(alone, app))
    assert app.extensions["querymem"].history(app)[-1].overlapping == 0
    assert tracemalloc.is_tracing() == was_tracing


# --------------------------------------------------------------------------- verify by replay


def verify_button(page_html: str) -> dict[str, str]:
    match = re.search(r'<button type="button" class="qmVerify"([^>]*)>([^<]*)</button>', page_html)
    assert match, "no Verify button in the panel"
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', match.group(1)))
    attrs["text"] = match.group(2)
    return attrs


def add_verify_views(app: Flask) -> None:
    @app.route("/token")
    def token() -> str:
        rows = db.session.query(Contact).all()
        csrf = uuid.uuid4().hex  # changes on every request
        body = "".join(f"<li>{escape(c.email)}</li>" for c in rows)
        return page(f'<input name="csrf" value="{csrf}"><ul>{body}</ul>')

    @app.route("/contact-all", methods=["POST"])
    def contact_all() -> str:
        rows = db.session.query(Contact).all()
        body = "".join(f"<li>{escape(c.email)}</li>" for c in rows)
        db.session.execute(sa.update(Evil).values(body="contacted"))  # a log of the mailing
        db.session.commit()
        return page(f"<ul>{body}</ul>")


def contacted(app: Flask) -> int:
    with app.app_context():
        query = sa.select(sa.func.count()).select_from(Evil).where(Evil.body == "contacted")
        return int(db.session.execute(query).scalar_one())


def test_the_verify_button_replays_the_request_and_stores_the_result(
    make_app: AppFactory,
) -> None:
    app = make_app()
    client = app.test_client()
    page_html = client.get("/contacts").get_data(as_text=True)
    (record,) = app.extensions["querymem"].history(app)
    button = verify_button(panel_content(page_html, app))
    assert button["text"] == "Verify"
    assert button["data-url"] == f"/_querymem/verify/{record.id}"
    assert "data-rollback" not in button

    response = client.post(f"{button['data-url']}?query={button['data-query']}")
    assert response.status_code == 200, response.get_data(as_text=True)
    (result,) = response.get_json()["results"]
    assert result["code"] == ".with_entities(Contact.email)"
    assert result["verified"] and not result["failed"]
    assert result["verification"]["status"] == "verified"
    assert result["label"].startswith("verified: measured saving ")
    # the history keeps it, and the verify request itself was not profiled
    (kept,) = app.extensions["querymem"].history(app)
    assert kept.report is not None
    (q,) = [q for q in kept.report.queries if q.suggestion]
    assert q.suggestion is not None
    assert q.suggestion.verification == result["verification"]
    assert "verified: measured saving" in text_of(
        html.render_panel(kept.report.to_dict(), min_savings_bytes=0)
    )


def test_the_verify_endpoint_refuses_unknown_history_ids(make_app: AppFactory) -> None:
    app = make_app()
    client = app.test_client()
    client.get("/contacts")
    response = client.post("/_querymem/verify/" + "0" * 32)
    assert response.status_code == 404
    assert "unknown history id" in response.get_json()["error"]
    assert client.get("/_querymem/verify/" + "0" * 32).status_code == 405  # POST only


def test_the_verify_endpoint_exists_only_while_active(make_app: AppFactory) -> None:
    app = make_app(DEBUG=False)
    assert not app.extensions["querymem"].is_active(app)
    assert config.VERIFY_ENDPOINT not in app.view_functions
    assert app.test_client().post("/_querymem/verify/x").status_code == 404


def test_a_writing_request_is_verified_only_rolled_back(make_app: AppFactory) -> None:
    app = make_app()
    add_verify_views(app)
    client = app.test_client()
    page_html = client.post("/contact-all").get_data(as_text=True)
    assert contacted(app) == 3
    button = verify_button(panel_content(page_html, app))
    assert button["text"] == "Verify in a rolled-back transaction"
    assert button["data-rollback"] == "1"
    assert "POST request is not replayed unless asked" in html_unescape(button["title"])

    url = f"{button['data-url']}?query={button['data-query']}"
    (result,) = client.post(url).get_json()["results"]
    assert result["verification"]["status"] == "skipped"
    assert result["label"].startswith("unverified: not replayed: a POST request")

    with app.app_context():
        db.session.execute(sa.update(Evil).values(body="reset"))
        db.session.commit()
    (result,) = client.post(url + "&rollback=1").get_json()["results"]
    assert result["verification"]["status"] == "verified", result
    assert "rolled back" in result["verification"]["detail"]
    assert contacted(app) == 0, "the replays' writes were rolled back"


def test_a_non_deterministic_page_is_compared_on_its_stable_bytes(make_app: AppFactory) -> None:
    app = make_app()
    add_verify_views(app)
    client = app.test_client()
    client.get("/token")
    (record,) = app.extensions["querymem"].history(app)
    (result,) = client.post(f"/_querymem/verify/{record.id}").get_json()["results"]
    v = result["verification"]
    assert v["status"] == "verified", v
    compared, total = (int(n.replace(",", "")) for n in v["detail"].split()[3:6:2])
    assert 0 < total - compared <= 64, v["detail"]  # the 32 hex digits of the token


def test_verify_auto_verifies_get_requests(make_app: AppFactory) -> None:
    app = make_app(QUERYMEM_VERIFY="auto")
    page_html = app.test_client().get("/contacts").get_data(as_text=True)
    content = text_of(panel_content(page_html, app))
    assert "verified: measured saving" in content
    (record,) = app.extensions["querymem"].history(app)
    assert record.report is not None
    (q,) = [q for q in record.report.queries if q.suggestion]
    assert q.suggestion is not None and q.suggestion.verification is not None
    assert q.suggestion.verification["status"] == "verified"


def test_verify_config_is_checked(make_app: AppFactory) -> None:
    with pytest.raises(ValueError, match="QUERYMEM_VERIFY"):
        make_app(QUERYMEM_VERIFY="always")
    assert make_app(QUERYMEM_VERIFY=None).config["QUERYMEM_VERIFY"] == "off"
