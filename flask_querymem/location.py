"""Find the application frame that issued a query.

Walks the stack from the listener outwards and returns the first frame that is
not library machinery (SQLAlchemy, Flask, Werkzeug, Jinja2's runtime, the
standard library, flask-querymem itself, or modules the user asked to skip). A
frame executing a compiled Jinja template is reported as the template file and
its source line, since that is where the user wrote the attribute access.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import typing as t
from types import FrameType

#: Module-name prefixes never reported as the caller.
DEFAULT_IGNORED = (
    "sqlalchemy",
    "flask_sqlalchemy",
    "flask_debugtoolbar",
    "flask",
    "werkzeug",
    "jinja2",
    "click",
    "greenlet",
    "asyncio",
    "flask_querymem",
)

_STDLIB_DIRS = tuple(
    {
        os.path.normcase(p) + os.sep
        for p in (sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib"))
        if p
    }
)


def _ignored(name: str, prefixes: tuple[str, ...]) -> bool:
    for p in prefixes:
        if name == p or name.startswith(p + "."):
            return True
    return False


def find_location(
    extra_ignored: tuple[str, ...] = (),
    start: FrameType | None = None,
    roots: tuple[str, ...] = (),
) -> dict[str, t.Any] | None:
    """Return ``{"file", "line", "function"}`` of the issuing app frame, or None."""
    frame: FrameType | None = start or sys._getframe(1)
    prefixes = DEFAULT_IGNORED + extra_ignored
    while frame is not None:
        g = frame.f_globals
        template = g.get("__jinja_template__")
        if template is not None:
            try:
                line = template.get_corresponding_lineno(frame.f_lineno)
            except Exception:
                line = frame.f_lineno
            return {
                # DictLoader & co. have no file: "<template>"; the name is more useful
                "file": template.filename
                if template.filename and not template.filename.startswith("<")
                else (template.name or frame.f_code.co_filename),
                "line": int(line),
                "function": f"template {template.name}" if template.name else "template",
            }
        name = g.get("__name__") or ""
        filename = frame.f_code.co_filename
        if not _ignored(name, prefixes) and not filename.startswith("<frozen"):
            if (
                not os.path.normcase(filename).startswith(_STDLIB_DIRS)
                or "site-packages" in filename
            ):
                return {
                    "file": filename,
                    "line": frame.f_lineno,
                    "function": getattr(frame.f_code, "co_qualname", frame.f_code.co_name),
                }
        frame = frame.f_back
    return None


def app_roots_for(app: t.Any) -> tuple[str, ...]:
    """Folders holding a Flask app's own code: its ``root_path`` and the folder of
    the top-level package it was imported from (an app factory in ``proj/app/``
    with models in ``proj/models.py`` has both)."""
    roots = [str(app.root_path)]
    top = str(getattr(app, "import_name", "") or "").split(".", 1)[0]
    module = sys.modules.get(top) if top and top != "__main__" else None
    path = getattr(module, "__file__", None) if module is not None else None
    if path and os.path.basename(path) == "__init__.py":
        roots.append(os.path.dirname(os.path.dirname(os.path.abspath(path))))
    return tuple(dict.fromkeys(roots))
