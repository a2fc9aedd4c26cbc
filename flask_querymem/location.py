"""Find the application frame that issued a query.

Application code is decided *positively*, like Flask-SQLAlchemy's query
recorder: a frame is the application's when its file is under one of the
``roots`` (for the extension: the app's root path and package folder, see
:func:`app_roots_for`; for ``profile()`` without roots: the current working
directory and the folder of ``__main__``, see :func:`default_roots`). Never
application code, even under a root: files in the standard library, in
``site-packages``/``dist-packages`` or the interpreter's ``bin`` folder,
flask-querymem itself, and modules named in ``extra_ignored`` (the user's
``QUERYMEM_IGNORE_MODULES``). A root that is itself inside ``site-packages`` (an
app installed as a package) makes the files under it application code.

A frame executing a compiled Jinja template is application code when the
template file is not library code (under the roots, or loaded from a folder or
an in-memory loader of the app); it is reported as the template file and its
source line, since that is where the user wrote the attribute access.

The walk goes on outwards after the innermost application frame to give up to
three ``callers``, so a query issued by a shared helper also names the view or
template that called it. It crosses SQLAlchemy's asyncio greenlet boundary
(``AsyncSession`` runs the ORM in a greenlet; the walk continues in the
suspended parent greenlet, at the user's ``await``).

With no application frame on the stack (a lazy load fired while a library
serialises the response after the view returned), the location is the
request's view function and ``context`` says what was running, e.g.
``"during response serialization (marshmallow)"``.

Decisions are cached per code object: a call costs one dict lookup per frame.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import typing as t
from types import CodeType, FrameType

#: Module-name prefixes never reported as the caller, whatever their files.
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

#: Library packages that issue or route every query: never named in ``context``.
_MACHINERY = frozenset({"sqlalchemy", "flask_querymem", "greenlet", "asyncio", "flask_sqlalchemy"})

#: At most this many callers after the innermost application frame.
MAX_CALLERS = 3

# frame kinds
_STOP = -1  # Flask.wsgi_app: the request's outermost frame, nothing further out is its code
_LIB = 0  # library, stdlib, flask-querymem, ignored module
_OUTSIDE = 1  # not library code, but not under a root either (a fallback)
_APP = 2  # application code
_TEMPLATE = 3  # a compiled Jinja template of the application


def _norm(path: str) -> str:
    path = os.path.normcase(os.path.abspath(path))
    return path if path.endswith(os.sep) else path + os.sep


def _library_dirs() -> tuple[str, ...]:
    """Folders of the interpreter's own files: stdlib, site-packages, scripts;
    of the running (virtual) environment and of its base installation."""
    dirs: set[str] = set()
    keys = ("stdlib", "platstdlib", "purelib", "platlib", "scripts")
    variants: list[dict[str, str]] = [{}]
    variants.append({"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
    for variant in variants:
        try:
            paths = sysconfig.get_paths(vars=variant) if variant else sysconfig.get_paths()
        except Exception:  # pragma: no cover - exotic installs
            continue
        for key in keys:
            p = paths.get(key)
            if p:
                dirs.add(_norm(p))
                dirs.add(_norm(os.path.realpath(p)))
    return tuple(sorted(dirs, key=len, reverse=True))


_LIBRARY_DIRS = _library_dirs()
_SITE_MARKERS = tuple(
    os.path.normcase(os.sep + name + os.sep) for name in ("site-packages", "dist-packages")
)
_PACKAGE_DIRS = tuple(
    {_norm(os.path.dirname(__file__)), _norm(os.path.dirname(os.path.realpath(__file__)))}
)


def _library_dir_of(path: str) -> str | None:
    """The library folder holding ``path`` (normalised), or None."""
    best: str | None = None
    for marker in _SITE_MARKERS:
        i = path.rfind(marker)
        if i >= 0:
            candidate = path[: i + len(marker)]
            if best is None or len(candidate) > len(best):
                best = candidate
    for d in _LIBRARY_DIRS:
        if path.startswith(d):
            if best is None or len(d) > len(best):
                best = d
            break  # sorted longest first
    return best


def _is_library_path(path: str) -> bool:
    return _library_dir_of(_norm_file(path)) is not None


def is_library_path(path: str) -> bool:
    """Whether a source file is library code: an installed package or the stdlib."""
    return path.startswith("<frozen") or _is_library_path(path)


def _norm_file(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))


def _path_kind(filename: str, roots: tuple[str, ...]) -> int:
    """_APP, _OUTSIDE or _LIB for a source file, from its path alone."""
    if filename.startswith("<"):
        # "<frozen importlib._bootstrap>" is the stdlib; "<string>", "<stdin>",
        # "<console>": code the user typed or exec'd, outside any root
        return _LIB if filename.startswith("<frozen") else _OUTSIDE
    is_lib = False
    paths = {_norm_file(filename)}
    try:
        paths.add(os.path.normcase(os.path.realpath(filename)))
    except (OSError, ValueError):  # pragma: no cover
        pass
    for path in paths:
        if path.startswith(_PACKAGE_DIRS):
            return _LIB
        lib = _library_dir_of(path)
        if lib is None:
            if path.startswith(roots):
                return _APP
        else:
            is_lib = True
            # a root inside the library folder (an app installed as a package)
            for root in roots:
                if len(root) > len(lib) and root.startswith(lib) and path.startswith(root):
                    return _APP
    return _LIB if is_lib else _OUTSIDE


V = t.TypeVar("V")


class CodeMemo(t.Generic[V]):
    """Facts decided once per code object (what kind of frame runs it, whose
    module it is), for the stack walks that run on every statement and read.

    Keyed by ``id(code)``: hashing a large code object costs up to ~0.8 us
    (its constants are hashed anew each time), an id ~50 ns. The memo keeps the
    code objects alive, so an id cannot be reused while it is a key; bounded,
    so that code compiled on the fly (``exec``, templates) does not pile up.
    Hot loops bind ``memo.facts.get`` once and call :meth:`remember` on a miss.
    """

    __slots__ = ("facts", "_codes")
    LIMIT = 20000

    def __init__(self) -> None:
        self.facts: dict[int, V] = {}
        self._codes: list[CodeType] = []

    def remember(self, code: CodeType, value: V) -> V:
        if len(self.facts) > self.LIMIT:
            self.facts.clear()
            self._codes.clear()
        self.facts[id(code)] = value
        self._codes.append(code)
        return value


def _ignored(name: str, prefixes: tuple[str, ...]) -> bool:
    for p in prefixes:
        if name == p or name.startswith(p + "."):
            return True
    return False


class _Classifier:
    """Per-code-object decisions for one (roots, extra_ignored) pair (``kinds``)."""

    __slots__ = ("roots", "prefixes", "kinds")

    def __init__(self, roots: tuple[str, ...], extra_ignored: tuple[str, ...]) -> None:
        normed: list[str] = []
        for r in roots:
            if not r:
                continue
            normed.append(_norm(r))
            normed.append(_norm(os.path.realpath(r)))
        self.roots = tuple(dict.fromkeys(normed))
        self.prefixes = DEFAULT_IGNORED + tuple(extra_ignored)
        self.kinds: CodeMemo[int] = CodeMemo()

    def classify(self, frame: FrameType) -> int:
        code = frame.f_code
        g = frame.f_globals
        template = g.get("__jinja_template__")
        if template is not None:
            filename = getattr(template, "filename", None)
            if not filename or filename.startswith("<"):
                kind = _TEMPLATE  # an in-memory template (DictLoader, from_string): the app's
            else:
                kind = _LIB if _path_kind(filename, self.roots) == _LIB else _TEMPLATE
        elif _ignored(str(g.get("__name__") or ""), self.prefixes):
            wsgi_app = g.get("__name__") == "flask.app" and code.co_name == "wsgi_app"
            kind = _STOP if wsgi_app else _LIB
        else:
            kind = _path_kind(code.co_filename, self.roots)
        return self.kinds.remember(code, kind)


_classifiers: dict[tuple[tuple[str, ...], tuple[str, ...]], _Classifier] = {}
# (roots, extra_ignored, classifier) of the last call: a profile passes the same
# tuples every time. One tuple, replaced whole, so that a thread reading it
# never sees one call's roots with another call's classifier.
_last: tuple[t.Any, t.Any, t.Any] = (None, None, None)


def _classifier(roots: tuple[str, ...], extra_ignored: tuple[str, ...]) -> _Classifier:
    global _last
    last = _last
    if roots is last[0] and extra_ignored is last[1]:
        return t.cast(_Classifier, last[2])
    key = (roots, extra_ignored)
    c = _classifiers.get(key)
    if c is None:
        if len(_classifiers) > 64:
            _classifiers.clear()
        c = _classifiers[key] = _Classifier(roots, extra_ignored)
    _last = (roots, extra_ignored, c)
    return c


def default_roots() -> tuple[str, ...]:
    """Roots when none were given (``profile()`` in a script or a test): the
    current working directory and the folder of ``__main__``'s file (unless that
    file is library code, such as ``pytest/__main__.py`` or ``bin/flask``)."""
    try:
        roots = [os.getcwd()]
    except OSError:  # the working directory was deleted
        roots = []
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) if main is not None else None
    if path and isinstance(path, str) and not _is_library_path(path):
        roots.append(os.path.dirname(os.path.abspath(path)))
    return tuple(roots)


def greenlet_parent_frame(glet: t.Any) -> tuple[t.Any, FrameType | None]:
    """(parent greenlet, its suspended frame) when ``glet`` is SQLAlchemy's
    asyncio greenlet (``greenlet_spawn``), else (None, None). Other greenlets
    (gevent's, eventlet's) are left alone: their parent is a hub, not the caller."""
    if glet is None:
        return None, None
    # SQLAlchemy >= 2.0.? marks its greenlet; 2.0.0 only has the private class
    # sqlalchemy.util._concurrency_py3k._AsyncIoGreenlet (see _sa_compat.py)
    cls = type(glet)
    if not getattr(glet, "__sqlalchemy_greenlet_provider__", False) and not (
        cls.__name__ == "_AsyncIoGreenlet" and cls.__module__.startswith("sqlalchemy")
    ):
        return None, None
    parent = glet.parent
    if parent is None:
        return None, None
    return parent, parent.gr_frame


def _iter_frames(frame: FrameType | None) -> t.Iterator[FrameType]:
    """Every frame outwards, across SQLAlchemy's asyncio greenlet boundary."""
    glet: t.Any = None
    while True:
        while frame is not None:
            yield frame
            frame = frame.f_back
        gmod = sys.modules.get("greenlet")
        if gmod is None:
            return
        if glet is None:
            glet = gmod.getcurrent()
        glet, frame = greenlet_parent_frame(glet)
        if frame is None:
            return


def _function_name(code: CodeType) -> str:
    return str(getattr(code, "co_qualname", code.co_name))


def _site(frame: FrameType, kind: int) -> dict[str, t.Any]:
    if kind == _TEMPLATE:
        template = frame.f_globals["__jinja_template__"]
        try:
            line = int(template.get_corresponding_lineno(frame.f_lineno))
        except Exception:
            line = frame.f_lineno
        filename = getattr(template, "filename", None)
        name = getattr(template, "name", None)
        return {
            # DictLoader & co. have no file ("<template>"): the name is more useful
            "file": filename
            if filename and not filename.startswith("<")
            else (name or frame.f_code.co_filename),
            "line": line,
            "function": f"template {name}" if name else "template",
        }
    return {
        "file": frame.f_code.co_filename,
        "line": frame.f_lineno,
        "function": _function_name(frame.f_code),
    }


def _location(frames: list[tuple[FrameType, int]], context: str | None) -> dict[str, t.Any]:
    sites: list[dict[str, t.Any]] = []
    for frame, kind in frames:
        site = _site(frame, kind)
        if not sites or sites[-1] != site:  # a template block and its caller on one line
            sites.append(site)
    first = sites[0]
    first["callers"] = sites[1 : 1 + MAX_CALLERS]
    first["context"] = context
    # for the analysis only (never in a report): what the issuing code does with
    # the result, read from its bytecode (code objects, not frames: nothing kept alive)
    first["_frames"] = [(f.f_code, f.f_lasti) for f, _ in frames[: 1 + MAX_CALLERS]]
    return first


#: find_location() results by the frames that decide them: the classifier and
#: (id(code), f_lasti) of every application (or outside) frame the walk found.
#: Each value keeps those code objects alive, so their ids cannot be reused while
#: it is cached. Bounded: cleared when it grows past _CACHE_MAX.
_cache: dict[tuple[t.Any, ...], tuple[dict[str, t.Any], tuple[CodeType, ...]]] = {}
_CACHE_MAX = 4096


def find_location(
    extra_ignored: tuple[str, ...] = (),
    start: FrameType | None = None,
    roots: tuple[str, ...] = (),
) -> dict[str, t.Any] | None:
    """Where the application issued the query being executed.

    Returns ``{"file", "line", "function", "callers", "context"}`` (see
    :class:`flask_querymem.report.Location`) or None when nothing better than
    library code is known. ``roots``: folders of application code (default:
    :func:`default_roots`); ``extra_ignored``: module-name prefixes that are
    never application code; ``start``: the innermost frame to look at (default:
    the caller's).

    The same frames (code and instruction of every application frame) give the
    same location: it is computed once and shared (callers must not modify it).
    """
    last = _last
    if roots and roots is last[0] and extra_ignored is last[1]:  # _classifier(), inline
        classifier: _Classifier = last[2]
    else:
        classifier = _classifier(roots or default_roots(), extra_ignored)
    kind_of = classifier.kinds.facts.get  # bound once: the loop below runs for every frame
    frame: FrameType | None = start or sys._getframe(1)
    found: list[tuple[FrameType, int]] = []
    outside: list[tuple[FrameType, int]] = []
    want = MAX_CALLERS + 3  # a few spare for duplicates (template blocks)
    glet: t.Any = None
    while frame is not None:
        while frame is not None:
            kind = kind_of(id(frame.f_code))
            if kind is None:
                kind = classifier.classify(frame)
            if kind:
                if kind >= _APP:
                    found.append((frame, kind))
                    if len(found) >= want:
                        return _cached_location(classifier, found, None)
                elif kind == _OUTSIDE:
                    if len(outside) < want:
                        outside.append((frame, kind))
                else:  # _STOP: the WSGI entry point of a Flask request
                    frame = None
                    break
            frame = frame.f_back
        else:
            # top of this stack: inside SQLAlchemy's asyncio greenlet, go on in the
            # parent greenlet, suspended at greenlet_spawn() under the user's await
            gmod = sys.modules.get("greenlet")
            if gmod is not None:
                if glet is None:
                    glet = gmod.getcurrent()
                glet, frame = greenlet_parent_frame(glet)
    if found:
        return _cached_location(classifier, found, None)
    if outside:
        return _cached_location(classifier, outside, None)
    return _view_location(start or sys._getframe(1))


def _cached_location(
    classifier: _Classifier, frames: list[tuple[FrameType, int]], context: str | None
) -> dict[str, t.Any]:
    key = (classifier, *[(id(f.f_code), f.f_lasti) for f, _ in frames])
    hit = _cache.get(key)
    if hit is not None:
        return hit[0]
    loc = _location(frames, context)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[key] = (loc, tuple(f.f_code for f, _ in frames))
    return loc


# --- no application frame: the request's view ------------------------------------

#: Flask.* methods on the stack -> what the request was doing.
_PHASES = {
    "process_response": "during response serialization",
    "finalize_request": "during response serialization",
    "make_response": "during response serialization",
    "preprocess_request": "in a before_request function",
    "handle_user_exception": "while handling an error",
    "handle_http_exception": "while handling an error",
    "handle_exception": "while handling an error",
    "do_teardown_request": "during request teardown",
    "do_teardown_appcontext": "during app context teardown",
    "dispatch_request": "in the view",
}


#: id(code) -> (Flask phase or None, library package or None, stdlib package or
#: None)
_describe_codes: CodeMemo[tuple[str | None, str | None, str | None]] = CodeMemo()


def _describe_code(f: FrameType) -> tuple[str | None, str | None, str | None]:
    code = f.f_code
    known = _describe_codes.facts.get(id(code))
    if known is not None:
        return known
    name = str(f.f_globals.get("__name__") or "")
    top = name.split(".", 1)[0]
    phase = _PHASES.get(code.co_name) if name == "flask.app" else None
    library = stdlib = None
    if top and top not in _MACHINERY and top != "flask":
        path = _norm_file(code.co_filename)
        lib = _library_dir_of(path)
        if lib is not None and lib in _LIBRARY_DIRS and "site-packages" not in lib:
            stdlib = top
        else:
            library = top
    known = _describe_codes.remember(code, (phase, library, stdlib))
    return known


def _describe(frame: FrameType) -> str:
    """``"during response serialization (marshmallow)"``: what the request was
    doing (the innermost Flask method on the stack) and the innermost library
    package outside SQLAlchemy that led to the query."""
    library: str | None = None
    stdlib: str | None = None
    phase: str | None = None
    for f in _iter_frames(frame):
        f_phase, f_library, f_stdlib = _describe_code(f)
        if phase is None and f_phase is not None:
            phase = f_phase
        if library is None and (f_library is not None or f_stdlib is not None):
            if f_stdlib is not None:
                stdlib = stdlib or f_stdlib
            else:
                library = f_library
        if phase is not None and library is not None:
            break
    if phase is None:
        phase = "after the view returned"
    who = library or stdlib
    return f"{phase} ({who})" if who else phase


def _view_function(flask: t.Any) -> t.Any:
    endpoint = flask.request.endpoint
    if not endpoint:
        return None
    view = flask.current_app.view_functions.get(endpoint)
    if view is None:
        return None
    view_class = getattr(view, "view_class", None)  # View.as_view()
    if view_class is not None:
        handler = getattr(view_class, str(flask.request.method).lower(), None)
        view = handler or getattr(view_class, "dispatch_request", view)
    for _ in range(100):  # functools.wraps decorators
        wrapped = getattr(view, "__wrapped__", None)
        if wrapped is None:
            break
        view = wrapped
    return getattr(view, "__func__", view)


def _view_location(frame: FrameType) -> dict[str, t.Any] | None:
    flask = sys.modules.get("flask")  # never import Flask: profile() works without it
    if flask is None:
        return None
    try:
        if not flask.has_request_context():
            return None
        view = _view_function(flask)
        code = getattr(view, "__code__", None)
        if code is None:
            return None
        return {
            "file": code.co_filename,
            "line": code.co_firstlineno,
            "function": _function_name(code),
            "callers": [],
            "context": _describe(frame),
        }
    except Exception:  # never let the location break the user's query
        return None


def app_roots_for(app: t.Any) -> tuple[str, ...]:
    """Folders holding a Flask app's own code: its ``root_path`` and the folder
    that holds the top-level package it was imported from (an app factory in
    ``proj/app/`` with models in ``proj/models.py`` has both). When the package
    is installed (its parent is ``site-packages``), the package folder itself."""
    roots = [str(app.root_path)]
    top = str(getattr(app, "import_name", "") or "").split(".", 1)[0]
    module = sys.modules.get(top) if top and top != "__main__" else None
    path = getattr(module, "__file__", None) if module is not None else None
    if path and os.path.basename(path) == "__init__.py":
        package = os.path.dirname(os.path.abspath(path))
        parent = os.path.dirname(package)
        roots.append(package if _is_library_path(os.path.join(parent, "x.py")) else parent)
    return tuple(dict.fromkeys(roots))
