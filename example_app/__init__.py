"""flask-querymem's example app: ``flask --app example_app run --debug``.

Creates and seeds its SQLite database (instance folder) on first start, then
serves pages that each show a different memory problem in the QueryMem panel
of Flask-DebugToolbar. Environment variables (or config keys of the same name):
``QUERYMEM_EXAMPLE_ROWS`` sets how many email addresses the first start creates
(100,000); ``QUERYMEM_EXAMPLE_DATABASE_URL`` points it at another database
(default: ``instance/querymem_example.sqlite``).
"""

from __future__ import annotations

import os
import sys
import time
import typing as t

from flask import Flask
from flask_debugtoolbar import DebugToolbarExtension

from flask_querymem import QueryMem

from .models import db
from .seed import is_seeded, seed_database

DEFAULT_ROWS = 100_000


def create_app(test_config: t.Mapping[str, t.Any] | None = None) -> Flask:
    """Build the example app; ``test_config`` overrides the config (tests use a small DB)."""
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY="querymem-example-only-not-a-secret",
        SQLALCHEMY_DATABASE_URI=os.environ.get(
            "QUERYMEM_EXAMPLE_DATABASE_URL", "sqlite:///querymem_example.sqlite"
        ),
        DEBUG_TB_INTERCEPT_REDIRECTS=False,
        QUERYMEM_EXAMPLE_ROWS=int(os.environ.get("QUERYMEM_EXAMPLE_ROWS", DEFAULT_ROWS)),
    )
    if test_config:
        app.config.update(test_config)

    # Toolbar first, so its SQLALCHEMY_RECORD_QUERIES default reaches Flask-SQLAlchemy
    # and its own SQLAlchemy panel works too. QueryMem itself works in any order.
    DebugToolbarExtension(app)
    db.init_app(app)
    QueryMem(app)

    from .views import bp

    app.register_blueprint(bp)

    with app.app_context():
        db.create_all()
        if not is_seeded(db.engine):
            rows = int(app.config["QUERYMEM_EXAMPLE_ROWS"])
            print(
                f" * Seeding the example database with {rows:,} email addresses"
                f" ({db.engine.url.render_as_string(hide_password=True)}) ...",
                file=sys.stderr,
            )
            started = time.perf_counter()
            counts = seed_database(db.engine, rows)
            print(
                f" * Seeded in {time.perf_counter() - started:.1f}s: "
                + ", ".join(f"{n:,} {table}" for table, n in counts.items()),
                file=sys.stderr,
            )
    return app
