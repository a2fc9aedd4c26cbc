"""``flask querymem report URL_PATH``: profile one GET request from the command line.

Why: the same per-query report as the toolbar panel, without a browser, for a
quick look, a ticket or a CI log. The request goes through the app's test
client in a fresh ``contextvars`` context, so it gets its own app context and
session (as a real request would) even though ``flask`` pushed one for the
command, and the profile cannot pick up anything else.
"""

from __future__ import annotations

import contextvars
import json
import typing as t

import click
from flask import Flask
from flask.cli import ScriptInfo, pass_script_info

from .extension import SKIP_ENVIRON_KEY

if t.TYPE_CHECKING:
    from .report import Report

__all__ = ["profile_get", "querymem_cli"]


def profile_get(app: Flask, url_path: str) -> tuple[int, Report]:
    """GET ``url_path`` through ``app.test_client()`` while profiling; return (status, report).

    Uses the app's ``QUERYMEM_TRACK_READS`` and ``QUERYMEM_IGNORE_MODULES``
    (defaults when QueryMem is not initialised). The request is marked so an
    active QueryMem extension leaves it alone instead of profiling it twice.
    Exceptions from the app propagate, after the profile is stopped.
    """
    from .profiler import Profiler

    config = app.config

    def run() -> tuple[int, Report]:
        profiler = Profiler(
            track_reads=bool(config.get("QUERYMEM_TRACK_READS", True)),
            ignore_modules=tuple(config.get("QUERYMEM_IGNORE_MODULES", ())),
        ).start()
        try:
            response = app.test_client().get(url_path, environ_overrides={SKIP_ENVIRON_KEY: True})
            status = response.status_code
            response.close()
        finally:
            report = profiler.stop()
        return status, report

    return contextvars.Context().run(run)


@click.group("querymem")
def querymem_cli() -> None:
    """Profile the memory of SQLAlchemy queries (flask-querymem)."""


@querymem_cli.command("report")
@click.argument("url_path")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (querymem/1).")
@pass_script_info
def report_command(info: ScriptInfo, url_path: str, as_json: bool) -> None:
    """GET URL_PATH with profiling and print the per-query memory report."""
    if not url_path.startswith("/"):
        raise click.BadParameter("give a path on the app, starting with '/'", param_hint="URL_PATH")
    app = info.load_app()
    try:
        status, report = profile_get(app, url_path)
    except Exception as exc:
        raise click.ClickException(f"GET {url_path} raised {type(exc).__name__}: {exc}") from exc
    click.echo(f"GET {url_path} -> {status}", err=True)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.to_text(), nl=False)
    if status >= 500:
        raise SystemExit(1)
