"""Print the scenarios that fail today as ``KNOWN_BROKEN`` entries.

``python -m tests.catalogue.known_broken [DATABASE_URL]`` (SQLite when no URL;
a PostgreSQL URL runs in a schema of its own). Paste the lines into
``test_catalogue.KNOWN_BROKEN`` (keyed ``name@postgresql`` when only that
backend fails) and group them by cause.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
import warnings
from pathlib import Path

import sqlalchemy as sa

from .harness import Backend, check
from .test_catalogue import SCENARIOS


def failures(backend: Backend, folder: Path) -> dict[str, str]:
    out = {}
    for sc in SCENARIOS:
        try:
            result = check(backend, sc, folder)
        except AssertionError as exc:
            out[sc.name] = f"scenario fails: {exc}"[:100]
            continue
        if result.bad:
            tr = result.bad[0]
            out[sc.name] = f"{tr.code} -> {tr.verdict}: {tr.detail}".split("\n")[0][:110]
        elif sc.expect_suggestion and not result.suggestions:
            out[sc.name] = "lost its suggestion"
    return out


def main(url: str | None) -> None:
    warnings.simplefilter("error")  # as under pytest
    folder = Path(tempfile.mkdtemp())
    schema = "qmcat_" + uuid.uuid4().hex[:8]
    if url:
        admin = sa.create_engine(url)
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        backend = Backend(url, connect_args={"options": f"-csearch_path={schema}"})
    else:
        backend = Backend("sqlite:///" + str(folder / "catalogue.sqlite"))
    backend.create()
    try:
        for name, reason in failures(backend, folder).items():
            print(f"    {name!r}: {reason!r},")
    finally:
        backend.drop()
        if url:
            with admin.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
