"""``flask querymem profile PATH`` (and its old name ``report``): status, exit code,
empty reports explained, locations relative to the app, the app's settings."""

from __future__ import annotations

import json
import os
import re
import typing as t
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask, redirect
from sqlalchemy.orm import Session

import flask_querymem.profiler as profiler_module
from flask_querymem.cli import base_dir_for
from flask_querymem.location import app_roots_for

from .flask_helpers import isolated_database
from .models import Address, Base, User, seed

HERE = os.path.abspath(__file__)


def line_of(text: str) -> int:
    source = Path(HERE).read_text().splitlines()
    lines = [i for i, s in enumerate(source, 1) if text in s and "line_of(" not in s]
    assert len(lines) == 1, (text, lines)
    return lines[0]


@pytest.fixture(scope="module")
def engine(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[sa.Engine]:
    with isolated_database(database_url, str(tmp_path_factory.mktemp("clidb"))) as iso:
        eng = iso.create_engine()
        Base.metadata.create_all(eng)
        seed(eng)
        try:
            yield eng
        finally:
            eng.dispose()


def first_letters_of_bio(users: t.Iterable[t.Any]) -> str:
    # reads a column from the instance __dict__: no attribute descriptor sees it
    return "".join(str(vars(u).get("bio", ""))[:3] for u in users)


@pytest.fixture()
def app(engine: sa.Engine) -> Flask:
    """A plain Flask app (no QueryMem extension needed for the command)."""
    from flask_querymem.cli import querymem_cli

    app = Flask(__name__)
    app.config.update(TESTING=False, PROPAGATE_EXCEPTIONS=False)
    app.cli.add_command(querymem_cli)

    def names() -> str:
        with Session(engine) as s:
            users = s.scalars(sa.select(User).order_by(User.id)).all()  # THE QUERY
            return ",".join(u.name for u in users)

    @app.route("/users")
    def users() -> str:
        return names()

    @app.route("/empty")
    def empty() -> str:
        return "nothing from the database"

    @app.route("/old")
    def old() -> t.Any:
        return redirect("/login")

    @app.route("/gone")
    def gone() -> tuple[str, int]:
        return names(), 404

    @app.route("/boom")
    def boom() -> str:
        names()
        raise KeyError("boom")

    @app.route("/now")
    def now() -> str:
        # a token that changes on every request, like a CSRF token or a timestamp
        return f"<p>generated {uuid.uuid4().hex}</p>" + names()

    @app.route("/sneaky")
    def sneaky() -> str:
        with Session(engine) as s:
            users = s.scalars(sa.select(User).order_by(User.id)).all()  # SNEAKY
            return ",".join(u.name for u in users) + first_letters_of_bio(users)

    @app.route("/touch")
    def touch() -> str:
        with Session(engine) as s:
            users = s.scalars(sa.select(User).order_by(User.id)).all()  # TOUCH
            shown = ",".join(u.name for u in users)
            s.execute(sa.update(Address).where(Address.id == 1).values(city="Touched"))
            s.commit()
            return shown

    return app


def invoke(app: Flask, *args: str) -> t.Any:
    return app.test_cli_runner().invoke(args=["querymem", *args])


def test_profile_prints_the_status_and_the_report(app: Flask) -> None:
    result = invoke(app, "profile", "/users")
    assert result.exit_code == 0, result.output
    assert "GET /users -> 200 OK" in result.stderr
    assert "1 query" in result.stdout
    assert "SELECT" in result.stdout


def test_report_is_an_alias_of_profile(app: Flask) -> None:
    profiled = invoke(app, "profile", "--json", "/users")
    aliased = invoke(app, "report", "--json", "/users")
    assert profiled.exit_code == aliased.exit_code == 0, aliased.output
    a, b = json.loads(profiled.stdout), json.loads(aliased.stdout)
    assert a["schema"] == b["schema"] == "querymem/1"
    assert [q["sql"] for q in a["queries"]] == [q["sql"] for q in b["queries"]]
    help_text = invoke(app, "--help").output
    assert "profile" in help_text and "Alias of `profile`" in help_text


@pytest.mark.parametrize(
    ("path", "status"), [("/gone", "404 NOT FOUND"), ("/boom", "500 INTERNAL SERVER ERROR")]
)
def test_4xx_and_5xx_exit_non_zero_after_the_report(app: Flask, path: str, status: str) -> None:
    result = invoke(app, "profile", path)
    assert result.exit_code == 1, result.output
    assert f"GET {path} -> {status}" in result.stderr
    assert "1 query" in result.stdout  # the report was printed first
    as_json = invoke(app, "profile", "--json", path)
    assert as_json.exit_code == 1
    assert len(json.loads(as_json.stdout)["queries"]) == 1


def test_an_unknown_path_is_a_404_and_says_why_it_is_empty(app: Flask) -> None:
    result = invoke(app, "profile", "/nowhere")
    assert result.exit_code == 1
    assert "GET /nowhere -> 404 NOT FOUND" in result.stderr
    assert "no SQLAlchemy query ran during GET /nowhere" in result.stdout


def test_an_empty_report_is_explained(app: Flask) -> None:
    result = invoke(app, "profile", "/empty")
    assert result.exit_code == 0, result.output
    assert "no SQLAlchemy query ran during GET /empty" in result.stdout

    as_json = invoke(app, "profile", "--json", "/empty")
    assert json.loads(as_json.stdout)["queries"] == []  # stdout stays JSON
    assert "no SQLAlchemy query ran during GET /empty" in as_json.stderr


def test_a_redirect_says_where_it_went(app: Flask) -> None:
    result = invoke(app, "profile", "/old")
    assert result.exit_code == 0, result.output
    assert "GET /old -> 302 FOUND (Location: /login)" in result.stderr
    assert "no SQLAlchemy query ran during GET /old (redirected to /login)" in result.stdout


def test_locations_are_relative_to_the_app_not_the_working_directory(
    app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # somewhere unrelated: the output must not change
    base = base_dir_for(app)
    assert base == os.path.commonpath(app_roots_for(app))
    result = invoke(app, "profile", "/users")
    assert result.exit_code == 0, result.output
    label = f"{os.path.relpath(HERE, base)}:{line_of('# THE QUERY')}"
    assert label in result.stdout, result.stdout
    assert HERE not in result.stdout


def test_the_profiler_gets_the_app_roots_and_min_suggest_bytes(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, t.Any]] = []
    original = profiler_module.Profiler.__init__

    def spy(self: t.Any, *args: t.Any, **kwargs: t.Any) -> None:
        seen.append(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(profiler_module.Profiler, "__init__", spy)
    app.config["QUERYMEM_MIN_SUGGEST_BYTES"] = 12345
    app.config["QUERYMEM_IGNORE_MODULES"] = ("some.helpers",)
    assert invoke(app, "profile", "/users").exit_code == 0
    (kwargs,) = seen
    assert kwargs["app_roots"] == app_roots_for(app)
    assert kwargs["min_suggest_bytes"] == 12345
    assert kwargs["ignore_modules"] == ("some.helpers",)


def test_the_location_is_the_app_line(app: Flask) -> None:
    result = invoke(app, "profile", "--json", "/users")
    (query,) = json.loads(result.stdout)["queries"]
    loc = query["location"]
    assert (loc["file"], loc["line"]) == (HERE, line_of("# THE QUERY"))
    assert [c["function"] for c in loc["callers"]][:1] == ["app.<locals>.users"], (
        "the view that called the helper"
    )


def test_a_path_must_start_with_a_slash(app: Flask) -> None:
    result = invoke(app, "profile", "users")
    assert result.exit_code == 2
    assert "starting with '/'" in result.output


# --------------------------------------------------------------------------- --verify


def city_of_address_1(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.select(Address.city).where(Address.id == 1)).scalar_one())


def test_verify_replays_the_request_and_shows_the_measured_saving(app: Flask) -> None:
    result = invoke(app, "profile", "--verify", "/users")
    assert result.exit_code == 0, result.output
    assert "verify: 1 verified" in result.stderr
    assert "suggest: select(User.name)" in result.stdout
    saving = re.search(r"verified: measured saving \d[\d.]* (B|KiB|MiB)", result.stdout)
    assert saving, result.stdout

    as_json = invoke(app, "profile", "--json", "--verify", "/users")
    (query,) = json.loads(as_json.stdout)["queries"]
    v = query["suggestion"]["verification"]
    assert v["status"] == "verified" and v["detail"] is None
    assert v["measured_bytes_before"] > v["measured_bytes_after"] > 0


def test_verify_catches_a_column_read_through_vars(app: Flask) -> None:
    result = invoke(app, "profile", "--json", "--verify", "/sneaky")
    assert result.exit_code == 0, result.output
    (query,) = json.loads(result.stdout)["queries"]
    assert query["location"]["line"] == line_of("# SNEAKY")
    v = query["suggestion"]["verification"]
    assert v["status"] in ("differs", "error"), v
    assert "vars()" in v["detail"]
    text = invoke(app, "profile", "--verify", "/sneaky").stdout
    assert "not offered: select(User.name): failed verification" in text


def test_verify_masks_what_changes_between_two_runs(app: Flask) -> None:
    result = invoke(app, "profile", "--json", "--verify", "/now")
    (query,) = json.loads(result.stdout)["queries"]
    v = query["suggestion"]["verification"]
    assert v["status"] == "verified", v
    assert re.fullmatch(
        r"not deterministic: compared [\d,]+ of [\d,]+ bytes \(the parts that differed .*\)",
        v["detail"],
    ), v["detail"]


def test_verify_never_replays_a_writing_request_outside_a_rolled_back_transaction(
    app: Flask, engine: sa.Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(Address).where(Address.id == 1).values(city="Springfield"))
    result = invoke(app, "profile", "--json", "--verify", "/touch")
    assert result.exit_code == 0, result.output
    assert city_of_address_1(engine) == "Touched"  # the profiled run itself
    queries = json.loads(result.stdout)["queries"]
    assert any(q["kind"] == "write" for q in queries)
    (sug,) = [q["suggestion"] for q in queries if q["suggestion"]]
    v = sug["verification"]
    assert v["status"] == "skipped" and "wrote to the database" in v["detail"], v
    assert "--rollback" in v["detail"]

    with engine.begin() as conn:
        conn.execute(sa.update(Address).where(Address.id == 1).values(city="Springfield"))
    result = invoke(app, "profile", "--json", "--verify", "--rollback", "/touch")
    assert result.exit_code == 0, result.output
    (sug,) = [q["suggestion"] for q in json.loads(result.stdout)["queries"] if q["suggestion"]]
    v = sug["verification"]
    assert v["status"] == "verified", v
    assert "rolled back" in v["detail"]
    assert city_of_address_1(engine) == "Touched"
    with engine.begin() as conn:  # only the profiled run wrote: the replays were rolled back
        conn.execute(sa.update(Address).where(Address.id == 1).values(city="Springfield"))
    invoke(app, "profile", "--verify", "--rollback", "/users")
    assert city_of_address_1(engine) == "Springfield"


def test_verify_on_a_page_without_suggestions_says_so(app: Flask) -> None:
    result = invoke(app, "profile", "--verify", "/empty")
    assert result.exit_code == 0, result.output
    assert "verify: no suggestion to verify" in result.stderr
