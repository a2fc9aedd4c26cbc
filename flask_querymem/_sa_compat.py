"""Every SQLAlchemy version difference and private member we rely on, in one place.

Why one module: flask-querymem supports every SQLAlchemy release from 2.0.0 to
2.1.x, and a public attribute that only exists in newer releases
(``ORMExecuteState.is_from_statement`` arrived in 2.0.30) broke all profiling
on older ones. Each name here has a fallback and a test per supported release
(``tests/test_sa_compat.py``; ``.ci/run`` runs the suite on the oldest and the
newest 2.0 and on 2.1). Code elsewhere in the package must not read private
SQLAlchemy members directly.
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa

SA_VERSION: str = sa.__version__
SA_VERSION_INFO: tuple[int, ...] = tuple(int(p) for p in SA_VERSION.split(".")[:3] if p.isdigit())

_FromStatement: t.Any
try:  # private: the class of ``select(Entity).from_statement(text(...))``
    from sqlalchemy.orm.context import FromStatement as _FromStatement
except ImportError:  # pragma: no cover - moved in a future release
    _FromStatement = None

try:  # LABEL_STYLE_LEGACY_ORM marks statements built by the legacy Query API
    # (an internal member of the public SelectLabelStyle enum; no public flag exists).
    from sqlalchemy.sql.selectable import SelectLabelStyle

    LABEL_STYLE_LEGACY_ORM: t.Any = SelectLabelStyle.LABEL_STYLE_LEGACY_ORM
except (ImportError, AttributeError):  # pragma: no cover
    LABEL_STYLE_LEGACY_ORM = None


def is_from_statement(orm_state: t.Any) -> bool:
    """``ORMExecuteState.is_from_statement`` (public from 2.0.30), for every 2.0.x."""
    try:
        return bool(orm_state.is_from_statement)
    except AttributeError:
        pass
    stmt = orm_state.statement
    flag = getattr(stmt, "is_from_statement", None)
    if flag is not None:
        return bool(flag)
    return _FromStatement is not None and isinstance(stmt, _FromStatement)


def is_legacy_query(statement: t.Any) -> bool:
    """True for a statement built by the legacy ``Query`` API (``session.query(...)``)."""
    if LABEL_STYLE_LEGACY_ORM is None:
        return False
    try:
        return bool(statement.get_label_style() == LABEL_STYLE_LEGACY_ORM)
    except AttributeError:
        return False


def loader_options(statement: t.Any) -> tuple[t.Any, ...]:
    """The options given to ``.options(...)`` of a statement.

    ``Executable._with_options`` (private) is the only place they are listed,
    in every release since 1.4.
    """
    return tuple(getattr(statement, "_with_options", ()) or ())


def _public_statement_kind(orm_state: t.Any) -> tuple[str, t.Any]:
    if orm_state.is_column_load:
        return "column_load", None
    if orm_state.is_relationship_load:
        lazy_from = orm_state.lazy_loaded_from
        return ("lazy_load" if lazy_from is not None else "relationship_load"), lazy_from
    if orm_state.is_select:
        return "select", None
    if orm_state.is_insert or orm_state.is_update or orm_state.is_delete:
        return "write", None
    return "", None


def statement_kind(orm_state: t.Any) -> tuple[str, t.Any]:
    """(kind, the ``InstanceState`` a lazy load is for) of an ORM execution.

    kind: "column_load", "lazy_load", "relationship_load", "select", "write" or
    "" (``text()`` and other non-ORM statements). The public
    ``ORMExecuteState.is_column_load`` and ``is_relationship_load`` each read the
    statement's ORM compile options again (three reads, ~5 us a statement);
    ``ORMExecuteState._orm_compile_options()`` (private, every release since
    1.4) reads them once, and what those properties test on them
    (``_for_refresh_state``, ``_current_path``) is what they return. Any
    difference falls back to the public attributes.
    """
    try:
        opts = orm_state._orm_compile_options()
        if opts is None:
            return _public_statement_kind(orm_state)
        if opts._for_refresh_state:
            return "column_load", None
        path = opts._current_path
        if path is not None and not path.is_root:
            lazy_from = orm_state.load_options._lazy_loaded_from
            return ("lazy_load" if lazy_from is not None else "relationship_load"), lazy_from
        return "select", None
    except AttributeError:
        return _public_statement_kind(orm_state)


def query_runid(context: t.Any) -> int:
    """``QueryContext.runid``: SQLAlchemy stamps it on every ``InstanceState`` it
    populates (``state.runid``), which is how a read maps back to its query."""
    return int(context.runid)


def state_runid(state: t.Any) -> int | None:
    return t.cast("int | None", state.runid)


#: Frames of ``Session.get()`` / ``Query.get()``: a one-row primary-key load
#: (function names in sqlalchemy.orm.session / loading, stable since 1.4).
GET_FRAME_NAMES = frozenset({"load_on_pk_identity", "_load_on_pk_identity", "_get_impl"})


def statement_joins(statement: t.Any, entity_tables: t.Collection[t.Any]) -> bool:
    """Whether a SELECT joins or filters on other tables (so a row per entity is
    not guaranteed: the legacy Query de-duplicates entities, a projection does
    not). ``Select._setup_joins`` and ``_from_obj`` are private; the public
    ``get_final_froms()`` compiles the statement, far too slow for every query."""
    if getattr(statement, "_setup_joins", ()) or getattr(statement, "_from_obj", ()):
        return True
    where = getattr(statement, "whereclause", None)
    if where is None:
        return False
    from sqlalchemy.sql.util import find_tables

    return any(tbl not in entity_tables for tbl in find_tables(where, include_aliases=True))


def statement_distinct(statement: t.Any) -> bool:
    """``Select._distinct`` / ``_distinct_on`` (private; no public accessor)."""
    return bool(getattr(statement, "_distinct", False) or getattr(statement, "_distinct_on", ()))


def has_query_expression_option(statement: t.Any) -> bool:
    """A ``with_expression()`` loader option: its value is not a column of the table."""
    for opt in loader_options(statement):
        for ctx in getattr(opt, "context", ()) or ():
            strategy = getattr(ctx, "strategy", None) or ()
            if any(isinstance(s, tuple) and s and s[0] == "query_expression" for s in strategy):
                return True
    return False


def top_level_runid(orm_state: t.Any) -> int | None:
    """The runid of the query whose eager loader runs this statement.

    Newer releases copy the parent's execution options (and so our query id)
    to a selectin/subquery load; 2.0.0 does not, but every release passes the
    top-level ``QueryContext`` as the (private) ``sa_top_level_orm_context``
    execution option."""
    ctx = orm_state.execution_options.get("sa_top_level_orm_context")
    runid = getattr(ctx, "runid", None)
    return runid if isinstance(runid, int) else None
