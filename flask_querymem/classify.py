"""What kind of ORM statement is running, and how its caller consumes it.

Runs in ``do_orm_execute`` for each ORM statement, so it must be cheap and
never raise into the user's query (the listener catches and logs).
"""

from __future__ import annotations

import sys
import typing as t
import weakref

import sqlalchemy as sa
from sqlalchemy.orm import UserDefinedOption

from . import _sa_compat as compat
from .location import CodeMemo, greenlet_parent_frame

#: SQLAlchemy entry points the application calls (the outermost one is kept): how each
#: hands entities back matters for what can replace them.
_ENTRY_POINTS = frozenset(
    {
        "execute",
        "scalars",
        "scalar",
        "scalar_one",
        "get",
        "all",
        "first",
        "one",
        "one_or_none",
        "__iter__",
        "yield_per",
        "paginate",
        "count",
    }
)


def _strictly(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def caller_style(frame: t.Any = None) -> tuple[str | None, str, t.Any]:
    """(style, entry, first frame) of the ORM execution running now.

    style: "get" or "scalars" when it comes through a helper that needs entities
    back, else None. There is no public flag for either, so look at the frames
    between the user's code and SQLAlchemy's:

    * ``Session.get()`` / ``Query.get()``: a one-row primary-key load, for which
      ``select(...)`` is no drop-in replacement;
    * Flask-SQLAlchemy's ``db.paginate()``, ``db.first_or_404()``,
      ``db.one_or_404()`` call ``.scalars()`` / ``.scalar()`` on the result, which
      would return the first column, not a row, after a column projection.

    entry: the name of the outermost SQLAlchemy function on the way (the method
    the application called: ``execute``, ``scalars``, ``scalar``, ``all``, ...).

    first frame: the frame this walk stopped at, when every frame it passed is
    SQLAlchemy's or flask-querymem's (modules ``location.find_location`` never
    reports): the location is looked for from there, without walking those
    frames again. None when that is not certain (another module named
    ``sqlalchemy...``, an asyncio greenlet crossed).

    ``frame``: where to start (default: the caller's).
    """
    if frame is None:
        frame = sys._getframe(1)
    known = _frame_facts.facts.get
    strict = True
    while frame is not None:
        facts = known(id(frame.f_code)) or _learn_frame(frame)
        if facts[0] != _OURS:
            break
        strict = strict and facts[1]
        frame = frame.f_back
    entry = ""
    style: str | None = None
    glet: t.Any = None
    while True:
        while frame is not None:
            where, exact, get, entry_name = known(id(frame.f_code)) or _learn_frame(frame)
            if where == _SQLALCHEMY:
                if get:
                    style = "get"
                if entry_name:
                    entry = entry_name
                if strict and not exact:
                    strict = False
            elif where == _FLASK_SQLALCHEMY:
                return style or "scalars", entry, frame if strict else None
            else:
                return style, entry, frame if strict else None
            frame = frame.f_back
        # AsyncSession: the sync session runs in SQLAlchemy's greenlet; the
        # method the application awaited is in the parent greenlet
        strict = False
        gmod = sys.modules.get("greenlet")
        if gmod is None:
            return style, entry, None
        if glet is None:
            glet = gmod.getcurrent()
        glet, frame = greenlet_parent_frame(glet)
        if frame is None:
            return style, entry, None


_OURS, _SQLALCHEMY, _FLASK_SQLALCHEMY, _OTHER = range(4)

#: What caller_style needs of a frame running each code object: (whose module:
#: _OURS, _SQLALCHEMY, ...; the package itself and not a look-alike name such
#: as ``sqlalchemy_utils``; a ``get()`` frame; the entry-point name or "").
#: A code object runs in one module, so this is decided once per code object.
_frame_facts: CodeMemo[tuple[int, bool, bool, str]] = CodeMemo()


def _learn_frame(frame: t.Any) -> tuple[int, bool, bool, str]:
    code = frame.f_code
    name = str(frame.f_globals.get("__name__", ""))
    if name.startswith("flask_querymem"):
        facts = (_OURS, _strictly(name, "flask_querymem"), False, "")
    elif name.startswith("sqlalchemy"):
        co_name = code.co_name
        facts = (
            _SQLALCHEMY,
            _strictly(name, "sqlalchemy"),
            co_name in compat.GET_FRAME_NAMES,
            co_name if co_name in _ENTRY_POINTS else "",
        )
    elif name.startswith("flask_sqlalchemy"):
        facts = (_FLASK_SQLALCHEMY, False, False, "")
    else:
        facts = (_OTHER, False, False, "")
    return _frame_facts.remember(code, facts)


def statement_kind(orm_state: t.Any) -> str:
    return compat.statement_kind(orm_state)[0]


class StatementInfo(t.NamedTuple):
    kind: str
    style: str  # "query" (legacy Query), "select", "scalars", "get"
    shape: str  # "entity" (one full entity), "multi", "columns", "none"
    entry: str = ""  # the SQLAlchemy method the application called
    entity: t.Any = None  # the mapped class the statement selects (its one entity)
    features: frozenset[str] = frozenset()  # joins, distinct, aliased, expression
    # where to look for the location from (caller_style's first frame), or None
    start: t.Any = None
    lazy_from: t.Any = None  # a lazy load's InstanceState


#: statement cache key -> (shape, entity, features): what a statement's structure
#: says, decided once per distinct statement (finding the joined tables walks
#: the WHERE clause, ~11 us; column_descriptions ~5 us). Bounded.
_shapes: dict[t.Any, tuple[str, t.Any, frozenset[str]]] = {}
_SHAPES_MAX = 2048


def _select_shape(stmt: t.Any) -> tuple[str, t.Any, frozenset[str]]:
    """(shape, entity, features) of a 2.0-style or legacy ORM SELECT."""
    features: set[str] = set()
    entity = None
    descs = stmt.column_descriptions
    n_entities = sum(
        1 for d in descs if d.get("expr") is not None and d.get("expr") is d.get("entity")
    )
    if n_entities == 1 and len(descs) == 1:
        shape = "entity"
    elif n_entities:
        shape = "multi"
    else:
        shape = "columns"
    if shape == "entity":
        insp = sa.inspect(descs[0]["entity"])
        if getattr(insp, "is_aliased_class", False):
            features.add("aliased")
        entity = insp.mapper.class_
        if compat.statement_joins(stmt, insp.mapper.tables):
            features.add("joins")
        if compat.statement_distinct(stmt):
            features.add("distinct")
        if compat.has_query_expression_option(stmt):
            features.add("expression")
    return shape, entity, frozenset(features)


#: The same for statement objects seen before (an application that builds its
#: statements once and executes them on every request): no cache key to hash
#: (~6 us for a SELECT with a WHERE clause). Weak: never keeps a statement.
_shapes_by_statement: weakref.WeakKeyDictionary[t.Any, tuple[str, t.Any, frozenset[str]]] = (
    weakref.WeakKeyDictionary()
)


def _cached_select_shape(stmt: t.Any) -> tuple[str, t.Any, frozenset[str]]:
    try:
        found = _shapes_by_statement.get(stmt)
    except TypeError:  # not weakly referenceable
        found = None
    if found is not None:
        return found
    try:
        ck = stmt._generate_cache_key()  # memoized on the statement; SQLAlchemy needs it too
        key = ck.key if ck is not None else None
        found = _shapes.get(key) if key is not None else None
    except Exception:  # an unhashable key
        key = None
    if key is None:
        return _select_shape(stmt)
    if found is None:
        found = _select_shape(stmt)
        if len(_shapes) >= _SHAPES_MAX:
            _shapes.clear()
        _shapes[key] = found
    try:
        _shapes_by_statement[stmt] = found
    except TypeError:
        pass
    return found


_NO_FEATURES: frozenset[str] = frozenset()


def statement_info(orm_state: t.Any, frame: t.Any = None) -> StatementInfo:
    """What an ORM execution is, and what a projection of it would have to keep.

    ``frame``: the listener's frame (the walk for the caller starts there)."""
    kind, lazy_from = compat.statement_kind(orm_state)
    if kind != "select" or compat.is_from_statement(orm_state):
        return StatementInfo(kind, "select", "none", "", None, _NO_FEATURES, None, lazy_from)
    style = "select"
    shape = "none"
    entry = ""
    entity = None
    start = None
    features = _NO_FEATURES
    stmt = orm_state.statement
    try:
        via, entry, start = caller_style(frame or sys._getframe(1))
        # Legacy Query helpers (Flask-SQLAlchemy's Model.query.paginate() too)
        # return rows after with_entities(); select() helpers call .scalars().
        if via == "get":
            style = "get"
        elif compat.is_legacy_query(stmt):
            style = "query"
        elif via == "scalars":
            style = "scalars"
        shape, entity, features = _cached_select_shape(stmt)
    except Exception:  # an unusual statement: no style/shape, no suggestion
        shape = "none"
    return StatementInfo(kind, style, shape, entry, entity, features, start)


def has_loader_options(statement: t.Any) -> bool:
    """Loader options (joinedload, selectinload, ...) cannot stay on a 2.0-style
    column select."""
    opts = compat.loader_options(statement)
    if not opts:
        return False
    return any(not isinstance(o, UserDefinedOption) for o in opts)


_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "UPSERT")


def kind_from_sql(statement: str) -> str:
    words = statement.lstrip(" (\n\t").split(None, 1)
    verb = words[0].upper() if words else ""
    if verb in _WRITE_VERBS:
        return "write"
    if verb in ("SELECT", "WITH", "VALUES"):
        return "select"
    return "other"
