"""What any design of the panel pays before it does anything: bytecodes.py's
``--floor`` configurations.

The panel needs SQLAlchemy's events (a statement starts, a row loads, ...)
and a place in the toolbar. Registering a listener that does nothing already
makes SQLAlchemy do more per statement and per row (it builds an
``ORMExecuteState``, runs ``orm_pre_session_exec`` twice, calls into Python for
every loaded row), and the toolbar renders every panel's title, subtitle and
content on every page. These stand-ins cost exactly that and nothing else, so
``B + hooks + panel`` against ``B`` is the part of D − B that no tuning of
flask-querymem's own code can remove.
"""

from __future__ import annotations

import typing as t

from flask_debugtoolbar.panels import DebugPanel

#: import path of the stand-in panel, for ``DEBUG_TB_PANELS``
NOOP_PANEL = f"{__name__}.NoopPanel"


class NoopPanel(DebugPanel):
    """A panel with a title, a subtitle and content, computing nothing."""

    name = "Noop"
    has_content = True
    user_activate = False

    def nav_title(self) -> str:
        return "Noop"

    def nav_subtitle(self) -> str:
        return "10 entities, 1 query"

    def title(self) -> str:
        return "Noop"

    def url(self) -> str:
        return ""

    def content(self) -> str:
        return "<p>nothing</p>"


def _nothing(*args: t.Any, **kwargs: t.Any) -> None:
    return None


def install_noop_listeners() -> int:
    """Listen to every event flask-querymem listens to, with a function that
    does nothing (the same targets, names and flags). Returns how many."""
    from sqlalchemy import event

    from flask_querymem import tracking

    # tracking._LISTENERS: our own table of what install() registers (private
    # to the package, read here so the stand-ins cannot drift from it)
    for target, name, _fn, kw in tracking._LISTENERS:
        event.listen(target, name, _nothing, **kw)
    return len(tracking._LISTENERS)
