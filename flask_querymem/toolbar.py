"""Everything flask-querymem knows about Flask-DebugToolbar (0.16), in one place.

Facts relied on:

* the toolbar reads ``DEBUG_TB_PANELS`` on every request (it builds its panels
  per request), so the panel can be added to the list before or after
  ``DebugToolbarExtension(app)`` runs;
* when the user sets no list, the toolbar uses its defaults, which only its
  private ``_default_config(app)`` knows;
* ``DebugToolbarExtension`` does not register itself in ``app.extensions``; its
  ``debugtoolbar`` blueprint is registered only when it actually started
  (enabled, ``SECRET_KEY`` set);
* its own static files are served by that blueprint.

The panel class itself lives in ``panel.py``, imported by the toolbar by its
dotted path, so this module never imports the toolbar at import time.
"""

from __future__ import annotations

import logging
import typing as t

from .config import PANEL_PATH

if t.TYPE_CHECKING:
    from flask import Flask, Request

__all__ = [
    "FALLBACK_PANELS",
    "add_panel",
    "check_running",
    "default_panels",
    "installed_on",
    "is_toolbar_request",
]

logger = logging.getLogger("flask_querymem")

#: Flask-DebugToolbar 0.16's default panel list, used if its private API changes.
FALLBACK_PANELS = (
    "flask_debugtoolbar.panels.versions.VersionDebugPanel",
    "flask_debugtoolbar.panels.timer.TimerDebugPanel",
    "flask_debugtoolbar.panels.headers.HeaderDebugPanel",
    "flask_debugtoolbar.panels.request_vars.RequestVarsDebugPanel",
    "flask_debugtoolbar.panels.config_vars.ConfigVarsDebugPanel",
    "flask_debugtoolbar.panels.template.TemplateDebugPanel",
    "flask_debugtoolbar.panels.sqlalchemy.SQLAlchemyDebugPanel",
    "flask_debugtoolbar.panels.logger.LoggingPanel",
    "flask_debugtoolbar.panels.route_list.RouteListDebugPanel",
    "flask_debugtoolbar.panels.profiler.ProfilerDebugPanel",
    "flask_debugtoolbar.panels.g.GDebugPanel",
)

_SKIPPED_ENDPOINTS = frozenset({"static", "_debug_toolbar.static"})


def default_panels(app: Flask) -> list[str] | None:
    """The panel list the toolbar uses when the user sets none (None: not installed)."""
    try:
        from flask_debugtoolbar import DebugToolbarExtension
    except ImportError:
        return None
    try:
        defaults = DebugToolbarExtension()._default_config(app)
        return list(defaults["DEBUG_TB_PANELS"])
    except Exception:  # private API changed: fall back to the 0.16 list
        logger.debug("flask-querymem: could not read the toolbar's default panels", exc_info=True)
        return list(FALLBACK_PANELS)


def installed_on(app: Flask) -> bool:
    """Whether the toolbar started on ``app`` (its blueprint exists only then)."""
    return "debugtoolbar" in app.blueprints


def enabled_in_config(app: Flask) -> bool:
    """The toolbar's own switch: ``DEBUG_TB_ENABLED``, defaulting to debug mode."""
    return bool(app.config.get("DEBUG_TB_ENABLED", app.debug))


def add_panel(app: Flask) -> None:
    """Append the panel to the user's ``DEBUG_TB_PANELS``, or to the toolbar's defaults."""
    panels = app.config.get("DEBUG_TB_PANELS")
    if panels is None:
        panels = default_panels(app)
        if panels is None:
            return
    if PANEL_PATH in panels:
        return
    if isinstance(panels, tuple):
        app.config["DEBUG_TB_PANELS"] = (*panels, PANEL_PATH)
    else:
        app.config["DEBUG_TB_PANELS"] = [*panels, PANEL_PATH]


def check_running(app: Flask) -> None:
    """Log why the panel would not show (called on the first profiled request)."""
    if not installed_on(app):
        logger.warning(
            "flask-querymem is profiling app %r but Flask-DebugToolbar is not running on"
            " it: call DebugToolbarExtension(app), and check DEBUG_TB_ENABLED and"
            " SECRET_KEY. Until then profiles are only kept in QueryMem.history(app).",
            app.name,
        )
    elif PANEL_PATH not in (app.config.get("DEBUG_TB_PANELS") or ()):
        logger.warning(
            "flask-querymem: DEBUG_TB_PANELS was replaced after QueryMem.init_app and no"
            " longer lists %r; add it to show the QueryMem panel.",
            PANEL_PATH,
        )


def is_toolbar_request(request: Request) -> bool:
    """Static files and the toolbar's own views: never profiled."""
    return request.endpoint in _SKIPPED_ENDPOINTS or request.blueprint == "debugtoolbar"
