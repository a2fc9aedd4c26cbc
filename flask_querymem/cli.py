"""``flask querymem profile PATH``: profile one GET request from the command line.

Why: the same per-query report as the toolbar panel, without a browser, for a
quick look, a ticket or a CI log. The request goes through the app's test
client in a fresh ``contextvars`` context, so it gets its own app context and
session (as a real request would) even though ``flask`` pushed one for the
command, and the profile cannot pick up anything else.

``report`` is the former name of ``profile`` and stays as an alias.

What it prints: the status line on stderr (``GET /x -> 404 NOT FOUND``), then
the report on stdout (text, or JSON with ``--json``). An empty report says why
(no query ran; the response was a redirect to ...). Exit status: 0 for 1xx-3xx,
1 for 4xx/5xx (after the report is printed), so a CI step fails on a broken page.
Locations in the text report are relative to the app's own folder
(:func:`base_dir_for`), whatever the current directory.

``--verify`` proves each suggestion by replay (:mod:`flask_querymem.replay`):
the same GET is sent twice more as it is and once per suggestion with the
suggestion applied to its query, and the responses are compared; each
suggestion then says *verified (measured saving)*, *failed verification* or why
it was not replayed. A request that wrote to the database is replayed only with
``--rollback`` (inside transactions that are rolled back; side effects outside
the database would repeat).
"""

from __future__ import annotations

import contextvars
import json
import os
import typing as t
from dataclasses import dataclass

import click
from flask import Flask
from flask.cli import ScriptInfo, pass_script_info

from .config import SKIP_ENVIRON_KEY

if t.TYPE_CHECKING:
    from .report import Report

__all__ = ["ProfiledRequest", "base_dir_for", "profile_get", "profile_request", "querymem_cli"]


@dataclass
class ProfiledRequest:
    """One profiled request: what the CLI prints."""

    method: str
    path: str
    status_code: int
    status: str  #: e.g. "404 NOT FOUND"
    location: str | None  #: the Location header (redirects)
    report: Report


def profile_request(app: Flask, url_path: str) -> ProfiledRequest:
    """GET ``url_path`` through ``app.test_client()`` while profiling.

    Uses the app's ``QUERYMEM_TRACK_READS``, ``QUERYMEM_IGNORE_MODULES`` and
    ``QUERYMEM_MIN_SUGGEST_BYTES`` (defaults when QueryMem is not initialised),
    and the app's folders as the roots of application code
    (:func:`flask_querymem.location.app_roots_for`). The request is marked so an
    active QueryMem extension leaves it alone instead of profiling it twice.
    Exceptions from the app propagate, after the profile is stopped.
    """
    from .location import app_roots_for
    from .profiler import Profiler

    config = app.config

    def run() -> ProfiledRequest:
        profiler = Profiler(
            track_reads=bool(config.get("QUERYMEM_TRACK_READS", True)),
            ignore_modules=tuple(config.get("QUERYMEM_IGNORE_MODULES", ())),
            app_roots=app_roots_for(app),
            min_suggest_bytes=int(config.get("QUERYMEM_MIN_SUGGEST_BYTES", 0) or 0),
        ).start()
        try:
            response = app.test_client().get(url_path, environ_overrides={SKIP_ENVIRON_KEY: True})
            try:
                result = (response.status_code, response.status, response.headers.get("Location"))
            finally:
                response.close()
        finally:
            report = profiler.stop()
        return ProfiledRequest("GET", url_path, *result, report=report)

    return contextvars.Context().run(run)


def profile_get(app: Flask, url_path: str) -> tuple[int, Report]:
    """(status code, report) of a profiled GET: :func:`profile_request`, shorter."""
    done = profile_request(app, url_path)
    return done.status_code, done.report


def base_dir_for(app: Flask) -> str:
    """The folder text locations are relative to: the common folder of the app's
    roots (the project folder of a package app, the app's folder otherwise)."""
    from .location import app_roots_for

    roots = [os.path.abspath(r) for r in app_roots_for(app)]
    try:
        return os.path.commonpath(roots)
    except ValueError:  # different drives (Windows)
        return os.path.abspath(app.root_path)


def explain_empty(done: ProfiledRequest) -> str | None:
    """Why a report has no query, in words; None when it has some."""
    if done.report.queries:
        return None
    line = f"no SQLAlchemy query ran during {done.method} {done.path}"
    if 300 <= done.status_code < 400:
        line += f" (redirected to {done.location})" if done.location else " (a redirect)"
    elif done.status_code >= 400:
        line += f" (the response was {done.status})"
    return line


def render_text(report: Report, base_dir: str) -> str:
    try:
        return report.to_text(base_dir=base_dir)
    except TypeError:  # a renderer without base_dir: absolute paths
        return report.to_text()


@click.group("querymem")
def querymem_cli() -> None:
    """Profile the memory of SQLAlchemy queries (flask-querymem)."""


def _run(
    info: ScriptInfo, url_path: str, as_json: bool, verify: bool = False, rollback: bool = False
) -> None:
    if not url_path.startswith("/"):
        raise click.BadParameter("give a path on the app, starting with '/'", param_hint="PATH")
    app = info.load_app()
    try:
        done = profile_request(app, url_path)
    except Exception as exc:
        raise click.ClickException(f"GET {url_path} raised {type(exc).__name__}: {exc}") from exc
    status_line = f"{done.method} {done.path} -> {done.status}"
    if done.location and 300 <= done.status_code < 400:
        status_line += f" (Location: {done.location})"
    click.echo(status_line, err=True)
    if verify:
        from .replay import CapturedRequest, verify_request

        try:
            targets = verify_request(
                app, CapturedRequest.get(url_path), done.report, rollback=rollback
            )
        except Exception as exc:
            raise click.ClickException(
                f"verifying {url_path} failed: {type(exc).__name__}: {exc}"
            ) from exc
        click.echo(_verify_summary(targets), err=True)
    empty = explain_empty(done)
    if as_json:
        click.echo(json.dumps(done.report.to_dict(), indent=2))
        if empty:
            click.echo(empty, err=True)  # stdout stays pure JSON
    else:
        click.echo(render_text(done.report, base_dir_for(app)), nl=False)
        if empty:
            click.echo(empty)
    if done.status_code >= 400:
        raise SystemExit(1)


def _verify_summary(targets: t.Sequence[t.Any]) -> str:
    if not targets:
        return "verify: no suggestion to verify"
    counts: dict[str, int] = {}
    for target in targets:
        status = (target.suggestion.verification or {}).get("status", "?")
        counts[status] = counts.get(status, 0) + 1
    return "verify: " + ", ".join(f"{n} {status}" for status, n in counts.items())


_PATH_ARG = click.argument("url_path", metavar="PATH")
_JSON_OPT = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
_VERIFY_OPT = click.option(
    "--verify",
    is_flag=True,
    help="Replay the request with each suggestion applied, compare the responses and"
    " measure the saving (tracemalloc).",
)
_ROLLBACK_OPT = click.option(
    "--rollback",
    is_flag=True,
    help="With --verify: also replay a request that wrote to the database, inside"
    " transactions that are rolled back (side effects outside the database repeat).",
)


@querymem_cli.command("profile")
@_PATH_ARG
@_JSON_OPT
@_VERIFY_OPT
@_ROLLBACK_OPT
@pass_script_info
def profile_command(
    info: ScriptInfo, url_path: str, as_json: bool, verify: bool, rollback: bool
) -> None:
    """GET PATH with profiling and print the per-query memory report.

    The status goes to stderr, the report to stdout. Exits with status 1 when the
    response is a 4xx or 5xx (after printing the report).
    """
    _run(info, url_path, as_json, verify, rollback)


@querymem_cli.command("report")
@_PATH_ARG
@_JSON_OPT
@_VERIFY_OPT
@_ROLLBACK_OPT
@pass_script_info
def report_command(
    info: ScriptInfo, url_path: str, as_json: bool, verify: bool, rollback: bool
) -> None:
    """Alias of `profile` (its former name)."""
    _run(info, url_path, as_json, verify, rollback)
