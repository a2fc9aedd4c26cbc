"""What kind of ORM statement is running, and how its caller consumes it.

Runs in ``do_orm_execute`` for each ORM statement, so it must be cheap and
never raise into the user's query (the listener catches and logs).
"""

from __future__ import annotations

import sys
import typing as t

from sqlalchemy.orm import UserDefinedOption

from . import _sa_compat as compat


def caller_style() -> str | None:
    """ "get" or "scalars" when the ORM execution comes through a helper that
    needs entities back, else None. There is no public flag for either, so look
    at the frames between the user's code and SQLAlchemy's:

    * ``Session.get()`` / ``Query.get()``: a one-row primary-key load, for which
      ``select(...)`` is no drop-in replacement;
    * Flask-SQLAlchemy's ``db.paginate()``, ``db.first_or_404()``,
      ``db.one_or_404()`` call ``.scalars()`` / ``.scalar()`` on the result, which
      would return the first column, not a row, after a column projection.
    """
    frame: t.Any = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("flask_querymem"):
        frame = frame.f_back
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.startswith("sqlalchemy"):
            if frame.f_code.co_name in compat.GET_FRAME_NAMES:
                return "get"
        elif name.startswith("flask_sqlalchemy"):
            return "scalars"
        else:
            return None
        frame = frame.f_back
    return None


def statement_kind(orm_state: t.Any) -> str:
    if orm_state.is_column_load:
        return "column_load"
    if orm_state.is_relationship_load:
        return "lazy_load" if orm_state.lazy_loaded_from is not None else "relationship_load"
    if orm_state.is_select:
        return "select"
    if orm_state.is_insert or orm_state.is_update or orm_state.is_delete:
        return "write"
    return ""  # text() and other non-ORM statements: decided from the SQL verb


def statement_info(orm_state: t.Any) -> tuple[str, str, str]:
    """(kind, style, shape) of an ORM execution.

    style: "query" (legacy Query), "select" (2.0 style), "scalars" (a helper that
    calls ``.scalars()``), "get"; shape: "entity" (one full entity), "multi",
    "columns", "none".
    """
    kind = statement_kind(orm_state)
    style = "select"
    shape = "none"
    if kind == "select" and not compat.is_from_statement(orm_state):
        stmt = orm_state.statement
        try:
            via = caller_style()
            # Legacy Query helpers (Flask-SQLAlchemy's Model.query.paginate() too)
            # return rows after with_entities(); select() helpers call .scalars().
            if via == "get":
                style = "get"
            elif compat.is_legacy_query(stmt):
                style = "query"
            elif via == "scalars":
                style = "scalars"
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
        except Exception:  # an unusual statement: no style/shape, no suggestion
            shape = "none"
    return kind, style, shape


def has_loader_options(statement: t.Any) -> bool:
    """Loader options (joinedload, selectinload, ...) cannot stay on a 2.0-style
    column select."""
    return any(not isinstance(o, UserDefinedOption) for o in compat.loader_options(statement))


_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "UPSERT")


def kind_from_sql(statement: str) -> str:
    words = statement.lstrip(" (\n\t").split(None, 1)
    verb = words[0].upper() if words else ""
    if verb in _WRITE_VERBS:
        return "write"
    if verb in ("SELECT", "WITH", "VALUES"):
        return "select"
    return "other"
