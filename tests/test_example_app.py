"""The example app: seeding, every page, and what the QueryMem panel says about each.

The expected numbers come from the database itself, not from the profiler.
"""

from __future__ import annotations

import json
import os
import subprocess
import typing as t
import urllib.parse

import pytest
import sqlalchemy as sa
from flask import Flask

from example_app import create_app
from example_app.models import db
from example_app.seed import CITIES
from flask_querymem import tracking

from .flask_helpers import (
    REPO_ROOT,
    IsolatedDatabase,
    example_server,
    fetch,
    flask_command,
    isolated_database,
    nav_entry,
    panel_content,
    text_of,
)

ROWS = 500
BOUNCED_SQL = "SELECT count(DISTINCT email_address_id) FROM send_history WHERE bounce = 1"


class Example(t.NamedTuple):
    app: Flask
    engine: sa.Engine

    def scalar(self, sql: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())

    def last_report(self) -> dict[str, t.Any]:
        profile = self.app.extensions["querymem"].history(self.app)[-1]
        assert profile.report is not None
        return t.cast("dict[str, t.Any]", profile.report.to_dict())


def example_config(iso: IsolatedDatabase, **extra: t.Any) -> dict[str, t.Any]:
    return {
        "DEBUG": True,
        "TESTING": True,
        "QUERYMEM_EXAMPLE_ROWS": ROWS,
        "QUERYMEM_MIN_SAVINGS_BYTES": 0,
        # the rules are tested on small data: no threshold on suggestions
        "QUERYMEM_MIN_SUGGEST_BYTES": 0,
        **iso.flask_config(),
        **extra,
    }


def dispose(app: Flask) -> None:
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture(scope="module")
def iso_db(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> t.Iterator[IsolatedDatabase]:
    with isolated_database(database_url, str(tmp_path_factory.mktemp("example"))) as iso:
        yield iso


@pytest.fixture(scope="module")
def example(iso_db: IsolatedDatabase) -> t.Iterator[Example]:
    app = create_app(example_config(iso_db))
    engine = iso_db.create_engine()
    yield Example(app, engine)
    engine.dispose()
    dispose(app)


@pytest.fixture(autouse=True)
def no_profile_left_active() -> t.Iterator[None]:
    yield
    assert tracking.current() is None


def test_first_start_seeds_once(example: Example, iso_db: IsolatedDatabase) -> None:
    assert example.scalar("SELECT count(*) FROM email_address") == ROWS
    bounced = example.scalar(BOUNCED_SQL)
    assert ROWS * 0.15 < bounced < ROWS * 0.5  # a sizeable share bounced
    second = create_app(example_config(iso_db, QUERYMEM_EXAMPLE_ROWS=ROWS * 2))
    dispose(second)
    assert example.scalar("SELECT count(*) FROM email_address") == ROWS


def test_rows_come_from_the_environment(
    database_url: str, tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUERYMEM_EXAMPLE_ROWS", "123")
    with isolated_database(database_url, str(tmp_path)) as iso:
        app = create_app({"DEBUG": True, **iso.flask_config()})
        try:
            assert app.config["QUERYMEM_EXAMPLE_ROWS"] == 123
            with app.app_context():
                count = db.session.execute(sa.text("SELECT count(*) FROM email_address")).scalar()
                assert count == 123
        finally:
            dispose(app)


def test_toolbar_and_querymem_are_on_in_debug(example: Example) -> None:
    app = example.app
    assert app.extensions["querymem"].is_active(app)
    assert app.config["DEBUG_TB_PANELS"][-1] == "flask_querymem.panel.QueryMemPanel"
    assert app.config["DEBUG_TB_INTERCEPT_REDIRECTS"] is False
    assert app.config["SECRET_KEY"]


def test_index_links_every_page(example: Example) -> None:
    page = example.app.test_client().get("/").get_data(as_text=True)
    for path in (
        "/bounces",
        "/customers",
        "/customers/orders",
        "/customers/contact",
        "/bounces/projected",
        "/api/bounces",
    ):
        assert f'href="{path}"' in page
    assert "QueryMem" in nav_entry(page)


def test_bounce_report(example: Example) -> None:
    response = example.app.test_client().get("/bounces")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    bounced = example.scalar(BOUNCED_SQL)
    assert f'<strong id="bounce-count">{bounced}</strong>' in page

    report = example.last_report()
    (query,) = report["queries"]
    (entity,) = query["entities"]
    assert (entity["model"], entity["count"]) == ("EmailAddress", bounced)
    assert len(entity["columns_loaded"]) == 9
    assert entity["columns_read"] == ["email_address"]
    assert query["suggestion"]["kind"] == "columns"
    assert query["suggestion"]["code"] == ".with_entities(EmailAddress.email_address)"
    assert query["location"]["file"].endswith(os.path.join("example_app", "views.py"))
    assert query["location"]["function"] == "bounced_addresses"

    content = panel_content(page, example.app)
    text = text_of(content)
    assert f"1 query loaded {bounced} ORM instances" in text
    assert f"EmailAddress ×{bounced}" in text
    assert "1 of 9 loaded columns used" in text
    assert content.count('title="loaded but never read"') == 8
    assert "Biggest win: the query at example_app/views.py:" in text
    assert "in bounced_addresses()" in text
    assert 'data-code=".with_entities(EmailAddress.email_address)"' in content
    # the toolbar line shows the memory at once; the avoidable part once the panel was opened
    assert text_of(nav_entry(page)).startswith("QueryMem 1 query · ")


def test_customer_list_in_a_template(example: Example) -> None:
    page = example.app.test_client().get("/customers").get_data(as_text=True)
    customers = min(example.scalar("SELECT count(*) FROM customer"), 500)
    assert page.count("<tr><td>") == customers

    (query,) = example.last_report()["queries"]
    (entity,) = query["entities"]
    assert (entity["model"], entity["count"]) == ("Customer", customers)
    assert entity["columns_read"] == ["city", "name"]  # read while rendering the template
    assert query["suggestion"]["code"] == "select(Customer.name, Customer.city)"
    text = text_of(panel_content(page, example.app))
    assert f"Customer ×{customers}" in text
    assert "select(Customer.name, Customer.city)" in text


def test_n_plus_one_is_one_row(example: Example) -> None:
    page = example.app.test_client().get("/customers/orders").get_data(as_text=True)
    # the page takes the first 50 customers by id; seeding numbers them 1..n
    assert example.scalar("SELECT min(id) FROM customer") == 1
    orders = example.scalar("SELECT count(*) FROM shop_order WHERE customer_id <= 50")
    report = example.last_report()
    # the 50 lazy loads are one statement from one place: one grouped entry
    (lazy,) = [q for q in report["queries"] if q["kind"] == "lazy_load"]
    assert lazy["executions"] == 50
    assert lazy["entities"][0]["count"] == orders
    assert len(report["queries"]) == 2 and report["totals"]["queries"] == 51

    content = panel_content(page, example.app)
    text = text_of(content)
    assert "51 queries" in text
    assert "2 rows after grouping repeats" in text
    assert content.count('class="flDebugOdd qmRow') + content.count('class="flDebugEven qmRow') == 2
    assert "×50" in text
    assert f"Order ×{orders}" in text
    assert "relationships read: orders" in text
    assert ".options(load_only(Customer.id, Customer.name))" in text


def test_update_page(example: Example) -> None:
    city = CITIES[0]
    client = example.app.test_client()
    form = client.get("/customers/contact").get_data(as_text=True)
    assert '<form method="post">' in form
    page = client.post("/customers/contact", data={"city": city}).get_data(as_text=True)
    in_city = example.scalar(
        f"SELECT count(*) FROM customer WHERE city = '{city}'"  # noqa: S608 - constant
    )
    assert f"Marked <strong>{in_city}</strong> customers" in page
    assert (
        example.scalar(
            f"SELECT count(*) FROM customer WHERE city = '{city}' AND last_contacted_at IS NOT NULL"
        )
        == in_city
    )

    report = example.last_report()
    select, write = report["queries"][0], report["queries"][-1]
    assert select["entities"][0]["count"] == in_city
    assert select["entities"][0]["columns_written"] == ["last_contacted_at"]
    assert select["suggestion"]["code"] == (
        ".options(load_only(Customer.id, Customer.last_contacted_at))"
    )
    assert write["kind"] == "write"
    assert write["sql"].upper().startswith("UPDATE")
    content = panel_content(page, example.app)
    assert 'title="written">last_contacted_at<' in content
    assert ">write<" in content


def test_projected_page_has_nothing_to_suggest(example: Example) -> None:
    page = example.app.test_client().get("/bounces/projected").get_data(as_text=True)
    report = example.last_report()
    assert report["totals"]["estimated_savings_bytes"] == 0
    assert all(q["suggestion"] is None for q in report["queries"])
    text = text_of(panel_content(page, example.app))
    assert "no ORM instances" in text
    assert "Biggest win" not in text
    assert "avoidable" not in text_of(nav_entry(page))


def test_json_page_is_profiled(example: Example) -> None:
    response = example.app.test_client().get("/api/bounces")
    assert response.is_json
    bounced = example.scalar(BOUNCED_SQL)
    assert response.get_json()["count"] == bounced
    assert b"flDebug" not in response.data
    query = example.last_report()["queries"][0]
    assert query["suggestion"]["code"] == ".with_entities(EmailAddress.email_address)"


def sqlite_url(tmp_path: t.Any) -> str:
    return "sqlite:///" + os.path.join(str(tmp_path), "cli.sqlite")


def test_cli_report_from_the_repository_root(tmp_path: t.Any) -> None:
    env = dict(
        os.environ, QUERYMEM_EXAMPLE_DATABASE_URL=sqlite_url(tmp_path), QUERYMEM_EXAMPLE_ROWS="300"
    )
    command = [*flask_command(), "--app", "example_app", "querymem", "report"]
    result = subprocess.run(
        [*command, "/bounces"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "GET /bounces -> 200" in result.stderr
    assert ".with_entities(EmailAddress.email_address)" in result.stdout

    result = subprocess.run(
        [*command, "--json", "/customers/orders"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    (lazy,) = [q for q in data["queries"] if q["kind"] == "lazy_load"]
    assert lazy["executions"] == 50


def test_readme_quick_start_serves_the_panel(database_url: str, tmp_path: t.Any) -> None:
    """``flask --app example_app run --debug`` from the repo root, against this backend."""
    # a fresh, empty namespace: the server seeds on first start, like a new checkout
    with isolated_database(database_url, str(tmp_path)) as fresh:
        with example_server(fresh.standalone_url, 400, str(tmp_path / "server.log")) as base:
            page = fetch(base + "/bounces")
            assert "flDebugToolbar" in page
            content = panel_content(page, base)
            assert ".with_entities(EmailAddress.email_address)" in content
            data = urllib.parse.urlencode({"city": CITIES[1]}).encode()
            page = fetch(base + "/customers/contact", data)
            assert "Marked <strong>" in page
            assert 'title="written">last_contacted_at<' in panel_content(page, base)
